"""Training and evaluation of a joint (modalities) bundle: frozen encoders, cached features, a trained head.

Every modality's encoder is frozen, so each video's features are computed once per (view, modality)
and cached (models.features.FeatureCache), then joined in spec.modalities order; only the temporal
head trains (early fusion), or one head per modality whose probabilities are averaged with a weight
chosen on the validation videos (late fusion). With stills, a class "idle" (last in spec.classes)
learns what a scene where nothing moves looks like: a held frame of a training video and blank
frames, each the same picture T times, their flow the zero field.

>>> train_joint_and_test(spec, train_videos, test_videos, Path("bundles/both"), config, JointOptions())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np

from lrcn.models import joint
from lrcn.models.architectures import scale_to_unit_variance
from lrcn.models.frame_cache import FrameCache, video_windows
from lrcn.models.data import Video, group_holdout
from lrcn.models.evaluate import report, save_report
from lrcn.models.features import FeatureCache, encode_frames
from lrcn.models.modalities import encoder_spec, keras_modality, model_input
from lrcn.models.train import (
    ClipBatches,
    TrainConfig,
    compile_model,
    read_history,
    save_bundle,
    save_curves,
    standardise_pooling,
)
from lrcn.stream.bundle import BundleMeta, ModelSpec, write_meta
from lrcn.stream.errors import LrcnError

log = logging.getLogger(__name__)

IDLE = "idle"
FUSIONS = ("early", "late")
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
BLANK_SHARE = 0.25  # of the still clips, blank frames; the rest held frames of training videos
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class JointOptions:
    fusions: tuple[str, ...] = ("early",)  # several: each trained, the best on validation kept
    stills: bool = False
    # models.flow_encoder candidates: several are each trained on flow and the best on validation kept;
    # none: the flow encoder is the flow backbone as it comes (frozen)
    flow_encoders: tuple[str, ...] = ()


def with_idle(classes, stills: bool) -> tuple[str, ...]:
    if not stills:
        return tuple(classes)
    if IDLE in classes:
        raise LrcnError(f"the data already has a class {IDLE!r}: train with --no-stills")
    return (*classes, IDLE)


def check_joint_spec(spec: ModelSpec) -> None:
    if not spec.frozen_backbone:
        raise LrcnError(
            f"training with modalities {','.join(spec.modalities)} (or stills) trains the head on frozen "
            f"encoders' features: give --trainable-layers 0"
        )


def frame_cache_of(spec: ModelSpec, config: TrainConfig) -> FrameCache:
    return FrameCache(Path(config.cache_dir) / "frames" if config.cache_dir else None, spec.input_size, spec.fps)


def pretrained(spec: ModelSpec) -> bool:
    """Whether an encoder's weights come from a file, so its cached features stay valid across runs."""
    return spec.backbone == "mobilenet_v2" and bool(spec.backbone_weights)


class JointFeatures:
    """Each video's features per view, every modality's joined in spec.modalities order: [N, sum F].

    Encoders with pretrained weights cache their features per (video, view, modality), an encoder
    trained by this run under its weights' digest; a CNN with random frozen weights (the tests' seed
    backbone) is not cached: re-initialised, it would give other features under the same key."""

    def __init__(self, spec: ModelSpec, encoders: dict, config: TrainConfig):
        self.spec, self.encoders, self.config = spec, encoders, config
        self.frame_cache = frame_cache_of(spec, config)
        self.caches = {}
        for name in spec.modalities:
            modality_spec, trained = encoder_spec(spec, name), keras_modality(name).trained(spec)
            directory = config.cache_dir if pretrained(modality_spec) or trained else None
            self.caches[name] = FeatureCache(directory, modality_spec, encoders[name], name, trained)

    def inputs_of(self, name: str):
        return lambda path: keras_modality(name).read_cached(self.frame_cache, path)

    def items(self, videos: list[Video], views) -> list[tuple[list[np.ndarray], int]]:
        per_modality = {
            name: self.caches[name].all_views(
                [v.path for v in videos], self.inputs_of(name), views, progress=self.config.progress
            )
            for name in self.spec.modalities
        }
        items = []
        for video in videos:
            if all(video.path in found for found in per_modality.values()):
                joined = [
                    np.concatenate([per_modality[name][video.path][i] for name in self.spec.modalities], axis=-1)
                    for i in range(len(views))
                ]
                items.append((joined, video.label))
        return items

    def of_video(self, path: Path) -> np.ndarray:
        """[N, sum F] of one video's plain view."""
        parts = []
        for name in self.spec.modalities:
            inputs = keras_modality(name).read_cached(self.frame_cache, path)
            parts.append(self.caches[name].features(path, inputs, "plain"))
        n = min(len(p) for p in parts)
        return np.concatenate([p[:n] for p in parts], axis=-1)

    def of_pictures(self, pictures: np.ndarray) -> np.ndarray:
        """[N, sum F] of RGB pictures [N, H, W, 3] each held still (every modality's still input)."""
        parts = []
        for name in self.spec.modalities:
            keras_side = keras_modality(name)
            inputs = np.stack([keras_side.still(p) for p in pictures])
            parts.append(
                encode_frames(
                    self.encoders[name],
                    inputs,
                    self.spec,
                    lambda batch, n=name: model_input(n, batch, encoder_spec(self.spec, n)),
                )
            )
        return np.concatenate(parts, axis=-1)


def still_items(
    features: JointFeatures, videos: list[Video], count: int, label: int, seed: int, pictures_per_clip: int = 8
):
    """`count` still clips, each a joined vector repeated T times: about 1/4 blank frames of random
    uniform colours, the rest a random frame of a random video of `videos`, held. Each clip has
    `pictures_per_clip` such pictures as its views (training draws one view per clip), so the class
    sees many pictures while it gets as many clips an epoch as an average class."""
    if count <= 0 or not videos:
        return []
    rng = np.random.default_rng([seed, 23])
    total = count * pictures_per_clip
    blanks = max(1, round(BLANK_SHARE * total))
    size = features.spec.input_size
    pictures = [np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (*size, 3)).copy() for _ in range(blanks)]
    for index in rng.integers(len(videos), size=total - blanks):
        frames = features.frame_cache.frames(videos[index].path)
        pictures.append(frames[rng.integers(len(frames))])
    encoded = features.of_pictures(np.stack(pictures)[rng.permutation(total)])
    held = np.repeat(encoded[:, None], features.spec.clip_length, axis=1)
    return [(list(held[i * pictures_per_clip : (i + 1) * pictures_per_clip]), label) for i in range(count)]


def stills_per_class(items, num_classes: int) -> int:
    """About as many still clips as an average class has videos."""
    return max(1, round(len(items) / max(1, num_classes)))


def lsuv_scale(spec: ModelSpec, encoders: dict, features: JointFeatures, videos: list[Video], count: int = 64) -> None:
    """A CNN with Keras's own initialisation gives nearly constant features; frozen at random
    weights (the tests' seed backbone) it is first scaled to unit variance on real inputs."""
    for name in spec.modalities:
        if encoder_spec(spec, name).backbone == "mobilenet_v2" or keras_modality(name).trained(spec):
            continue
        inputs = features.inputs_of(name)(videos[0].path)[:count]
        scale_to_unit_variance(encoders[name], model_input(name, inputs, encoder_spec(spec, name)))


def fit_head(head, train_items, val_items, spec: ModelSpec, config: TrainConfig, checkpoints: Path) -> dict:
    """Fit a head on feature items, keep its best epoch by validation loss; the training history."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    batches = ClipBatches(train_items, spec, config, True, pixels=False)
    val_batches = ClipBatches(val_items, spec, config, False, pixels=False) if val_items else None
    monitor = "val_loss" if val_batches is not None else "loss"
    best, history_csv = checkpoints / "best.weights.h5", checkpoints / "history.csv"
    history_csv.unlink(missing_ok=True)
    standardise_pooling(head, batches)
    compile_model(head, config, config.epochs * len(batches))
    callbacks = [
        keras.callbacks.ModelCheckpoint(best, monitor=monitor, save_best_only=True, save_weights_only=True),
        keras.callbacks.CSVLogger(history_csv),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience),
    ]
    head.fit(
        batches,
        validation_data=val_batches,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=1 if config.progress else 2,
    )
    head.load_weights(best)
    history = read_history(history_csv)
    history["best_epoch"] = [int(np.argmin(history[monitor])) + 1] if history.get(monitor) else []
    return history


def sliced(items, part: slice):
    return [([view[..., part] for view in views], label) for views, label in items]


def video_probabilities(
    model, spec: ModelSpec, sizes: dict[str, int], features: dict[Path, np.ndarray], stride: int | None = None
) -> dict[Path, np.ndarray]:
    """Per video, the probabilities of each window of its joined features (stride T/2 as evaluation)."""
    stride = stride or max(1, spec.clip_length // 2)
    out = {}
    for path, feats in features.items():
        probs = joint.probabilities_on_features(model, spec, sizes, video_windows(feats, spec.clip_length, stride))
        out[path] = probs.mean(axis=1) if spec.outputs_every_step else probs
    return out


def choose_weight(spec: ModelSpec, heads: dict, sizes: dict[str, int], val_items) -> tuple[tuple[float, ...], dict]:
    """Late fusion's weights (two modalities: w for the first, 1 - w for the second) by video accuracy on
    the validation videos over WEIGHT_GRID, ties to the weight nearest 0.5."""
    slices = joint.feature_slices(sizes)
    stride = max(1, spec.clip_length // 2)
    per_head = {name: [] for name in spec.modalities}
    labels = []
    for views, label in val_items:
        windows = video_windows(views[0], spec.clip_length, stride)
        for name in spec.modalities:
            probs = np.asarray(heads[name].predict_on_batch(windows[..., slices[name]]))
            per_head[name].append((probs.mean(axis=1) if spec.outputs_every_step else probs).mean(axis=0))
        labels.append(label)
    if len(spec.modalities) != 2:
        raise LrcnError("late fusion weights are chosen for two modalities")
    first, second = (np.stack(per_head[name]) for name in spec.modalities)
    scores = {
        w: float(np.mean((w * first + (1 - w) * second).argmax(axis=1) == np.asarray(labels))) for w in WEIGHT_GRID
    }
    best = max(WEIGHT_GRID, key=lambda w: (scores[w], -abs(w - 0.5)))
    return (best, round(1 - best, 1)), {f"{w:g}": scores[w] for w in WEIGHT_GRID}


def train_joint(
    spec: ModelSpec,
    train_videos: list[Video],
    val_videos: list[Video],
    out_dir: str | Path,
    config: TrainConfig,
    stills: bool = False,
    provenance: dict | None = None,
    trained_encoders=None,
):
    """Fit the joint model's head(s) on frozen encoders' features and write model.keras + meta.json.
    Late fusion without validation videos keeps spec.fusion_weights (chosen by an earlier run).
    `trained_encoders` ({modality: frozen Keras encoder}) replace the spec's built ones."""
    import tensorflow as tf

    check_joint_spec(spec)
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    out_dir = Path(out_dir)
    encoders = joint.build_encoders(spec) | (trained_encoders or {})
    features = JointFeatures(spec, encoders, config)
    if not train_videos:
        raise LrcnError("no training video")
    lsuv_scale(spec, encoders, features, train_videos)
    views = ("plain", "mirror") if config.flip and config.augment else ("plain",)
    train_items, val_items = features.items(train_videos, views), features.items(val_videos, ("plain",))
    if not train_items:
        raise LrcnError("no readable training video")
    still_record = None
    if stills:
        real_classes = spec.num_classes - 1
        idle = spec.classes.index(IDLE)
        train_stills = still_items(
            features, train_videos, stills_per_class(train_items, real_classes), idle, config.seed
        )
        val_stills = (
            still_items(features, val_videos, stills_per_class(val_items, real_classes), idle, config.seed + 1)
            if val_items
            else []
        )
        train_items, val_items = train_items + train_stills, val_items + val_stills
        still_record = {
            "class": IDLE,
            "train_clips": len(train_stills),
            "val_clips": len(val_stills),
            "blank_share": BLANK_SHARE,
        }
    sizes = {name: int(encoders[name].output_shape[-1]) for name in spec.modalities}
    checkpoints = out_dir / "checkpoints"
    training: dict = {}
    if spec.fusion == "late":
        heads, histories = {}, {}
        for name, part in joint.feature_slices(sizes).items():
            heads[name] = joint.build_temporal_head(spec, sizes[name], joint.head_name(name))
            histories[name] = fit_head(
                heads[name], sliced(train_items, part), sliced(val_items, part), spec, config, checkpoints / name
            )
        if val_items:
            weights, grid = choose_weight(spec, heads, sizes, val_items)
            spec = replace(spec, fusion_weights=weights)
            training["fusion_weight_validation"] = grid
        elif spec.fusion_weights is None:
            raise LrcnError("late fusion chooses its weights on validation videos: none left")
        model = joint.assemble_late(spec, encoders, heads)
        history = histories[spec.modalities[0]]
        best_epochs = [h["best_epoch"][0] for h in histories.values() if h["best_epoch"]]
        best_epoch = max(best_epochs) if best_epochs else None
        training["best_epochs"] = {name: (h["best_epoch"] or [None])[0] for name, h in histories.items()}
        epochs_run = max(len(h.get("loss", [])) for h in histories.values())
    else:
        head = joint.build_temporal_head(spec, sum(sizes.values()))
        history = fit_head(head, train_items, val_items, spec, config, checkpoints)
        model = joint.assemble_early(spec, encoders, head)
        best_epoch = history["best_epoch"][0] if history["best_epoch"] else None
        epochs_run = len(history.get("loss", []))
    meta = BundleMeta(
        spec=spec,
        feature_size=sum(sizes.values()),
        feature_sizes=sizes if len(sizes) > 1 else None,
        training={
            "config": asdict(config) | {"cache_dir": None},
            "train_videos": len(train_items) - (still_record or {}).get("train_clips", 0),
            "val_videos": len(val_items) - (still_record or {}).get("val_clips", 0),
            "head_only": True,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            **({"stills": still_record} if still_record else {}),
            **training,
            "seconds": round(time.time() - started, 1),
            "versions": {"keras": keras.__version__, "python": platform.python_version()},
            **(provenance or {}),
        },
    )
    save_bundle(model, meta, out_dir)
    save_curves({k: v for k, v in history.items() if k != "best_epoch"}, out_dir / "curves.png")
    return model, meta


def evaluate_joint(
    model, spec: ModelSpec, videos: list[Video], config: TrainConfig, out_dir: Path | None, title: str = ""
) -> dict:
    """Clip and video accuracy of a joint model on videos (every frame encoded once per modality)."""
    encoders = joint.encoders_of(model, spec)
    sizes = {name: int(encoder.output_shape[-1]) for name, encoder in encoders.items()}
    features = JointFeatures(spec, encoders, config)
    feats = {}
    for video in videos:
        try:
            feats[video.path] = features.of_video(video.path)
        except LrcnError as err:
            log.warning("skipping %s", err)
    result = report(videos, video_probabilities(model, spec, sizes, feats), spec.classes)
    if out_dir is not None:
        save_report(result, out_dir, title)
    return result


def train_joint_and_test(
    spec: ModelSpec,
    train_videos: list[Video],
    test_videos: list[Video],
    out_dir: Path,
    config: TrainConfig,
    options: JointOptions,
    provenance: dict | None = None,
) -> dict:
    """train_and_test's course for a joint model: epochs (and, with several fusions, the fusion) chosen
    on a group-disjoint validation split of the training groups, then (config.refit) trained again on
    every training group; the test report ({} without test videos)."""
    check_joint_spec(spec)
    out_dir = Path(out_dir)
    fit_videos, val_videos = group_holdout(train_videos, VAL_FRACTION, config.seed)
    groups = lambda videos: sorted({v.group for v in videos})
    provenance = (provenance or {}) | {
        "train_groups": groups(train_videos),
        "val_groups": groups(val_videos),
        "test_groups": groups(test_videos),
    }
    selecting = config.refit or len(options.fusions) > 1
    trained_encoders, flow_record = {}, None
    if options.flow_encoders:
        from lrcn.models.flow_encoder import choose_flow_encoder

        frame_cache = frame_cache_of(spec, config)
        spec, trained_encoders["flow"], flow_record = choose_flow_encoder(
            spec,
            options.flow_encoders,
            fit_videos,
            val_videos,
            lambda path: keras_modality("flow").read_cached(frame_cache, path),
            config.seed,
            config.progress,
        )
        provenance = provenance | {"flow_encoder": flow_record}
    candidates, scores = {}, {}
    for fusion in options.fusions:
        candidate = replace(spec, fusion=fusion, fusion_weights=None)
        directory = out_dir / "selection" / fusion if selecting else out_dir
        model, meta = train_joint(
            candidate,
            fit_videos,
            val_videos,
            directory,
            config,
            options.stills,
            provenance | {"train_groups": groups(fit_videos)},
            trained_encoders,
        )
        candidates[fusion] = (model, meta)
        if len(options.fusions) > 1:
            result = evaluate_joint(model, meta.spec, val_videos, config, None)
            scores[fusion] = (result["video_accuracy"], result["clip_accuracy"])
    chosen = max(scores, key=scores.get) if scores else options.fusions[0]
    model, meta = candidates[chosen]
    choice = (
        {"chosen": chosen, "validation": {f: {"video_accuracy": v, "clip_accuracy": c} for f, (v, c) in scores.items()}}
        if scores
        else None
    )
    if choice:
        log.info(
            "%s fusion chosen on validation groups (%s video/clip accuracy)",
            chosen,
            ", ".join(f"{f}: {v:.3f}/{c:.3f}" for f, (v, c) in scores.items()),
        )
    if config.refit and val_videos:
        epochs = meta.training["best_epoch"] or config.epochs
        selection = {key: meta.training[key] for key in ("best_epoch", "epochs_run", "seconds")}
        # late fusion keeps the weights chosen on the validation groups, and says how they scored there
        chosen_weights = {key: meta.training[key] for key in ("fusion_weight_validation",) if key in meta.training}
        model, meta = train_joint(
            meta.spec,
            train_videos,
            [],
            out_dir,
            replace(config, epochs=epochs),
            options.stills,
            provenance | {"selection": selection} | chosen_weights,
            trained_encoders,
        )
    elif selecting:
        shutil.copytree(out_dir / "selection" / chosen, out_dir, dirs_exist_ok=True)
    if choice:
        meta.training["fusion_choice"] = choice
    write_meta(out_dir, meta)
    if not test_videos:
        return {}
    result = evaluate_joint(model, meta.spec, test_videos, config, out_dir / "evaluation")
    meta.metrics = {"test": {k: result[k] for k in ("videos", "video_accuracy", "video_correct", "clip_accuracy")}}
    write_meta(out_dir, meta)
    return result
