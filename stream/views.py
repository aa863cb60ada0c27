"""Read-only views of a running pipeline: its stats, health, readiness, overview and activity.

Each takes the pipeline's stream table once (stream.table: replaced whole by the inference thread,
never changed in place), so it sees one consistent set of streams while a reload adds or removes
some; it reads counters and builds the typed records of stream.stats, and changes nothing but
the rate meters' marks of a periodic report (the inference thread's own call). Safe from any thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec

from lrcn.stream.scheduler import track_stats
from lrcn.stream.sources import SourceState
from lrcn.stream.stats import (
    PipelineStats,
    PublisherStats,
    SchedulerStats,
    SinkStats,
    StreamActivity,
    StreamOverview,
    StreamStats,
    TimelineEntry,
)
from lrcn.stream.table import Counters, Served, Table

DEGRADED = "degraded"  # a connected stream that yields far too few predictions (stream.degraded)
NO_PERCENTILES = {"p50": None, "p95": None, "p99": None}


def shown_state(state: str, counters: Counters) -> str:
    """The state a person and a reader see: a connected stream the degraded check flags is `degraded`."""
    return DEGRADED if state == SourceState.CONNECTED.value and counters.degraded is not None else state


def stream_stats(
    served: Served, batches: Mapping[int, int], recent: bool = False, percentiles: bool = True
) -> StreamStats:
    """One stream's counters; rates over the whole run, or since the last recent=True call (only the
    inference thread's periodic report makes that one). `batches`: the scheduler's batch sizes, all streams."""
    source, counters, recorder = served.source.stats(), served.counters, served.source.recorder
    track = track_stats(served.track)
    latency = counters.latency_ms.percentiles() if percentiles else NO_PERCENTILES
    rate = (lambda meter: meter.recent()) if recent else (lambda meter: meter.overall())
    calls = sum(batches.values())
    return StreamStats(
        state=shown_state(source.state, counters),
        frames=source.frames,
        sampled=source.sampled,
        flows=source.flows,
        segment=source.segment,
        reconnects=source.reconnects,
        jumps=source.jumps,
        dropped=source.dropped,
        status_dropped=source.status_dropped,
        ring_capacity=source.ring.capacity,
        ring_written=source.ring.written,
        ring_read=source.ring.read,
        ring_pending=source.ring.pending,
        seen=track.seen,
        encoded=track.encoded,
        repeats=track.repeats,
        predictions=track.predictions,
        resets=track.resets,
        clips=msgspec.UNSET if recorder is None else recorder.stats(),
        fps_in=rate(counters.frames_in),
        fps_out=rate(counters.predictions_out),
        publisher_dropped=counters.publisher_dropped,
        shutdown_dropped=counters.shutdown_dropped,
        latency_p50_ms=latency["p50"],
        latency_p95_ms=latency["p95"],
        latency_p99_ms=latency["p99"],
        batch_mean=round(sum(k * v for k, v in batches.items()) / max(1, calls), 2),
        batch_sizes={str(k): v for k, v in batches.items()},
    )


def pipeline_stats(
    table: Table,
    scheduler: SchedulerStats,
    publisher: PublisherStats,
    sinks: dict[str, SinkStats],
    started_at: float | None,
    percentiles: bool = True,
) -> PipelineStats:
    """Per stream and overall counters. Without `percentiles` (a metrics scrape, which has the
    latency histogram), no latency percentiles: cheaper. `table` is read before `scheduler`, so the
    scheduler's counts name every stream of the table."""
    return PipelineStats(
        elapsed_s=round(time.monotonic() - started_at, 3) if started_at else 0.0,
        encoded=scheduler.encoded,
        encoded_by_modality=scheduler.encoded_by_modality,
        encoder_calls=scheduler.encoder_calls,
        batch_sizes=scheduler.batch_sizes,
        publisher=publisher,
        sinks=sinks,
        streams={
            name: stream_stats(served, scheduler.batch_sizes, percentiles=percentiles) for name, served in table.items()
        },
    )


def health(last_tick: float | None, finished: bool, max_age_s: float = 2.0) -> tuple[bool, str]:
    """(alive, why): alive while the inference loop (last turned at monotonic `last_tick`) has
    turned within `max_age_s`."""
    if last_tick is None:
        return False, "the inference loop has not started"
    age = time.monotonic() - last_tick
    if finished:
        return False, "the inference loop has finished"
    return age <= max_age_s, f"the inference loop turned {age:.2f} s ago"


def readiness(table: Table) -> dict[str, str]:
    """{stream: why it is not ready}; empty when ready: every live stream connected, every file
    stream connected or ended normally."""
    not_ready = {}
    for name, served in table.items():
        source, reason = served.source, served.counters.last_reason
        ok = (SourceState.CONNECTED,) if source.live else (SourceState.CONNECTED, SourceState.ENDED)
        if source.state not in ok:
            state = source.state.value if source.state else "created"
            not_ready[name] = state + (f": {reason}" if reason else "")
    return not_ready


def failed(table: Table) -> dict[str, str]:
    """{stream: why} for every stream that failed (gave up, or a fault retrying cannot fix)."""
    return {
        name: served.counters.last_reason for name, served in table.items() if served.source.state is SourceState.FAILED
    }


def overview(table: Table) -> dict[str, StreamOverview]:
    """What a person looking at the service wants per stream: state, label, rates, drops and recent events."""
    streams = {}
    for name, served in table.items():
        stats, counters = served.source.stats(), served.counters
        streams[name] = StreamOverview(
            source=served.source.display,
            live=served.source.live,
            state=shown_state(stats.state, counters),
            reason=counters.last_reason,
            label=counters.last_label,
            score=counters.last_score,
            fps_in=counters.frames_in.overall(),
            fps_out=counters.predictions_out.overall(),
            dropped=stats.dropped,
            reconnects=stats.reconnects,
            predictions=counters.predictions_out.count,
            events=[TimelineEntry(t, state, reason) for t, state, reason in list(counters.timeline)],
        )
    return streams


def activity(table: Table, snapshots_written: Mapping[str, int]) -> dict[str, StreamActivity]:
    """Per stream: the label of its open event, events started by label, snapshots written; read
    by a metrics scrape."""
    activities = {}
    for name, served in table.items():
        events = served.counters.events
        activities[name] = StreamActivity(
            open=events.open.label if events.open is not None and events.open.started else None,
            started=dict(served.counters.events_started),
            snapshots=snapshots_written.get(name, 0),
        )
    return activities
