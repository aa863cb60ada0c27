"""The TensorRT backend: engines built from a modality's encoder file (encoder.onnx,
encoder.flow.onnx), cached in the bundle, run through Polygraphy.

    path = ensure_engine("bundle", precision="int8", max_batch=16, calibration="videos/")
    encoder = TensorRtEncoder(path, "bundle/encoder.onnx")   # or open_encoder(bundle, backend="tensorrt")
    features = encoder.encode(frames)                         # uint8 [N, H, W, 3] -> float32 [N, F]

An engine only runs on the GPU model and TensorRT version it was built with, so the cache
key names both, with the precision, the batch bound and the ONNX file's hash (so each
modality's file has its own engine):
bundle/engines/<gpu>_trt<version>_<precision>_b<max>_<onnx sha256>.engine.

Polygraphy wraps the builder, the entropy calibrator and the device buffers, so there is no
hand-written CUDA here. TensorRT and Polygraphy are imported only when an engine is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np

from lrcn.stream.bundle import read_meta
from lrcn.stream.encoders import check_frames, register
from lrcn.stream.errors import LrcnError

PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_DIR = "engines"
CALIBRATION_BATCH = 8


def engine_key(gpu: str, tensorrt_version: str, precision: str, onnx_sha256: str, max_batch: int) -> str:
    """The engine file's name: what makes an engine usable (GPU, TensorRT version, precision,
    batch profile) and the ONNX file it was built from.

    >>> engine_key("NVIDIA Orin (nvgpu)", "10.3.0", "fp16", "ab" * 32, 8)
    'nvidia-orin-nvgpu_trt10.3.0_fp16_b8_abababababababab'
    """
    if precision not in PRECISIONS:
        raise LrcnError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") or "unknown-gpu"
    return f"{slug}_trt{tensorrt_version}_{precision}_b{int(max_batch)}_{onnx_sha256[:16]}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or a Jetson's board name; None without either."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    model = Path("/proc/device-tree/model")  # Jetsons have no nvidia-smi
    if Path("/etc/nv_tegra_release").exists() and model.is_file():
        return model.read_text(errors="replace").strip("\x00\n ")
    return None


def require_tensorrt():
    """The tensorrt module, or one LrcnError line saying what is missing and why."""
    try:
        import tensorrt
    except Exception as err:  # the bindings raise OSError/ImportError when their libraries are missing
        raise LrcnError(
            f"TensorRT is not usable here ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "install it with the GPU's CUDA (pip install tensorrt, or JetPack on a Jetson)"
        ) from None
    try:
        import polygraphy.backend.trt  # noqa: F401
    except ImportError:
        raise LrcnError("the TensorRT backend needs Polygraphy: pip install polygraphy") from None
    if gpu_name() is None:
        raise LrcnError("TensorRT is installed but no NVIDIA GPU was found (nvidia-smi and /proc/device-tree)")
    return tensorrt


def availability() -> str | None:
    """None where TensorRT, Polygraphy and an NVIDIA GPU are all here, else the first one missing."""
    try:
        require_tensorrt()
    except LrcnError as err:
        return str(err)
    return None


def onnx_input(onnx_path: Path) -> tuple[str, tuple[int, int], int]:
    """(input name, (height, width), channels) of an encoder file."""
    import onnxruntime

    (inp,) = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()
    return inp.name, (int(inp.shape[1]), int(inp.shape[2])), int(inp.shape[3])


def build_engine(
    onnx_path: Path, engine_path: Path, precision: str, max_batch: int, calibration: np.ndarray | None = None
) -> Path:
    """Build and save a serialized engine: optimisation profile for batch 1..max_batch
    (tuned for max_batch), FP16 or INT8 (entropy calibration on `calibration` frames,
    FP16 allowed where INT8 is not faster)."""
    from polygraphy.backend.trt import (
        Calibrator,
        CreateConfig,
        Profile,
        engine_bytes_from_network,
        network_from_onnx_path,
    )

    name, (height, width), channels = onnx_input(onnx_path)
    profile = Profile().add(
        name, (1, height, width, channels), (max_batch, height, width, channels), (max_batch, height, width, channels)
    )
    calibrator = None
    if precision == "int8":
        if calibration is None or not len(calibration):
            raise LrcnError("an INT8 engine needs calibration frames: --calibration VIDEO_FOLDER")
        step = min(CALIBRATION_BATCH, max_batch)
        feed = [{name: np.ascontiguousarray(calibration[i : i + step])} for i in range(0, len(calibration), step)]
        calibrator = Calibrator(feed, cache=str(engine_path.with_suffix(".calibration")))
    config = CreateConfig(fp16=precision != "fp32", int8=precision == "int8", profiles=[profile], calibrator=calibrator)
    serialized = engine_bytes_from_network(network_from_onnx_path(str(onnx_path)), config=config)
    if serialized is None:
        raise LrcnError(f"TensorRT could not build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    partial = engine_path.with_suffix(".partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)
    return engine_path


def ensure_engine(
    bundle_dir: str | Path,
    precision: str = "fp16",
    max_batch: int = 16,
    calibration: str | Path | None = None,
    rebuild: bool = False,
    modality: str = "rgb",
) -> Path:
    """The cached engine for this GPU, TensorRT version, precision, batch bound and the
    modality's encoder file; built (and calibrated on that modality's inputs of the video file
    or folder `calibration`, for INT8) when missing."""
    from lrcn.stream.modalities import modality as find_modality

    bundle, kind = Path(bundle_dir), find_modality(modality)
    onnx_path = bundle / kind.encoder_file
    if not onnx_path.is_file():
        raise LrcnError(f"bundle {bundle} has no {kind.encoder_file} (run `lrcn export {bundle}`)")
    tensorrt = require_tensorrt()
    key = engine_key(gpu_name() or "unknown", tensorrt.__version__, precision, sha256(onnx_path), max_batch)
    path = bundle / ENGINE_DIR / f"{key}.engine"
    if path.is_file() and not rebuild:
        return path
    frames = None
    if precision == "int8":
        if calibration is None:
            raise LrcnError("an INT8 engine needs calibration frames: --calibration VIDEO_FOLDER")
        frames = calibration_inputs(calibration, read_meta(bundle).spec, kind)
    build_engine(onnx_path, path, precision, max_batch, frames)
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "gpu": gpu_name(),
                "tensorrt": tensorrt.__version__,
                "precision": precision,
                "max_batch": max_batch,
                "onnx_sha256": sha256(onnx_path),
            },
            indent=2,
        )
        + "\n"
    )
    return path


def calibration_inputs(source: str | Path, spec, kind) -> np.ndarray:
    """A modality's inputs of calibration video: the frames, or (flow) their fields, which are
    computed over every sampled frame of a video so each field has its real previous frame."""
    from lrcn.stream.quantize import calibration_frames, video_files  # reads video: loaded only to calibrate

    if not kind.needs_flow:
        return calibration_frames(source, spec.input_size, spec.fps)
    from lrcn.stream.video import read_video_frames

    files = video_files(source)
    per_video = max(1, -(-256 // len(files)))
    chosen = []
    for path in files[:256]:
        inputs = kind.inputs(read_video_frames(path, spec.input_size, spec.fps, flow=True))
        chosen.append(inputs[np.linspace(0, len(inputs) - 1, min(per_video, len(inputs))).astype(int)])
    return np.concatenate(chosen)[:256]


class TensorRtEncoder:
    """A serialized engine run by Polygraphy's TrtRunner (device buffers kept between calls)."""

    def __init__(self, engine_path: str | Path, onnx_path: str | Path):
        require_tensorrt()
        from polygraphy.backend.trt import TrtRunner, engine_from_bytes

        self.input_name, self.input_size, self.channels = onnx_input(Path(onnx_path))
        engine = engine_from_bytes(Path(engine_path).read_bytes())
        self.max_batch = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.output_name = next(
            engine.get_tensor_name(i)
            for i in range(engine.num_io_tensors)
            if engine.get_tensor_name(i) != self.input_name
        )
        self.feature_size = int(engine.get_tensor_shape(self.output_name)[-1])
        self.runner = TrtRunner(engine)
        self.runner.activate()
        self.name = f"tensorrt[{Path(engine_path).stem}]"

    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | Path,
        precision: str = "fp16",
        max_batch: int = 16,
        calibration: str | Path | None = None,
        modality: str = "rgb",
    ) -> TensorRtEncoder:
        from lrcn.stream.modalities import modality as find_modality

        bundle = Path(bundle_dir)
        return cls(
            ensure_engine(bundle, precision, max_batch, calibration, modality=modality),
            bundle / find_modality(modality).encoder_file,
        )

    def encode(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames, self.input_size, self.channels)
        chunks = [
            self.runner.infer({self.input_name: frames[i : i + self.max_batch]})[self.output_name]
            for i in range(0, len(frames), self.max_batch)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def close(self) -> None:
        self.runner.deactivate()


@register("tensorrt")
def open_tensorrt(bundle: Path, *, threads: int | None, precision: str, max_batch: int, modality) -> TensorRtEncoder:
    """The cached engine of the modality's file for this GPU (built on first use); threads are
    ONNX Runtime's, not used here."""
    return TensorRtEncoder.from_bundle(bundle, precision=precision, max_batch=max_batch, modality=modality.name)
