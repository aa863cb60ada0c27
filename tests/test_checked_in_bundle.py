"""tests/data/seed_bundle, the bundle the runtime tests share, is small, runtime-only, and still
what `python -m tests.bundles` builds: its ONNX parts compute the rebuilt Keras model."""

import shutil

import numpy as np
import pytest

from lrcn.tools.evidence.ffmpeg_server import pattern_video
from tests.bundles import CHECKED_IN_BUNDLE, RUNTIME_FILES, SEED_SPEC_ARGS, calibration_frames


def test_the_checked_in_bundle_is_small_and_holds_only_what_the_runtime_reads():
    files = sorted(path.name for path in CHECKED_IN_BUNDLE.iterdir())
    assert files == sorted(RUNTIME_FILES)
    assert sum((CHECKED_IN_BUNDLE / name).stat().st_size for name in files) < 600_000


def test_the_checked_in_bundle_loads_without_tensorflow_and_matches_its_spec():
    from lrcn.stream.bundle import ModelSpec, read_meta
    from lrcn.stream.runtime_bundle import load_runtime_bundle

    assert read_meta(CHECKED_IN_BUNDLE).spec == ModelSpec(**SEED_SPEC_ARGS)
    probabilities = load_runtime_bundle(CHECKED_IN_BUNDLE).clip_probabilities(calibration_frames()[:4])
    assert probabilities.shape == (3,) and abs(probabilities.sum() - 1) < 1e-5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("size", ["64x64", "320x240"])
@pytest.mark.parametrize("kind, label", [("black", "bend"), ("pattern", "wave_one_hand")])
def test_it_calls_black_bend_and_ffmpegs_test_pattern_wave_one_hand_as_the_event_tests_rely_on(
    kind, label, size, tmp_path
):
    from lrcn.stream.runtime_bundle import load_runtime_bundle
    from lrcn.stream.video import read_frames

    video = pattern_video(tmp_path / "clip.mp4", [(kind, 2)], size)
    for backend in ("onnxruntime", "onnxruntime-int8"):
        bundle = load_runtime_bundle(CHECKED_IN_BUNDLE, backend)
        frames = read_frames(video, bundle.meta.spec.input_size, bundle.meta.spec.fps)
        for start in range(len(frames) - 3):
            probabilities = bundle.clip_probabilities(frames[start : start + 4])
            assert bundle.classes[int(probabilities.argmax())] == label, (backend, start, probabilities)


def test_the_checked_in_bundle_is_what_the_builder_makes_and_computes_its_keras_model(keras_seed):
    import keras

    from lrcn.models.frame_cache import preprocess
    from lrcn.stream.bundle import read_meta
    from lrcn.stream.runtime_bundle import load_runtime_bundle

    assert read_meta(CHECKED_IN_BUNDLE) == read_meta(keras_seed)
    frames = calibration_frames()
    spec = read_meta(keras_seed).spec
    clips = frames[: len(frames) // spec.clip_length * spec.clip_length].reshape(
        -1, spec.clip_length, *frames.shape[1:]
    )
    model = keras.models.load_model(keras_seed / "model.keras", compile=False)
    keras_probabilities = np.asarray(model(preprocess(clips, *spec.preprocessing), training=False))
    for backend in ("onnxruntime", "onnxruntime-int8"):
        checked_in, rebuilt = (load_runtime_bundle(bundle, backend) for bundle in (CHECKED_IN_BUNDLE, keras_seed))
        np.testing.assert_allclose(checked_in.encoder.encode(frames), rebuilt.encoder.encode(frames), atol=1e-4)
        got = np.stack([checked_in.clip_probabilities(clip) for clip in clips])
        np.testing.assert_allclose(got, keras_probabilities, atol=1e-4 if backend == "onnxruntime" else 2e-2)
