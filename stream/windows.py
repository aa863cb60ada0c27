"""Per-stream head state: which windows of frames are open, and when one emits a prediction.

Pure functions over plain data. The scheduler computes each frame's `frame_inputs` once
(x·W + b for an LSTM head, the frame's softmax for a single-frame head) and then calls
`step` for every stream, in capture order; `initial_state` is also the reset at a gap.

Exact-window mode keeps K = ceil(T / hop) LSTM states whose windows start `hop` frames
apart. All of them share the frame's input projection; their recurrent products are one
[K, U] x [U, 4U] matmul. The state whose window reaches T frames emits what the offline
model gives for exactly those frames, then waits for its next start. Continuous mode keeps
one state, emits every `hop` frames and restarts every `reset_every` frames (never if None).

>>> config = WindowConfig(mode=EXACT, hop=2)
>>> state = initial_state(head, clip_length=16, config=config)                      # doctest: +SKIP
>>> state, window = step(head, 16, config, state, frame_inputs(head, x)[0], index=41)  # doctest: +SKIP
>>> window.probabilities if window else None                                         # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from stream.errors import LrcnError
from stream.head import FrameHead, Head

EXACT, CONTINUOUS = "exact", "continuous"
MODES = (EXACT, CONTINUOUS)


@dataclass(frozen=True)
class WindowConfig:
    mode: str = EXACT
    hop: int = 1                      # frames between window starts (exact) or between predictions (continuous)
    reset_every: int | None = None    # continuous: restart the state after this many frames

    def __post_init__(self):
        if self.mode not in MODES:
            raise LrcnError(f"head mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.hop, int) or self.hop < 1:
            raise LrcnError(f"hop must be a positive integer, got {self.hop!r}")
        if self.reset_every is not None and (not isinstance(self.reset_every, int) or self.reset_every < 1):
            raise LrcnError(f"reset_every must be a positive integer or None, got {self.reset_every!r}")


@dataclass(frozen=True)
class WindowState:
    """K slots of one stream. Idle slots have steps == -1."""
    h: np.ndarray          # [K, U] LSTM output (U = 0 for a single-frame head)
    c: np.ndarray          # [K, U] LSTM cell
    steps: np.ndarray      # [K] frames in each slot's window so far
    first: np.ndarray      # [K] frame index of each slot's first frame
    prob_sum: np.ndarray   # [K, C] running sum of per-step softmax, for heads that average over steps
    recent: np.ndarray     # [T, C] last T frame softmaxes: a single-frame head in continuous mode
    frames: int = 0        # frames stepped since the last reset


@dataclass(frozen=True)
class Window:
    """One emitted prediction: raw probabilities of the frames first..last (frame indices)."""
    probabilities: np.ndarray   # [C]
    first: int
    last: int


def slot_count(clip_length: int, config: WindowConfig) -> int:
    """How many windows can be open at once.

    >>> slot_count(16, WindowConfig(hop=1)), slot_count(16, WindowConfig(hop=5)), slot_count(16, WindowConfig(hop=32))
    (16, 4, 1)
    """
    return math.ceil(clip_length / config.hop) if config.mode == EXACT else 1


def averages_steps(head: Head) -> bool:
    """Whether the head's clip output is the mean of per-step softmaxes (rather than the last step's)."""
    return isinstance(head, FrameHead) or head.per_timestep


def initial_state(head: Head, clip_length: int, config: WindowConfig) -> WindowState:
    slots = slot_count(clip_length, config)
    units = 0 if isinstance(head, FrameHead) else head.units
    classes = len(head.classes)
    return WindowState(h=np.zeros((slots, units), np.float32), c=np.zeros((slots, units), np.float32),
                       steps=np.full(slots, -1, np.int64), first=np.zeros(slots, np.int64),
                       prob_sum=np.zeros((slots, classes), np.float64), recent=np.zeros((clip_length, classes)))


def frame_inputs(head: Head, features: np.ndarray) -> np.ndarray:
    """The part of a step that depends on the frame alone, for a batch of frames [N, F]:
    x·W + b [N, 4U] for an LSTM head, the frame's softmax [N, C] for a single-frame head."""
    features = np.asarray(features, np.float32)
    if isinstance(head, FrameHead):
        return head.probabilities(features)
    return head.input_projection(features)


def step(head: Head, clip_length: int, config: WindowConfig, state: WindowState, frame_input: np.ndarray,
         index: int) -> tuple[WindowState, Window | None]:
    """Advance one stream by one sampled frame; return the new state and the window it completed, if any."""
    if config.mode == EXACT:
        return _step_exact(head, clip_length, config, state, frame_input, index)
    return _step_continuous(head, clip_length, config, state, frame_input, index)


def _advance(head: Head, state: WindowState, frame_input: np.ndarray, active: np.ndarray) -> WindowState:
    """One step of every active slot, sharing the frame's input."""
    h, c, prob_sum = state.h, state.c, state.prob_sum
    if isinstance(head, FrameHead):
        step_probabilities = frame_input[None]
    else:
        h, c = h.copy(), c.copy()
        h[active], c[active] = head.recurrent_step(frame_input[None], h[active], c[active])
        step_probabilities = head.probabilities(h[active]) if head.per_timestep else None
    if step_probabilities is not None:
        prob_sum = prob_sum.copy()
        prob_sum[active] += step_probabilities
    return replace(state, h=h, c=c, prob_sum=prob_sum, steps=np.where(active, state.steps + 1, state.steps),
                   frames=state.frames + 1)


def _open_slot(state: WindowState, slot: int, index: int) -> WindowState:
    h, c, prob_sum, steps, first = (a.copy() for a in (state.h, state.c, state.prob_sum, state.steps, state.first))
    h[slot], c[slot], prob_sum[slot], steps[slot], first[slot] = 0, 0, 0, 0, index
    return replace(state, h=h, c=c, prob_sum=prob_sum, steps=steps, first=first)


def _step_exact(head, clip_length, config, state, frame_input, index):
    if state.frames % config.hop == 0:
        state = _open_slot(state, (state.frames // config.hop) % len(state.steps), index)
    state = _advance(head, state, frame_input, state.steps >= 0)
    (done,) = np.nonzero(state.steps == clip_length)
    if len(done) == 0:
        return state, None
    slot = int(done[0])  # windows start hop frames apart, so at most one completes per frame
    if averages_steps(head):
        probabilities = state.prob_sum[slot] / clip_length
    else:
        probabilities = head.probabilities(state.h[slot:slot + 1])[0]
    steps = state.steps.copy()
    steps[slot] = -1
    window = Window(np.asarray(probabilities, np.float32), int(state.first[slot]), index)
    return replace(state, steps=steps), window


def _step_continuous(head, clip_length, config, state, frame_input, index):
    if state.frames == 0 or (config.reset_every is not None and state.frames >= config.reset_every):
        state = _open_slot(replace(state, frames=0), 0, index)
    state = _advance(head, state, frame_input, np.ones(1, bool))
    if isinstance(head, FrameHead):
        # Stateless: the mean softmax of the last T frames, as the offline model averages a clip.
        recent = state.recent.copy()
        recent[(state.frames - 1) % clip_length] = frame_input
        state = replace(state, recent=recent)
        probabilities = recent[:min(state.frames, clip_length)].mean(axis=0)
    else:
        probabilities = head.probabilities(state.h)[0]
    if state.frames % config.hop != 0:
        return state, None
    return state, Window(np.asarray(probabilities, np.float32), int(state.first[0]), index)
