"""The event store: a row per event in the `events` table of a media index (stream.media_index).

A stream that records keeps its events in its record dir's `lrcn.sqlite`, beside the clips and
snapshots the rows name (paths relative to that dir). A stream that records nothing keeps them
in `STATE_DIR/lrcn.sqlite` when the `state_dir` setting names one, else in memory (the newest
`MEMORY_ROWS`, gone at exit).
The pipeline's shell writes the rows (`record`): a row at an event's start, completed at its end;
the HTTP API reads them (`query`, `get`), across every store of a pipeline (`query_all`).

>>> store = EventStore(None)
>>> start = ActionEvent(type="start", id="1-a", label="wave", start_frame=3, start_time=0.3, score=0.9)
>>> record(store, "cam", start, wall_time=100.0)
>>> record(store, "cam", msgspec.structs.replace(start, type="end", end_frame=9, end_time=0.9, peak_score=0.95),
...        wall_time=101.0, clip="cam/1-a.mp4")
>>> event = store.get("1-a")
>>> event.label, event.start_time, event.end_time, event.peak_score, event.clip
('wave', 100.0, 101.0, 0.95, 'cam/1-a.mp4')
>>> [e.id for e in store.query(stream="cam", after=99.0)], store.query(label="walk")
(['1-a'], [])
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec  # noqa: F401 - the doctest builds an end from a start

from lrcn.stream.errors import LrcnError
from lrcn.stream.message_schema import ActionEvent
from lrcn.stream.media_index import MediaIndex

MAX_LIMIT = 1000
MEMORY_ROWS = 100_000  # an in-memory store keeps the newest this many events (about 20 MB)
DEFAULT_LIMIT = 100
_COLUMNS = (
    "id",
    "stream",
    "label",
    "start_time",
    "end_time",
    "peak_score",
    "clip",
    "snapshot",
    "start_snapshot",
    "start_frame",
    "stream_start",
    "end_frame",
    "stream_end",
)


@dataclass(frozen=True)
class StoredEvent:
    id: str
    stream: str
    label: str
    start_time: float  # Unix time of the start
    end_time: float | None  # of the end; None while open
    peak_score: float
    clip: str | None  # relative to the store's record dir
    snapshot: str | None  # the best-scoring frame's JPEG (the start frame's while open)
    start_snapshot: str | None
    start_frame: int  # frame index and stream time, as in the messages
    stream_start: float
    end_frame: int | None
    stream_end: float | None

    def to_json(self) -> dict:
        return asdict(self)


class EventStore:
    """The events of one media index: a record dir's, a state dir's or one in memory (`dir` None).
    Opens its own connection (the recorders' retention closes theirs when they stop; events end
    later). Every method may raise sqlite3.Error (a full disk); LrcnError if the file cannot be
    opened or is newer than this code."""

    def __init__(self, dir: str | os.PathLike | None):
        self.dir = None if dir is None else Path(dir)
        if self.dir is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise LrcnError(f"event store dir {self.dir} cannot be created: {err.strerror or err}") from None
        self.index = MediaIndex(self.dir)
        self._inserted = 0

    def insert(self, event: StoredEvent) -> None:
        self.index.query(
            f"INSERT OR REPLACE INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [getattr(event, c) for c in _COLUMNS],
        )
        self._inserted += 1
        if self.dir is None and self._inserted % 1000 == 0:  # memory is not a disk: bounded
            self.index.query(
                "DELETE FROM events WHERE id NOT IN (SELECT id FROM events ORDER BY start_time DESC LIMIT ?)",
                (MEMORY_ROWS,),
            )

    def update(self, event_id: str, **values) -> None:
        """Set some columns of a stored event (its end, a clip, a snapshot)."""
        unknown = set(values) - set(_COLUMNS[1:])
        if unknown:
            raise ValueError(f"no such event columns: {sorted(unknown)}")
        if values:
            self.index.query(
                f"UPDATE events SET {', '.join(f'{name} = ?' for name in values)} WHERE id = ?",
                [*values.values(), event_id],
            )

    def get(self, event_id: str) -> StoredEvent | None:
        rows = self.index.query(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE id = ?", (event_id,))
        return StoredEvent(*rows[0]) if rows else None

    def query(
        self,
        stream: str | None = None,
        label: str | None = None,
        after: float | None = None,
        before: float | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[StoredEvent]:
        """Events newest first (by start), filtered: `after` <= start_time < `before` (Unix times)."""
        where, parameters = [], []
        for clause, value in (
            ("stream = ?", stream),
            ("label = ?", label),
            ("start_time >= ?", after),
            ("start_time < ?", before),
        ):
            if value is not None:
                where.append(clause)
                parameters.append(value)
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM events"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY start_time DESC, id DESC LIMIT ?"
        )
        return [StoredEvent(*row) for row in self.index.query(sql, [*parameters, limit])]

    def media(self, relative: str | None) -> Path | None:
        """The file of a row's clip or snapshot, None if there is none or it would leave the dir."""
        if relative is None:
            return None
        try:
            return self.index.inside(relative)
        except ValueError:
            return None

    def close(self) -> None:
        self.index.close()


def record(
    store: EventStore,
    stream: str,
    event: ActionEvent,
    wall_time: float,
    clip: str | None = None,
    snapshot: str | None = None,
) -> None:
    """Store one published action event: a start inserts its row; an update or an end completes it
    (`end_time` set only by the end). `clip` and `snapshot`: relative paths, when there are.
    Numbers are rounded as the messages round them (stream.messages), so a row equals its event."""
    if event.type == "start":
        store.insert(
            StoredEvent(
                event.id,
                stream,
                event.label,
                wall_time,
                None,
                _number(event.score),
                clip,
                snapshot,
                snapshot,
                event.start_frame,
                _number(event.start_time),
                None,
                None,
            )
        )
        return
    values: dict[str, object] = {
        "peak_score": _number(event.peak_score),
        "end_frame": event.end_frame,
        "stream_end": _number(event.end_time),
    }
    if event.type == "end":
        values["end_time"] = wall_time
    if clip is not None:
        values["clip"] = clip
    if snapshot is not None:
        values["snapshot"] = snapshot
    store.update(event.id, **values)


def _number(value: float | None) -> float:
    """A number a start (score), an update or an end (peak_score, end_time) always has."""
    if value is None:
        raise LrcnError("an action event without the numbers its type carries")
    return round(value, 6) if isinstance(value, float) else value


def query_all(
    stores: Iterable[EventStore], limit: int = DEFAULT_LIMIT, **filters
) -> list[tuple[EventStore, StoredEvent]]:
    """`query` over several stores, merged newest first: (store, event) pairs, at most `limit`."""
    per_store = [[(store, e) for e in store.query(limit=limit, **filters)] for store in stores]
    merged = heapq.merge(*per_store, key=lambda pair: (-pair[1].start_time, _reverse(pair[1].id)))
    return list(merged)[:limit]


def find(stores: Iterable[EventStore], event_id: str) -> tuple[EventStore, StoredEvent] | None:
    for store in stores:
        event = store.get(event_id)
        if event is not None:
            return store, event
    return None


def _reverse(text: str) -> tuple:
    return tuple(-ord(c) for c in text)
