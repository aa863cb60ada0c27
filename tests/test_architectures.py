"""The seed LRCN layer for layer, the variants, and the encoder/head split used by the runtime."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from lrcn.models.architectures import build_head, build_model, feature_size, split_model  # noqa: E402
from lrcn.stream.bundle import BundleMeta, ModelSpec, read_meta, write_meta  # noqa: E402
from lrcn.stream.errors import LrcnError  # noqa: E402
from tests.paths import PRETRAINED, needs_pretrained  # noqa: E402

CLASSES = ("a", "b", "c", "d")

# (wrapped layer, filters, kernel, strides, padding, activation, output shape, params) for
# the seed at (16, 112, 112, 3), as the user wrote it.
SEED_112 = [
    ("Conv2D", 32, (7, 7), (2, 2), "same", "relu", (16, 56, 56, 32), 4736),
    ("Conv2D", 32, (3, 3), (1, 1), "valid", "relu", (16, 54, 54, 32), 9248),
    ("MaxPooling2D", None, (2, 2), (2, 2), "valid", None, (16, 27, 27, 32), 0),
    ("Conv2D", 64, (3, 3), (1, 1), "same", "relu", (16, 27, 27, 64), 18496),
    ("Conv2D", 64, (3, 3), (1, 1), "same", "relu", (16, 27, 27, 64), 36928),
    ("MaxPooling2D", None, (2, 2), (2, 2), "valid", None, (16, 13, 13, 64), 0),
    ("Conv2D", 128, (3, 3), (1, 1), "same", "relu", (16, 13, 13, 128), 73856),
    ("Conv2D", 128, (3, 3), (1, 1), "same", "relu", (16, 13, 13, 128), 147584),
    ("MaxPooling2D", None, (2, 2), (2, 2), "valid", None, (16, 6, 6, 128), 0),
    ("Conv2D", 256, (3, 3), (1, 1), "same", "relu", (16, 6, 6, 256), 295168),
    ("Conv2D", 256, (3, 3), (1, 1), "same", "relu", (16, 6, 6, 256), 590080),
    ("MaxPooling2D", None, (2, 2), (2, 2), "valid", None, (16, 3, 3, 256), 0),
    ("Flatten", None, None, None, None, None, (16, 2304), 0),
]


def describe(layer):
    config = layer.get_config()
    kernel = config.get("kernel_size", config.get("pool_size"))
    return (
        type(layer).__name__,
        config.get("filters"),
        tuple(kernel) if kernel else None,
        tuple(config["strides"]) if "strides" in config else None,
        config.get("padding"),
        config.get("activation"),
    )


def test_seed_is_the_users_model_layer_for_layer():
    model = build_model(ModelSpec(classes=CLASSES))
    per_frame, head = model.layers[:13], model.layers[13:]
    assert all(isinstance(layer, layers.TimeDistributed) for layer in per_frame)
    for layer, expected in zip(per_frame, SEED_112):
        assert describe(layer.layer) == expected[:6]
        assert layer.output.shape[1:] == expected[6]
        assert layer.count_params() == expected[7]
    assert model.layers[1].layer.get_config()["kernel_initializer"]["class_name"] == "HeNormal"
    dropout, lstm, dense = head
    assert isinstance(dropout, layers.Dropout) and dropout.rate == 0.7
    assert isinstance(lstm, layers.LSTM) and lstm.units == 512 and lstm.dropout == 0.5
    assert not lstm.return_sequences
    assert isinstance(dense, layers.Dense) and dense.units == 4 and dense.get_config()["activation"] == "softmax"
    assert lstm.count_params() == 4 * 512 * (2304 + 512 + 1)
    assert model.count_params() == 1_176_096 + 5_769_216 + 512 * 4 + 4
    assert model.output_shape == (None, 4)


@pytest.mark.parametrize("clip_length,size,classes", [(8, (64, 64), 3), (20, (96, 128), 7)])
def test_seed_builds_for_any_size_length_and_class_count(clip_length, size, classes):
    spec = ModelSpec(classes=tuple(f"c{i}" for i in range(classes)), clip_length=clip_length, input_size=size)
    model = build_model(spec)
    assert model.input_shape == (None, clip_length, *size, 3)
    assert model.output_shape == (None, classes)
    assert model.layers[12].output.shape[-1] == feature_size(spec)


@pytest.mark.parametrize(
    "backbone,head,per_timestep",
    [("seed", "lstm", False), ("seed", "lstm", True), ("seed", "single_frame", False), ("small", "lstm", False)],
)
def test_encoder_then_head_equals_the_full_model(backbone, head, per_timestep):
    spec = ModelSpec(
        classes=CLASSES,
        backbone=backbone,
        clip_length=6,
        input_size=(64, 64),
        head=head,
        per_timestep=per_timestep,
        lstm_units=32,
    )
    model = build_model(spec)
    encoder, temporal = split_model(model, spec)
    clips = np.random.default_rng(0).random((2, 6, 64, 64, 3), dtype=np.float32)
    full = np.asarray(model(clips, training=False))
    features = np.asarray(encoder(clips.reshape(-1, 64, 64, 3))).reshape(2, 6, -1)
    split = np.asarray(temporal(features, training=False))
    assert full.shape == ((2, 6, 4) if spec.outputs_every_step else (2, 4))
    np.testing.assert_allclose(split, full, atol=1e-5)
    assert np.allclose(full.sum(axis=-1), 1.0, atol=1e-5)


def test_small_backbone_keeps_a_spatial_map():
    spec = ModelSpec(classes=CLASSES, backbone="small", input_size=(64, 96))
    assert feature_size(spec) == (64 // 8) * (96 // 8) * 32
    assert spec.preprocessing == (1 / 127.5, -1.0)


def test_unit_variance_init_gives_features_that_differ_between_frames():
    from lrcn.models.architectures import scale_to_unit_variance

    spec = ModelSpec(classes=CLASSES, input_size=(64, 64))
    keras.utils.set_random_seed(0)
    encoder, _ = split_model(build_model(spec), spec)
    frames = np.random.default_rng(0).random((32, 64, 64, 3), dtype=np.float32)
    before = np.asarray(encoder(frames)).std(axis=0).mean()
    scale_to_unit_variance(encoder, frames)
    after = np.asarray(encoder(frames)).std(axis=0).mean()
    assert before < 0.05 and after > 10 * before


def test_single_frame_baseline_has_no_lstm():
    model = build_model(ModelSpec(classes=CLASSES, head="single_frame"))
    assert not any(isinstance(layer, layers.LSTM) for layer in model.layers)


@needs_pretrained
def test_mobilenet_backbone_loads_imagenet_weights_frozen_or_fine_tuned():
    spec = ModelSpec(
        classes=CLASSES,
        backbone="mobilenet_v2",
        backbone_weights=str(PRETRAINED),
        input_size=(96, 96),
        trainable_layers=0,
        lstm_units=64,
    )
    frozen = build_model(spec)
    backbone = frozen.layers[0].layer
    assert not backbone.trainable_weights
    assert feature_size(spec) == 1280
    # The file's weights, not a fresh initialisation: an ImageNet conv stem has structure.
    stem = backbone.get_layer("Conv1").get_weights()[0]
    fresh = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    assert not np.allclose(stem, fresh.get_layer("Conv1").get_weights()[0])
    tuned = build_model(ModelSpec(**{**spec.to_json(), "trainable_layers": 20}))
    trainable = tuned.layers[0].layer.trainable_weights
    assert 0 < len(trainable) < len(fresh.weights)
    assert not any("bn" in w.path.lower() or "batch" in w.path.lower() for w in trainable)


def test_missing_backbone_weights_is_one_line_error(tmp_path):
    spec = ModelSpec(
        classes=CLASSES, backbone="mobilenet_v2", backbone_weights=str(tmp_path / "none.h5"), trainable_layers=0
    )
    with pytest.raises(LrcnError) as err:
        build_model(spec)
    assert "\n" not in str(err.value)


def test_bundle_meta_round_trip_and_errors(tmp_path):
    spec = ModelSpec(classes=CLASSES, clip_length=8, input_size=(64, 80), per_timestep=True)
    write_meta(tmp_path, BundleMeta(spec=spec, feature_size=256, metrics={"test": {"video_accuracy": 1.0}}))
    loaded = read_meta(tmp_path)
    assert loaded.spec == spec and loaded.feature_size == 256 and loaded.metrics["test"]["video_accuracy"] == 1.0
    data = json.loads((tmp_path / "meta.json").read_text())
    assert data["preprocessing"] == {"color": "RGB", "dtype": "uint8", "scale": 1 / 255, "offset": 0.0}

    cases = {"missing": tmp_path / "nope", "no meta": tmp_path / "empty"}
    (tmp_path / "empty").mkdir()
    for bad in (
        "not json",
        json.dumps({**data, "format_version": 99}),
        json.dumps({**data, "model": {**data["model"], "colour": 1}}),
        json.dumps({**data, "model": {**data["model"], "backbone": "vgg"}}),
    ):
        folder = tmp_path / f"bad{len(cases)}"
        folder.mkdir()
        (folder / "meta.json").write_text(bad)
        cases[bad[:20]] = folder
    for folder in cases.values():
        with pytest.raises(LrcnError) as err:
            read_meta(folder)
        assert "\n" not in str(err.value)


def test_head_over_features_matches_spec():
    spec = ModelSpec(classes=CLASSES, clip_length=5, lstm_units=16)
    head = build_head(spec, 40)
    assert head.input_shape == (None, 5, 40) and head.output_shape == (None, 4)


# The pooling head: standardised mean and max over time, dropout, softmax.

POOL_SPEC = ModelSpec(
    classes=CLASSES, backbone="small", input_size=(32, 48), clip_length=5, head="pool", feature_dropout=0.3, l2=0.01
)


def pooling_layer(model):
    from lrcn.models.architectures import TemporalPooling

    (layer,) = [layer for layer in model.layers if isinstance(layer, TemporalPooling)]
    return layer


def random_windows(rng, batch, length, size):
    """Windows whose features have very different offsets and spreads, as real features do."""
    offsets, spreads = rng.normal(0, 5, size), rng.uniform(0.1, 10, size)
    return (rng.standard_normal((batch, length, size)) * spreads + offsets).astype(np.float32)


def test_pool_head_layers_and_shapes():
    from lrcn.models.architectures import TemporalPooling

    model = build_model(POOL_SPEC)
    features = feature_size(POOL_SPEC)
    assert features == (32 // 8) * (48 // 8) * 32
    per_frame = [layer for layer in model.layers if isinstance(layer, layers.TimeDistributed)]
    pooling, dropout, dense = model.layers[len(per_frame) :]
    assert isinstance(pooling, TemporalPooling)
    assert isinstance(dropout, layers.Dropout) and dropout.rate == 0.3
    assert isinstance(dense, layers.Dense) and dense.units == 4 and dense.get_config()["activation"] == "softmax"
    assert not any(isinstance(layer, layers.LSTM) for layer in model.layers)
    assert pooling.output.shape == (None, 2 * features)
    assert model.output_shape == (None, 4)
    # The statistics are fixed weights, identity until set; only the softmax layer trains.
    assert [w.shape for w in pooling.non_trainable_weights] == [(2 * features,), (2 * features,)]
    assert not pooling.trainable_weights
    center, inverse_scale = pooling.get_weights()
    assert not center.any() and (inverse_scale == 1).all()
    assert dense.kernel.shape == (2 * features, 4)
    assert dense.kernel_regularizer is not None and np.isclose(dense.kernel_regularizer.get_config()["l2"], 0.01)
    unregularised = build_model(ModelSpec(**{**POOL_SPEC.to_json(), "l2": 0.0}))
    assert unregularised.layers[-1].kernel_regularizer is None
    head = build_head(POOL_SPEC, 7)
    assert head.input_shape == (None, 5, 7) and head.output_shape == (None, 4)


def test_pool_layer_is_mean_then_max_over_time():
    from lrcn.models.architectures import TemporalPooling

    windows = random_windows(np.random.default_rng(3), 2, 5, 6)
    out = np.asarray(TemporalPooling()(windows))
    np.testing.assert_allclose(out, np.concatenate([windows.mean(1), windows.max(1)], -1), rtol=1e-6, atol=1e-6)


def test_set_statistics_standardises_the_pooled_windows():
    from lrcn.models.architectures import TemporalPooling

    rng = np.random.default_rng(0)
    windows = random_windows(rng, 200, 6, 9)
    layer = TemporalPooling()
    layer.build(windows.shape)
    layer.set_statistics(np.asarray(TemporalPooling.pool(windows)))
    out = np.asarray(layer(windows))
    assert out.shape == (200, 18)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)
    # Not the identity: the raw pooled vectors are far from standard.
    raw = np.asarray(TemporalPooling.pool(windows))
    assert np.abs(raw.mean(axis=0)).max() > 1 and np.abs(raw.std(axis=0) - 1).max() > 1


def test_set_statistics_leaves_a_constant_feature_at_scale_one_and_finite():
    from lrcn.models.architectures import TemporalPooling

    windows = random_windows(np.random.default_rng(1), 50, 4, 3)
    windows[:, :, 1] = 2.5  # a dead unit
    layer = TemporalPooling()
    layer.build(windows.shape)
    layer.set_statistics(np.asarray(TemporalPooling.pool(windows)))
    _, inverse_scale = layer.get_weights()
    np.testing.assert_allclose(inverse_scale[[1, 4]], 1.0)  # not 1 / (a tiny spread)
    out = np.asarray(layer(windows))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, [1, 4]], 0, atol=1e-6)
    windows[0, 0, 1] = 2.6  # a later activation moves the output by its own size, not a thousand times it
    assert np.abs(np.asarray(layer(windows))[0, [1, 4]]).max() < 0.2


def test_pool_model_saved_as_keras_loads_with_its_statistics(tmp_path):
    rng = np.random.default_rng(2)
    keras.utils.set_random_seed(2)
    model = build_model(POOL_SPEC)
    features = feature_size(POOL_SPEC)
    pooling = pooling_layer(model)
    pooling.set_statistics(rng.normal(1.0, 3.0, (40, 2 * features)).astype(np.float32))
    center, inverse_scale = pooling.get_weights()
    assert np.abs(center).max() > 0.5 and np.abs(inverse_scale - 1).max() > 0.1
    clips = rng.random((3, 5, 32, 48, 3), dtype=np.float32)
    expected = np.asarray(model(clips, training=False))
    model.save(tmp_path / "pool.keras")
    loaded = keras.models.load_model(tmp_path / "pool.keras", compile=False)
    loaded_pooling = pooling_layer(loaded)
    assert type(loaded_pooling).__module__ == "lrcn.models.architectures"
    for saved, restored in zip(pooling.get_weights(), loaded_pooling.get_weights()):
        np.testing.assert_array_equal(saved, restored)
    np.testing.assert_array_equal(np.asarray(loaded(clips, training=False)), expected)
    assert loaded.layers[-1].kernel_regularizer is not None


def test_pool_encoder_then_head_equals_the_full_model():
    model = build_model(POOL_SPEC)
    encoder, temporal = split_model(model, POOL_SPEC)
    pooling_layer(model).set_statistics(np.random.default_rng(4).normal(0.5, 2, (20, 2 * feature_size(POOL_SPEC))))
    clips = np.random.default_rng(0).random((2, 5, 32, 48, 3), dtype=np.float32)
    full = np.asarray(model(clips, training=False))
    features = np.asarray(encoder(clips.reshape(-1, 32, 48, 3))).reshape(2, 5, -1)
    np.testing.assert_allclose(np.asarray(temporal(features, training=False)), full, atol=1e-5)
    assert pooling_layer(temporal) is pooling_layer(model)


@pytest.mark.parametrize(
    "change,words",
    [
        ({"per_timestep": True}, ("per-timestep", "pool")),
        ({"per_timestep": True, "head": "single_frame"}, ("per-timestep", "single_frame")),
        ({"l2": -0.001}, ("l2",)),
        ({"l2": 10.0}, ("l2",)),
        ({"l2": float("nan")}, ("l2",)),
    ],
)
def test_spec_rejects_per_timestep_pooling_and_bad_l2_in_one_line(change, words):
    with pytest.raises(LrcnError) as err:
        ModelSpec(**{**POOL_SPEC.to_json(), **change})
    message = str(err.value)
    assert "\n" not in message and message.startswith("bad model spec:")
    for word in words:
        assert word in message, message


def test_pool_spec_with_l2_round_trips_through_meta(tmp_path):
    write_meta(tmp_path, BundleMeta(spec=POOL_SPEC, feature_size=768))
    loaded = read_meta(tmp_path)
    assert loaded.spec == POOL_SPEC and loaded.spec.head == "pool" and loaded.spec.l2 == 0.01
    assert not loaded.spec.outputs_every_step
