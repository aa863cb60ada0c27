"""Per-stream head state: which windows of frames are open, and when one emits a prediction.

Pure functions over plain data. The scheduler computes each frame's `frame_inputs` once
(x·W + b for an LSTM head, the frame's softmax for a single-frame head, the features
themselves for a pooling head), then advances every
stream that has a frame due with one `step_streams` call per window config: the states of
all those streams are stacked, so their recurrent products are one matmul and their gates
one set of array operations, however many streams there are. `step` is the same for one
stream; `initial_state` is also the reset at a gap.

Exact-window mode keeps K = ceil(T / hop) LSTM states per stream whose windows start `hop`
frames apart. All of them share the frame's input projection; the recurrent products of S
streams are one [S·K, U] x [U, 4U] matmul. The state whose window reaches T frames emits what
the offline model gives for exactly those frames, then waits for its next start. Continuous
mode keeps one state, emits every `hop` frames and restarts every `reset_every` frames (never
if None).

The stateless heads (single-frame, pooling) keep instead a ring of their last T frame inputs
(with those frames' indices). An exact window of a pooling head is the model on that ring when
a slot, which then only counts frames, reaches T; in continuous mode both heads give the model
on the last min(frames since the restart, T) frames, and report those frames as the window.

>>> config = WindowConfig(mode=EXACT, hop=2)
>>> state = initial_state(head, clip_length=16, config=config)                      # doctest: +SKIP
>>> state, window = step(head, 16, config, state, frame_inputs(head, x)[0], index=41)  # doctest: +SKIP
>>> window.probabilities if window else None                                         # doctest: +SKIP
>>> states, windows = step_streams(head, 16, config, [state_a, state_b], frame_inputs(head, xs), [41, 7])  # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.head import FrameHead, Head, LstmHead, PoolHead

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
    """K slots of one stream. Idle slots have steps == -1 (and zero h, c, prob_sum)."""
    h: np.ndarray          # [K, U] LSTM output (U = 0 for the stateless heads)
    c: np.ndarray          # [K, U] LSTM cell
    steps: np.ndarray      # [K] frames in each slot's window so far
    first: np.ndarray      # [K] frame index of each slot's first frame
    prob_sum: np.ndarray   # [K, C] running sum of per-step softmax, for heads that average over steps
    recent: np.ndarray     # where `keeps_ring`: the last T frame inputs, the n-th since the reset at n % T ([T, C]
                           # softmaxes of a single-frame head, [T, F] features of a pooling head); else [T, 0]
    recent_index: np.ndarray  # [T] the frame indices of those frames
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


def keeps_ring(head: Head, config: WindowConfig) -> bool:
    """Whether a stream keeps its last T frame inputs: a pooling head pools them in every mode, a
    single-frame head averages them in continuous mode (its exact windows sum in their slots)."""
    return isinstance(head, PoolHead) or (isinstance(head, FrameHead) and config.mode == CONTINUOUS)


def initial_state(head: Head, clip_length: int, config: WindowConfig) -> WindowState:
    slots = slot_count(clip_length, config)
    units = head.units if isinstance(head, LstmHead) else 0
    classes = len(head.classes)
    if isinstance(head, PoolHead):
        recent = np.zeros((clip_length, head.feature_size), np.float32)
    else:
        recent = np.zeros((clip_length, classes if keeps_ring(head, config) else 0))
    return WindowState(h=np.zeros((slots, units), np.float32), c=np.zeros((slots, units), np.float32),
                       steps=np.full(slots, -1, np.int64), first=np.zeros(slots, np.int64),
                       prob_sum=np.zeros((slots, classes), np.float64), recent=recent,
                       recent_index=np.zeros(clip_length, np.int64))


def frame_inputs(head: Head, features: np.ndarray) -> np.ndarray:
    """The part of a step that depends on the frame alone, for a batch of frames [N, F]:
    x·W + b [N, 4U] for an LSTM head, the frame's softmax [N, C] for a single-frame head, the
    features [N, F] themselves for a pooling head (its pooling needs the whole window)."""
    features = np.asarray(features, np.float32)
    if isinstance(head, FrameHead):
        return head.probabilities(features)
    if isinstance(head, PoolHead):
        return features
    return head.input_projection(features)


def step(head: Head, clip_length: int, config: WindowConfig, state: WindowState, frame_input: np.ndarray,
         index: int) -> tuple[WindowState, Window | None]:
    """Advance one stream by one sampled frame; return the new state and the window it completed, if any."""
    (state,), (window,) = step_streams(head, clip_length, config, [state], frame_input[None], [index])
    return state, window


def step_streams(head: Head, clip_length: int, config: WindowConfig, states: Sequence[WindowState],
                 frame_inputs: np.ndarray, indices: Sequence[int]) -> tuple[list[WindowState], list[Window | None]]:
    """Advance S streams of one config by one sampled frame each (`frame_inputs[s]` and
    `indices[s]` are stream s's); the new states and the window each completed, if any.
    The given states are left as they were."""
    s = _stack(states)
    rows = np.arange(len(states))
    if config.mode == EXACT:
        opening = s.frames % config.hop == 0
        slots = (s.frames // config.hop) % s.steps.shape[1]
    else:
        opening = s.frames == 0
        if config.reset_every is not None:
            opening |= s.frames >= config.reset_every
        s.frames[opening] = 0
        slots = np.zeros(len(states), np.int64)
    opened = rows[opening], slots[opening]
    for array in (s.h, s.c, s.steps, s.prob_sum):
        array[opened] = 0
    s.first[opened] = np.asarray(indices, np.int64)[opening]
    _advance(head, s, frame_inputs)
    if keeps_ring(head, config):
        position = (s.frames - 1) % clip_length
        s.recent[rows, position] = frame_inputs
        s.recent_index[rows, position] = indices
    if config.mode == EXACT:
        windows = _completed(head, clip_length, s, indices)
    else:
        windows = _continuous_outputs(head, clip_length, config, s, indices)
    return [WindowState(s.h[i], s.c[i], s.steps[i], s.first[i], s.prob_sum[i], s.recent[i], s.recent_index[i],
                        int(s.frames[i])) for i in rows], windows


@dataclass
class _Stacked:
    """The states of S streams as arrays with a leading stream axis: fresh copies, free to change."""
    h: np.ndarray          # [S, K, U]
    c: np.ndarray
    steps: np.ndarray      # [S, K]
    first: np.ndarray
    prob_sum: np.ndarray   # [S, K, C]
    recent: np.ndarray     # [S, T, C] or [S, T, F]
    recent_index: np.ndarray  # [S, T]
    frames: np.ndarray     # [S]


def _stack(states: Sequence[WindowState]) -> _Stacked:
    stacked = lambda name: np.array([getattr(state, name) for state in states])  # a copy; faster than np.stack
    return _Stacked(stacked("h"), stacked("c"), stacked("steps"), stacked("first"), stacked("prob_sum"),
                    stacked("recent"), stacked("recent_index"), np.array([state.frames for state in states], np.int64))


def _advance(head: Head, s: _Stacked, frame_inputs: np.ndarray) -> None:
    """One step of every open slot of every stream; each stream's frame input is shared by its slots."""
    active = s.steps >= 0
    every = active.all()
    if isinstance(head, FrameHead):
        step_probabilities = frame_inputs[:, None, :]
    elif isinstance(head, PoolHead):
        step_probabilities = None  # its slots only count frames; the ring holds what it pools
    else:
        h, c = head.recurrent_step(frame_inputs[:, None, :], s.h, s.c)
        if not every:  # idle slots stay zero
            h, c = np.where(active[..., None], h, 0), np.where(active[..., None], c, 0)
        s.h, s.c = h, c
        step_probabilities = head.probabilities(h) if head.per_timestep else None
    if step_probabilities is not None:
        s.prob_sum += step_probabilities if every else np.where(active[..., None], step_probabilities, 0)
    s.steps[active] += 1
    s.frames += 1


def _completed(head: Head, clip_length: int, s: _Stacked, indices: Sequence[int]) -> list[Window | None]:
    """Exact mode: the window each stream completed on this frame (windows start hop frames apart, so at
    most one per stream), and those slots made idle."""
    windows: list[Window | None] = [None] * len(indices)
    rows, slots = np.nonzero(s.steps == clip_length)
    if len(rows) == 0:
        return windows
    if isinstance(head, PoolHead):
        probabilities = head.window_probabilities(_oldest_first(s, rows, clip_length))
    elif averages_steps(head):
        probabilities = s.prob_sum[rows, slots] / clip_length
    else:
        probabilities = head.probabilities(s.h[rows, slots])
    probabilities = probabilities.astype(np.float32)
    for row, slot, p in zip(rows.tolist(), slots.tolist(), probabilities):
        windows[row] = Window(p, int(s.first[row, slot]), int(indices[row]))
    for array in (s.h, s.c, s.prob_sum):
        array[rows, slots] = 0
    s.steps[rows, slots] = -1
    return windows


def _oldest_first(s: _Stacked, rows: np.ndarray, clip_length: int, field: str = "recent") -> np.ndarray:
    """The rings of streams `rows` ([R, T, ...]) in frame order: the min(frames, T) frames since the
    reset first, oldest first (the order the offline model sees them in), then any unfilled places."""
    start = np.maximum(s.frames[rows] - clip_length, 0) % clip_length
    order = (start[:, None] + np.arange(clip_length)) % clip_length
    return getattr(s, field)[rows[:, None], order]


def _continuous_outputs(head: Head, clip_length: int, config: WindowConfig, s: _Stacked,
                        indices: Sequence[int]) -> list[Window | None]:
    """Continuous mode: a window from each stream whose frame count reaches a multiple of hop."""
    (rows,) = np.nonzero(s.frames % config.hop == 0)
    windows: list[Window | None] = [None] * len(indices)
    if len(rows) == 0:
        return windows
    if isinstance(head, LstmHead):
        probabilities = head.probabilities(s.h[rows, 0])
        firsts = s.first[rows, 0]
    else:
        # Stateless: the model on the last min(frames, T) frames (a single-frame head's mean
        # softmax, as the offline model averages a clip; a pooling head's pooled softmax).
        filled = np.minimum(s.frames[rows], clip_length)
        recent = _oldest_first(s, rows, clip_length)
        if isinstance(head, PoolHead):
            probabilities = head.window_probabilities(recent, counts=filled)
        else:
            kept = np.arange(clip_length) < filled[:, None]
            probabilities = (recent * kept[..., None]).sum(axis=1) / filled[:, None]
        firsts = _oldest_first(s, rows, clip_length, "recent_index")[:, 0]
    probabilities = probabilities.astype(np.float32)
    for row, first, p in zip(rows.tolist(), firsts.tolist(), probabilities):
        windows[row] = Window(p, int(first), int(indices[row]))
    return windows
