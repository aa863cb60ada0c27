"""Accuracy of the INT8 encoder against fp32, on each bundle's own test videos.

    python -m lrcn.tools.evidence.int8_accuracy runs/weizmann_mnv2_lstm --work /tmp/int8 --out int8.json

RUNS is one bundle or a cross-validation folder of fold bundles. Each bundle is copied
(meta.json, model.keras) to --work, exported with an INT8 encoder calibrated on its
training groups' videos only, then both encoders run the bundle's test groups through the
same NumPy head: windows of T frames at stride T/2, video label from the windows' mean, as
`lrcn evaluate` scores them. Agreement: the share of clips and videos where INT8 predicts the
class fp32 predicts, right or wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from lrcn.models.frame_cache import video_windows
from lrcn.stream.quantize import calibration_frames
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.video import VIDEO_EXTENSIONS, read_frames


def fold_bundles(runs: Path) -> list[Path]:
    if (runs / "meta.json").is_file():
        return [runs]
    return sorted(p.parent for p in runs.glob("*/meta.json"))


def labelled_videos(data: Path, pattern: str, groups: set[str]) -> list[tuple[Path, str]]:
    """(video, class) for the videos of `groups`, the group read from the file name."""
    found = []
    for path in sorted(data.glob("*/*")):
        match = re.search(pattern, path.name)
        if path.suffix.lower() in VIDEO_EXTENSIONS and match and match.group(1) in groups:
            found.append((path, path.parent.name))
    return found


def score(bundle, videos: list[tuple[Path, str]]) -> dict:
    """Counts, and the predicted classes (`clip_predictions`, `video_predictions`) for agreement."""
    spec = bundle.meta.spec
    clip_predictions, clip_targets, video_predictions, video_targets = [], [], [], []
    for path, label in videos:
        features = bundle.video_features(path)
        probs = bundle.head.clip_probabilities(video_windows(features, spec.clip_length, max(1, spec.clip_length // 2)))
        target = spec.classes.index(label)
        video_predictions.append(int(probs.mean(axis=0).argmax()))
        video_targets.append(target)
        clip_predictions += probs.argmax(axis=1).tolist()
        clip_targets += [target] * len(probs)
    return {
        "videos": len(videos),
        "video_correct": int(np.sum(np.equal(video_predictions, video_targets))),
        "clips": len(clip_predictions),
        "clip_correct": int(np.sum(np.equal(clip_predictions, clip_targets))),
        "clip_predictions": clip_predictions,
        "video_predictions": video_predictions,
    }


def agreement(a: dict, b: dict) -> dict:
    """How many clips and videos two scorings predict alike (popping their predictions)."""
    clips = [x == y for x, y in zip(a.pop("clip_predictions"), b.pop("clip_predictions"))]
    videos = [x == y for x, y in zip(a.pop("video_predictions"), b.pop("video_predictions"))]
    return {"clips": len(clips), "clips_agree": sum(clips), "videos": len(videos), "videos_agree": sum(videos)}


def measure_fold(source: Path, work: Path) -> dict:
    from lrcn.models.export import export_bundle
    from lrcn.stream.bundle import read_meta

    meta = read_meta(source)
    training, spec = meta.training, meta.spec
    data, pattern = Path(training["data"]), training["group_pattern"]
    work.mkdir(parents=True, exist_ok=True)
    for name in ("meta.json", "model.keras"):
        shutil.copy2(source / name, work / name)
    train_videos = labelled_videos(data, pattern, set(training["train_groups"]))
    test_videos = labelled_videos(data, pattern, set(training["test_groups"]))
    # Calibrate on the training groups alone: the test videos stay unseen.
    calibration = calibration_frames([path for path, _ in train_videos], spec.input_size, spec.fps)
    report = export_bundle(work, read_frames(test_videos[0][0], spec.input_size, spec.fps), calibration=calibration)
    row = {"bundle": str(source), "test_groups": training["test_groups"], "export": report["int8"]}
    for backend in ("onnxruntime", "onnxruntime-int8"):
        row[backend] = score(load_runtime_bundle(work, backend), test_videos)
    row["agreement"] = agreement(row["onnxruntime"], row["onnxruntime-int8"])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="where the exported copies go")
    parser.add_argument("--out", type=Path, help="JSON report")
    args = parser.parse_args(argv)
    rows = []
    for fold in fold_bundles(args.runs):
        row = measure_fold(fold, args.work / fold.name)
        rows.append(row)
        print(
            f"{fold.name}: fp32 {row['onnxruntime']['video_correct']}/{row['onnxruntime']['videos']}, "
            f"int8 {row['onnxruntime-int8']['video_correct']}/{row['onnxruntime-int8']['videos']} videos; "
            f"agreement {row['agreement']['videos_agree']}/{row['agreement']['videos']} videos, "
            f"{row['agreement']['clips_agree']}/{row['agreement']['clips']} clips; "
            f"feature cosine >= {row['export']['feature_cosine_min']:.4f}",
            flush=True,
        )
    totals = {
        b: {k: sum(r[b][k] for r in rows) for k in ("videos", "video_correct", "clips", "clip_correct")}
        for b in ("onnxruntime", "onnxruntime-int8")
    }
    totals["agreement"] = {k: sum(r["agreement"][k] for r in rows) for k in rows[0]["agreement"]}
    for backend in ("onnxruntime", "onnxruntime-int8"):
        t = totals[backend]
        print(f"{backend}: videos {t['video_correct']}/{t['videos']}, clips {t['clip_correct']}/{t['clips']}")
    a = totals["agreement"]
    print(f"int8 agrees with fp32: videos {a['videos_agree']}/{a['videos']}, clips {a['clips_agree']}/{a['clips']}")
    if args.out:
        args.out.write_text(json.dumps({"folds": rows, "totals": totals}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
