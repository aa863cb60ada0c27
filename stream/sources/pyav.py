"""Capture through PyAV (FFmpeg's libraries): files, network URLs and V4L2 cameras.

Every frame is decoded (later frames reference it), but only the frames the supervisor asks
for are converted: cropped, then taken from the decoder's pixel format straight to RGB at the
model size in one libswscale pass (a `crop,scale,format` filter graph; the crop only moves
plane pointers). Training reads files through the same class (`stream.video.read_frames`), so
the pixels a live stream shows the model are the pixels it was trained on.

    rtsp, rtsps    TCP transport unless `rtsp_transport = "udp"`
    http(s), rtmp(s), srt, tcp, udp (MPEG-TS)
    N or /dev/videoN   a V4L2 camera
    anything else      a file path

`decoder` picks the decoder: "cpu"; "auto", the first hardware device of this platform that
opens, else the CPU, with the reason in the `connected` status; or a device type PyAV offers
here (`lrcn doctor` lists them), which must work or the stream fails with the reason.
"""

from __future__ import annotations

import functools
import itertools
import stat
import threading
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
import av.container.core
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available

from lrcn.stream.errors import LrcnError
from lrcn.stream.snapshots import Original
from lrcn.stream.sources.capture import CAMERA, FILE, Capture, CaptureError, register, scheme_of

# The order `auto` tries hardware decoders in; a platform offers one or two of them.
AUTO_PREFERENCE = ("cuda", "vaapi", "qsv", "videotoolbox", "d3d11va", "d3d12va", "dxva2", "vulkan")
SCALE_FLAGS = "area"  # an averaging downscale, so an HD frame's detail does not alias at 112 px
UDP_DEFAULTS = {"fifo_size": "50000000", "overrun_nonfatal": "1"}
# Containers whose frames carry no presentation time, only their order at a constant rate: an
# AVI's timestamps count chunks in decode order (packed B-frames come out mislabelled), and raw
# elementary streams have none. Their frames are timed by position (files) or arrival (live).
FRAME_COUNTED_FORMATS = {"avi", "h264", "hevc", "mjpeg", "mpjpeg", "rawvideo"}

av.logging.set_level(av.logging.PANIC)  # FFmpeg's own lines per failed attempt: the state changes say it once


# -- a stop that interrupts a blocked open or read ---------------------------------------------
# PyAV aborts a blocking FFmpeg call when its interrupt callback finds that the call has run
# longer than the container's timeout, measured with `time.monotonic()` as looked up in
# av.container.core. Standing in for that module there, this clock runs ahead by a growing
# amount in a thread whose stream is stopping, so the next check (FFmpeg checks about every
# 100 ms) aborts the call. Other threads see the real clock.
_stopping_of_thread = threading.local()
_AHEAD_S = 1e6


class _StopAwareTime:
    _ahead = itertools.count(1)

    @staticmethod
    def monotonic() -> float:
        stopping = getattr(_stopping_of_thread, "event", None)
        if stopping is not None and stopping.is_set():
            return time.monotonic() + _AHEAD_S * next(_StopAwareTime._ahead)
        return time.monotonic()


if getattr(av.container.core, "time", None) is time:
    av.container.core.time = _StopAwareTime  # type: ignore[attr-defined]  # PyAV's stubs omit the module's `time`


# -- decoders --------------------------------------------------------------------------------


def hardware_decoders() -> list[str]:
    """The hardware device types this PyAV build knows (not all of them have a device here)."""
    return list(hwdevices_available())


@functools.cache
def device_problem(kind: str) -> str | None:
    """None when a `kind` device opens here and can decode H.264, else why not (one line)."""
    try:
        HWAccel(kind, allow_software_fallback=False).create(av.codec.Codec("h264", "r"))
    except Exception as err:  # noqa: BLE001 - any failure means "not usable here"; its text says why
        return _one_line(err)
    return None


def check_decoder(decoder: str) -> None:
    if decoder not in ("cpu", "auto") and decoder not in hardware_decoders():
        raise LrcnError(
            f"unknown decoder {decoder!r}: PyAV {av.__version__} here offers cpu, auto"
            f"{''.join(', ' + d for d in hardware_decoders())}"
        )


def choose_hwaccel(decoder: str) -> tuple[HWAccel | None, str, str]:
    """(the HWAccel to open with, or None for the CPU; its device type; why `auto` fell back)."""
    if decoder == "cpu":
        return None, "cpu", ""
    if decoder == "auto":
        problems = []
        for kind in (k for k in AUTO_PREFERENCE if k in hardware_decoders()):
            problem = device_problem(kind)
            if problem is None:
                return HWAccel(kind, allow_software_fallback=True), kind, ""
            problems.append(f"{kind}: {problem}")
        return None, "cpu", f" (auto: {'; '.join(problems) or 'this PyAV has no hardware decoder'})"
    problem = device_problem(decoder)
    if problem is not None:
        raise CaptureError(f"decoder {decoder} cannot be used here: {problem}", fatal=True)
    return HWAccel(decoder, allow_software_fallback=False), decoder, ""


# -- conversion ------------------------------------------------------------------------------


def crop_problem(crop: tuple[int, int, int, int] | None, width: int, height: int) -> str | None:
    """Why `crop` does not fit a width x height frame, or None.

    >>> crop_problem((600, 0, 100, 100), 640, 480)
    'crop [600, 0, 100, 100] reaches outside the 640x480 frame'
    """
    if crop is None:
        return None
    x, y, w, h = crop
    if x + w > width or y + h > height:
        return f"crop {list(crop)} reaches outside the {width}x{height} frame"
    return None


class Scaler:
    """Decoded frames -> [H, W, 3] uint8 RGB at `size`, cropped first, in one swscale pass.
    The filter graph is rebuilt when the source's frame size or pixel format changes."""

    def __init__(self, size: tuple[int, int], crop: tuple[int, int, int, int] | None = None):
        self.size = size
        self.crop = crop
        self._shape: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        shape = (frame.width, frame.height, frame.format.name)
        graph = self._graph
        if graph is None or shape != self._shape:
            graph = self._graph = self._build(frame)
            self._shape = shape
        graph.vpush(frame)
        return graph.vpull().to_ndarray()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        problem = crop_problem(self.crop, frame.width, frame.height)
        if problem:  # the resolution changed: retried, it may change back
            raise CaptureError(problem)
        height, width = self.size
        graph = av.filter.Graph()
        nodes = [
            graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1000))
        ]
        if self.crop is not None:
            x, y, w, h = self.crop
            nodes.append(graph.add("crop", f"w={w}:h={h}:x={x}:y={y}:exact=1"))
        nodes.append(graph.add("scale", f"w={width}:h={height}:flags={SCALE_FLAGS}"))
        nodes.append(graph.add("format", "rgb24"))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        return graph


# -- the capture -----------------------------------------------------------------------------

NOT_A_FILE = {
    stat.S_ISDIR: "a directory",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISFIFO: "a named pipe",
    stat.S_ISSOCK: "a socket",
}


def file_path(uri: str) -> str:
    """The path a file source names: the source itself, or a file: URL's path (file:///srv/a.mp4,
    percent-escapes decoded); LrcnError for a file URL on another host.

    >>> file_path("clip.avi"), file_path("file:///srv/my%20clip.avi"), file_path("file://localhost/a.avi")
    ('clip.avi', '/srv/my clip.avi', '/a.avi')
    """
    if not uri[:5].lower() == "file:":
        return uri
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise LrcnError(f"{uri}: a file URL must name a file on this machine (file:///path), not on {parts.netloc!r}")
    return unquote(parts.path)


def check_file(uri: str) -> None:
    """LrcnError saying what is wrong when a file source is not a readable regular file."""
    path = Path(file_path(uri))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise LrcnError(f"video not found: {uri}") from None
    except OSError as err:
        raise LrcnError(f"cannot read {uri}: {err.strerror or err}") from None
    for test, kind in NOT_A_FILE.items():
        if test(mode):
            hint = " (a camera is N or /dev/videoN)" if kind.endswith("device") else ""
            raise LrcnError(f"{uri} is {kind}, not a video file{hint}")


def open_arguments(uri: str, options) -> tuple[str, str | None, dict[str, str]]:
    """(url, FFmpeg input format or None, FFmpeg options) for a source."""
    scheme = scheme_of(uri)
    if scheme == FILE:
        return file_path(uri), None, {}
    if scheme == CAMERA:
        return (f"/dev/video{uri}" if uri.isdigit() else uri), "v4l2", {}
    if scheme in ("rtsp", "rtsps"):
        return uri, None, {"rtsp_transport": options.rtsp_transport}
    if scheme == "udp":
        return uri, None, {k: v for k, v in UDP_DEFAULTS.items() if f"{k}=" not in uri}
    return uri, None, {}


@register
class PyavCapture(Capture):
    schemes = (FILE, CAMERA, "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt")
    records = True

    @classmethod
    def is_live(cls, uri: str) -> bool:
        return scheme_of(uri) != FILE

    @classmethod
    def check(cls, uri, size, options) -> None:
        check_decoder(options.decoder)
        if cls.is_live(uri):
            return
        check_file(uri)
        cls.check_first_frame(uri, size, options)

    def __init__(self, uri, size, options, stopping=None):
        _stopping_of_thread.event = stopping
        self.uri = uri
        self.options = options
        url, input_format, ffmpeg_options = open_arguments(uri, options)
        hwaccel, kind, fallback_note = choose_hwaccel(options.decoder)
        try:
            self.container = av.open(
                url,
                format=input_format,
                options=ffmpeg_options,
                timeout=(options.open_timeout_s, options.read_timeout_s),
                hwaccel=hwaccel,
            )
        except av.error.ExitError:
            raise CaptureError(f"no answer from {uri} within {options.open_timeout_s:g} s") from None
        except av.error.ProtocolNotFoundError:
            scheme = scheme_of(uri)
            raise CaptureError(
                f"this PyAV's FFmpeg cannot read {scheme}:// (PyAV {av.__version__}, FFmpeg "
                f"{av.ffmpeg_version_info}); read it as gst:{uri} through GStreamer, or install a PyAV "
                f"built on an FFmpeg with {scheme}",
                fatal=True,
            ) from None
        except (av.FFmpegError, OSError) as err:
            what = "video" if scheme_of(uri) == FILE else "source"
            raise CaptureError(f"cannot open {what} {uri}: {_one_line(err)}") from None
        try:
            self.video_stream = self._video_stream()
            context = self.video_stream.codec_context
            if hwaccel is not None and options.decoder != "auto" and not context.is_hwaccel:
                raise CaptureError(f"decoder {options.decoder} cannot decode {context.name} here", fatal=True)
            problem = crop_problem(options.crop, context.width, context.height) if context.width else None
            if problem:  # checked on every connect: a camera's resolution can change between connections
                raise CaptureError(problem)
        except CaptureError:
            self.container.close()
            raise
        self.timestamped = self.container.format.name not in FRAME_COUNTED_FORMATS
        rate = self.video_stream.average_rate or self.video_stream.guessed_rate
        self.fps = float(rate) if rate and 0 < float(rate) <= 1000 else None
        used = kind if context.is_hwaccel else "cpu"
        rate_text = f" at {self.fps:.1f} fps" if self.fps else ""
        self.description = f"{context.width}x{context.height} {context.name}{rate_text}, decoder {used}{fallback_note}"
        self._scale = Scaler(tuple(size), options.crop)

    def _video_stream(self):
        if not self.container.streams.video:
            raise CaptureError(f"no video stream in {self.uri}", fatal=scheme_of(self.uri) == FILE)
        return self.container.streams.video[0]

    def frames(self):
        try:
            for packet in self.container.demux(self.video_stream):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    decoded = ()  # a damaged packet (lost data): the decoder conceals it, reading goes on
                if self.packet_tap is not None and packet.size:  # size 0: the demuxer's final flush packet
                    self.packet_tap(packet)  # once decoded: a recorder's writer may change its fields
                for frame in decoded:
                    yield frame.time, frame
        except av.error.ExitError:
            raise CaptureError(f"no frame for {self.options.read_timeout_s:g} s") from None
        except av.FFmpegError as err:
            raise CaptureError(f"read failed: {_one_line(err)}") from None

    def to_rgb(self, frame):
        return self._scale(frame)

    def original(self, frame):
        # A reference to the decoded picture: the decoder allocates the next one elsewhere.
        return Original(frame, self.options.crop)

    def close(self) -> None:
        self.container.close()


def _one_line(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())
