"""Training the LSTM head on streams: training clips joined into long sequences, a target at
every frame, and the LSTM's state carried from one batch to the next.

A window-trained LSTM only ever sees 16 frames from a zero state, so on a live stream it has
never learnt to leave one action for the next, and continuous mode has to restart it. Here a
sequence is what a camera sees: segments of training videos of random lengths, one action
after another (never the same twice in a row), with segments of a background class between
them when one is named. Every frame's target is the action it shows; the first
`ignore_margin_s` after each change (and after the sequence's start) are left out of the loss,
since no model can know at once that the action changed. Training is truncated
backpropagation through time: B sequences side by side, cut into chunks of `chunk` frames,
the LSTM's final state of one chunk the initial state of the next, reset to zero between
batches of sequences.

It trains on the cached features of a frozen backbone (models.features) and writes the same
bundle as window training: the standard Keras model with these LSTM and softmax weights, so
`lrcn export` gives the same head.npz and every head mode of the runtime runs it.
meta.json's training.stream_training records the settings.

>>> config = StreamConfig(ignore_margin_s=0.2)
>>> segments = [Segment(0, 0, 0, 4, label=1), Segment(1, 0, 2, 3, label=0)]
>>> targets, weights = frame_targets(segments, margin_frames=2)
>>> targets.tolist(), weights.tolist()
([1, 1, 1, 1, 0, 0, 0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    segment_s: tuple[float, float] = (1.6, 8.0)  # a segment's length, shortest and longest (capped by its video)
    sequence_s: tuple[float, float] = (25.6, 51.2)  # a sequence's length, from a zero state to the next reset
    ignore_margin_s: float = 0.3  # seconds after each change left out of the loss
    background: str | None = None  # a class whose videos are background between actions
    background_share: float = 0.3  # chance that a segment after an action is background
    chunk: int = 32  # frames per truncated-backpropagation step
    init_from: str | None = None  # a bundle whose LSTM and softmax weights to start from

    def __post_init__(self):
        if not self.ignore_margin_s >= 0:
            raise LrcnError(f"--ignore-margin must be >= 0 seconds, got {self.ignore_margin_s:g}")
        for name, (low, high) in (("segment", self.segment_s), ("sequence", self.sequence_s)):
            if not 0 < low <= high:
                raise LrcnError(f"--{name}-seconds must be 0 < MIN <= MAX, got {low:g} {high:g}")
        if not 0 <= self.background_share < 1:
            raise LrcnError(f"background share must be in [0, 1), got {self.background_share:g}")
        if self.chunk < 1:
            raise LrcnError(f"--tbptt-steps must be a positive integer, got {self.chunk}")


@dataclass(frozen=True)
class Segment:
    """Frames start..start+length of one view of one video (an index into the items), and its label."""

    item: int
    view: int
    start: int
    length: int
    label: int


def background_label(classes: Sequence[str], name: str | None) -> int | None:
    """The index of the background class, None without one; a name that is no class is one error line.

    >>> background_label(("a", "still"), "still"), background_label(("a", "b"), None)
    (1, None)
    """
    if name is None:
        return None
    if name not in classes:
        raise LrcnError(f"--background {name!r} is not a class of the data (classes: {', '.join(classes)})")
    if len(classes) < 2:
        raise LrcnError("--background needs at least one other class")
    return list(classes).index(name)


def plan_sequence(
    items: Sequence[tuple[int, int, int]],
    total: int,
    shortest: int,
    longest: int,
    rng: np.random.Generator,
    background: int | None = None,
    background_share: float = 0.0,
) -> list[Segment]:
    """Segments adding up to `total` frames. items: (frames, label, views) per video. Each segment is a
    random stretch of `shortest`..`longest` frames (a whole video when it is shorter) of a random
    video; neighbours never share a label; after an action, the background class comes with
    probability `background_share` (never twice in a row, never as the only class).

    >>> items = [(30, 0, 1), (30, 1, 1), (30, 2, 1)]
    >>> plan = plan_sequence(items, 100, 10, 20, np.random.default_rng(0), background=2, background_share=0.5)
    >>> sum(s.length for s in plan), all(a.label != b.label for a, b in zip(plan, plan[1:]))
    (100, True)
    """
    by_label: dict[int, list[int]] = {}
    for index, (_, label, _) in enumerate(items):
        by_label.setdefault(label, []).append(index)
    actions = sorted(label for label in by_label if label != background)
    if not actions:
        raise LrcnError("stream training needs videos of at least one class that is not the background")
    segments: list[Segment] = []
    filled, previous = 0, None
    while filled < total:
        if (
            background in by_label
            and previous is not None
            and previous != background
            and rng.random() < background_share
        ):
            label = background
        else:
            choices = [label for label in actions if label != previous] or actions
            label = choices[int(rng.integers(len(choices)))]
        item = by_label[label][int(rng.integers(len(by_label[label])))]
        frames, _, views = items[item]
        length = min(frames, int(rng.integers(shortest, longest + 1)), total - filled)
        start = int(rng.integers(0, frames - length + 1))
        segments.append(Segment(item, int(rng.integers(views)), start, length, label))
        filled, previous = filled + length, label
    return segments


def frame_targets(segments: Sequence[Segment], margin_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(label per frame [N] int32, loss weight per frame [N] float32): weight 0 for the first
    `margin_frames` frames of the sequence and after every change of label."""
    labels = np.repeat([s.label for s in segments], [s.length for s in segments]).astype(np.int32)
    weights = np.ones(len(labels), np.float32)
    changes = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    for change in changes:
        weights[change : change + margin_frames] = 0.0
    return labels, weights


def sequence_features(views_per_item: Sequence[Sequence[np.ndarray]], segments: Sequence[Segment]) -> np.ndarray:
    """The segments' feature rows joined, [N, F]."""
    return np.concatenate([views_per_item[s.item][s.view][s.start : s.start + s.length] for s in segments])


def sequence_batch(
    views_per_item,
    labels: Sequence[int],
    count: int,
    frames: int,
    fps: float,
    config: StreamConfig,
    rng: np.random.Generator,
    background: int | None = None,
):
    """`count` sequences of `frames` frames each: features [B, N, F], targets [B, N], weights [B, N]."""
    items = [(len(views[0]), label, len(views)) for views, label in zip(views_per_item, labels)]
    shortest, longest = (max(1, round(s * fps)) for s in config.segment_s)
    margin = round(config.ignore_margin_s * fps)
    xs, ys, ws = [], [], []
    for _ in range(count):
        plan = plan_sequence(items, frames, shortest, longest, rng, background, config.background_share)
        y, w = frame_targets(plan, margin)
        xs.append(sequence_features(views_per_item, plan))
        ys.append(y)
        ws.append(w)
    return np.stack(xs).astype(np.float32), np.stack(ys), np.stack(ws)


def sequence_frames(config: StreamConfig, fps: float, rng: np.random.Generator) -> int:
    """A random sequence length within config.sequence_s, in whole chunks (at least one)."""
    low, high = (max(1, round(s * fps / config.chunk)) for s in config.sequence_s)
    return config.chunk * int(rng.integers(low, high + 1))


# -- Keras --------------------------------------------------------------------------------------


def build_stream_head(spec, feature_size: int):
    """The head as a step function over chunks: ([x [B, K, F], h [B, U], c [B, U]]) -> (per-frame
    probabilities [B, K, C], h, c). The same layers as the clip model's head (Dropout, LSTM,
    Dense softmax), so its weights copy over one to one."""
    import keras
    from keras import layers

    x = keras.Input((None, feature_size))
    h0, c0 = keras.Input((spec.lstm_units,)), keras.Input((spec.lstm_units,))
    dropped = layers.Dropout(spec.feature_dropout)(x)
    lstm = layers.LSTM(spec.lstm_units, dropout=spec.lstm_dropout, return_sequences=True, return_state=True)
    outputs, h, c = lstm(dropped, initial_state=[h0, c0])
    regularizer = keras.regularizers.l2(spec.l2) if spec.l2 else None
    probabilities = layers.Dense(spec.num_classes, activation="softmax", kernel_regularizer=regularizer)(outputs)
    return keras.Model([x, h0, c0], [probabilities, h, c], name="lrcn_stream_head")


def copy_into_clip_model(stream_head, model) -> None:
    """Put the stream head's LSTM and softmax weights into the clip model's (models.architectures)."""
    from keras import layers

    def the(kind, source):
        (layer,) = [candidate for candidate in source.layers if isinstance(candidate, kind)]
        return layer

    the(layers.LSTM, model).set_weights(the(layers.LSTM, stream_head).get_weights())
    model.layers[-1].set_weights(the(layers.Dense, stream_head).get_weights())


def check_init_bundle(bundle_dir: str | Path, spec) -> None:
    """An --init-from bundle must have this model's classes, backbone and LSTM; else one error line."""
    from lrcn.stream.bundle import read_meta

    theirs = read_meta(bundle_dir).spec
    plain = lambda value: tuple(value) if isinstance(value, (list, tuple)) else value  # noqa: E731
    for what in ("classes", "head", "lstm_units", "per_timestep", "backbone", "pooling"):
        if plain(getattr(spec, what)) != plain(getattr(theirs, what)):
            raise LrcnError(
                f"--init-from {bundle_dir}: its {what} ({getattr(theirs, what)}) differs from "
                f"this model's ({getattr(spec, what)})"
            )


def initial_weights(bundle_dir: str | Path, spec) -> tuple[list, list]:
    """(LSTM weights, softmax weights) of an LSTM bundle that fits this model (check_init_bundle),
    to fine-tune on streams."""
    from keras import layers

    from lrcn.models.experiment import load_bundle

    check_init_bundle(bundle_dir, spec)
    model, _ = load_bundle(bundle_dir)
    (lstm,) = [layer for layer in model.layers if isinstance(layer, layers.LSTM)]
    return lstm.get_weights(), model.layers[-1].get_weights()


class StreamTrainer:
    """Truncated backpropagation over sequence batches, and the masked per-frame loss of held-out sequences."""

    def __init__(self, spec, feature_size: int, learning_rate: float, total_steps: int):
        import keras
        import tensorflow as tf

        self.spec = spec
        self.head = build_stream_head(spec, feature_size)
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps), alpha=0.05)
        # Clipped: a sequence runs hundreds of steps, and one exploding chunk would undo the rest.
        self.optimizer = keras.optimizers.Adam(schedule, clipnorm=1.0)
        head, optimizer = self.head, self.optimizer

        def masked(y, w, probabilities):
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            right = tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32), y), tf.float32)
            return tf.reduce_sum(losses * w), tf.reduce_sum(right * w)

        @tf.function(reduce_retracing=True)
        def train_step(x, y, w, h, c):
            with tf.GradientTape() as tape:
                probabilities, h, c = head([x, h, c], training=True)
                loss_sum, right = masked(y, w, probabilities)
                loss = loss_sum / tf.maximum(tf.reduce_sum(w), 1.0) + tf.add_n(head.losses + [tf.constant(0.0)])
            gradients = tape.gradient(loss, head.trainable_variables)
            optimizer.apply_gradients(zip(gradients, head.trainable_variables))
            return h, c, loss_sum, right, tf.reduce_sum(w)

        @tf.function(reduce_retracing=True)
        def eval_step(x, y, w, h, c):
            probabilities, h, c = head([x, h, c], training=False)
            loss_sum, right = masked(y, w, probabilities)
            return h, c, loss_sum, right, tf.reduce_sum(w)

        self._train_step, self._eval_step = train_step, eval_step

    def run(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, chunk: int, train: bool) -> tuple[float, float, float]:
        """One batch of sequences from a zero state, chunk by chunk, the state carried across
        chunks (gradients stop at chunk boundaries); (loss sum, right, weight) over its frames."""
        step = self._train_step if train else self._eval_step
        h = c = np.zeros((len(x), self.spec.lstm_units), np.float32)
        totals = np.zeros(3)
        for start in range(0, x.shape[1], chunk):
            part = slice(start, start + chunk)
            h, c, *sums = step(x[:, part], y[:, part], w[:, part], h, c)
            totals += [float(s) for s in sums]
        return tuple(totals)


# -- training -----------------------------------------------------------------------------------


def train_stream(spec, train_videos, val_videos, out_dir, config, stream: StreamConfig, provenance: dict | None = None):
    """Stream-train the head on cached features, keep the epoch with the best masked validation
    loss (on fixed sequences of the validation videos), and write the bundle to out_dir."""
    import keras
    import tensorflow as tf

    from lrcn.models.architectures import build_model, split_model
    from lrcn.models.frame_cache import FrameCache
    from lrcn.models.train import prepare, save_bundle, save_curves
    from lrcn.stream.bundle import BundleMeta

    if not spec.frozen_backbone:
        raise LrcnError(
            "--stream-training trains the head on cached features: it needs a frozen backbone "
            "(--backbone mobilenet_v2, or --trainable-layers 0)"
        )
    if spec.head != "lstm" or spec.per_timestep:
        raise LrcnError("--stream-training trains the LSTM head (--head lstm, without --per-timestep)")
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    out_dir = Path(out_dir)
    background = background_label(spec.classes, stream.background)
    model = build_model(spec)
    encoder, _ = split_model(model, spec)
    frame_cache = FrameCache(Path(config.cache_dir) / "frames" if config.cache_dir else None, spec.input_size, spec.fps)
    _, batches, val_batches, _ = prepare(spec, config, train_videos, val_videos, frame_cache, encoder)
    train_views, train_labels = zip(*batches.items)
    feature_size = train_views[0][0].shape[-1]
    mean_frames = np.mean(stream.sequence_s) * spec.fps
    frames_per_epoch = config.clips_per_video * spec.clip_length * len(train_views)
    batches_per_epoch = max(1, math.ceil(frames_per_epoch / (config.batch_size * mean_frames)))
    steps = config.epochs * batches_per_epoch * math.ceil(mean_frames / stream.chunk)
    trainer = StreamTrainer(spec, feature_size, config.learning_rate, steps)
    if stream.init_from:
        from keras import layers

        lstm_weights, dense_weights = initial_weights(stream.init_from, spec)
        (lstm,) = [layer for layer in trainer.head.layers if isinstance(layer, layers.LSTM)]
        lstm.set_weights(lstm_weights)
        trainer.head.layers[-1].set_weights(dense_weights)
    validation = None
    if val_batches is not None and val_batches.items:
        val_views, val_labels = zip(*val_batches.items)
        rng = np.random.default_rng([config.seed, 7])
        validation = sequence_batch(
            val_views,
            val_labels,
            config.batch_size,
            sequence_frames(stream, spec.fps, rng),
            spec.fps,
            stream,
            rng,
            background,
        )
    history: dict[str, list[float]] = {}
    initial = {}
    if validation is not None:  # where training starts from, on the same sequences: the baseline to beat
        loss_sum, right, weight = trainer.run(*validation, stream.chunk, train=False)
        initial = {"val_loss": round(loss_sum / max(weight, 1), 5), "val_accuracy": round(right / max(weight, 1), 5)}
    best, best_loss, waited = None, math.inf, 0
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, 11, epoch])
        totals = np.zeros(3)
        for _ in range(batches_per_epoch):
            x, y, w = sequence_batch(
                train_views,
                train_labels,
                config.batch_size,
                sequence_frames(stream, spec.fps, rng),
                spec.fps,
                stream,
                rng,
                background,
            )
            totals += trainer.run(x, y, w, stream.chunk, train=True)
        row = {"loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1)}
        if validation is not None:
            loss_sum, right, weight = trainer.run(*validation, stream.chunk, train=False)
            row |= {"val_loss": loss_sum / max(weight, 1), "val_accuracy": right / max(weight, 1)}
        for key, value in row.items():
            history.setdefault(key, []).append(round(float(value), 5))
        if config.progress:
            scores = " ".join(f"{k} {v:.4f}" for k, v in row.items())
            log.info("stream epoch %d/%d %s", epoch + 1, config.epochs, scores)
        monitored = row.get("val_loss", row["loss"])
        if monitored < best_loss:
            best, best_loss, waited = trainer.head.get_weights(), monitored, 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    trainer.head.set_weights(best)
    copy_into_clip_model(trainer.head, model)
    monitor = "val_loss" if validation is not None else "loss"
    best_epoch = int(np.argmin(history[monitor])) + 1
    meta = BundleMeta(
        spec=spec,
        feature_size=int(encoder.output_shape[-1]),
        training={
            "config": asdict(config) | {"cache_dir": None},
            "stream_training": asdict(stream) | {"batches_per_epoch": batches_per_epoch},
            "train_videos": len(train_views),
            "val_videos": len(val_batches.items) if val_batches else 0,
            "head_only": True,
            "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch,
            "at_best_epoch": {key: values[best_epoch - 1] for key, values in history.items()},
            "initial": initial,
            "seconds": round(time.time() - started, 1),
            "versions": {"keras": keras.__version__, "python": sys.version.split()[0]},
            **(provenance or {}),
        },
    )
    save_bundle(model, meta, out_dir)
    save_curves(history, out_dir / "curves.png")
    return model, meta


def train_stream_and_test(
    spec, train_videos, test_videos, out_dir, config, stream: StreamConfig, provenance: dict | None = None
) -> dict:
    """models.experiment.train_and_test for stream training: the epoch count chosen on a
    group-disjoint validation split of the training groups, then (config.refit) retrained on all
    of them; the bundle evaluated on the isolated test clips. The test report, {} without tests."""
    from lrcn.models.data import group_holdout
    from lrcn.models.experiment import VAL_FRACTION, evaluate_model
    from lrcn.stream.bundle import write_meta

    background_label(spec.classes, stream.background)  # a wrong name fails before any decoding
    if stream.init_from:
        check_init_bundle(stream.init_from, spec)  # so does a bundle that does not fit
    out_dir = Path(out_dir)
    fit_videos, val_videos = group_holdout(train_videos, VAL_FRACTION, config.seed)
    groups = lambda videos: sorted({v.group for v in videos})  # noqa: E731
    provenance = (provenance or {}) | {
        "train_groups": groups(train_videos),
        "val_groups": groups(val_videos),
        "test_groups": groups(test_videos),
    }
    if config.refit and val_videos:
        _, chosen = train_stream(
            spec,
            fit_videos,
            val_videos,
            out_dir / "selection",
            config,
            stream,
            provenance | {"train_groups": groups(fit_videos)},
        )
        provenance["selection"] = {key: chosen.training[key] for key in ("best_epoch", "epochs_run", "seconds")}
        model, meta = train_stream(
            spec, train_videos, [], out_dir, replace(config, epochs=chosen.training["best_epoch"]), stream, provenance
        )
    else:
        model, meta = train_stream(
            spec, fit_videos, val_videos, out_dir, config, stream, provenance | {"train_groups": groups(fit_videos)}
        )
    if not test_videos:
        return {}
    result = evaluate_model(model, spec, test_videos, config, out_dir / "evaluation")
    meta.metrics = {"test": {k: result[k] for k in ("videos", "video_accuracy", "video_correct", "clip_accuracy")}}
    write_meta(out_dir, meta)
    return result
