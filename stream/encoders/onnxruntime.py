"""The ONNX Runtime backends, the CPU default: `onnxruntime` runs a modality's fp32 encoder
(encoder.onnx, encoder.flow.onnx), `onnxruntime-int8` its INT8 twin (`lrcn export --int8`).

    encoder = OnnxRuntimeEncoder("bundle/encoder.onnx", threads=2)
    features = encoder.encode(frames)              # uint8 [N, H, W, 3] -> float32 [N, F]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrcn.stream.encoders import check_frames, register
from lrcn.stream.errors import LrcnError

# Execution providers tried in this order where onnxruntime has them; CPU always last.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def availability() -> str | None:
    """None where onnxruntime imports, else why not (INT8 models run on any onnxruntime)."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as err:  # a broken native library raises OSError and friends, not only ImportError
        first_line = str(err).splitlines()[0] if str(err) else ""
        return f"onnxruntime does not import ({type(err).__name__}: {first_line}); pip install onnxruntime"
    return None


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
    """An encoder file (or its INT8 twin) in an ONNX Runtime session, taking uint8 [N, H, W, channels].

    threads: intra-op threads (default: ONNX Runtime's choice, one per core).
    providers: execution providers in order of preference (default: TensorRT, CUDA where
    installed, then CPU).
    """

    def __init__(
        self, onnx_path: str | Path, threads: int | None = None, providers: list[str] | None = None, channels: int = 3
    ):
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
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or inp.shape[3] != channels or len(out.shape) != 2:
            raise LrcnError(
                f"{path}: expected uint8 [N, H, W, {channels}] -> [N, F], got {inp.type} {inp.shape} -> {out.shape}"
            )
        self.input_name, self.output_name = inp.name, out.name
        self.input_size = (int(inp.shape[1]), int(inp.shape[2]))
        self.feature_size = int(out.shape[1])
        self.channels = channels
        self.path = path
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime[{self.providers[0].replace('ExecutionProvider', '')}]"

    def encode(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames, self.input_size, self.channels)
        return self.session.run([self.output_name], {self.input_name: frames})[0]


@register("onnxruntime")
def open_fp32(bundle: Path, *, threads: int | None, precision: str, max_batch: int, modality) -> OnnxRuntimeEncoder:
    """The modality's encoder as exported (precision and max_batch are TensorRT's; a session takes any batch)."""
    return OnnxRuntimeEncoder(bundle / modality.encoder_file, threads, channels=modality.channels)


@register("onnxruntime-int8")
def open_int8(bundle: Path, *, threads: int | None, precision: str, max_batch: int, modality) -> OnnxRuntimeEncoder:
    """The modality's INT8 encoder, which `lrcn export --int8` writes beside the fp32 one."""
    if not (bundle / modality.int8_file).is_file():
        raise LrcnError(f"bundle has no {modality.int8_file}: {bundle} (run `lrcn export {bundle} --int8`)")
    return OnnxRuntimeEncoder(bundle / modality.int8_file, threads, channels=modality.channels)
