"""The flow encoder trained on flow: candidate CNNs, each fitted as a per-frame classifier of the
training groups' optical-flow fields, one kept by video accuracy on the validation groups.

A flow field is a low-level input, far from the photographs ImageNet features were learnt on, so
the flow stream's CNN is chosen by evidence among:

    frozen   the flow backbone as it is (ImageNet MobileNetV2 over the rendered field), a softmax probe
             trained on its features: the encoder of before, the baseline
    tuned    ImageNet MobileNetV2, its top layers trained on flow (batch normalisation stays frozen)
    scratch  the small CNN (or --flow-backbone seed/small) from Keras's initialisation, every layer trained

Each candidate learns to name the action of one field: `frames_per_video` random fields of every
training video an epoch, half of them mirrored; the epoch with the most validation fields right is
kept (the probe grows overconfident while it still gains accuracy, so its loss would stop it early).
A validation video's probabilities are the mean over up to VAL_FIELDS of its fields. The chosen
encoder is then frozen and the temporal head trains on its features (models.two_stream), so the
runtime is unchanged: encoder.flow.onnx is whichever CNN won.

>>> FLOW_ENCODERS
('frozen', 'tuned', 'scratch')
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import layers

from lrcn.models.data import Video
from lrcn.models.features import encode_frames
from lrcn.models.modalities import encoder_spec, keras_modality, model_input
from lrcn.stream.bundle import ModelSpec
from lrcn.stream.errors import LrcnError

log = logging.getLogger(__name__)

FLOW_ENCODERS = ("frozen", "tuned", "scratch")
TUNED_TOP_LAYERS = 30  # MobileNetV2's blocks 15-16 and its last 1x1 convolution
VAL_FIELDS = 24
BATCH = 32


@dataclass(frozen=True)
class FlowCandidate:
    name: str
    backbone: str
    trainable_layers: int  # 0: frozen (only the probe trains), -1: every layer, N: the top N
    learning_rate: float  # of the encoder's training (the probe's is PROBE_RATE)
    epochs: int
    patience: int
    frames_per_video: int = 16
    # First a softmax probe on the frozen features, then the encoder with it: on ucf101_9, MobileNetV2's
    # top layers fine-tuned at 3e-4 under a random softmax fell to chance (every field one class), and
    # at 1e-4 under the trained probe from 28% to 14% of validation fields right after one epoch.
    probe_first: bool = True

    @property
    def trained(self) -> bool:
        return self.trainable_layers != 0


PROBE_RATE, PROBE_EPOCHS, PROBE_PATIENCE = 1e-3, 60, 8


def flow_candidates(spec: ModelSpec, names: tuple[str, ...]) -> dict[str, FlowCandidate]:
    """The candidates `names` under `spec`; `tuned` needs MobileNetV2 weights (--weights)."""
    unknown = [name for name in names if name not in FLOW_ENCODERS]
    if unknown:
        raise LrcnError(f"flow encoder {', '.join(unknown)} is not one of {', '.join(FLOW_ENCODERS)}")
    frozen_backbone = spec.flow_backbone or spec.backbone
    scratch_backbone = spec.flow_backbone if spec.flow_backbone in ("seed", "small") else "small"
    table = {
        "frozen": FlowCandidate("frozen", frozen_backbone, 0, 0.0, 0, 0),
        "tuned": FlowCandidate("tuned", "mobilenet_v2", TUNED_TOP_LAYERS, 1e-5, 10, 3),
        "scratch": FlowCandidate("scratch", scratch_backbone, -1, 1e-3, 40, 6, frames_per_video=24, probe_first=False),
    }
    if "tuned" in names and not spec.backbone_weights:
        raise LrcnError("the tuned flow encoder starts from ImageNet MobileNetV2: give --weights")
    return {name: table[name] for name in names}


def candidate_spec(spec: ModelSpec, candidate: FlowCandidate) -> ModelSpec:
    """`spec` with the flow encoder `candidate` (its backbone, and whether it was trained on flow)."""
    return replace(
        spec,
        flow_backbone=None if candidate.backbone == spec.backbone else candidate.backbone,
        flow_trained=candidate.trained,
    )


def read_fields(videos: list[Video], fields_of) -> list[tuple[np.ndarray, int]]:
    """(uint8 [N, H, W, 2] fields, label) of each readable video with at least two sampled frames."""
    out = []
    for video in videos:
        try:
            fields = fields_of(video.path)
        except LrcnError as err:
            log.warning("skipping %s", err)
            continue
        if len(fields) > 1:
            out.append((fields[1:], video.label))  # field 0 of a segment is the zero field by definition
    return out


def draw_epoch(data, frames_per_video: int, rng: np.random.Generator, mirror) -> tuple[np.ndarray, np.ndarray]:
    """`frames_per_video` random fields of every video, half of them mirrored, shuffled."""
    xs, ys = [], []
    for fields, label in data:
        picked = fields[rng.integers(len(fields), size=frames_per_video)]
        flip = rng.random(frames_per_video) < 0.5
        if flip.any():
            picked = picked.copy()
            picked[flip] = mirror(picked[flip])
        xs.append(picked)
        ys.append(np.full(frames_per_video, label))
    order = rng.permutation(sum(len(y) for y in ys))
    return np.concatenate(xs)[order], np.concatenate(ys)[order]


def validation_fields(data) -> list[tuple[np.ndarray, int]]:
    """Up to VAL_FIELDS evenly spaced fields of each validation video."""
    out = []
    for fields, label in data:
        index = np.unique(np.linspace(0, len(fields) - 1, min(VAL_FIELDS, len(fields))).round().astype(int))
        out.append((fields[index], label))
    return out


class FieldClassifier:
    """A candidate's encoder with a softmax probe over the action classes, trained on single fields."""

    def __init__(self, spec: ModelSpec, candidate: FlowCandidate, num_classes: int):
        from lrcn.models.joint import build_encoder

        self.candidate = candidate
        self.spec = candidate_spec(replace(spec, trainable_layers=candidate.trainable_layers), candidate)
        self.encoder = build_encoder(self.spec, "flow")
        self.flow_spec = encoder_spec(self.spec, "flow")
        size = int(self.encoder.output_shape[-1])
        # The probe standardises the features it is given (statistics of the training fields', fixed),
        # so one learning rate suits any backbone.
        self.normalise = layers.Normalization(name="standardise")
        self.normalise.build((None, size))
        self.probe = keras.Sequential(
            [
                keras.Input((size,)),
                self.normalise,
                layers.Dropout(0.5),
                layers.Dense(num_classes, activation="softmax"),
            ],
            name="flow_probe",
        )

    def to_input(self, fields: np.ndarray) -> np.ndarray:
        return model_input("flow", fields, self.flow_spec)

    def features(self, fields: np.ndarray) -> np.ndarray:
        return encode_frames(self.encoder, fields, self.flow_spec, self.to_input)

    def fit(self, train, val, seed: int, progress: bool, probed: FieldClassifier | None = None) -> dict:
        """The probe on frozen features (probe_first; taken from `probed`, a fitted frozen candidate of the same
        backbone, when given), then (trained candidates) the encoder and probe together; the weights with the
        most validation fields right over both phases are kept. Its record."""
        candidate, rng = self.candidate, np.random.default_rng([seed, 2])
        mirror = keras_modality("flow").mirror
        val = validation_fields(val)
        history, started = [], time.time()
        best = {"score": (-1.0, 0.0), "weights": None}
        if candidate.probe_first and probed is not None:
            self.probe.set_weights(probed.probe.get_weights())
            history += probed.probe_history
            best.update(score=probed.probe_score, weights=(self.encoder.get_weights(), self.probe.get_weights()))
        elif candidate.probe_first:
            x, y = draw_epoch(train, 2 * candidate.frames_per_video, rng, mirror)
            train_features = self.features(x)
            self.normalise.adapt(train_features)
            val_features = [(self.features(fields), label) for fields, label in val]
            self.run_phase(
                "probe",
                self.probe,
                PROBE_RATE,
                PROBE_EPOCHS,
                PROBE_PATIENCE,
                lambda: (train_features, y),
                val_features,
                history,
                best,
                progress,
            )
            self.probe.set_weights(best["weights"][1])
            self.probe_history, self.probe_score = list(history), best["score"]
        else:
            x, _ = draw_epoch(train, 2, rng, mirror)
            self.normalise.adapt(self.features(x))
        if candidate.trained:
            network = keras.Sequential([self.encoder, self.probe])
            val_inputs = [(self.to_input(fields), label) for fields, label in val]

            def draw():
                x, y = draw_epoch(train, candidate.frames_per_video, rng, mirror)
                return self.to_input(x), y

            self.run_phase(
                "encoder",
                network,
                candidate.learning_rate,
                candidate.epochs,
                candidate.patience,
                draw,
                val_inputs,
                history,
                best,
                progress,
            )
        self.encoder.set_weights(best["weights"][0])
        self.probe.set_weights(best["weights"][1])
        self.encoder.trainable = False
        kept = max(history, key=lambda h: (h["val_field_accuracy"], -h["val_loss"]))
        return {
            "backbone": candidate.backbone,
            "trainable_layers": candidate.trainable_layers,
            "epochs_run": len(history),
            "kept": {k: kept[k] for k in ("phase", "epoch")},
            "val_loss": kept["val_loss"],
            "val_field_accuracy": kept["val_field_accuracy"],
            "val_video_accuracy": kept["val_video_accuracy"],
            "seconds": round(time.time() - started, 1),
            "history": history,
        }

    def run_phase(self, phase, network, rate, epochs, patience, draw, val_inputs, history, best, progress) -> None:
        network.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy")
        waited, phase_best = 0, (-1.0, 0.0)  # patience counts within the phase: fine-tuning may start below the probe
        for epoch in range(epochs):
            x, y = draw()
            fit = network.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
            scores = self.score(network, val_inputs)
            history.append(
                {"phase": phase, "epoch": epoch + 1, "loss": round(float(fit.history["loss"][-1]), 4), **scores}
            )
            if progress:
                log.info("flow encoder %s %s epoch %d: %s", self.candidate.name, phase, epoch + 1, scores)
            score = (scores["val_field_accuracy"], -scores["val_loss"])
            if score > best["score"]:
                best.update(score=score, weights=(self.encoder.get_weights(), self.probe.get_weights()))
            if score > phase_best:
                phase_best, waited = score, 0
            else:
                waited += 1
                if waited >= patience:
                    return

    @staticmethod
    def score(network, val_inputs) -> dict:
        losses, field_right, video_right = [], [], []
        for x, label in val_inputs:
            probs = np.asarray(network.predict_on_batch(x))
            losses.append(-np.log(np.maximum(probs[:, label], 1e-7)))
            field_right.append(probs.argmax(axis=1) == label)
            video_right.append(probs.mean(axis=0).argmax() == label)
        return {
            "val_loss": round(float(np.concatenate(losses).mean()), 4),
            "val_field_accuracy": round(float(np.concatenate(field_right).mean()), 4),
            "val_video_accuracy": round(float(np.mean(video_right)), 4),
        }


def choose_flow_encoder(
    spec: ModelSpec,
    names: tuple[str, ...],
    fit_videos: list[Video],
    val_videos: list[Video],
    fields_of,
    seed: int,
    progress: bool = False,
) -> tuple[ModelSpec, object, dict]:
    """Fit each candidate on `fit_videos`, keep the best by validation video accuracy (ties: field accuracy,
    then the earlier in FLOW_ENCODERS). (the spec with its flow encoder, the frozen Keras encoder, the record)."""
    if not val_videos:
        raise LrcnError("the flow encoder is chosen on validation groups: none left")
    num_classes = 1 + max(v.label for v in fit_videos + val_videos)
    train, val = read_fields(fit_videos, fields_of), read_fields(val_videos, fields_of)
    if not train or not val:
        raise LrcnError("no readable video to train the flow encoder on")
    candidates = flow_candidates(spec, names)
    fitted, records = {}, {}
    for name, candidate in candidates.items():
        keras.utils.set_random_seed(seed)
        classifier = FieldClassifier(spec, candidate, num_classes)
        # the tuned CNN starts where the frozen one's probe ended (the same ImageNet encoder, the same probe)
        probed = (
            fitted.get("frozen")
            if fitted.get("frozen") and candidates["frozen"].backbone == candidate.backbone
            else None
        )
        records[name] = classifier.fit(train, val, seed, progress, probed)
        fitted[name] = classifier
    order = list(FLOW_ENCODERS)
    chosen = max(
        records, key=lambda n: (records[n]["val_video_accuracy"], records[n]["val_field_accuracy"], -order.index(n))
    )
    summary = ", ".join(f"{n}: {r['val_video_accuracy']:.3f}/{r['val_field_accuracy']:.3f}" for n, r in records.items())
    log.info("flow encoder %s chosen on validation groups (%s video/field accuracy)", chosen, summary)
    classifier = fitted[chosen]
    return (
        candidate_spec(spec, candidates[chosen]),
        classifier.encoder,
        {"chosen": chosen, "candidates": records, "train_videos": len(train), "val_videos": len(val)},
    )
