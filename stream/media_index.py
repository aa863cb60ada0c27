"""The media index: one SQLite file, `lrcn.sqlite`, in a record dir, listing every file this
program wrote there (clips and snapshots), the events they belong to (table `events`,
stream.event_store), and the pure rule that picks which files retention deletes.

Retention deletes only what this index lists, so a record dir may share a disk, or even a
folder, with other footage: a file the index does not name is never opened, walked or removed.
A row is added before its file is opened (`finished` 0, the file still `<path>.part`), and
marked finished with its size once the file is renamed into place; a crash in between leaves
a row that says so, and a later run may clean it up (`stream.recording.retention`).

The schema is versioned with `PRAGMA user_version`: a later version adds tables and columns
(version 2 added `events`: a version 1 file gains the table when it is opened); a file written by
a newer version than this code knows is refused, not rewritten.

>>> rows = [Entry("cam/a.mp4", "cam", "clip", 400, 100.0), Entry("cam/b.mp4", "cam", "clip", 400, 200.0),
...         Entry("cam/c.mp4", "cam", "clip", 400, 300.0)]
>>> plan = select_for_deletion(rows, Limits(max_bytes=1000), now=400.0, free_bytes=10**9)
>>> [(entry.path, why) for entry, why in plan.delete], plan.unmet
([('cam/a.mp4', 'max_gb')], ())
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

from lrcn.stream.errors import LrcnError

RUN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process, in the rows it opens

INDEX_NAME = "lrcn.sqlite"
SCHEMA_VERSION = 2
DAY_S = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,        -- relative to the record dir, '/'-separated
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'clip' or 'snapshot'
    bytes INTEGER NOT NULL DEFAULT 0, -- the finished file's size
    start_time REAL NOT NULL,         -- Unix time of the event's first frame
    finished INTEGER NOT NULL DEFAULT 0,
    run TEXT NOT NULL                 -- the process that opened it (RUN)
);
CREATE INDEX IF NOT EXISTS media_by_start ON media (start_time);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,              -- the event messages' `id`
    stream TEXT NOT NULL,
    label TEXT NOT NULL,
    start_time REAL NOT NULL,         -- Unix time of its start
    end_time REAL,                    -- Unix time of its end; NULL while it is open
    peak_score REAL NOT NULL,
    clip TEXT,                        -- relative to the record dir, '/'-separated; NULL: none
    snapshot TEXT,                    -- the best-scoring frame's JPEG (the start frame's until the end)
    start_snapshot TEXT,              -- the start frame's JPEG
    start_frame INTEGER NOT NULL,     -- as in the messages: frame index and stream time
    stream_start REAL NOT NULL,
    end_frame INTEGER,
    stream_end REAL
);
CREATE INDEX IF NOT EXISTS events_by_stream_start ON events (stream, start_time);
CREATE INDEX IF NOT EXISTS events_by_start ON events (start_time);
"""


@dataclass(frozen=True)
class Entry:
    """One indexed file."""

    path: str
    stream: str
    kind: str
    bytes: int
    start_time: float
    finished: bool = True
    run: str = ""
    id: int = 0


@dataclass(frozen=True)
class Limits:
    """What retention keeps a record dir within: files younger than `retain_days` (None: any
    age), at most `max_bytes` of indexed files, at least `min_free_bytes` free on its filesystem."""

    max_bytes: int
    min_free_bytes: int = 0
    retain_days: float | None = None


@dataclass(frozen=True)
class Plan:
    delete: tuple[tuple[Entry, str], ...]  # (entry, the limit it goes for), oldest first
    unmet: tuple[str, ...]  # limits still broken once all of `delete` is gone


def select_for_deletion(entries: Sequence[Entry], limits: Limits, now: float, free_bytes: int) -> Plan:
    """Finished `entries` -> which to delete, oldest (by start time) first: every one older than
    `retain_days`; then, while the indexed total exceeds `max_bytes` or the free space (which
    each deletion adds its bytes to) is under `min_free_bytes`, the oldest left. The newest entry
    goes only by age: the latest evidence is worth the most, and a limit it alone breaks is
    reported in `unmet` instead.

    >>> old, new = Entry("a.mp4", "cam", "clip", 10, 0.0), Entry("b.mp4", "cam", "clip", 10, 9 * DAY_S)
    >>> plan = select_for_deletion([new, old], Limits(max_bytes=100, retain_days=7), now=10 * DAY_S, free_bytes=0)
    >>> [(e.path, why) for e, why in plan.delete], plan.unmet
    ([('a.mp4', 'retain_days')], ())
    >>> select_for_deletion([new], Limits(max_bytes=5, min_free_bytes=50), now=10 * DAY_S, free_bytes=0).unmet
    ('max_gb', 'min_free_gb')
    """
    ordered = sorted((e for e in entries if e.finished), key=lambda e: (e.start_time, e.id, e.path))
    total, free = sum(e.bytes for e in ordered), free_bytes
    expired_before = None if limits.retain_days is None else now - limits.retain_days * DAY_S
    delete = []
    for number, entry in enumerate(ordered):
        if expired_before is not None and entry.start_time < expired_before:
            why = "retain_days"
        elif number == len(ordered) - 1:
            break
        elif total > limits.max_bytes:
            why = "max_gb"
        elif free < limits.min_free_bytes:
            why = "min_free_gb"
        else:
            break
        delete.append((entry, why))
        total -= entry.bytes
        free += entry.bytes
    unmet = tuple(
        name
        for name, broken in (("max_gb", total > limits.max_bytes), ("min_free_gb", free < limits.min_free_bytes))
        if broken
    )
    return Plan(tuple(delete), unmet)


class MediaIndex:
    """The index file of one record dir, shared by the threads of this process (one connection,
    one lock) and by other processes (WAL). Every method may raise sqlite3.Error (a full disk).
    `record_dir` None: an index in memory (events of streams that record nothing, no state dir)."""

    def __init__(self, record_dir: Path | None):
        self.dir = None if record_dir is None else Path(record_dir)
        self.path = ":memory:" if self.dir is None else self.dir / INDEX_NAME
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._db.close()
                raise LrcnError(
                    f"{self.path} was written by a newer lrcn (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): upgrade, or record into another dir"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A small WAL: a record dir may be a small card, and a full one must not grow it.
            self._db.execute("PRAGMA wal_autocheckpoint=100")
            self._db.execute("PRAGMA journal_size_limit=1000000")
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as err:
            raise LrcnError(f"the media index {self.path} cannot be opened: {err}") from None

    def begin(self, relative: str, stream: str, kind: str, start_time: float, run: str) -> int:
        """A file about to be written (as `<path>.part`), its path relative to the record dir:
        its row id."""
        with self._lock:
            row = self._db.execute(
                "INSERT INTO media (path, stream, kind, start_time, run) VALUES (?, ?, ?, ?, ?)",
                (relative, stream, kind, start_time, run),
            ).lastrowid
        assert row is not None, "an INSERT sets lastrowid"
        return row

    def finish(self, row: int, size: int) -> None:
        with self._lock:
            self._db.execute("UPDATE media SET finished = 1, bytes = ? WHERE id = ?", (size, row))

    def forget(self, row: int) -> None:
        """A file that is gone (deleted by retention, or never completed): its row goes, and an event
        that named it names no clip or snapshot from now on, so the API answers 404 for no file."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                found = self._db.execute("SELECT path FROM media WHERE id = ?", (row,)).fetchone()
                self._db.execute("DELETE FROM media WHERE id = ?", (row,))
                for column in ("clip", "snapshot", "start_snapshot") if found else ():
                    self._db.execute(f"UPDATE events SET {column} = NULL WHERE {column} = ?", found)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def entries(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path, stream, kind, bytes, start_time, finished, run, id FROM media ORDER BY start_time, id"
            ).fetchall()
        return [
            Entry(path, stream, kind, size, start, bool(done), run, row)
            for path, stream, kind, size, start, done, run, row in rows
        ]

    def query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Run one statement under the index's lock: its rows (for stream.event_store)."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def set_start_time(self, row: int, start_time: float) -> None:
        """For tests and tools that back-date an entry."""
        with self._lock:
            self._db.execute("UPDATE media SET start_time = ? WHERE id = ?", (start_time, row))

    def absolute(self, entry: Entry) -> Path:
        """Where an entry's file is; ValueError for a path that would leave the record dir (an
        index edited by hand must not make retention delete elsewhere)."""
        return self.inside(entry.path)

    def inside(self, relative_path: str) -> Path:
        """The absolute path of a '/'-separated path relative to the record dir; ValueError for
        one that would leave it (or for an index in memory, which has no dir)."""
        relative = Path(relative_path)
        if self.dir is None or relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"{relative_path!r} is not a path inside {self.dir}")
        return self.dir / relative

    def close(self) -> None:
        with self._lock:
            self._db.close()
