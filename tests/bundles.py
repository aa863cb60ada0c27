"""Small real bundles for the runtime, export and backend tests: untrained weights, real layers.

The runtime tests share one checked-in bundle, tests/data/seed_bundle (about 420 kB), so they run
on an edge install without TensorFlow. Regenerate it (TensorFlow needed) with

    python -m tests.bundles

tests/test_checked_in_bundle.py checks that its ONNX parts still compute its Keras model and
that the builder still makes it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lrcn.tools.evidence.ffmpeg_server import pattern_video
from tests.paths import SHARED

WEIZMANN_VIDEO = SHARED / "data" / "weizmann4" / "bend" / "s0_bend.avi"
CHECKED_IN_BUNDLE = Path(__file__).resolve().parent / "data" / "seed_bundle"

# The small CNN keeps encoder.onnx near 100 kB (the seed CNN's is 4.7 MB at any input size);
# its 2,048 features make each LSTM unit cost 33 kB of head.npz.
SEED_SPEC_ARGS = dict(
    classes=("bend", "jumping_jack", "wave_one_hand"),
    backbone="small",
    input_size=(64, 64),
    clip_length=4,
    lstm_units=8,
)
# What the runtime reads; model.keras and model.onnx (the bench's naive baseline) stay out.
LESSON_LAYERS, LESSON_RATE, LESSON_EPOCHS = 2, 3e-3, 8
RUNTIME_FILES = ("meta.json", "encoder.onnx", "encoder.int8.onnx", "head.npz", "export.json")


def make_bundle(directory: Path, spec, frames: np.ndarray | None = None, seed: int = 0) -> Path:
    """Build the spec's model and save it as a bundle (model.keras + meta.json). With frames,
    a CNN trained from scratch gets LSUV scaling first, so its features vary between frames
    as a trained model's do (Keras's initialisation leaves them nearly constant)."""
    from lrcn.models.seed_bundle import untrained_bundle

    return untrained_bundle(spec, Path(directory), frames, seed)


def calibration_frames() -> np.ndarray:
    """What the checked-in bundle is scaled and calibrated on: rendered clips of moving shapes,
    the same on every machine (no ../shared needed)."""
    from lrcn.models.synth import render_clip

    rng = np.random.default_rng(26)
    return np.concatenate([render_clip(action, 8, 64, rng) for action in ("move_left", "grow", "move_up", "still")])


def colour_bars(rng: np.random.Generator, length: int) -> np.ndarray:
    """[length, 64, 64, 3] frames of bright vertical bars with a box crossing them, as ffmpeg's
    testsrc2 draws (its colours and layout vary here so that the lesson is "bright", not one picture)."""
    bars = rng.integers(60, 256, (rng.integers(3, 9), 3), dtype=np.uint8)
    frame = np.repeat(bars, -(-64 // len(bars)), axis=0)[:64][None, :, :].repeat(64, axis=0)
    clip = np.repeat(frame[None], length, axis=0)
    for t in range(length):
        x = (8 * t + rng.integers(0, 48)) % 48
        clip[t, 20:36, x : x + 16] = rng.integers(0, 256, 3, dtype=np.uint8)
    return clip


def test_pattern_frames(scratch: Path, size: str) -> np.ndarray:
    """ffmpeg's testsrc2 at `size` (WxH), 4 s, as the runtime reads it for the checked-in bundle."""
    from lrcn.stream.video import read_frames

    video = pattern_video(scratch / f"testsrc2-{size}.mp4", [("pattern", 4)], size)
    return read_frames(video, SEED_SPEC_ARGS["input_size"], 10.0)


def lessons(clip_length: int, scratch: Path) -> tuple[np.ndarray, np.ndarray]:
    """Clips and their labels: near-black `bend`, moving shapes `jumping_jack`, ffmpeg's test
    pattern (at the sizes the tests stream it) and bright bars `wave_one_hand` -- so the event tests
    can rely on black and the test pattern getting different labels, by design rather than by the
    luck of untrained weights (needs ffmpeg)."""
    from lrcn.models.synth import render_clip

    rng = np.random.default_rng(8)
    black = [rng.integers(0, 8, (clip_length, 64, 64, 3), dtype=np.uint8) for _ in range(24)]
    shapes = [
        render_clip(str(rng.choice(["move_left", "grow", "shrink", "move_up"])), clip_length, 64, rng)
        for _ in range(24)
    ]
    patterns = [
        frames[start : start + clip_length]
        for size in ("64x64", "160x120", "320x240")
        for frames in [test_pattern_frames(scratch, size)]
        for start in range(0, 36, 6)
    ]
    bright = [colour_bars(rng, clip_length) for _ in range(6)] + patterns
    return np.stack(black + shapes + bright), np.repeat(np.arange(3), 24)


def build_checked_in_bundle(out: Path) -> Path:
    """The bundle under tests/data/seed_bundle (needs TensorFlow): the small LRCN, LSUV-scaled,
    taught `lessons` in a few seconds, saved and exported with its INT8 encoder."""
    import keras

    from lrcn.models.architectures import build_model, scale_to_unit_variance, split_model
    from lrcn.models.frame_cache import preprocess
    from lrcn.models.export import export_bundle
    from lrcn.models.train import save_bundle
    from lrcn.stream.bundle import BundleMeta, ModelSpec

    spec = ModelSpec(**SEED_SPEC_ARGS)
    frames = calibration_frames()
    keras.utils.set_random_seed(0)
    model = build_model(spec)
    encoder, _ = split_model(model, spec)
    scale_to_unit_variance(encoder, preprocess(frames[:16], *spec.preprocessing))
    with tempfile.TemporaryDirectory() as scratch:
        clips, labels = lessons(spec.clip_length, Path(scratch))
    # Only the head learns, briefly: the CNN keeps its LSUV-scaled random weights, so different
    # videos still get different features and probabilities (the novelty and multi-stream tests
    # need that), and the lesson only moves the decision.
    for layer in model.layers[:-LESSON_LAYERS]:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(LESSON_RATE), loss="sparse_categorical_crossentropy")
    model.fit(
        preprocess(clips, *spec.preprocessing), labels, batch_size=8, epochs=LESSON_EPOCHS, shuffle=False, verbose=0
    )
    save_bundle(model, BundleMeta(spec=spec, feature_size=int(encoder.output_shape[-1])), Path(out))
    export_bundle(out, frames, calibration=frames)
    return Path(out)


def real_video(tmp_dir: Path) -> Path:
    """A Weizmann video when ../shared is present, else a synthetic one written to disk."""
    if WEIZMANN_VIDEO.is_file():
        return WEIZMANN_VIDEO
    from lrcn.models import synth

    # 60 frames: the scheduler tests cut the video at frame 30 and re-offer its first 30.
    paths = synth.write_dataset(tmp_dir / "synth", videos_per_class=1, n_frames=60, size=64, seed=3, groups=1)
    return Path(paths[0])


def frames_of(video: Path, spec) -> np.ndarray:
    from lrcn.stream.video import read_frames

    return read_frames(video, spec.input_size, spec.fps)


@pytest.fixture(scope="session")
def exported_seed(tmp_path_factory):
    """(bundle, frames, video): a copy of the checked-in bundle (a small LRCN, exported with its
    INT8 encoder), shared by the tests that only read it (copy it before breaking it). No
    TensorFlow needed."""
    from lrcn.stream.bundle import ModelSpec

    spec = ModelSpec(**SEED_SPEC_ARGS)
    video = real_video(tmp_path_factory.mktemp("video"))
    bundle = shutil.copytree(CHECKED_IN_BUNDLE, tmp_path_factory.mktemp("seed") / "bundle")
    return bundle, frames_of(video, spec), video


@pytest.fixture(scope="session")
def keras_seed(tmp_path_factory):
    """The checked-in bundle's whole build (model.keras and model.onnx too), made again with
    TensorFlow: for the tests that compare against Keras or time the naive model.onnx."""
    pytest.importorskip("tensorflow")
    return build_checked_in_bundle(tmp_path_factory.mktemp("keras_seed") / "bundle")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        built = build_checked_in_bundle(Path(scratch) / "bundle")
        CHECKED_IN_BUNDLE.mkdir(parents=True, exist_ok=True)
        for name in RUNTIME_FILES:
            shutil.copyfile(built / name, CHECKED_IN_BUNDLE / name)
    print("\n".join(f"{path.stat().st_size:>9} {path}" for path in sorted(CHECKED_IN_BUNDLE.iterdir())))


TINY = dict(backbone="seed", trainable_layers=0, input_size=(64, 64), clip_length=4, lstm_units=16)
