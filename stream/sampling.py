"""Which frames a model sees: a grid of 1/fps by timestamp, whatever the camera's rate.

Training decodes files through `grid_indices`; the live scheduler steps `on_grid` frame by
frame. Both use the same rule, so a model sees frames at the spacing it was trained on.
"""
from __future__ import annotations

from typing import Iterable

# A frame this close before its due time still counts: timestamps of a 25 fps file sampled at
# 10 fps land on 0.2 s as 0.19999999.
_TOLERANCE_S = 1e-3


def on_grid(t: float, next_due: float | None, period: float) -> tuple[bool, float]:
    """Decide whether the frame captured at `t` is sampled; return (keep, next due time).

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
