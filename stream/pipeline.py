"""The running recognizer: capture threads -> rings -> one inference thread -> ZeroMQ.

    pipeline = Pipeline("bundles/mine", [StreamConfig("rtsp://10.0.0.5:8554/live", id="door"),
                                         StreamConfig("walk.avi", id="replay", loop=True)],
                        PipelineOptions(endpoint="tcp://127.0.0.1:5556"))
    stats = pipeline.run(duration_s=60)       # or: pipeline.start(); ...; stats = pipeline.stop()

The inference thread owns the scheduler (and so every head state): it reads the rings,
forwards each source's status events as `status/<stream>` messages, resets a stream's head at a
gap, publishes predictions, and every `stats_interval_s` a status with the stream's counters.
When every source has ended, it drains and finishes by itself. `stop()` stops the sources,
drains what the rings hold, publishes a final status per stream and closes the socket.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stream.encoders import open_encoder
from stream.errors import LrcnError
from stream.keys import ServerKeys
from stream.publisher import DEFAULT_ENDPOINT, Publisher
from stream.runtime_bundle import RuntimeBundle, check_parts, load_runtime_bundle
from stream.scheduler import Prediction, Scheduler, StreamPlan
from stream.smoothing import parse_smoothing
from stream.sources import FINAL_STATES, Source, SourceOptions, SourceState, open_source, stream_name
from stream.stats import RateMeter, Reservoir
from stream.windows import EXACT, WindowConfig

# A status event after which the stream's open windows can never complete.
GAP_STATES = (SourceState.LOST, SourceState.RECONNECTING)
DRAIN_SLICE = 8   # frames per stream per scheduler call while draining at shutdown, to keep the deadline


@dataclass(frozen=True)
class StreamConfig:
    source: str                       # camera index, file path, URL, pattern: or gst: pipeline
    id: str | None = None             # default: derived from the source
    fps: float | None = None          # sampling rate; default: the model's
    crop: tuple[int, int, int, int] | None = None   # x, y, width, height in source pixels: what the model watches
    decoder: str | None = None        # "cpu", "auto" or a hardware decoder; default: PipelineOptions.source
    mode: str = EXACT                 # "exact" or "continuous"
    hop: int = 1
    reset_every: int | None = None
    smooth: str | None = None         # "ema:ALPHA", "hysteresis:M[:MARGIN]" or None
    backend: str | None = None        # default: PipelineOptions.backend
    pace: bool = True                 # files: real time
    loop: bool = False                # files: start again at the end


@dataclass(frozen=True)
class PipelineOptions:
    endpoint: str = DEFAULT_ENDPOINT
    backend: str = "onnxruntime"
    threads: int | None = None
    curve: ServerKeys | None = None
    top_k: int = 3
    max_batch: int = 16               # largest encoder call; a TensorRT engine's profile (as `lrcn engine build`)
    hwm: int = 1000
    stats_interval_s: float = 5.0
    heartbeat_interval_s: float = 1.0
    # After a frame arrives, wait this long for other streams' frames so they share one encoder
    # call: throughput for a GPU, at up to this much latency. 0: encode what is there at once.
    gather_s: float = 0.0
    source: SourceOptions = field(default_factory=SourceOptions)


@dataclass
class _Counters:
    """What the inference thread counts per stream beyond the source and the scheduler."""
    frames_in: RateMeter = field(default_factory=RateMeter)
    predictions_out: RateMeter = field(default_factory=RateMeter)
    latency_ms: Reservoir = field(default_factory=Reservoir)
    publisher_dropped: int = 0
    shutdown_dropped: int = 0          # frames still in the ring when the stop deadline came
    last_reason: str = ""


class Pipeline:
    def __init__(self, bundle: RuntimeBundle | str | Path, streams: Sequence[StreamConfig],
                 options: PipelineOptions = PipelineOptions()):
        if not streams:
            raise LrcnError("no streams to serve")
        self.options = options
        self.bundle = bundle if isinstance(bundle, RuntimeBundle) else \
            load_runtime_bundle(bundle, options.backend, threads=options.threads, max_batch=options.max_batch)
        spec = self.bundle.meta.spec
        configs = _with_unique_ids(streams)
        encoders = {options.backend: self.bundle.encoder}
        for backend in {c.backend for c in configs} - {None, options.backend}:
            encoders[backend] = open_encoder(self.bundle.path, backend, threads=options.threads,
                                             max_batch=options.max_batch)
            check_parts(self.bundle.path, self.bundle.meta, encoders[backend], self.bundle.head)
        plans = [StreamPlan(c.id, WindowConfig(c.mode, c.hop, c.reset_every), parse_smoothing(c.smooth),
                            c.backend or options.backend) for c in configs]
        self.scheduler = Scheduler(self.bundle.head, spec.clip_length, encoders, plans, options.max_batch)
        self._new_frame = threading.Event()
        self.sources: dict[str, Source] = {}
        for config in configs:
            self.sources[config.id] = open_source(config.source, spec.input_size, name=config.id,
                                                  options=source_options(config, options.source, spec.fps),
                                                  new_frame=self._new_frame, start=False)
        self.publisher = Publisher(options.endpoint, hwm=options.hwm, curve=options.curve, linger_s=0.5)
        self.endpoint = self.publisher.endpoint
        self.error: BaseException | None = None
        self._counters = {name: _Counters() for name in self.sources}
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._started_at: float | None = None
        self._drain_deadline: float | None = None

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> Pipeline:
        self._started_at = time.monotonic()
        self._thread.start()
        for source in self.sources.values():
            source.start()
        return self

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every source has ended and been drained (True) or `timeout_s` passes (False)."""
        return self._finished.wait(timeout_s)

    def run(self, duration_s: float | None = None, stop: threading.Event | None = None) -> dict:
        """Start, serve until the sources end, `duration_s` passes or `stop` is set, then stop; the final stats."""
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._finished.is_set() and not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._finished.wait(0.05)
        return self.stop()

    def stop(self, timeout_s: float = 2.0) -> dict:
        """Stop the sources, drain the rings, publish a final status per stream, close the socket,
        all within `timeout_s` (what the rings still hold at the deadline is counted, not encoded).
        Returns the final stats."""
        deadline = time.monotonic() + timeout_s
        for source in self.sources.values():
            source.stop(timeout_s=0)  # ask them all first, then wait
        for source in self.sources.values():
            source.stop(timeout_s=max(0.0, deadline - 1.0 - time.monotonic()))
        self._drain_deadline = deadline - 0.6
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        elif self._started_at is None:
            self.publisher.close(linger_s=0)  # never started: the inference thread will not close it
        if self.error is not None:
            raise LrcnError(f"inference stopped: {type(self.error).__name__}: {self.error}") from self.error
        return self.stats()

    def stats(self) -> dict:
        """Per stream and overall counters; safe to call while running."""
        scheduler = self.scheduler.stats()
        elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        return {"elapsed_s": round(elapsed, 3), "encoded": scheduler["encoded"],
                "encoder_calls": scheduler["encoder_calls"], "batch_sizes": scheduler["batch_sizes"],
                "publisher": self.publisher.stats(),
                "streams": {name: self._stream_stats(name) for name in self.sources}}

    def failed(self) -> dict[str, str]:
        """{stream: why} for every stream that failed (gave up, or a fault retrying cannot fix)."""
        return {name: self._counters[name].last_reason for name, source in self.sources.items()
                if source.state is SourceState.FAILED}

    # -- inference thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            next_stats = time.monotonic() + self.options.stats_interval_s
            next_heartbeat = time.monotonic()
            while not self._stopping.is_set():
                if self._new_frame.wait(0.05) and self.options.gather_s > 0:
                    self._stopping.wait(self.options.gather_s)
                self._new_frame.clear()
                self._cycle()
                now = time.monotonic()
                if now >= next_heartbeat:
                    self.publisher.heartbeat(list(self.sources), self.options.heartbeat_interval_s)
                    next_heartbeat = now + self.options.heartbeat_interval_s
                if now >= next_stats:
                    self._publish_stats("periodic")
                    next_stats = now + self.options.stats_interval_s
                if self._all_ended():
                    break
            self._cycle(self._drain_deadline)  # what the rings still hold after the sources stopped
            self._publish_stats("final")
        except Exception as err:  # noqa: BLE001 - reported by stop(); the thread must end cleanly
            self.error = err
        finally:
            # The socket is closed by the thread that uses it, never under its feet.
            self.publisher.close(linger_s=0.3)
            self._finished.set()

    def _cycle(self, deadline: float | None = None) -> None:
        """Read what the sources wrote and publish what it gives; with a deadline (at shutdown),
        in slices, leaving what is left at the deadline unencoded (counted as shutdown_dropped)."""
        # Events first: every frame a source wrote before an event is then in its ring.
        events = {name: source.poll_status() for name, source in self.sources.items()}
        frames = {}
        for name, source in self.sources.items():
            self._counters[name].frames_in.count = source.frames
            frames[name] = source.ring.read_new()
        slice_size = len(max(frames.values(), key=len)) if deadline is None else DRAIN_SLICE
        while any(frames.values()):
            if deadline is not None and time.monotonic() > deadline:
                for name, left in frames.items():
                    self._counters[name].shutdown_dropped += len(left)
                break
            batch = {name: queued[:slice_size] for name, queued in frames.items()}
            frames = {name: queued[slice_size:] for name, queued in frames.items()}
            for prediction in self.scheduler.process(batch).predictions:
                self._publish(prediction)
        for name, stream_events in events.items():
            for event in stream_events:
                if event.state in GAP_STATES:
                    self.scheduler.reset(name, segment=event.segment)
                self._counters[name].last_reason = event.reason
                stats = {**self._stream_stats(name), "frames": event.frames, "segment": event.segment}
                self.publisher.publish_status(name, event.state.value, event.reason, stats)

    def _publish(self, prediction: Prediction) -> None:
        counters = self._counters[prediction.stream]
        sent = self.publisher.publish_prediction(
            prediction.stream, frame_index=prediction.frame_index, window=prediction.window, label=prediction.label,
            score=prediction.score, top_k=prediction.top_k(self.bundle.classes, self.options.top_k),
            captured_at=prediction.captured_at, stream_time=prediction.pts,
            probabilities=dict(zip(self.bundle.classes, prediction.probabilities.tolist())))
        counters.latency_ms.add((time.monotonic() - prediction.captured_at) * 1000.0)
        counters.predictions_out.add()
        if not sent:
            counters.publisher_dropped += 1

    def _publish_stats(self, report: str) -> None:
        for name, source in self.sources.items():
            stats = {**self._stream_stats(name, recent=report == "periodic"), "report": report}
            self.publisher.publish_status(name, stats["state"], self._counters[name].last_reason, stats)

    def _stream_stats(self, name: str, recent: bool = False) -> dict:
        """Counters of one stream; rates over the whole run, or since the last recent=True call."""
        source, counters = self.sources[name], self._counters[name]
        scheduled = self.scheduler.stats()
        rate = (lambda meter: meter.recent()) if recent else (lambda meter: meter.overall())
        latency = counters.latency_ms.percentiles()
        batches = scheduled["batch_sizes"]
        return {**source.stats(), **scheduled["streams"][name],
                "fps_in": rate(counters.frames_in), "fps_out": rate(counters.predictions_out),
                "publisher_dropped": counters.publisher_dropped, "shutdown_dropped": counters.shutdown_dropped,
                "latency_p50_ms": latency["p50"], "latency_p95_ms": latency["p95"], "latency_p99_ms": latency["p99"],
                "batch_mean": round(sum(k * v for k, v in batches.items()) / max(1, sum(batches.values())), 2),
                "batch_sizes": {str(k): v for k, v in batches.items()}}

    def _all_ended(self) -> bool:
        return all(s.state in FINAL_STATES and not s.running and s.ring.stats()["pending"] == 0
                   for s in self.sources.values())


def _with_unique_ids(streams: Sequence[StreamConfig]) -> list[StreamConfig]:
    """Give each stream without an id one derived from its source, numbered if it repeats."""
    taken = {c.id for c in streams if c.id}
    named = []
    for config in streams:
        if config.id is None:
            base = candidate = stream_name(config.source)
            n = 2
            while candidate in taken:
                candidate, n = f"{base}-{n}", n + 1
            taken.add(candidate)
            config = replace(config, id=candidate)
        named.append(config)
    return named


def source_options(config: StreamConfig, defaults: SourceOptions, model_fps: float) -> SourceOptions:
    """A stream's capture settings: its own where it sets them, else the pipeline's."""
    return replace(defaults, fps=config.fps or model_fps, pace=config.pace, loop=config.loop,
                   crop=tuple(config.crop) if config.crop is not None else defaults.crop,
                   decoder=config.decoder or defaults.decoder)
