"""Clip recording: one MP4 per event, remuxed from the source's compressed packets (no re-encode).

A stream configured with `record = { dir = "...", pre_s = 5, post_s = 5, max_gb = 10 }` gets one
`ClipRecorder`, used by three threads:

- The capture thread (`stream.sources.supervisor.Source`) calls `connected(stream)` when a
  connection opens (a reconnect or a file's next loop included), `feed(packet)` with every
  demuxed video packet, and `disconnected()` when the connection ends. `feed` only appends to
  the pre-roll and, while a clip is open, to the writer's queue; it never touches the disk.
- The inference thread calls `start(event_time_s, label, event_id)` when an event starts,
  `end(event_time_s, event_id)` when it ends, `take_problem()` to publish failures, and `close()` at stop.
- A writer thread of the recorder's own muxes the queued packets into the clip, so a slow or
  hung disk delays only clips, never capture or inference. Its queue is bounded by bytes: a
  clip whose backlog grows past `WRITER_BACKLOG_BYTES` is given up, with a problem.

Time. Everything is in stream seconds, the clock of the frame times the capture yields (PyAV
`frame.time`, pts * time_base), so a packet's time is its pts in seconds and the recorder works
the same whether the source is paced, read faster than real time, or bunched by the network.
Sources without presentation times (frame-counted formats: AVI, raw H.264, MJPEG) are timed by
position or arrival instead, which no packet carries: such a stream records nothing, and says so.

Pre-roll. The recorder keeps the packets of the last `pre_s + lag_s` seconds of stream time, and
always back to a keyframe at or before that horizon (a clip must start at a keyframe to decode).
`lag_s` is how far an event's start may trail the newest packet when `start` is called: the
model's window, `min_duration_s`, inference latency and, for a file read unpaced, the ring's
length in stream time (capture runs that far ahead of inference). A clip starts at the last
keyframe at or before `event_start - pre_s`, or at the oldest kept keyframe if the pre-roll no
longer reaches back that far, or at the next keyframe if none is kept yet.

End. `end(t)` lets the clip run until a packet whose decode time is at or after `t + post_s`;
as decode times never exceed presentation times and only grow, every frame shown before that
moment is in the clip, with all the frames it references (and, with B-frames, a frame or two
after it, the references of those before it). Past that packet the clip still takes the packets
shown before its latest frame (B-frames decoded after a later P-frame), so it has no hole; its
end is the first packet shown after its latest frame. A clip never runs past `max_clip_s` from
its first packet: at the first packet shown at or after that, it ends, event or not (with
B-frames, the few frames shown just before the cap may be left out, never one in the middle). One clip per event, never more and never shared: an
event that starts while another's clip is still open (in its post-roll) gets its own clip, whose
pre-roll holds the same packets (the recorder keeps each packet once and muxes it into every
clip open over it, without decoding). A lost connection, a file's loop, a timestamp reset or
jump, or `close()` ends every open clip at once with what it has.

So a clip holds: from the last keyframe at or before `event start - pre_s` (or the oldest kept,
or the next one) to the first packet decoded at or after `event end + post_s`, at most
`max_clip_s` of stream time, with the source's own packets and timestamps shifted to start at 0.

Files. A clip is `<dir>/<stream>/<event id>.mp4` (stream.events.new_event_id), written as `<name>.mp4.part` and renamed when complete, so a reader
never sees a half-written clip; a clip whose name a file already has (someone else's) is not
written, and that file is left as it is.
Before a clip's file is opened it gets a row in the record dir's media index (`lrcn.sqlite`,
stream.media_index), marked finished with its size once renamed; an abandoned clip loses both
its part file and its row. `dir` is made and checked when a recorder is constructed; after that
the recorder creates only its stream's folder, so a record dir that goes away (an unmounted
disk) fails clips rather than silently filling the disk beneath.

Retention (stream.retention): one thread per record dir deletes indexed clips, oldest first,
past `retain_days`, above `max_gb` (10^9 bytes) and while less than `min_free_gb` is free on the
dir's filesystem, on a timer and at once when a clip fails for lack of space. It deletes only
what the index lists: other files in the dir, `.part` files included, are never touched. The
newest clip goes only by age; if it alone breaks a limit it stays, with a problem saying so.

Failures (a full disk, a removed or unwritable dir, a codec MP4 cannot hold) never leave this
module as exceptions: the clip is dropped (its part file removed), counted as failed, and
`problem` holds one line, "clip not written: ...", for the pipeline's status.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import queue
import re
import sqlite3
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from lrcn.stream import retention
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EVENT_ID_PATTERN, new_event_id
from lrcn.stream.media_index import MediaIndex
from lrcn.stream.settings import Record, check_values, default

GB = 10**9
DEFAULT_LAG_S = 10.0
WRITER_BACKLOG_BYTES = 128 * 2**20  # per recorder: about 4 min of a 4 Mbit/s camera
PREROLL_MAX_BYTES = 64 * 2**20  # per recorder: a cap for sources with very long GOPs
JUMP_FORWARD_S = 10.0  # a longer step forward in decode time starts a new timeline
JUMP_BACK_S = 1.0  # so does a step back longer than this; shorter ones are nudged


@dataclass(frozen=True)
class RecordRules:
    """Where a stream's clips go and how much of them to keep: `max_gb` of clips in `dir`,
    none older than `retain_days` (None: no age limit), and at least `min_free_gb` left free on
    `dir`'s filesystem (retention deletes the oldest clips to keep it so)."""

    # Defaults and ranges are the settings schema's `record` table (stream.settings), declared there once.
    dir: Path
    pre_s: float = default(Record, "pre_s")
    post_s: float = default(Record, "post_s")
    max_clip_s: float = default(Record, "max_clip_s")
    max_gb: float = default(Record, "max_gb")
    retain_days: float | None = default(Record, "retain_days")
    min_free_gb: float = default(Record, "min_free_gb")

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))
        check_values(
            {
                name: getattr(self, name)
                for name in ("pre_s", "post_s", "max_clip_s", "max_gb", "retain_days", "min_free_gb")
                if getattr(self, name) is not None
            },
            Record,
            name=lambda key: f"record {key}",
        )

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * GB)

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_gb * GB)


def check_record_dir(path: str | os.PathLike) -> Path:
    """Create the record dir if needed and prove it writable; raise LrcnError with one line if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LrcnError(f"record dir {path} cannot be created: {_reason(err)}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise LrcnError(f"record dir {path} is not writable: {_reason(err)}") from None
    return path


def safe_label(label: str) -> str:
    """A label as it may appear in a file name.

    >>> safe_label("pick up/put down"), safe_label("..")
    ('pick-up-put-down', 'event')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.")[:64] or "event"


class _Kept:
    """A fed packet with what the threads need of it, read once in the capture thread: the
    writer later changes the packet's own fields when it muxes it."""

    __slots__ = ("packet", "seq", "pts", "dts", "duration", "t", "d", "key", "wall", "size")

    def __init__(self, packet, seq, pts, dts, time_base: float):
        self.packet, self.seq, self.pts, self.dts = packet, seq, pts, dts
        self.duration = packet.duration
        self.t, self.d = pts * time_base, dts * time_base  # presentation and decode time, seconds
        self.key = packet.is_keyframe
        self.wall = time.time()
        self.size = packet.size


class _Template:
    """The connection's video stream as a template for clips: a copy of its codec parameters in
    an output stream of our own, so clips can be opened after the connection closed."""

    def __init__(self, stream):
        self.time_base = Fraction(stream.time_base)
        self.seconds = float(self.time_base)
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = self._holder.add_stream_from_template(stream)


class _Clip:
    def __init__(self, path: Path, template: _Template, wall: float, event_id: str):
        self.path = path
        self.event_id = event_id
        self.wall = wall  # Unix time of its event's first frame
        self.template = template
        self.until: float | None = None  # decode time it ends at; None while an event is open
        self.cap: float | None = None  # presentation time it ends at whatever the event does (max_clip_s)
        self.keyed = False  # its first packet (a keyframe) is queued
        self.last_pts: int | None = None  # the latest presentation time among its queued packets
        # Past its end: packets still shown before `last_pts` (B-frames that fill a hole) are kept
        self.closing_before: int | None = None
        self.done = False  # its end is queued: no packet may follow
        self.failed: str | None = None


class ClipRecorder:
    """Clips of one stream (see the module docstring). `lag_s`: how far, in stream seconds, an
    event's start time may trail the newest packet when `start` is called; the pre-roll keeps
    `pre_s + lag_s`. Creates the record dir if needed; LrcnError (one line) if it cannot be
    created or written."""

    def __init__(self, rules: RecordRules, stream: str, lag_s: float = DEFAULT_LAG_S):
        check_record_dir(rules.dir)
        self.rules = rules
        self.stream = safe_label(stream)
        self.retention, self._retention_token = retention.attach(rules, self.stream, self._report)
        self.keep_s = rules.pre_s + lag_s
        self.folder = rules.dir / self.stream
        self._lock = threading.Lock()
        self._kept: deque[_Kept] = deque()
        self._keys: deque[_Kept] = deque()
        self._kept_bytes = 0
        self._seq = itertools.count()
        self._template: _Template | None = None
        self._unusable: str | None = None  # why this connection cannot record
        self._newest_t: float | None = None
        self._last_d: float | None = None
        self._open: dict[str, _Clip] = {}  # event id -> its clip, while packets still go to it
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_bytes = 0
        self._closed = False
        self._problem: str | None = None
        self._clips = self._failed = 0
        self._writer = threading.Thread(target=self._write, name=f"clips-{self.stream}", daemon=True)
        self._writer.start()

    # -- capture thread ----------------------------------------------------------------------

    def connected(self, stream, timestamped: bool = True) -> None:
        """A new connection (or a file's next loop) with this PyAV video stream: the pre-roll
        and any open clip belong to the previous one."""
        if self._closed:
            return
        template, unusable = None, None
        if not timestamped:
            unusable = (
                f"clips need presentation times, and {stream.container.format.name} frames have none (they are counted)"
            )
        else:
            try:
                template = _Template(stream)
            except Exception as err:  # noqa: BLE001 - whatever it is, this connection cannot record
                unusable = f"{stream.codec_context.name} cannot be put into MP4: {_reason(err)}"
        with self._lock:
            if self._closed:  # closed meanwhile
                return
            self._new_timeline()
            self._template, self._unusable = template, unusable
        if unusable:
            self._report(f"clip not written: {unusable}")

    def disconnected(self) -> None:
        """The connection ended: finish the open clip with what it has."""
        with self._lock:
            self._new_timeline()
            self._template = None

    def feed(self, packet) -> None:
        """A demuxed video packet, in decode order. Cheap, and never raises."""
        if self._closed or not packet.size:
            return
        try:
            with self._lock:
                template = self._template
                if template is None:
                    return
                pts, dts = packet.pts, packet.dts
                if pts is None and dts is None:
                    return
                kept = _Kept(
                    packet,
                    next(self._seq),
                    pts if pts is not None else dts,
                    dts if dts is not None else pts,
                    template.seconds,
                )
                if self._last_d is not None and not -JUMP_BACK_S <= kept.d - self._last_d <= JUMP_FORWARD_S:
                    self._new_timeline()
                self._last_d = kept.d
                newest_t = self._newest_t = kept.t if self._newest_t is None else max(self._newest_t, kept.t)
                self._kept.append(kept)
                self._kept_bytes += kept.size
                if kept.key:
                    self._keys.append(kept)
                self._trim(newest_t)
                for clip in list(self._open.values()):
                    self._offer(clip, kept)
        except Exception as err:  # noqa: BLE001 - a recorder's bug must not stop capture
            self._report(f"clip not written: recorder error {type(err).__name__}: {_reason(err)}")

    # -- inference thread --------------------------------------------------------------------

    def start(self, event_time_s: float, label: str, event_id: str | None = None) -> str | None:
        """An event started at this stream time: the path its clip will have (named by
        `event_id`; a fresh id if None), or None when nothing can be recorded now (not
        connected, closed, or a source without timestamps)."""
        with self._lock:
            if self._closed or self._template is None:
                if self._unusable:
                    self._problem = f"clip not written: {label} at {event_time_s:.1f} s: {self._unusable}"
                return None
            wall = next((k.wall for k in reversed(self._kept) if k.t <= event_time_s), time.time())
            event_id = event_id or new_event_id(wall)
            if not re.fullmatch(EVENT_ID_PATTERN, event_id) or event_id in self._open:
                raise ValueError(f"bad or repeated event id {event_id!r}")
            clip = self._open[event_id] = _Clip(self.folder / f"{event_id}.mp4", self._template, wall, event_id)
            start = self._preroll_start(event_time_s - self.rules.pre_s)
            if start is not None:
                for kept in itertools.islice(self._kept, start.seq - self._kept[0].seq, None):
                    self._offer(clip, kept)
            return str(clip.path)

    def end(self, event_time_s: float, event_id: str | None = None) -> None:
        """The event ended at this stream time: its clip runs on for `post_s` (at most to
        `max_clip_s`). `event_id` None: the event started last."""
        with self._lock:
            if event_id is None:
                event_id = next(reversed(self._open), None)
            clip = None if event_id is None else self._open.get(event_id)
            if clip is None:
                return  # its clip already ended (max_clip_s, a new timeline) or never began
            clip.until = event_time_s + self.rules.post_s
            if self._last_d is not None and self._last_d >= clip.until:
                self._finish(clip)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Finish the open clip at once and stop the writer; wait up to `timeout_s` for it to
        write what is queued. True once it has. Safe to call again (to wait longer)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._new_timeline()
                self._template = None
                self._queue.put(None)
        self._writer.join(timeout_s)
        return not self._writer.is_alive()

    @property
    def problem(self) -> str | None:
        """The last failure, one line; kept until taken."""
        return self._problem

    def take_problem(self) -> str | None:
        with self._lock:
            problem, self._problem = self._problem, None
        return problem

    def stats(self) -> dict:
        with self._lock:
            preroll = self._newest_t - self._kept[0].t if self._kept and self._newest_t is not None else 0.0
            return {
                "clips": self._clips,
                "failed": self._failed,
                "deleted": self.retention.deleted(self.stream),
                "recording": bool(self._open),
                "preroll_s": round(preroll, 3),
            }

    # -- under the lock ----------------------------------------------------------------------

    def _new_timeline(self) -> None:
        for clip in list(self._open.values()):
            self._finish(clip)
        self._kept.clear()
        self._keys.clear()
        self._kept_bytes = 0
        self._newest_t = self._last_d = None

    def _trim(self, newest_t: float) -> None:
        horizon = newest_t - self.keep_s
        keys, kept = self._keys, self._kept
        while len(keys) >= 2 and keys[1].t <= horizon:
            keys.popleft()
        while self._kept_bytes > PREROLL_MAX_BYTES and len(keys) >= 2:
            keys.popleft()
        if self._kept_bytes > PREROLL_MAX_BYTES:  # one keyframe in all that (intra refresh?): start over
            kept.clear()
            keys.clear()
            self._kept_bytes = 0
        # Nothing before the first kept keyframe can be decoded; with no keyframe yet, keep by time.
        while kept and (kept[0].seq < keys[0].seq if keys else kept[0].t < horizon):
            self._kept_bytes -= kept.popleft().size

    def _preroll_start(self, from_t: float) -> _Kept | None:
        for key in reversed(self._keys):
            if key.t <= from_t:
                return key
        return self._keys[0] if self._keys else None

    def _offer(self, clip: _Clip, kept: _Kept) -> None:
        if clip.done:
            return
        if clip.cap is not None and kept.t >= clip.cap:
            # The first packet shown at the cap ends it: every earlier one in decode order is shown
            # before it, so the clip is never longer than max_clip_s; B-frames decoded after it
            # reference it and would be shown last, so leaving them out leaves no hole.
            self._finish(clip)
            return
        if clip.closing_before is None and clip.until is not None and kept.d >= clip.until:
            clip.closing_before = clip.last_pts if clip.last_pts is not None else kept.pts
        if clip.closing_before is not None and kept.pts >= clip.closing_before:
            # Without B-frames this is the packet that reached the end; with them, a frame decoded
            # after one shown later than itself (I0 P4 B2 B1 B3 P8 B6 B5 | B7) is kept first, so
            # the clip has no hole before its last frame.
            self._finish(clip)
            return
        if not clip.keyed:
            if not kept.key:
                return
            clip.keyed = True
            clip.cap = kept.t + self.rules.max_clip_s
        if clip.failed:
            return
        if self._queued_bytes + kept.size > WRITER_BACKLOG_BYTES:
            self._fail(clip, f"the disk is too slow: {self._queued_bytes / 2**20:.0f} MB waiting to be written")
            return
        self._queued_bytes += kept.size
        clip.last_pts = kept.pts if clip.last_pts is None else max(clip.last_pts, kept.pts)
        self._queue.put((clip, kept))

    def _finish(self, clip: _Clip) -> None:
        if self._open.get(clip.event_id) is clip:
            del self._open[clip.event_id]
        if not clip.done:
            clip.done = True
            self._queue.put((clip, None))

    def _fail(self, clip: _Clip, reason: str) -> None:
        if clip.failed is None:
            clip.failed = reason
            self._failed += 1
            self._problem = f"clip not written: {clip.path.name}: {reason}"

    def _report(self, problem: str) -> None:
        with self._lock:
            self._problem = problem

    # -- writer thread -----------------------------------------------------------------------

    def _write(self) -> None:
        outs: dict[_Clip, _Output] = {}  # the clips being written
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                clip, kept = item
                if kept is not None:
                    with self._lock:
                        self._queued_bytes -= kept.size
                out = self._write_one(outs.pop(clip, None), clip, kept)
                if out is not None:
                    outs[clip] = out
        finally:
            for out in outs.values():
                out.abandon()
            self.retention.detach(self._retention_token)  # the last writer of a dir closes its index

    def _write_one(self, out: _Output | None, clip: _Clip, kept: _Kept | None) -> _Output | None:
        """One queued item: a packet of `clip` (None: its end); the clip being written after it."""
        try:
            if clip.failed:
                if out is not None:
                    out.abandon()
                return None
            if kept is not None:
                if out is None:
                    if not self.rules.dir.is_dir():
                        raise OSError(f"the record dir {self.rules.dir} is gone")
                    self.folder.mkdir(exist_ok=True)
                    if os.path.lexists(clip.path) or os.path.lexists(_part(clip.path)):
                        # Someone else's file, or one of an earlier run (a clock set back): not ours to replace.
                        raise OSError(f"a file named {clip.path.name} is already there, and is left as it is")
                    out = _Output(clip, kept.pts, self.retention.index, self.rules.dir, self.stream)
                out.mux(kept)
                return out
            if out is None:
                with self._lock:
                    self._fail(clip, "the stream ended before its first keyframe")
                return None
            size = out.finalise()
            with self._lock:
                self._clips += 1
            self.retention.clip_written(size)
            return None
        except Exception as err:  # noqa: BLE001 - any failure costs this clip only
            reason = (
                f"the media index {self.retention.index.path}: {err}"
                if isinstance(err, sqlite3.Error)
                else _reason(err)
            )
            with self._lock:
                self._fail(clip, reason)
            if out is not None:
                out.abandon()
            if retention.out_of_space(err):
                self.retention.wake(short_of_space=True)
            return None


class _Output:
    """A clip being written: `<name>.mp4.part`, renamed to `<name>.mp4` by `finalise`."""

    def __init__(self, clip: _Clip, origin_pts: int, index: MediaIndex, record_dir: Path, stream: str):
        self.clip, self.origin, self.index = clip, origin_pts, index
        self.part = _part(clip.path)
        self.last_dts: int | None = None
        # Indexed before the file exists: a crash leaves a row that says what to clean up.
        relative = clip.path.relative_to(record_dir).as_posix()
        self.row: int | None = index.begin(relative, stream, "clip", clip.wall, retention.RUN)
        try:
            self.container = av.open(str(self.part), "w", format="mp4")
        except BaseException:
            self._discard()
            raise
        try:
            self.stream = self.container.add_stream_from_template(clip.template.stream)
        except BaseException:
            self.abandon()
            raise

    def mux(self, kept: _Kept) -> None:
        if kept.pts < self.origin:
            return  # a leading frame of an open GOP: it references the GOP before the clip
        pts, dts = kept.pts - self.origin, kept.dts - self.origin
        if self.last_dts is not None and dts <= self.last_dts:  # MP4 needs decode times that strictly grow
            dts = self.last_dts + 1
            pts = max(pts, dts)
        # The packet may be in the pre-roll of a later clip too: set every field muxing changes.
        packet = kept.packet
        packet.time_base = self.clip.template.time_base
        packet.pts, packet.dts, packet.duration = pts, dts, kept.duration
        packet.stream = self.stream
        self.container.mux(packet)
        self.last_dts = dts

    def finalise(self) -> int:
        """Close, rename into place and mark finished in the index: the clip's size."""
        try:
            self.container.close()
            os.replace(self.part, self.clip.path)
        except BaseException:
            self.abandon()
            raise
        size = self.clip.path.stat().st_size
        try:
            if self.row is not None:
                self.index.finish(self.row, size)
        except sqlite3.Error:
            pass  # the row stays in progress; retention sees the finished file and marks it
        self.row = None
        return size

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        self._discard()

    def _discard(self) -> None:
        """The part file and its row go."""
        with contextlib.suppress(OSError):
            self.part.unlink(missing_ok=True)
        if self.row is not None:
            with contextlib.suppress(sqlite3.Error):
                self.index.forget(self.row)
            self.row = None


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    filename = getattr(err, "filename", None)
    if filename and getattr(err, "strerror", None):
        text = f"{text}: {filename}"
    return " ".join(str(text).split())
