"""What seeing motion costs: CPU per sampled frame of the whole pipeline, RGB-only against two-stream.

    python -m lrcn.tools.evidence.two_stream_cost RGB_BUNDLE TWO_STREAM_BUNDLE --out docs/results/two_stream_cost.json \\
        [--cameras 1,4] [--rounds 2] [--duration 30] [--work bench-results/cameras]

- pipeline: `lrcn serve` of N 1080p30 H.264 RTSP cameras (the trial of tools/evidence/camera_capacity.py:
  same server, same video, 10 fps sampling) with each bundle in turn, round after round, so load
  from other processes falls on both alike. CPU ms per sampled frame = serve's cores in the
  steady window (every stream predicting) x 1000 / the frames it encoded a second: capture
  (decode, sampling, scaling, flow), every encoder, the head, events and publishing;
- parts: each bundle's encoder files in ONNX Runtime (CPU), batch 1, and the flow field at the
  model size (stream.flow.MotionTracker on real frames), timed interleaved in this process.
The ratio two-stream / RGB-only per N is the issue's cost target (at most 1.8); the capacity
itself is `python -m lrcn.tools.evidence.camera_capacity --bundle TWO_STREAM_BUNDLE`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.harness.procfs import load_average, machine_info
from lrcn.tools.evidence.harness.servers import default_video
from lrcn.tools.evidence.harness.script import save

TARGET_RATIO = 1.8


def interpreter(work: Path) -> str:
    """The python that runs `serve`: this one, and where PYTHONPATH maps `lrcn` to a checkout (a
    worktree without its own venv) a wrapper keeping it, since camera_capacity's trial drops
    PYTHONPATH from serve's environment."""
    path = os.environ.get("PYTHONPATH")
    if not path:
        return sys.executable
    wrapper = work / "python-with-pythonpath"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(path)} exec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def pipeline(
    bundles: dict[str, Path], cameras: list[int], rounds: int, duration_s: float, work: Path, log=lambda line: None
) -> dict:
    from lrcn.tools.evidence.camera_capacity import REPO, Source, run_trial, source_video

    video = source_video(work, Source())
    python = interpreter(work)
    trials = []
    for round_ in range(rounds):
        for count in cameras:
            for name, bundle in bundles.items():
                trial = run_trial(REPO, bundle, video, count, duration_s, 10.0, python=python)
                rates = [s["encoded_fps"] or 0.0 for s in trial["streams"].values()]
                cores = trial["serve_cores"]
                row = {
                    "bundle": name,
                    "cameras": count,
                    "round": round_,
                    "serve_cores": cores,
                    "encoded_fps": round(sum(rates), 2),
                    "holds": trial["holds"],
                    "reasons": trial["reasons"],
                    "cpu_ms_per_frame": round(cores * 1000 / sum(rates), 2) if cores and sum(rates) else None,
                    "load_after": trial["load_after"],
                }
                trials.append(row)
                log(
                    f"{name}, {count} camera(s), round {round_}: {row['cpu_ms_per_frame']} CPU ms per sampled frame "
                    f"({cores} cores, {row['encoded_fps']} frames/s{'' if trial['holds'] else ', FAILS'})"
                )
    summary = {}
    for count in cameras:
        medians = {}
        for name in bundles:
            values = [
                t["cpu_ms_per_frame"]
                for t in trials
                if t["bundle"] == name and t["cameras"] == count and t["cpu_ms_per_frame"]
            ]
            medians[name] = round(statistics.median(values), 2) if values else None
        ratio = (
            round(medians["two_stream"] / medians["rgb"], 2)
            if medians.get("rgb") and medians.get("two_stream")
            else None
        )
        summary[str(count)] = {
            "cpu_ms_per_frame": medians,
            "ratio": ratio,
            "meets_target": ratio is not None and ratio <= TARGET_RATIO,
        }
    return {"video": str(video), "duration_s": duration_s, "fps": 10.0, "trials": trials, "summary": summary}


def parts(bundles: dict[str, Path], repeats: int, threads: int | None, video: Path) -> dict:
    from lrcn.stream.bundle import read_meta
    from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
    from lrcn.stream.flow import MotionTracker
    from lrcn.stream.modalities import modality
    from lrcn.tools.evidence.harness.scoring import interleaved
    from lrcn.stream.video import read_frames

    calls, sizes = {}, set()
    rng = np.random.default_rng(0)
    for name, bundle in bundles.items():
        size = tuple(read_meta(bundle).spec.input_size)
        sizes.add(size)
        for kind in map(modality, read_meta(bundle).spec.modalities):
            # a channel count only where it is not RGB's: today's RGB-only opener takes none
            extra = {} if kind.channels == 3 else {"channels": kind.channels}
            encoder = OnnxRuntimeEncoder(
                bundle / kind.encoder_file, threads, providers=["CPUExecutionProvider"], **extra
            )
            frame = rng.integers(0, 256, (1, *size, kind.channels), dtype=np.uint8)
            calls[f"{name} {kind.encoder_file}"] = lambda encode=encoder.encode, x=frame: encode(x)
    for size in sorted(sizes):
        frames = read_frames(video, size, 10.0)
        tracker, index = MotionTracker(), [0]

        def step(frames=frames, tracker=tracker, index=index):
            index[0] += 1
            tracker.step(frames[index[0] % len(frames)], 0)

        calls[f"flow field {size[0]}x{size[1]}"] = step
    measured = interleaved(calls, repeats)
    return {name: {"wall_ms": value["ms"], "cpu_ms": value["cpu_ms"]} for name, value in measured.items()}


def table(result: dict) -> str:
    lines = [
        "| cameras | RGB-only CPU ms/frame | two-stream CPU ms/frame | ratio (target <= 1.8) |",
        "| --- | --- | --- | --- |",
    ]
    for count, row in result["pipeline"]["summary"].items():
        ms = row["cpu_ms_per_frame"]
        lines.append(f"| {count} | {ms.get('rgb')} | {ms.get('two_stream')} | {row['ratio']} |")
    lines += ["", "| part | CPU ms per call (batch 1) |", "| --- | --- |"]
    lines += [f"| {name} | {value['cpu_ms']:.2f} |" for name, value in result["parts"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.two_stream_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("rgb", type=Path, help="exported RGB-only bundle")
    parser.add_argument("two_stream", type=Path, help="exported two-stream bundle of the same size")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cameras", default="1,4", help="camera counts of the pipeline trials (default 1,4)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per trial (default 30)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per part")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--work", type=Path, default=Path("bench-results/cameras"), help="the camera video, kept")
    parser.add_argument(
        "--video",
        type=Path,
        help="real footage for the flow part (default: a UCF101 clip from ../shared, else a generated one)",
    )
    parser.add_argument("--no-pipeline", action="store_true", help="parts only")
    args = parser.parse_args(argv)
    bundles = {"rgb": args.rgb, "two_stream": args.two_stream}
    try:
        for bundle in bundles.values():
            if not (bundle / "encoder.onnx").is_file():
                raise LrcnError(f"{bundle} is not an exported bundle (no encoder.onnx): run `lrcn export` first")
        log = lambda line: print(line, file=sys.stderr, flush=True)
        result = {
            "command": "python -m lrcn.tools.evidence.two_stream_cost " + " ".join(sys.argv[1:])
            if argv is None
            else None,
            "bundles": {name: str(path) for name, path in bundles.items()},
            "machine": machine_info(),
            "load_before": load_average(),
            "parts": parts(bundles, args.repeats, args.threads, args.video or default_video(args.work)),
        }
        save(result, args.out)
        if not args.no_pipeline:
            cameras = [int(c) for c in args.cameras.split(",") if c.strip()]
            result["pipeline"] = pipeline(bundles, cameras, args.rounds, args.duration, args.work, log)
        result["load_after"] = load_average()
        save(result, args.out)
    except LrcnError as err:
        print(f"two_stream_cost: {err}", file=sys.stderr)
        return 2
    if "pipeline" in result:
        print(table(result))
    else:
        for name, value in result["parts"].items():
            print(f"{name}: {value['cpu_ms']:.2f} CPU ms per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
