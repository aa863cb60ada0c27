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
