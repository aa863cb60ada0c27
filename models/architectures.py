"""Keras builders for the LRCN and its variants, from a plain-data ModelSpec.

Every model is the same three-part shape: per-frame layers wrapped in TimeDistributed, then
the temporal head. `split_model` cuts a built or loaded model into the per-frame encoder and
the head; the runtime runs them separately so each frame is encoded once.

>>> model = build_model(ModelSpec(classes=("a", "b", "c")))     # doctest: +SKIP
>>> model.output_shape                                         # doctest: +SKIP
(None, 3)
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from lrcn.stream.bundle import ModelSpec
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import Head, head_type
from lrcn.stream.registry import Registry

MOBILENET_FEATURES = 1280


def seed_frame_layers() -> list[layers.Layer]:
    """The seed's per-frame CNN, exactly as the user wrote it.

    Conv 32 7x7/2 same, Conv 32 3x3 he_normal (Keras's default 'valid' padding: the seed
    names no padding for it), maxpool, then 64, 64, maxpool, 128, 128, maxpool, 256, 256,
    maxpool, all 3x3 same relu, maxpools 2x2 stride 2, then Flatten.
    """

    def conv(filters, **kwargs):
        return layers.Conv2D(filters, (3, 3), padding="same", activation="relu", **kwargs)

    def pool():
        return layers.MaxPooling2D((2, 2), strides=(2, 2))

    # fmt: off
    return [
        layers.Conv2D(32, (7, 7), strides=(2, 2), padding="same", activation="relu"),
        layers.Conv2D(32, (3, 3), kernel_initializer="he_normal", activation="relu"),
        pool(),
        conv(64), conv(64), pool(),
        conv(128), conv(128), pool(),
        conv(256), conv(256), pool(),
        layers.Flatten(),
    ]
    # fmt: on


def small_frame_layers() -> list[layers.Layer]:
    """A light CNN for small inputs and fast training: strided convolutions keep an
    (H/8, W/8) map, so where things are survives into the features and the LSTM can follow
    motion. About 7 MFLOPs per 64x64 frame, against the seed's 90."""
    return [
        layers.Conv2D(16, (5, 5), strides=(2, 2), padding="same", activation="relu"),
        layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same", activation="relu"),
        layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same", activation="relu"),
        layers.Conv2D(32, (1, 1), activation="relu"),
        layers.Flatten(),
    ]


def mobilenet_v2(spec: ModelSpec) -> keras.Model:
    """ImageNet MobileNetV2 (alpha 1.0) with global average pooling: one 1280-d vector per frame.

    Weights come from a file path or "imagenet" (a download; never used by the tests).
    """
    weights = spec.backbone_weights
    try:
        backbone = keras.applications.MobileNetV2(
            alpha=1.0,
            include_top=False,
            pooling="avg" if spec.pooling == "avg" else None,
            weights=weights,
            input_shape=(*spec.input_size, 3),
        )
    except (OSError, ValueError) as err:
        raise LrcnError(f"cannot load MobileNetV2 weights {weights!r}: {str(err).splitlines()[0]}") from None
    set_trainable_layers(backbone, spec.trainable_layers)
    return backbone


def set_trainable_layers(backbone: keras.Model, count: int) -> None:
    """Leave the top `count` layers trainable (-1: all, 0: none).

    Batch normalisation stays frozen when fine-tuning: batches of a few clips from one
    video would ruin ImageNet's running statistics.
    """
    if count < 0:
        backbone.trainable = True
        return
    backbone.trainable = count > 0
    for index, layer in enumerate(backbone.layers):
        trainable = index >= len(backbone.layers) - count
        layer.trainable = trainable and not isinstance(layer, layers.BatchNormalization)


def frame_layers(spec: ModelSpec) -> list[layers.Layer]:
    if spec.backbone == "seed":
        return seed_frame_layers()
    if spec.backbone == "small":
        return small_frame_layers()
    return [mobilenet_v2(spec)] + ([layers.Flatten()] if spec.pooling == "flatten" else [])


@keras.saving.register_keras_serializable(package="lrcn")
class TemporalPooling(layers.Layer):
    """[B, T, F] -> [B, 2F]: each feature's mean and maximum over the window, standardised with
    fixed statistics of the training windows (`set_statistics`; identity until then).

    The statistics are weights rather than a Normalization layer so that they travel with
    the model (and with `copy_head_weights`) and export folds them into the softmax layer.
    """

    def build(self, input_shape):
        size = 2 * int(input_shape[-1])
        self.center = self.add_weight(shape=(size,), initializer="zeros", trainable=False, name="center")
        self.inverse_scale = self.add_weight(shape=(size,), initializer="ones", trainable=False, name="inverse_scale")

    @staticmethod
    def pool(windows):
        return keras.ops.concatenate([keras.ops.mean(windows, axis=1), keras.ops.max(windows, axis=1)], axis=-1)

    def call(self, inputs):
        return (self.pool(inputs) - self.center) * self.inverse_scale

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def set_statistics(self, pooled: np.ndarray) -> None:
        """Standardise with these pooled vectors [N, 2F] (`pool` of real training windows)."""
        self.center.assign(pooled.mean(axis=0))
        # A feature that (almost) never varies, such as a dead ReLU, keeps scale 1: dividing by
        # its tiny spread would multiply any later activation by a thousand.
        spread = pooled.std(axis=0)
        self.inverse_scale.assign(np.where(spread > 1e-3, 1.0 / np.maximum(spread, 1e-3), 1.0))


# -- the Keras side of each head type (its NumPy side, lrcn.stream.heads, imports no TensorFlow)


class KerasHead:
    """A head type's Keras layers over [B, T, F] features, ending in `softmax` (the Dense softmax
    layer with the spec's L2 penalty), and the NumPy head (lrcn.stream.heads) holding the weights
    of the trained layers (behind an Input; Dropout is identity at inference)."""

    @staticmethod
    def layers(spec: ModelSpec, softmax: layers.Layer) -> list[layers.Layer]:
        raise NotImplementedError

    @staticmethod
    def export(head_model: keras.Model, spec: ModelSpec) -> Head:
        raise NotImplementedError


KERAS_HEADS: Registry[type[KerasHead]] = Registry("Keras head", built_in=())


def softmax_weights(head_model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of a Keras head's last layer, its softmax (wrapped in TimeDistributed or not)."""
    layer = head_model.layers[-1]
    kernel, bias = getattr(layer, "layer", layer).get_weights()
    return kernel, bias


@KERAS_HEADS.register("lstm")
class LstmLayers(KerasHead):
    @staticmethod
    def layers(spec, softmax):
        """Dropout, LSTM, then the softmax on the last step or (per-timestep) on every step."""
        lstm = layers.LSTM(spec.lstm_units, dropout=spec.lstm_dropout, return_sequences=spec.per_timestep)
        return [
            layers.Dropout(spec.feature_dropout),
            lstm,
            layers.TimeDistributed(softmax) if spec.per_timestep else softmax,
        ]

    @staticmethod
    def export(head_model, spec):
        (lstm,) = [layer for layer in head_model.layers if isinstance(layer, layers.LSTM)]
        if (lstm.activation.__name__, lstm.recurrent_activation.__name__) != ("tanh", "sigmoid") or not lstm.use_bias:
            raise LrcnError(f"LSTM {lstm.name}: only tanh/sigmoid with bias is exported")
        kernel, recurrent_kernel, bias = lstm.get_weights()
        return head_type(spec.head)(
            spec.classes, kernel, recurrent_kernel, bias, *softmax_weights(head_model), spec.per_timestep
        )


@KERAS_HEADS.register("single_frame")
class FrameLayers(KerasHead):
    @staticmethod
    def layers(spec, softmax):
        """Dropout, then the softmax on every frame."""
        return [layers.Dropout(spec.feature_dropout), layers.TimeDistributed(softmax)]

    @staticmethod
    def export(head_model, spec):
        return head_type(spec.head)(spec.classes, *softmax_weights(head_model))


@KERAS_HEADS.register("pool")
class PoolLayers(KerasHead):
    @staticmethod
    def layers(spec, softmax):
        """Standardised mean and max over time, dropout, softmax."""
        return [TemporalPooling(), layers.Dropout(spec.feature_dropout), softmax]

    @staticmethod
    def export(head_model, spec):
        dense_kernel, dense_bias = softmax_weights(head_model)
        # (pooled - center) * inverse_scale @ W + b  ==  pooled @ (inverse_scale * W) + (b - (center * inverse_scale) @ W)
        (pooling,) = [layer for layer in head_model.layers if isinstance(layer, TemporalPooling)]
        center, inverse_scale = (np.asarray(w, np.float64) for w in pooling.get_weights())
        kernel = np.asarray(dense_kernel, np.float64)
        return head_type(spec.head)(
            spec.classes,
            (inverse_scale[:, None] * kernel).astype(np.float32),
            (dense_bias - (center * inverse_scale) @ kernel).astype(np.float32),
        )


def temporal_layers(spec: ModelSpec) -> list[layers.Layer]:
    """The layers of the spec's head type over [B, T, F] features, ending in the softmax layer,
    with the spec's L2 penalty on its kernel."""
    regularizer = keras.regularizers.l2(spec.l2) if spec.l2 else None
    softmax = layers.Dense(spec.num_classes, activation="softmax", kernel_regularizer=regularizer)
    return KERAS_HEADS.get(spec.head).layers(spec, softmax)


def build_model(spec: ModelSpec) -> keras.Sequential:
    """The full clip model: [batch, T, H, W, 3] floats (already preprocessed) -> class probabilities.

    Output [batch, classes], or [batch, T, classes] when spec.outputs_every_step.
    """
    per_frame = [layers.TimeDistributed(layer) for layer in frame_layers(spec)]
    return keras.Sequential(
        [keras.Input((spec.clip_length, *spec.input_size, 3)), *per_frame, *temporal_layers(spec)],
        name=f"lrcn_{spec.backbone}",
    )


def build_head(spec: ModelSpec, feature_size: int) -> keras.Sequential:
    """The temporal head alone, over precomputed features [batch, T, feature_size]."""
    return keras.Sequential([keras.Input((spec.clip_length, feature_size)), *temporal_layers(spec)], name="lrcn_head")


def feature_size(spec: ModelSpec) -> int:
    if spec.backbone == "mobilenet_v2":
        if spec.pooling == "avg":
            return MOBILENET_FEATURES
        height, width = (math.ceil(side / 32) for side in spec.input_size)
        return height * width * MOBILENET_FEATURES
    encoder = keras.Sequential([keras.Input((*spec.input_size, 3)), *frame_layers(spec)])
    return int(encoder.output_shape[-1])


def split_model(model: keras.Model, spec: ModelSpec) -> tuple[keras.Sequential, keras.Sequential]:
    """(encoder, head) sharing the model's own layers and weights.

    encoder: [N, H, W, 3] preprocessed frames -> [N, F]; head: [B, T, F] -> probabilities.
    """
    count = 0
    while (
        count < len(model.layers)
        and isinstance(model.layers[count], layers.TimeDistributed)
        and not isinstance(model.layers[count].layer, layers.Dense)
    ):
        count += 1
    if count == 0:
        raise LrcnError(f"model {model.name!r} does not start with per-frame layers")
    encoder = keras.Sequential(
        [keras.Input((*spec.input_size, 3)), *[layer.layer for layer in model.layers[:count]]], name="encoder"
    )
    features = int(encoder.output_shape[-1])
    head = keras.Sequential([keras.Input((spec.clip_length, features)), *model.layers[count:]], name="head")
    return encoder, head


def copy_head_weights(trained_head: keras.Model, model: keras.Model) -> None:
    """Put a head trained on cached features into the full model's temporal layers."""
    head_layers = trained_head.layers
    for source, target in zip(head_layers, model.layers[len(model.layers) - len(head_layers) :]):
        target.set_weights(source.get_weights())


def scale_to_unit_variance(encoder: keras.Model, frames, passes: int = 2) -> None:
    """Rescale each conv kernel so its output has unit variance on real frames (LSUV init,
    Mishkin & Matas 2016).

    The seed has eight ReLU convolutions and no normalisation: from Keras's default
    initialisation its features differ between frames by ~1e-3, so the LSTM sees a constant
    and training sits at chance for hundreds of steps. Same layers, better starting weights.
    """
    x = keras.ops.convert_to_tensor(frames)
    for _ in range(passes):
        out = x
        for layer in encoder.layers:
            out = layer(out)
            if isinstance(layer, layers.Conv2D):
                std = float(keras.ops.std(out))
                if std > 1e-8:
                    kernel, bias = layer.get_weights()
                    layer.set_weights([kernel / std, bias / std])
                    out = out / std
