"""Untrained bundles for measuring speed and for tests: a spec's model built with Keras and saved
(model.keras + meta.json), then exported for the runtime. Untrained weights cost exactly what
trained ones do, so the benchmarks need no training.

- `untrained_bundle`: any spec, saved as a bundle (optionally LSUV-scaled on real frames);
- `build_seed_bundle`: the seed LRCN (112x112, T=16, LSTM 512), exported with its INT8 encoder;
- `build_mobilenet_bundle`: MobileNetV2 112x112, T=16, 10 fps, LSTM, from the ImageNet weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrcn.stream.bundle import BundleMeta, ModelSpec

SEED_SPEC = ModelSpec(
    classes=("class0", "class1", "class2", "class3"), input_size=(112, 112), clip_length=16, lstm_units=512
)


def untrained_bundle(spec: ModelSpec, out: Path, frames: np.ndarray | None = None, seed: int = 0) -> Path:
    """Build the spec's model and save it as a bundle in `out`. With frames, a CNN trained from
    scratch gets LSUV scaling first, so its features vary between frames as a trained model's do
    (Keras's initialisation leaves them nearly constant)."""
    import keras

    from lrcn.models.architectures import build_model, scale_to_unit_variance, split_model
    from lrcn.models.frame_cache import preprocess
    from lrcn.models.train import save_bundle

    keras.utils.set_random_seed(seed)
    model = build_model(spec)
    encoder, _ = split_model(model, spec)
    if frames is not None and spec.backbone != "mobilenet_v2":
        scale_to_unit_variance(encoder, preprocess(frames, *spec.preprocessing))
    save_bundle(model, BundleMeta(spec=spec, feature_size=int(encoder.output_shape[-1])), Path(out))
    return Path(out)


def build_seed_bundle(out: Path, video: Path | None = None) -> Path:
    """The seed LRCN (112x112, T=16, LSTM 512) with untrained weights, exported with its INT8
    encoder, checked and calibrated on `video`'s frames (generated ones without it)."""
    from lrcn.models.export import export_bundle
    from lrcn.stream.sources import pattern_frames
    from lrcn.stream.video import read_frames

    spec = SEED_SPEC
    untrained_bundle(spec, out)
    frames = read_frames(video, spec.input_size, spec.fps) if video else pattern_frames(spec.input_size, 64)
    export_bundle(out, frames[:32], calibration=frames[:64])
    return Path(out)


def build_mobilenet_bundle(out: Path, video: Path, weights: Path, classes: int = 5) -> Path:
    """MobileNetV2 112x112, T=16, 10 fps, LSTM head from the ImageNet `weights`, exported for the
    runtime (encoder.onnx, head.npz) and checked on `video`'s frames."""
    from lrcn.models.export import export_bundle
    from lrcn.stream.video import read_frames

    spec = ModelSpec(
        classes=tuple(f"class{i}" for i in range(classes)),
        backbone="mobilenet_v2",
        backbone_weights=str(weights),
        input_size=(112, 112),
        clip_length=16,
        fps=10.0,
    )
    untrained_bundle(spec, out)
    export_bundle(out, read_frames(video, spec.input_size, spec.fps)[:32])
    return Path(out)
