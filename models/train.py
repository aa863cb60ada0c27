"""Train an LRCN on labelled videos and write the model bundle.

A trainable CNN trains end to end on augmented clips of decoded frames. A frozen ImageNet
backbone cannot change, so its features are computed once per frame (plain and mirrored)
and only the temporal head trains on them: the same model, a fraction of the CNN passes.

>>> train(spec, train_videos, val_videos, "bundles/demo", TrainConfig(epochs=3))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import keras

from lrcn.models.architectures import (
    TemporalPooling,
    build_head,
    build_model,
    copy_head_weights,
    scale_to_unit_variance,
    split_model,
)
from lrcn.models import distribute, synth
from lrcn.models.frame_cache import (
    DEFAULT_CACHE,
    FrameCache,
    OneWorker,
    Shard,
    augment_clip,
    clip_indices,
    load_videos,
    preprocess,
    random_start,
    window_starts,
)
from lrcn.models.data import Video
from lrcn.models.features import FeatureCache
from lrcn.stream.bundle import BundleMeta, ModelSpec, write_meta
from lrcn.stream.errors import LrcnError
from lrcn.stream.sampling import grid_indices

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-4
    patience: int = 8
    clips_per_video: int = 8
    augment: bool = True
    flip: bool = True
    seed: int = 0
    refit: bool = True
    # N > 0: train on N freshly rendered synthetic clips per epoch (models.synth) instead of
    # clips of the training videos; videos then serve only for validation and testing.
    synthetic_clips: int = 0
    cache_dir: str | None = str(DEFAULT_CACHE)
    progress: bool = True
    # tf.distribute: "none", "mirrored" (this machine's GPUs) or "multiworker" (TF_CONFIG's
    # machines); batch_size is then per replica (lrcn.models.distribute).
    distribute: str = "none"


class ClipBatches(keras.utils.PyDataset):
    """Batches of clips drawn from per-video arrays (frames or features).

    Training: `clips_per_video` random clips of every video each epoch, shuffled, with a
    random view and (for pixels) augmentation; deterministic under (seed, epoch, batch).
    Validation (train=False): fixed windows every T frames, plain view.
    """

    def __init__(self, items, spec: ModelSpec, config: TrainConfig, train: bool, pixels: bool):
        super().__init__()
        self.items, self.spec, self.config, self.train, self.pixels = items, spec, config, train, pixels
        self.epoch = 0
        if train:
            self.plan = [(v, None) for v in range(len(items)) for _ in range(config.clips_per_video)]
        else:
            self.plan = [
                (v, s)
                for v, (views, _) in enumerate(items)
                for s in window_starts(len(views[0]), spec.clip_length, spec.clip_length)
            ]
        self.order = np.arange(len(self.plan))
        self.start_epoch(0)

    def __len__(self):
        return math.ceil(len(self.plan) / self.config.batch_size)

    def start_epoch(self, epoch: int):
        self.epoch = epoch
        if self.train:
            self.order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.plan))

    def on_epoch_end(self):
        self.start_epoch(self.epoch + 1)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        picks = self.order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        xs, ys = [], []
        for pick in picks:
            video, start = self.plan[pick]
            views, label = self.items[video]
            view = views[rng.integers(len(views))] if self.train else views[0]
            if start is None:
                start = random_start(len(view), self.spec.clip_length, rng)
            clip = view[clip_indices(len(view), self.spec.clip_length, start)]
            if self.pixels:
                if self.train and self.config.augment:
                    clip = augment_clip(clip, rng, flip=self.config.flip)
                clip = preprocess(clip, *self.spec.preprocessing)
            xs.append(clip)
            ys.append(label)
        y = np.asarray(ys, dtype=np.int32)
        if self.spec.outputs_every_step:
            y = np.repeat(y[:, None], self.spec.clip_length, axis=1)
        return np.stack(xs), y


class RenderedBatches(keras.utils.PyDataset):
    """Batches of synthetic clips (models.synth) rendered afresh for every batch, never twice.

    A few hundred fixed synthetic videos get memorised by their backgrounds (measured: 100%
    on training clips, 69% on held-out videos); an endless supply leaves the model nothing
    to learn but the motion. Clips are rendered at `source_fps` and sampled at the model's
    fps on the same grid as decoded files, so they look like the files `lrcn synth` writes.
    Deterministic under (seed, epoch, batch).
    """

    def __init__(self, spec: ModelSpec, config: TrainConfig, source_fps: float = 25.0):
        super().__init__()
        unknown = sorted(set(spec.classes) - set(synth.CLASSES))
        if unknown:
            raise LrcnError(
                f"cannot render class {', '.join(unknown)}: synthetic classes are {', '.join(synth.CLASSES)}"
            )
        if spec.input_size[0] != spec.input_size[1]:
            raise LrcnError(f"synthetic clips are square; the model takes {spec.input_size[0]}x{spec.input_size[1]}")
        self.spec, self.config, self.source_fps = spec, config, source_fps
        n_source = math.ceil(spec.clip_length * source_fps / spec.fps) + 1
        self.sampled = grid_indices([i / source_fps for i in range(n_source)], spec.fps)[: spec.clip_length]
        self.n_source = n_source
        self.epoch = 0

    def __len__(self):
        return math.ceil(self.config.synthetic_clips / self.config.batch_size)

    def start_epoch(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self):
        self.start_epoch(self.epoch + 1)

    def __getitem__(self, index):
        rng = np.random.default_rng([self.config.seed, 1, self.epoch, index])
        labels = rng.integers(self.spec.num_classes, size=self.config.batch_size).astype(np.int32)
        clips = [
            synth.render_clip(
                self.spec.classes[label], self.n_source, self.spec.input_size[0], rng, fps=self.source_fps
            )[self.sampled]
            for label in labels
        ]
        if self.spec.outputs_every_step:
            labels = np.repeat(labels[:, None], self.spec.clip_length, axis=1)
        return preprocess(np.stack(clips), *self.spec.preprocessing), labels


def prepare(spec, config, train_videos, val_videos, frame_cache, encoder, shard: Shard = OneWorker()):
    """(model to fit, training batches, validation batches, trains_head_only). Videos are
    decoded, and a frozen backbone's features encoded, by each worker of `shard` for its share."""
    rendered = config.synthetic_clips > 0
    head_only = spec.frozen_backbone
    if rendered and head_only:
        raise LrcnError("synthetic clips train the whole model; a frozen backbone trains on video features")
    if head_only:
        features = FeatureCache(config.cache_dir, spec, encoder)
        views = ("plain", "mirror") if config.flip and config.augment else ("plain",)

        def items(videos, view_names):
            encoded = features.all_views(
                [v.path for v in videos], frame_cache.frames, view_names, shard, config.progress
            )
            return [(encoded[v.path], v.label) for v in videos if v.path in encoded]

        train_items = items(train_videos, views)
        if not train_items:
            raise LrcnError("no readable training video")
        val_items = items(val_videos, ("plain",))
        model = build_head(spec, train_items[0][0][0].shape[-1])
        return (
            model,
            ClipBatches(train_items, spec, config, True, pixels=False),
            ClipBatches(val_items, spec, config, False, pixels=False) if val_items else None,
            True,
        )
    train_frames = {} if rendered else load_videos([v.path for v in train_videos], frame_cache, config.progress, shard)
    val_frames = load_videos([v.path for v in val_videos], frame_cache, config.progress, shard)
    if not train_frames and not rendered:
        raise LrcnError("no readable training video")
    if rendered:
        val_items = [([val_frames[v.path]], v.label) for v in val_videos if v.path in val_frames]
        return (
            None,
            RenderedBatches(spec, config),
            ClipBatches(val_items, spec, config, False, pixels=True) if val_items else None,
            False,
        )
    train_items = [([train_frames[v.path]], v.label) for v in train_videos if v.path in train_frames]
    val_items = [([val_frames[v.path]], v.label) for v in val_videos if v.path in val_frames]
    return (
        None,
        ClipBatches(train_items, spec, config, True, pixels=True),
        ClipBatches(val_items, spec, config, False, pixels=True) if val_items else None,
        False,
    )


def sample_frames(batches, spec: ModelSpec, count: int = 64) -> np.ndarray:
    """Preprocessed frames of the first training batches, for initialisation."""
    frames, index = [], 0
    while sum(len(f) for f in frames) < count and index < len(batches):
        frames.append(batches[index][0].reshape(-1, *spec.input_size, 3))
        index += 1
    return np.concatenate(frames)[:count]


def standardise_pooling(model, batches, encoder=None, max_batches: int = 64) -> None:
    """Fix the standardisation of the model's temporal pooling, if it has one, from the first
    training batches' windows (through `encoder` when the batches hold pixels). Asked of the
    layers, not of the head's name, so a new head with pooling needs nothing here."""
    poolings = [layer for layer in model.layers if isinstance(layer, TemporalPooling)]
    if not poolings:
        return
    (pooling,) = poolings
    pooled = []
    for index in range(min(len(batches), max_batches)):
        clips = batches[index][0]
        if encoder is not None:
            frames = clips.reshape(-1, *clips.shape[2:])
            clips = np.asarray(encoder(frames, training=False)).reshape(*clips.shape[:2], -1)
        pooled.append(np.asarray(TemporalPooling.pool(clips)))
    pooling.set_statistics(np.concatenate(pooled))


def compile_model(model, config: TrainConfig, steps: int):
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(1, steps), alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def best_so_far(history_csv: Path, monitor: str) -> float | None:
    values = read_history(history_csv).get(monitor)
    return min(values) if values else None


def train(
    spec: ModelSpec,
    train_videos: list[Video],
    val_videos: list[Video],
    out_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    provenance: dict | None = None,
) -> tuple[keras.Model, BundleMeta]:
    """Fit, keep the best epoch by validation loss, and write model.keras + meta.json to out_dir.

    Under config.distribute, a twin of the model with its variables under the strategy fits
    with global batches of config.batch_size x replicas; every worker draws the same batches
    (same seed) and each replica takes its part of each one. The bundle's model stays plain."""
    import tensorflow as tf

    started = time.time()
    distribution = distribute.start(config.distribute)
    scope = distribution.strategy.scope if distribution.strategy is not None else contextlib.nullcontext
    global_config = replace(config, batch_size=config.batch_size * distribution.replicas)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    model = build_model(spec)
    encoder, _ = split_model(model, spec)
    frame_cache = FrameCache(Path(config.cache_dir) / "frames" if config.cache_dir else None, spec.input_size, spec.fps)
    head, batches, val_batches, head_only = prepare(
        spec, global_config, train_videos, val_videos, frame_cache, encoder, distribution
    )
    fitted = head if head_only else model
    monitor = "val_loss" if val_batches is not None else "loss"
    last, best, history_csv = checkpoints / "last.keras", checkpoints / "best.keras", checkpoints / "history.csv"
    initial_epoch = 0
    if resume and last.exists():
        with scope():
            fitted = keras.models.load_model(last)
        if distribution.strategy is not None:
            distribute.build_for_fit(fitted, distribution, batches[0])
        state = json.loads((checkpoints / "state.json").read_text())
        initial_epoch = state["epoch"]
        batches.start_epoch(initial_epoch)
        log.info("resuming from epoch %d", initial_epoch)
    else:
        if spec.backbone == "seed":  # the small CNN learns faster from Keras's own initialisation
            scale_to_unit_variance(encoder, sample_frames(batches, spec))
        standardise_pooling(fitted, batches, None if head_only else encoder)
        steps = config.epochs * len(batches)
        if distribution.strategy is None:
            compile_model(fitted, config, steps)
        else:
            fitted = distribute.distributed_copy(
                fitted, distribution, lambda twin: compile_model(twin, config, steps), batches[0]
            )
        history_csv.unlink(missing_ok=True)
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            best, monitor=monitor, save_best_only=True, initial_value_threshold=best_so_far(history_csv, monitor)
        ),
        keras.callbacks.ModelCheckpoint(last),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (checkpoints / "state.json").write_text(json.dumps({"epoch": epoch + 1}))
        ),
        keras.callbacks.CSVLogger(history_csv, append=True),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience),
    ]
    # In the strategy's scope the metrics of an epoch are read across all replicas, so every
    # worker's callbacks see the same figures and stop at the same epoch.
    with scope():
        if initial_epoch < config.epochs:
            fitted.fit(
                batches,
                validation_data=val_batches,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=1 if config.progress else 2,
            )
        fitted.load_weights(best if best.exists() else last)
    if head_only:
        copy_head_weights(fitted, model)
    elif fitted is not model:
        model.set_weights(fitted.get_weights())
    history = read_history(history_csv)
    meta = BundleMeta(
        spec=spec,
        feature_size=int(encoder.output_shape[-1]),
        training={
            "config": asdict(config) | {"cache_dir": None},
            "train_videos": 0 if config.synthetic_clips else len(batches.items),
            "val_videos": len(val_batches.items) if val_batches else 0,
            "head_only": head_only,
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": int(np.argmin(history[monitor])) + 1 if history.get(monitor) else None,
            "seconds": round(time.time() - started, 1),
            **(
                {
                    "distribute": {
                        "strategy": distribution.name,
                        "workers": distribution.workers,
                        "replicas": distribution.replicas,
                        "global_batch": global_config.batch_size,
                    }
                }
                if distribution.strategy is not None
                else {}
            ),
            "versions": {"keras": keras.__version__, "python": platform.python_version()},
            **(provenance or {}),
        },
    )
    save_bundle(model, meta, out_dir)
    save_curves(history, out_dir / "curves.png")
    return model, meta


def save_bundle(model: keras.Model, meta: BundleMeta, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / "model.keras")
    write_meta(out_dir, meta)


def read_history(history_csv: Path) -> dict[str, list[float]]:
    """Columns of Keras's CSV log as floats; cells it wrote as NA are left out."""
    if not history_csv.exists():
        return {}
    with history_csv.open() as file:
        rows = list(csv.DictReader(file))
    history = {}
    for row in rows:
        for key, text in row.items():
            try:
                history.setdefault(key, []).append(float(text))
            except (TypeError, ValueError):
                pass
    return history


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if history.get(key):
                axis.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
