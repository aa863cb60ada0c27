"""`lrcn demo`: the whole product on a fresh machine with no camera and no network.

1. synthesise motion-only action videos (models.synth) for validation and testing;
2. train a small LRCN on freshly rendered clips of the same classes, test it on videos of an
   unseen group;
3. export it (ONNX encoder + NumPy head, checked against Keras);
4. serve a continuous synthetic video, paced in real time like a camera, through the real
   pipeline (capture thread, ring, encode-once scheduler, exact-window head, ZeroMQ PUB);
5. subscribe over a real socket, print predictions against the ground truth with their
   latency, and end with the streaming accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lrcn.stream.bundle import ModelSpec
from lrcn.stream.stats import percentiles, plain
from lrcn.tools.cli.args import print_result, require_tensorflow
from lrcn.tools.cli.commands import command

SIZE, CLIP_LENGTH, FPS = 32, 8, 10.0


def train_small_lrcn(workdir: Path, quick: bool) -> tuple[Path, dict]:
    from lrcn.models import synth
    from lrcn.models.data import discover, split_by_groups
    from lrcn.models.experiment import train_and_test
    from lrcn.models.train import TrainConfig

    data = workdir / "synth"
    if not data.exists():
        synth.write_dataset(data, videos_per_class=6, n_frames=24, size=SIZE, seed=0, groups=2)
    dataset = discover(data, "ucf101")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["02"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="small",
        input_size=(SIZE, SIZE),
        clip_length=CLIP_LENGTH,
        fps=FPS,
        lstm_units=128,
        feature_dropout=0.0,
        lstm_dropout=0.0,
    )
    # Fresh clips every batch: fixed synthetic videos get memorised by their backgrounds.
    config = TrainConfig(
        epochs=2 if quick else 8,
        batch_size=16,
        learning_rate=1e-3,
        patience=8,
        synthetic_clips=400 if quick else 1400,
        refit=False,
        cache_dir=str(workdir / "cache"),
        progress=False,
    )
    print(
        f"[1/3] training a small LRCN ({SIZE}x{SIZE}, T={CLIP_LENGTH} at {FPS:g} fps) on "
        f"{config.epochs} x {config.synthetic_clips} freshly rendered clips; testing on {len(test_videos)} "
        f"videos of an unseen group (chance: {1 / len(dataset.classes):.2f})",
        flush=True,
    )
    bundle = workdir / "bundle"
    result = train_and_test(spec, train_videos, test_videos, bundle, config)
    print_result(result)
    return bundle, result


def export(bundle: Path, data: Path) -> None:
    from lrcn.models.export import describe, export_from_paths

    print(f"[2/3] exporting {bundle}", flush=True)
    print(f"  {describe(export_from_paths(bundle, data))}")


def truth_at(labels: list[str], frame_index: int) -> str:
    return labels[min(frame_index, len(labels) - 1)]


def score_stream(predictions: list[dict], labels: list[str]) -> dict:
    """Accuracy of the published labels against the ground truth at the frame each was published
    for, over all predictions and over those whose window lies inside one action."""
    right = [p["label"] == truth_at(labels, p["frame_index"]) for p in predictions]
    pure = [
        ok for p, ok in zip(predictions, right) if truth_at(labels, p["window"][0]) == truth_at(labels, p["window"][1])
    ]
    latency = percentiles([p["latency_ms"] for p in predictions] or [0.0])
    return {
        "predictions": len(predictions),
        "accuracy": float(np.mean(right)) if right else 0.0,
        "within_one_action": len(pure),
        "accuracy_within_one_action": float(np.mean(pure)) if pure else 0.0,
        "latency_ms_p50": latency["p50"],
        "latency_ms_p99": latency["p99"],
    }


def serve_and_watch(bundle: Path, workdir: Path, seconds: float) -> dict:
    from lrcn.models import synth
    from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
    from lrcn.stream.publisher import Subscriber

    # Short segments: a long one grows or shrinks more slowly than any training clip (the size
    # range is fixed), which the model reads as still.
    video, sidecar = synth.write_continuous(
        workdir / "live.avi", duration_s=seconds, size=SIZE, seed=7, min_segment_s=1.5, max_segment_s=2.5
    )
    labels = synth.read_labels(sidecar)["labels"]
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(video), id="synthcam", mode="exact", hop=1, pace=True)],
        PipelineOptions(endpoint="tcp://127.0.0.1:*"),
    )
    print(
        f"[3/3] serving {video.name} ({seconds:g} s, paced like a camera) on {pipeline.endpoint}; "
        f"a subscriber prints what it receives",
        flush=True,
    )
    predictions, shown = [], None
    with Subscriber(pipeline.endpoint, ["pred/"]) as subscriber:
        time.sleep(0.3)  # let the subscription reach the publisher before the first frame
        pipeline.start()
        while True:
            message = subscriber.receive(0.2)
            if message is None:
                if pipeline.wait(0):  # every frame published and nothing more in flight
                    break
                continue
            p = message.payload
            predictions.append(p)
            truth = truth_at(labels, p["frame_index"])
            if (p["label"], truth) != shown or len(predictions) % 10 == 0:
                mark = "ok" if p["label"] == truth else "--"
                print(
                    f"  frame {p['frame_index']:4d}  truth {truth:<10}  published {p['label']:<10} "
                    f"{p['score']:.2f}  latency {p['latency_ms']:5.1f} ms  {mark}",
                    flush=True,
                )
                shown = (p["label"], truth)
    stats = pipeline.stop()
    return score_stream(predictions, labels) | {"pipeline": plain(stats)}


def run_demo(workdir: Path, quick: bool = False, stream_seconds: float | None = None) -> dict:
    started = time.time()
    workdir.mkdir(parents=True, exist_ok=True)
    bundle, result = train_small_lrcn(workdir, quick)
    export(bundle, workdir / "synth")
    streaming = serve_and_watch(bundle, workdir, stream_seconds or (8.0 if quick else 30.0))
    print(
        f"streaming accuracy {streaming['accuracy']:.3f} over {streaming['predictions']} predictions "
        f"({streaming['accuracy_within_one_action']:.3f} over the {streaming['within_one_action']} whose "
        f"window shows one action); latency p50 {streaming['latency_ms_p50']:.1f} ms, "
        f"p99 {streaming['latency_ms_p99']:.1f} ms"
    )
    summary = {"test": result, "streaming": streaming, "seconds": round(time.time() - started, 1)}
    (workdir / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"bundle: {bundle}; report: {workdir / 'demo.json'}; done in {summary['seconds']:.0f} s")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="lrcn-demo")
    parser.add_argument("--quick", action="store_true", help="smallest run, for smoke tests")


@command(
    "demo", help="synthesise data, train a small LRCN, evaluate it (no camera, no network)", arguments=add_arguments
)
def run(args) -> None:
    require_tensorflow()
    run_demo(Path(args.workdir), quick=args.quick)
