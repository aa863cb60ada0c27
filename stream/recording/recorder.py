"""Clip recording: one MP4 per event, remuxed from the source's compressed packets (no re-encode).

A stream configured with `record = { dir = "...", pre_s = 5, post_s = 5, max_gb = 10 }` gets one
`ClipRecorder`, which joins a packet buffer (stream.recording.buffer: what is kept, which packets
each clip takes), a writer thread (stream.recording.writer: the files) and its record dir's
retention (stream.recording.retention: one per dir, for every stream that records there). It is
used by three threads:

- The capture thread (`stream.sources.supervisor.Source`) calls `connected(video)` when a
  connection opens (a reconnect or a file's next loop included), `feed(packet)` with every
  demuxed video packet, and `disconnected()` when the connection ends. `feed` only adds to the
  buffer and, while a clip is open, to the writer's queue; it never touches the disk.
- The inference thread calls `start(event_time_s, label, event_id)` when an event starts,
  `end(event_time_s, event_id)` when it ends, `take_problem()` to publish failures, and `close()` at stop.
- The writer thread muxes the queued packets into their clips.

Sources without presentation times (frame-counted formats: AVI, raw H.264, MJPEG) are timed by
position or arrival instead, which no packet carries: such a stream records nothing, and says so.
`lag_s` is how far an event's start may trail the newest packet when `start` is called: the
model's window, `min_duration_s`, inference latency and, for a file read unpaced, the ring's
length in stream time (capture runs that far ahead of inference); the buffer keeps `pre_s + lag_s`.

One clip per event, never more and never shared: an event that starts while another's clip is
still open (in its post-roll) gets its own clip, whose pre-roll holds the same packets (the
buffer keeps each packet once and the writer muxes it into every clip open over it, without
decoding). A lost connection, a file's loop, a timestamp reset or jump, or `close()` ends every
open clip at once with what it has. So a clip holds: from the last keyframe at or before
`event start - pre_s` (or the oldest kept, or the next one) to the first packet decoded at or
after `event end + post_s`, at most `max_clip_s` of stream time, with the source's own packets
and timestamps shifted to start at 0. `dir` is made and checked when a recorder is constructed.

Retention (stream.recording.retention) deletes indexed clips, oldest first, past `retain_days`,
above `max_gb` (10^9 bytes) and while less than `min_free_gb` is free on the dir's filesystem;
it deletes only what the media index lists.

Failures (a full disk, a removed or unwritable dir, a codec MP4 cannot hold) never leave this
module as exceptions: the clip is dropped (its part file removed), counted as failed, and
`problem` holds one line, "clip not written: ...", for the pipeline's status.
"""

from __future__ import annotations

import re
import threading
import time

from lrcn.stream.events import EVENT_ID_PATTERN, new_event_id
import lrcn.stream.recording.retention as retention
from lrcn.stream.recording.buffer import END, TAKE, Kept, PacketBuffer
from lrcn.stream.recording.rules import RecordRules, check_record_dir, reason, safe_label
from lrcn.stream.recording.writer import Clip, ClipWriter, Template
from lrcn.stream.stats import ClipStats

DEFAULT_LAG_S = 10.0


class ClipRecorder:
    """Clips of one stream (see the module docstring). `lag_s`: how far, in stream seconds, an
    event's start time may trail the newest packet when `start` is called; the pre-roll keeps
    `pre_s + lag_s`. Creates the record dir if needed; LrcnError (one line) if it cannot be
    created or written."""

    def __init__(self, rules: RecordRules, stream: str, lag_s: float = DEFAULT_LAG_S):
        check_record_dir(rules.dir)
        self.rules = rules
        self.stream = safe_label(stream)
        self.retention, token = retention.attach(rules, self.stream, self._report)
        self.keep_s = rules.pre_s + lag_s
        self.folder = rules.dir / self.stream
        self._lock = threading.Lock()  # guards all below, and the writer's backlog
        self._buffer = PacketBuffer(self.keep_s)
        self._template: Template | None = None
        self._unusable: str | None = None  # why this connection cannot record
        self._open: dict[str, Clip] = {}  # event id -> its clip, while packets still go to it
        self._closed = False
        self._problem: str | None = None
        self._clips = self._failed = 0
        self._writer = ClipWriter(
            rules, self.stream, self.retention, token, self._lock, self._failed_late, self._written
        )

    # -- capture thread ----------------------------------------------------------------------

    def connected(self, video, timestamped: bool = True) -> None:
        """A new connection (or a file's next loop) with this PyAV video stream: the pre-roll
        and any open clip belong to the previous one."""
        if self._closed:
            return
        template, unusable = None, None
        if not timestamped:
            unusable = (
                f"clips need presentation times, and {video.container.format.name} frames have none (they are counted)"
            )
        else:
            try:
                template = Template(video)
            except Exception as err:  # noqa: BLE001 - whatever it is, this connection cannot record
                unusable = f"{video.codec_context.name} cannot be put into MP4: {reason(err)}"
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
                kept = self._buffer.add(packet, template.seconds)
                if kept is None:
                    return
                if self._open:
                    if kept.jump:
                        self._finish_all()
                    for clip in list(self._open.values()):
                        self._offer(clip, kept)
        except Exception as err:  # noqa: BLE001 - a recorder's bug must not stop capture
            self._report(f"clip not written: recorder error {type(err).__name__}: {reason(err)}")

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
            wall = self._buffer.wall_at(event_time_s) or time.time()
            event_id = event_id or new_event_id(wall)
            if not re.fullmatch(EVENT_ID_PATTERN, event_id) or event_id in self._open:
                raise ValueError(f"bad or repeated event id {event_id!r}")
            clip = Clip(self.folder / f"{event_id}.mp4", self._template, wall, event_id, self.rules.max_clip_s)
            self._open[event_id] = clip
            first = self._buffer.start_for(event_time_s - self.rules.pre_s)
            if first is not None:
                for kept in self._buffer.since(first):
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
            clip.span.until = event_time_s + self.rules.post_s
            if self._buffer.last_d is not None and self._buffer.last_d >= clip.span.until:
                self._finish(clip)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Finish the open clip at once and stop the writer; wait up to `timeout_s` for it to
        write what is queued. True once it has. Safe to call again (to wait longer)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._new_timeline()
                self._template = None
                self._writer.stop()
        return self._writer.join(timeout_s)

    @property
    def problem(self) -> str | None:
        """The last failure, one line; kept until taken."""
        return self._problem

    def take_problem(self) -> str | None:
        with self._lock:
            problem, self._problem = self._problem, None
        return problem

    def stats(self) -> ClipStats:
        with self._lock:
            return ClipStats(
                clips=self._clips,
                failed=self._failed,
                deleted=self.retention.deleted(self.stream),
                recording=bool(self._open),
                preroll_s=round(self._buffer.span_s, 3),
            )

    # -- under the lock ----------------------------------------------------------------------

    def _new_timeline(self) -> None:
        self._finish_all()
        self._buffer.clear()

    def _finish_all(self) -> None:
        for clip in list(self._open.values()):
            self._finish(clip)

    def _offer(self, clip: Clip, kept: Kept) -> None:
        if clip.done:
            return
        verdict = clip.span.offer(kept)
        if verdict is TAKE:
            if not clip.failed and not self._writer.put(clip, kept):
                backlog = self._writer.backlog_bytes / 2**20
                self._fail(clip, f"the disk is too slow: {backlog:.0f} MB waiting to be written")
        elif verdict is END:
            self._finish(clip)

    def _finish(self, clip: Clip) -> None:
        if self._open.get(clip.event_id) is clip:
            del self._open[clip.event_id]
        if not clip.done:
            clip.done = True
            self._writer.end(clip)

    def _fail(self, clip: Clip, why: str) -> None:
        if clip.failed is None:
            clip.failed = why
            self._failed += 1
            self._problem = f"clip not written: {clip.path.name}: {why}"

    # -- writer thread -----------------------------------------------------------------------

    def _failed_late(self, clip: Clip, why: str) -> None:
        with self._lock:
            self._fail(clip, why)

    def _written(self, clip: Clip) -> None:
        with self._lock:
            self._clips += 1

    def _report(self, problem: str) -> None:
        with self._lock:
            self._problem = problem
