"""Per-frame encoder backends behind one interface: uint8 RGB frames in, float32 features out.

    encoder = open_encoder("bundle", backend="onnxruntime")      # or "onnxruntime-int8", "tensorrt"
    features = encoder.encode(frames)                            # [N, H, W, 3] uint8 -> [N, F] float32

Normalisation is inside the exported graph, so callers feed raw pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from lrcn.stream.errors import LrcnError

ENCODER_FILE = "encoder.onnx"
INT8_ENCODER_FILE = "encoder.int8.onnx"
BACKENDS = ("onnxruntime", "onnxruntime-int8", "tensorrt")
# Execution providers tried in this order where onnxruntime has them; CPU always last.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def backend_names() -> tuple[str, ...]:
    """The backends `open_encoder` takes, for command-line choices and `lrcn doctor`."""
    return BACKENDS


class Encoder(Protocol):
    name: str
    input_size: tuple[int, int]
    feature_size: int

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 RGB -> [N, F] float32."""
        ...


def check_frames(frames: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (*input_size, 3):
        raise LrcnError(f"encoder takes uint8 frames [N, {input_size[0]}, {input_size[1]}, 3], "
                        f"got {frames.dtype} {list(frames.shape)}")
    return np.ascontiguousarray(frames)


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def session_options(threads: int | None = None):
    """ONNX Runtime options for this runtime: quiet, `threads` intra-op threads, and no spinning."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle intra-op threads would spin between calls, taking the cores the head, the capture
    # threads and other processes need (profiled: 15 -> 5 CPU ms per frame for one stream).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeEncoder:
    """encoder.onnx (or its INT8 twin) in an ONNX Runtime session.

    threads: intra-op threads (default: ONNX Runtime's choice, one per core).
    providers: execution providers in order of preference (default: TensorRT, CUDA where
    installed, then CPU).
    """

    def __init__(self, onnx_path: str | Path, threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime

        path = Path(onnx_path)
        if not path.is_file():
            raise LrcnError(f"encoder model not found: {path}")
        options = session_options(threads)
        available = available_providers()
        wanted = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=wanted)
        except Exception as err:  # onnxruntime raises its own untyped errors for bad files
            raise LrcnError(f"cannot load {path}: {str(err).splitlines()[0]}") from None
        (inp,), (out,) = self.session.get_inputs(), self.session.get_outputs()
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or len(out.shape) != 2:
            raise LrcnError(f"{path}: expected uint8 [N, H, W, 3] -> [N, F], got {inp.type} {inp.shape} -> {out.shape}")
        self.input_name, self.output_name = inp.name, out.name
        self.input_size = (int(inp.shape[1]), int(inp.shape[2]))
        self.feature_size = int(out.shape[1])
        self.path = path
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime[{self.providers[0].replace('ExecutionProvider', '')}]"

    def encode(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames, self.input_size)
        return self.session.run([self.output_name], {self.input_name: frames})[0]


def open_encoder(bundle_dir: str | Path, backend: str = "onnxruntime", threads: int | None = None,
                 precision: str = "fp16", max_batch: int = 16) -> Encoder:
    """The bundle's encoder on a backend.

    onnxruntime: encoder.onnx (fp32); onnxruntime-int8: encoder.int8.onnx (`lrcn export
    --int8`); tensorrt: an engine from the bundle's engines/ cache, built on first use
    (precision fp32, fp16 or int8; max_batch bounds the optimisation profile).
    """
    bundle = Path(bundle_dir)
    threads = threads or int(os.environ.get("LRCN_THREADS", "0")) or None
    if backend == "onnxruntime":
        return OnnxRuntimeEncoder(bundle / ENCODER_FILE, threads)
    if backend == "onnxruntime-int8":
        if not (bundle / INT8_ENCODER_FILE).is_file():
            raise LrcnError(f"bundle has no {INT8_ENCODER_FILE}: {bundle} (run `lrcn export {bundle} --int8`)")
        return OnnxRuntimeEncoder(bundle / INT8_ENCODER_FILE, threads)
    if backend == "tensorrt":
        from lrcn.stream.tensorrt_engine import TensorRtEncoder

        return TensorRtEncoder.from_bundle(bundle, precision=precision, max_batch=max_batch)
    raise LrcnError(f"unknown encoder backend {backend!r}: one of {', '.join(BACKENDS)}")
