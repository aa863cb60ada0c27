"""The Keras model of a bundle with modalities (appearance, motion): one frozen encoder per modality,
their features joined in spec.modalities order, then the temporal head (early fusion), or one head per
modality and the weighted mean of their probabilities (late fusion, the LRCN paper's).

    inputs {"rgb": [B, T, H, W, 3], "flow": [B, T, H, W, 2]} (models.modalities.model_inputs)
      -> TimeDistributed(encoder_<m>) per modality -> [B, T, F_m]
      early: concatenate -> head                        late: head_<m> per modality -> WeightedMean

The RGB-only model of every earlier bundle stays the Sequential of models.architectures; a model is
joint when it is not a Sequential (`is_joint`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from lrcn.models.architectures import frame_layers, temporal_layers
from lrcn.models.modalities import encoder_spec, keras_modality
from lrcn.stream.bundle import ModelSpec
from lrcn.stream.errors import LrcnError

HEAD = "head"


def is_joint(model) -> bool:
    return not isinstance(model, keras.Sequential)


def build_encoder(spec: ModelSpec, name: str) -> keras.Sequential:
    """Modality `name`'s per-frame encoder: its float model input [N, H, W, C] -> [N, F]."""
    keras_side = keras_modality(name)
    return keras.Sequential(
        [
            keras.Input((*spec.input_size, keras_side.channels)),
            *keras_side.input_layers(spec),
            *frame_layers(encoder_spec(spec, name)),
        ],
        name=f"encoder_{name}",
    )


def build_encoders(spec: ModelSpec) -> dict[str, keras.Sequential]:
    return {name: build_encoder(spec, name) for name in spec.modalities}


def head_name(modality: str | None = None) -> str:
    return f"{HEAD}_{modality}" if modality else HEAD


def build_temporal_head(spec: ModelSpec, feature_size: int, name: str = HEAD) -> keras.Sequential:
    return keras.Sequential([keras.Input((spec.clip_length, feature_size)), *temporal_layers(spec)], name=name)


@keras.saving.register_keras_serializable(package="lrcn")
class WeightedMean(layers.Layer):
    """Late fusion: sum_m weights[m] * probabilities_m."""

    def __init__(self, weights: list[float], **kwargs):
        super().__init__(**kwargs)
        self.fusion_weights = [float(w) for w in weights]

    def call(self, probabilities):
        return sum(np.float32(w) * p for w, p in zip(self.fusion_weights, probabilities))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return super().get_config() | {"weights": self.fusion_weights}


def model_input_layers(spec: ModelSpec) -> dict[str, keras.KerasTensor]:
    return {
        name: keras.Input((spec.clip_length, *spec.input_size, keras_modality(name).channels), name=name)
        for name in spec.modalities
    }


def per_frame_features(spec: ModelSpec, encoders, inputs) -> list:
    return [layers.TimeDistributed(encoders[name], name=f"frames_{name}")(inputs[name]) for name in spec.modalities]


def assemble_early(spec: ModelSpec, encoders, head: keras.Model) -> keras.Model:
    inputs = model_input_layers(spec)
    features = per_frame_features(spec, encoders, inputs)
    joined = features[0] if len(features) == 1 else layers.Concatenate(name="joined")(features)
    return keras.Model(inputs, head(joined), name="lrcn_joint")


def assemble_late(spec: ModelSpec, encoders, heads: dict[str, keras.Model]) -> keras.Model:
    if spec.fusion_weights is None:
        raise LrcnError("late fusion needs its weights")
    inputs = model_input_layers(spec)
    features = per_frame_features(spec, encoders, inputs)
    probabilities = [heads[name](f) for name, f in zip(spec.modalities, features)]
    return keras.Model(inputs, WeightedMean(list(spec.fusion_weights), name="fusion")(probabilities), name="lrcn_joint")


def encoders_of(model: keras.Model, spec: ModelSpec) -> dict[str, keras.Model]:
    """The per-frame encoders of a joint model, by modality."""
    return {name: model.get_layer(f"frames_{name}").layer for name in spec.modalities}


def heads_of(model: keras.Model, spec: ModelSpec) -> dict[str | None, keras.Model]:
    """{None: the head} (early fusion) or {modality: its head} (late)."""
    if spec.fusion == "late":
        return {name: model.get_layer(head_name(name)) for name in spec.modalities}
    return {None: model.get_layer(HEAD)}


def feature_slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Where each modality's features lie in the joined vector."""
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


def probabilities_on_features(
    model: keras.Model,
    spec: ModelSpec,
    sizes: dict[str, int],
    windows: np.ndarray,
) -> np.ndarray:
    """The joint model's output on windows of joined features [W, T, sum F]: [W, C] (or [W, T, C])."""
    heads = heads_of(model, spec)
    if spec.fusion != "late":
        return np.asarray(heads[None].predict_on_batch(windows))
    slices = feature_slices(sizes)
    return sum(
        np.float32(w) * np.asarray(heads[name].predict_on_batch(windows[..., slices[name]]))
        for name, w in zip(spec.modalities, spec.fusion_weights)
    )


def check_joint_model(model, spec: ModelSpec, path) -> None:
    """A joint model.keras that does not take meta.json's inputs is one LrcnError line."""
    shapes = {tensor.name: tuple(tensor.shape) for tensor in model.inputs}
    expected = {
        name: (None, spec.clip_length, *spec.input_size, keras_modality(name).channels) for name in spec.modalities
    }
    if shapes != expected:
        raise LrcnError(f"{path}: inputs {shapes} do not match meta.json {expected}")
    if model.output_shape[-1] != spec.num_classes:
        raise LrcnError(f"{path}: {model.output_shape[-1]} outputs but meta.json lists {spec.num_classes} classes")
