"""Per-frame features: encode each frame once, and cache them when the backbone is frozen."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

from lrcn.models.frame_cache import OneWorker, Shard, cache_key, map_sharded, preprocess, save_npy
from lrcn.stream.errors import LrcnError
from lrcn.stream.video import DECODE_VERSION
from lrcn.stream.bundle import ModelSpec

log = logging.getLogger(__name__)

ENCODE_BATCH = 32


def encode_frames(encoder, frames: np.ndarray, spec: ModelSpec, to_input: Callable | None = None) -> np.ndarray:
    """[N, H, W, C] uint8 -> [N, F] float32 through the Keras encoder, in batches; `to_input` makes
    the encoder's float input of a batch (default: the spec's RGB preprocessing).

    predict_on_batch runs Keras's compiled graph: measured 4x the frames per second of
    calling the model eagerly (MobileNetV2 at 224x224, 2 cores)."""
    scale, offset = spec.preprocessing
    to_input = to_input or (lambda batch: preprocess(batch, scale, offset))
    chunks = [
        np.asarray(encoder.predict_on_batch(to_input(frames[i : i + ENCODE_BATCH])))
        for i in range(0, len(frames), ENCODE_BATCH)
    ]
    return np.concatenate(chunks).astype(np.float32)


def weights_fingerprint(spec: ModelSpec) -> str:
    weights = spec.backbone_weights
    if weights and Path(weights).is_file():
        stat = Path(weights).stat()
        return f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return str(weights)


def weights_digest(model, salt: bytes = b"") -> str:
    """Identifies a model's weights (their shapes, dtypes and values), after `salt`."""
    digest = hashlib.sha256(salt)
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


class FeatureCache:
    """Features of a frozen backbone per (video, view, modality), kept as .npy files.

    Only valid while the backbone's weights cannot change, so training uses it for frozen
    ImageNet backbones alone. A view is "plain" or "mirror" (the inputs as a mirrored camera
    gives them). `spec` is the modality's encoder spec (models.modalities.encoder_spec); an RGB
    cache keeps the key it always had, other modalities add what decides their inputs. An encoder
    trained by this run (models.flow_encoder) is cached under its weights' digest (`trained`).
    """

    def __init__(
        self, directory: str | Path | None, spec: ModelSpec, encoder, modality: str = "rgb", trained: bool = False
    ):
        from lrcn.models.modalities import keras_modality

        self.directory = Path(directory) / "features" if directory else None
        self.spec, self.encoder, self.modality = spec, encoder, keras_modality(modality)
        identity = (spec.backbone, spec.pooling, spec.input_size, spec.fps, weights_fingerprint(spec), DECODE_VERSION)
        identity += self.modality.cache_identity(spec)
        if trained:
            identity += ("trained", weights_digest(encoder))
        self.identity = hashlib.sha1(repr(identity).encode()).hexdigest()[:12]

    def file(self, video_path: Path, view: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{cache_key(Path(video_path), self.identity, view)}.npy"

    def features(self, video_path: Path, frames: np.ndarray, view: str = "plain") -> np.ndarray:
        file = self.file(video_path, view)
        if file is not None and file.exists():
            return np.load(file)
        pixels = self.modality.mirror(frames) if view == "mirror" else frames
        features = encode_frames(
            self.encoder,
            np.ascontiguousarray(pixels),
            self.spec,
            lambda batch: np.asarray(self.modality.to_model_input(batch, self.spec)),
        )
        if file is not None:
            save_npy(file, features)
        return features

    def cached(self, video_path: Path, view: str) -> np.ndarray | None:
        file = self.file(video_path, view)
        return np.load(file) if file is not None and file.exists() else None

    def all_views(
        self,
        video_paths: Sequence[Path],
        frames_of: Callable[[Path], np.ndarray],
        views: Sequence[str],
        shard: Shard = OneWorker(),
        progress: bool = False,
    ) -> dict[Path, list]:
        """{path: [features of each view]} for every readable video. Each worker encodes its
        share (frames decoded only where a view is not cached yet), the shares are exchanged,
        and each worker caches what the others encoded, so later runs and evaluation find it."""
        paths = list(video_paths)

        def encode(path):
            try:
                if not Path(path).is_file():
                    raise LrcnError(f"video not found: {path}")
                views_cached = [self.cached(path, view) for view in views]
                if all(v is not None for v in views_cached):
                    return np.stack(views_cached)
                frames = frames_of(path)
            except LrcnError as err:
                log.warning("skipping %s", err)
                return None
            return np.stack([self.features(path, frames, view) for view in views])

        shared = map_sharded(paths, encode, shard, progress, "encoding")
        out = {}
        for index in sorted(shared):
            path = paths[index]
            out[path] = list(shared[index])
            for view, features in zip(views, out[path]):
                file = self.file(path, view)
                if file is not None and not file.exists():
                    save_npy(file, features)
        return out
