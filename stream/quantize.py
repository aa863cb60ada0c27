"""Calibration frames from real video, and INT8 static quantisation with ONNX Runtime.

Needs the `onnx` package (the training extra) to quantise; running the result needs only
onnxruntime. TensorRT's INT8 calibrator takes its frames from `calibration_frames` too.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stream.errors import LrcnError
from stream.video import VIDEO_EXTENSIONS, read_frames


def video_files(source: str | Path | list[Path]) -> list[Path]:
    """A video file, a list of them, or every video under a folder (sorted, so calibration
    is repeatable)."""
    if isinstance(source, list | tuple):
        return sorted(Path(p) for p in source)
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise LrcnError(f"no video file or folder at {source}")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not files:
        raise LrcnError(f"no video files under {source}")
    return files


def calibration_frames(source: str | Path | list[Path], size: tuple[int, int], fps: float, count: int = 256) -> np.ndarray:
    """Up to `count` frames [N, H, W, 3] uint8, spread evenly over the videos at `source`
    and over each video's length, on the model's sampling grid."""
    files = video_files(source)
    per_video = max(1, -(-count // len(files)))
    chosen = []
    for path in files[:count]:
        frames = read_frames(path, size, fps)
        chosen.append(frames[np.linspace(0, len(frames) - 1, min(per_video, len(frames))).astype(int)])
    return np.concatenate(chosen)[:count]


def batches(frames: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), batch_size):
        yield frames[start:start + batch_size]


def quantize_int8(fp32_onnx: str | Path, int8_onnx: str | Path, frames: np.ndarray, batch_size: int = 8) -> Path:
    """Static INT8 (QDQ, per-channel signed weights, unsigned activations) calibrated on `frames`."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise LrcnError(f"INT8 quantisation needs the onnx package ({err}): pip install 'lrcn-stream[train]'") from None
    import onnxruntime

    input_name = onnxruntime.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.feed = ({input_name: batch} for batch in batches(frames, batch_size))

        def get_next(self):
            return next(self.feed, None)

    int8_onnx = Path(int8_onnx)
    prepared = int8_onnx.with_suffix(".prep.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8_onnx), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)
    return int8_onnx
