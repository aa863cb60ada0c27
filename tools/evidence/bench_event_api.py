"""`/api/events` latency with many stored events: fills an event store (a record dir's
lrcn.sqlite) with N events over S streams and L labels, serves it on a real HTTP port
(stream.service with stream.event_api) and times real requests, each query a few hundred times.

    python -m lrcn.tools.evidence.bench_event_api --events 10000 --out docs/results/event_api_latency.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from lrcn.stream.event_store import EventStore, StoredEvent
from lrcn.tools.evidence.harness.script import print_and_save


class _StoredOnly:
    """What the service and the event API read of a pipeline, for a store with no pipeline running."""

    def __init__(self, store: EventStore):
        self.event_stores = [store]
        self.sources = {}
        self.bundle = None

    def health(self, max_age_s):
        return True, "bench"


def fill(store: EventStore, events: int, streams: int, labels: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    start = time.time() - events * 60.0
    rows = []
    for n in range(events):
        t = start + n * 60.0 + rng.random() * 30
        event_id = f"{int(t * 1000)}-{rng.getrandbits(32):08x}"
        stream = f"cam{n % streams}"
        rows.append(
            StoredEvent(
                event_id,
                stream,
                f"label{rng.randrange(labels)}",
                t,
                t + 5,
                rng.random(),
                f"{stream}/{event_id}.mp4",
                f"{stream}/{event_id}.jpg",
                f"{stream}/{event_id}-start.jpg",
                n * 10,
                n * 6.0,
                n * 10 + 50,
                n * 6.0 + 5,
            )
        )
    store.index.query("BEGIN")
    for row in rows:
        store.insert(row)
    store.index.query("COMMIT")


def time_requests(url: str, path: str, repeats: int) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    took, count = [], None
    try:
        for _ in range(repeats):
            began = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            took.append(time.perf_counter() - began)
            assert response.status == 200, body[:200]
            count = json.loads(body).get("count", 1)
    finally:
        connection.close()
    took.sort()
    return {
        "path": path,
        "events_returned": count,
        "ms_median": round(statistics.median(took) * 1000, 2),
        "ms_p95": round(took[int(0.95 * len(took))] * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    from lrcn.stream.service import ServiceServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        store = EventStore(scratch)
        fill(store, args.events, args.streams, args.labels)
        middle = store.query(limit=args.events // 2)[-1]
        service = ServiceServer(_StoredOnly(store), "127.0.0.1:0").start()
        try:
            paths = [
                "/api/events",
                "/api/events?limit=1000",
                "/api/events?stream=cam3",
                "/api/events?label=label5",
                "/api/events?stream=cam3&label=label5&limit=10",
                f"/api/events?after={middle.start_time}&before={middle.start_time + 3600}",
                f"/api/events/{middle.id}",
            ]
            results = [time_requests(service.url, path, args.repeats) for path in paths]
        finally:
            service.stop()
            store.close()
    report = {
        "command": f"python -m lrcn.tools.evidence.bench_event_api --events {args.events}",
        "events": args.events,
        "streams": args.streams,
        "labels": args.labels,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    return print_and_save(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
