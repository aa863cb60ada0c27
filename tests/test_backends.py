"""Encoder backends, the engine cache, INT8, and one-line errors for broken bundles."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lrcn.stream.encoders import (
    ENCODER_FILE,
    backend_names,
    check_frames,
    open_encoder,
    register,
    unavailable_reason,
)
from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
from lrcn.stream.encoders.tensorrt import engine_key, require_tensorrt
from lrcn.stream.errors import LrcnError
from lrcn.stream.runtime_bundle import load_runtime_bundle
from tests.cli import lrcn


def tensorrt_problem() -> str | None:
    try:
        require_tensorrt()
    except LrcnError as err:
        return str(err)
    return None


TENSORRT_PROBLEM = tensorrt_problem()
needs_tensorrt = pytest.mark.skipif(TENSORRT_PROBLEM is not None, reason=f"{TENSORRT_PROBLEM}")


def broken_copy(tmp_path, exported_seed):
    bundle = tmp_path / "bundle"
    shutil.copytree(exported_seed[0], bundle)
    return bundle


def edit_meta(bundle: Path, **model_fields):
    meta = json.loads((bundle / "meta.json").read_text())
    meta["model"].update(model_fields)
    (bundle / "meta.json").write_text(json.dumps(meta))


def assert_one_line(err: pytest.ExceptionInfo, *words):
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_engine_key_names_gpu_version_precision_batch_and_onnx_hash():
    key = engine_key("NVIDIA GeForce RTX 4090", "10.3.0", "int8", "0123456789abcdef" * 4, 16)
    assert key == "nvidia-geforce-rtx-4090_trt10.3.0_int8_b16_0123456789abcdef"
    variants = {
        engine_key(*args)
        for args in [
            ("Orin", "10.3.0", "fp16", "a" * 64, 16),
            ("Xavier", "10.3.0", "fp16", "a" * 64, 16),
            ("Orin", "8.6.1", "fp16", "a" * 64, 16),
            ("Orin", "10.3.0", "int8", "a" * 64, 16),
            ("Orin", "10.3.0", "fp16", "b" * 64, 16),
            ("Orin", "10.3.0", "fp16", "a" * 64, 8),
        ]
    }
    assert len(variants) == 6
    with pytest.raises(LrcnError, match="precision"):
        engine_key("Orin", "10.3.0", "int4", "a" * 64, 16)


def test_onnxruntime_encoder_batches_equal_single_frames_and_takes_a_thread_count(exported_seed):
    bundle, frames, _ = exported_seed
    encoder = open_encoder(bundle, "onnxruntime", threads=1)
    assert encoder.session.get_session_options().intra_op_num_threads == 1
    assert "CPUExecutionProvider" in encoder.providers
    batch = encoder.encode(frames[:8])
    assert batch.shape == (8, encoder.feature_size) and batch.dtype == np.float32
    single = np.concatenate([encoder.encode(frames[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)


def test_encoder_rejects_frames_that_are_not_uint8_at_the_model_size(exported_seed):
    encoder = open_encoder(exported_seed[0])
    with pytest.raises(LrcnError) as err:
        encoder.encode(exported_seed[1][:2].astype(np.float32))
    assert_one_line(err, "uint8", "64")
    with pytest.raises(LrcnError):
        encoder.encode(np.zeros((2, 32, 32, 3), np.uint8))


def test_int8_encoder_stays_close_to_fp32_on_real_frames(exported_seed):
    bundle, frames, _ = exported_seed
    fp32 = load_runtime_bundle(bundle)
    int8 = load_runtime_bundle(bundle, backend="onnxruntime-int8")
    a, b = fp32.encoder.encode(frames), int8.encoder.encode(frames)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99


def first_conv_encoder(kernel: int, pads: list[int], scale: float, offset: float, size: int = 16):
    """An encoder.onnx as models/export.py writes it: uint8 NHWC frames, Cast, Mul, Add, Transpose
    to NCHW, a stride-2 Conv + Relu, back to NHWC, and Keras's Flatten as tf2onnx writes it
    (a Reshape to a shape computed from the input's)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(kernel)
    constants = {
        "scale": np.array(scale, np.float32),
        "offset": np.array(offset, np.float32),
        "w": rng.normal(0, 0.2, (16, 3, kernel, kernel)).astype(np.float32),
        "b": rng.normal(0, 0.1, 16).astype(np.float32),
        "starts": np.array([0], np.int64),
        "ends": np.array([1], np.int64),
        "features": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["pixels"]),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["nchw", "w", "b"], ["conv"], strides=[2, 2], pads=pads, kernel_shape=[kernel, kernel]
        ),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["nhwc"], ["shape"]),
        helper.make_node("Slice", ["shape", "starts", "ends"], ["batch"]),
        helper.make_node("Concat", ["batch", "features"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["nhwc", "flat_shape"], ["features_out"]),
    ]
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", size, size, 3])
    features = helper.make_tensor_value_info("features_out", TensorProto.FLOAT, ["N", (size // 2) ** 2 * 16])
    graph = helper.make_graph(
        nodes, "encoder", [frames], [features], [numpy_helper.from_array(v, k) for k, v in constants.items()]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "kernel, pads, offset",
    [
        (7, [2, 2, 3, 3], 0.0),  # the seed's first conv ("same", 7x7/2)
        (5, [1, 1, 2, 2], 0.0),  # odd padding before: the kernel shifts by one tap
        (3, [0, 0, 1, 1], -1.0),  # MobileNetV2's, with its [-1, 1] normalisation (no scale folding)
        (3, [1, 1, 1, 1], 0.0),
    ],
)
def test_int8_graph_preparation_keeps_the_fp32_output(tmp_path, kernel, pads, offset):
    onnx = pytest.importorskip("onnx")
    import onnxruntime

    from lrcn.stream.quantize import prepare_for_int8

    model = first_conv_encoder(kernel, pads, 1 / 255 if offset == 0 else 1 / 127.5, offset)
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)

    def run(model):
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"frames": frames})[0]

    expected = run(model)
    pixels = prepare_for_int8(model)
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model), expected, rtol=1e-5, atol=1e-5)
    ops = [node.op_type for node in model.graph.node]
    (conv,) = [node for node in model.graph.node if node.op_type == "Conv"]
    assert [list(a.ints) for a in conv.attribute if a.name == "strides"] == [[1, 1]]  # space-to-depth
    assert "Flatten" in ops and "Shape" not in ops
    assert (pixels is not None) == (offset == 0) and ("Mul" in ops) == (offset != 0)


def test_int8_graph_preparation_leaves_a_first_conv_whose_weights_are_computed():
    """Weights that are no initializer (here a Constant node's output) have nothing to fold the
    input scale into: the graph keeps its Mul and its output, and no pixels tensor is named."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime
    from onnx import helper

    from lrcn.stream.quantize import prepare_for_int8

    model = first_conv_encoder(7, [2, 2, 3, 3], 1 / 255, 0.0)
    (weights,) = [i for i in model.graph.initializer if i.name == "w"]
    model.graph.initializer.remove(weights)
    model.graph.node.insert(0, helper.make_node("Constant", [], ["w"], value=weights))
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)

    def run(model):
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"frames": frames})[0]

    expected = run(model)
    assert prepare_for_int8(model) is None
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model), expected, rtol=1e-5, atol=1e-5)
    assert "Mul" in [node.op_type for node in model.graph.node]


def test_int8_encoder_takes_the_uint8_frames_straight_into_the_first_conv(tmp_path):
    onnx = pytest.importorskip("onnx")

    from lrcn.stream.quantize import quantize_int8

    onnx.save(first_conv_encoder(7, [2, 2, 3, 3], 1 / 255, 0.0), str(tmp_path / "encoder.onnx"))
    frames = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    quantize_int8(tmp_path / "encoder.onnx", tmp_path / "encoder.int8.onnx", frames)
    graph = onnx.load(str(tmp_path / "encoder.int8.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert "Cast" not in ops and "Mul" not in ops, ops
    # The first QuantizeLinear is after the first Conv: its input arrives quantised already.
    assert ops.index("Conv") < ops.index("QuantizeLinear"), ops
    fp32 = OnnxRuntimeEncoder(tmp_path / "encoder.onnx").session.run(None, {"frames": frames})[0]
    int8 = OnnxRuntimeEncoder(tmp_path / "encoder.int8.onnx").encode(frames)
    cosine = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1))
    assert cosine.min() > 0.99


@pytest.mark.parametrize(
    "breakage, words",
    [
        ("no encoder.onnx", ["no encoder.onnx", "lrcn export"]),
        ("no head.npz", ["no head.npz"]),
        ("no meta.json", ["no meta.json"]),
        ("garbage encoder.onnx", ["cannot load", "encoder.onnx"]),
        ("wrong input size", ["72x72", "64x64"]),
        ("other classes", ["classes", "run"]),
        ("fewer classes", ["classes"]),
        ("wrong head type", ["single_frame"]),
    ],
)
def test_broken_or_partial_bundle_is_one_line_error(tmp_path, exported_seed, breakage, words):
    bundle = broken_copy(tmp_path, exported_seed)
    if breakage.startswith("no "):
        (bundle / breakage[3:]).unlink()
    elif breakage == "garbage encoder.onnx":
        (bundle / "encoder.onnx").write_bytes(b"not an onnx model")
    elif breakage == "wrong input size":
        edit_meta(bundle, input_size=[72, 72])
    elif breakage == "other classes":
        edit_meta(bundle, classes=["bend", "jumping_jack", "run"])
    elif breakage == "fewer classes":
        edit_meta(bundle, classes=["bend", "jumping_jack"])
    else:
        edit_meta(bundle, head="single_frame")
    with pytest.raises(LrcnError) as err:
        load_runtime_bundle(bundle)
    assert_one_line(err, *words)


class OneFrameAtATime:
    """A backend as its own module would define one: encoder.onnx in ONNX Runtime, fed one frame per run."""

    name = "one-frame-at-a-time"

    def __init__(self, bundle: Path, threads: int | None):
        self.session = OnnxRuntimeEncoder(bundle / ENCODER_FILE, threads)
        self.input_size, self.feature_size = self.session.input_size, self.session.feature_size

    def encode(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames, self.input_size)
        features = [self.session.encode(frame[None]) for frame in frames]
        return np.concatenate(features) if features else np.zeros((0, self.feature_size), np.float32)


@register("test-one-frame-at-a-time")
def open_one_frame_at_a_time(bundle: Path, *, threads, precision, max_batch, modality) -> OneFrameAtATime:
    return OneFrameAtATime(bundle, threads)


def test_a_new_backend_is_one_registered_opener(exported_seed):
    from lrcn.tools.cli.doctor import backend_lines

    bundle, frames, _ = exported_seed
    names = backend_names()  # the built-in ones first, the default first
    assert names[:3] == ("onnxruntime", "onnxruntime-int8", "tensorrt") and "test-one-frame-at-a-time" in names
    encoder = open_encoder(bundle, "test-one-frame-at-a-time", threads=1)
    assert encoder.name == "one-frame-at-a-time"
    expected = open_encoder(bundle, "onnxruntime", threads=1).encode(frames[:6])
    np.testing.assert_allclose(encoder.encode(frames[:6]), expected, rtol=1e-5, atol=1e-5)
    loaded = load_runtime_bundle(bundle, backend="test-one-frame-at-a-time", threads=1)
    assert isinstance(loaded.encoder.encoders["rgb"], OneFrameAtATime)  # the bundle's one modality
    np.testing.assert_allclose(
        loaded.clip_probabilities(frames[:4]), load_runtime_bundle(bundle).clip_probabilities(frames[:4]), atol=1e-6
    )
    assert unavailable_reason("test-one-frame-at-a-time") is None
    assert "backend test-one-frame-at-a-time: usable" in backend_lines()
    with pytest.raises(ValueError, match="unique name"):
        register("onnxruntime")(open_one_frame_at_a_time)


def test_unknown_backend_and_missing_int8_are_one_line_errors(tmp_path, exported_seed):
    with pytest.raises(LrcnError, match="unknown encoder backend"):
        open_encoder(exported_seed[0], "openvino")
    bundle = broken_copy(tmp_path, exported_seed)
    (bundle / "encoder.int8.onnx").unlink()
    with pytest.raises(LrcnError, match="--int8"):
        open_encoder(bundle, "onnxruntime-int8")


def test_cli_engine_build_and_export_errors_are_one_line(tmp_path, exported_seed):
    bundle = broken_copy(tmp_path, exported_seed)
    (bundle / "encoder.onnx").unlink()
    for result in (lrcn("engine", "build", bundle), lrcn("export", tmp_path / "missing")):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.startswith("lrcn: error:")]) == 1


@pytest.mark.skipif(TENSORRT_PROBLEM is None, reason="TensorRT is usable here")
def test_tensorrt_backend_says_why_it_is_unavailable(exported_seed):
    with pytest.raises(LrcnError) as err:
        open_encoder(exported_seed[0], "tensorrt")
    assert_one_line(err)
    assert "TensorRT" in str(err.value) or "GPU" in str(err.value)


def test_doctor_lists_backends_and_reasons():
    result = lrcn("doctor")
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" in result.stdout and "CPUExecutionProvider" in result.stdout
    assert "TensorRT" in result.stdout and "GPU" in result.stdout
    if TENSORRT_PROBLEM:
        assert "backend tensorrt: not usable here" in result.stdout
    from lrcn.stream.sources.pyav import device_problem, hardware_decoders

    assert "PyAV " in result.stdout and "decoder cpu always" in result.stdout
    for kind in hardware_decoders():  # each hardware decoder, and whether it opens here
        expected = "usable" if device_problem(kind) is None else f"not usable here ({device_problem(kind)})"
        assert f"  {kind}: {expected}" in result.stdout
    assert "GStreamer" in result.stdout


@needs_tensorrt
@pytest.mark.parametrize("precision, tolerance", [("fp16", 2e-2), ("int8", 0.2)])
def test_tensorrt_engine_builds_caches_and_matches_onnxruntime(tmp_path, exported_seed, precision, tolerance):
    from lrcn.stream.encoders.tensorrt import TensorRtEncoder, ensure_engine

    bundle, frames, video = exported_seed
    bundle = broken_copy(tmp_path, exported_seed)
    path = ensure_engine(bundle, precision, max_batch=8, calibration=video)
    built = path.stat().st_mtime_ns
    assert ensure_engine(bundle, precision, max_batch=8, calibration=video) == path
    assert path.stat().st_mtime_ns == built  # reloaded, not rebuilt
    engine = TensorRtEncoder(path, bundle / "encoder.onnx")
    reference = OnnxRuntimeEncoder(bundle / "encoder.onnx").encode(frames[:11])
    got = engine.encode(frames[:11])  # 11 > max batch: split in two calls
    scale = np.abs(reference).max()
    assert np.abs(got - reference).max() / scale < tolerance


def write_disk_videos(root: Path, classes=3, per_class=6, frames=16, size=64) -> None:
    """Synthetic videos a small CNN learns in seconds: class k is a bright disk in the k-th
    column, jittering over a random-coloured noisy background. Written as MJPG files."""
    import cv2

    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"disk{k}").mkdir(parents=True)
        for v in range(per_class):
            writer = cv2.VideoWriter(
                str(root / f"disk{k}" / f"v_disk{k}_g{v % 3 + 1:02d}_c{v:02d}.avi"),
                cv2.VideoWriter_fourcc(*"MJPG"),
                10,
                (size, size),
            )
            background = rng.integers(0, 160, 3)
            for _ in range(frames):
                image = np.clip(background + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                centre = (int((k + 0.5) * size / classes + rng.integers(-3, 4)), int(size / 2 + rng.integers(-8, 9)))
                cv2.circle(image, centre, size // 8, (255, 255, 255), -1)
                writer.write(image)
            writer.release()


@pytest.mark.slow
def test_int8_accuracy_delta_on_synthetic_data(tmp_path):
    """Train a small LRCN, export it with an INT8 encoder calibrated on the training videos,
    and score both encoders on held-out videos through the same head."""
    pytest.importorskip("tensorflow")
    from lrcn.models.data import discover, split_by_groups
    from lrcn.models.export import export_bundle
    from lrcn.models.train import TrainConfig, train
    from lrcn.stream.bundle import ModelSpec
    from lrcn.stream.quantize import calibration_frames
    from lrcn.stream.video import read_frames
    from lrcn.tools.evidence.int8_accuracy import score

    write_disk_videos(tmp_path / "data")
    dataset = discover(tmp_path / "data")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["03"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="small",
        input_size=(64, 64),
        clip_length=4,
        fps=10,
        lstm_units=16,
        feature_dropout=0.2,
        lstm_dropout=0.0,
    )
    config = TrainConfig(
        epochs=8,
        batch_size=8,
        learning_rate=3e-3,
        patience=8,
        clips_per_video=4,
        augment=False,
        cache_dir=None,
        progress=False,
    )
    train(spec, train_videos, [], tmp_path / "bundle", config)
    calibration = calibration_frames([v.path for v in train_videos], spec.input_size, spec.fps)
    export_bundle(
        tmp_path / "bundle", read_frames(test_videos[0].path, spec.input_size, spec.fps), calibration=calibration
    )
    labelled = [(v.path, dataset.classes[v.label]) for v in test_videos]
    fp32 = score(load_runtime_bundle(tmp_path / "bundle"), labelled)
    int8 = score(load_runtime_bundle(tmp_path / "bundle", "onnxruntime-int8"), labelled)
    assert fp32["video_correct"] >= fp32["videos"] - 1, fp32  # the measurement means something
    assert abs(int8["clip_correct"] - fp32["clip_correct"]) <= 0.05 * fp32["clips"], (fp32, int8)
    assert abs(int8["video_correct"] - fp32["video_correct"]) <= 1, (fp32, int8)
