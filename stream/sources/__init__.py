"""Video sources: one supervised capture thread per stream, writing sampled, model-size RGB
frames into a FrameRing.

A source is a camera index ("0", /dev/video0), a video file, a network URL (rtsp, http(s),
tcp, udp, rtmp, srt), `pattern:[FPS[:SECONDS]]` (generated in memory), or `gst:PIPELINE`
(GStreamer, where a platform's hardware decoder lives there). The supervisor
(`supervisor.py`) is written once; captures plug in by scheme (`capture.py`), one module each;
both read a stream's settings from `options.py`.
"""

from lrcn.stream.sources import gstreamer, pattern, pyav  # noqa: F401 - each registers its schemes
from lrcn.stream.sources.capture import Capture, CaptureError, capture_class, register, scheme_of, schemes
from lrcn.stream.sources.options import SourceOptions, check_options
from lrcn.stream.sources.pattern import parse_pattern, pattern_frames
from lrcn.stream.sources.supervisor import (
    FINAL_STATES,
    Source,
    SourceState,
    StateChange,
    backoff_delay,
    check_source,
    open_source,
    stamped,
    stream_name,
    timeline,
)

__all__ = [
    "FINAL_STATES",
    "Capture",
    "CaptureError",
    "Source",
    "SourceOptions",
    "SourceState",
    "StateChange",
    "backoff_delay",
    "capture_class",
    "check_options",
    "check_source",
    "open_source",
    "parse_pattern",
    "pattern_frames",
    "register",
    "scheme_of",
    "schemes",
    "stamped",
    "stream_name",
    "timeline",
]
