"""Motion: dense optical flow between a sampled frame and the one sampled before it, at model size.

Pure functions, one per step, and `MotionTracker`, which only remembers the previous frame's
grayscale: the live capture (stream.sources.supervisor) and the offline decode
(stream.video.read_motion) both run it over the sampled frames, so both compute the same fields.
The first frame of a segment (a connection, a loop, a timestamp jump) has no frame before it:
its field is zero and its motion level None, and no flow is ever computed across a segment start.

A field travels like an RGB frame: uint8 [H, W, 2], 128 + A * displacement (clipped), A =
`encoding_scale(size)`, so one unit of the encoded field is the same share of the picture at
every model size; a flow encoder records A with its weights.

>>> still = np.full((112, 112, 3), 90, np.uint8)
>>> tracker = MotionTracker()
>>> field, level = tracker.step(still, segment=0)
>>> field.shape, field.dtype, int(field[0, 0, 0]), level
((112, 112, 2), dtype('uint8'), 128, None)
>>> tracker.step(still, segment=0)[1]
0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

FLOW_OFFSET = 128
Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (previous gray, gray) -> float32 [H, W, 2] in pixels


def _dis(preset: int) -> Callable[[], Flow]:
    def make() -> Flow:
        dis = cv2.DISOpticalFlow.create(preset)
        # OpenCV's stubs miss that `flow`, an output array, may be None (allocated by the call).
        return lambda previous, current: dis.calc(previous, current, None)  # type: ignore[call-overload]

    return make


def _farneback() -> Flow:
    return lambda previous, current: cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)


# Candidates, compared by tools/evidence/bench_flow.py (docs/results/flow.json); each call makes a fresh
# instance: OpenCV's DIS object is not shared between threads.
METHODS: dict[str, Callable[[], Flow]] = {
    "dis-ultrafast": _dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
    "dis-fast": _dis(cv2.DISOPTICAL_FLOW_PRESET_FAST),
    "dis-medium": _dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
    "farneback": _farneback,
}
# The choice, by measurement (docs/evidence/results.md#motion-and-idle): 0.15 ms a field at 112 px and 0.14 px
# endpoint error, where DIS medium halves the error for 5x (at 224 px 11x) the cost and Farneback
# costs 10-20x; a still is exactly 0 with DIS (Farneback: 0.0006 px).
DEFAULT_METHOD = "dis-fast"


def grayscale(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] uint8."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def motion_level(field: np.ndarray) -> float:
    """Mean displacement length of a float field, in pixels at model size."""
    return float(np.mean(np.hypot(field[..., 0], field[..., 1])))


def encoding_scale(size: tuple[int, int]) -> float:
    """A: encoded units per pixel of displacement; 8 at 112 px, 4 at 224 (no saturation on real footage).

    >>> encoding_scale((112, 112)), encoding_scale((224, 224))
    (8.0, 4.0)
    """
    return 896.0 / min(size)


def flow_encoding(size: tuple[int, int], method: str = DEFAULT_METHOD) -> dict:
    """What a flow encoder's bundle records, so the runtime's fields match the ones it learned from.

    >>> flow_encoding((112, 112))
    {'method': 'dis-fast', 'offset': 128, 'scale': 8.0}
    """
    return {"method": method, "offset": FLOW_OFFSET, "scale": encoding_scale(size)}


def encode_field(field: np.ndarray, scale: float) -> np.ndarray:
    """Float field in pixels -> uint8 [H, W, 2], 128 + A * d, clipped."""
    return np.clip(np.rint(FLOW_OFFSET + scale * field), 0, 255).astype(np.uint8)


def decode_field(encoded: np.ndarray, scale: float) -> np.ndarray:
    return (encoded.astype(np.float32) - FLOW_OFFSET) / np.float32(scale)


def zero_field(size: tuple[int, int]) -> np.ndarray:
    """The field of a segment's first frame: no displacement."""
    return np.full((*size, 2), FLOW_OFFSET, np.uint8)


class MotionTracker:
    """The field and motion level of each sampled frame from the previous one of the same segment."""

    def __init__(self, method: str = DEFAULT_METHOD):
        self.flow = METHODS[method]()
        self.previous: np.ndarray | None = None
        self.segment: int | None = None
        self.computed = 0  # fields computed (segment starts excluded)

    def step(self, image: np.ndarray, segment: int) -> tuple[np.ndarray, float | None]:
        """(encoded field, motion level in pixels or None at a segment start) of `image`."""
        gray = grayscale(image)
        previous, self.previous = self.previous, gray
        starts = segment != self.segment
        self.segment = segment
        size = image.shape[:2]
        if starts or previous is None:
            return zero_field(size), None
        field = self.flow(previous, gray)
        self.computed += 1
        return encode_field(field, encoding_scale(size)), motion_level(field)


def video_motion(
    frames: np.ndarray, segments: np.ndarray, method: str = DEFAULT_METHOD
) -> tuple[np.ndarray, np.ndarray]:
    """Fields [N, H, W, 2] uint8 and motion levels [N] float (NaN at a segment start) of a
    video's sampled frames, each from the one before it in the same segment."""
    tracker = MotionTracker(method)
    fields = np.empty((*frames.shape[:3], 2), np.uint8)
    levels = np.empty(len(frames), np.float64)
    for i, (image, segment) in enumerate(zip(frames, segments)):
        fields[i], level = tracker.step(image, int(segment))
        levels[i] = np.nan if level is None else level
    return fields, levels


def window_level(levels) -> float | None:
    """The motion of a window: the lower quartile of its frames' levels, segment starts (NaN or
    None) left out; None if none is known. A quartile, not a mean: a still scene sent through an
    inter-frame codec moves only in the pairs where a keyframe is re-coded, a few of a window,
    which a mean counts and a quartile does not (docs/evidence/results.md#motion-and-idle).

    >>> window_level([None, 0.0, 0.0, 0.0, 0.9]), window_level([float("nan")])
    (0.0, None)
    """
    known = sorted(float(v) for v in levels if v is not None and not math.isnan(v))
    return float(np.percentile(known, 25)) if known else None


def window_motion(levels: np.ndarray, clip_length: int) -> np.ndarray:
    """window_level of every exact window of `clip_length` frames (hop 1) within each segment of a
    video's levels (a NaN starts a segment); a segment shorter than a window gives one of all its frames."""
    starts = [i for i, v in enumerate(levels) if math.isnan(v)] + [len(levels)]
    values = []
    for first, end in zip(starts, starts[1:]):
        last_ends = range(min(end, first + clip_length), end + 1)
        values += [window_level(levels[max(first, e - clip_length) : e]) for e in last_ends]
    return np.array([np.nan if v is None else v for v in values])
