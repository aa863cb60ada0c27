"""The recorder's writer: a thread of its own that muxes queued packets into their clips' MP4
files with PyAV (no re-encode), so a slow or hung disk delays only clips, never capture or
inference. Its queue is bounded by bytes: a clip whose backlog would pass
`WRITER_BACKLOG_BYTES` is given up.

Files. A clip is `<dir>/<stream>/<event id>.mp4`, written as `<name>.mp4.part` and renamed
when complete, so a reader never sees a half-written clip; a clip whose name a file already has
(someone else's) is not written, and that file is left as it is. Before a clip's file is opened
it gets a row in the record dir's media index (stream.media_index), marked finished with its
size once renamed; an abandoned clip loses both its part file and its row. The writer creates
only its stream's folder, so a record dir that goes away (an unmounted disk) fails clips rather
than silently filling the disk beneath.

Packets keep the source's own timestamps, shifted so the clip starts at 0; MP4 needs decode
times that strictly grow, so a packet whose decode time does not is nudged forward.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from lrcn.stream.media_index import RUN, MediaIndex
import lrcn.stream.recording.retention as retention
from lrcn.stream.recording.buffer import ClipSpan, Kept
from lrcn.stream.recording.rules import RecordRules, reason

WRITER_BACKLOG_BYTES = 128 * 2**20  # per stream: about 4 min of a 4 Mbit/s camera


class Template:
    """The connection's video stream as a template for clips: a copy of its codec parameters in
    an output stream of our own, so clips can be opened after the connection closed."""

    def __init__(self, video):
        self.time_base = Fraction(video.time_base)
        self.seconds = float(self.time_base)
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        self.video = self._holder.add_stream_from_template(video)


class Clip:
    """One event's clip: its file, the packets it takes (`span`), and how it went."""

    def __init__(self, path: Path, template: Template, wall: float, event_id: str, max_clip_s: float):
        self.path = path
        self.event_id = event_id
        self.wall = wall  # Unix time of its event's first frame
        self.template = template
        self.span = ClipSpan(max_clip_s)
        self.done = False  # its end is queued: no packet may follow
        self.failed: str | None = None


class ClipWriter:
    """The writer thread of one stream's recorder. `lock` is the recorder's: it guards
    `backlog_bytes`, which `put` (called with it held) and the thread both change.
    `on_failed(clip, reason)` and `on_written(clip)` are called from the thread, without it."""

    def __init__(
        self,
        rules: RecordRules,
        stream: str,
        store: retention.Retention,
        store_token: object,
        lock: threading.Lock,
        on_failed: Callable[[Clip, str], None],
        on_written: Callable[[Clip], None],
    ):
        self.rules, self.stream, self.folder = rules, stream, rules.dir / stream
        self.store, self._store_token = store, store_token
        self._lock, self._on_failed, self._on_written = lock, on_failed, on_written
        self.backlog_bytes = 0  # queued and not yet written
        self._queue: queue.SimpleQueue[tuple[Clip, Kept | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"clips-{stream}", daemon=True)
        self._thread.start()

    # -- the recorder (holding its lock) -----------------------------------------------------

    def put(self, clip: Clip, kept: Kept) -> bool:
        """Queue a packet of `clip`; False, queueing nothing, if the backlog would grow too big."""
        if self.backlog_bytes + kept.size > WRITER_BACKLOG_BYTES:
            return False
        self.backlog_bytes += kept.size
        self._queue.put((clip, kept))
        return True

    def end(self, clip: Clip) -> None:
        """`clip` takes no more packets: close its file once what is queued is written."""
        self._queue.put((clip, None))

    def stop(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        files: dict[Clip, ClipFile] = {}  # the clips being written
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                clip, kept = item
                if kept is not None:
                    with self._lock:
                        self.backlog_bytes -= kept.size
                file = self._write(files.pop(clip, None), clip, kept)
                if file is not None:
                    files[clip] = file
        finally:
            for file in files.values():
                file.abandon()
            self.store.detach(self._store_token)  # the last writer of a dir closes its index

    def _write(self, file: ClipFile | None, clip: Clip, kept: Kept | None) -> ClipFile | None:
        """One queued item: a packet of `clip` (None: its end); the file being written after it."""
        try:
            if clip.failed:
                if file is not None:
                    file.abandon()
                return None
            if kept is not None:
                if file is None:
                    if not self.rules.dir.is_dir():
                        raise OSError(f"the record dir {self.rules.dir} is gone")
                    self.folder.mkdir(exist_ok=True)
                    if os.path.lexists(clip.path) or os.path.lexists(part_path(clip.path)):
                        # Someone else's file, or one of an earlier run (a clock set back): not ours to replace.
                        raise OSError(f"a file named {clip.path.name} is already there, and is left as it is")
                    file = ClipFile(clip, kept.pts, self.store.index, self.rules.dir, self.stream)
                file.mux(kept)
                return file
            if file is None:
                self._on_failed(clip, "the stream ended before its first keyframe")
                return None
            size = file.finalise()
            self._on_written(clip)
            self.store.clip_written(size)
            return None
        except Exception as err:  # noqa: BLE001 - any failure costs this clip only
            self._on_failed(
                clip,
                f"the media index {self.store.index.path}: {err}" if isinstance(err, sqlite3.Error) else reason(err),
            )
            if file is not None:
                file.abandon()
            if retention.out_of_space(err):
                self.store.wake(short_of_space=True)
            return None


class ClipFile:
    """A clip being written: `<name>.mp4.part`, renamed to `<name>.mp4` by `finalise`."""

    def __init__(self, clip: Clip, origin_pts: int, index: MediaIndex, record_dir: Path, stream: str):
        self.clip, self.origin, self.index = clip, origin_pts, index
        self.part = part_path(clip.path)
        self.last_dts: int | None = None
        # Indexed before the file exists: a crash leaves a row that says what to clean up.
        relative = clip.path.relative_to(record_dir).as_posix()
        self.row: int | None = index.begin(relative, stream, "clip", clip.wall, RUN)
        try:
            self.container = av.open(str(self.part), "w", format="mp4")
        except BaseException:
            self._discard()
            raise
        try:
            self.video = self.container.add_stream_from_template(clip.template.video)
        except BaseException:
            self.abandon()
            raise

    def mux(self, kept: Kept) -> None:
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
        packet.stream = self.video
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


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")
