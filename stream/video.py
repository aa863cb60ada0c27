"""Decode a video file into RGB frames at the model's size and frame rate."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from stream.errors import LrcnError
from stream.sampling import on_grid

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")

# Files whose container does not state a frame rate are read as if shot at this rate.
FALLBACK_FPS = 25.0


def resize_rgb(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A BGR frame from OpenCV -> RGB uint8 at (height, width) = size."""
    height, width = size
    if frame_bgr.shape[:2] != (height, width):
        shrinking = frame_bgr.shape[0] * frame_bgr.shape[1] > height * width
        frame_bgr = cv2.resize(frame_bgr, (width, height),
                               interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def video_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if fps and math.isfinite(fps) and 1.0 <= fps <= 1000.0 else FALLBACK_FPS


def read_frames(path: str | Path, size: tuple[int, int], fps: float | None = None) -> np.ndarray:
    """All frames of a file on a 1/fps grid (every frame when fps is None), [N, H, W, 3] uint8 RGB.

    Raises LrcnError when the file is missing, cannot be opened or yields no frame. A file
    that breaks part way returns the frames decoded before the break.

    >>> read_frames("clip.avi", size=(112, 112), fps=10).shape    # doctest: +SKIP
    (52, 112, 112, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise LrcnError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise LrcnError(f"cannot open video: {path}")
        period = None if fps is None else 1.0 / fps
        source_period = 1.0 / video_fps(capture)
        frames, due, index = [], None, 0
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            keep, due = (True, None) if period is None else on_grid(index * source_period, due, period)
            if keep:
                frames.append(resize_rgb(frame, size))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise LrcnError(f"no decodable frame in video: {path}")
    return np.stack(frames)
