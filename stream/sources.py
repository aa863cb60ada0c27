"""Video sources: one capture thread per stream, writing RGB frames at the model's size into a FrameRing.

A source is a camera index ("0"), a video file (paced in real time by its frame rate, or as
fast as it decodes; optionally looped), or a network URL (rtsp, http(s), udp, tcp, rtmp).
A synthetic continuous stream (`lrcn synth --continuous`) is just a file. `pattern:[FPS[:SECONDS]]`
is a generated stream held in memory (no decoding, no I/O), for benchmarks and soak tests.

Live sources reconnect with exponential backoff when a read fails, the stream ends or stalls
past the read timeout. Every state change is a StatusEvent: kept in a small bounded deque
(the oldest goes, and is counted, if nobody drains it) and handed to `on_status`, which runs
in the capture thread and must return quickly.

>>> source = open_source("clip.avi", size=(112, 112), on_status=print)   # doctest: +SKIP
>>> source.ring.read_new()[0].image.shape                                 # doctest: +SKIP
(112, 112, 3)
>>> source.stop()                                                         # doctest: +SKIP
True
"""
from __future__ import annotations

import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from stream.errors import LrcnError
from stream.ring import FrameRing
from stream.video import resize_rgb, video_fps

CONNECTING, CONNECTED, LOST, RECONNECTING, ENDED, FAILED, STOPPED = (
    "connecting", "connected", "lost", "reconnecting", "ended", "failed", "stopped")
STATES = (CONNECTING, CONNECTED, LOST, RECONNECTING, ENDED, FAILED, STOPPED)
FINAL_STATES = (ENDED, FAILED, STOPPED)

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
PATTERN_PREFIX = "pattern:"


@dataclass(frozen=True)
class StatusEvent:
    stream: str
    state: str             # one of STATES
    reason: str            # one line; empty when there is nothing to add
    wall_time: float       # time.time() when it happened
    monotonic_time: float  # time.monotonic() when it happened
    segment: int           # the source's segment counter at that moment
    frames: int            # frames captured so far


@dataclass(frozen=True)
class SourceOptions:
    pace: bool = True                   # files: deliver at the file's frame rate, like a camera
    loop: bool = False                  # files: start again at the end instead of ending
    ring_capacity: int = 64
    open_timeout_s: float = 8.0
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_attempts: int | None = 5        # consecutive failed (re)connection attempts before 'failed'; None: forever
    status_capacity: int = 256


def source_kind(uri: str) -> str:
    """'camera', 'url', 'pattern' or 'file'.

    >>> source_kind("0"), source_kind("rtsp://cam/live"), source_kind("pattern:25"), source_kind("clip.avi")
    ('camera', 'url', 'pattern', 'file')
    """
    if uri.isdigit():
        return "camera"
    if uri.startswith(PATTERN_PREFIX):
        return "pattern"
    scheme = urlsplit(uri).scheme.lower()
    if scheme in URL_SCHEMES:
        return "url"
    if "://" in uri:
        raise LrcnError(f"unsupported source URL scheme {scheme!r} in {uri!r} "
                        f"(expected one of {', '.join(URL_SCHEMES)}, a file or a camera index)")
    return "file"


def stream_name(uri: str) -> str:
    """A topic-safe default stream id for a source.

    >>> stream_name("0"), stream_name("rtsp://10.0.0.5:8554/live"), stream_name("/data/walk.avi")
    ('camera0', '10.0.0.5-8554-live', 'walk')
    """
    kind = source_kind(uri)
    if kind == "camera":
        text = f"camera{uri}"
    elif kind == "pattern":
        text = "pattern"
    elif kind == "url":
        parts = urlsplit(uri)
        text = "-".join(str(part) for part in (parts.hostname, parts.port, parts.path.strip("/")) if part)
    else:
        text = Path(uri).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "stream"


def capture_url(uri: str) -> str:
    """The URL handed to FFmpeg: UDP gets a large FIFO and non-fatal overruns unless already set."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "udp":
        return uri
    query = dict(parse_qsl(parts.query))
    extra = [f"{k}={v}" for k, v in (("overrun_nonfatal", "1"), ("fifo_size", "50000000")) if k not in query]
    if not extra:
        return uri
    return uri + ("&" if parts.query else "?") + "&".join(extra)


def backoff_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Seconds to wait before the next attempt after `failures` consecutive failed attempts.

    >>> [backoff_delay(n, 0.5, 3.0) for n in range(5)]
    [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    return min(max_s, initial_s * 2.0 ** failures)


def open_capture(uri: str, options: SourceOptions) -> cv2.VideoCapture:
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout_s * 1000)]
    if source_kind(uri) == "camera":
        return cv2.VideoCapture(int(uri), cv2.CAP_ANY, timeouts)
    return cv2.VideoCapture(capture_url(uri), cv2.CAP_FFMPEG, timeouts)


def probe_file(path: str) -> None:
    """Raise LrcnError unless `path` is a video file with at least one decodable frame."""
    if not Path(path).is_file():
        raise LrcnError(f"video not found: {path}")
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise LrcnError(f"cannot open video: {path}")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise LrcnError(f"no decodable frame in video: {path}")
    finally:
        capture.release()


# What one connection's read loop ended with.
_NO_FRAME, _ENDED_AFTER_FRAMES, _STOP_REQUESTED = "no frame", "ended after frames", "stop requested"


class Source:
    """One capture thread for one stream; frames go to `self.ring`."""

    def __init__(self, uri: str, size: tuple[int, int], *, name: str | None = None,
                 options: SourceOptions = SourceOptions(), ring: FrameRing | None = None,
                 on_status: Callable[[StatusEvent], None] | None = None):
        self.uri = uri
        self.kind = source_kind(uri)
        self.name = name or stream_name(uri)
        self.size = size
        self.options = options
        self.ring = ring or FrameRing(options.ring_capacity, size)
        self.on_status = on_status
        self.state = "created"
        self.frames = 0           # the next frame's index
        self.segment = -1         # becomes 0 at the first frame
        self.reconnects = 0
        self.status_dropped = 0
        self.callback_errors = 0
        self.fps: float | None = None
        self._events: deque[StatusEvent] = deque(maxlen=options.status_capacity)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)

    def start(self) -> Source:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Ask the thread to stop and wait up to `timeout_s`; False if it is still inside a blocking
        open or read (it exits, releasing the capture, when that call returns: at most the timeouts)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def poll_status(self) -> list[StatusEvent]:
        """Status events not yet taken, oldest first."""
        events = []
        while True:
            try:
                events.append(self._events.popleft())
            except IndexError:
                return events

    def stats(self) -> dict:
        """Plain counters, ready for a status message: `dropped` is frames the ring overwrote unread."""
        ring = self.ring.stats()
        return {"state": self.state, "frames": self.frames, "segment": self.segment, "reconnects": self.reconnects,
                "dropped": ring["dropped"], "status_dropped": self.status_dropped,
                **{f"ring_{k}": v for k, v in ring.items() if k != "dropped"}}

    # -- capture thread ----------------------------------------------------------------------

    def _emit(self, state: str, reason: str = "") -> None:
        self.state = state
        event = StatusEvent(stream=self.name, state=state, reason=reason, wall_time=time.time(),
                            monotonic_time=time.monotonic(), segment=self.segment, frames=self.frames)
        if len(self._events) == self._events.maxlen:
            self.status_dropped += 1
        self._events.append(event)
        if self.on_status is not None:
            try:
                self.on_status(event)
            except Exception:  # noqa: BLE001 - a consumer's bug must not kill capture
                self.callback_errors += 1

    def _run(self) -> None:
        live = self.kind != "file"
        failures = 0       # consecutive attempts that produced no frame
        looping = False    # reopening a file at its end: not a state change
        if not self._stopping.is_set():
            self._emit(CONNECTING, self.uri)
        while not self._stopping.is_set():
            capture = open_capture(self.uri, self.options)
            try:
                outcome, reason = self._pump(capture, announce=not looping)
            finally:
                capture.release()
            looping = False
            if outcome == _STOP_REQUESTED:
                break
            if outcome == _ENDED_AFTER_FRAMES:
                failures = 0
                if not live:
                    if not self.options.loop:
                        self._emit(ENDED, reason)
                        return
                    looping = True
                    continue
                self._emit(LOST, reason)
            else:
                failures += 1
                if not live:
                    self._emit(FAILED, reason)
                    return
                if self.options.max_attempts is not None and failures >= self.options.max_attempts:
                    self._emit(FAILED, f"{reason}; gave up after {failures} attempt{'s' * (failures > 1)}")
                    return
            delay = backoff_delay(failures, self.options.backoff_initial_s, self.options.backoff_max_s)
            self._emit(RECONNECTING, f"attempt {failures + 1} in {delay:.1f} s")
            if self._stopping.wait(delay):
                break
        self._emit(STOPPED)

    def _pump(self, capture: cv2.VideoCapture, announce: bool) -> tuple[str, str]:
        """Read one connection until it ends; return (outcome, one-line reason)."""
        if not capture.isOpened():
            what = "video" if self.kind == "file" else "source"
            return _NO_FRAME, f"cannot open {what}: {self.uri}"
        if self.kind == "file":
            self.fps = video_fps(capture)
        period = 1.0 / self.fps if self.fps and self.options.pace and self.kind == "file" else None
        got_frame, next_due = False, None
        while not self._stopping.is_set():
            asked = time.monotonic()
            ok, bgr = capture.read()
            if not ok or bgr is None:
                if not got_frame:
                    return _NO_FRAME, self._no_frame_reason()
                if self.kind == "file":
                    return _ENDED_AFTER_FRAMES, f"end of video after {self.frames} frames"
                waited = time.monotonic() - asked
                if waited >= 0.9 * self.options.read_timeout_s:
                    return _ENDED_AFTER_FRAMES, f"no frame for {waited:.1f} s"
                return _ENDED_AFTER_FRAMES, "stream ended"
            image = resize_rgb(bgr, self.size)
            if not got_frame:
                got_frame = True
                self.segment += 1
                if self.segment > 0 and announce:
                    self.reconnects += 1
                if announce:
                    self._emit(CONNECTED, self._connected_reason(capture))
            if period is not None:
                next_due = time.monotonic() if next_due is None else next_due
                if self._stopping.wait(max(0.0, next_due - time.monotonic())):
                    break
            now = time.monotonic()
            if period is not None:
                # Late by more than a frame: restart the schedule rather than burst to catch up.
                next_due = max(next_due, now - period) + period
            self.ring.write(image, self.frames, now, self.segment)
            self.frames += 1
        return _STOP_REQUESTED, ""

    def _no_frame_reason(self) -> str:
        if self.kind == "file":
            return f"no decodable frame in video: {self.uri}"
        return f"opened but no frame from {self.uri}"

    def _connected_reason(self, capture: cv2.VideoCapture) -> str:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        return f"{width}x{height} at {fps:.1f} fps" if fps and fps < 1000 else f"{width}x{height}"


def parse_pattern(uri: str) -> tuple[float, float | None]:
    """`pattern:[FPS[:SECONDS]]` -> (fps, seconds or None for endless); default 25 fps.

    >>> parse_pattern("pattern:"), parse_pattern("pattern:30"), parse_pattern("pattern:30:2.5")
    ((25.0, None), (30.0, None), (30.0, 2.5))
    """
    try:
        parts = [float(p) for p in uri[len(PATTERN_PREFIX):].split(":") if p]
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
        frame[height // 3:height // 3 + side, x:x + side] = (255, 220, 40)
    return frames


class PatternSource(Source):
    """A generated live stream: frames from memory at a steady rate, stamped like a camera's.
    Capture costs nothing, so what a benchmark measures is the pipeline alone. Each stream
    starts at its own phase within the first frame interval (from its name), as independent
    cameras do, rather than all streams delivering at the same instant."""

    def _run(self) -> None:
        fps, seconds = parse_pattern(self.uri)
        frames = pattern_frames(self.size)
        self.fps = fps
        if self._stopping.is_set():
            self._emit(STOPPED)
            return
        self._emit(CONNECTING, self.uri)
        self.segment = 0
        self._emit(CONNECTED, f"{self.size[1]}x{self.size[0]} pattern at {fps:g} fps")
        period = 1.0 / fps
        next_due = time.monotonic() + period * (zlib.crc32(self.name.encode()) % 1000) / 1000
        end = None if seconds is None else next_due + seconds
        while not self._stopping.wait(max(0.0, next_due - time.monotonic())):
            now = time.monotonic()
            if end is not None and now >= end:
                self._emit(ENDED, f"end of pattern after {self.frames} frames")
                return
            self.ring.write(frames[self.frames % len(frames)], self.frames, now, self.segment)
            self.frames += 1
            next_due = max(next_due, now - period) + period  # late by more than a frame: no burst
        self._emit(STOPPED)


def open_source(uri: str, size: tuple[int, int], *, name: str | None = None,
                options: SourceOptions = SourceOptions(), ring: FrameRing | None = None,
                on_status: Callable[[StatusEvent], None] | None = None, start: bool = True) -> Source:
    """Check what can be checked up front (a local file exists and decodes, the URL scheme is known)
    and raise LrcnError with one line if not; then return the Source, started unless start=False."""
    kind = source_kind(uri)
    if kind == "file":
        probe_file(uri)
    elif kind == "pattern":
        parse_pattern(uri)
    source = (PatternSource if kind == "pattern" else Source)(uri, size, name=name, options=options, ring=ring, on_status=on_status)
    return source.start() if start else source
