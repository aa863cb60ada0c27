"""What `lrcn serve` does once its arguments are parsed (tools/cli/serve.py holds the command and
its arguments): the streams and options from flags and the deployment file, the pipeline
and the service port run until the end, signals, reloads and the final stats."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
from dataclasses import fields, replace
from pathlib import Path

import cv2

from lrcn.stream import settings as schema
from lrcn.stream.recording import RecordRules, check_record_dir
from lrcn.stream.credentials import redact
from lrcn.stream.degraded import DegradedRules
from lrcn.stream.deploy import load_deployment
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from lrcn.stream.keys import load_client_keys, load_server_keys
from lrcn.stream.novelty import parse_novelty
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.service import ServiceServer
from lrcn.stream.sources import SourceOptions
from lrcn.stream.stats import PipelineStats, plain
from lrcn.tools.cli import hangups

SYNTH_PREFIX = "synth:"
log = logging.getLogger("lrcn.serve")


def synthetic_source(uri: str, size: tuple[int, int], folder: Path) -> str:
    """`synth:[SECONDS[:SEED]]` -> a continuous synthetic video (models.synth) written into `folder`,
    with its per-frame labels beside it."""
    from lrcn.models import synth

    try:
        parts = [p for p in uri[len(SYNTH_PREFIX) :].split(":") if p]
        seconds = float(parts[0]) if parts else 60.0
        seed = int(parts[1]) if len(parts) > 1 else 0
        if len(parts) > 2 or seconds <= 0:
            raise ValueError
    except ValueError:
        raise LrcnError(f"synthetic source must be synth:[SECONDS[:SEED]], got {uri!r}") from None
    video, labels = synth.write_continuous(folder / f"synth-{seed}.avi", duration_s=seconds, size=max(size), seed=seed)
    log.info("%s is %s (labels: %s)", uri, video, labels)
    return str(video)


class SyntheticSources:
    """Expands synth: sources into files in `folder`, once each: a reload that keeps a synth:
    stream must not rewrite the file its running source reads."""

    def __init__(self, size: tuple[int, int], folder: Path):
        self.size, self.folder = size, folder
        self._written: dict[str, str] = {}

    def __call__(self, config: StreamConfig) -> StreamConfig:
        if not config.source.startswith(SYNTH_PREFIX):
            return config
        if config.source not in self._written:
            self._written[config.source] = synthetic_source(config.source, self.size, self.folder)
        return replace(config, source=self._written[config.source])


def given(args, section: type, names=None) -> dict:
    """The flags of `section`'s settings given on the command line, checked by the schema."""
    names = names or section.__struct_fields__
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    for key in ("classes", "ignore"):
        if isinstance(values.get(key), str):
            values[key] = [name.strip() for name in values[key].split(",") if name.strip()]
    schema.check_values(values, section)
    return values


def event_rules_from_args(args) -> EventRules | None:
    """EventRules from the events flags (--record alone asks for the defaults), None when none is given."""
    flags = given(args, schema.Events)
    if not flags and not args.record:
        return None
    return EventRules(**{key: tuple(value) if isinstance(value, list) else value for key, value in flags.items()})


def streams_from_args(args, settings: dict) -> list[StreamConfig]:
    names = args.name or []
    if len(names) > len(args.sources):
        raise LrcnError(f"{len(names)} --name for {len(args.sources)} sources")
    for name in names:
        try:
            schema.check_stream_id(name)
        except LrcnError as err:
            raise LrcnError(f"--name: {err}") from None
    given(args, schema.Stream, ("fps", "mode", "hop", "reset_every", "idle_motion"))
    idle_motion = schema.default(schema.Stream, "idle_motion") if args.idle_motion is None else args.idle_motion
    events = event_rules_from_args(args)
    novelty = parse_novelty(args.novelty)
    record = None
    if args.record:
        record = RecordRules(
            args.record,
            **given(args, schema.Record, ("pre_s", "post_s", "max_clip_s", "max_gb", "retain_days", "min_free_gb")),
        )
        check_record_dir(record.dir)
    flag_streams = [
        StreamConfig(
            source,
            id=names[i] if i < len(names) else None,
            fps=args.fps,
            crop=args.crop,
            mode=args.mode,
            hop=args.hop,
            reset_every=args.reset_every,
            smooth=args.smooth,
            pace=args.pace,
            loop=args.loop,
            events=events,
            record=record,
            novelty=novelty,
            idle_motion=idle_motion,
        )
        for i, source in enumerate(args.sources)
    ]
    streams = list(settings.get("streams", [])) + flag_streams
    schema.check_distinct_ids(s.id for s in streams if s.id is not None)  # the file's and --name's together
    return streams


def options_from_args(args, settings: dict) -> PipelineOptions:
    """Flags win over the deployment file's settings, which win over the defaults (stream/settings.py)."""
    flags = given(args, schema.Settings, [name for name in schema.Settings.__struct_fields__ if hasattr(args, name)])

    def pick(name: str):
        return flags[name] if name in flags else settings.get(name, schema.default(schema.Settings, name))

    curve_keys = pick("curve_keys")
    source = replace(SourceOptions(), **{name: pick(name) for name in schema.SOURCE_SETTINGS})
    if args.endpoint or args.connect:  # a flag replaces the file's choice, bind or connect
        endpoint, connect = args.endpoint, args.connect
    else:
        endpoint, connect = settings.get("endpoint"), settings.get("connect")
        if endpoint and connect:
            raise LrcnError("the deployment file sets both endpoint (bind) and connect: keep one")
    return PipelineOptions(
        endpoint=connect or endpoint or PipelineOptions.endpoint,
        connect=bool(connect),
        backend=pick("backend"),
        threads=pick("threads"),
        curve=None
        if not curve_keys
        else load_client_keys(curve_keys, pick("curve_client"))
        if connect
        else load_server_keys(curve_keys),
        top_k=pick("top_k"),
        max_batch=pick("max_batch"),
        stats_interval_s=pick("stats_interval_s"),
        gather_s=pick("gather_ms") / 1000.0,
        source=source,
        state_dir=pick("state_dir"),
        degraded=DegradedRules.from_settings(pick),
        sinks=tuple(settings.get("sinks", [])) + sink_tables_from_args(args),
    )


def service_options(args, settings: dict) -> dict:
    """ServiceServer's web_config and allowed_hosts: flags win over the deployment file."""
    hosts = args.allowed_hosts if args.allowed_hosts is not None else settings.get("allowed_hosts")
    return {
        "web_config": args.web_config or settings.get("web_config"),
        "allowed_hosts": None if hosts is None else list(hosts),
    }


def sink_tables_from_args(args) -> tuple[dict, ...]:
    """The shorthand flags as [[sink]] tables, after the file's."""
    return tuple(
        [{"type": "mqtt", "url": url} for url in args.mqtt or []]
        + [{"type": "jsonl", "path": path} for path in args.jsonl or []]
    )


class Signals:
    """SIGINT and SIGTERM set `stop` (so the pipeline drains and says goodbye instead of dying
    mid-frame), SIGHUP queues a reload (tools/cli/hangups.py, from the first moment of `lrcn serve`);
    the handlers only set flags, the main loop acts on them."""

    def __init__(self):
        self.stop = threading.Event()
        self.stopped_by: str | None = None

    def _on_stop(self, number, _frame) -> None:
        self.stopped_by = signal.Signals(number).name
        self.stop.set()

    @staticmethod
    def on_reload(reload) -> None:
        """Call `reload` if SIGHUP came since the last call."""
        if hangups.take():
            reload()

    @contextlib.contextmanager
    def handled(self):
        hangups.queue()
        handlers = {signal.SIGINT: self._on_stop, signal.SIGTERM: self._on_stop}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def port_settings(args, settings: dict) -> dict:
    """The HTTP port's address and lock, which only a restart changes."""
    return {"metrics": args.metrics or settings.get("metrics"), **service_options(args, settings)}


def reload_deployment(args, pipeline: Pipeline, expand: SyntheticSources, port: dict) -> None:
    """Re-read --config and apply it; on any mistake, one error line and no change. `port`: the
    port_settings the service started with."""
    curve = reload_curve_keys(pipeline)
    if not args.config:
        if not curve:
            log.warning("SIGHUP: nothing to reload (serve was started without --config or --curve-keys)")
        return
    try:
        deployment = load_deployment(args.config)
        settings = {**deployment.settings, "streams": deployment.streams}
        options = options_from_args(args, settings)
        change = pipeline.reconfigure([expand(s) for s in streams_from_args(args, settings)], options.source)
    except LrcnError as err:
        log.error("reload refused, the running configuration stays: %s", err, extra={"config": args.config})
        return
    pipeline.options = replace(pipeline.options, degraded=options.degraded)  # read at each check: applies at once
    fixed = [
        f.name
        for f in fields(PipelineOptions)
        if f.name not in ("source", "degraded") and getattr(options, f.name) != getattr(pipeline.options, f.name)
    ]
    reloaded_port = port_settings(args, deployment.settings)
    fixed += [name for name, value in reloaded_port.items() if value != port[name]]
    if fixed:
        log.warning(
            "reload: %s changed in %s; %s at the next start",
            ", ".join(fixed),
            args.config,
            "it takes effect" if len(fixed) == 1 else "they take effect",
        )
    log.info(
        "reloaded %s: %s",
        args.config,
        "; ".join(f"{what} {', '.join(names)}" for what, names in change.items() if names),
        extra={"config": args.config, **change},
    )


def reload_curve_keys(pipeline: Pipeline) -> bool:
    """Re-read the authorized subscribers of a CURVE publisher; False if it is not one."""
    try:
        removed = pipeline.zeromq.reload_keys()
    except LrcnError as err:
        log.error("SIGHUP: CURVE keys not reloaded, the authorized list stays as it was: %s", err)
        return True
    if removed is not None:
        log.info("SIGHUP: CURVE keys reloaded, %d revoked (refused from their next handshake)", removed["subscribers"])
    return removed is not None


def log_summary(stats: PipelineStats) -> None:
    publisher = stats.publisher
    log.info(
        f"served {stats.elapsed_s:.1f} s: {stats.encoded} frames encoded in {stats.encoder_calls} "
        f"calls, batch sizes {stats.batch_sizes}, {publisher.sent} messages sent, {publisher.shed} shed"
    )
    if publisher.undelivered:
        log.warning(
            "%d messages not delivered: no proxy accepted the publisher (%s)",
            publisher.undelivered,
            stats.sinks["zeromq"].problem,
        )
    for name, counters in stats.sinks.items():
        if name != "zeromq" or counters.failed:
            log.info(
                "sink %s: %s",
                name,
                ", ".join(f"{key} {value}" for key, value in plain(counters).items() if key != "problem" or value),
            )
    for name, s in stats.streams.items():
        latency = (
            "-"
            if s.latency_p50_ms is None
            else f"{s.latency_p50_ms:.1f}/{s.latency_p95_ms:.1f}/{s.latency_p99_ms:.1f} ms"
        )
        log.info(
            f"{s.state}, {s.frames} frames in ({s.fps_in:.1f} fps), {s.encoded} encoded, "
            f"{s.predictions} predictions ({s.fps_out:.1f}/s), dropped {s.dropped} at the ring and "
            f"{s.publisher_dropped} at the publisher, {s.reconnects} reconnects, {s.resets} resets, "
            f"latency p50/p95/p99 {latency}",
            extra={"stream": name},
        )


def quiet_video_libraries() -> None:
    """FFmpeg and OpenCV print their own lines for every failed connection attempt; the status
    events already say what happened, once, so stderr keeps one line per problem."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def serve(args) -> int:
    """Serve until done; the exit status (0, or 1 when a stream failed)."""
    quiet_video_libraries()
    deployment = load_deployment(args.config) if args.config else None
    settings = dict(deployment.settings) if deployment else {}
    if deployment:
        settings["streams"] = deployment.streams
    if not args.sources and not deployment:
        raise LrcnError("nothing to serve: give SOURCE arguments or --config FILE")
    options = options_from_args(args, settings)
    streams = streams_from_args(args, settings)  # every flag checked before the bundle loads
    port = port_settings(args, settings)
    metrics = port["metrics"]
    if not metrics and any(service_options(args, settings).values()):
        log.warning("web_config and allowed_hosts lock the --metrics port, and there is none")
    bundle = load_runtime_bundle(args.bundle, options.backend, threads=options.threads, max_batch=options.max_batch)
    with tempfile.TemporaryDirectory(prefix="lrcn-serve-") as scratch:
        expand = SyntheticSources(bundle.meta.spec.input_size, Path(scratch))
        pipeline = Pipeline(bundle, [expand(s) for s in streams], options)
        try:
            service = ServiceServer(pipeline, metrics, **service_options(args, settings)) if metrics else None
        except LrcnError:
            pipeline.stop(timeout_s=0)
            raise
        if deployment:
            log.info(
                "loaded %s: %d streams",
                deployment.path,
                len(deployment.streams),
                extra={"config": str(deployment.path)},
            )
        where = f"into {pipeline.endpoint}" if options.connect else f"on {pipeline.endpoint}"
        where += "".join(f", {sink.describe()}" for sink in pipeline.outbox.sinks[1:])
        print(
            redact(
                f"lrcn: serving {', '.join(pipeline.sources)} {where}"
                f"{f', metrics on {service.url}/metrics' if service else ''} (Ctrl-C stops)"
            ),
            flush=True,
        )
        with Signals().handled() as signals:
            pipeline.start()
            if service:
                service.start()
            try:
                pipeline.serve_until(
                    args.duration,
                    signals.stop,
                    lambda: signals.on_reload(lambda: reload_deployment(args, pipeline, expand, port)),
                )
                log.info("stopping%s", f" ({signals.stopped_by})" if signals.stopped_by else "")
                stats = pipeline.stop()
            finally:
                if service:
                    service.stop()
                pipeline.close_stores()
    log_summary(stats)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(plain(stats), indent=1))
    failed = pipeline.failed()
    for name, reason in failed.items():
        log.error("stream %s failed: %s", name, reason, extra={"stream": name})
    return 1 if failed else 0
