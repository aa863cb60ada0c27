"""An action event's media and row: the frames it keeps (first and best), its clip, its snapshots and
its row in the event store (stream.snapshots, stream.recording, stream.event_store).

Functions over one served stream (stream.table.Served), called by the inference thread only: it
owns the stream's counters, which hold the open event's frames and the paths of its clips.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from lrcn.stream.event_store import record
from lrcn.stream.message_schema import ActionEvent
from lrcn.stream.scheduler import Prediction
from lrcn.stream.snapshots import EventFrames, SnapshotWriter, follow
from lrcn.stream.table import Counters, Served

log = logging.getLogger("lrcn.pipeline")


def keep_originals(counters: Counters, frames: list) -> None:
    """Remember what the ring gave (stream.ring.Frame): the newest at model size, each one's original
    (an event's snapshot is taken from the frame it was seen on)."""
    counters.last_image = frames[-1].image
    counters.originals = {f.index: f.original for f in frames if f.original is not None}
    if frames[-1].original is not None:
        counters.last_original = frames[-1].original


def follow_event_frames(counters: Counters, label: str, prediction: Prediction, ending: set[str]) -> None:
    """Keep the open event's first and best frames; the frames of one that ended on this
    prediction (`ending`) stay until its end is published (`event_media` takes them)."""
    opened = counters.events.open
    ended = {k: v for k, v in counters.event_frames.items() if k in ending}
    frames = follow(
        counters.event_frames,
        opened.id if opened else None,
        opened is not None and label == opened.label,
        prediction.score,
        counters.originals.get(prediction.frame_index),
    )
    counters.event_frames = {**ended, **frames}


def event_media(served: Served, event: ActionEvent, wall: float, snapshots: SnapshotWriter) -> dict[str, str]:
    """Start the event's clip, end it, and queue its snapshots: the paths the message names."""
    recorder, counters, kind, event_id = served.source.recorder, served.counters, event.type, event.id
    media: dict[str, str] = {}
    if kind == "update":
        return media
    if recorder is not None and kind == "start":
        clip = recorder.start(event.start_time, event.label, event_id)
        if clip is not None:
            counters.clips[event_id] = clip
    elif recorder is not None:
        recorder.end(event.start_time if event.end_time is None else event.end_time, event_id)
        clip = counters.clips.pop(event_id, None)
        if clip is not None:
            media["clip"] = clip
    frames: EventFrames | None = counters.event_frames.get(event_id)
    if kind == "end":
        counters.event_frames = {k: v for k, v in counters.event_frames.items() if k != event_id}
    original = (frames.first if kind == "start" else frames.best) if frames else counters.last_original
    store, name = served.store, served.name
    path = index = None
    if recorder is not None and store is not None and store.dir is not None:
        path = recorder.folder / (f"{event_id}-start.jpg" if kind == "start" else f"{event_id}.jpg")
        index = store.index
    # Not recording: encoded all the same when someone takes the bytes (snapshots.on_jpeg), never stored.
    if snapshots.write(original, index, path, name, wall, "start" if kind == "start" else "best") and path is not None:
        media["snapshot"] = str(path)
    return media


def store_event(served: Served, event: ActionEvent, media: dict[str, str], wall: float) -> None:
    """The event's row, with its media relative to the store's folder; a full disk loses the row only."""
    store, name = served.store, served.name
    if store is None:
        return
    relative = {key: _relative(media[key], store.dir) for key in ("clip", "snapshot") if key in media}
    try:
        record(store, name, event, wall, **relative)
    except sqlite3.Error as err:  # the event is published all the same
        log.warning("event %s not stored: %s", event.id, err, extra={"stream": name})


def _relative(path: str, root: Path | None) -> str | None:
    try:
        return None if root is None else Path(path).relative_to(root).as_posix()
    except ValueError:
        return None
