"""FrameRing: a preallocated, fixed-capacity frame buffer between one writer and one reader.

The writer (a source thread) never waits for the reader: when the ring is full it overwrites
the oldest unread frame and counts it as dropped. The reader (the scheduler) takes every frame
newer than the last one it read, copied out, so a later overwrite cannot change what it holds.

Pixel copies happen outside the lock. Each write first *claims* its slot, then copies, then
*commits*; a reader that copied a slot the writer claimed meanwhile throws that frame away and
counts it as dropped, so a torn frame is never returned (a seqlock, in effect).

>>> ring = FrameRing(capacity=4, size=(2, 2))
>>> for i in range(6):
...     ring.write(np.full((2, 2, 3), i, np.uint8), index=i, captured_at=float(i))
>>> [f.index for f in ring.read_new()], ring.stats()["dropped"]
([2, 3, 4, 5], 2)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured frame, owned by whoever holds it."""

    image: np.ndarray      # [H, W, 3] uint8 RGB at the model's input size
    index: int             # counts frames from the source, across reconnections
    captured_at: float     # time.monotonic() when the frame was captured
    segment: int = 0       # bumps on every (re)connection or loop restart: frames of one segment are contiguous


class FrameRing:
    def __init__(self, capacity: int, size: tuple[int, int], new_frame: threading.Event | None = None):
        """`size` is (height, width); `new_frame`, if given, is set after every write, so one
        scheduler thread can wait on a single event shared by many rings."""
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        height, width = size
        self.capacity = capacity
        self.size = (height, width)
        self._images = np.zeros((capacity, height, width, 3), np.uint8)
        self._indices = np.zeros(capacity, np.int64)
        self._times = np.zeros(capacity, np.float64)
        self._segments = np.zeros(capacity, np.int64)
        self._lock = threading.Lock()
        self._frame_written = threading.Condition(self._lock)
        self._new_frame = new_frame
        # Sequence numbers: writes claimed / committed so far, and the first not yet read.
        self._claimed = 0
        self._committed = 0
        self._next_unread = 0
        self._read = 0
        self._dropped = 0

    # -- writer side -------------------------------------------------------------------------

    def write(self, image: np.ndarray, index: int, captured_at: float, segment: int = 0) -> None:
        """Store one frame, overwriting the oldest if the reader has fallen `capacity` behind."""
        with self._lock:
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
        with self._lock:
            self._committed = seq + 1
            self._frame_written.notify_all()
        if self._new_frame is not None:
            self._new_frame.set()

    # -- reader side -------------------------------------------------------------------------

    def read_new(self) -> list[Frame]:
        """Every frame written since the last call, oldest first (at most `capacity`)."""
        with self._lock:
            first, end = self._next_unread, self._committed
            self._next_unread = end
        frames = [self._copy(seq) for seq in range(first, end)]
        with self._lock:
            torn = max(0, min(end, self._claimed - self.capacity) - first)
            self._dropped += torn
            self._read += len(frames) - torn
        return frames[torn:]

    def latest(self) -> Frame | None:
        """The newest frame, copied, without moving the read position; None before any write."""
        while True:
            with self._lock:
                seq = self._committed - 1
            if seq < 0:
                return None
            frame = self._copy(seq)
            with self._lock:
                if seq >= self._claimed - self.capacity:
                    return frame

    def wait(self, timeout: float | None = None) -> bool:
        """Block until an unread frame exists or `timeout` passes; True if one exists."""
        with self._frame_written:
            return self._frame_written.wait_for(lambda: self._committed > self._next_unread, timeout)

    def stats(self) -> dict:
        """written = read + dropped + pending, always."""
        with self._lock:
            return {"capacity": self.capacity, "written": self._committed, "read": self._read,
                    "dropped": self._dropped, "pending": self._committed - self._next_unread}

    def _copy(self, seq: int) -> Frame:
        slot = seq % self.capacity
        return Frame(image=self._images[slot].copy(), index=int(self._indices[slot]),
                     captured_at=float(self._times[slot]), segment=int(self._segments[slot]))
