"""Decode a video file into RGB frames at the model's size and frame rate, exactly as a live
stream of that file would reach the model: the same PyAV capture, grid and conversion; and
their motion (stream.flow), as the live capture computes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.flow import video_motion
from lrcn.stream.ring import Frame
from lrcn.stream.sampling import Sampler
from lrcn.stream.sources.capture import CaptureError
from lrcn.stream.sources.pyav import PyavCapture
from lrcn.stream.sources.supervisor import SourceOptions, timeline

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")

# Changes whenever decoding or conversion changes what read_frames returns: cached frames and
# features made by another decode path must not be mixed with these.
DECODE_VERSION = "pyav-area-1"


def read_frames(
    path: str | Path, size: tuple[int, int], fps: float | None = None, crop: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """All frames of a file on a 1/fps grid of its timestamps (every frame when fps is None),
    [N, H, W, 3] uint8 RGB.

    >>> read_frames("clip.avi", size=(112, 112), fps=10).shape    # doctest: +SKIP
    (52, 112, 112, 3)
    """
    return read_segments(path, size, fps, crop)[0]


def read_motion(
    path: str | Path, size: tuple[int, int], fps: float | None = None, crop: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The flow fields [N, H, W, 2] uint8 and motion levels [N] (NaN at a segment start: the
    video's first frame and any after a timestamp jump) of read_frames' frames, as a live stream
    of the file computes them."""
    return video_motion(*read_segments(path, size, fps, crop))


def read_video_frames(
    path: str | Path,
    size: tuple[int, int],
    fps: float | None = None,
    crop: tuple[int, int, int, int] | None = None,
    flow: bool = False,
) -> list[Frame]:
    """read_frames' frames as the capture hands them to the scheduler (stream.ring.Frame: index,
    segment, pts on the 1/fps grid) and, with `flow`, each one's field and motion level as a
    live stream of the file computes them: what every modality's encoder input is taken from."""
    frames, segments = read_segments(path, size, fps, crop)
    fields, levels = video_motion(frames, segments) if flow else (None, None)
    step = 1 / fps if fps else 0.0
    return [
        Frame(
            image,
            i,
            i * step,
            int(segment),
            pts=i * step,
            flow=None if fields is None else fields[i],
            motion=None if levels is None or np.isnan(levels[i]) else float(levels[i]),
        )
        for i, (image, segment) in enumerate(zip(frames, segments))
    ]


def read_segments(
    path: str | Path, size: tuple[int, int], fps: float | None = None, crop: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """read_frames' frames and the segment of each, [N] int (0 from the start, +1 at every
    timestamp jump, where a live stream's segment bumps too).

    Raises LrcnError when the file is missing, cannot be opened or yields no frame. A file
    that breaks part way returns the frames decoded before the break.
    """
    path = Path(path)
    if not path.is_file():
        raise LrcnError(f"video not found: {path}")
    try:
        capture = PyavCapture(str(path), size, SourceOptions(fps=fps, crop=crop))
    except CaptureError as err:
        raise LrcnError(err.reason) from None
    frames: list[np.ndarray] = []
    segments: list[int] = []
    segment = 0
    try:
        for _, jumped, frame in timeline(capture, live=False, sampler=Sampler(fps, capture.fps)):
            segment += bool(jumped and frames)
            if frame is not None:
                frames.append(capture.to_rgb(frame))
                segments.append(segment)
    except CaptureError as err:
        if err.fatal:
            raise LrcnError(f"{path}: {err.reason}") from None
    finally:
        capture.close()
    if not frames:
        raise LrcnError(f"no decodable frame in video: {path}")
    return np.stack(frames), np.array(segments, np.int64)
