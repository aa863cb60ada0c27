"""Prometheus metrics of a running pipeline, read at scrape time.

Nothing is counted twice: a scrape turns the counters the pipeline keeps anyway (its `stats()`,
the same numbers as the final stats line) and its fixed-bucket histograms into metric families,
so serving metrics costs nothing between scrapes.

>>> registry = pipeline_registry(pipeline)                                      # doctest: +SKIP
>>> print(prometheus_client.generate_latest(registry).decode())                 # doctest: +SKIP
lrcn_frames_decoded_total{stream="door"} 1523.0
...
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from msgspec import UnsetType
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from lrcn.stream import __version__
from lrcn.stream.sources import SourceState
from lrcn.stream.stats import Histogram, StreamActivity, StreamStats

# (metric name without _total, help, field of a stream's stats: stream.stats.StreamStats)
STREAM_COUNTERS = (
    ("lrcn_frames_decoded", "Frames the capture decoded", "frames"),
    ("lrcn_frames_sampled", "Frames on the model's sampling grid, written to the ring", "sampled"),
    ("lrcn_flows_computed", "Optical flow fields computed, one per sampled frame but a segment's first", "flows"),
    ("lrcn_frames_encoded", "Frames the encoder encoded", "encoded"),
    ("lrcn_predictions", "Predictions made", "predictions"),
    ("lrcn_ring_dropped_frames", "Sampled frames the ring overwrote before inference read them", "dropped"),
    (
        "lrcn_publisher_dropped_predictions",
        "Predictions a sink dropped (ZeroMQ high-water mark, a full queue)",
        "publisher_dropped",
    ),
    ("lrcn_reconnects", "Successful reconnections after a lost connection", "reconnects"),
    ("lrcn_state_resets", "Head state resets (a gap in the stream)", "resets"),
    ("lrcn_timestamp_jumps", "Timestamp jumps or resets within a connection", "jumps"),
)
# `degraded` (stream.degraded): connected, but far too few predictions or resets in a loop.
STATES = tuple(member.value for member in SourceState) + ("degraded",)
# Batch sizes are whole numbers up to the largest encoder call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def histogram_family(
    name: str, documentation: str, label_names: list[str], series: Mapping[tuple[str, ...], Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, histogram in series.items():
        buckets = histogram.cumulative()
        family.add_metric(
            list(labels), [(_bound(b), n) for b, n in buckets], sum_value=histogram.sum if buckets[-1][1] else 0.0
        )
    return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def batch_histogram(counts: Mapping[int, int]) -> Histogram:
    """The scheduler's exact batch-size counts as a bucketed histogram."""
    histogram = Histogram(BATCH_BUCKETS)
    for size, n in counts.items():
        histogram.observe(size, times=n)
    return histogram


def activity_families(activity: Mapping[str, StreamActivity], streams: Mapping[str, StreamStats], classes) -> Iterator:
    """What the streams see: events started by label, the label of each stream's open event, clips
    and snapshots written."""
    events = CounterMetricFamily("lrcn_events", "Events started, by label", labels=["stream", "label"])
    for name, seen in activity.items():
        for label, n in sorted(seen.started.items()):
            events.add_metric([name, label], n)
    yield events
    current = GaugeMetricFamily(
        "lrcn_stream_activity",
        "1 for the label of the stream's open event, 0 for the others (all 0: no event open)",
        labels=["stream", "label"],
    )
    for name, seen in activity.items():
        for label in sorted({*classes, *seen.started, *([seen.open] if seen.open else [])}):
            current.add_metric([name, label], float(label == seen.open))
    yield current
    clips = CounterMetricFamily("lrcn_clips_written", "Event clips written (streams that record)", labels=["stream"])
    for name, s in streams.items():
        if not isinstance(s.clips, UnsetType):
            clips.add_metric([name], s.clips.clips)
    yield clips
    snapshots = CounterMetricFamily("lrcn_snapshots_written", "Event snapshots written to disk", labels=["stream"])
    for name, seen in activity.items():
        snapshots.add_metric([name], seen.snapshots)
    yield snapshots


class PipelineCollector(Collector):
    def __init__(self, pipeline):
        self.pipeline = pipeline

    def collect(self) -> Iterator:
        pipeline = self.pipeline
        spec = pipeline.bundle.meta.spec
        info = InfoMetricFamily("lrcn_build", "What this recognizer runs")
        info.add_metric(
            [],
            {
                "version": __version__,
                "backend": pipeline.options.backend,
                "classes": ",".join(spec.classes),
                "input_size": "x".join(map(str, spec.input_size)),
                "clip_length": str(spec.clip_length),
                "fps": f"{spec.fps:g}",
            },
        )
        yield info

        stats = pipeline.stats(percentiles=False)
        streams = stats.streams
        state = GaugeMetricFamily(
            "lrcn_stream_state", "1 for the stream's current state, 0 for the others", labels=["stream", "state"]
        )
        for name, s in streams.items():
            for candidate in STATES:
                state.add_metric([name, candidate], float(s.state == candidate))
        yield state
        for metric, documentation, key in STREAM_COUNTERS:
            family = CounterMetricFamily(metric, documentation, labels=["stream"])
            for name, s in streams.items():
                family.add_metric([name], getattr(s, key))
            yield family
        yield from activity_families(pipeline.activity(), streams, spec.classes)
        sinks = stats.sinks
        for metric, documentation, key in (
            ("lrcn_messages_sent", "Messages a sink sent (a file: wrote)", "sent"),
            (
                "lrcn_messages_dropped",
                "Messages a sink dropped: a full queue or buffer, a ZeroMQ high-water mark",
                "dropped",
            ),
        ):
            family = CounterMetricFamily(metric, documentation, labels=["sink"])
            for name, counters in sinks.items():
                family.add_metric([name], getattr(counters, key))
            yield family
        failures = CounterMetricFamily(
            "lrcn_sink_failures",
            "Failures of a sink's transport: lines a full disk "
            "refused, connections lost or refused, sends the transport refused",
            labels=["sink"],
        )
        for name, counters in sinks.items():
            failures.add_metric([name], counters.failed)
        yield failures
        connected = GaugeMetricFamily(
            "lrcn_sink_connected", "1 while a sink with a connection (MQTT) has it", labels=["sink"]
        )
        for name, counters in sinks.items():
            if not isinstance(counters.connected, UnsetType):
                connected.add_metric([name], float(counters.connected))
        yield connected
        failures = CounterMetricFamily(
            "lrcn_curve_handshake_failures",
            "Failed CURVE handshakes: keys not authorized (refused through ZAP), or no CURVE or another server key",
            labels=["sink"],
        )
        for name, counters in sinks.items():
            if not isinstance(counters.handshake_failures, UnsetType):
                failures.add_metric([name], counters.handshake_failures)
        yield failures
        calls = CounterMetricFamily("lrcn_encoder_calls", "Encoder calls")
        calls.add_metric([], stats.encoder_calls)
        yield calls
        encoded = CounterMetricFamily(
            "lrcn_modality_frames_encoded",
            "Frames each modality's encoder encoded, "
            "all streams (a two-stream bundle: rgb and flow, once per frame each)",
            labels=["modality"],
        )
        for kind, count in stats.encoded_by_modality.items():
            encoded.add_metric([kind], count)
        yield encoded

        # One histogram for all streams: they share the inference thread, and per stream it would be
        # most of a scrape's samples (each stream's percentiles are in its status messages).
        yield histogram_family(
            "lrcn_capture_to_publish_seconds",
            "From a frame's arrival to its prediction's send",
            [],
            {(): pipeline.latency_s},
        )
        yield histogram_family(
            "lrcn_encoder_call_seconds",
            "Time of one encoder call",
            ["encoder"],
            {(key,): h for key, h in pipeline.scheduler.encode_seconds.items()},
        )
        yield histogram_family(
            "lrcn_encoder_batch_size", "Frames per encoder call", [], {(): batch_histogram(stats.batch_sizes)}
        )
        tick = pipeline.last_tick
        if tick is not None:
            age = GaugeMetricFamily("lrcn_inference_loop_age_seconds", "Seconds since the inference loop last turned")
            age.add_metric([], max(0.0, time.monotonic() - tick))
            yield age


def pipeline_registry(pipeline) -> CollectorRegistry:
    """A registry of the pipeline's metrics and the process's own (CPU, memory, threads, Python)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
