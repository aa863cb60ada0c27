"""Bounded statistics for a process that runs for months: a latency reservoir, rate meters and
fixed-bucket histograms (what a Prometheus scrape reads).

>>> latencies = Reservoir(capacity=1000)
>>> for ms in range(1, 101):
...     latencies.add(ms)
>>> latencies.percentiles()
{'p50': 50.5, 'p95': 95.05, 'p99': 99.01, 'count': 100}
"""

from __future__ import annotations

import bisect
import random
import time
from typing import Any

import msgspec
import numpy as np


def percentiles(values, digits: int = 3) -> dict:
    """{"p50", "p95", "p99"} of `values`, rounded to `digits`, and their "count"; None each when empty.

    >>> percentiles([1.0, 2.0, 3.0, 4.0], digits=2)
    {'p50': 2.5, 'p95': 3.85, 'p99': 3.97, 'count': 4}
    """
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "count": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), digits),
        "p95": round(float(p95), digits),
        "p99": round(float(p99), digits),
        "count": len(values),
    }


class Reservoir:
    """A uniform sample of at most `capacity` values out of all ever added (Vitter's algorithm R),
    so percentiles cover the whole run in fixed memory."""

    def __init__(self, capacity: int = 2048, seed: int = 0):
        self.capacity = capacity
        self.count = 0
        self._values: list[float] = []
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self._values) < self.capacity:
            self._values.append(value)
            return
        slot = self._random.randrange(self.count)
        if slot < self.capacity:
            self._values[slot] = value

    def percentiles(self, digits: int = 3) -> dict:
        """Of the sample; "count" is of every value ever added."""
        return {**percentiles(self._values, digits), "count": self.count}


class RateMeter:
    """Events per second, over the whole run and since the last `recent()` call."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.started = clock()
        self.count = 0
        self._mark_time, self._mark_count = self.started, 0

    def add(self, n: int = 1) -> None:
        self.count += n

    def overall(self) -> float:
        elapsed = self._clock() - self.started
        return round(self.count / elapsed, 2) if elapsed > 0 else 0.0

    def recent(self) -> float:
        now = self._clock()
        elapsed, events = now - self._mark_time, self.count - self._mark_count
        self._mark_time, self._mark_count = now, self.count
        return round(events / elapsed, 2) if elapsed > 0 else 0.0


# Seconds, from a fraction of a millisecond to ten: capture-to-publish latency and encoder calls.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0)


class Histogram:
    """Counts per bucket (each bucket: values <= its upper bound), their sum and count, in fixed
    memory; `observe` is a bisect and two additions, cheap enough for every prediction.

    >>> h = Histogram((1, 2, 4))
    >>> for v in (0.5, 1, 3, 9):
    ...     h.observe(v)
    >>> h.cumulative(), h.count, h.sum
    ([(1, 2), (2, 2), (4, 3), (inf, 4)], 4, 13.5)
    """

    def __init__(self, bounds=SECONDS_BUCKETS):
        self.bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += times
        self.count += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[float, int]]:
        """[(upper bound, values <= it)], ending with (inf, count): Prometheus's `le` buckets."""
        counts, total = list(self._counts), 0  # a copy: the owning thread may be counting
        pairs = []
        for bound, n in zip((*self.bounds, float("inf")), counts):
            total += n
            pairs.append((bound, total))
        return pairs


# -- the records a stats read returns --------------------------------------------------------
#
# Each counted part reports one of these, built only when stats are read (a status message, a
# scrape, the HTTP API, the final stats), never per frame. Readers in Python read attributes; the
# edges that write JSON turn them into plain data with `plain`, so the JSON shows the same keys in
# the same order. Fields that some sources of a kind lack are UNSET, and left out of the JSON.


class RingStats(msgspec.Struct, frozen=True):
    """A FrameRing's counts: written = read + dropped + pending, always."""

    capacity: int
    written: int
    read: int
    dropped: int  # overwritten before inference read them
    pending: int


class SourceStats(msgspec.Struct, frozen=True):
    """A source's counts (stream.sources.supervisor.Source.stats)."""

    state: str
    frames: int  # decoded
    sampled: int  # on the model's grid, written to the ring
    flows: int
    segment: int
    reconnects: int
    jumps: int
    dropped: int  # at the ring
    status_dropped: int
    ring: RingStats


class TrackStats(msgspec.Struct, frozen=True):
    """What the scheduler counted for one stream."""

    seen: int
    encoded: int
    repeats: int  # frames offered again after a later one was encoded: must stay 0
    predictions: int
    resets: int


class SchedulerStats(msgspec.Struct, frozen=True):
    streams: dict[str, TrackStats]
    encoded: int
    encoded_by_modality: dict[str, int]
    encoder_calls: int
    batch_sizes: dict[int, int]  # frames per encoder call -> calls


class ClipStats(msgspec.Struct, frozen=True):
    """A stream's clip recorder (stream.recording.ClipRecorder.stats)."""

    clips: int
    failed: int
    deleted: int
    recording: bool
    preroll_s: float


class SinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """A sink's counts (stream.sinks.Sink.stats): what every sink counts, and what only some kinds
    count (UNSET on the others, left out of the JSON)."""

    sent: int  # what the transport took
    dropped: int  # a full queue or buffer, a ZeroMQ high-water mark
    shed: int | msgspec.UnsetType = msgspec.UNSET
    buffered: int | msgspec.UnsetType = msgspec.UNSET
    connected: bool | msgspec.UnsetType = msgspec.UNSET
    connects: int | msgspec.UnsetType = msgspec.UNSET
    failed: int  # lost to a failure of the transport
    undelivered: int | msgspec.UnsetType = msgspec.UNSET
    rotations: int | msgspec.UnsetType = msgspec.UNSET
    queued: int | msgspec.UnsetType = msgspec.UNSET
    problem: str | None  # the latest failure, "" or None: none
    handshake_failures: int | msgspec.UnsetType = msgspec.UNSET


class PublisherStats(msgspec.Struct, frozen=True):
    """The ZeroMQ socket's counts (all 0 without one)."""

    sent: int = 0
    shed: int = 0
    undelivered: int = 0


class StreamStats(msgspec.Struct, frozen=True):
    """One stream's counters, as a status message carries them (flat, in this order). Rates are
    over the whole run, or over the last stats interval in a periodic status."""

    state: str  # the source's, or `degraded` (stream.degraded)
    frames: int
    sampled: int
    flows: int
    segment: int
    reconnects: int
    jumps: int
    dropped: int
    status_dropped: int
    ring_capacity: int
    ring_written: int
    ring_read: int
    ring_pending: int
    seen: int
    encoded: int
    repeats: int
    predictions: int
    resets: int
    clips: ClipStats | msgspec.UnsetType  # UNSET: the stream records nothing
    fps_in: float
    fps_out: float
    publisher_dropped: int
    shutdown_dropped: int
    latency_p50_ms: float | None  # None: no prediction yet, or not asked for (a scrape)
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    batch_mean: float
    batch_sizes: dict[str, int]


class PipelineStats(msgspec.Struct, frozen=True):
    """A pipeline's counters: what `lrcn serve --stats-json` writes and `Pipeline.stop` returns."""

    elapsed_s: float
    encoded: int
    encoded_by_modality: dict[str, int]
    encoder_calls: int
    batch_sizes: dict[int, int]
    publisher: PublisherStats
    sinks: dict[str, SinkStats]
    streams: dict[str, StreamStats]


class TimelineEntry(msgspec.Struct, frozen=True):
    time: float  # wall clock
    state: str
    reason: str


class StreamOverview(msgspec.Struct, frozen=True):
    """What a person looking at the service wants of one stream (the status page, /api/streams)."""

    source: str
    live: bool
    state: str
    reason: str
    label: str | None
    score: float | None
    fps_in: float
    fps_out: float
    dropped: int
    reconnects: int
    predictions: int
    events: list[TimelineEntry]  # state changes, problems and action events, oldest first


class StreamActivity(msgspec.Struct, frozen=True):
    """What a stream sees, for a metrics scrape."""

    open: str | None  # the label of its open event
    started: dict[str, int]  # label -> events started
    snapshots: int  # snapshots written


def plain(records: Any) -> Any:
    """Records (or containers of them) as JSON-ready builtins: what a status message, an HTTP
    answer or a stats file holds."""
    return msgspec.to_builtins(records)
