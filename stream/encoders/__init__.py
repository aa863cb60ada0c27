"""Per-frame encoder backends behind one interface: uint8 frames in, float32 features out.

    encoder = open_encoder("bundle", backend="onnxruntime")      # or "onnxruntime-int8", "tensorrt"
    features = encoder.encode(frames)                            # [N, H, W, 3] uint8 -> [N, F] float32
    flow = open_encoder("bundle", modality="flow")                # encoder.flow.onnx: [N, H, W, 2] fields

One encoder per modality (stream.modalities names its files and channels); a bundle's
`JointEncoder` (stream.encoders.joint) runs them all and joins their features.
Normalisation is inside the exported graph, so callers feed raw pixels.

A backend is one module with a `@register`ed opener, and an `availability()` that says why it
cannot run on this machine (None when it can; `lrcn doctor` prints it):

    @register("openvino")
    def open_openvino(bundle, *, threads, precision, max_batch, modality) -> Encoder: ...

    def availability() -> str | None: ...

The built-in backends' modules (BUILT_IN) are imported by name when a backend is first looked
up; they import this package for its shared pieces, never the other way round. TensorRT and
Polygraphy themselves are imported only when a TensorRT engine is built or run.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.registry import Registry

ENCODER_FILE = "encoder.onnx"
INT8_ENCODER_FILE = "encoder.int8.onnx"
# Modules that register the built-in backends, in the order `backend_names` lists them (the default first).
BUILT_IN = ("lrcn.stream.encoders.onnxruntime", "lrcn.stream.encoders.tensorrt")


class Encoder(Protocol):
    name: str
    input_size: tuple[int, int]
    feature_size: int

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """[N, H, W, C] uint8 (C: its modality's channels) -> [N, F] float32."""
        ...


def check_frames(frames: np.ndarray, input_size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """The frames as one contiguous uint8 [N, H, W, channels] array at the model's size, or one LrcnError line."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (*input_size, channels):
        raise LrcnError(
            f"encoder takes uint8 frames [N, {input_size[0]}, {input_size[1]}, {channels}], "
            f"got {frames.dtype} {list(frames.shape)}"
        )
    return np.ascontiguousarray(frames)


# (bundle directory, *, threads, precision, max_batch, modality) -> Encoder of that modality's file
# (a stream.modalities.Modality); a backend ignores what it has no use for.
Opener = Callable[..., Encoder]


BACKENDS: Registry[Opener] = Registry("encoder backend", BUILT_IN)


def register(name: str) -> Callable[[Opener], Opener]:
    """Decorator: `opener` opens a bundle's encoder on the backend called `name`."""
    return BACKENDS.register(name)


def backend_names() -> tuple[str, ...]:
    """The backends `open_encoder` takes, for command-line choices and `lrcn doctor`: the built-in
    ones first, in BUILT_IN's order (the default first), then any other in the order registered."""
    return tuple(BACKENDS.names())


def unavailable_reason(backend: str) -> str | None:
    """None when `backend` can run on this machine, else one line saying why not (from its
    module's `availability()`; a module without one is taken as always available)."""
    availability = getattr(importlib.import_module(BACKENDS.module(backend)), "availability", None)
    return availability() if availability is not None else None


def open_encoder(
    bundle_dir: str | Path,
    backend: str = "onnxruntime",
    threads: int | None = None,
    precision: str = "fp16",
    max_batch: int = 16,
    modality: str = "rgb",
) -> Encoder:
    """The bundle's encoder of one modality on a backend.

    onnxruntime: the modality's fp32 file (encoder.onnx for rgb, encoder.flow.onnx for flow);
    onnxruntime-int8: its INT8 twin (`lrcn export --int8`); tensorrt: an engine from the
    bundle's engines/ cache, built on first use (precision fp32, fp16 or int8; max_batch bounds
    the optimisation profile). threads defaults to $LRCN_THREADS, else the backend's own choice.
    """
    from lrcn.stream.modalities import modality as find_modality

    opener = BACKENDS.get(backend)
    threads = threads or int(os.environ.get("LRCN_THREADS", "0")) or None
    return opener(
        Path(bundle_dir), threads=threads, precision=precision, max_batch=max_batch, modality=find_modality(modality)
    )
