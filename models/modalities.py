"""The Keras side of each modality (stream.modalities), one entry each in a registry: how a video's
inputs are read on the model's grid, what the model takes for them, which CNN encodes them, and what
a still scene looks like to it.

A model input is float32: RGB frames scaled and offset as the backbone expects (as always); a flow
field cast to float, the rest (`flow_pixels`: the 3-channel image an ImageNet CNN takes, then the
backbone's scale and offset) being the flow encoder's first layer, so training, evaluation and the
exported ONNX graph run the very same operations.

>>> keras_modality("flow").channels
2
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
from keras import layers

from lrcn.stream.bundle import ModelSpec
from lrcn.stream.flow import FLOW_OFFSET, flow_encoding, zero_field
from lrcn.stream.modalities import modality
from lrcn.stream.registry import Registry


def render_flow(fields, scale: float, offset: float):
    """[..., 2] fields (uint8 values, as float or uint8) -> [..., 3] float32: (x0, x1, min(2 |x - 128|, 255)),
    each channel * scale + offset. The third channel is the displacement's length, so a CNN that
    knows edges and blobs sees where things move whatever the direction."""
    x = keras.ops.cast(fields, "float32")
    dx, dy = x[..., 0:1] - FLOW_OFFSET, x[..., 1:2] - FLOW_OFFSET
    length = keras.ops.minimum(2.0 * keras.ops.sqrt(dx * dx + dy * dy), 255.0)
    image = keras.ops.concatenate([x[..., 0:1], x[..., 1:2], length], axis=-1)
    return image * np.float32(scale) + np.float32(offset)


def flow_pixels(fields, spec: ModelSpec):
    """The flow encoder's CNN input of `fields` under `spec` (its flow backbone's scale and offset)."""
    return render_flow(fields, *encoder_spec(spec, "flow").preprocessing)


@keras.saving.register_keras_serializable(package="lrcn")
class FlowPixels(layers.Layer):
    """render_flow as the flow encoder's first layer: [N, H, W, 2] float fields -> [N, H, W, 3]."""

    def __init__(self, scale: float, offset: float, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def call(self, fields):
        return render_flow(fields, self.scale, self.offset)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return super().get_config() | {"scale": self.scale, "offset": self.offset}


@dataclass(frozen=True)
class KerasModality:
    name: str
    channels: int
    # The CNN that encodes this modality under a spec (one of stream.bundle.BACKBONES).
    backbone: Callable[[ModelSpec], str]
    # uint8 [..., H, W, C] -> the model's float32 input (numpy in, numpy out; TF tensors in the export graph)
    to_model_input: Callable[[object, ModelSpec], object]
    # Layers from the model input to what the CNN takes.
    input_layers: Callable[[ModelSpec], list]
    # (frame cache, video path) -> uint8 [N, H, W, C] on the model's grid (models.frame_cache.FrameCache)
    read_cached: Callable[[object, Path], np.ndarray]
    # (video path, spec) -> the same without a cache
    read_file: Callable[[Path, ModelSpec], np.ndarray]
    # The input when a picture (uint8 [H, W, 3]) is held still: the frame itself, or no motion.
    still: Callable[[np.ndarray], np.ndarray]
    # What besides the CNN decides this modality's features (so cached features never mix).
    cache_identity: Callable[[ModelSpec], tuple]
    # Whether the spec's encoder of this modality was trained on it by this project (its weights are the bundle's).
    trained: Callable[[ModelSpec], bool] = lambda spec: False

    @property
    def mirror(self):
        return modality(self.name).mirror


KERAS_MODALITIES: Registry[KerasModality] = Registry("modality", built_in=())


def keras_modality(name: str) -> KerasModality:
    modality(name)  # the one-line error naming the known modalities
    return KERAS_MODALITIES.get(name)


def encoder_spec(spec: ModelSpec, name: str) -> ModelSpec:
    """The one-modality spec of `name`'s encoder: its backbone and that backbone's preprocessing."""
    return replace(
        spec,
        backbone=keras_modality(name).backbone(spec),
        modalities=(name,),
        fusion="early",
        fusion_weights=None,
        flow_backbone=None,
        flow_trained=False,
    )


def _read_frames(path, spec):
    from lrcn.stream.video import read_frames

    return read_frames(path, spec.input_size, spec.fps)


def _read_fields(path, spec):
    from lrcn.stream.video import read_motion

    return read_motion(path, spec.input_size, spec.fps)[0]


KERAS_MODALITIES.add(
    "rgb",
    KerasModality(
        name="rgb",
        channels=3,
        backbone=lambda spec: spec.backbone,
        to_model_input=lambda x, spec: (
            np.float32(spec.preprocessing[0]) * keras.ops.cast(x, "float32") + np.float32(spec.preprocessing[1])
        ),
        input_layers=lambda spec: [],
        read_cached=lambda cache, path: cache.frames(path),
        read_file=_read_frames,
        still=lambda image: image,
        cache_identity=lambda spec: (),
    ),
)

KERAS_MODALITIES.add(
    "flow",
    KerasModality(
        name="flow",
        channels=2,
        backbone=lambda spec: spec.flow_backbone or spec.backbone,
        to_model_input=lambda x, spec: keras.ops.cast(x, "float32"),
        input_layers=lambda spec: [FlowPixels(*encoder_spec(spec, "flow").preprocessing, name="flow_pixels")],
        read_cached=lambda cache, path: cache.motion(path)[0],
        read_file=_read_fields,
        still=lambda image: zero_field(image.shape[:2]),
        cache_identity=lambda spec: ("flow", tuple(sorted(flow_encoding(spec.input_size).items())), "render-v1"),
        trained=lambda spec: spec.flow_trained,
    ),
)


def model_input(name: str, x, spec: ModelSpec) -> np.ndarray:
    """The float32 model input of modality `name`'s uint8 inputs `x` (any leading axes)."""
    return np.asarray(keras_modality(name).to_model_input(x, spec), np.float32)


def model_inputs(spec: ModelSpec, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{modality: float32 model input} of {modality: uint8 [B, T, H, W, C] (or [T, ...])}: what a joint
    model.keras takes (add the batch axis yourself for [T, ...])."""
    return {name: model_input(name, inputs[name], spec) for name in spec.modalities}
