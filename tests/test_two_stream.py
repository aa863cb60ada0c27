"""Bundles of modalities (rgb, flow): trained on frozen encoders' features, exported, checked against Keras.

The tiny ones use the seed CNN frozen at random (LSUV-scaled) weights at 64 px on synthetic videos, so
CI without ../shared builds, exports and checks a real two-stream bundle; the ImageNet one needs ../shared.
"""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from lrcn.models.frame_cache import clip_indices, window_starts  # noqa: E402
from lrcn.models.experiment import load_bundle  # noqa: E402
from lrcn.models.export import export_from_paths  # noqa: E402
from lrcn.models.modalities import model_inputs  # noqa: E402
from lrcn.models.train import TrainConfig  # noqa: E402
from lrcn.models.two_stream import IDLE, JointOptions, train_joint_and_test  # noqa: E402
from lrcn.stream.bundle import ModelSpec, read_meta  # noqa: E402
from lrcn.stream.flow import zero_field  # noqa: E402
from lrcn.stream.heads import head_type, load_head  # noqa: E402
from lrcn.stream.video import read_frames, read_motion  # noqa: E402
from tests.paths import PRETRAINED, SHARED, needs_pretrained, needs_shared_data  # noqa: E402
from tests.cli import assert_one_line_error, lrcn  # noqa: E402
from tests.bundles import TINY

TOLERANCE = 1e-4


def train_tiny(moving, out, modalities, fusion, stills, head="lstm", epochs=12, learning_rate=3e-3):
    root, dataset, train_videos, test_videos = moving
    classes = (*dataset.classes, IDLE) if stills else dataset.classes
    spec = ModelSpec(classes=classes, modalities=modalities, fusion=fusion, head=head, **TINY)
    config = TrainConfig(
        epochs=epochs,
        batch_size=8,
        learning_rate=learning_rate,
        patience=epochs,
        clips_per_video=4,
        cache_dir=None,
        progress=False,
    )
    result = train_joint_and_test(
        spec,
        train_videos,
        test_videos,
        out,
        config,
        JointOptions(fusions=(fusion,), stills=stills),
        {"data": str(root)},
    )
    export_from_paths(out, video=test_videos[0].path, int8=True, calibration=root, whole_model=fusion == "early")
    return out, result


@pytest.fixture(scope="module")
def early(moving, tmp_path_factory):
    """Early fusion with stills; the pooling head, which learns from a few random-CNN features in a few epochs."""
    return train_tiny(
        moving,
        tmp_path_factory.mktemp("early") / "bundle",
        ("rgb", "flow"),
        "early",
        stills=True,
        head="pool",
        epochs=20,
        learning_rate=1e-2,
    )


@pytest.fixture(scope="module")
def late(moving, tmp_path_factory):
    return train_tiny(moving, tmp_path_factory.mktemp("late") / "bundle", ("rgb", "flow"), "late", stills=False)


def assert_one_line_usage_error(result, *words):
    """argparse's rejection of --modalities: exit 2, exactly one `lrcn train: error:` line."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("lrcn train: error: argument --modalities:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def onnx_features(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames"] and [o.name for o in session.get_outputs()] == [
        "features"
    ]
    return session.run(["features"], {"frames": inputs})[0]


def real_inputs(video, spec):
    frames = read_frames(video, spec.input_size, spec.fps)
    fields, _ = read_motion(video, spec.input_size, spec.fps)
    assert len(frames) == len(fields)
    return {"rgb": frames, "flow": fields}


def keras_windows(model, spec, inputs, starts):
    """The Keras model on every window at `starts` of a video's uint8 inputs: [windows, classes]."""
    n = len(next(iter(inputs.values())))
    batch = {
        name: np.stack([x[clip_indices(n, spec.clip_length, s)] for s in starts])
        for name, x in inputs.items()
        if name in spec.modalities
    }
    probs = np.asarray(model(model_inputs(spec, batch), training=False))
    return probs.mean(axis=1) if spec.outputs_every_step else probs


def exported_features(bundle, spec, inputs):
    from lrcn.stream.modalities import modality

    return np.concatenate(
        [onnx_features(bundle / modality(name).encoder_file, inputs[name]) for name in spec.modalities], axis=-1
    )


def windows_of(features, spec, starts):
    return np.stack([features[clip_indices(len(features), spec.clip_length, s)] for s in starts])


@pytest.mark.slow
def test_two_stream_bundle_exported_encoders_and_head_equal_keras_on_real_frames_and_fields(early, moving):
    bundle, result = early
    model, meta = load_bundle(bundle)
    spec = meta.spec
    assert spec.modalities == ("rgb", "flow") and spec.fusion == "early" and spec.classes[-1] == IDLE
    raw = json.loads((bundle / "meta.json").read_text())
    assert raw["model"]["modalities"] == ["rgb", "flow"] and sum(raw["feature_sizes"].values()) == raw["feature_size"]
    assert list(raw["feature_sizes"]) == ["rgb", "flow"] and raw["training"]["stills"]["train_clips"] >= 1
    assert {t.name: t.shape[-1] for t in model.inputs} == {"rgb": 3, "flow": 2}
    for name in (
        "encoder.onnx",
        "encoder.flow.onnx",
        "encoder.int8.onnx",
        "encoder.flow.int8.onnx",
        "head.npz",
        "model.onnx",
        "export.json",
    ):
        assert (bundle / name).is_file(), name
    report = json.loads((bundle / "export.json").read_text())
    assert report["check"]["encoder_head_probabilities_max_abs"] < TOLERANCE
    assert report["check"]["model_onnx_probabilities_max_abs"] < TOLERANCE
    assert report["int8"]["rgb"]["feature_cosine_min"] > 0.98 and report["int8"]["flow"]["feature_cosine_min"] > 0.98
    head = load_head(bundle / "head.npz")
    assert head.kind == spec.head and head.feature_size == meta.feature_size and head.classes == spec.classes
    video = moving[3][1].path  # a held-out video, not the one export checked on
    inputs = real_inputs(video, spec)
    assert (inputs["flow"] != 128).any(), "the synthetic video moves"
    starts = window_starts(len(inputs["rgb"]), spec.clip_length, 1)
    keras_probs = keras_windows(model, spec, inputs, starts)
    features = exported_features(bundle, spec, inputs)
    exported = head.clip_probabilities(windows_of(features, spec, starts))
    assert len(starts) >= 8 and np.abs(exported - keras_probs).max() < TOLERANCE


@pytest.mark.slow
def test_two_stream_bundle_trained_with_stills_labels_a_held_frame_and_a_blank_idle(early, moving):
    bundle, result = early
    model, meta = load_bundle(bundle)
    spec = meta.spec
    idle = spec.classes.index(IDLE)
    held_labels, moving_labels = [], []
    for video in moving[3]:  # held-out videos
        frames = read_frames(video.path, spec.input_size, spec.fps)
        for index in (len(frames) // 3, 2 * len(frames) // 3):
            held = {
                "rgb": np.repeat(frames[index][None], spec.clip_length, axis=0),
                "flow": np.repeat(zero_field(spec.input_size)[None], spec.clip_length, axis=0),
            }
            held_labels.append(keras_windows(model, spec, held, [0]).argmax())
        # The same video in motion (windows after its first, whose first field is a segment start's zero)
        moving_labels += list(keras_windows(model, spec, real_inputs(video.path, spec), [1, 3, 5]).argmax(axis=1))
    assert np.mean(np.array(held_labels) == idle) >= 0.9, held_labels
    assert np.mean(np.array(moving_labels) == idle) < 0.2, moving_labels  # random-CNN features: a weak motion signal
    blank = {
        "rgb": np.full((spec.clip_length, *spec.input_size, 3), 77, np.uint8),
        "flow": np.repeat(zero_field(spec.input_size)[None], spec.clip_length, axis=0),
    }
    assert keras_windows(model, spec, blank, [0]).argmax() == idle
    features = exported_features(bundle, spec, blank)
    assert load_head(bundle / "head.npz").clip_probabilities(features[None]).argmax() == idle


@pytest.mark.slow
def test_late_fusion_bundle_head_npz_layout_and_its_sub_heads_equal_keras(late, moving):
    bundle, _ = late
    model, meta = load_bundle(bundle)
    spec = meta.spec
    assert spec.fusion == "late" and len(spec.fusion_weights) == 2 and abs(sum(spec.fusion_weights) - 1) < 1e-6
    assert set(meta.training["fusion_weight_validation"]) == {f"{i / 10:g}" for i in range(11)}
    with np.load(bundle / "head.npz") as data:
        arrays = {key: data[key] for key in data.files}
    assert str(arrays["kind"]) == "late" and str(arrays["head_kind"]) == spec.head
    assert list(arrays["modalities"]) == ["rgb", "flow"]
    assert list(arrays["feature_sizes"]) == [meta.feature_sizes["rgb"], meta.feature_sizes["flow"]]
    np.testing.assert_allclose(arrays["weights"], spec.fusion_weights)
    classes = tuple(str(c) for c in arrays["classes"])
    sub_heads = {
        name: head_type(str(arrays["head_kind"])).from_arrays(
            classes,
            {key[len(name) + 1 :]: value for key, value in arrays.items() if key.startswith(name + ".")}
            | {"per_timestep": arrays["per_timestep"]},
        )
        for name in spec.modalities
    }
    inputs = real_inputs(moving[3][2].path, spec)
    starts = window_starts(len(inputs["rgb"]), spec.clip_length, 1)
    windows = windows_of(exported_features(bundle, spec, inputs), spec, starts)
    split = meta.feature_sizes["rgb"]
    exported = arrays["weights"][0] * sub_heads["rgb"].clip_probabilities(windows[..., :split]) + arrays["weights"][
        1
    ] * sub_heads["flow"].clip_probabilities(windows[..., split:])
    assert np.abs(exported - keras_windows(model, spec, inputs, starts)).max() < TOLERANCE
    report = json.loads((bundle / "export.json").read_text())
    assert report["check"]["encoder_head_probabilities_max_abs"] < TOLERANCE


@pytest.mark.slow
def test_cli_flow_only_bundle_trains_evaluates_and_exports_its_one_flow_encoder(moving, tmp_path):
    root = moving[0]
    out = tmp_path / "flow"
    trained = lrcn(
        "train",
        root,
        "--out",
        out,
        "--modalities",
        "flow",
        "--backbone",
        "seed",
        "--trainable-layers",
        "0",
        "--size",
        "64",
        "--clip-length",
        "4",
        "--lstm-units",
        "16",
        "--epochs",
        "2",
        "--flow-encoder",
        "scratch",
        "--test-groups",
        "03",
        "--no-refit",
        "--no-cache",
        "--quiet",
    )
    assert trained.returncode == 0, trained.stderr
    meta = read_meta(out)
    assert meta.spec.modalities == ("flow",) and meta.feature_sizes is None and IDLE in meta.spec.classes
    # the flow CNN was trained on flow (the small CNN, from scratch), and the bundle says so
    assert meta.spec.flow_trained and meta.spec.flow_backbone == "small"
    assert meta.training["flow_encoder"]["chosen"] == "scratch"
    assert meta.modality_feature_sizes() == {"flow": meta.feature_size} and "fusion_choice" not in meta.training
    evaluated = lrcn("evaluate", out, root, "--test-groups", "03", "--no-cache", "--quiet")
    assert evaluated.returncode == 0 and "video accuracy" in evaluated.stdout, evaluated.stderr
    exported = lrcn("export", out, "--video", moving[3][0].path)
    assert exported.returncode == 0 and "flow encoder" in exported.stdout, exported.stderr
    assert (out / "encoder.flow.onnx").is_file() and not (out / "encoder.onnx").exists()
    assert load_head(out / "head.npz").feature_size == meta.feature_size


@pytest.mark.slow
def test_cli_bad_modalities_and_a_trainable_two_stream_backbone_are_one_line_errors(moving, tmp_path):
    root = moving[0]
    common = ("--out", tmp_path / "b", "--size", "64", "--clip-length", "4", "--epochs", "1", "--no-cache")
    assert_one_line_usage_error(lrcn("train", root, *common, "--modalities", "rgb,depth"), "depth", "rgb, flow")
    assert_one_line_usage_error(lrcn("train", root, *common, "--modalities", "rgb,rgb"), "distinct")
    assert_one_line_error(lrcn("train", root, *common, "--modalities", "rgb,flow"), "--trainable-layers 0")
    assert_one_line_error(
        lrcn("train", root, *common, "--modalities", "flow", "--trainable-layers", "0", "--fusion", "late"),
        "two modalities",
    )
    assert_one_line_error(
        lrcn("train", root, *common, "--modalities", "rgb,flow", "--trainable-layers", "0", "--cv"), "--cv"
    )
    assert not (tmp_path / "b").exists()


def test_rgb_only_arguments_give_the_spec_of_before():
    """No --modalities: the RGB LRCN's spec exactly (no idle class, no modality fields in meta.json)."""
    import argparse

    from lrcn.tools.cli.train import add_train_arguments, joint_from_args, spec_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["DATA", "--out", "x", "--backbone", "mobilenet_v2", "--weights", "w.h5"])
    spec = spec_from_args(args, ("a", "b"))
    assert not joint_from_args(args)
    assert spec == ModelSpec(
        classes=("a", "b"), backbone="mobilenet_v2", backbone_weights="w.h5", trainable_layers=0, input_size=(160, 160)
    )
    assert not {"modalities", "fusion", "fusion_weights", "flow_backbone", "flow_trained"} & set(spec.to_json())
    both = spec_from_args(parser.parse_args(["DATA", "--out", "x", "--modalities", "rgb,flow"]), ("a", "b"))
    assert both.classes == ("a", "b", IDLE) and both.modalities == ("rgb", "flow")
    assert spec_from_args(
        parser.parse_args(["DATA", "--out", "x", "--modalities", "rgb,flow", "--no-stills"]), ("a", "b")
    ).classes == ("a", "b")


@pytest.mark.slow
@pytest.mark.heavy  # two MobileNetV2 encoders converted to ONNX: minutes
@needs_shared_data
@needs_pretrained
def test_imagenet_two_stream_bundle_on_weizmann_equals_its_export_on_real_frames_and_fields(tmp_path):
    """MobileNetV2 (ImageNet) encoders over real footage and its DIS flow: train a head, export, compare."""
    data = SHARED / "data" / "weizmann4"
    out = tmp_path / "both"
    trained = lrcn(
        "train",
        data,
        "--out",
        out,
        "--modalities",
        "rgb,flow",
        "--fusion",
        "early",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        PRETRAINED,
        "--size",
        "112",
        "--epochs",
        "3",
        "--test-groups",
        "8",
        "--no-refit",
        "--quiet",
    )
    assert trained.returncode == 0, trained.stderr
    report = export_from_paths(out)
    assert report["check"]["encoder_head_probabilities_max_abs"] < TOLERANCE
    model, meta = load_bundle(out)
    spec = meta.spec
    inputs = real_inputs(data / "bend" / "s8_bend.avi", spec)
    starts = window_starts(len(inputs["rgb"]), spec.clip_length, 3)
    windows = windows_of(exported_features(out, spec, inputs), spec, starts)
    probs = load_head(out / "head.npz").clip_probabilities(windows)
    assert np.abs(probs - keras_windows(model, spec, inputs, starts)).max() < TOLERANCE
