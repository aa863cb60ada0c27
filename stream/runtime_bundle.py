"""An exported bundle as the runtime sees it: meta.json, an encoder backend, the NumPy head and,
when the bundle has one, its open-set guard (novelty.npz, stream.novelty).

No TensorFlow: this is what an edge box loads.

>>> bundle = load_runtime_bundle("bundles/mine")              # doctest: +SKIP
>>> bundle.clip_probabilities(frames[:16]).shape               # doctest: +SKIP
(4,)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrcn.stream.bundle import BundleMeta, read_meta
from lrcn.stream.encoders import ENCODER_FILE, Encoder, open_encoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import HEAD_FILE, Head, load_head
from lrcn.stream.novelty import NoveltyModel, check_novelty, load_novelty


@dataclass
class RuntimeBundle:
    path: Path
    meta: BundleMeta
    encoder: Encoder
    head: Head
    novelty: NoveltyModel | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.spec.classes

    def clip_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """One clip of T uint8 frames [T, H, W, 3] -> class probabilities [C], as the Keras
        model gives for the same clip (per-step outputs averaged)."""
        return self.head.clip_probabilities(self.encoder.encode(frames)[None])[0]


def check_parts(path: Path, meta: BundleMeta, encoder: Encoder, head: Head) -> None:
    """The parts must agree with meta.json: input size, feature size, classes, head type."""
    spec, name = meta.spec, f"bundle {path}"
    if tuple(encoder.input_size) != tuple(spec.input_size):
        raise LrcnError(f"{name}: {ENCODER_FILE} takes {encoder.input_size[0]}x{encoder.input_size[1]} frames but "
                        f"meta.json says {spec.input_size[0]}x{spec.input_size[1]}")
    if encoder.feature_size != meta.feature_size or head.feature_size != meta.feature_size:
        raise LrcnError(f"{name}: feature sizes disagree: encoder {encoder.feature_size}, head {head.feature_size}, "
                        f"meta.json {meta.feature_size}")
    if tuple(head.classes) != tuple(spec.classes):
        raise LrcnError(f"{name}: {HEAD_FILE} classes ({', '.join(head.classes)}) differ from meta.json's "
                        f"({', '.join(spec.classes)})")
    if head.dense_bias.shape != (spec.num_classes,):
        raise LrcnError(f"{name}: {HEAD_FILE} has {head.dense_bias.shape[0]} outputs for {spec.num_classes} classes")
    if head.kind != spec.head or head.per_timestep != spec.outputs_every_step:
        raise LrcnError(f"{name}: {HEAD_FILE} is a {head.kind} head, meta.json says {spec.head}")


def load_runtime_bundle(bundle_dir: str | Path, backend: str = "onnxruntime", threads: int | None = None,
                        precision: str = "fp16", max_batch: int = 16) -> RuntimeBundle:
    """meta.json + the encoder on `backend` (see stream.encoders.open_encoder) + head.npz,
    checked against each other; a missing file or any disagreement is one LrcnError line."""
    path = Path(bundle_dir)
    meta = read_meta(path)
    if not (path / ENCODER_FILE).is_file():
        raise LrcnError(f"bundle {path} has no {ENCODER_FILE} (run `lrcn export {path}`)")
    head = load_head(path / HEAD_FILE)
    novelty = load_novelty(path)
    if novelty is not None:
        check_novelty(novelty, meta.spec.classes, meta.feature_size, path)
    encoder = open_encoder(path, backend, threads=threads, precision=precision, max_batch=max_batch)
    check_parts(path, meta, encoder, head)
    return RuntimeBundle(path, meta, encoder, head, novelty)
