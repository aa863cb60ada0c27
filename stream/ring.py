"""FrameRing: a preallocated, fixed-capacity frame buffer between one writer and one reader.

A live ring's writer (a camera's capture thread) never waits for the reader: when the ring
is full it overwrites the oldest unread frame and counts it as dropped. A lossless ring's
writer (a file read as fast as it decodes) waits for room instead, so nothing is lost;
`close()` releases it. The reader (the scheduler) takes every frame newer than the last one
it read, copied out, so a later overwrite cannot change what it holds.

Pixel copies happen outside the lock. Each write first *claims* its slot, then copies, then
*commits*; a reader that copied a slot the writer claimed meanwhile throws that frame away and
counts it as dropped, so a torn frame is never returned (a seqlock, in effect).

>>> ring = FrameRing(capacity=4, size=(2, 2))
>>> for i in range(6):
...     stored = ring.write(np.full((2, 2, 3), i, np.uint8), index=i, captured_at=float(i))
>>> [f.index for f in ring.read_new()], ring.stats().dropped
([2, 3, 4, 5], 2)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lrcn.stream.stats import RingStats


@dataclass(frozen=True)
class Frame:
    """One captured frame, owned by whoever holds it."""

    image: np.ndarray  # [H, W, 3] uint8 RGB at the model's input size
    index: int  # counts frames from the source, across reconnections
    captured_at: float  # time.monotonic() when the frame was captured
    segment: int = 0  # bumps on every (re)connection, loop restart or timestamp jump: no window spans two
    pts: float = 0.0  # presentation time in the stream, seconds (the arrival time where a source has none)
    flow: np.ndarray | None = None  # [H, W, 2] uint8, from the previous sampled frame (stream.flow); None: off
    motion: float | None = None  # its mean displacement, pixels; None without flow or at a segment start
    original: object | None = None  # the decoded frame at the source's resolution, by reference (stream.snapshots)


class FrameRing:
    def __init__(
        self,
        capacity: int,
        size: tuple[int, int],
        new_frame: threading.Event | None = None,
        lossless: bool = False,
        flow: bool = False,
    ):
        """`size` is (height, width); `new_frame`, if given, is set after every write, so one
        scheduler thread can wait on a single event shared by many rings. A `lossless` ring's
        writer waits for room instead of overwriting. A `flow` ring also holds each frame's
        flow field and motion level (stream.flow)."""
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        height, width = size
        self.capacity = capacity
        self.size = (height, width)
        self._images = np.zeros((capacity, height, width, 3), np.uint8)
        self._indices = np.zeros(capacity, np.int64)
        self._times = np.zeros(capacity, np.float64)
        self._segments = np.zeros(capacity, np.int64)
        self._pts = np.zeros(capacity, np.float64)
        self._flows = np.zeros((capacity, height, width, 2), np.uint8) if flow else None
        self._motion = np.full(capacity, np.nan, np.float64) if flow else None
        # (seq, original) per slot: references only, dropped once read, so no more than the unread are held.
        self._originals: list[tuple[int, object] | None] = [None] * capacity
        self._lock = threading.Lock()
        self._frame_read = threading.Condition(self._lock)
        self._new_frame = new_frame
        self.lossless = lossless
        self._closed = False
        # Sequence numbers: writes claimed / committed so far, and the first not yet read.
        self._claimed = 0
        self._committed = 0
        self._next_unread = 0
        self._read = 0
        self._dropped = 0

    # -- writer side -------------------------------------------------------------------------

    def write(
        self,
        image: np.ndarray,
        index: int,
        captured_at: float,
        segment: int = 0,
        pts: float = 0.0,
        flow: np.ndarray | None = None,
        motion: float | None = None,
        original: object | None = None,
    ) -> bool:
        """Store one frame. When the reader has fallen `capacity` behind, a live ring overwrites
        the oldest; a lossless one waits for the reader. False (nothing stored) once closed."""
        if flow is None and self._flows is not None:
            raise ValueError("a flow ring stores every frame's flow field")
        with self._lock:
            if self.lossless:
                self._frame_read.wait_for(lambda: self._closed or self._claimed - self._next_unread < self.capacity)
            if self._closed:
                return False
            seq = self._claimed
            self._claimed += 1
            if seq - self._next_unread >= self.capacity:
                self._dropped += seq - self._next_unread - self.capacity + 1
                self._next_unread = seq - self.capacity + 1
        slot = seq % self.capacity
        self._images[slot] = image
        self._indices[slot] = index
        self._times[slot] = captured_at
        self._segments[slot] = segment
        self._pts[slot] = pts
        self._originals[slot] = None if original is None else (seq, original)
        if self._flows is not None and self._motion is not None and flow is not None:
            self._flows[slot] = flow
            self._motion[slot] = np.nan if motion is None else motion
        with self._lock:
            self._committed = seq + 1
        if self._new_frame is not None:
            self._new_frame.set()
        return True

    def close(self) -> None:
        """Refuse further writes and release a writer waiting for room; the reader still gets what is held."""
        with self._lock:
            self._closed = True
            self._frame_read.notify_all()

    # -- reader side -------------------------------------------------------------------------

    def read_new(self) -> list[Frame]:
        """Every frame written since the last call, oldest first (at most `capacity`)."""
        with self._lock:
            first, end = self._next_unread, self._committed
            if not self.lossless:
                self._next_unread = end
        frames = [self._copy(seq) for seq in range(first, end)]
        with self._lock:
            self._next_unread = max(self._next_unread, end)  # a lossless writer gets the room once it is copied
            torn = max(0, min(end, self._claimed - self.capacity) - first)
            self._dropped += torn
            self._read += len(frames) - torn
            self._frame_read.notify_all()
        return frames[torn:]

    def stats(self) -> RingStats:
        """written = read + dropped + pending, always."""
        with self._lock:
            return RingStats(
                capacity=self.capacity,
                written=self._committed,
                read=self._read,
                dropped=self._dropped,
                pending=self._committed - self._next_unread,
            )

    def _copy(self, seq: int) -> Frame:
        slot = seq % self.capacity
        flow = motion = None
        if self._flows is not None and self._motion is not None:
            flow, level = self._flows[slot].copy(), float(self._motion[slot])
            motion = None if np.isnan(level) else level
        kept = self._originals[slot]
        original = None
        if kept is not None and kept[0] == seq:
            original = kept[1]
            self._originals[slot] = None
        return Frame(
            image=self._images[slot].copy(),
            index=int(self._indices[slot]),
            captured_at=float(self._times[slot]),
            segment=int(self._segments[slot]),
            pts=float(self._pts[slot]),
            flow=flow,
            motion=motion,
            original=original,
        )
