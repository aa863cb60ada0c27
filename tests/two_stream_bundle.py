"""A tiny two-stream bundle written by hand, no TensorFlow: real ONNX encoders for RGB and flow
(built with the `onnx` package's helper), a NumPy head of the runtime's own head types, and
meta.json; with the same encoders in NumPy, to compute what the bundle must give.

    tiny = TinyTwoStream.write(tmp_path / "bundle", fusion="early")
    tiny.features(images, fields)       # [N, F_rgb + F_flow], as encoder.onnx + encoder.flow.onnx give them

RGB encoder: tanh(frames / 255 flattened @ W); flow encoder: the mean |field - 128| of each
channel (how much moves, in encoded units: 0 for a still) times a fixed matrix whose first two
columns are the identity. So a still's flow features are exactly 0, and a head can learn `idle`
from them (`motion_head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lrcn.stream.bundle import BundleMeta, ModelSpec, write_meta
from lrcn.stream.heads import HEAD_FILE, Head, save_head
from lrcn.stream.heads.late import LateHead
from lrcn.stream.heads.lstm import LstmHead
from lrcn.stream.heads.pool import PoolHead

SIZE = (32, 32)
F_RGB, F_FLOW = 8, 4
FLOW_MIX = np.array([[1, 0, 0.5, -0.5], [0, 1, -0.5, 0.5]], np.float32)
CLASSES = ("bend", "wave", "walk")


def onnx_parts(*names: str) -> tuple:
    """The `onnx` package's parts that build the graphs (a training-side package: the tests that
    build a two-stream bundle skip without it, as on an edge install)."""
    onnx = pytest.importorskip("onnx")
    return tuple(getattr(onnx, name) for name in names)


def rgb_graph(weights: np.ndarray, size=SIZE):
    TensorProto, helper = onnx_parts("TensorProto", "helper")

    pixels = size[0] * size[1] * 3
    constants = {"scale": np.array(1 / 255, np.float32), "flat": np.array([-1, pixels], np.int64), "w": weights}
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "flat"], ["rows"]),
        helper.make_node("MatMul", ["rows", "w"], ["projected"]),
        helper.make_node("Tanh", ["projected"], ["features"]),
    ]
    return _model(nodes, constants, [size[0], size[1], 3], weights.shape[1])


def flow_graph(mix: np.ndarray = FLOW_MIX, size=SIZE, channels: int = 2):
    TensorProto, helper = onnx_parts("TensorProto", "helper")

    constants = {"offset": np.array(128, np.float32), "mix": np.asarray(mix, np.float32)}
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["x", "offset"], ["centred"]),
        helper.make_node("Abs", ["centred"], ["moved"]),
        helper.make_node("ReduceMean", ["moved"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "mix"], ["features"]),
    ]
    return _model(nodes, constants, [size[0], size[1], channels], mix.shape[1])


def _model(nodes, constants, frame_shape, features):
    TensorProto, checker, helper, numpy_helper = onnx_parts("TensorProto", "checker", "helper", "numpy_helper")

    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", *frame_shape])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def save_graph(model, path: Path) -> Path:
    onnx = pytest.importorskip("onnx")

    onnx.save(model, str(path))
    return path


def lstm_head(features: int, classes=CLASSES, units: int = 6, seed: int = 0, per_timestep: bool = False) -> LstmHead:
    rng = np.random.default_rng(seed)

    def weights(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.6

    return LstmHead(
        tuple(classes),
        weights(features, 4 * units),
        weights(units, 4 * units),
        weights(4 * units),
        weights(units, len(classes)),
        weights(len(classes)),
        per_timestep=per_timestep,
    )


def motion_head(classes=("wave", "walk", "idle"), strength: float = 4.0, threshold: float = 2.0) -> PoolHead:
    """A pooling head over [rgb, flow] features that says `wave` when the window's mean flow
    features (mean |dx|, |dy| in encoded units) add up to more than threshold / strength, else
    `idle`: what a model trained with stills learns from the flow stream."""
    features = F_RGB + F_FLOW
    kernel = np.zeros((2 * features, len(classes)), np.float32)
    kernel[[F_RGB, F_RGB + 1], classes.index("wave")] = strength
    bias = np.zeros(len(classes), np.float32)
    bias[classes.index("wave")] = -threshold
    bias[classes.index("idle")] = 1.0
    return PoolHead(tuple(classes), kernel, bias)


@dataclass
class TinyTwoStream:
    path: Path
    rgb_weights: np.ndarray
    head: Head

    @classmethod
    def write(
        cls,
        directory: Path,
        fusion: str = "early",
        head: Head | None = None,
        seed: int = 0,
        clip_length: int = 4,
        fps: float = 10.0,
        modalities=("rgb", "flow"),
    ) -> TinyTwoStream:
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        rgb_weights = (rng.standard_normal((SIZE[0] * SIZE[1] * 3, F_RGB)) * 0.05).astype(np.float32)
        if "rgb" in modalities:
            save_graph(rgb_graph(rgb_weights), directory / "encoder.onnx")
        if "flow" in modalities:
            save_graph(flow_graph(), directory / "encoder.flow.onnx")
        sizes = {"rgb": F_RGB, "flow": F_FLOW}
        sizes = {m: sizes[m] for m in modalities}
        if head is None and fusion == "late":
            head = LateHead.fuse(
                {m: lstm_head(size, seed=seed + i) for i, (m, size) in enumerate(sizes.items())}, weights=(0.4, 0.6)
            )
        head = head or lstm_head(sum(sizes.values()), seed=seed)
        sub = head.heads[0] if isinstance(head, LateHead) else head
        spec = ModelSpec(
            classes=head.classes,
            input_size=SIZE,
            clip_length=clip_length,
            fps=fps,
            head=sub.kind,
            lstm_units=getattr(sub, "units", 6),
            modalities=tuple(modalities),
            fusion=fusion if len(modalities) > 1 else "early",
            fusion_weights=tuple(head.weights) if isinstance(head, LateHead) else None,
        )
        write_meta(
            directory, BundleMeta(spec, sum(sizes.values()), feature_sizes=sizes if len(modalities) > 1 else None)
        )
        save_head(directory / HEAD_FILE, head)
        return cls(directory, rgb_weights, head)

    def features(self, images: np.ndarray, fields: np.ndarray | None, modalities=("rgb", "flow")) -> np.ndarray:
        """What the bundle's encoders give, in NumPy: [N, F_rgb + F_flow] (each of `modalities` present)."""
        parts = []
        if "rgb" in modalities:
            parts.append(np.tanh((np.asarray(images, np.float32) / 255).reshape(len(images), -1) @ self.rgb_weights))
        if "flow" in modalities and fields is not None:
            parts.append(np.abs(np.asarray(fields, np.float32) - 128).mean(axis=(1, 2)) @ FLOW_MIX)
        return np.concatenate(parts, axis=1)
