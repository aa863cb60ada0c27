"""Per-stream window state: which windows of frames are open, and when one emits a prediction.

Pure functions over plain data, and only the slot and hop bookkeeping: what a head keeps per
frame and per window, and what a window outputs, is the head type's own (`stream.heads`). The
scheduler computes each frame's `frame_inputs` once, then advances every stream that has a
frame due with one `step_streams` call per window config: the states of all those streams are
stacked, so their recurrent products are one matmul and their gates one set of array
operations, however many streams there are. `step` is the same for one stream;
`initial_state` is also the reset at a gap.

Exact-window mode keeps K = ceil(T / hop) slots per stream whose windows start `hop` frames
apart. The slot whose window reaches T frames emits what the offline model gives for exactly
those frames, then waits for its next start. Continuous mode keeps one slot, emits every `hop`
frames and restarts every `reset_every` frames (never if None); a window then covers what the
head's output depends on (all the frames since the restart for an LSTM, the last T of them for
the single-frame and pooling heads).

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
from lrcn.stream.heads import Head, State

EXACT, CONTINUOUS = "exact", "continuous"
MODES = (EXACT, CONTINUOUS)


@dataclass(frozen=True)
class WindowConfig:
    mode: str = EXACT
    hop: int = 1  # frames between window starts (exact) or between predictions (continuous)
    reset_every: int | None = None  # continuous: restart the state after this many frames

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

    head: State  # the head's own state (`Head.initial_state`)
    steps: np.ndarray  # [K] frames in each slot's window so far
    first: np.ndarray  # [K] frame index of each slot's first frame
    recent_index: np.ndarray  # [T] the frame indices of the last T frames, oldest first
    frames: int = 0  # frames stepped since the last reset


@dataclass(frozen=True)
class Window:
    """One emitted prediction: raw probabilities of the frames first..last (frame indices)."""

    probabilities: np.ndarray  # [C]
    first: int
    last: int


def slot_count(clip_length: int, config: WindowConfig) -> int:
    """How many windows can be open at once.

    >>> slot_count(16, WindowConfig(hop=1)), slot_count(16, WindowConfig(hop=5)), slot_count(16, WindowConfig(hop=32))
    (16, 4, 1)
    """
    return math.ceil(clip_length / config.hop) if config.mode == EXACT else 1


def initial_state(head: Head, clip_length: int, config: WindowConfig) -> WindowState:
    slots = slot_count(clip_length, config)
    return WindowState(
        head=head.initial_state(slots, clip_length),
        steps=np.full(slots, -1, np.int64),
        first=np.zeros(slots, np.int64),
        recent_index=np.zeros(clip_length, np.int64),
    )


def frame_inputs(head: Head, features: np.ndarray) -> np.ndarray:
    """The part of a step that depends on the frame alone, for a batch of frames [N, F] (`Head.frame_inputs`)."""
    return head.frame_inputs(features)


def step(
    head: Head, clip_length: int, config: WindowConfig, state: WindowState, frame_input: np.ndarray, index: int
) -> tuple[WindowState, Window | None]:
    """Advance one stream by one sampled frame; return the new state and the window it completed, if any."""
    (state,), (window,) = step_streams(head, clip_length, config, [state], frame_input[None], [index])
    return state, window


def step_streams(
    head: Head,
    clip_length: int,
    config: WindowConfig,
    states: Sequence[WindowState],
    frame_inputs: np.ndarray,
    indices: Sequence[int],
) -> tuple[list[WindowState], list[Window | None]]:
    """Advance S streams of one config by one sampled frame each (`frame_inputs[s]` and
    `indices[s]` are stream s's); the new states and the window each completed, if any.
    The given states are left as they were."""
    s = _stack(states)
    rows = np.arange(len(states))
    frame_indices = np.asarray(indices, np.int64)
    if config.mode == EXACT:
        opening = s.frames % config.hop == 0
        slots = (s.frames // config.hop) % s.steps.shape[1]
    else:
        opening = s.frames == 0
        if config.reset_every is not None:
            opening |= s.frames >= config.reset_every
        s.frames[opening] = 0
        slots = np.zeros(len(states), np.int64)
    opened = np.zeros(s.steps.shape, bool)
    opened[rows[opening], slots[opening]] = True
    s.steps[opened] = 0
    s.first[opened] = frame_indices[opening]
    active = s.steps >= 0
    s.head = head.advance(s.head, frame_inputs, opened, active)
    s.steps[active] += 1
    s.frames += 1
    s.recent_index = np.concatenate([s.recent_index[:, 1:], frame_indices[:, None]], axis=1)
    if config.mode == EXACT:
        windows = _completed(head, clip_length, s, frame_indices)
    else:
        windows = _continuous_outputs(head, clip_length, config, s, frame_indices)
    return [
        WindowState(
            {name: array[i] for name, array in s.head.items()},
            s.steps[i],
            s.first[i],
            s.recent_index[i],
            int(s.frames[i]),
        )
        for i in rows
    ], windows


@dataclass
class _Stacked:
    """The states of S streams as arrays with a leading stream axis: fresh copies, free to change."""

    head: State  # each of the head's arrays, [S, ...]
    steps: np.ndarray  # [S, K]
    first: np.ndarray
    recent_index: np.ndarray  # [S, T]
    frames: np.ndarray  # [S]


def _stack(states: Sequence[WindowState]) -> _Stacked:
    stacked = lambda arrays: np.array(list(arrays))  # a copy; faster than np.stack
    return _Stacked(
        {name: stacked(state.head[name] for state in states) for name in states[0].head},
        stacked(state.steps for state in states),
        stacked(state.first for state in states),
        stacked(state.recent_index for state in states),
        np.array([state.frames for state in states], np.int64),
    )


def _completed(head: Head, clip_length: int, s: _Stacked, indices: np.ndarray) -> list[Window | None]:
    """Exact mode: the window each stream completed on this frame (windows start hop frames apart, so at
    most one per stream), and those slots made idle."""
    windows: list[Window | None] = [None] * len(indices)
    rows, slots = np.nonzero(s.steps == clip_length)
    if len(rows) == 0:
        return windows
    probabilities = head.emit(s.head, rows, slots, s.steps[rows, slots]).astype(np.float32)
    for row, slot, p in zip(rows.tolist(), slots.tolist(), probabilities):
        windows[row] = Window(p, int(s.first[row, slot]), int(indices[row]))
    s.steps[rows, slots] = -1
    return windows


def _continuous_outputs(
    head: Head, clip_length: int, config: WindowConfig, s: _Stacked, indices: np.ndarray
) -> list[Window | None]:
    """Continuous mode: a window from each stream whose frame count reaches a multiple of hop, covering
    the frames the head's output depends on."""
    (rows,) = np.nonzero(s.frames % config.hop == 0)
    windows: list[Window | None] = [None] * len(indices)
    if len(rows) == 0:
        return windows
    slots = np.zeros(len(rows), np.int64)
    steps = s.steps[rows, slots]
    probabilities, covered = head.emit_running(s.head, rows, slots, steps)
    # Fewer frames than the slot's (at most T, then): the first of them is still in recent_index.
    recent_first = s.recent_index[rows, clip_length - np.clip(covered, 1, clip_length)]
    firsts = np.where(covered < steps, recent_first, s.first[rows, slots])
    for row, first, p in zip(rows.tolist(), firsts.tolist(), probabilities.astype(np.float32)):
        windows[row] = Window(p, int(first), int(indices[row]))
    return windows
