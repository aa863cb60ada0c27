"""Export to ONNX + NumPy head, checked against Keras on real video."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from lrcn.models.frame_cache import clip_indices, preprocess, window_starts
from lrcn.models.export import export_bundle
from lrcn.stream.bundle import ModelSpec
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import load_head
from lrcn.stream.runtime_bundle import load_runtime_bundle
from tests.bundles import frames_of, make_bundle, real_video
from tests.paths import PRETRAINED, needs_pretrained

CLASSES = ("bend", "jumping_jack", "wave_one_hand")
SPECS = {
    "seed_lstm": ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=4, lstm_units=16),
    "seed_per_timestep": ModelSpec(
        classes=CLASSES, input_size=(64, 64), clip_length=4, lstm_units=16, per_timestep=True
    ),
    "seed_single_frame": ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=4, head="single_frame"),
    "seed_pool": ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=4, head="pool", l2=0.01),
}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return real_video(tmp_path_factory.mktemp("video"))


def exported(tmp_path_factory, video, spec):
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), spec, frames[:16])
    if spec.head == "pool":
        set_pooling_statistics(bundle, frames)
    report = export_bundle(bundle, frames)
    return bundle, frames, report


def set_pooling_statistics(bundle, frames, seed=0):
    """Give the bundle's TemporalPooling statistics far from the identity (a fresh model has
    center 0 and inverse_scale 1, which would leave export's folding of them unchecked): the
    real windows' own statistics, shifted and rescaled per feature so that no feature keeps
    center 0 or scale 1. Returns (center, inverse_scale)."""
    from lrcn.models.architectures import TemporalPooling, split_model
    from lrcn.models.experiment import load_bundle
    from lrcn.models.train import save_bundle

    model, meta = load_bundle(bundle)
    encoder, _ = split_model(model, meta.spec)
    spec = meta.spec
    clips = np.stack(
        [
            frames[clip_indices(len(frames), spec.clip_length, s)]
            for s in window_starts(len(frames), spec.clip_length, 1)
        ]
    )
    features = np.asarray(
        encoder(preprocess(clips.reshape(-1, *clips.shape[2:]), *spec.preprocessing), training=False)
    ).reshape(*clips.shape[:2], -1)
    pooled = np.asarray(TemporalPooling.pool(features), np.float64)
    rng = np.random.default_rng(seed)
    spread = np.maximum(pooled.std(axis=0), 0.1) * rng.uniform(0.5, 2.0, pooled.shape[1])
    pooled = (
        pooled.mean(axis=0) + rng.normal(0, 0.5, pooled.shape[1]) * spread + rng.standard_normal(pooled.shape) * spread
    )
    (pooling,) = [layer for layer in model.layers if isinstance(layer, TemporalPooling)]
    pooling.set_statistics(pooled.astype(np.float32))
    center, inverse_scale = pooling.get_weights()
    assert np.abs(center).min() > 0 and np.abs(inverse_scale - 1).max() > 0.1
    save_bundle(model, meta, bundle)
    return center, inverse_scale


def keras_clip_probabilities(bundle, frames, spec):
    """Keras predict on every window of the video (stride 2): [windows, classes]."""
    from lrcn.models.experiment import load_bundle

    model, _ = load_bundle(bundle)
    starts = window_starts(len(frames), spec.clip_length, 2)
    clips = np.stack(
        [preprocess(frames[clip_indices(len(frames), spec.clip_length, s)], *spec.preprocessing) for s in starts]
    )
    probs = model.predict(clips, verbose=0)
    return starts, probs.mean(axis=1) if spec.outputs_every_step else probs


def assert_runtime_equals_keras(bundle, frames, spec):
    runtime = load_runtime_bundle(bundle)
    starts, expected = keras_clip_probabilities(bundle, frames, spec)
    got = np.stack([runtime.clip_probabilities(frames[clip_indices(len(frames), spec.clip_length, s)]) for s in starts])
    assert got.shape == expected.shape == (len(starts), spec.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    return runtime


@pytest.mark.parametrize("name", sorted(SPECS))
def test_onnx_encoder_and_numpy_head_equal_keras_predict_on_real_video(tmp_path_factory, video, name):
    spec = SPECS[name]
    bundle, frames, report = exported(tmp_path_factory, video, spec)
    assert_runtime_equals_keras(bundle, frames, spec)
    check = report["check"]
    assert check["encoder_max_rel"] < 1e-4 and check["model_onnx_probabilities_max_abs"] < 1e-4
    assert json.loads((bundle / "export.json").read_text())["check"] == check
    assert {"encoder.onnx", "model.onnx", "head.npz"} <= {p.name for p in bundle.iterdir()}


@needs_pretrained
def test_mobilenet_v2_bundle_equals_keras_predict_on_real_video(tmp_path_factory, video):
    spec = ModelSpec(
        classes=CLASSES,
        backbone="mobilenet_v2",
        backbone_weights=str(PRETRAINED),
        input_size=(96, 96),
        clip_length=4,
        lstm_units=16,
        trainable_layers=0,
    )
    bundle, frames, report = exported(tmp_path_factory, video, spec)
    runtime = assert_runtime_equals_keras(bundle, frames, spec)
    assert runtime.encoder.feature_size == 1280
    assert report["check"]["encoder_max_rel"] < 1e-4


def test_full_model_onnx_equals_keras(tmp_path_factory, video):
    import onnxruntime

    spec = SPECS["seed_lstm"]
    bundle, frames, _ = exported(tmp_path_factory, video, spec)
    starts, expected = keras_clip_probabilities(bundle, frames, spec)
    clips = np.stack([frames[clip_indices(len(frames), spec.clip_length, s)] for s in starts])
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"clips": clips})[0], expected, atol=1e-4, rtol=0)


def test_numpy_lstm_step_equals_keras_lstm_with_saturating_inputs(tmp_path_factory):
    """Gate order and activations: large inputs push every gate into saturation, where a
    swapped gate or a hard sigmoid would show at once. Also: a shared x·W+b over K states
    equals stepping each state on its own."""
    import keras

    from lrcn.models.architectures import build_head

    spec = ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=6, lstm_units=8)
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(1)
    head_model = build_head(spec, feature_size=5)
    for layer in head_model.layers:
        layer.set_weights([w * 3 for w in layer.get_weights()])
    features = (rng.standard_normal((7, spec.clip_length, 5)) * 4).astype(np.float32)
    expected = head_model.predict(features, verbose=0)

    from lrcn.models.export import head_from_keras
    from lrcn.stream.bundle import BundleMeta

    head = head_from_keras(head_model, BundleMeta(spec=spec, feature_size=5))
    np.testing.assert_allclose(head.clip_probabilities(features), expected, atol=1e-5, rtol=0)

    h, c = head.zero_state(3)
    h, c = h + rng.standard_normal(h.shape).astype(np.float32), c + rng.standard_normal(c.shape).astype(np.float32)
    x = features[:1, 0]
    shared_h, shared_c = head.recurrent_step(head.input_projection(x), h, c)
    for k in range(3):
        one_h, one_c = head.step(x, h[k : k + 1], c[k : k + 1])
        np.testing.assert_allclose(shared_h[k : k + 1], one_h, atol=1e-6)
        np.testing.assert_allclose(shared_c[k : k + 1], one_c, atol=1e-6)


def test_export_over_tolerance_fails_naming_the_figure_and_leaves_no_parts(tmp_path_factory, video):
    spec = SPECS["seed_lstm"]
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), spec, frames[:16])
    with pytest.raises(LrcnError, match=r"export check failed: .*\d.* > tolerance 1e-12"):
        export_bundle(bundle, frames, tolerance=1e-12)
    assert not (bundle / "encoder.onnx").exists() and not (bundle / "head.npz").exists()
    assert (bundle / "export.json").is_file()


def test_export_rejects_frames_of_the_wrong_size(tmp_path_factory, video):
    spec = SPECS["seed_lstm"]
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), spec)
    with pytest.raises(LrcnError, match="check frames must be uint8"):
        export_bundle(bundle, np.zeros((4, 32, 32, 3), np.uint8))


def test_head_file_round_trip(tmp_path_factory, video):
    bundle, _, _ = exported(tmp_path_factory, video, SPECS["seed_per_timestep"])
    head = load_head(bundle / "head.npz")
    assert head.kind == "lstm" and head.per_timestep and head.classes == CLASSES and head.units == 16


def test_cli_export_prints_the_check_and_writes_int8(tmp_path_factory, video):
    spec = SPECS["seed_lstm"]
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), spec, frames[:16])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrcn.tools.cli",
            "export",
            str(bundle),
            "--video",
            str(video),
            "--int8",
            "--calibration",
            str(video),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "max |diff|" in result.stdout and "int8" in result.stdout
    assert (bundle / "encoder.int8.onnx").is_file()
    int8 = load_runtime_bundle(bundle, backend="onnxruntime-int8")
    assert int8.clip_probabilities(frames[:4]).shape == (3,)


def test_numpy_pool_head_folds_the_standardisation_exactly():
    """head_from_keras folds center/inverse_scale into the softmax layer: the NumPy head equals
    Keras on features with large offsets, and a head that skipped the folding would not."""
    from lrcn.models.architectures import TemporalPooling, build_head
    from lrcn.models.export import head_from_keras
    from lrcn.stream.bundle import BundleMeta
    from lrcn.stream.heads.pool import PoolHead

    import keras

    spec = ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=6, head="pool", l2=0.1)
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(1)
    head_model = build_head(spec, feature_size=5)
    offsets, spreads = rng.normal(0, 4, 5), rng.uniform(0.2, 5, 5)
    features = (rng.standard_normal((9, spec.clip_length, 5)) * spreads + offsets).astype(np.float32)
    (pooling,) = [layer for layer in head_model.layers if isinstance(layer, TemporalPooling)]
    pooling.set_statistics(np.asarray(TemporalPooling.pool(features)))
    expected = head_model.predict(features, verbose=0)
    assert expected.std(axis=0).max() > 0.05  # the windows are told apart, not all uniform

    head = head_from_keras(head_model, BundleMeta(spec=spec, feature_size=5))
    assert isinstance(head, PoolHead) and head.kind == "pool" and head.feature_size == 5
    assert head.dense_kernel.shape == (10, 3) and head.dense_bias.shape == (3,)
    np.testing.assert_allclose(head.clip_probabilities(features), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        head.window_probabilities(features, counts=np.full(9, spec.clip_length)), expected, atol=1e-5, rtol=0
    )
    unfolded = PoolHead(spec.classes, *head_model.layers[-1].get_weights())
    assert np.abs(unfolded.clip_probabilities(features) - expected).max() > 1e-2


def test_pool_bundle_exports_with_its_statistics_folded(tmp_path_factory, video):
    """Non-identity statistics, exported through export_bundle: head.npz loads back as a
    pool head with the folded weights, and the runtime bundle equals Keras on real frames."""
    from lrcn.models.experiment import load_bundle
    from lrcn.models.export import head_from_keras
    from lrcn.models.architectures import split_model

    spec = SPECS["seed_pool"]
    bundle, frames, report = exported(tmp_path_factory, video, spec)
    head = load_head(bundle / "head.npz")
    assert head.kind == "pool" and head.classes == CLASSES and not head.per_timestep
    model, meta = load_bundle(bundle)
    _, head_model = split_model(model, spec)
    center, inverse_scale = head_model.layers[0].get_weights()
    assert np.abs(center).min() > 0 and np.abs(inverse_scale - 1).max() > 0.1  # the statistics survived saving
    folded = head_from_keras(head_model, meta)
    np.testing.assert_array_equal(head.dense_kernel, folded.dense_kernel)
    np.testing.assert_array_equal(head.dense_bias, folded.dense_bias)
    assert head.dense_kernel.shape == (2 * meta.feature_size, len(CLASSES))
    runtime = assert_runtime_equals_keras(bundle, frames, spec)
    assert runtime.head.kind == "pool"
    assert report["check"]["encoder_head_probabilities_max_abs"] < 1e-4


def test_a_frozen_encoder_is_converted_once_and_still_checked(tmp_path_factory, video, monkeypatch):
    """Two bundles on the same frozen backbone: the second export copies the first one's
    converted encoder (the cached file is not written again) and its check against Keras runs
    on the copy; an encoder that trains is never cached."""
    import shutil

    from lrcn.models import export

    cache = tmp_path_factory.mktemp("converted")
    monkeypatch.setattr(export, "CONVERTED_CACHE", cache)
    frozen = ModelSpec(classes=CLASSES, input_size=(64, 64), clip_length=4, lstm_units=16, trainable_layers=0)
    frames = frames_of(video, frozen)
    first = make_bundle(tmp_path_factory.mktemp("bundle") / "first", frozen, frames[:16])
    second = tmp_path_factory.mktemp("bundle") / "second"
    shutil.copytree(first, second)
    export_bundle(first, frames)
    (cached,) = cache.glob("*.onnx")
    written = cached.stat().st_mtime_ns
    report = export_bundle(second, frames)
    assert cached.stat().st_mtime_ns == written
    assert (second / "encoder.onnx").read_bytes() == cached.read_bytes()
    assert report["check"]["encoder_max_rel"] < 1e-4

    trained = make_bundle(tmp_path_factory.mktemp("bundle"), SPECS["seed_lstm"], frames[:16])
    export_bundle(trained, frames)
    assert len(list(cache.glob("*.onnx"))) == 1
