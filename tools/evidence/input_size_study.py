"""Input size by evidence (issue 23, point 5): validation accuracy and encoder CPU cost of the RGB
stream at 112, 160 and 224 px.

    python -m lrcn.tools.evidence.input_size_study ../shared/data --weights W [--sizes 112,160,224] \\
        [--datasets weizmann4,ps7,ucf101_9] [--work /work/runs23/input_size] [--out docs/results/input_size.json]

The model is the recipe of docs/evidence/results.md's bundles on these sets: frozen ImageNet MobileNetV2,
T=16 at 10 fps, the pooling head (dropout 0.5, batches of 32, lr 1e-3, about 3,000 steps), its L2
fixed to the value the recipe's own validation chose on each set (0.1 weizmann4 and ps7, 0.01
ucf101_9), so no choice is made on the folds scored here. Only training groups are used: the test
groups (weizmann4 subjects 6-8, ps7 person 3, ucf101_9 groups 01-07 of split 1) are never read.
Each validation fold trains on the other training groups without any validation data (no early
stop, no epoch choice) and scores its held-out groups' videos:
- weizmann4: subjects 0-5, each held out in turn (6 folds of 4 videos);
- ps7: persons 1 and 2, each held out in turn (2 folds of 9 videos; training on one person);
- ucf101_9: split 1's training groups 08-25 in three folds of six groups (108 videos each).
Cost: the encoder (uint8 frames -> features, as exported) in ONNX Runtime on this machine, every
size timed in one interleaved run so load falls on all alike; CPU ms per frame at batch 1 and 8.
Each fold's result is kept under --work, so a re-run only trains what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError

SIZES = (112, 160, 224)
DATASETS = ("weizmann4", "ps7", "ucf101_9")
COMMAND = (
    "python -m lrcn.tools.evidence.input_size_study ../shared/data --weights "
    "../shared/pretrained/mobilenet_v2_1.0_imagenet_notop.weights.h5 --work /work/runs23/input_size "
    "--out docs/results/input_size.json"
)


@dataclass(frozen=True)
class Recipe:
    l2: float
    clips_per_video: int
    epochs: int


RECIPES = {"weizmann4": Recipe(0.1, 32, 120), "ps7": Recipe(0.1, 32, 120), "ucf101_9": Recipe(0.01, 8, 40)}
TEST_GROUPS = {"weizmann4": "subjects 6, 7, 8", "ps7": "person 3", "ucf101_9": "groups 01-07 (split 1 test list)"}


def training_videos(data: Path, name: str) -> list:
    """The dataset's training videos: its test groups left out, never loaded."""
    from lrcn.models.data import discover, official_split, split_by_groups

    dataset = discover(data / name)
    if name == "ucf101_9":
        splits = data / name / "splits"
        return official_split(dataset, splits / "trainlist01.txt", splits / "testlist01.txt")[0]
    held_out = {"weizmann4": ["6", "7", "8"], "ps7": ["3"]}[name]
    return split_by_groups(list(dataset.videos), held_out)[0]


def validation_folds(name: str, videos: list) -> list[tuple[str, list, list]]:
    """(fold name, fit videos, validation videos) over the training groups only."""
    from lrcn.models.data import groups_of

    groups = groups_of(videos)
    if name == "ucf101_9":
        parts = [groups[i : i + 6] for i in range(0, len(groups), 6)]
    else:
        parts = [[g] for g in groups]
    return [
        (f"val-{'+'.join(part)}", [v for v in videos if v.group not in part], [v for v in videos if v.group in part])
        for part in parts
    ]


def spec_for(classes, size: int, weights: str, recipe: Recipe):
    from lrcn.stream.bundle import ModelSpec

    return ModelSpec(
        classes=tuple(classes),
        backbone="mobilenet_v2",
        input_size=(size, size),
        clip_length=16,
        fps=10.0,
        head="pool",
        backbone_weights=weights,
        trainable_layers=0,
        feature_dropout=0.5,
        lstm_dropout=0.5,
        l2=recipe.l2,
    )


def run_fold(name: str, size: int, fold: tuple, classes, weights: str, work: Path, cache: str | None) -> dict:
    """Train one fold (or read its kept result) and score its validation videos."""
    label, fit, val = fold
    result_file = work / name / str(size) / f"{label}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    from lrcn.models.experiment import evaluate_model
    from lrcn.models.train import TrainConfig, train

    recipe = RECIPES[name]
    spec = spec_for(classes, size, weights, recipe)
    config = TrainConfig(
        epochs=recipe.epochs,
        batch_size=32,
        learning_rate=1e-3,
        patience=recipe.epochs,
        clips_per_video=recipe.clips_per_video,
        seed=0,
        refit=False,
        cache_dir=cache,
        progress=False,
    )
    model, meta = train(spec, fit, [], result_file.parent / label, config)
    scored = evaluate_model(model, spec, val, config, None)
    result = {
        "dataset": name,
        "size": size,
        "fold": label,
        "fit_videos": len(fit),
        "val_videos": scored["videos"],
        "val_correct": scored["video_correct"],
        "val_video_accuracy": scored["video_accuracy"],
        "val_clip_accuracy": scored["clip_accuracy"],
        "train_seconds": meta.training["seconds"],
    }
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{name} {size}px {label}: {result['val_correct']}/{result['val_videos']} videos, "
        f"clip accuracy {result['val_clip_accuracy']:.3f}",
        file=sys.stderr,
        flush=True,
    )
    return result


def accuracy(data: Path, names, sizes, weights: str, work: Path, cache: str | None) -> dict:
    from lrcn.models.data import discover

    out = {}
    for name in names:
        classes = discover(data / name).classes
        folds = validation_folds(name, training_videos(data, name))
        out[name] = {
            "test_groups_left_out": TEST_GROUPS[name],
            "recipe": RECIPES[name].__dict__,
            "folds": [label for label, _, _ in folds],
            "sizes": {},
        }
        for size in sizes:
            rows = [run_fold(name, size, fold, classes, weights, work, cache) for fold in folds]
            correct, videos = sum(r["val_correct"] for r in rows), sum(r["val_videos"] for r in rows)
            clips = float(np.mean([r["val_clip_accuracy"] for r in rows]))
            out[name]["sizes"][str(size)] = {
                "val_correct": correct,
                "val_videos": videos,
                "val_video_accuracy": round(correct / videos, 4),
                "mean_val_clip_accuracy": round(clips, 4),
                "per_fold": [r["val_correct"] for r in rows],
            }
            print(f"{name} {size}px: {correct}/{videos} validation videos, mean clip accuracy {clips:.3f}", flush=True)
    return out


def encoder_cost(sizes, weights: str, repeats: int, threads: int | None) -> dict:
    """CPU ms per frame of the exported encoder at each size, interleaved call by call."""
    from lrcn.models.architectures import build_model, split_model
    from lrcn.models.export import convert, encoder_function
    from lrcn.stream.bundle import BundleMeta
    from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
    from lrcn.tools.evidence.harness.procfs import load_average
    from lrcn.tools.evidence.harness.scoring import interleaved

    rng = np.random.default_rng(0)
    calls = {}
    with tempfile.TemporaryDirectory(prefix="lrcn-size-") as tmp:
        for size in sizes:
            spec = spec_for(("a", "b"), size, weights, RECIPES["weizmann4"])
            encoder, _ = split_model(build_model(spec), spec)
            path = convert(
                encoder_function(encoder, BundleMeta(spec=spec, feature_size=1280)), Path(tmp) / f"{size}.onnx"
            )
            session = OnnxRuntimeEncoder(path, threads, providers=["CPUExecutionProvider"])
            for batch in (1, 8):
                frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                calls[(size, batch)] = lambda encode=session.encode, x=frames: encode(x)
        measured = interleaved(calls, repeats)
    rows = {}
    for (size, batch), value in measured.items():
        row = rows.setdefault(str(size), {})
        row[f"batch{batch}_cpu_ms_per_frame"] = round(value["cpu_ms"] / batch, 3)
        row[f"batch{batch}_wall_ms_per_frame"] = round(value["ms"] / batch, 3)
    base = rows[str(min(sizes))]
    for row in rows.values():
        for batch in (1, 8):
            row[f"batch{batch}_cpu_ratio"] = round(
                row[f"batch{batch}_cpu_ms_per_frame"] / base[f"batch{batch}_cpu_ms_per_frame"], 2
            )
    return {
        "backend": "onnxruntime fp32 (CPUExecutionProvider)",
        "threads": threads,
        "repeats": repeats,
        "load_average": load_average(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "sizes": rows,
    }


def recommend(result: dict) -> str:
    """The smallest size whose validation accuracy is within two binomial standard errors of the
    best size's on every set: a smaller gap is within what another draw of as many validation
    videos could give, so it does not pay for the larger input's CPU."""
    sizes = sorted(int(s) for s in result["cost"]["sizes"])
    for size in sizes:
        if all(close_to_best(acc, size) for acc in result["accuracy"].values()):
            return str(size)
    return str(sizes[-1])


def close_to_best(acc: dict, size: int) -> bool:
    rows = acc["sizes"]
    if str(size) not in rows:
        return False
    best = max(rows.values(), key=lambda row: row["val_correct"])
    videos = best["val_videos"]
    p = best["val_correct"] / videos
    margin = 2 * math.sqrt(max(p * (1 - p), 0.25 / videos) / videos)
    return rows[str(size)]["val_correct"] / rows[str(size)]["val_videos"] >= p - margin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.input_size_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("data", help="folder holding weizmann4, ps7, ucf101_9")
    parser.add_argument("--weights", required=True, help="MobileNetV2 ImageNet weights (.weights.h5)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--work", default="runs/input_size", help="per-fold bundles and results (resumable)")
    parser.add_argument("--cache", default=None, help="frame and feature cache (default ~/.cache/lrcn-stream)")
    parser.add_argument("--repeats", type=int, default=60, help="timed rounds of the encoder cost")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-cost", action="store_true", help="accuracy only")
    parser.add_argument("--out", help="JSON written here")
    args = parser.parse_args(argv)
    try:
        from lrcn.models.frame_cache import DEFAULT_CACHE

        sizes = [int(s) for s in args.sizes.split(",")]
        names = [n for n in args.datasets.split(",") if n]
        unknown = sorted(set(names) - set(DATASETS))
        if unknown:
            raise LrcnError(f"unknown dataset(s) {', '.join(unknown)} (known: {', '.join(DATASETS)})")
        result = {
            "command": COMMAND,
            "sizes": sizes,
            "model": "frozen ImageNet MobileNetV2, T=16 at 10 fps, pooling head (recipe of docs/evidence/results.md)",
            "accuracy": accuracy(
                Path(args.data), names, sizes, args.weights, Path(args.work), args.cache or str(DEFAULT_CACHE)
            ),
        }
        if not args.no_cost:
            result["cost"] = encoder_cost(sizes, args.weights, args.repeats, args.threads)
            for size, row in result["cost"]["sizes"].items():
                print(
                    f"encoder {size}px: {row['batch1_cpu_ms_per_frame']} CPU ms/frame at batch 1 "
                    f"({row['batch1_cpu_ratio']}x), {row['batch8_cpu_ms_per_frame']} at batch 8 "
                    f"({row['batch8_cpu_ratio']}x)",
                    flush=True,
                )
            result["recommended_size"] = recommend(result)
            print(f"recommended: {result['recommended_size']} px", flush=True)
    except LrcnError as err:
        print(f"lrcn: {err}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
