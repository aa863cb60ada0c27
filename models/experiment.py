"""Train-and-test runs: one split, or leave-one-group-out cross-validation.

Hyperparameters and the best epoch are chosen on a group-disjoint validation split carved
out of the training groups; the test groups are touched only by the final evaluation.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lrcn.models import distribute
from lrcn.models.frame_cache import FrameCache, load_videos
from lrcn.models.data import Dataset, Fold, Video, group_holdout, leave_one_group_out
from lrcn.models.evaluate import predict_videos, report, save_report
from lrcn.models.features import FeatureCache
from lrcn.models.train import TrainConfig, train
from lrcn.stream.bundle import ModelSpec, read_meta, write_meta
from lrcn.stream.errors import LrcnError

log = logging.getLogger(__name__)

VAL_FRACTION = 0.2


def relabel(videos: list[Video], dataset_classes, model_classes) -> list[Video]:
    """Map a dataset's label indices onto a model's class list, by name."""
    missing = sorted(set(dataset_classes) - set(model_classes))
    if missing:
        raise LrcnError(f"classes {', '.join(missing)} are not among the model's classes ({', '.join(model_classes)})")
    index = {name: i for i, name in enumerate(model_classes)}
    return [replace(v, label=index[dataset_classes[v.label]]) for v in videos]


def evaluate_model(
    model, spec: ModelSpec, videos: list[Video], config: TrainConfig, out_dir: Path | None, title: str = ""
) -> dict:
    from lrcn.models.joint import is_joint

    if is_joint(model):
        from lrcn.models.two_stream import evaluate_joint

        return evaluate_joint(model, spec, videos, config, out_dir, title)
    cache_root = Path(config.cache_dir) if config.cache_dir else None
    frames = load_videos(
        [v.path for v in videos],
        FrameCache(cache_root / "frames" if cache_root else None, spec.input_size, spec.fps),
        config.progress,
    )
    features = None
    if spec.frozen_backbone:
        from lrcn.models.architectures import split_model

        cache = FeatureCache(config.cache_dir, spec, split_model(model, spec)[0])
        features = cache.features
    result = report(videos, predict_videos(model, spec, frames, features=features), spec.classes)
    if out_dir is not None:
        save_report(result, out_dir, title)
    return result


def train_and_test(
    spec: ModelSpec,
    train_videos: list[Video],
    test_videos: list[Video],
    out_dir: Path,
    config: TrainConfig,
    resume: bool = False,
    provenance: dict | None = None,
    l2_choices: Sequence[float] = (),
) -> dict:
    """Train on train_videos and test on test_videos; returns the test report ({} without tests).

    The number of epochs, and the L2 penalty when several `l2_choices` are given, are chosen
    on a group-disjoint validation split of the training groups (out_dir/selection). With
    config.refit the final model then trains on every training group for that many epochs:
    with three persons, say, the selection run learns from one person and the final model
    from two.
    """
    fit_videos, val_videos = group_holdout(train_videos, VAL_FRACTION, config.seed)
    groups = lambda videos: sorted({v.group for v in videos})
    provenance = (provenance or {}) | {
        "train_groups": groups(train_videos),
        "val_groups": groups(val_videos),
        "test_groups": groups(test_videos),
    }
    selected = None  # the chosen L2's model, already trained on the validation split
    if len(l2_choices) > 1 and val_videos:
        spec, selected, provenance["l2_selection"] = choose_l2(
            spec, l2_choices, fit_videos, val_videos, out_dir, config, provenance | {"train_groups": groups(fit_videos)}
        )
    if config.refit and val_videos:
        _, chosen = selected or train(
            spec,
            fit_videos,
            val_videos,
            out_dir / "selection",
            config,
            resume,
            provenance | {"train_groups": groups(fit_videos)},
        )
        epochs = chosen.training["best_epoch"] or config.epochs
        provenance["selection"] = {key: chosen.training[key] for key in ("best_epoch", "epochs_run", "seconds")}
        model, meta = train(spec, train_videos, [], out_dir, replace(config, epochs=epochs), False, provenance)
    elif selected:  # without refit the chosen model is the result: copied, not trained again
        shutil.copytree(l2_dir(out_dir, spec.l2), out_dir, dirs_exist_ok=True)
        model, meta = selected
        meta.training["l2_selection"] = provenance["l2_selection"]
        write_meta(out_dir, meta)
    else:
        model, meta = train(
            spec, fit_videos, val_videos, out_dir, config, resume, provenance | {"train_groups": groups(fit_videos)}
        )
    if not test_videos or not distribute.current().is_chief:  # the chief alone tests the bundle it writes
        return {}
    result = evaluate_model(model, spec, test_videos, config, out_dir / "evaluation")
    meta.metrics = {"test": {k: result[k] for k in ("videos", "video_accuracy", "video_correct", "clip_accuracy")}}
    write_meta(out_dir, meta)
    return result


def l2_dir(out_dir: Path, l2: float) -> Path:
    return out_dir / "selection" / f"l2-{l2:g}"


def choose_l2(
    spec: ModelSpec,
    choices: Sequence[float],
    fit_videos: list[Video],
    val_videos: list[Video],
    out_dir: Path,
    config: TrainConfig,
    provenance: dict,
):
    """(spec, (model, meta), record): the L2 penalty whose model does best on the validation
    videos, by video accuracy, then clip accuracy, then the larger penalty (the simpler model)
    on a tie, and that model. Validation accuracy, not loss: Keras's validation loss includes
    the penalty itself."""
    scores, trained = {}, {}
    for l2 in choices:
        candidate = replace(spec, l2=l2)
        trained[l2] = train(candidate, fit_videos, val_videos, l2_dir(out_dir, l2), config, False, provenance)
        result = evaluate_model(trained[l2][0], candidate, val_videos, config, None)
        scores[l2] = (result["video_accuracy"], result["clip_accuracy"], l2)
    best = max(scores, key=scores.get)
    log.info(
        "l2 %g chosen on validation groups (%s video/clip accuracy)",
        best,
        ", ".join(f"{l2:g}: {v:.3f}/{c:.3f}" for l2, (v, c, _) in scores.items()),
    )
    record = {"chosen": best, "validation": {f"{l2:g}": list(score[:2]) for l2, score in scores.items()}}
    return replace(spec, l2=best), trained[best], record


def cross_validate(
    spec: ModelSpec,
    dataset: Dataset,
    out_dir: Path,
    config: TrainConfig,
    provenance: dict | None = None,
    l2_choices: Sequence[float] = (),
) -> dict:
    """Leave-one-group-out: one bundle per fold under out_dir, and out_dir/cv_report.json."""
    folds: list[Fold] = leave_one_group_out(list(dataset.videos))
    rows = []
    for fold in folds:
        fold_dir = out_dir / f"fold-{fold.name.replace('=', '-')}"
        result = train_and_test(
            spec, list(fold.train), list(fold.test), fold_dir, config, provenance=provenance, l2_choices=l2_choices
        )
        if not result:  # a worker other than the chief: it trained, the chief tests
            continue
        rows.append(
            {
                "fold": fold.name,
                "test_videos": result["videos"],
                "correct": result["video_correct"],
                "video_accuracy": result["video_accuracy"],
                "clip_accuracy": result["clip_accuracy"],
            }
        )
        log.info(
            "fold %s: %d/%d videos (%.3f), clip accuracy %.3f",
            fold.name,
            result["video_correct"],
            result["videos"],
            result["video_accuracy"],
            result["clip_accuracy"],
        )
    correct, total = sum(r["correct"] for r in rows), sum(r["test_videos"] for r in rows)
    summary = {
        "folds": rows,
        "correct": correct,
        "videos": total,
        "pooled_video_accuracy": round(correct / max(1, total), 4),
        "mean_fold_accuracy": round(float(np.mean([r["video_accuracy"] for r in rows])), 4) if rows else None,
        "model": spec.to_json(),
    }
    (out_dir / "cv_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_bundle(bundle_dir: str | Path):
    """(Keras model, BundleMeta); a wrong or partial bundle is one LrcnError line."""
    import keras

    from lrcn.models.joint import check_joint_model, is_joint  # registers the joint models' layers

    meta = read_meta(bundle_dir)
    path = Path(bundle_dir) / "model.keras"
    if not path.is_file():
        raise LrcnError(f"bundle {bundle_dir} has no model.keras")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a damaged archive
        raise LrcnError(f"cannot load {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if is_joint(model):
        check_joint_model(model, meta.spec, path)
        return model, meta
    expected = (None, meta.spec.clip_length, *meta.spec.input_size, 3)
    if tuple(model.input_shape) != expected:
        raise LrcnError(f"{path}: input shape {tuple(model.input_shape)} does not match meta.json {expected}")
    if model.output_shape[-1] != meta.spec.num_classes:
        raise LrcnError(f"{path}: {model.output_shape[-1]} outputs but meta.json lists {meta.spec.num_classes} classes")
    return model, meta
