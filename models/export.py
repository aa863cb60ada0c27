"""Export a trained bundle for the runtime, and check the export against Keras.

Adds to the bundle:
  encoder.onnx       per-frame CNN: uint8 RGB [N, H, W, 3] -> float32 features [N, F], the
                     normalisation inside the graph, dynamic batch
  head.npz           the NumPy head's weights (stream/heads/)
  model.onnx         the whole T-frame model, uint8 [N, T, H, W, 3] -> probabilities (the
                     naive baseline that re-encodes every frame of every window)
  encoder.int8.onnx  with int8=True: ONNX Runtime static INT8, calibrated on real frames
  export.json        what was checked and the differences found

Keras 3 Sequential models break tf2onnx's Keras route, so each part is converted from a
tf.function with an explicit signature instead.

>>> export_bundle("bundles/mine", frames)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from lrcn.models.architectures import KERAS_HEADS, split_model
from lrcn.models.frame_cache import DEFAULT_CACHE, clip_indices, preprocess
from lrcn.models.experiment import load_bundle
from lrcn.stream.bundle import BundleMeta
from lrcn.stream.encoders import ENCODER_FILE, INT8_ENCODER_FILE
from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import HEAD_FILE, Head, save_head

MODEL_FILE = "model.onnx"
REPORT_FILE = "export.json"
OPSET = 17
CONVERTED_CACHE = DEFAULT_CACHE / "onnx"
TOLERANCE = 1e-4


def convert(function, path: Path, cache_key: str | None = None) -> Path:
    """A tf.function with an input signature -> an ONNX file. With `cache_key` (frozen_encoder_key)
    the file converted once for that key is copied instead (CONVERTED_CACHE): the check against
    Keras that follows every export still runs on the copy."""
    import logging
    import shutil

    import tf2onnx

    cached = CONVERTED_CACHE / f"{cache_key}.onnx" if cache_key else None
    if cached is not None and cached.is_file():
        shutil.copyfile(cached, path)
        return path
    tf2onnx.logging.set_level(logging.ERROR)  # its graph-fixing notes are not the user's concern
    try:
        tf2onnx.convert.from_function(
            function, input_signature=function.input_signature, opset=OPSET, output_path=str(path)
        )
    except Exception as err:  # tf2onnx raises whatever its graph passes hit
        raise LrcnError(f"ONNX conversion of {path.name} failed: {str(err).splitlines()[0]}") from None
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(path, partial)
        partial.replace(cached)
    return path


def frozen_encoder_key(encoder, spec, modality_name: str) -> str | None:
    """A frozen backbone's encoder is the same graph in every bundle trained on it (ImageNet
    MobileNetV2 at one size: converting it took 2-10 minutes of each export here), so it is
    converted once per (weights, size, modality, preprocessing, converter). None for an encoder
    that trains: its weights are the bundle's own."""
    if not spec.frozen_backbone:
        return None
    import tf2onnx

    from lrcn.models.features import weights_digest

    return weights_digest(
        encoder,
        repr(
            (
                modality_name,
                spec.input_size,
                spec.preprocessing,
                spec.pooling,
                spec.flow_backbone,
                OPSET,
                tf2onnx.__version__,
            )
        ).encode(),
    )


def encoder_function(encoder, meta: BundleMeta):
    import tensorflow as tf

    scale, offset = meta.spec.preprocessing

    @tf.function(input_signature=[tf.TensorSpec((None, *meta.spec.input_size, 3), tf.uint8, name="frames")])
    def encode(frames):
        pixels = tf.cast(frames, tf.float32) * np.float32(scale) + np.float32(offset)
        return {"features": encoder(pixels, training=False)}

    return encode


def model_function(model, meta: BundleMeta):
    import tensorflow as tf

    spec = meta.spec
    scale, offset = spec.preprocessing

    @tf.function(input_signature=[tf.TensorSpec((None, spec.clip_length, *spec.input_size, 3), tf.uint8, name="clips")])
    def predict(clips):
        pixels = tf.cast(clips, tf.float32) * np.float32(scale) + np.float32(offset)
        return {"probabilities": model(pixels, training=False)}

    return predict


def head_from_keras(head_model, meta: BundleMeta) -> Head:
    """The NumPy head holding the Keras head's weights (Dropout is identity at inference)."""
    return KERAS_HEADS.get(meta.spec.head).export(head_model, meta.spec)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def check_export(bundle: Path, model, meta: BundleMeta, frames: np.ndarray, head: Head) -> dict:
    """Keras against each exported part on one clip of real frames: the largest differences."""
    import onnxruntime

    spec = meta.spec
    clip = frames[clip_indices(len(frames), spec.clip_length, 0)][None]
    encoder_keras, _ = split_model(model, spec)
    pixels = preprocess(clip[0], *spec.preprocessing)
    keras_features = np.asarray(encoder_keras(pixels, training=False))
    keras_probs = np.asarray(model(pixels[None], training=False))
    if spec.outputs_every_step:
        keras_probs = keras_probs.mean(axis=1)
    features = OnnxRuntimeEncoder(bundle / ENCODER_FILE).encode(clip[0])
    session = onnxruntime.InferenceSession(str(bundle / MODEL_FILE), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {session.get_inputs()[0].name: clip})[0]
    if spec.outputs_every_step:
        onnx_probs = onnx_probs.mean(axis=1)
    scale = max(1.0, float(np.abs(keras_features).max()))
    return {
        "frames": int(clip.shape[1]),
        "encoder_max_abs": max_difference(features, keras_features),
        "encoder_max_rel": max_difference(features, keras_features) / scale,
        "encoder_head_probabilities_max_abs": max_difference(head.clip_probabilities(features[None]), keras_probs),
        "model_onnx_probabilities_max_abs": max_difference(onnx_probs, keras_probs),
    }


def int8_check(bundle: Path, frames: np.ndarray, head: Head, meta: BundleMeta) -> dict:
    clip = frames[clip_indices(len(frames), meta.spec.clip_length, 0)]
    fp32 = OnnxRuntimeEncoder(bundle / ENCODER_FILE).encode(clip)
    int8 = OnnxRuntimeEncoder(bundle / INT8_ENCODER_FILE).encode(clip)
    cosine = (fp32 * int8).sum(1) / np.maximum(np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1), 1e-12)
    return {
        "feature_cosine_min": float(cosine.min()),
        "probabilities_max_abs": max_difference(
            head.clip_probabilities(int8[None]), head.clip_probabilities(fp32[None])
        ),
    }


def export_bundle(
    bundle_dir: str | Path, frames: np.ndarray, tolerance: float = TOLERANCE, calibration: np.ndarray | None = None
) -> dict:
    """Write encoder.onnx, head.npz and model.onnx (and encoder.int8.onnx when calibration
    frames are given) into the bundle, check them against Keras on `frames` ([N, H, W, 3]
    uint8 at the model's size) and return the report; a difference above `tolerance`
    (relative for features, absolute for probabilities) is an LrcnError naming the figure."""
    bundle = Path(bundle_dir)
    model, meta = load_bundle(bundle)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.shape[1:] != (*meta.spec.input_size, 3):
        raise LrcnError(
            f"check frames must be uint8 [N, {meta.spec.input_size[0]}, {meta.spec.input_size[1]}, 3], "
            f"got {frames.dtype} {list(frames.shape)}"
        )
    encoder, head_model = split_model(model, meta.spec)
    convert(encoder_function(encoder, meta), bundle / ENCODER_FILE, frozen_encoder_key(encoder, meta.spec, "rgb"))
    convert(model_function(model, meta), bundle / MODEL_FILE)
    head = head_from_keras(head_model, meta)
    save_head(bundle / HEAD_FILE, head)
    report = {"tolerance": tolerance, "opset": OPSET, "check": check_export(bundle, model, meta, frames, head)}
    if calibration is not None:
        from lrcn.stream.quantize import quantize_int8

        quantize_int8(bundle / ENCODER_FILE, bundle / INT8_ENCODER_FILE, calibration)
        report["int8"] = {"calibration_frames": len(calibration), **int8_check(bundle, frames, head, meta)}
    report["files"] = {path.name: file_hash(path) for path in sorted(bundle.glob("*.onnx")) if path.is_file()}
    (bundle / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    failed = {
        key: value
        for key, value in report["check"].items()
        if key not in ("frames", "encoder_max_abs") and value > tolerance
    }
    if failed:
        # A runtime must never pick up parts that disagree with the model; export.json stays.
        for name in (ENCODER_FILE, INT8_ENCODER_FILE, MODEL_FILE, HEAD_FILE):
            (bundle / name).unlink(missing_ok=True)
        raise LrcnError(
            "export check failed: "
            + ", ".join(f"{k} {v:.3g}" for k, v in failed.items())
            + f" > tolerance {tolerance:g}"
        )
    return report


def describe(report: dict) -> str:
    if "encoder_max_abs" not in report["check"]:
        return describe_joint(report)
    check = report["check"]
    text = (
        f"checked on {check['frames']} real frames: encoder max |diff| {check['encoder_max_abs']:.2e} "
        f"(relative {check['encoder_max_rel']:.2e}), encoder+head probabilities "
        f"{check['encoder_head_probabilities_max_abs']:.2e}, model.onnx probabilities "
        f"{check['model_onnx_probabilities_max_abs']:.2e} (tolerance {report['tolerance']:g})"
    )
    if "int8" in report:
        text += (
            f"; int8 encoder: feature cosine >= {report['int8']['feature_cosine_min']:.4f}, probabilities "
            f"max |diff| {report['int8']['probabilities_max_abs']:.2e}"
        )
    return text


def export_from_paths(
    bundle_dir: str | Path,
    video: str | Path | None = None,
    int8: bool = False,
    calibration: str | Path | None = None,
    tolerance: float = TOLERANCE,
    whole_model: bool = False,
) -> dict:
    """export_bundle with frames read from files: the check uses the first video at `video`
    (default: the data the bundle was trained on); INT8 calibrates on frames spread over
    the videos at `calibration` (default: `video`)."""
    from lrcn.stream.bundle import read_meta
    from lrcn.stream.quantize import calibration_frames, video_files
    from lrcn.stream.video import read_frames

    meta = read_meta(bundle_dir)
    spec, source = meta.spec, video or meta.training.get("data")
    if not source:
        raise LrcnError("no frames to check the export on: give --video FILE_OR_FOLDER")
    model, meta = load_bundle(bundle_dir)
    from lrcn.models.joint import is_joint

    if is_joint(model):
        from lrcn.models.modalities import keras_modality

        first = video_files(source)[0]
        inputs = {name: keras_modality(name).read_file(first, spec) for name in spec.modalities}
        calibrated = (
            {name: calibration_inputs(calibration or source, spec, name) for name in spec.modalities} if int8 else None
        )
        return export_joint(Path(bundle_dir), model, meta, inputs, tolerance, calibrated, whole_model)
    frames = read_frames(video_files(source)[0], spec.input_size, spec.fps)
    frames_int8 = calibration_frames(calibration or source, spec.input_size, spec.fps) if int8 else None
    return export_bundle(bundle_dir, frames, tolerance, frames_int8)


# -- bundles of modalities (models.joint): one encoder per modality, the head over their joined features


def joint_encoder_function(encoder, spec, name: str):
    """uint8 [N, H, W, C] "frames" -> {"features": [N, F]}: the modality's model input and encoder."""
    import tensorflow as tf

    from lrcn.models.modalities import encoder_spec, keras_modality

    keras_side, modality_spec = keras_modality(name), encoder_spec(spec, name)

    @tf.function(
        input_signature=[tf.TensorSpec((None, *spec.input_size, keras_side.channels), tf.uint8, name="frames")]
    )
    def encode(frames):
        return {"features": encoder(keras_side.to_model_input(frames, modality_spec), training=False)}

    return encode


def joint_model_function(model, spec):
    """The whole joint model: one uint8 [N, T, H, W, C] input per modality, named by it -> probabilities."""
    import tensorflow as tf

    from lrcn.models.modalities import encoder_spec, keras_modality

    signature = [
        tf.TensorSpec((None, spec.clip_length, *spec.input_size, keras_modality(name).channels), tf.uint8, name=name)
        for name in spec.modalities
    ]

    @tf.function(input_signature=signature)
    def predict(*clips):
        inputs = {
            name: keras_modality(name).to_model_input(x, encoder_spec(spec, name))
            for name, x in zip(spec.modalities, clips)
        }
        return {"probabilities": model(inputs, training=False)}

    return predict


def save_late_head(path: Path, spec, sizes: dict[str, int], heads: dict[str, Head]) -> Path:
    """head.npz of late fusion (layout: CONTRACT23 "late head.npz layout"): kind "late", the sub-heads'
    arrays under "<modality>." keys, their kind, the modalities, feature sizes and weights."""
    arrays = {f"{name}.{key}": value for name, head in heads.items() for key, value in head.arrays().items()}
    first = heads[spec.modalities[0]]
    np.savez(
        path,
        kind=np.array("late"),
        classes=np.array(spec.classes),
        per_timestep=np.array(first.per_timestep),
        head_kind=np.array(spec.head),
        modalities=np.array(spec.modalities),
        feature_sizes=np.array([sizes[name] for name in spec.modalities], np.int64),
        weights=np.array(spec.fusion_weights, np.float32),
        **arrays,
    )
    return Path(path)


class JointHead:
    """The exported head(s) of a joint model as the runtime will run them on joined features."""

    def __init__(self, spec, sizes: dict[str, int], heads: dict):
        from lrcn.models.joint import feature_slices

        self.spec, self.heads, self.slices = spec, heads, feature_slices(sizes)

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        if self.spec.fusion != "late":
            return self.heads[None].clip_probabilities(features)
        return sum(
            np.float32(w) * self.heads[name].clip_probabilities(features[..., self.slices[name]])
            for name, w in zip(self.spec.modalities, self.spec.fusion_weights)
        )


def onnx_features(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"frames": inputs})[0]


def export_joint(
    bundle: Path,
    model,
    meta: BundleMeta,
    inputs: dict[str, np.ndarray],
    tolerance: float = TOLERANCE,
    calibration: dict[str, np.ndarray] | None = None,
    whole_model: bool = False,
) -> dict:
    """export_bundle for a joint model: encoder file per modality (stream.modalities), head.npz over the joined
    features (late fusion: save_late_head), with `whole_model` model.onnx with one input per modality (tf2onnx
    took 15 minutes for two MobileNetV2 encoders at 112 px on this 2-core box, so only on request), and (with calibration
    inputs per modality) each encoder's INT8 variant; checked against Keras on one clip of `inputs`
    ({modality: uint8 [N, H, W, C]} of one video)."""
    import onnxruntime

    from lrcn.models.joint import encoders_of, heads_of
    from lrcn.models.modalities import model_input
    from lrcn.stream.modalities import modality

    spec = meta.spec
    for name in spec.modalities:
        expected = (*spec.input_size, modality(name).channels)
        if inputs[name].dtype != np.uint8 or inputs[name].shape[1:] != expected:
            raise LrcnError(
                f"check {name} inputs must be uint8 [N, {', '.join(map(str, expected))}], "
                f"got {inputs[name].dtype} {list(inputs[name].shape)}"
            )
    encoders = encoders_of(model, spec)
    sizes = {name: int(encoder.output_shape[-1]) for name, encoder in encoders.items()}
    files = [modality(name).encoder_file for name in spec.modalities]
    for name in spec.modalities:
        convert(
            joint_encoder_function(encoders[name], spec, name),
            bundle / modality(name).encoder_file,
            frozen_encoder_key(encoders[name], spec, name),
        )
    heads = {
        key: KERAS_HEADS.get(spec.head).export(head_model, spec) for key, head_model in heads_of(model, spec).items()
    }
    if spec.fusion == "late":
        save_late_head(bundle / HEAD_FILE, spec, sizes, heads)
    else:
        save_head(bundle / HEAD_FILE, heads[None])
    head = JointHead(spec, sizes, heads)
    report = {"tolerance": tolerance, "opset": OPSET}
    (bundle / MODEL_FILE).unlink(missing_ok=True)
    if not whole_model:
        report["model_onnx"] = "not written (lrcn export --model-onnx writes the two-input model.onnx; slow)"
    else:
        try:
            convert(joint_model_function(model, spec), bundle / MODEL_FILE)
            files.append(MODEL_FILE)
        except LrcnError as err:
            report["model_onnx"] = f"not written: {err}"

    n = min(len(x) for x in inputs.values())
    clip = {name: x[:n][clip_indices(n, spec.clip_length, 0)] for name, x in inputs.items()}
    keras_inputs = {name: model_input(name, clip[name], encoder_spec_of(spec, name)) for name in spec.modalities}
    keras_probs = np.asarray(model({name: x[None] for name, x in keras_inputs.items()}, training=False))
    if spec.outputs_every_step:
        keras_probs = keras_probs.mean(axis=1)
    check = {"frames": spec.clip_length}
    onnx_parts = []
    for name in spec.modalities:
        keras_features = np.asarray(encoders[name](keras_inputs[name], training=False))
        features = onnx_features(bundle / modality(name).encoder_file, clip[name])
        onnx_parts.append(features)
        scale = max(1.0, float(np.abs(keras_features).max()))
        check[f"{name}_encoder_max_abs"] = max_difference(features, keras_features)
        check[f"{name}_encoder_max_rel"] = max_difference(features, keras_features) / scale
    joined = np.concatenate(onnx_parts, axis=-1)
    check["encoder_head_probabilities_max_abs"] = max_difference(head.clip_probabilities(joined[None]), keras_probs)
    if (bundle / MODEL_FILE).is_file():
        session = onnxruntime.InferenceSession(str(bundle / MODEL_FILE), providers=["CPUExecutionProvider"])
        onnx_probs = session.run(None, {name: clip[name][None] for name in spec.modalities})[0]
        check["model_onnx_probabilities_max_abs"] = max_difference(
            onnx_probs.mean(axis=1) if spec.outputs_every_step else onnx_probs, keras_probs
        )
    report["check"] = check
    if calibration is not None:
        from lrcn.stream.quantize import quantize_int8

        report["int8"] = {}
        int8_parts = []
        for name, fp32 in zip(spec.modalities, onnx_parts):
            quantize_int8(bundle / modality(name).encoder_file, bundle / modality(name).int8_file, calibration[name])
            files.append(modality(name).int8_file)
            int8 = onnx_features(bundle / modality(name).int8_file, clip[name])
            int8_parts.append(int8)
            cosine = (fp32 * int8).sum(1) / np.maximum(
                np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1), 1e-12
            )
            report["int8"][name] = {
                "calibration_frames": len(calibration[name]),
                "feature_cosine_min": float(cosine.min()),
            }
        report["int8"]["probabilities_max_abs"] = max_difference(
            head.clip_probabilities(np.concatenate(int8_parts, axis=-1)[None]), head.clip_probabilities(joined[None])
        )
    report["files"] = {path.name: file_hash(path) for path in sorted(bundle.glob("*.onnx")) if path.is_file()}
    (bundle / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    failed = {
        key: value
        for key, value in check.items()
        if key != "frames" and not key.endswith("_encoder_max_abs") and value > tolerance
    }
    if failed:
        for name in (*files, HEAD_FILE):
            (bundle / name).unlink(missing_ok=True)
        raise LrcnError(
            "export check failed: "
            + ", ".join(f"{k} {v:.3g}" for k, v in failed.items())
            + f" > tolerance {tolerance:g}"
        )
    return report


def encoder_spec_of(spec, name: str):
    from lrcn.models.modalities import encoder_spec

    return encoder_spec(spec, name)


def describe_joint(report: dict) -> str:
    check = report["check"]
    parts = [
        f"{key[: -len('_encoder_max_rel')]} encoder relative {value:.2e}"
        for key, value in check.items()
        if key.endswith("_encoder_max_rel")
    ]
    text = (
        f"checked on {check['frames']} real frames: "
        + ", ".join(parts)
        + f", encoders+head probabilities {check['encoder_head_probabilities_max_abs']:.2e}"
    )
    if "model_onnx_probabilities_max_abs" in check:
        text += f", model.onnx probabilities {check['model_onnx_probabilities_max_abs']:.2e}"
    else:
        text += f"; {report.get('model_onnx')}"
    text += f" (tolerance {report['tolerance']:g})"
    if "int8" in report:
        cosines = ", ".join(
            f"{name} {v['feature_cosine_min']:.4f}" for name, v in report["int8"].items() if isinstance(v, dict)
        )
        text += (
            f"; int8 encoders: feature cosine >= {cosines}, probabilities max |diff| "
            f"{report['int8']['probabilities_max_abs']:.2e}"
        )
    return text


def calibration_inputs(source, spec, name: str, count: int = 256) -> np.ndarray:
    """Up to `count` inputs of modality `name`, spread over the videos at `source` and over each video,
    at the middles of equal parts of it: never only a video's first frame, whose flow is the zero field."""
    from lrcn.models.modalities import keras_modality
    from lrcn.stream.quantize import video_files

    files = video_files(source)
    per_video = max(1, -(-count // len(files)))
    chosen = []
    for path in files[:count]:
        inputs = keras_modality(name).read_file(path, spec)
        parts = min(per_video, len(inputs))
        chosen.append(inputs[((np.arange(parts) + 0.5) * len(inputs) / parts).astype(int)])
    return np.concatenate(chosen)[:count]
