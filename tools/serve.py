"""`lrcn serve`: streams from flags and/or a deployment file, run by stream.pipeline until the
sources end, --duration passes, or SIGINT/SIGTERM; then the final stats.

Exit status: 0 when every stream ended or was stopped, 1 when any stream failed (gave up after
--max-attempts, or met a fault that retrying cannot fix), 2 for bad usage or configuration."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import cv2

from stream.deploy import load_deployment
from stream.errors import LrcnError
from stream.keys import load_server_keys
from stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from stream.runtime_bundle import load_runtime_bundle
from stream.sources import SourceOptions

SYNTH_PREFIX = "synth:"


def synthetic_source(uri: str, size: tuple[int, int], folder: Path) -> str:
    """`synth:[SECONDS[:SEED]]` -> a continuous synthetic video (models.synth) written into `folder`,
    with its per-frame labels beside it."""
    from models import synth

    try:
        parts = [p for p in uri[len(SYNTH_PREFIX):].split(":") if p]
        seconds = float(parts[0]) if parts else 60.0
        seed = int(parts[1]) if len(parts) > 1 else 0
        if len(parts) > 2 or seconds <= 0:
            raise ValueError
    except ValueError:
        raise LrcnError(f"synthetic source must be synth:[SECONDS[:SEED]], got {uri!r}") from None
    video, labels = synth.write_continuous(folder / f"synth-{seed}.avi", duration_s=seconds, size=max(size), seed=seed)
    print(f"lrcn: {uri} is {video} (labels: {labels})", file=sys.stderr)
    return str(video)


def streams_from_args(args, settings: dict) -> list[StreamConfig]:
    names = args.name or []
    if len(names) > len(args.sources):
        raise LrcnError(f"{len(names)} --name for {len(args.sources)} sources")
    flag_streams = [StreamConfig(source, id=names[i] if i < len(names) else None, fps=args.fps, crop=args.crop,
                                 mode=args.mode, hop=args.hop, reset_every=args.reset_every, smooth=args.smooth,
                                 pace=args.pace, loop=args.loop) for i, source in enumerate(args.sources)]
    return list(settings.get("streams", [])) + flag_streams


def options_from_args(args, settings: dict) -> PipelineOptions:
    """Flags win over the deployment file's settings, which win over the defaults."""
    def pick(flag: str, key: str | None = None, default=None):
        value = getattr(args, flag)
        return value if value is not None else settings.get(key or flag, default)

    curve_keys = pick("curve_keys")
    defaults = SourceOptions()
    source = SourceOptions(open_timeout_s=pick("open_timeout", "open_timeout_s", defaults.open_timeout_s),
                           read_timeout_s=pick("read_timeout", "read_timeout_s", defaults.read_timeout_s),
                           backoff_max_s=pick("backoff_max", "backoff_max_s", defaults.backoff_max_s),
                           max_attempts=pick("max_attempts", default=defaults.max_attempts),
                           decoder=pick("decoder", default=defaults.decoder),
                           rtsp_transport=pick("rtsp_transport", default=defaults.rtsp_transport))
    return PipelineOptions(endpoint=pick("endpoint", default=PipelineOptions.endpoint),
                           backend=pick("backend", default=PipelineOptions.backend), threads=pick("threads"),
                           curve=load_server_keys(curve_keys) if curve_keys else None,
                           top_k=pick("top_k", default=PipelineOptions.top_k),
                           max_batch=pick("max_batch", default=PipelineOptions.max_batch),
                           stats_interval_s=pick("stats_interval", "stats_interval_s",
                                                 PipelineOptions.stats_interval_s),
                           gather_s=pick("gather_ms", default=0.0) / 1000.0, source=source)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM set `stop` instead of raising, so the pipeline drains and says goodbye."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def summary_lines(stats: dict) -> list[str]:
    lines = [(f"lrcn: served {stats['elapsed_s']:.1f} s: {stats['encoded']} frames encoded in "
             f"{stats['encoder_calls']} calls, batch sizes {stats['batch_sizes']}, "
             f"{stats['publisher']['sent']} messages sent, {stats['publisher']['shed']} shed")]
    for name, s in stats["streams"].items():
        latency = "-" if s["latency_p50_ms"] is None else \
            f"{s['latency_p50_ms']:.1f}/{s['latency_p95_ms']:.1f}/{s['latency_p99_ms']:.1f} ms"
        lines.append(f"  {name}: {s['state']}, {s['frames']} frames in ({s['fps_in']:.1f} fps), {s['encoded']} "
                     f"encoded, {s['predictions']} predictions ({s['fps_out']:.1f}/s), dropped {s['dropped']} at the "
                     f"ring and {s['publisher_dropped']} at the publisher, {s['reconnects']} reconnects, "
                     f"{s['resets']} resets, latency p50/p95/p99 {latency}")
    return lines


def quiet_video_libraries() -> None:
    """FFmpeg and OpenCV print their own lines for every failed connection attempt; the status
    events already say what happened, once, so stderr keeps one line per problem."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")   # AV_LOG_QUIET
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
    bundle = load_runtime_bundle(args.bundle, options.backend, threads=options.threads, max_batch=options.max_batch)
    with tempfile.TemporaryDirectory(prefix="lrcn-serve-") as scratch:
        streams = [replace(s, source=synthetic_source(s.source, bundle.meta.spec.input_size, Path(scratch)))
                   if s.source.startswith(SYNTH_PREFIX) else s for s in streams_from_args(args, settings)]
        pipeline = Pipeline(bundle, streams, options)
        print(f"lrcn: serving {', '.join(pipeline.sources)} on {pipeline.endpoint} (Ctrl-C stops)", flush=True)
        stop = threading.Event()
        with stop_on_signals(stop):
            stats = pipeline.run(duration_s=args.duration, stop=stop)
    print("\n".join(summary_lines(stats)), file=sys.stderr)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(stats, indent=1))
    failed = pipeline.failed()
    for name, reason in failed.items():
        print(f"lrcn: stream {name} failed: {reason}", file=sys.stderr)
    return 1 if failed else 0
