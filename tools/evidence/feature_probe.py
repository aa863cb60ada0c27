"""Is the information in the frozen features? A linear probe on pooled per-video features.

Leave-one-group-out on a data folder: each video's frozen MobileNetV2 features (the same
cache `lrcn train` fills) are pooled over time (mean, max, or max of the change from the
first frames) and a softmax regression on standardised features is fitted to the training
groups, mirrored views included. A diagnosis, not a model this project serves.

    python -m lrcn.tools.evidence.feature_probe ../shared/data/ps7 --weights W --size 112 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lrcn.stream.heads import softmax

POOLINGS = {
    "mean": lambda f: f.mean(0),
    "max": lambda f: f.max(0),
    "change_max": lambda f: (f - f[:3].mean(0)).max(0),
}


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, l2: float, steps: int = 300, rate: float = 0.5):
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    weights, bias, target = np.zeros((x.shape[1], classes)), np.zeros(classes), np.eye(classes)[y]
    for _ in range(steps):
        grad = (softmax(z @ weights + bias) - target) / len(y)
        weights -= rate * (z.T @ grad + l2 * weights)
        bias -= rate * grad.sum(0)
    return lambda q: (((q - mean) / scale) @ weights + bias).argmax(1)


def probe(
    views: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, groups: list[str], classes: int, l2: float
) -> dict:
    """{pooling: correct videos per held-out group}."""
    result = {}
    for name, pool in POOLINGS.items():
        correct = {}
        for group in sorted(set(groups)):
            train = [i for i, g in enumerate(groups) if g != group]
            test = [i for i, g in enumerate(groups) if g == group]
            x = np.stack([pool(views[i][v]) for v in (0, 1) for i in train])
            predict = fit_softmax(x, np.concatenate([labels[train], labels[train]]), classes, l2)
            correct[group] = int((predict(np.stack([pool(views[i][0]) for i in test])) == labels[test]).sum())
        result[name] = correct
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--weights", required=True, help="MobileNetV2 weights (.weights.h5)")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-1])
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    from lrcn.models.architectures import build_model, split_model
    from lrcn.models.frame_cache import DEFAULT_CACHE, FrameCache, load_videos
    from lrcn.models.data import discover
    from lrcn.models.features import FeatureCache
    from lrcn.stream.bundle import ModelSpec

    dataset = discover(Path(args.data))
    spec = ModelSpec(
        classes=tuple(dataset.classes),
        backbone="mobilenet_v2",
        input_size=(args.size, args.size),
        fps=args.fps,
        backbone_weights=args.weights,
        trainable_layers=0,
    )
    encoder, _ = split_model(build_model(spec), spec)
    frames = load_videos(
        [v.path for v in dataset.videos], FrameCache(DEFAULT_CACHE / "frames", spec.input_size, spec.fps)
    )
    features = FeatureCache(str(DEFAULT_CACHE), spec, encoder)
    videos = [v for v in dataset.videos if v.path in frames]
    views = [
        (features.features(v.path, frames[v.path], "plain"), features.features(v.path, frames[v.path], "mirror"))
        for v in videos
    ]
    labels, groups = np.array([v.label for v in videos]), [v.group for v in videos]
    report = {"data": str(args.data), "size": args.size, "fps": args.fps, "videos": len(videos), "by_l2": {}}
    for l2 in args.l2:
        result = probe(views, labels, groups, len(dataset.classes), l2)
        report["by_l2"][str(l2)] = result
        for name, correct in result.items():
            print(f"l2={l2:g} {name:10s} {sum(correct.values())}/{len(videos)}  per group {correct}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
