"""The model bundle on disk: what training writes and the runtime loads.

    bundle/
      meta.json      format version, the ModelSpec, preprocessing, feature size, provenance, metrics
      model.keras    the full Keras model (training side only)
      encoder.onnx   per-frame CNN, uint8 NHWC in (added by `lrcn export`)
      engines/       TensorRT engine cache

This module reads and writes meta.json with the standard library; the head types a ModelSpec
accepts are `stream.heads`'s registry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import head_names, head_type

FORMAT_VERSION = 1
BACKBONES = ("seed", "small", "mobilenet_v2")
HEADS = tuple(head_names())   # the head types a ModelSpec accepts (those registered by now)


@dataclass(frozen=True)
class ModelSpec:
    """An LRCN as plain data. `models.architectures.build_model(spec)` turns it into Keras.

    >>> ModelSpec(classes=("walk", "run")).preprocessing
    (0.00392156862745098, 0.0)
    """
    classes: tuple[str, ...]
    backbone: str = "seed"
    input_size: tuple[int, int] = (112, 112)
    clip_length: int = 16
    fps: float = 10.0
    head: str = "lstm"
    lstm_units: int = 512
    per_timestep: bool = False
    feature_dropout: float = 0.7
    lstm_dropout: float = 0.5
    l2: float = 0.0                   # L2 penalty on the softmax layer's kernel
    backbone_weights: str | None = None
    # mobilenet_v2 only: "avg" pools each frame to one vector; "flatten" keeps the spatial
    # map, so where things are (and so left/right motion) reaches the LSTM.
    pooling: str = "avg"
    # Backbone layers left trainable, counted from the top: -1 all, 0 frozen.
    trainable_layers: int = -1

    def __post_init__(self):
        problems = []
        if len(self.classes) < 2:
            problems.append(f"need at least 2 classes, got {len(self.classes)}")
        if len(set(self.classes)) != len(self.classes):
            problems.append("class names repeat")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        heads = head_names()
        if self.head not in heads:
            problems.append(f"head {self.head!r} is not one of {', '.join(heads)}")
        elif self.per_timestep and not head_type(self.head).per_timestep_variant:
            variants = [name for name in heads if head_type(name).per_timestep_variant]
            problems.append(f"per-timestep training needs the {' or '.join(variants)} head, not {self.head!r}")
        if self.pooling not in ("avg", "flatten"):
            problems.append(f"pooling {self.pooling!r} is not avg or flatten")
        if min(self.input_size) < 32:
            problems.append(f"input size {self.input_size} is below 32 pixels")
        if not 0 <= self.l2 < 10:
            problems.append(f"l2 {self.l2!r} is not in [0, 10)")
        if self.clip_length < 1 or self.fps <= 0:
            problems.append("clip length and fps must be positive")
        if problems:
            raise LrcnError("bad model spec: " + "; ".join(problems))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def frozen_backbone(self) -> bool:
        return self.trainable_layers == 0

    @property
    def outputs_every_step(self) -> bool:
        """True when the model emits a prediction per frame, averaged at test time."""
        return head_type(self.head).outputs_every_step(self)

    @property
    def preprocessing(self) -> tuple[float, float]:
        """(scale, offset): the network sees uint8 RGB * scale + offset."""
        return (1 / 255, 0.0) if self.backbone == "seed" else (1 / 127.5, -1.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"], data["input_size"] = list(self.classes), list(self.input_size)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LrcnError(f"bad model spec: unknown fields {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise LrcnError(f"bad model spec: {err}") from None


@dataclass
class BundleMeta:
    spec: ModelSpec
    feature_size: int
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        scale, offset = self.spec.preprocessing
        return {
            "format_version": self.format_version,
            "model": self.spec.to_json(),
            "preprocessing": {"color": "RGB", "dtype": "uint8", "scale": scale, "offset": offset},
            "feature_size": self.feature_size,
            "training": self.training,
            "metrics": self.metrics,
        }


def write_meta(bundle_dir: str | Path, meta: BundleMeta) -> Path:
    path = Path(bundle_dir) / "meta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    return path


def read_meta(bundle_dir: str | Path) -> BundleMeta:
    """Load and check bundle_dir/meta.json; every problem is one LrcnError line."""
    path = Path(bundle_dir) / "meta.json"
    if not Path(bundle_dir).is_dir():
        raise LrcnError(f"model bundle not found: {bundle_dir}")
    if not path.is_file():
        raise LrcnError(f"not a model bundle (no meta.json): {bundle_dir}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LrcnError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise LrcnError(f"{path}: expected a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise LrcnError(f"{path}: bundle format {version!r}, this lrcn-stream reads {FORMAT_VERSION}")
    try:
        return BundleMeta(spec=ModelSpec.from_json(data["model"]), feature_size=int(data["feature_size"]),
                          training=data.get("training", {}), metrics=data.get("metrics", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise LrcnError(f"{path}: missing or bad field {err}") from None
