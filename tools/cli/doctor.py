"""`lrcn doctor`: which decoders and inference backends this machine has, and why a missing one is missing."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform

from lrcn.tools.cli.commands import command


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_problem(module: str) -> str | None:
    """None when `module` imports, else the first line of why not."""
    try:
        importlib.import_module(module)
    except Exception as err:  # broken native libraries raise OSError and friends, not only ImportError
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def onnxruntime_lines() -> list[str]:
    problem = import_problem("onnxruntime")
    if problem:
        return [f"onnxruntime: missing ({problem}); pip install onnxruntime"]
    import onnxruntime

    available = onnxruntime.get_available_providers()
    lines = [f"onnxruntime {onnxruntime.__version__}: execution providers {', '.join(available)}"]
    for provider, why in (
        ("CUDAExecutionProvider", "needs onnxruntime-gpu and a CUDA GPU"),
        ("TensorrtExecutionProvider", "needs onnxruntime-gpu built with TensorRT, and TensorRT"),
    ):
        if provider not in available:
            lines.append(f"  {provider}: not available ({why})")
    int8 = "yes" if importlib.util.find_spec("onnx") else "no (quantising needs the onnx package: the train extra)"
    lines.append(f"  INT8 quantisation here: {int8}; INT8 models run on any onnxruntime")
    return lines


def gpu_lines() -> list[str]:
    from lrcn.stream.encoders.tensorrt import gpu_name

    gpu = gpu_name()
    lines = [f"GPU: {gpu}" if gpu else "GPU: none (no nvidia-smi answer, not a Jetson)"]
    trt_problem = import_problem("tensorrt")
    if trt_problem:
        lines.append(f"TensorRT: missing ({trt_problem})")
    else:
        import tensorrt

        lines.append(f"TensorRT {tensorrt.__version__}")
    polygraphy = version("polygraphy")
    lines.append(f"Polygraphy {polygraphy}" if polygraphy else "Polygraphy: missing (pip install polygraphy)")
    return lines


def backend_lines() -> list[str]:
    """Each registered encoder backend, and why it cannot run here when it cannot (its module says)."""
    from lrcn.stream.encoders import backend_names, unavailable_reason

    lines = []
    for name in backend_names():
        problem = unavailable_reason(name)
        lines.append(f"backend {name}: " + ("usable" if problem is None else f"not usable here ({problem})"))
    return lines


def decoder_lines() -> list[str]:
    """PyAV's FFmpeg and its hardware decoders (whether each opens here), then GStreamer's."""
    problem = import_problem("av")
    if problem:
        return [f"PyAV: missing ({problem}); pip install av"]
    import av

    from lrcn.stream.sources import gstreamer
    from lrcn.stream.sources.pyav import device_problem, hardware_decoders

    lines = [f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}): decoder cpu always; hardware decoders:"]
    for kind in hardware_decoders():
        problem = device_problem(kind)
        lines.append(
            f"  {kind}: " + ("usable (--decoder " + kind + ")" if problem is None else f"not usable here ({problem})")
        )
    if not hardware_decoders():
        lines.append("  none in this PyAV build")
    return lines + gstreamer.doctor_lines()


def doctor_lines() -> list[str]:
    lines = [
        (
            f"python {platform.python_version()} on {platform.machine()}, numpy {version('numpy')}, "
            f"opencv {version('opencv-python-headless') or version('opencv-python')}"
        )
    ]
    lines += decoder_lines()
    lines += onnxruntime_lines()
    lines += gpu_lines()
    lines += backend_lines()
    tensorflow = version("tensorflow-cpu") or version("tensorflow")
    lines.append(
        f"TensorFlow {tensorflow} (training and export only; the runtime does not import it)"
        if tensorflow
        else "TensorFlow: not installed (needed to train and export, not to run a bundle)"
    )
    return lines


@command("doctor", help="inference backends on this machine, and why any is missing")
def run(args) -> None:
    print("\n".join(doctor_lines()))
