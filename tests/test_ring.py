import threading

import numpy as np
import pytest

from lrcn.stream.ring import FrameRing
from lrcn.stream.stats import RingStats

SIZE = (24, 32)


def image_of(index: int) -> np.ndarray:
    return np.full((*SIZE, 3), index % 251, np.uint8)


def test_full_ring_overwrites_the_oldest_and_counts_each_drop():
    ring = FrameRing(capacity=3, size=SIZE)
    for i in range(5):
        ring.write(image_of(i), index=i, captured_at=10.0 + i, segment=i // 4)
    frames = ring.read_new()
    assert [f.index for f in frames] == [2, 3, 4]
    assert [f.captured_at for f in frames] == [12.0, 13.0, 14.0]
    assert [f.segment for f in frames] == [0, 0, 1]
    assert all((f.image == image_of(f.index)).all() for f in frames)
    assert ring.stats() == RingStats(capacity=3, written=5, read=3, dropped=2, pending=0)
    assert ring.read_new() == []


def test_read_new_returns_only_frames_newer_than_the_last_read_and_copies_them():
    ring = FrameRing(capacity=4, size=SIZE)
    ring.write(image_of(0), 0, 0.0)
    first = ring.read_new()
    ring.write(image_of(1), 1, 0.1)
    ring.write(image_of(2), 2, 0.2)
    second = ring.read_new()
    for i in range(3, 9):  # overwrite every slot: what the reader holds must not change
        ring.write(image_of(i), i, i / 10)
    assert [f.index for f in first] == [0] and [f.index for f in second] == [1, 2]
    assert (first[0].image == 0).all() and (second[1].image == 2).all()


def test_the_shared_event_wakes_the_reader_when_a_frame_is_written():
    any_new = threading.Event()
    ring = FrameRing(capacity=2, size=SIZE, new_frame=any_new)
    writer = threading.Timer(0.05, lambda: ring.write(image_of(1), 1, 0.0))
    writer.start()
    try:
        assert not any_new.is_set()
        assert any_new.wait(timeout=5.0)
        assert [f.index for f in ring.read_new()] == [1]
    finally:
        writer.join()


def test_a_writer_thread_outrunning_a_reader_thread_loses_frames_but_never_tears_one():
    ring = FrameRing(capacity=4, size=SIZE)
    total = 3000
    received, done = [], threading.Event()

    def write_all():
        for i in range(total):
            ring.write(image_of(i), index=i, captured_at=float(i))
        done.set()

    def read_slowly():
        while not done.is_set():
            received.extend(ring.read_new())
            done.wait(0.002)  # a reader slower than the writer
        received.extend(ring.read_new())

    threads = [threading.Thread(target=write_all), threading.Thread(target=read_slowly)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    indices = [f.index for f in received]
    assert indices == sorted(set(indices)), "frames come out once each, in order"
    assert indices[-1] == total - 1
    torn = [f.index for f in received if not (f.image == f.index % 251).all()]
    assert torn == []
    stats = ring.stats()
    assert stats.written == total
    assert stats.read == len(received)
    assert stats.dropped == total - len(received) > 0
    assert stats.pending == 0


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FrameRing(capacity=0, size=SIZE)


def test_a_lossless_ring_makes_its_writer_wait_for_room_and_close_releases_it():
    ring = FrameRing(capacity=2, size=SIZE, lossless=True)
    written = []

    def writer():
        for i in range(5):
            if ring.write(image_of(i), i, float(i), pts=i / 10):
                written.append(i)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and written == [0, 1], "the third write waits: nothing is overwritten"
    first = ring.read_new()
    thread.join(0.3)
    assert [f.index for f in first] == [0, 1] and written == [0, 1, 2, 3]
    assert [f.pts for f in first] == [0.0, 0.1]
    ring.close()
    thread.join(1.0)
    assert not thread.is_alive() and written == [0, 1, 2, 3], "close() releases the writer; its frame is refused"
    assert [f.index for f in ring.read_new()] == [2, 3], "what the ring held is still read after close()"
    assert ring.stats().dropped == 0
