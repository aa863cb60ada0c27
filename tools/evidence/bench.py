"""`lrcn bench BUNDLE`: what streaming costs, measured in one run on one backend and machine.

    lrcn bench --seed-model --out bench-results          # build the seed 112x112 T=16 bundle, then measure
    lrcn bench bundles/mine --out bench-results --quick  # any exported bundle; --quick for a smoke run

Sections (each comparison is made within the same run, so machine load moves both sides):

- cost: ms per new frame of the naive sliding window (the full T-frame model.onnx re-run on
  every frame), of exact-window encode-once and of continuous mode (the real Scheduler, one
  frame per call), their ratios, the bare encoder and head, and INT8 against fp32;
- latency: capture-to-publish and capture-to-receive through the real Pipeline, ZeroMQ and a
  Subscriber, one generated 25 fps stream;
- capacity: the most concurrent 25 fps streams held with zero ring drops and p99 latency under
  one frame interval, with in-memory (`pattern:`) sources and with real decoded video files
  (paced, looped), against the bare batched-encoder throughput measured in the same run;
- startup: process start to first prediction and resident memory, this runtime against one
  that loads the Keras model (each in its own subprocess).

Prints a table (tools/evidence/bench_report.py), writes bench.json, latency.png and capacity.png
(tools/evidence/plots.py) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import percentiles
from lrcn.tools.cli import commands
from lrcn.tools.evidence.bench_report import check_targets, table
from lrcn.tools.evidence.harness.procfs import load_average, machine_info, rss_mb
from lrcn.tools.evidence.harness.scoring import interleaved
from lrcn.tools.evidence.harness.servers import REPO, SHARED_VIDEO, default_video

FRAME_RATE = 25.0  # stream rate in the latency and capacity runs; every frame is sampled


# -- sections ----------------------------------------------------------------------------------


def bench_frames(bundle, count: int) -> list:
    """`count` moving pattern frames as the capture hands them over (stream.ring.Frame), each with
    its flow from the one before where the bundle sees motion; `at(frames, i)` numbers one."""
    from lrcn.stream.flow import MotionTracker
    from lrcn.stream.ring import Frame
    from lrcn.stream.sources import pattern_frames

    images = pattern_frames(bundle.meta.spec.input_size, count)
    tracker = MotionTracker() if bundle.needs_flow else None
    frames = []
    for i, image in enumerate(images):
        flow, level = tracker.step(image, 0) if tracker is not None else (None, None)
        frames.append(Frame(image, i, i / FRAME_RATE, flow=flow, motion=level))
    return frames


def at(frames: list, i: int, position: int | None = None):
    """Frame i of a stream fed `frames` round and round (or `frames[position]` every time),
    numbered i and captured at i / FRAME_RATE."""
    from lrcn.stream.ring import Frame

    frame = frames[i % len(frames) if position is None else position]
    return Frame(frame.image, i, i / FRAME_RATE, flow=frame.flow, motion=frame.motion)


def cost_section(bundle, repeats: int, threads: int | None) -> dict:
    """ms per new frame: naive model.onnx, exact and continuous through the Scheduler, parts apart."""
    import onnxruntime

    from lrcn.stream.encoders.joint import open_joint_encoder
    from lrcn.stream.encoders.onnxruntime import session_options
    from lrcn.stream.flow import MotionTracker
    from lrcn.stream.modalities import modality
    from lrcn.stream.scheduler import Scheduler, StreamPlan
    from lrcn.stream.windows import (
        CONTINUOUS,
        EXACT,
        WindowConfig,
        frame_inputs,
        initial_state,
        step,
    )

    spec = bundle.meta.spec
    clip_length = spec.clip_length
    listed = bench_frames(bundle, 50)
    model_path = bundle.path / "model.onnx"
    if not model_path.is_file():
        export = "lrcn export --model-onnx" if spec.two_stream else "lrcn export"
        raise LrcnError(f"bundle {bundle.path} has no model.onnx, the naive baseline (run `{export} {bundle.path}`)")
    session = onnxruntime.InferenceSession(
        str(model_path),
        session_options(threads),  # as the runtime's encoder
        providers=["CPUExecutionProvider"],
    )
    # model.onnx of a bundle of modalities names each input by its modality; an RGB one takes the frames.
    feed = {
        i.name: np.stack(
            [
                getattr(f, modality(i.name if i.name in spec.modalities else "rgb").frame_field)
                for f in listed[:clip_length]
            ]
        )[None]
        for i in session.get_inputs()
    }
    calls = {"naive": lambda: session.run(None, feed)}
    schedulers = {}

    def scheduled(mode: str):
        scheduler = Scheduler(bundle.head, clip_length, bundle.encoder, [StreamPlan("s", WindowConfig(mode, 1))])
        count = [0]
        schedulers[mode] = (scheduler, count)

        def one():
            i = count[0]
            scheduler.process({"s": [at(listed, i)]})
            count[0] += 1

        return one

    calls["exact"] = scheduled(EXACT)
    calls["continuous"] = scheduled(CONTINUOUS)
    one, batch = listed[:1], listed[:16]
    calls["encoder_b1"] = lambda: bundle.encoder.encode_frames(one)
    features = bundle.encoder.encode_frames(one)
    if bundle.encoder.needs_flow:  # the parts of a two-stream frame: its flow, and each modality's encoder
        tracker, images, turns = MotionTracker(), [f.image for f in listed], [0]

        def flow():
            turns[0] += 1
            tracker.step(images[turns[0] % len(images)], 0)

        calls["flow"] = flow
        for kind, encoder in bundle.encoder.encoders.items():
            inputs = modality(kind).inputs(one)
            calls[f"encoder_{kind}_b1"] = lambda encoder=encoder, inputs=inputs: encoder.encode(inputs)
    for mode in (EXACT, CONTINUOUS):
        config = WindowConfig(mode, 1)
        state = [initial_state(bundle.head, clip_length, config)]

        def head_step(config=config, state=state):
            state[0], _ = step(bundle.head, clip_length, config, state[0], frame_inputs(bundle.head, features)[0], 0)

        calls[f"head_{mode}"] = head_step
    if all((bundle.path / modality(kind).int8_file).is_file() for kind in spec.modalities):
        int8 = open_joint_encoder(bundle.path, spec.modalities, "onnxruntime-int8", threads=threads)
        calls["encoder_b16"] = lambda: bundle.encoder.encode_frames(batch)
        calls["int8_b1"] = lambda: int8.encode_frames(one)
        calls["int8_b16"] = lambda: int8.encode_frames(batch)
    result = interleaved(calls, repeats, warmup=clip_length + 2)
    for mode, (scheduler, count) in schedulers.items():
        stats = scheduler.stats()
        assert stats.encoded == count[0], "every frame must be encoded exactly once"
        result[mode]["predictions"] = stats.streams["s"].predictions
    for key in ("exact", "continuous"):
        bare = result["encoder_b1"]["ms"] + result[f"head_{key}"]["ms"]
        result[f"{key}_vs_bare"] = round(result[key]["ms"] / bare, 3)
        result[f"naive_over_{key}"] = round(result["naive"]["ms"] / result[key]["ms"], 2)
    if "int8_b1" in result:
        result["int8_speedup_b1"] = round(result["encoder_b1"]["ms"] / result["int8_b1"]["ms"], 2)
        result["int8_speedup_b16"] = round(result["encoder_b16"]["ms"] / result["int8_b16"]["ms"], 2)
    return result


def throughput_section(bundle, max_batch: int, rounds: int) -> dict:
    """Bare throughput, frames/s, at each batch size up to max_batch (interleaved rounds):
    the encoder alone, and the encoder plus the head of one stream per frame, exact window
    (`compute`) and continuous (`compute_continuous`): the Scheduler fed batches back to back,
    the pipeline's compute without its threads, rings and sockets. `best` is the fastest batch
    size of each."""
    from lrcn.stream.scheduler import Scheduler, StreamPlan
    from lrcn.stream.windows import CONTINUOUS, EXACT, WindowConfig

    sizes = [b for b in (1, 2, 4, 8, 16, 32) if b <= max_batch]
    frames = bench_frames(bundle, max(sizes) + 1)
    calls = {}
    kinds = {"encoder": None, "compute": EXACT, "compute_continuous": CONTINUOUS}
    for size in sizes:
        batch = frames[1 : size + 1]  # frames with their flow (the first has none to give)
        calls[f"encoder_b{size}"] = lambda batch=batch: bundle.encoder.encode_frames(batch)
        for kind, mode in kinds.items():
            if mode is None:
                continue
            scheduler = Scheduler(
                bundle.head,
                bundle.meta.spec.clip_length,
                bundle.encoder,
                [StreamPlan(f"s{i}", WindowConfig(mode, 1)) for i in range(size)],
                max_batch,
            )
            count = [0]

            def step_all(scheduler=scheduler, size=size, count=count):
                i = count[0]
                scheduler.process({f"s{k}": [at(frames, i, k + 1)] for k in range(size)})
                count[0] += 1

            calls[f"{kind}_b{size}"] = step_all
    timings = interleaved(calls, rounds, warmup=3)
    result = {}
    for kind in kinds:
        rates = {size: round(size * 1e3 / timings[f"{kind}_b{size}"]["ms"], 1) for size in sizes}
        best = max(rates, key=rates.get)
        result[kind] = {"frames_per_s": rates, "best_batch": best, "best_frames_per_s": rates[best]}
    return result


def paced_compute_cpu(bundle, frames_count: int) -> float:
    """CPU ms per frame of the Scheduler alone (encoder + exact head) fed one frame every
    1/FRAME_RATE s, the cadence a live stream has: what the pipeline computes, without it."""
    from lrcn.stream.scheduler import Scheduler, StreamPlan
    from lrcn.stream.windows import EXACT, WindowConfig

    frames = bench_frames(bundle, 50)
    scheduler = Scheduler(
        bundle.head, bundle.meta.spec.clip_length, bundle.encoder, [StreamPlan("s", WindowConfig(EXACT, 1))]
    )
    cpu = 0.0
    next_due = time.monotonic()
    for i in range(frames_count):
        time.sleep(max(0.0, next_due - time.monotonic()))
        next_due += 1.0 / FRAME_RATE
        start = time.process_time()
        scheduler.process({"s": [at(frames, i)]})
        if i >= 20:
            cpu += time.process_time() - start
    return round(cpu * 1e3 / max(1, frames_count - 20), 4)


def run_streams(
    bundle, sources: list[str], seconds: float, *, warmup_s: float = 1.0, options=None, **stream_args
) -> dict:
    """Serve `sources` for `warmup_s` + `seconds` through the real Pipeline with a real subscriber.
    Rates, CPU and latency cover the `seconds` after the warm-up only: the steady state, without
    start-up (threads, sockets, first calls) and shut-down (joins, drain, final stats)."""
    from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
    from lrcn.tools.evidence.harness.recorder import Recorder  # ZeroMQ: not loaded for every command line

    options = options or PipelineOptions(endpoint="tcp://127.0.0.1:*", stats_interval_s=3600)
    streams = [StreamConfig(source, id=f"s{i}", fps=FRAME_RATE, **stream_args) for i, source in enumerate(sources)]
    pipeline = Pipeline(bundle, streams, options)
    collector = Recorder(pipeline.endpoint, ("pred/",))
    time.sleep(0.3)  # let the subscription reach the publisher before the first frame
    whole_cpu = time.process_time()
    pipeline.start()
    pipeline.wait(warmup_s)

    def snapshot():
        return time.monotonic(), time.time(), time.process_time() - collector.cpu_s(), pipeline.stats().encoded

    start = snapshot()
    pipeline.wait(seconds)
    end = snapshot()
    stats = pipeline.stop()
    whole_cpu = time.process_time() - whole_cpu - collector.cpu_s()
    received = [(at, m) for at, m in collector.close() if start[1] <= m.payload["publish_time"] <= end[1]]
    elapsed, cpu, encoded = end[0] - start[0], end[2] - start[2], end[3] - start[3]
    publish = [m.payload["latency_ms"] for _, m in received]
    streams_stats = stats.streams.values()
    result = {
        "streams": len(sources),
        "seconds": round(elapsed, 3),
        "encoded": encoded,
        "frames_per_s": round(encoded / max(1e-9, elapsed), 1),
        "cpu_ms_per_frame": round(cpu * 1e3 / max(1, encoded), 4),
        "cpu_ms_per_frame_whole_run": round(whole_cpu * 1e3 / max(1, stats.encoded), 4),
        "dropped": sum(s.dropped for s in streams_stats),
        "publisher_dropped": sum(s.publisher_dropped for s in streams_stats),
        "p50_ms": percentiles(publish)["p50"],
        "p99_ms": percentiles(publish)["p99"],
        "batch_mean": round(
            sum(k * v for k, v in stats.batch_sizes.items()) / max(1, sum(stats.batch_sizes.values())), 2
        ),
        "received": len(received),
        "load": load_average(),
        "publish_latency_ms": publish,
        "receive_latency_ms": [round((at - m.payload["capture_time"]) * 1e3, 3) for at, m in received],
    }
    return result


def latency_section(bundle, seconds: float) -> dict:
    run = run_streams(bundle, [f"pattern:{FRAME_RATE:g}"], seconds)
    publish, receive = run.pop("publish_latency_ms"), run.pop("receive_latency_ms")
    return {
        **run,
        "capture_to_publish_ms": percentiles(publish),
        "capture_to_receive_ms": percentiles(receive),
        "histogram_ms": {"publish": publish, "receive": receive},
    }


def holds(run: dict, interval_ms: float) -> bool:
    return run["dropped"] == 0 and run["p99_ms"] is not None and run["p99_ms"] < interval_ms


def capacity_section(bundle, source: str, seconds: float, max_streams: int, log, **stream_args) -> dict:
    """Double the stream count until a run fails, then bisect: the most streams that hold."""
    interval_ms = 1000.0 / FRAME_RATE
    is_file = source != "pattern"
    runs: dict[int, dict] = {}

    def trial(n: int) -> bool:
        sources = [source] * n if is_file else [f"pattern:{FRAME_RATE:g}"] * n
        run = run_streams(bundle, sources, seconds, pace=True, loop=True, **stream_args)
        if not holds(run, interval_ms):  # one retry: a single stall of a shared machine is not a verdict
            again = run_streams(bundle, sources, seconds, pace=True, loop=True, **stream_args)
            run = again if holds(again, interval_ms) or (again["p99_ms"] or 1e9) < (run["p99_ms"] or 1e9) else run
        del run["publish_latency_ms"], run["receive_latency_ms"]
        runs[n] = run
        log(
            f"  {('file' if is_file else 'memory'):>6} {n:3d} streams: {run['frames_per_s']:7.1f} frames/s, "
            f"p99 {run['p99_ms']} ms, dropped {run['dropped']}, batch mean {run['batch_mean']}, "
            f"cpu {run['cpu_ms_per_frame']} ms/frame, load {run['load'][0]}"
        )
        return holds(run, interval_ms)

    good, bad, n = 0, None, 1
    while n <= max_streams:
        if not trial(n):
            bad = n
            break
        good, n = n, n * 2
    if bad is not None:
        while bad - good > 1 and len(runs) < 12:
            middle = (good + bad) // 2
            if trial(middle):
                good = middle
            else:
                bad = middle
    best = runs.get(good)
    return {
        "source": "pattern (in memory)" if not is_file else str(source),
        "interval_ms": interval_ms,
        "max_streams": good,
        "first_failing": bad,
        "frames_per_s": best["frames_per_s"] if best else 0.0,
        "runs": [runs[k] for k in sorted(runs)],
    }


CHILD_RUNTIME = "runtime"
CHILD_KERAS = "keras"


def child_main(kind: str, bundle_dir: str, started_at: float) -> None:
    """Runs in a fresh interpreter: load, then the first prediction of a full window; prints JSON."""
    if kind == CHILD_RUNTIME:
        from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
        from lrcn.stream.publisher import Subscriber
        from lrcn.stream.runtime_bundle import load_runtime_bundle

        bundle = load_runtime_bundle(bundle_dir)
        loaded = time.time() - started_at
        # A fast generated stream, so the first window fills in T/400 s rather than T/25 s.
        pipeline = Pipeline(
            bundle, [StreamConfig("pattern:400", id="s", fps=400)], PipelineOptions(endpoint="tcp://127.0.0.1:*")
        )
        subscriber = Subscriber(pipeline.endpoint, ["pred/"])
        time.sleep(0.2)
        pipeline.start()
        message = subscriber.receive(30.0)
        first = time.time() - started_at
        memory = rss_mb()
        pipeline.stop()
        subscriber.close()
        if message is None:
            raise SystemExit("no prediction within 30 s")
    else:
        from lrcn.tools.cli.args import require_tensorflow

        require_tensorflow()
        from lrcn.models.experiment import load_bundle
        from lrcn.stream.sources import pattern_frames

        model, meta = load_bundle(Path(bundle_dir))
        loaded = time.time() - started_at
        spec = meta.spec
        frames = pattern_frames(spec.input_size, spec.clip_length)
        if spec.modalities == ("rgb",):
            scale, offset = spec.preprocessing
            np.asarray(model(frames[None].astype(np.float32) * scale + offset, training=False))
        else:  # a bundle of modalities takes each one's uint8 input, prepared by models.modalities
            from lrcn.models.modalities import model_inputs
            from lrcn.stream.flow import video_motion

            fields, _ = video_motion(frames, np.zeros(len(frames), np.int64))
            np.asarray(model(model_inputs(spec, {"rgb": frames[None], "flow": fields[None]}), training=False))
        first = time.time() - started_at
        memory = rss_mb()
    print(json.dumps({"loaded_s": round(loaded, 3), "first_prediction_s": round(first, 3), "rss_mb": memory}))


def startup_section(bundle_dir: Path) -> dict:
    result = {}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for kind in (CHILD_RUNTIME, CHILD_KERAS):
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "lrcn.tools.evidence.bench", "--child", kind, str(bundle_dir), str(started)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
            cwd=REPO,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            result[kind] = {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            result[kind] = json.loads(lines[-1])
    runtime, keras = result[CHILD_RUNTIME], result[CHILD_KERAS]
    if "error" not in runtime and "error" not in keras:
        result["keras_over_runtime_first_prediction"] = round(
            keras["first_prediction_s"] / runtime["first_prediction_s"], 2
        )
        result["keras_over_runtime_rss"] = round(keras["rss_mb"] / runtime["rss_mb"], 2)
    return result


def plot(result: dict, out: Path) -> list[str]:
    """latency.png and capacity.png (tools/evidence/plots.py): the files written, none without matplotlib."""
    try:
        from lrcn.tools.evidence import plots
    except ImportError:
        print("lrcn: matplotlib not installed, no plots (pip install matplotlib)", file=sys.stderr)
        return []
    written = [plots.bench_latency(result, out / "latency.png"), plots.bench_capacity(result, out / "capacity.png")]
    return [path for path in written if path]


# -- entry -------------------------------------------------------------------------------------


def bench(args) -> dict:
    from lrcn.stream.runtime_bundle import load_runtime_bundle

    if args.max_streams < 1 or args.hop < 1 or (args.seconds is not None and args.seconds <= 0):
        raise LrcnError("--max-streams and --hop must be >= 1, --seconds positive")
    out = Path(args.out)
    bundle_dir = Path(args.bundle) if args.bundle else out / "seed-112"
    if args.seed_model and not (bundle_dir / "encoder.onnx").is_file():
        print(f"lrcn: building the seed bundle (112x112, T=16, LSTM 512, untrained) in {bundle_dir}", file=sys.stderr)
        from lrcn.tools.cli.args import require_tensorflow

        require_tensorflow()
        from lrcn.models.seed_bundle import build_seed_bundle

        build_seed_bundle(bundle_dir, SHARED_VIDEO if SHARED_VIDEO.is_file() else None)
    elif not args.bundle:
        raise LrcnError("give a BUNDLE, or --seed-model to build the seed one")
    quick = args.quick
    repeats = 20 if quick else 100
    seconds = args.seconds or (3.0 if quick else 8.0)
    bundle = load_runtime_bundle(bundle_dir, args.backend, threads=args.threads)
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to measure: a bad call leaves nothing
    spec = bundle.meta.spec
    log = lambda line: print(line, file=sys.stderr, flush=True)
    result = {
        "bundle": str(bundle_dir),
        "backend": args.backend,
        "threads": args.threads,
        "model": f"{spec.backbone} {spec.input_size[0]}x{spec.input_size[1]}, T={spec.clip_length}, "
        f"{spec.head} {getattr(bundle.head, 'units', '')}".strip(),
        "clip_length": spec.clip_length,
        "frame_rate": FRAME_RATE,
        "machine": machine_info(runtime=True),
        "load_before": load_average(),
    }
    log("lrcn bench: per-frame cost")
    result["cost"] = cost_section(bundle, repeats, args.threads)
    log("lrcn bench: bare throughput at each batch size")
    result["throughput"] = throughput_section(bundle, 16, 5 if quick else 30)
    log("lrcn bench: latency, one stream")
    result["latency"] = latency_section(bundle, args.latency_seconds or (3.0 if quick else 20.0))
    cost = result["cost"]
    bare_cpu = cost["encoder_b1"]["cpu_ms"] + cost["head_exact"]["cpu_ms"]
    paced = paced_compute_cpu(bundle, 60 if quick else 300)
    pipeline_cpu = result["latency"]["cpu_ms_per_frame"]
    result["pipeline"] = {
        "cpu_ms_per_frame": pipeline_cpu,
        "bare_cpu_ms_per_frame": bare_cpu,
        "cpu_over_bare": round(pipeline_cpu / bare_cpu, 3),
        "paced_compute_cpu_ms_per_frame": paced,
        "cpu_over_paced_compute": round(pipeline_cpu / paced, 3),
        # as measured before the steady-state window: start-up and shut-down included
        "cpu_ms_per_frame_whole_run": result["latency"]["cpu_ms_per_frame_whole_run"],
        "whole_run_over_bare": round(result["latency"]["cpu_ms_per_frame_whole_run"] / bare_cpu, 3),
    }
    if not args.no_capacity:
        log("lrcn bench: capacity, in-memory streams")
        head = {"mode": args.mode, "hop": args.hop}
        result["capacity_head"] = head
        result["capacity_memory"] = capacity_section(bundle, "pattern", seconds, args.max_streams, log, **head)
        video = Path(args.video) if args.video else default_video(out)
        if not video.is_file():
            raise LrcnError(f"video not found: {video}")
        log(f"lrcn bench: capacity, video files ({video.name})")
        result["capacity_file"] = capacity_section(bundle, str(video), seconds, args.max_streams, log, **head)
        best = result["capacity_memory"]["frames_per_s"]
        encoder = result["throughput"]["encoder"]
        compute = result["throughput"]["compute" if args.mode == "exact" else "compute_continuous"]
        sustained = max((r["frames_per_s"] for r in result["capacity_memory"]["runs"] if r["dropped"] == 0), default=0)
        result["aggregate"] = {
            "frames_per_s": best,
            "bare_frames_per_s": encoder["best_frames_per_s"],
            "fraction": round(best / encoder["best_frames_per_s"], 3),
            "fraction_of_bare_compute": round(best / compute["best_frames_per_s"], 3),
            "sustained_without_drops_frames_per_s": sustained,
            "sustained_fraction": round(sustained / encoder["best_frames_per_s"], 3),
        }
    if not args.no_startup:
        log("lrcn bench: start-up, this runtime against Keras (subprocesses)")
        result["startup"] = startup_section(bundle_dir)
    result["load_after"] = load_average()
    result["targets"] = check_targets(result)
    print(table(result))
    result["plots"] = plot(result, out)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    log(f"lrcn bench: wrote {out / 'bench.json'} and {', '.join(result['plots']) or 'no plots'}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lrcn.stream.encoders import backend_names

    parser.add_argument(
        "bundle", nargs="?", help="exported bundle (with --seed-model: where to build it, default OUT/seed-112)"
    )
    parser.add_argument(
        "--seed-model",
        action="store_true",
        help="build the seed LRCN (112x112, T=16, LSTM 512, untrained) first if absent (needs TensorFlow)",
    )
    parser.add_argument("--out", default="bench-results", help="folder for bench.json and the PNGs")
    parser.add_argument("--backend", choices=backend_names(), default="onnxruntime")
    parser.add_argument("--threads", type=int, help="encoder threads (default: one per core)")
    parser.add_argument(
        "--video",
        help="video file for the file-source capacity runs (default: a UCF101 clip "
        "from ../shared, else a generated one)",
    )
    parser.add_argument("--seconds", type=float, help="length of each capacity run (default 8, --quick 3)")
    parser.add_argument("--latency-seconds", type=float, help="length of the latency run (default 20, --quick 3)")
    parser.add_argument("--max-streams", type=int, default=128, help="stop the capacity search here")
    parser.add_argument(
        "--mode", choices=("exact", "continuous"), default="exact", help="head mode of the capacity runs"
    )
    parser.add_argument("--hop", type=int, default=1, help="hop of the capacity runs (default 1)")
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs: a smoke test")


@commands.command(
    "bench",
    help="per-frame cost against the naive window, latency, capacity, start-up: a table, "
    "bench.json and PNGs; `lrcn bench capture`: capture cost at HD, OpenCV against PyAV",
    arguments=add_arguments,
    epilog="lrcn bench capture [--out DIR] [--quick] ...: what capture costs at HD (see lrcn bench "
    "capture --help); a bundle folder named capture: ./capture",
)
def run(args) -> None:
    bench(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m lrcn.tools.evidence.bench ...` is `lrcn bench ...`; `--child` runs one start-up measurement."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2], float(argv[3]))
        return 0
    return commands.main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
