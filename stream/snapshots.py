"""Snapshots: JPEGs of an event's frames at the source's own resolution (inside the stream's crop).

The capture hands each sampled frame's decoded picture along with its model-size image, by
reference (`Original`: no pixel is copied or converted per frame); the pipeline keeps the newest
per stream (`/api/streams/ID/latest.jpg`) and, per open event, its first and its best-scoring
frame (`EventFrames`). Only a snapshot converts: `Original.rgb()` (the full frame to RGB, then the
crop) and `encode_jpeg`, on the `SnapshotWriter`'s thread, never the inference thread's.

A recording stream's snapshots are files beside its clips, `DIR/<stream>/<event id>-start.jpg`
(the event's first frame, written at its start) and `DIR/<stream>/<event id>.jpg` (its
best-scoring frame, written at its end), each listed in the record dir's media index before it is
written (as `<name>.part`, renamed when complete), so retention deletes them with the clips and
nothing else.

>>> import numpy as np
>>> jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8))
>>> jpeg[:2], decode_jpeg(jpeg).shape
(b'\\xff\\xd8', (48, 64, 3))
>>> scale_to_height(np.zeros((480, 640, 3), np.uint8), 120).shape
(120, 160, 3)
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import cv2
import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.media_index import RUN

log = logging.getLogger("lrcn.snapshots")
QUEUE_SIZE = 32  # snapshots waiting to be written; more are dropped (and counted)
DEFAULT_QUALITY = 85


def encode_jpeg(image_rgb: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes:
    """An RGB [H, W, 3] uint8 image as JPEG bytes."""
    if not 1 <= quality <= 100:
        raise LrcnError(f"JPEG quality must be 1 to 100, got {quality}")
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise LrcnError(f"cannot encode a {image_rgb.shape} image as JPEG")
    return jpeg.tobytes()


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise LrcnError("not a JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def scale_to_height(image: np.ndarray, height: int) -> np.ndarray:
    """`image` scaled to `height` pixels, keeping its aspect (never enlarged)."""
    if height >= image.shape[0]:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def draw_label(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` in a dark band across its top."""
    out = image.copy()
    scale = max(0.4, image.shape[0] / 720)
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(scale * 2)))
    cv2.rectangle(out, (0, 0), (min(image.shape[1], width + 16), height + base + 12), (0, 0, 0), -1)
    cv2.putText(
        out,
        text,
        (8, height + 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        max(1, round(scale * 2)),
        cv2.LINE_AA,
    )
    return out


@dataclass(frozen=True)
class Original:
    """A decoded frame at the source's resolution, held by reference until a snapshot needs it.
    `picture`: a PyAV VideoFrame or an RGB array; `crop`: x, y, width, height in its pixels."""

    picture: Any
    crop: tuple[int, int, int, int] | None = None

    def rgb(self) -> np.ndarray:
        picture = self.picture
        image = picture if isinstance(picture, np.ndarray) else picture.to_ndarray(format="rgb24")
        if self.crop is not None:
            x, y, w, h = self.crop
            image = image[y : y + h, x : x + w]
        return np.ascontiguousarray(image)


@dataclass(frozen=True)
class EventFrames:
    """The frames a snapshot of an open event may show: its first, and its best-scoring so far."""

    first: Original | None
    best: Original | None
    best_score: float


def follow(
    tracked: dict[str, EventFrames], open_id: str | None, same_label: bool, score: float, original: Original | None
) -> dict[str, EventFrames]:
    """After a prediction: {open_id: its frames} for the open event (or candidate) `open_id`,
    given whether the prediction showed its label, its score and its frame; an event that ended
    on this prediction is in the `tracked` passed in, which the caller keeps for its end.

    >>> one, two = Original("frame 1"), Original("frame 2")
    >>> tracked = follow({}, "e1", True, 0.7, one)
    >>> tracked = follow(tracked, "e1", True, 0.9, two)
    >>> tracked["e1"].first.picture, tracked["e1"].best.picture, follow(tracked, None, False, 0.1, one)
    ('frame 1', 'frame 2', {})
    """
    if open_id is None:
        return {}
    current = tracked.get(open_id)
    if current is None:
        return {open_id: EventFrames(original, original, score)}
    if same_label and score > current.best_score and original is not None:
        current = EventFrames(current.first, original, score)
    return {open_id: current}


@dataclass
class _Job:
    original: Original
    index: Any  # stream.media_index.MediaIndex of the record dir; None: not stored
    path: Path | None
    stream: str
    wall: float
    kind: str  # "start" or "best"


class SnapshotWriter:
    """One thread that converts, encodes and writes snapshots, so the inference thread only
    queues a reference. `written` (and per stream `written_by_stream`), `failed` and `dropped`
    count them; `problem` is the last
    failure, one line. `on_jpeg(stream, kind, jpeg)`, if set, gets every snapshot's bytes on this
    thread ("start" or "best"; e.g. an MQTT sink's `publish_snapshot`), stored or not; it must
    not block."""

    def __init__(self, quality: int = DEFAULT_QUALITY, on_jpeg: Callable[[str, str, bytes], None] | None = None):
        self.quality = quality
        self.on_jpeg = on_jpeg
        self._queue: queue.Queue[_Job | None] = queue.Queue(QUEUE_SIZE)
        self.written = self.failed = self.dropped = 0
        self.written_by_stream: dict[str, int] = {}  # read by a metrics scrape; only this thread writes
        self.encode_s = 0.0  # conversion + encoding, all snapshots
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def write(
        self, original: Original | None, index, path: Path | None, stream: str, wall: float, kind: str = "best"
    ) -> bool:
        """Queue a snapshot of `original` to `path` (inside `index`'s record dir; None: only for
        `on_jpeg`); False if it was dropped (no frame, nothing to do, or too many waiting)."""
        if original is None or path is None and self.on_jpeg is None:
            return False
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        try:
            self._queue.put_nowait(_Job(original, index, None if path is None else Path(path), stream, wall, kind))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout_s: float = 2.0) -> None:
        with self._lock:
            started = self._started
        if started:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                began = time.perf_counter()
                jpeg = encode_jpeg(job.original.rgb(), self.quality)
                self.encode_s += time.perf_counter() - began
                if job.path is not None:
                    self._write(job, jpeg)
                    self.written += 1
                    self.written_by_stream[job.stream] = self.written_by_stream.get(job.stream, 0) + 1
                if self.on_jpeg is not None:
                    self.on_jpeg(job.stream, job.kind, jpeg)
            except Exception as err:  # noqa: BLE001 - a snapshot's failure costs that snapshot only
                self.failed += 1
                name = job.path.name if job.path is not None else f"{job.stream} {job.kind}"
                self.problem = f"snapshot not written: {name}: {' '.join(str(err).split())}"
                log.warning("%s", self.problem, extra={"stream": job.stream})

    def _write(self, job: _Job, jpeg: bytes) -> None:
        assert job.path is not None  # only jobs with a path are written (the caller checks)
        relative = job.path.relative_to(job.index.dir).as_posix()
        part = job.path.with_name(job.path.name + ".part")
        job.path.parent.mkdir(exist_ok=True)
        if os.path.lexists(job.path) or os.path.lexists(part):
            raise OSError(f"a file named {job.path.name} is already there, and is left as it is")
        row = job.index.begin(relative, job.stream, "snapshot", job.wall, RUN)
        try:
            part.write_bytes(jpeg)
            os.replace(part, job.path)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            with contextlib.suppress(sqlite3.Error):
                job.index.forget(row)
            raise
        job.index.finish(row, len(jpeg))
