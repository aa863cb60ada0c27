"""A stream's capture settings (`SourceOptions`), shared by the supervisor and every capture
backend, and their check.

>>> check_options(SourceOptions(fps=10, crop=(0, 0, 320, 240)))
>>> check_options(SourceOptions(rtsp_transport="sctp"))
Traceback (most recent call last):
...
lrcn.stream.errors.LrcnError: rtsp transport must be tcp or udp, got 'sctp'
"""

from __future__ import annotations

from dataclasses import dataclass

from lrcn.stream.errors import LrcnError

DECODERS_HELP = "cpu, auto, or a hardware decoder `lrcn doctor` lists"


@dataclass(frozen=True)
class SourceOptions:
    fps: float | None = None  # the sampling grid, in stream time; None: every frame
    crop: tuple[int, int, int, int] | None = None  # x, y, width, height in source pixels, before scaling
    decoder: str = "cpu"  # "cpu", "auto", or a hardware decoder (cuda, vaapi, qsv, ...)
    rtsp_transport: str = "tcp"  # "tcp" or "udp"
    pace: bool = True  # files: deliver at the file's rate, like a camera
    loop: bool = False  # files: start again at the end instead of ending
    flow: bool = False  # compute each sampled frame's optical flow (stream.flow); set by the pipeline
    ring_capacity: int = 64
    open_timeout_s: float = 8.0
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    backoff_jitter: float = 0.2  # each wait is shortened by up to this fraction, at random
    max_attempts: int | None = None  # failed (re)connection attempts in a row before 'failed'; None: never give up
    status_capacity: int = 256
    capture_nice: int = 5  # Linux: the capture thread (and its decoder's threads) runs this much nicer


def check_options(options: SourceOptions) -> None:
    """Raise LrcnError with one line for a setting that cannot work, before any thread starts."""
    if options.fps is not None and not options.fps > 0:
        raise LrcnError(f"sampling fps must be positive, got {options.fps}")
    if options.crop is not None:
        crop = options.crop
        if (
            len(crop) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in crop)
            or min(crop[:2]) < 0
            or min(crop[2:]) < 1
        ):
            raise LrcnError(
                f"crop must be [x, y, width, height] in whole source pixels, x, y >= 0 and "
                f"width, height >= 1, got {list(crop)}"
            )
    if options.rtsp_transport not in ("tcp", "udp"):
        raise LrcnError(f"rtsp transport must be tcp or udp, got {options.rtsp_transport!r}")
    if not options.backoff_max_s >= options.backoff_initial_s > 0:
        raise LrcnError(
            f"backoff must satisfy 0 < initial <= max, got {options.backoff_initial_s} and {options.backoff_max_s}"
        )
    if options.max_attempts is not None and options.max_attempts < 1:
        raise LrcnError(f"max attempts must be a positive number, got {options.max_attempts}")
