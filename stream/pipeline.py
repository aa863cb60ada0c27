"""The running recognizer: capture threads -> rings -> one inference thread -> sinks.

    pipeline = Pipeline("bundles/mine", [StreamConfig("rtsp://10.0.0.5:8554/live", id="door"),
                                         StreamConfig("walk.avi", id="replay", loop=True)],
                        PipelineOptions(endpoint="tcp://127.0.0.1:5556",
                                        sinks=({"type": "mqtt", "url": "mqtt://127.0.0.1/lrcn"},)))
    stats = pipeline.run(duration_s=60)       # or: pipeline.start(); ...; stats = pipeline.stop()

The inference thread owns the scheduler (and so every head state): it reads the rings,
forwards each source's state changes as `status/<stream>` messages, resets a stream's head at a
gap, publishes predictions, and every `stats_interval_s` a status with the stream's counters.
Every message goes through one `Outbox` to every sink: the ZeroMQ socket of `endpoint` first,
then the sinks of `PipelineOptions.sinks` ([[sink]] tables). When every source has ended, it
drains and finishes by itself. `stop()` stops the sources, drains what the rings hold,
publishes a final status per stream and closes the sinks.

`reconfigure(streams)` (a reload) starts added streams, stops removed ones with a final status,
restarts changed ones, and leaves the rest alone: their head state, windows and `seq` go on as if
nothing happened. The inference thread applies the change between two cycles, so it alone ever
touches the scheduler, and swaps in the new stream table (stream.table) in one assignment: other
threads (stats, the HTTP service) read one consistent table. What they read is in stream.views.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgspec
import numpy as np

from lrcn.stream import views
from lrcn.stream.recording import ClipRecorder
from lrcn.stream.degraded import Sample, assess
from lrcn.stream.encoders.joint import open_joint_encoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.event_media import event_media, follow_event_frames, keep_originals, store_event
from lrcn.stream.event_store import EventStore
from lrcn.stream.events import Observation, finish, new_event_id, step
from lrcn.stream.hass import watched_classes
from lrcn.stream.message_schema import ActionEvent
from lrcn.stream.outbox import Outbox, default_node
from lrcn.stream.pipeline_config import (  # noqa: F401 - StreamConfig, PipelineOptions, stream_label: imported from here too
    PipelineOptions,
    StreamConfig,
    check_stream,
    source_options,
    stream_id,
    stream_label,
    with_unique_ids,
)
from lrcn.stream.runtime_bundle import RuntimeBundle, check_parts, load_runtime_bundle
from lrcn.stream.scheduler import Prediction, Scheduler, StreamPlan
from lrcn.stream.sinks import Sink, open_sink
from lrcn.stream.sinks.zeromq import ZeroMqSink
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.snapshots import Original, SnapshotWriter
from lrcn.stream.sources import FINAL_STATES, Source, SourceOptions, SourceState, open_source
from lrcn.stream.stats import (
    Histogram,
    PipelineStats,
    PublisherStats,
    StreamActivity,
    StreamOverview,
    StreamStats,
    plain,
)
from lrcn.stream.table import Counters, Served, Table, without
from lrcn.stream.views import DEGRADED, pipeline_stats, stream_stats
from lrcn.stream.windows import WindowConfig

log = logging.getLogger("lrcn.pipeline")

# A source's state change after which the stream's open windows can never complete.
GAP_STATES = (SourceState.LOST, SourceState.RECONNECTING)
DRAIN_SLICE = 8  # frames per stream per scheduler call while draining at shutdown, to keep the deadline
LOG_LEVELS = {
    SourceState.LOST: logging.WARNING,
    SourceState.RECONNECTING: logging.WARNING,
    SourceState.FAILED: logging.ERROR,
}  # other states: info
HEALTH_INTERVAL_S = 1.0  # how often the degraded check runs
RECORD_LATENCY_S = 5.0  # how far behind the capture inference may run, for the clip pre-roll


@dataclass(frozen=True)
class _Change:
    """A reload, prepared by `reconfigure` and applied by the inference thread."""

    remove: list[str]
    add: dict[str, tuple[StreamConfig, Source, StreamPlan]]
    done: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    def __init__(
        self,
        bundle: RuntimeBundle | str | Path,
        streams: Sequence[StreamConfig],
        options: PipelineOptions | None = None,
    ):
        if not streams:
            raise LrcnError("no streams to serve")
        self.options = options = options or PipelineOptions()
        self.bundle = (
            bundle
            if isinstance(bundle, RuntimeBundle)
            else load_runtime_bundle(bundle, options.backend, threads=options.threads, max_batch=options.max_batch)
        )
        if not 1 <= options.top_k <= len(self.bundle.classes):
            raise LrcnError(f"top_k must be 1 to the model's {len(self.bundle.classes)} classes, got {options.top_k}")
        self.scheduler = Scheduler(
            self.bundle.head,
            self.bundle.meta.spec.clip_length,
            {options.backend: self.bundle.encoder},
            max_batch=options.max_batch,
            novelty=self.bundle.novelty,
        )
        self._new_frame = threading.Event()
        self._stores: dict[str, EventStore] = {}  # by dir (realpath; "" for the in-memory store)
        self.snapshots = SnapshotWriter()
        self.table: Table = {}  # stream id -> Served; replaced whole, never changed in place
        self.table = self._with_added(self.table, self._prepare(with_unique_ids(streams), options.source))
        self.zeromq = _zeromq_sink(options)
        self.endpoint = self.zeromq.endpoint if self.zeromq is not None else None
        self.outbox = Outbox(_open_sinks(self.zeromq, options.sinks))
        if any(sink.takes_snapshots for sink in self.outbox.sinks):
            self.snapshots.on_jpeg = self._hand_snapshot
        self.error: BaseException | None = None
        self.last_tick: float | None = None  # time.monotonic() of the inference loop's latest turn
        self._health_checked = 0.0  # time.monotonic() of the latest degraded check
        self.latency_s = Histogram()  # capture-to-publish of every prediction, all streams
        self._changes: queue.SimpleQueue[_Change] = queue.SimpleQueue()
        self.reconfigure_lock = threading.RLock()  # a reload and the HTTP API change streams one at a time
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.started_at: float | None = None  # time.monotonic() of start()
        self._drain_deadline: float | None = None

    def _prepare(
        self, configs: list[StreamConfig], defaults: SourceOptions
    ) -> list[tuple[StreamConfig, Source, StreamPlan]]:
        """Check each config and build its (unstarted) source and plan, opening any backend not yet
        open; LrcnError on the first that cannot be served, with nothing started."""
        prepared = []
        try:
            for config in configs:
                prepared.append(self._prepare_one(config, defaults))
        except BaseException:
            for _, source, _ in prepared:
                if source.recorder is not None:
                    source.recorder.close(timeout_s=0)
            raise
        return prepared

    def _prepare_one(self, config: StreamConfig, defaults: SourceOptions) -> tuple[StreamConfig, Source, StreamPlan]:
        """One stream's checked, unstarted source and plan (with its clip recorder, if it records)."""
        spec = self.bundle.meta.spec
        backend = config.backend or self.options.backend
        if backend not in self.scheduler.encoders:
            encoder = open_joint_encoder(
                self.bundle.path,
                spec.modalities,
                backend,
                threads=self.options.threads,
                max_batch=self.options.max_batch,
            )
            check_parts(self.bundle.path, self.bundle.meta, encoder, self.bundle.head)
            self.scheduler.add_encoder(backend, encoder)
        check_stream(config, self.bundle)
        self._event_store_for(config)  # opened (and checked) now
        plan = StreamPlan(
            stream_id(config),
            WindowConfig(config.mode, config.hop, config.reset_every),
            parse_smoothing(config.smooth),
            backend,
        )
        options = source_options(config, defaults, spec.fps, self.bundle.needs_flow)
        recorder = None
        if config.record is not None and config.events is not None:  # record without events was refused above
            # Event starts trail the newest packet by a window, the minimum duration and some latency.
            lag_s = spec.clip_length / spec.fps + config.events.min_duration_s + RECORD_LATENCY_S
            recorder = ClipRecorder(config.record, stream_id(config), lag_s=lag_s)
        try:
            source = open_source(
                config.source,
                spec.input_size,
                name=config.id,
                options=options,
                new_frame=self._new_frame,
                start=False,
                recorder=recorder,
            )
        except BaseException:
            if recorder is not None:
                recorder.close(timeout_s=0)
            raise
        return config, source, plan

    def _with_added(self, table: Table, prepared: Sequence[tuple[StreamConfig, Source, StreamPlan]]) -> Table:
        """`table` and the prepared streams, each given its scheduler track and event store."""
        added = {
            stream_id(config): Served(
                config, source, self.scheduler.add_stream(plan), Counters(), self._event_store_for(config)
            )
            for config, source, plan in prepared
        }
        return {**table, **added}

    def _event_store_for(self, config: StreamConfig) -> EventStore | None:
        """Where a stream's events are stored: its record dir's index, the state dir's, or memory."""
        if config.events is None:
            return None
        where = config.record.dir if config.record is not None else self.options.state_dir
        key = os.path.realpath(where) if where else ""
        if key not in self._stores:
            self._stores = {**self._stores, key: EventStore(where or None)}
        return self._stores[key]

    @property
    def configs(self) -> dict[str, StreamConfig]:
        """Each served stream's config, by id."""
        return {name: served.config for name, served in self.table.items()}

    @property
    def sources(self) -> dict[str, Source]:
        """Each served stream's source, by id."""
        return {name: served.source for name, served in self.table.items()}

    @property
    def event_stores(self) -> list[EventStore]:
        """Every store of this pipeline's events (stream.event_store.query_all reads them together)."""
        return list(self._stores.values())

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> Pipeline:
        self.started_at = time.monotonic()
        self._announce_streams()
        self._thread.start()
        for served in self.table.values():
            served.source.start()
        return self

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every source has ended and been drained (True) or `timeout_s` passes (False)."""
        return self._finished.wait(timeout_s)

    def run(self, duration_s: float | None = None, stop: threading.Event | None = None) -> PipelineStats:
        """Start, serve until the sources end, `duration_s` passes or `stop` is set, then stop; the final stats."""
        self.start()
        self.serve_until(duration_s, stop)
        return self.stop()

    def serve_until(
        self,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        each_turn: Callable[[], None] | None = None,
    ) -> None:
        """Return once every source has ended and been drained, `duration_s` has passed or `stop` is
        set; meanwhile call `each_turn` (in this thread) every 50 ms."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._finished.wait(0.05) and not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                return
            if each_turn is not None:
                each_turn()

    def stop(self, timeout_s: float = 2.0) -> PipelineStats:
        """Stop the sources, drain the rings, publish a final status per stream, close the socket,
        all within `timeout_s` (what the rings still hold at the deadline is counted, not encoded).
        Returns the final stats."""
        deadline = time.monotonic() + timeout_s
        self._stop_sources(list(self.table), max(0.0, timeout_s - 1.0))
        self._drain_deadline = deadline - 0.6
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        elif self.started_at is None:
            self.outbox.close(timeout_s=0)  # never started: the inference thread will not close it
        self.snapshots.close(max(0.1, deadline - time.monotonic()))
        if self.error is not None:
            raise LrcnError(f"inference stopped: {type(self.error).__name__}: {self.error}") from self.error
        return self.stats()

    def close_stores(self) -> None:
        """Close the event stores (after `stop`, once nothing reads them: the HTTP API does)."""
        for store in self._stores.values():
            store.close()

    def stats(self, percentiles: bool = True) -> PipelineStats:
        """Per stream and overall counters; safe to call while running (stream.views.pipeline_stats)."""
        table = self.table  # before the scheduler's counts, so they name every stream in it
        publisher = PublisherStats() if self.zeromq is None else self.zeromq.counts()
        return pipeline_stats(
            table, self.scheduler.stats(), publisher, self.outbox.stats(), self.started_at, percentiles
        )

    def _stop_sources(self, names: Sequence[str], wait_s: float) -> None:
        """Ask every named source to stop at once, then wait up to `wait_s` in all for them to end."""
        sources = [self.table[name].source for name in names]
        for source in sources:
            source.stop(timeout_s=0)
        deadline = time.monotonic() + wait_s
        for source in sources:
            source.stop(timeout_s=max(0.0, deadline - time.monotonic()))

    def reconfigure(
        self, streams: Sequence[StreamConfig], source: SourceOptions | None = None, timeout_s: float = 10.0
    ) -> dict[str, list[str]]:
        """Serve `streams` from now on (with `source` as the capture defaults, if given): start the
        added, stop the removed (each with a final status), restart the changed, keep the rest
        untouched. Raises LrcnError, changing nothing, if a new or changed stream cannot be served.
        Returns the stream ids {"added", "removed", "restarted", "kept"}. Never call it from the
        inference thread; callers in several threads take turns (`reconfigure_lock`)."""
        with self.reconfigure_lock:
            return self._reconfigure(streams, source, timeout_s)

    def _reconfigure(
        self, streams: Sequence[StreamConfig], source: SourceOptions | None, timeout_s: float
    ) -> dict[str, list[str]]:
        configs = with_unique_ids(streams)
        defaults = source or self.options.source
        wanted = {c.id: c for c in configs}
        running = self.table
        changed = [
            name
            for name, served in running.items()
            if name in wanted
            and (
                wanted[name],
                source_options(wanted[name], defaults, self.bundle.meta.spec.fps, self.bundle.needs_flow),
            )
            != (served.config, served.source.options)
        ]
        removed = [name for name in running if name not in wanted]
        prepared = self._prepare([c for c in configs if c.id not in running or c.id in changed], defaults)
        self.options = replace(self.options, source=defaults)
        self._stop_sources(removed + changed, 1.0)
        change = _Change(removed + changed, {stream_id(config): (config, src, plan) for config, src, plan in prepared})
        self._changes.put(change)
        if not self._thread.is_alive():
            self._apply_changes()
        elif not change.done.wait(timeout_s):
            raise LrcnError(f"the inference thread did not take the new configuration within {timeout_s:g} s")
        return {
            "added": [n for n in change.add if n not in running],
            "removed": removed,
            "restarted": changed,
            "kept": [n for n in running if n in wanted and n not in changed],
        }

    # -- read-only views, any thread (stream.views) --------------------------------------------

    def health(self, max_age_s: float = 2.0) -> tuple[bool, str]:
        """(alive, why): alive while the inference loop has turned within `max_age_s`."""
        return views.health(self.last_tick, self._finished.is_set(), max_age_s)

    def readiness(self) -> dict[str, str]:
        """{stream: why it is not ready}; empty when every stream is connected (a file: or ended)."""
        return views.readiness(self.table)

    def overview(self) -> dict[str, StreamOverview]:
        return views.overview(self.table)

    def activity(self) -> dict[str, StreamActivity]:
        return views.activity(self.table, dict(self.snapshots.written_by_stream))

    def failed(self) -> dict[str, str]:
        return views.failed(self.table)

    def latest_original(self, stream: str) -> Original | None:
        """The newest frame of `stream` at the source's resolution (inside its crop), or None."""
        served = self.table.get(stream)
        return None if served is None else served.counters.last_original

    def latest_image(self, stream: str) -> np.ndarray | None:
        """The newest sampled frame of `stream` (RGB, model size), or None."""
        served = self.table.get(stream)
        return None if served is None else served.counters.last_image

    # -- inference thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            next_stats = time.monotonic() + self.options.stats_interval_s
            next_heartbeat = time.monotonic()
            while not self._stopping.is_set():
                self.last_tick = time.monotonic()
                if self._new_frame.wait(0.05) and self.options.gather_s > 0:
                    self._stopping.wait(self.options.gather_s)
                self._new_frame.clear()
                self._apply_changes()
                self._cycle()
                now = time.monotonic()
                if now >= next_heartbeat:
                    self.outbox.heartbeat(list(self.table), self.options.heartbeat_interval_s)
                    next_heartbeat = now + self.options.heartbeat_interval_s
                if now >= next_stats:
                    self._publish_stats("periodic")
                    next_stats = now + self.options.stats_interval_s
                self.outbox.report_failures(self.options.stats_interval_s, now)
                if self._all_ended():
                    break
            self._apply_changes()
            self._cycle(self._drain_deadline)  # what the rings still hold after the sources stopped
            self._publish_final(list(self.table))
        except Exception as err:  # noqa: BLE001 - reported by stop(); the thread must end cleanly
            self.error = err
            log.exception("inference stopped")
        finally:
            # The sinks are closed by the thread that uses them, never under its feet.
            self.outbox.close(timeout_s=0.5)
            self.outbox.report_failures(0.0)  # what the last writes and the close met
            self._finished.set()

    def _apply_changes(self) -> None:
        """Apply queued reloads (inference thread, or any thread before it starts)."""
        while True:
            try:
                change = self._changes.get_nowait()
            except queue.Empty:
                return
            for name in change.remove:  # already stopped: drain what they wrote, then forget them
                self._cycle(time.monotonic() + 0.5, names=[name])
                self._publish_final([name])
                self.scheduler.remove_stream(name)  # readers of the table in use still hold its track
            self.table = self._with_added(without(self.table, set(change.remove)), list(change.add.values()))
            if self.started_at is not None:
                for _, source, _ in change.add.values():
                    source.start()
                self._announce_streams()
            change.done.set()

    def _announce_streams(self) -> None:
        """Tell every sink the streams served now and the classes each watches (Home Assistant discovery)."""
        streams = {name: watched_classes(s.config.events, self.bundle.classes) for name, s in self.table.items()}
        for sink in self.outbox.sinks:
            sink.serving(streams)

    def _cycle(self, deadline: float | None = None, names: Sequence[str] | None = None) -> None:
        """Read what the sources (all, or those `names`) wrote and publish what it gives; with a
        deadline (at shutdown), in slices, leaving what is left at the deadline unencoded (counted
        as shutdown_dropped)."""
        table = self.table if names is None else {name: self.table[name] for name in names}
        # State changes first: every frame a source wrote before a change is then in its ring.
        changes = {name: served.source.poll_status() for name, served in table.items()}
        frames = {}
        for name, served in table.items():
            served.counters.frames_in.count = served.source.frames
            frames[name] = served.source.ring.read_new()
            if frames[name]:
                keep_originals(served.counters, frames[name])
        slice_size = len(max(frames.values(), key=len)) if deadline is None else DRAIN_SLICE
        while any(frames.values()):
            if deadline is not None and time.monotonic() > deadline:
                for name, left in frames.items():
                    table[name].counters.shutdown_dropped += len(left)
                break
            batch = {name: queued[:slice_size] for name, queued in frames.items()}
            frames = {name: queued[slice_size:] for name, queued in frames.items()}
            for prediction in self.scheduler.process(batch).predictions:
                self._publish(prediction)
        for name, stream_changes in changes.items():
            served = table[name]
            for change in stream_changes:
                if change.state in GAP_STATES:
                    self.scheduler.reset(name, segment=change.segment)
                    self._end_events(name)
                self._note(served, change.state.value, change.reason, change.wall_time)
                log.log(
                    LOG_LEVELS.get(change.state, logging.INFO),
                    "%s%s",
                    change.state.value,
                    f": {change.reason}" if change.reason else "",
                    extra={"stream": name, "state": change.state.value, "frames": change.frames},
                )
                stats = {**plain(self._stream_stats(served)), "frames": change.frames, "segment": change.segment}
                self.outbox.publish_status(name, change.state.value, change.reason, stats)
            recorder = served.source.recorder
            problem = recorder.take_problem() if recorder is not None else None
            if problem:  # the stream goes on; its state stays, the reason says what went wrong
                known = served.source.state
                state = known.value if known is not None else "connecting"
                self._note(served, state, problem)
                log.warning("%s", problem, extra={"stream": name, "state": state})
                self.outbox.publish_status(name, state, problem, plain(self._stream_stats(served)))
        if time.monotonic() - self._health_checked >= HEALTH_INTERVAL_S:
            self._watch_degraded(table)

    @staticmethod
    def _note(served: Served, state: str, reason: str, wall_time: float | None = None) -> None:
        """The stream's latest reason, and a line of its timeline (the status page)."""
        served.counters.last_reason = reason
        served.counters.timeline.append((time.time() if wall_time is None else wall_time, state, reason))

    def _watch_degraded(self, table: Table) -> None:
        """Enter or leave `degraded` (stream.degraded): logged once each way, and a status message."""
        now = self._health_checked = time.monotonic()
        rules = self.options.degraded
        for name, served in table.items():
            source, counters = served.source, served.counters
            connected = source.state is SourceState.CONNECTED
            counters.connected_since = (counters.connected_since or now) if connected else None
            # A looping file restarts its clock at each loop by design: only a live source's resets are a fault.
            resets = served.track.resets if source.live else 0
            counters.health.append(Sample(now, counters.predictions_out.count, resets))
            while len(counters.health) > 2 and counters.health[1].t < now - rules.window_s:
                counters.health.popleft()
            was = counters.degraded
            if not connected:
                continue  # a gap is its own state and log line; degraded or not is judged again once connected
            # One prediction per hop sampled frames.
            expected = (source.options.fps or self.bundle.meta.spec.fps) / served.config.hop
            counters.degraded = assess(rules, counters.health, counters.connected_since, expected, now, was is not None)
            if (was is None) == (counters.degraded is None):
                continue
            first, last = counters.health[0], counters.health[-1]
            rate = (last.predictions - first.predictions) / max(1e-9, last.t - first.t)
            reason = counters.degraded or f"recovered: {rate:.1f} predictions/s"
            if counters.degraded is not None:
                log.warning("degraded: %s", reason, extra={"stream": name, "state": DEGRADED})
            else:
                log.info("%s", reason, extra={"stream": name, "state": SourceState.CONNECTED.value})
            stats = self._stream_stats(served)
            self._note(served, stats.state, reason)
            self.outbox.publish_status(name, stats.state, reason, plain(stats))

    def _publish(self, prediction: Prediction) -> None:
        served = self.table[prediction.stream]
        counters, config = served.counters, served.config
        rules, label = config.events, stream_label(config, self.bundle, prediction)
        sent = self.outbox.publish_prediction(
            prediction.stream,
            frame_index=prediction.frame_index,
            window=prediction.window,
            label=label,
            score=prediction.score,
            top_k=prediction.top_k(self.bundle.classes, self.options.top_k),
            captured_at=prediction.captured_at,
            stream_time=prediction.pts,
            probabilities=dict(zip(self.bundle.classes, prediction.probabilities.tolist())),
            novelty=prediction.novelty,
            motion=prediction.motion,
        )
        latency_s = time.monotonic() - prediction.captured_at
        counters.latency_ms.add(latency_s * 1000.0)
        self.latency_s.observe(latency_s)
        counters.last_label, counters.last_score = label, prediction.score
        counters.predictions_out.add()
        if not sent:
            counters.publisher_dropped += 1
        if rules is not None:
            counters.events, events = step(
                rules,
                counters.events,
                Observation(label, prediction.score, prediction.pts, prediction.frame_index, new_event_id(time.time())),
            )
            follow_event_frames(counters, label, prediction, {e.id for e in events if e.type == "end"})
            for event in events:
                self._publish_event(prediction.stream, event)

    def _end_events(self, name: str) -> None:
        """A gap or the end of the stream ends its open event at the last frame it was seen."""
        counters = self.table[name].counters
        counters.events, events = finish(counters.events)
        for event in events:
            self._publish_event(name, event)
        counters.event_frames = {}

    def _publish_event(self, name: str, event: ActionEvent) -> None:
        wall, served = time.time(), self.table[name]
        if event.type == "start":
            started = served.counters.events_started
            started[event.label] = started.get(event.label, 0) + 1
        media = event_media(served, event, wall, self.snapshots)
        event = msgspec.structs.replace(event, **media)
        self.outbox.publish_event(name, event)
        store_event(served, event, media, wall)
        what = f"{event.label} from frame {event.start_frame}" + (
            f" to {event.end_frame} ({event.duration_s:.1f} s, peak {event.peak_score:.2f})"
            if event.type == "end"
            else ""
        )
        served.counters.timeline.append((wall, f"event {event.type}", what))
        log.info("event %s: %s", event.type, what, extra={"stream": name, "event": event.type, "label": event.label})

    def _hand_snapshot(self, name: str, kind: str, jpeg: bytes) -> None:
        """Every event snapshot (at its start, then its best frame) to the sinks that carry images: the
        retained one is the best. On the snapshot writer's thread."""
        for sink in self.outbox.sinks:
            sink.publish_snapshot(name, jpeg)

    def _publish_final(self, names: Sequence[str]) -> None:
        """A stream's last words: its open event ends, then its final status."""
        for name in names:
            self._end_events(name)
        self._publish_stats("final", names)

    def _publish_stats(self, report: str, names: Sequence[str] | None = None) -> None:
        for name in names if names is not None else list(self.table):
            served = self.table[name]
            counters, stats = served.counters, self._stream_stats(served, recent=report == "periodic")
            self.outbox.publish_status(name, stats.state, counters.last_reason, {**plain(stats), "report": report})
            if stats.dropped > counters.dropped_logged:  # one line per burst, at most one per stats interval
                log.warning(
                    "dropped %d frames at the ring (%d in all): inference is behind the camera",
                    stats.dropped - counters.dropped_logged,
                    stats.dropped,
                    extra={"stream": name, "dropped": stats.dropped},
                )
                counters.dropped_logged = stats.dropped

    def _stream_stats(self, served: Served, recent: bool = False) -> StreamStats:
        return stream_stats(served, self.scheduler.batch_sizes(), recent)

    def _all_ended(self) -> bool:
        return all(
            s.source.state in FINAL_STATES and not s.source.running and s.source.ring.stats().pending == 0
            for s in self.table.values()
        )


def _zeromq_sink(options: PipelineOptions) -> ZeroMqSink | None:
    """The ZeroMQ socket of `options.endpoint`, or None without an endpoint."""
    if options.endpoint is None:
        return None
    return ZeroMqSink(
        options.endpoint,
        bind=not options.connect,
        hwm=options.hwm,
        curve=options.curve,
        linger_s=0.5,
        warn_every_s=options.stats_interval_s,
    )


def _open_sinks(zeromq: ZeroMqSink | None, tables: Sequence[dict]) -> list[Sink]:
    """ZeroMQ (if any), then a sink per table; if one cannot be opened, the ones before it are closed."""
    sinks: list[Sink] = [zeromq] if zeromq is not None else []
    try:
        for number, table in enumerate(tables, start=1):
            try:
                sinks.append(open_sink(table, node=default_node()))
            except LrcnError as err:
                raise LrcnError(f"sink #{number} ({table.get('type')}): {err}") from None
    except BaseException:
        for sink in sinks:
            sink.close(0)
        raise
    return sinks
