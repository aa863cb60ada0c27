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
HEADS = tuple(head_names())
FUSIONS = ("early", "late")  # the head types a ModelSpec accepts (those registered by now)


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
    l2: float = 0.0  # L2 penalty on the softmax layer's kernel
    backbone_weights: str | None = None
    # mobilenet_v2 only: "avg" pools each frame to one vector; "flatten" keeps the spatial
    # map, so where things are (and so left/right motion) reaches the LSTM.
    pooling: str = "avg"
    # Backbone layers left trainable, counted from the top: -1 all, 0 frozen.
    trainable_layers: int = -1
    # What the encoders look at (stream.modalities), in the order their features are joined.
    modalities: tuple[str, ...] = ("rgb",)
    # With two or more modalities: "early" joins their features into one head; "late" gives each
    # its own head and averages their probabilities with `fusion_weights` (one per modality).
    fusion: str = "early"
    fusion_weights: tuple[float, ...] | None = None
    # The flow encoder's CNN (one of BACKBONES); None: the same as `backbone`.
    flow_backbone: str | None = None
    # The flow encoder was trained on flow before the head (models.flow_encoder: from ImageNet
    # for mobilenet_v2, from scratch otherwise), rather than used as its backbone came.
    flow_trained: bool = False

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
        problems += self._modality_problems()
        if problems:
            raise LrcnError("bad model spec: " + "; ".join(problems))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if self.fusion_weights is not None:
            object.__setattr__(self, "fusion_weights", tuple(float(w) for w in self.fusion_weights))

    def _modality_problems(self) -> list[str]:
        from lrcn.stream.modalities import modality_names

        known, problems = modality_names(), []
        unknown = [name for name in self.modalities if name not in known]
        if unknown or not self.modalities:
            problems.append(f"modalities {', '.join(unknown) or '(none)'}: each must be one of {', '.join(known)}")
        elif len(set(self.modalities)) != len(self.modalities):
            problems.append("modalities repeat")
        if self.fusion not in FUSIONS:
            problems.append(f"fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        weights = self.fusion_weights
        if weights is not None and (
            self.fusion != "late"
            or len(weights) != len(self.modalities)
            or not all(0 <= w <= 1 for w in weights)
            or abs(sum(weights) - 1) > 1e-6
        ):
            problems.append(
                f"fusion weights {list(weights)} must be late fusion's, one per modality in [0, 1], summing to 1"
            )
        if self.flow_backbone is not None and self.flow_backbone not in BACKBONES:
            problems.append(f"flow backbone {self.flow_backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.flow_trained and "flow" not in self.modalities:
            problems.append("a trained flow encoder needs the flow modality")
        return problems

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

    @property
    def two_stream(self) -> bool:
        return len(self.modalities) > 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"], data["input_size"] = list(self.classes), list(self.input_size)
        data["modalities"] = list(self.modalities)
        if self.fusion_weights is not None:
            data["fusion_weights"] = list(self.fusion_weights)
        # An RGB-only spec is written as before the modalities existed, so an older runtime reads it.
        defaults = {
            "modalities": ["rgb"],
            "fusion": "early",
            "fusion_weights": None,
            "flow_backbone": None,
            "flow_trained": False,
        }
        return {key: value for key, value in data.items() if key not in defaults or defaults[key] != value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
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
    feature_size: int  # of one frame, every modality's features joined
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Each modality's share of feature_size, in spec.modalities order; None: one modality.
    feature_sizes: dict[str, int] | None = None

    def modality_feature_sizes(self) -> dict[str, int]:
        return dict(self.feature_sizes) if self.feature_sizes else {self.spec.modalities[0]: self.feature_size}

    def to_json(self) -> dict[str, Any]:
        scale, offset = self.spec.preprocessing
        return {
            "format_version": self.format_version,
            "model": self.spec.to_json(),
            "preprocessing": {"color": "RGB", "dtype": "uint8", "scale": scale, "offset": offset},
            "feature_size": self.feature_size,
            **({"feature_sizes": dict(self.feature_sizes)} if self.feature_sizes else {}),
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
        spec = ModelSpec.from_json(data["model"])
        sizes = data.get("feature_sizes")
        meta = BundleMeta(
            spec=spec,
            feature_size=int(data["feature_size"]),
            training=data.get("training", {}),
            metrics=data.get("metrics", {}),
            feature_sizes={str(k): int(v) for k, v in sizes.items()} if sizes else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise LrcnError(f"{path}: missing or bad field {err}") from None
    sizes = meta.modality_feature_sizes()
    if list(sizes) != list(spec.modalities) or sum(sizes.values()) != meta.feature_size:
        raise LrcnError(
            f"{path}: feature_sizes {sizes} do not split feature_size {meta.feature_size} "
            f"over the modalities {', '.join(spec.modalities)}"
        )
    return meta
