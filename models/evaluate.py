"""Clip and video accuracy, per-class precision/recall, a confusion matrix.

Evaluation encodes every frame once and runs the head on every window, as the streaming
runtime does, instead of re-running the CNN on overlapping clips.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lrcn.models.architectures import split_model
from lrcn.models.frame_cache import video_windows
from lrcn.models.data import Video
from lrcn.models.features import encode_frames
from lrcn.stream.bundle import ModelSpec


def window_probabilities(head, spec: ModelSpec, features: np.ndarray, stride: int) -> np.ndarray:
    """Class probabilities of every window of a video's features: [windows, classes]."""
    probs = np.asarray(head(video_windows(features, spec.clip_length, stride), training=False))
    return probs.mean(axis=1) if spec.outputs_every_step else probs


def predict_videos(
    model, spec: ModelSpec, frames: dict[Path, np.ndarray], stride: int | None = None, features=None
) -> dict[Path, np.ndarray]:
    """Per video, the probabilities of each of its windows. `features(path, frames)` may supply
    cached features (frozen backbones); otherwise frames are encoded with the model's own CNN."""
    encoder, head = split_model(model, spec)
    stride = stride or max(1, spec.clip_length // 2)
    out = {}
    for path, video_frames in frames.items():
        feats = features(path, video_frames) if features else encode_frames(encoder, video_frames, spec)
        out[path] = window_probabilities(head, spec, feats, stride)
    return out


def report(videos: list[Video], window_probs: dict[Path, np.ndarray], classes: tuple[str, ...]) -> dict:
    """Clip accuracy over all windows; video accuracy from the windows' mean; per-class figures."""
    scored = [v for v in videos if v.path in window_probs]
    n = len(classes)
    confusion = np.zeros((n, n), dtype=int)
    clip_hits = clip_total = 0
    predictions = []
    for video in scored:
        probs = window_probs[video.path]
        clip_hits += int((probs.argmax(axis=1) == video.label).sum())
        clip_total += len(probs)
        mean = probs.mean(axis=0)
        predicted = int(mean.argmax())
        confusion[video.label, predicted] += 1
        predictions.append(
            {
                "video": str(video.path),
                "label": classes[video.label],
                "predicted": classes[predicted],
                "score": round(float(mean[predicted]), 4),
            }
        )
    per_class = {}
    for i, name in enumerate(classes):
        predicted, actual = confusion[:, i].sum(), confusion[i].sum()
        per_class[name] = {
            "precision": round(confusion[i, i] / predicted, 4) if predicted else None,
            "recall": round(confusion[i, i] / actual, 4) if actual else None,
            "support": int(actual),
        }
    return {
        "videos": len(scored),
        "clips": clip_total,
        "video_accuracy": round(float(np.trace(confusion) / max(1, len(scored))), 4),
        "video_correct": int(np.trace(confusion)),
        "clip_accuracy": round(clip_hits / max(1, clip_total), 4),
        "classes": list(classes),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "predictions": predictions,
    }


def save_report(result: dict, out_dir: Path, title: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    save_confusion_png(
        np.asarray(result["confusion"]),
        result["classes"],
        out_dir / "confusion.png",
        title or f"video accuracy {result['video_correct']}/{result['videos']}",
    )


def save_confusion_png(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.5 + 0.55 * len(classes)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, col), count in np.ndenumerate(confusion):
        if count:
            axis.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                color="white" if count > confusion.max() / 2 else "black",
            )
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
