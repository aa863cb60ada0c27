"""An exported bundle as the runtime sees it: meta.json, its encoders on a backend (one per
modality, joined: stream.encoders.joint), the NumPy head and, when the bundle has one, its
open-set guard (novelty.npz, stream.novelty).

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
from lrcn.stream.encoders.joint import JointEncoder, as_joint, open_joint_encoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import HEAD_FILE, Head, load_head
from lrcn.stream.heads.late import LateHead
from lrcn.stream.modalities import modality
from lrcn.stream.novelty import NoveltyModel, check_novelty, load_novelty

LATE = "late"  # the head kind of a late-fusion bundle (stream.heads.late)


@dataclass
class RuntimeBundle:
    path: Path
    meta: BundleMeta
    encoder: JointEncoder
    head: Head
    novelty: NoveltyModel | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.spec.classes

    @property
    def needs_flow(self) -> bool:
        """Whether the capture must compute optical flow for this bundle's encoders."""
        return self.encoder.needs_flow

    def clip_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """One clip of T uint8 frames [T, H, W, 3] -> class probabilities [C], as the Keras
        model gives for the same clip (per-step outputs averaged). RGB bundles; any bundle
        takes a clip of stream.ring.Frame through `clip_probabilities_of`."""
        return self.head.clip_probabilities(self.encoder.encode(frames)[None])[0]

    def clip_probabilities_of(self, frames) -> np.ndarray:
        """One clip of T stream.ring.Frame (with flow, for a bundle that sees motion) -> [C]."""
        return self.head.clip_probabilities(self.encoder.encode_frames(frames)[None])[0]

    def video_features(self, video: str | Path, chunk: int = 64) -> np.ndarray:
        """[N, F] joined features of a video's frames sampled on the model's grid, with their
        flow where the bundle needs it, as a live stream of the file would give them."""
        from lrcn.stream.video import read_video_frames  # decoding: only for files

        spec = self.meta.spec
        frames = read_video_frames(video, spec.input_size, spec.fps, flow=self.needs_flow)
        return np.concatenate([self.encoder.encode_frames(frames[i : i + chunk]) for i in range(0, len(frames), chunk)])


def check_parts(path: Path, meta: BundleMeta, encoder, head: Head) -> None:
    """The parts must agree with meta.json: input size, feature sizes (per modality), classes,
    head type (a late-fusion bundle has the late head)."""
    spec, name = meta.spec, f"bundle {path}"
    encoder = as_joint(encoder)
    for kind, part in zip(encoder.modalities, encoder.encoders.values()):
        if tuple(part.input_size) != tuple(spec.input_size):
            raise LrcnError(
                f"{name}: {kind.encoder_file} takes {part.input_size[0]}x{part.input_size[1]} frames but "
                f"meta.json says {spec.input_size[0]}x{spec.input_size[1]}"
            )
    sizes = meta.modality_feature_sizes()
    for kind, size in encoder.feature_sizes.items():
        if sizes.get(kind) != size:
            raise LrcnError(
                f"{name}: {modality(kind).encoder_file} gives {size} features per frame, meta.json says "
                f"{sizes.get(kind)}"
            )
    if encoder.feature_size != meta.feature_size or head.feature_size != meta.feature_size:
        raise LrcnError(
            f"{name}: feature sizes disagree: encoder {encoder.feature_size}, head {head.feature_size}, "
            f"meta.json {meta.feature_size}"
        )
    if tuple(head.classes) != tuple(spec.classes):
        raise LrcnError(
            f"{name}: {HEAD_FILE} classes ({', '.join(head.classes)}) differ from meta.json's "
            f"({', '.join(spec.classes)})"
        )
    if head.dense_bias.shape != (spec.num_classes,):
        raise LrcnError(f"{name}: {HEAD_FILE} has {head.dense_bias.shape[0]} outputs for {spec.num_classes} classes")
    late = spec.two_stream and spec.fusion == LATE
    wanted = f"{LATE} fusion of {spec.head}" if late else spec.head
    got = f"{head.kind} fusion of {head.sub_kind}" if isinstance(head, LateHead) else head.kind
    if got != wanted or head.per_timestep != spec.outputs_every_step:
        raise LrcnError(f"{name}: {HEAD_FILE} is a {got} head, meta.json says {wanted}")
    if late and isinstance(head, LateHead) and tuple(head.modalities) != tuple(spec.modalities):
        raise LrcnError(
            f"{name}: {HEAD_FILE} fuses {', '.join(head.modalities)}, meta.json says {', '.join(spec.modalities)}"
        )


def load_runtime_bundle(
    bundle_dir: str | Path,
    backend: str = "onnxruntime",
    threads: int | None = None,
    precision: str = "fp16",
    max_batch: int = 16,
) -> RuntimeBundle:
    """meta.json + each modality's encoder on `backend` (see stream.encoders.open_encoder) +
    head.npz, checked against each other; a missing file or any disagreement is one LrcnError line."""
    path = Path(bundle_dir)
    meta = read_meta(path)
    for name in meta.spec.modalities:
        if not (path / modality(name).encoder_file).is_file():
            raise LrcnError(f"bundle {path} has no {modality(name).encoder_file} (run `lrcn export {path}`)")
    head = load_head(path / HEAD_FILE)
    novelty = load_novelty(path)
    if novelty is not None:
        check_novelty(novelty, meta.spec.classes, meta.feature_size, path)
    encoder = open_joint_encoder(
        path, meta.spec.modalities, backend, threads=threads, precision=precision, max_batch=max_batch
    )
    check_parts(path, meta, encoder, head)
    return RuntimeBundle(path, meta, encoder, head, novelty)
