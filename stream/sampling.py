"""Which frames a model sees: a grid of 1/fps in stream time, whatever the camera's rate.

Every decoded frame is offered with its presentation time; only the frames on the grid are
converted and kept. Training (`stream.video.read_frames`) and the live capture threads run
the same `Sampler`, so a model sees frames at the spacing it was trained on, however the
network bunches their arrival.

>>> sampler = Sampler(fps=10)
>>> [sampler.offer(i / 25) for i in range(6)]            # 25 fps in, 10 fps out
[(True, False), (False, False), (False, False), (True, False), (False, False), (True, False)]
>>> sampler.offer(0.19)                                  # a frame labelled out of order: skipped
(False, False)
>>> sampler.offer(7.5)                                   # a jump: a new segment starts
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterable

# A frame this close before its due time still counts: timestamps of a 25 fps file sampled at
# 10 fps land on 0.2 s as 0.19999999.
_TOLERANCE_S = 1e-3

# A step in stream time longer than this, either way (or three source frames, if longer), is a
# jump: the source skipped or restarted its clock, and no window may span it. A shorter step
# back (a frame labelled out of order) is no jump: the grid simply skips that frame.
MIN_JUMP_S = 1.0


def on_grid(t: float, next_due: float | None, period: float) -> tuple[bool, float]:
    """Decide whether the frame at stream time `t` is sampled; return (keep, next due time).

    >>> on_grid(0.0, None, 0.1)
    (True, 0.1)
    >>> on_grid(0.04, 0.1, 0.1)
    (False, 0.1)
    """
    if next_due is not None and t < next_due - _TOLERANCE_S:
        return False, next_due
    due = t + period if next_due is None else next_due + period
    # After a gap longer than a period, restart the grid at this frame instead of
    # emitting a burst of frames to catch up.
    if due <= t + _TOLERANCE_S:
        due = t + period
    return True, due


def grid_indices(timestamps: Iterable[float], fps: float) -> list[int]:
    """Indices of the frames that fall on a 1/fps grid.

    >>> grid_indices([i / 25 for i in range(10)], fps=10)
    [0, 3, 5, 8]
    """
    period = 1.0 / fps
    kept, due = [], None
    for i, t in enumerate(timestamps):
        keep, due = on_grid(t, due, period)
        if keep:
            kept.append(i)
    return kept


class Sampler:
    """The grid of one stream, and where its timeline breaks.

    `fps=None` keeps every frame. `source_fps`, when the source states it, widens the jump
    threshold for slow sources (a 0.5 fps camera steps 2 s at a time). `restart()` forgets
    the grid and the last time: a new connection or a file's next loop.
    """

    def __init__(self, fps: float | None, source_fps: float | None = None):
        self.period = None if fps is None else 1.0 / fps
        self.max_step_s = max(MIN_JUMP_S, 3.0 / source_fps) if source_fps else MIN_JUMP_S
        self.next_due: float | None = None
        self.last_t: float | None = None

    def restart(self) -> None:
        self.next_due = self.last_t = None

    def offer(self, t: float) -> tuple[bool, bool]:
        """(keep this frame, a new segment starts at it)."""
        jumped = self.last_t is not None and abs(t - self.last_t) > self.max_step_s
        if jumped:
            self.next_due = None
        self.last_t = t
        if self.period is None:
            return True, jumped
        keep, self.next_due = on_grid(t, self.next_due, self.period)
        return keep, jumped
