"""Timing rounds and the sums the evidence tools' figures and verdicts are made of."""

from __future__ import annotations

import time

import numpy as np


def interleaved(calls: dict, rounds: int, warmup: int = 5) -> dict:
    """Each call once per round, round after round, so load from other processes falls on all
    of them alike; median wall ms and mean process CPU ms per call."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    walls = {name: [] for name in calls}
    cpus = {name: 0.0 for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            cpu, start = time.process_time(), time.perf_counter()
            call()
            walls[name].append(time.perf_counter() - start)
            cpus[name] += time.process_time() - cpu
    return {
        name: {"ms": round(float(np.median(walls[name]) * 1e3), 4), "cpu_ms": round(cpus[name] * 1e3 / rounds, 4)}
        for name in calls
    }


def median_ms(call, repeats: int, warmup: int = 5) -> float:
    """Median wall ms of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def quarters(rows: list, skip: int = 0) -> tuple[list, list]:
    """(first quarter after `skip` warm-up rows, last quarter) of a run's samples: drift and
    growth compare the two.

    >>> quarters(list(range(9)), skip=1)
    ([1, 2], [7, 8])
    """
    quarter = max(1, len(rows) // 4)
    return rows[skip : skip + quarter] or rows[:1], rows[-quarter:]


def mean(values) -> float:
    return float(np.mean(list(values)))


def extra_percent(value: float, base: float) -> float:
    """How much more `value` is than `base`, in percent, to 2 places.

    >>> extra_percent(1.05, 1.0)
    5.0
    """
    return round((value / base - 1) * 100, 2)
