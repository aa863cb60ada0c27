"""A bundle's encoders as one: each modality's encoder (stream.modalities) over its own input of
the same frames, their features joined in the bundle's modality order.

    encoder = open_joint_encoder("bundle", ("rgb", "flow"))       # encoder.onnx + encoder.flow.onnx
    features = encoder.encode_frames(frames)                      # stream.ring.Frame list -> [N, F_rgb + F_flow]
    features = encoder.encode_inputs({"rgb": images, "flow": fields})   # the same, from arrays

A one-modality (RGB) joint encoder runs its encoder on the stacked images and nothing else, so
an RGB bundle costs what it did before; `encode(images)` still takes RGB frames for it.
`encoded` counts the frames each modality's encoder has encoded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lrcn.stream.encoders import Encoder, open_encoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.modalities import Modality, modality


class JointEncoder:
    def __init__(self, encoders: Mapping[str, Encoder]):
        """`encoders`: modality name -> its encoder, in the order their features are joined."""
        self.encoders = dict(encoders)
        self.modalities: tuple[Modality, ...] = tuple(modality(name) for name in self.encoders)
        first = next(iter(self.encoders.values()))
        self.name = "+".join(e.name for e in self.encoders.values()) if len(self.encoders) > 1 else first.name
        self.input_size = tuple(first.input_size)
        self.feature_sizes = {name: int(e.feature_size) for name, e in self.encoders.items()}
        self.feature_size = sum(self.feature_sizes.values())
        # Frames encoded per modality; every key there from the start, so the stats thread can
        # read it while the inference thread counts (no key is ever added during a read).
        self.encoded: Counter[str] = Counter({name: 0 for name in self.encoders})

    @property
    def needs_flow(self) -> bool:
        return any(m.needs_flow for m in self.modalities)

    def encode_inputs(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """{modality: uint8 [N, H, W, C]} -> [N, sum F], each modality's encoder called once."""
        parts = []
        for name, encoder in self.encoders.items():
            if name not in inputs:
                raise LrcnError(f"the {name} encoder has no input (got {', '.join(inputs) or 'none'})")
            parts.append(encoder.encode(inputs[name]))
            self.encoded[name] += len(parts[-1])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def encode_frames(self, frames: Sequence) -> np.ndarray:
        """stream.ring.Frame sequence -> [N, sum F]: each frame encoded once per modality."""
        missing = [m.name for m in self.modalities if getattr(frames[0], m.frame_field) is None]
        if missing:
            raise LrcnError(f"frames carry no {' or '.join(missing)} input (is the capture computing flow?)")
        return self.encode_inputs({m.name: m.inputs(frames) for m in self.modalities})

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """RGB frames [N, H, W, 3] -> [N, F], for an encoder of RGB alone."""
        if tuple(self.encoders) != ("rgb",):
            raise LrcnError(
                f"a {'+'.join(self.encoders)} encoder needs every modality's input: use encode_frames or encode_inputs"
            )
        return self.encode_inputs({"rgb": frames})

    def close(self) -> None:
        for encoder in self.encoders.values():
            if hasattr(encoder, "close"):
                encoder.close()


def as_joint(encoder: Encoder | JointEncoder) -> JointEncoder:
    """A joint encoder as is; a plain encoder as the RGB one of a joint encoder."""
    return encoder if isinstance(encoder, JointEncoder) else JointEncoder({"rgb": encoder})


def open_joint_encoder(
    bundle_dir: str | Path,
    modalities: Sequence[str] = ("rgb",),
    backend: str = "onnxruntime",
    threads: int | None = None,
    precision: str = "fp16",
    max_batch: int = 16,
) -> JointEncoder:
    """Each modality's encoder of the bundle on `backend`; a missing file is one LrcnError line."""
    path = Path(bundle_dir)
    for name in modalities:
        if not (path / modality(name).encoder_file).is_file():
            raise LrcnError(f"bundle {path} has no {modality(name).encoder_file} (run `lrcn export {path}`)")
    return JointEncoder(
        {
            name: open_encoder(path, backend, threads=threads, precision=precision, max_batch=max_batch, modality=name)
            for name in modalities
        }
    )
