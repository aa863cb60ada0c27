"""The supervisor: one capture thread per stream, written once for every kind of source.

It opens a capture (the backend its scheme names), offers every decoded frame to the stream's
sampler by presentation time, has only the sampled frames converted, and writes them into
the stream's FrameRing. Around that it keeps the stream's state (`SourceState`), reconnects a
live source with capped exponential backoff and jitter (forever, unless `max_attempts` says
otherwise), paces a file like a camera or reads it losslessly, and reports every state change
as a StateChange: kept in a small bounded deque (the oldest goes, and is counted, if nobody
drains it) and handed to `on_status`, which runs in the capture thread and must return quickly.

>>> source = open_source("clip.avi", size=(112, 112), options=SourceOptions(fps=10))   # doctest: +SKIP
>>> source.ring.read_new()[0].image.shape                                              # doctest: +SKIP
(112, 112, 3)
>>> source.stop()                                                                      # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lrcn.stream.credentials import redact
from lrcn.stream.errors import LrcnError
from lrcn.stream.flow import MotionTracker
from lrcn.stream.ring import FrameRing
from lrcn.stream.sampling import Sampler
from lrcn.stream.stats import SourceStats
from lrcn.stream.sources.capture import CAMERA, FILE, Capture, CaptureError, capture_class, scheme_of
from lrcn.stream.sources.options import SourceOptions, check_options

if TYPE_CHECKING:
    from lrcn.stream.recording import ClipRecorder


class SourceState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


FINAL_STATES = frozenset({SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED})


@dataclass(frozen=True)
class StateChange:
    stream: str
    state: SourceState
    reason: str  # one line; empty when there is nothing to add
    wall_time: float  # time.time() when it happened
    monotonic_time: float  # time.monotonic() when it happened
    segment: int  # the source's segment counter at that moment
    frames: int  # frames decoded so far


def stream_name(uri: str) -> str:
    """A topic-safe default stream id for a source.

    >>> stream_name("0"), stream_name("rtsp://admin:pw@10.0.0.5:8554/live"), stream_name("/data/walk.v2.avi")
    ('camera0', '10-0-0-5-8554-live', 'walk-v2')
    """
    scheme = scheme_of(uri)
    if scheme == CAMERA:
        text = f"camera{uri.removeprefix('/dev/video')}"
    elif scheme == FILE:
        text = Path(uri).stem
    elif "://" in uri:
        parts = urlsplit(uri)
        try:
            port = parts.port
        except ValueError:  # not a number: the capture's open says so; the id needs none
            port = None
        # Host, port and path only: never the user or password a URL may carry.
        text = "-".join(str(part) for part in (parts.hostname, port, parts.path.strip("/")) if part)
    else:
        text = scheme
    # The stream id rule (stream.settings): letters, digits, _ and -, at most 64. Only the host,
    # port and path of a URL, never its user or password.
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:64].rstrip("-") or "stream"


def backoff_delay(
    failures: int, initial_s: float, max_s: float, jitter: float = 0.0, uniform: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before the next attempt after `failures` consecutive failed attempts:
    doubling up to `max_s`, less a random fraction up to `jitter`, so cameras that dropped
    together do not all call back at the same instant.

    >>> [backoff_delay(n, 0.5, 3.0) for n in range(5)]
    [0.5, 1.0, 2.0, 3.0, 3.0]
    >>> backoff_delay(9, 0.5, 10.0, jitter=0.2, uniform=lambda: 1.0)
    8.0
    """
    return min(max_s, initial_s * 2.0**failures) * (1.0 - jitter * uniform())


def stamped(capture: Capture, live: bool) -> Iterator[tuple[float | None, Any]]:
    """(stream time, frame) for every frame the capture decodes. A source without timestamps is
    timed by arrival (live) or by position at its stated rate (a file, as training reads it). In
    a timestamped stream, a frame that lacks one follows its predecessor by a frame period, or
    has no time (None) if it comes first."""
    period = 1.0 / (capture.fps or 25.0)
    last = None
    for n, (pts, frame) in enumerate(capture.frames()):
        if not capture.timestamped:
            last = time.monotonic() if live else n * period
        elif pts is not None:
            last = pts
        elif last is not None:
            last += period
        yield last, frame


def timeline(capture: Capture, live: bool, sampler: Sampler) -> Iterator[tuple[float, bool, Any]]:
    """(stream time, a new segment starts here, the frame if it is on the sampler's grid else None)
    for every frame the capture decodes."""
    for t, frame in stamped(capture, live):
        if t is None:
            yield 0.0, False, None
            continue
        keep, jumped = sampler.offer(t)
        yield t, jumped, frame if keep else None


# How one connection ended.
_NO_FRAME, _ENDED_AFTER_FRAMES, _FATAL, _STOP_REQUESTED = "no frame", "ended after frames", "fatal", "stop requested"


class Source:
    """One capture thread for one stream; sampled, model-size frames go to `self.ring`.

    `live` sources (cameras, network streams) overwrite the ring's oldest frame when the
    reader falls behind, counting the drop; a `lossless` source (a file read unpaced) waits
    for room instead; a `paced` one (a file read like a camera) is live-like at its own rate.
    A `recorder` (stream.recording.ClipRecorder) is fed every compressed video packet, told of each
    connection (a file's loop included), and closed when the thread ends.
    """

    def __init__(
        self,
        uri: str,
        size: tuple[int, int],
        *,
        name: str | None = None,
        options: SourceOptions = SourceOptions(),
        new_frame: threading.Event | None = None,
        on_status: Callable[[StateChange], None] | None = None,
        recorder: ClipRecorder | None = None,
    ):
        self.uri = uri  # only the capture opens it: it may hold a password
        self.display = redact(uri)  # what every other place shows
        self.capture_class = capture_class(uri)
        self.live = self.capture_class.is_live(uri)
        self.paced = not self.live and options.pace
        self.lossless = not self.live and not options.pace
        self.name = name or stream_name(uri)
        self.size = size
        self.options = options
        self.ring = FrameRing(options.ring_capacity, size, new_frame, lossless=self.lossless, flow=options.flow)
        self.motion = MotionTracker() if options.flow else None  # the capture thread's alone
        self.on_status = on_status
        if recorder is not None and not self.capture_class.records:
            raise LrcnError(f"cannot record clips from {redact(uri)}: only sources read through PyAV can")
        self.recorder = recorder
        self.state: SourceState | None = None
        self.frames = 0  # frames decoded: the next frame's index
        self.sampled = 0  # frames on the grid, written to the ring
        self.flows = 0  # flow fields computed and written with their frame (a segment's first has none)
        self.segment = -1  # becomes 0 at the first frame
        self.reconnects = 0
        self.jumps = 0  # timestamp jumps or resets within a connection
        self.status_dropped = 0
        self._changes: deque[StateChange] = deque(maxlen=options.status_capacity)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run_then_close_recorder, name=f"source-{self.name}", daemon=True)

    def start(self) -> Source:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Ask the thread to stop, interrupting a blocked open or read, and wait up to
        `timeout_s`; True once it has ended. Frames already in the ring stay readable."""
        self._stopping.set()
        self.ring.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        elif self._thread.ident is None and self.recorder is not None:  # never started: no thread will close it
            self.recorder.close(timeout_s=0)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def poll_status(self) -> list[StateChange]:
        """State changes not yet taken, oldest first."""
        changes = []
        while True:
            try:
                changes.append(self._changes.popleft())
            except IndexError:
                return changes

    def stats(self) -> SourceStats:
        """The source's counters: `dropped` is frames the ring overwrote unread."""
        ring = self.ring.stats()
        return SourceStats(
            state=self.state.value if self.state else "created",
            frames=self.frames,
            sampled=self.sampled,
            flows=self.flows,
            segment=self.segment,
            reconnects=self.reconnects,
            jumps=self.jumps,
            dropped=ring.dropped,
            status_dropped=self.status_dropped,
            ring=ring,
        )

    # -- capture thread ----------------------------------------------------------------------

    def _emit(self, state: SourceState, reason: str = "") -> None:
        self.state = state
        # Reasons go to logs and every sink; a backend's error text may quote the URL it opened.
        change = StateChange(
            stream=self.name,
            state=state,
            reason=redact(reason),
            wall_time=time.time(),
            monotonic_time=time.monotonic(),
            segment=self.segment,
            frames=self.frames,
        )
        if len(self._changes) == self._changes.maxlen:
            self.status_dropped += 1
        self._changes.append(change)
        if self.on_status is not None:
            try:
                self.on_status(change)
            except Exception:  # noqa: BLE001 - a consumer's bug must not kill capture
                pass

    def _run_then_close_recorder(self) -> None:
        try:
            self._run()
        finally:
            if self.recorder is not None:
                self.recorder.close(timeout_s=0.0)  # its writer finishes the last clip by itself

    def _run(self) -> None:
        lower_thread_priority(self.options.capture_nice)
        options = self.options
        failures = 0  # consecutive attempts that produced no frame
        looping = False  # reopening a file at its end: not a state change
        if not self._stopping.is_set():
            self._emit(SourceState.CONNECTING, self.display)
        while not self._stopping.is_set():
            outcome, reason = self._connect(announce=not looping)
            looping = False
            if outcome == _STOP_REQUESTED:
                break
            if outcome == _FATAL:
                self._emit(SourceState.FAILED, reason)
                return
            if outcome == _ENDED_AFTER_FRAMES:
                failures = 0
                if not self.live:
                    if not options.loop:
                        self._emit(SourceState.ENDED, reason)
                        return
                    looping = True
                    continue
                self._emit(SourceState.LOST, reason)
            else:
                failures += 1
                if not self.live:
                    self._emit(SourceState.FAILED, reason)
                    return
                if options.max_attempts is not None and failures >= options.max_attempts:
                    self._emit(SourceState.FAILED, f"{reason}; gave up after {failures} attempt{'s' * (failures > 1)}")
                    return
            delay = backoff_delay(failures, options.backoff_initial_s, options.backoff_max_s, options.backoff_jitter)
            self._emit(SourceState.RECONNECTING, f"attempt {failures + 1} in {delay:.1f} s: {reason}")
            if self._stopping.wait(delay):
                break
        self._emit(SourceState.STOPPED)

    def _connect(self, announce: bool) -> tuple[str, str]:
        """Open one connection and read it until it ends; (outcome, one-line reason)."""
        try:
            capture = self.capture_class(self.uri, self.size, self.options, self._stopping)
        except CaptureError as err:
            if self._stopping.is_set():
                return _STOP_REQUESTED, ""
            return (_FATAL if err.fatal else _NO_FRAME), err.reason
        try:
            if self.recorder is not None:
                self.recorder.connected(capture.video_stream, timestamped=capture.timestamped)
                capture.packet_tap = self.recorder.feed
            return self._read(capture, announce)
        except Exception as err:  # noqa: BLE001 - a backend's surprise must not kill the thread: retried like a read failure
            reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
            return (_ENDED_AFTER_FRAMES if self.state is SourceState.CONNECTED else _NO_FRAME), reason
        finally:
            if self.recorder is not None:
                self.recorder.disconnected()
            capture.close()

    def _read(self, capture: Capture, announce: bool) -> tuple[str, str]:
        got_frame = False
        schedule = None  # paced: (monotonic time, stream time) the schedule counts from
        try:
            for t, jumped, frame in timeline(capture, self.live, Sampler(self.options.fps, capture.fps)):
                if self._stopping.is_set():
                    return _STOP_REQUESTED, ""
                arrived = time.monotonic()
                if not got_frame:
                    got_frame = True
                    self._segment_started(capture, announce)
                elif jumped:
                    self.segment += 1
                    self.jumps += 1
                    schedule = None
                if frame is not None:
                    delivered, schedule = self._deliver(capture, frame, t, arrived, schedule)
                    if not delivered:
                        return _STOP_REQUESTED, ""
                self.frames += 1
        except CaptureError as err:
            return self._outcome_of_error(err, got_frame)
        if self._stopping.is_set():
            return _STOP_REQUESTED, ""
        if not got_frame:
            return _NO_FRAME, f"no decodable frame in {'video' if not self.live else 'stream'}: {self.display}"
        return _ENDED_AFTER_FRAMES, "stream ended" if self.live else f"end of video after {self.frames} frames"

    def _segment_started(self, capture: Capture, announce: bool) -> None:
        self.segment += 1
        if announce:
            if self.state is SourceState.RECONNECTING:
                self.reconnects += 1
            self._emit(SourceState.CONNECTED, capture.description)

    def _deliver(
        self, capture: Capture, frame, t: float, arrived: float, schedule: tuple[float, float] | None
    ) -> tuple[bool, tuple[float, float] | None]:
        """Convert a sampled frame, wait for its time when paced, and write it to the ring:
        (False, _) when the source is stopping, else (True, the schedule to keep)."""
        image = capture.to_rgb(frame)
        flow = motion = None
        if self.motion is not None:
            flow, motion = self.motion.step(image, self.segment)
        if self.paced:
            schedule = self._wait_until_due(t, schedule)
            if schedule is None:
                return False, None
            arrived = time.monotonic()
        if not self.ring.write(image, self.frames, arrived, self.segment, t, flow, motion, capture.original(frame)):
            return False, schedule
        self.sampled += 1
        self.flows += motion is not None
        return True, schedule

    def _outcome_of_error(self, err: CaptureError, got_frame: bool) -> tuple[str, str]:
        if self._stopping.is_set():
            return _STOP_REQUESTED, ""
        if err.fatal:
            return _FATAL, err.reason
        if got_frame:
            return _ENDED_AFTER_FRAMES, f"{err.reason} after {self.frames} frames" if not self.live else err.reason
        return _NO_FRAME, err.reason

    def _wait_until_due(self, t: float, schedule: tuple[float, float] | None) -> tuple[float, float] | None:
        """Sleep until stream time `t` is due on the schedule; the schedule to keep, None if stopped.
        A frame already late by more than a sampling period restarts the schedule at now, rather
        than bursting to catch up."""
        now = time.monotonic()
        if schedule is None:
            return now, t
        due = schedule[0] + (t - schedule[1])
        late_limit = 1.0 / self.options.fps if self.options.fps else 0.1
        if now - due > late_limit:
            return now, t
        if self._stopping.wait(max(0.0, due - now)):
            return None
        return schedule


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread (and the threads it starts, such as a decoder's) `nice` steps nicer.

    The one inference thread serves every stream; each capture thread serves one and can fall a
    little behind without loss (the network buffers, the ring holds). When more threads are
    runnable than there are cores, Linux shares the cores evenly among them, so with a dozen HD
    decoders the inference thread gets a dozenth of the machine and its latency grows long before
    the cores are busy; nicer capture threads leave it the time it needs. Linux only: elsewhere
    (and where the process may not lower it) priorities stay as they are."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)


def open_source(
    uri: str,
    size: tuple[int, int],
    *,
    name: str | None = None,
    options: SourceOptions = SourceOptions(),
    new_frame: threading.Event | None = None,
    on_status: Callable[[StateChange], None] | None = None,
    start: bool = True,
    recorder: ClipRecorder | None = None,
) -> Source:
    """`check_source`, then the Source, started unless start=False."""
    check_source(uri, size, options)
    source = Source(uri, size, name=name, options=options, new_frame=new_frame, on_status=on_status, recorder=recorder)
    return source.start() if start else source


def check_source(uri: str, size: tuple[int, int], options: SourceOptions = SourceOptions()) -> None:
    """Check what can be checked up front (the scheme is known, a local file decodes, a crop fits
    it, the decoder exists) and raise LrcnError with one line if not."""
    check_options(options)
    capture_class(uri).check(uri, size, options)
