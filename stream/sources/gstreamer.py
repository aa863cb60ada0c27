"""`gst:` sources through GStreamer, for platforms whose hardware decoder lives there (Jetson's
nvv4l2decoder, VA-API, V4L2 codecs).

    gst:PIPELINE   gst-launch syntax ending in an appsink (the one named `sink`, else the only one):
                   gst:rtspsrc location=rtsp://cam/live ! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! appsink
    gst:URI        rtsp://, http(s)://, file:///...: uridecodebin picks the decoder, a hardware one where it has one
    gst:PATH       a video file

The text after `gst:` is a URI when it starts with `scheme://`, a pipeline when it has a `!`,
else a file path. The decoder is the pipeline's (or decodebin's) choice, so `decoder` must be
cpu or auto.

GStreamer decodes every frame and hands it over raw: the appsink accepts the formats in
FORMATS, which videoconvert passes through untouched when a decoder already gives one of them.
Frames off the sampling grid are dropped as they are. A sampled frame's planes are copied into
a PyAV frame (with GStreamer's strides, offsets and colorimetry) and converted by the PyAV
capture's own `Scaler` (crop, then one swscale pass to RGB at the model size), so the model
sees the pixels it would see through PyAV and in training.

A source is a file (paced or read losslessly by the supervisor, failing for good on error)
when it reads one: a path, a file:// URI, or a pipeline whose sources are all filesrc,
multifilesrc, splitfilesrc or a videotestsrc that is not is-live. Anything else (rtspsrc,
udpsrc, v4l2src, nvarguscamerasrc, souphttpsrc, network URIs) is live and retried forever.

The appsink (a pipeline's own one too) runs with sync=false (the supervisor paces files; a
live frame is wanted at once) and drop=false: the supervisor samples by each frame's timestamp,
so every decoded frame must reach it. It holds at most 4 frames for a file (decoding pauses
while the supervisor paces) and 8 for a live source: the supervisor never blocks on a live
stream, so a backlog only forms when this machine cannot keep up, and then it goes upstream
into the network buffers, still compressed, as with PyAV. An appsink without caps of its own
is given FORMATS.

Frames are timed by their PTS in stream time (a file's edit list applied, as FFmpeg does). The
first frame must come within `open_timeout_s`, each next one within `read_timeout_s`; errors
posted on the bus become one-line CaptureErrors, end of stream ends `frames()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import av
import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.sources.capture import Capture, CaptureError, register
from lrcn.stream.sources.pyav import Scaler, crop_problem

PREFIX = "gst:"
MISSING_BINDINGS = (
    "gst: sources need GStreamer's Python bindings: pip install 'lrcn-stream[gst]' and Debian's "
    "gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0"
)
# GStreamer raw formats -> the PyAV pixel formats with the same planes in the same order.
FORMATS = {
    "I420": "yuv420p",
    "NV12": "nv12",
    "NV21": "nv21",
    "Y42B": "yuv422p",
    "Y444": "yuv444p",
    "NV16": "nv16",
    "YUY2": "yuyv422",
    "UYVY": "uyvy422",
    "YVYU": "yvyu422",
    "I420_10LE": "yuv420p10le",
    "P010_10LE": "p010le",
    "RGB": "rgb24",
    "BGR": "bgr24",
    "RGBA": "rgba",
    "BGRA": "bgra",
    "ARGB": "argb",
    "ABGR": "abgr",
    "RGBx": "rgb0",
    "BGRx": "bgr0",
    "xRGB": "0rgb",
    "xBGR": "0bgr",
    "GRAY8": "gray",
    "GRAY16_LE": "gray16le",
}
RAW_CAPS = f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}"
# GStreamer's colorimetry -> FFmpeg's colour properties (both use the ITU-T H.273 matrix codes).
COLOR_MATRICES = {"fcc": 4, "bt709": 1, "bt601": 6, "smpte240m": 7, "bt2020": 9}
COLOR_RANGES = {"16-235": 1, "0-255": 2}
# Sources that end, as a file does: they read one, or generate a test stream (unless is-live=true).
FINITE_SOURCES = {"filesrc", "multifilesrc", "splitfilesrc", "videotestsrc"}
HARDWARE_DECODER_NAMES = re.compile(r"nvv4l2decoder|nv\w*dec|vaapi\w*dec|va\w*dec|v4l2\w*dec|msdk\w*dec|qsv\w*dec")
POLL_S = 0.1  # how often a wait for the next frame looks at the bus and the stop request
RTSP_LATENCY_MS = 200  # rtspsrc's jitter buffer; its default (2 s) would delay every frame by that much
MAX_BUFFERS_FILE, MAX_BUFFERS_LIVE = 4, 8


def split_source(uri: str) -> tuple[str, str]:
    """("uri" | "pipeline" | "path", the text after gst:).

    >>> split_source("gst:rtsp://cam/live"), split_source("gst:videotestsrc ! appsink"), split_source("gst:a.mp4")
    (('uri', 'rtsp://cam/live'), ('pipeline', 'videotestsrc ! appsink'), ('path', 'a.mp4'))
    """
    text = uri[len(PREFIX) :].strip()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        return "uri", text
    return ("pipeline" if "!" in text else "path"), text


@functools.cache
def _gst() -> SimpleNamespace:
    """GStreamer's Python modules (.Gst, .GstVideo, .GLib), initialised; LrcnError when missing.
    Imported here, not at the top, so that importing stream.sources never needs GStreamer."""
    try:
        import gi

        for namespace in ("Gst", "GstApp", "GstVideo"):
            gi.require_version(namespace, "1.0")
        from gi.repository import GLib, Gst, GstApp, GstVideo  # noqa: F401 - GstApp gives appsinks their methods
    except (ImportError, ValueError) as err:
        raise LrcnError(f"{MISSING_BINDINGS} ({_one_line(err)})") from None
    Gst.init(None)
    return SimpleNamespace(Gst=Gst, GstVideo=GstVideo, GLib=GLib, gi=gi)


def _prefer_gcc_unwinder() -> None:
    """Put libgcc_s's stack unwinder first in the process's global symbol scope.

    GObject introspection loads libgstreamer into the global scope, and with it libunwind, whose
    `_Unwind_*` functions then win over libgcc_s's for libraries loaded later. libsrt (GStreamer's
    srtsrc) throws a C++ exception when its socket is closed under it; unwound by libunwind
    through libstdc++'s personality routine, that kills the process (seen with PyAV imported
    first, at every stop of a gst:srt:// source). libgcc_s loaded globally first keeps C++
    exceptions on the unwinder they were built for. Done at import, before anything loads gi."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libgcc_s.so.1", mode=os.RTLD_GLOBAL)


_prefer_gcc_unwinder()


def _elements(bin_):
    """Every element inside a bin, at any depth."""
    Gst = _gst().Gst
    found = []
    iterator = bin_.iterate_recurse()
    while True:
        result, element = iterator.next()
        if result == Gst.IteratorResult.OK:
            found.append(element)
        elif result == Gst.IteratorResult.RESYNC:  # the bin changed while we looked: look again
            found.clear()
            iterator.resync()
        else:
            return found


def _factory_name(element) -> str:
    factory = element.get_factory()
    return factory.get_name() if factory else ""


def build_pipeline(uri: str, rtsp_transport: str = "tcp"):
    """(pipeline, appsink) for a gst: source, not started; LrcnError (one line) if it cannot be built."""
    Gst, GLib = _gst().Gst, _gst().GLib
    kind, text = split_source(uri)
    if not text:
        raise LrcnError("gst: needs a pipeline, a URI or a file path after 'gst:'")
    if kind == "pipeline":
        try:
            element = Gst.parse_launch(text)
        except GLib.Error as err:
            raise LrcnError(f"gst: pipeline does not parse: {_one_line(err.message)}: {text}") from None
    else:
        if kind == "path" and not Path(text).is_file():
            raise LrcnError(f"video not found: {text}")
        element = Gst.parse_launch(
            f"uridecodebin name=decode caps=video/x-raw(ANY) expose-all-streams=false "
            f"! {_converter()} ! appsink name=sink"
        )
        decodebin = element.get_by_name("decode")
        decodebin.set_property("uri", Gst.filename_to_uri(text) if kind == "path" else text)
        decodebin.connect("source-setup", _set_up_source, rtsp_transport)
    if isinstance(element, Gst.Pipeline):
        pipeline = element
    else:
        pipeline = Gst.Pipeline()
        pipeline.add(element)
    return pipeline, _find_appsink(pipeline, text)


@functools.cache
def _converter() -> str:
    # Jetson's decoders output NVMM (device) memory, which only nvvidconv brings back to the CPU.
    return "nvvidconv" if _gst().Gst.ElementFactory.find("nvvidconv") else "videoconvert"


def _set_up_source(_decodebin, source, rtsp_transport: str) -> None:
    if _factory_name(source) == "rtspsrc":
        _gst().Gst.util_set_object_arg(source, "protocols", rtsp_transport)
        source.set_property("latency", RTSP_LATENCY_MS)


def _find_appsink(pipeline, text: str):
    sinks = [e for e in _elements(pipeline) if _factory_name(e) == "appsink"]
    named = [e for e in sinks if e.get_name() == "sink"]
    if named or len(sinks) == 1:
        return (named or sinks)[0]
    if not sinks:
        raise LrcnError(f"gst: pipeline has no appsink to take frames from (end it with '! appsink'): {text}")
    raise LrcnError(f"gst: pipeline has {len(sinks)} appsinks; name the one to read 'appsink name=sink': {text}")


@functools.lru_cache(maxsize=64)
def _pipeline_is_live(text: str) -> bool:
    try:
        pipeline, _ = build_pipeline(PREFIX + text)
    except LrcnError:
        return True  # the capture will fail with the reason; retrying is the live default
    verdicts = [live for live in map(_source_is_live, _elements(pipeline)) if live is not None]
    return not verdicts or any(verdicts)


def _source_is_live(element) -> bool | None:
    """Whether a pipeline's source element is live; None for an element that is no source."""
    name = _factory_name(element)
    uri = element.get_property("uri") if element.find_property("uri") is not None else None
    if uri:
        return not uri.lower().startswith("file:")
    if name in ("", "bin", "pipeline"):
        return None
    if any(t.direction == t.direction.SINK for t in element.get_factory().get_static_pad_templates()):
        return None  # it takes data from upstream: no source
    if element.find_property("is-live") is not None and element.get_property("is-live"):
        return True
    return name not in FINITE_SOURCES


def _bus_error(bus) -> CaptureError | None:
    """The first error posted on the pipeline's bus, as a one-line CaptureError; None if none.
    (Other messages are discarded, so nothing accumulates on a bus no main loop drains.)"""
    Gst = _gst().Gst
    message = bus.pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return None
    error, debug = message.parse_error()
    name, factory = message.src.get_name(), _factory_name(message.src)
    label = name if name.startswith(factory) else f"{name} ({factory})"
    reason = f"{label}: {_one_line(error.message)}"
    # GStreamer's debug text ends with the underlying cause ("Failed to connect. (Generic error)").
    detail = _one_line((debug or "").rsplit(":\n", 1)[-1]) if debug and ":\n" in debug else ""
    if detail and detail not in reason:
        reason += f" ({detail})"
    # No decoder for the stream's codec: trying again cannot help.
    fatal = error.matches(Gst.core_error_quark(), Gst.CoreError.MISSING_PLUGIN) or error.matches(
        Gst.stream_error_quark(), Gst.StreamError.CODEC_NOT_FOUND
    )
    return CaptureError(reason, fatal=fatal)


class _Layout:
    """How a sample of some caps maps onto a PyAV frame."""

    def __init__(self, caps):
        media = caps.to_string().split(",", 1)[0]
        if media != "video/x-raw":
            raise CaptureError(
                f"the appsink gets {media}, not raw video in memory: put '{_converter()} !' before it", fatal=True
            )
        self.caps = caps
        self.info = _video_info(caps)
        self.format = self.info.finfo.name
        if self.format not in FORMATS:
            raise CaptureError(
                f"the appsink gets {self.format} frames, which PyAV cannot take: put "
                f"'videoconvert !' before it, or let it pick one of {', '.join(FORMATS)}",
                fatal=True,
            )
        self.av_format = FORMATS[self.format]
        self.color_range, self.colorspace = 0, 2  # unspecified: FFmpeg's defaults, as for a stream that says nothing
        # GStreamer fills in a guess when a stream states no colorimetry; only a stated one is passed on.
        if caps.get_structure(0).has_field("colorimetry"):
            colorimetry = self.info.colorimetry
            self.color_range = COLOR_RANGES.get(colorimetry.range.value_nick, 0)
            self.colorspace = COLOR_MATRICES.get(colorimetry.matrix.value_nick, 2)
        rate = (self.info.fps_n / self.info.fps_d) if self.info.fps_n > 0 and self.info.fps_d > 0 else None
        self.fps = rate if rate and rate <= 1000 else None

    def frame(self, buffer) -> av.VideoFrame:
        """The buffer's pixels copied into a new PyAV frame, read with the caps' strides and
        offsets, or with the buffer's own video meta where its producer attached one."""
        meta = _gst().GstVideo.buffer_get_video_meta(buffer)
        offsets, strides = (meta.offset, meta.stride) if meta else (self.info.offset, self.info.stride)
        # One copy out of GStreamer's memory (PyGObject would copy a mapped buffer's bytes too).
        data = np.frombuffer(buffer.extract_dup(0, buffer.get_size()), np.uint8)
        frame = av.VideoFrame(self.info.width, self.info.height, self.av_format)
        frame.color_range, frame.colorspace = self.color_range, self.colorspace
        for plane, offset, stride in zip(frame.planes, offsets, strides):
            rows, width = plane.height, min(plane.line_size, stride)
            if offset + stride * (rows - 1) + width > data.size:
                raise CaptureError(f"a decoded {self.format} frame is smaller than its caps say")
            source = np.lib.stride_tricks.as_strided(data[offset:], (rows, width), (stride, 1), writeable=False)
            # A plane is a buffer, which PyAV's stubs do not declare.
            pixels = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
            pixels.reshape(rows, plane.line_size)[:, :width] = source
        return frame


def _video_info(caps):
    GstVideo = _gst().GstVideo
    if hasattr(GstVideo.VideoInfo, "new_from_caps"):
        return GstVideo.VideoInfo.new_from_caps(caps)
    info = GstVideo.VideoInfo()  # GStreamer before 1.20 (JetPack 5) fills the info in place
    result = info.from_caps(caps)
    return result[1] if isinstance(result, tuple) else info


@register
class GstCapture(Capture):
    schemes = ("gst",)
    timestamped = True

    @classmethod
    def is_live(cls, uri: str) -> bool:
        kind, text = split_source(uri)
        if kind == "path":
            return False
        if kind == "uri":
            return urlsplit(text).scheme.lower() != "file"
        return _pipeline_is_live(text)

    @classmethod
    def check(cls, uri, size, options) -> None:
        if options.decoder not in ("cpu", "auto"):
            raise LrcnError(
                f"decoder {options.decoder!r} does not apply to gst: sources: their pipeline picks the "
                f"decoder (name it there, e.g. '... ! nvv4l2decoder ! ...'); use cpu or auto"
            )
        build_pipeline(uri, options.rtsp_transport)
        if cls.is_live(uri):
            return
        cls.check_first_frame(uri, size, options)

    def __init__(self, uri, size, options, stopping=None):
        self.uri = uri
        self.options = options
        self._stopping = stopping or threading.Event()
        self.pipeline = None
        try:
            Gst = _gst().Gst
            self.pipeline, self.appsink = build_pipeline(uri, options.rtsp_transport)
        except LrcnError as err:
            raise CaptureError(str(err), fatal=True) from None
        live = self.is_live(uri)
        sink = self.appsink
        sink.set_property("sync", False)
        sink.set_property("drop", False)
        sink.set_property("max-buffers", MAX_BUFFERS_LIVE if live else MAX_BUFFERS_FILE)
        sink.set_property("enable-last-sample", False)
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string(RAW_CAPS))
        self._bus = self.pipeline.get_bus()
        self._scale = Scaler(tuple(size), options.crop)
        self._layout: _Layout | None = None
        try:
            if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                raise _bus_error(self._bus) or CaptureError(f"cannot start {uri}")
            self._first = self._pull(options.open_timeout_s, f"no frame from {uri} within {options.open_timeout_s:g} s")
            if self._first is not None:
                self._describe(self._first)
        except BaseException:
            self.close()
            raise

    def _describe(self, sample) -> None:
        layout = self._layout_of(sample)
        problem = crop_problem(self.options.crop, layout.info.width, layout.info.height)
        if problem:  # retried: the source's resolution can change back
            raise CaptureError(problem)
        self.fps = layout.fps
        decoders = [_factory_name(e) for e in _elements(self.pipeline) if _is_video_decoder(e.get_factory())]
        rate = f" at {self.fps:.1f} fps" if self.fps else ""
        self.description = (
            f"{layout.info.width}x{layout.info.height} {layout.format}{rate}, "
            f"decoder {decoders[0] if decoders else 'none'} (gstreamer)"
        )

    def _layout_of(self, sample) -> _Layout:
        caps = sample.get_caps()
        if self._layout is None or not caps.is_equal(self._layout.caps):
            self._layout = _Layout(caps)
        return self._layout

    def _pull(self, limit_s: float, timeout_reason: str):
        """The next sample; None at the end of the stream. Waits in short steps, so that an error
        on the bus, a stop request or the time limit is noticed within POLL_S."""
        started = time.monotonic()
        while not self._stopping.is_set():
            sample = self.appsink.try_pull_sample(int(POLL_S * 1e9))
            if sample is not None:
                return sample
            error = _bus_error(self._bus)
            if error is not None:
                raise error
            if self.appsink.is_eos():
                return None
            if time.monotonic() - started > limit_s:
                raise CaptureError(timeout_reason)
        raise CaptureError("stop requested")

    def frames(self):
        Gst = _gst().Gst
        sample, self._first = self._first, None
        while sample is not None:
            # Stream time, as FFmpeg counts it: a file's edit list shifts its buffers' PTS by a
            # segment start (an H.264 mp4 with B-frames starts at 0.08 s, and at 0 in PyAV).
            pts = sample.get_buffer().pts
            if pts != Gst.CLOCK_TIME_NONE:
                pts = sample.get_segment().to_stream_time(Gst.Format.TIME, pts)
            yield (None if pts == Gst.CLOCK_TIME_NONE else pts / 1e9), sample
            sample = self._pull(self.options.read_timeout_s, f"no frame for {self.options.read_timeout_s:g} s")

    def to_rgb(self, frame):
        return self._scale(self._layout_of(frame).frame(frame.get_buffer()))

    def close(self) -> None:
        self._first = None
        if self.pipeline is not None:
            self.pipeline.set_state(_gst().Gst.State.NULL)


def _is_video_decoder(factory) -> bool:
    klass = set(factory.get_metadata("klass").split("/")) if factory else set()
    return "Decoder" in klass and ("Video" in klass or "Image" in klass) and "Bin" not in klass


def doctor_lines() -> list[str]:
    """GStreamer's version and the hardware video decoders it offers here, for `lrcn doctor`."""
    try:
        Gst = _gst().Gst
    except LrcnError as err:
        return [f"GStreamer: not usable from Python: {err}"]
    factories = Gst.ElementFactory.list_get_elements(Gst.ELEMENT_FACTORY_TYPE_DECODER, Gst.Rank.NONE)
    hardware = sorted(
        f.get_name()
        for f in factories
        if _is_video_decoder(f)
        and ("Hardware" in f.get_metadata("klass") or HARDWARE_DECODER_NAMES.fullmatch(f.get_name()))
    )
    return [
        f"{Gst.version_string()} (PyGObject {_gst().gi.__version__})",
        f"GStreamer hardware video decoders: {', '.join(hardware) or 'none'}",
    ]


def _one_line(err) -> str:
    return " ".join(str(err).split()) or type(err).__name__
