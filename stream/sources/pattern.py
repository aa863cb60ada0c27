"""`pattern:[FPS[:SECONDS]]`: a generated stream held in memory, already at the model size.

No decoding and no I/O, so what a benchmark or soak test measures is the pipeline alone. It
behaves like a file: paced at FPS by the supervisor (or as fast as the reader takes it, with
`pace = false`), ending after SECONDS, or never without them. Each stream waits a random
phase within the first frame interval before its first frame, as independent cameras do,
rather than all streams delivering at the same instant.
"""

from __future__ import annotations

import random

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.sources.capture import Capture, register

PREFIX = "pattern:"


def parse_pattern(uri: str) -> tuple[float, float | None]:
    """`pattern:[FPS[:SECONDS]]` -> (fps, seconds or None for endless); default 25 fps.

    >>> parse_pattern("pattern:"), parse_pattern("pattern:30"), parse_pattern("pattern:30:2.5")
    ((25.0, None), (30.0, None), (30.0, 2.5))
    """
    try:
        parts = [float(p) for p in uri[len(PREFIX) :].split(":") if p]
        fps = parts[0] if parts else 25.0
        seconds = parts[1] if len(parts) > 1 else None
        if len(parts) > 2 or not 0 < fps <= 10000 or (seconds is not None and not seconds > 0):
            raise ValueError
    except ValueError:
        raise LrcnError(f"pattern source must be pattern:[FPS[:SECONDS]], got {uri!r}") from None
    return fps, seconds


def pattern_frames(size: tuple[int, int], count: int = 50) -> np.ndarray:
    """`count` RGB frames of a bright square crossing a gradient, [count, H, W, 3] uint8."""
    height, width = size
    frames = np.empty((count, height, width, 3), np.uint8)
    frames[...] = (np.arange(width, dtype=np.uint16) * 255 // max(1, width - 1)).astype(np.uint8)[None, None, :, None]
    side = max(4, min(size) // 5)
    for i, frame in enumerate(frames):
        x = (i * max(1, (width - side) // count)) % max(1, width - side)
        frame[height // 3 : height // 3 + side, x : x + side] = (255, 220, 40)
    return frames


@register
class PatternCapture(Capture):
    schemes = ("pattern",)
    fps: float  # a pattern always states its rate

    @classmethod
    def is_live(cls, uri: str) -> bool:
        return False

    @classmethod
    def check(cls, uri, size, options) -> None:
        parse_pattern(uri)
        if options.crop is not None:
            raise LrcnError(f"{uri}: a pattern is generated at the model size; crop applies to decoded video")

    def __init__(self, uri, size, options, stopping=None):
        self.fps, self.seconds = parse_pattern(uri)
        self._stopping = stopping
        self._images = pattern_frames(tuple(size))
        self.description = f"{size[1]}x{size[0]} pattern at {self.fps:g} fps"

    def frames(self):
        phase = random.random() / self.fps
        if self._stopping is not None and self._stopping.wait(phase):
            return
        count = None if self.seconds is None else round(self.seconds * self.fps)
        n = 0
        while count is None or n < count:
            yield n / self.fps, n % len(self._images)
            n += 1

    def to_rgb(self, frame):
        return self._images[frame]
