"""Calibration frames from real video, and INT8 static quantisation with ONNX Runtime.

Needs the `onnx` package (the training extra) to quantise; running the result needs only
onnxruntime. TensorRT's INT8 calibrator takes its frames from `calibration_frames` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.video import VIDEO_EXTENSIONS, read_frames


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


def calibration_frames(
    source: str | Path | list[Path], size: tuple[int, int], fps: float, count: int = 256
) -> np.ndarray:
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
        yield frames[start : start + batch_size]


def quantize_int8(fp32_onnx: str | Path, int8_onnx: str | Path, frames: np.ndarray, batch_size: int = 8) -> Path:
    """Static INT8 (QDQ, per-channel signed weights, unsigned activations, min-max) calibrated
    on `frames`, after the fp32-exact rewrites of `prepare_for_int8` (checked on `frames`)."""
    try:
        import onnx
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

    input_name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.feed = ({input_name: batch} for batch in batches(frames, batch_size))

        def get_next(self):
            return next(self.feed, None)

    int8_onnx = Path(int8_onnx)
    prepared = int8_onnx.with_suffix(".prep.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        pixels = prepare_for_int8(model)
        onnx.save(model, str(prepared))
        check_same_output(fp32_onnx, prepared, frames[:batch_size])
        # Pixels 0..255 quantise exactly at scale 1: the uint8 frames then feed the first
        # convolution as they are (see drop_input_quantize).
        exact = {"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}
        overrides = {pixels: [exact]} if pixels else {}
        quantize_static(
            str(prepared),
            str(int8_onnx),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"TensorQuantOverrides": overrides},
        )
        if pixels:
            model = onnx.load(str(int8_onnx))
            drop_input_quantize(model.graph, pixels)
            onnx.save(model, str(int8_onnx))
    finally:
        prepared.unlink(missing_ok=True)
    return int8_onnx


# -- fp32-exact graph rewrites that make the INT8 encoder faster on ONNX Runtime's CPU kernels ----
#
# Profiled on the seed CNN at 112x112 (one frame), the INT8 graph straight from the quantiser
# spent 25% of its time in the first convolution (7x7 stride 2 on 3 channels, slower in INT8
# than in fp32: MLAS's fast symmetric INT8 convolution needs input channels in multiples of 4)
# and ~10% in small ops around it (Cast, QuantizeLinear and a QLinearMul for the normalisation
# at the input; a Shape/Gather/Slice/Concat chain computing Flatten's shape at the output).


def prepare_for_int8(model) -> str | None:
    """Rewrite the fp32 encoder in place, keeping its output; return the name of the tensor that
    now carries raw pixel values 0..255 into the first convolution, or None."""
    graph = model.graph
    flatten_output(graph)
    chain = input_chain(graph)
    if chain is None:
        return None
    space_to_depth_first_conv(graph, chain)
    pixels = fold_input_scale(graph, chain)
    del graph.value_info[:]  # shapes changed; the quantiser infers them again
    return pixels


def initializer_value(graph, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    found = [i for i in graph.initializer if i.name == name]
    return numpy_helper.to_array(found[0]) if found else None


def initializer_scalar(graph, name: str) -> float | None:
    """The value of a one-element initializer; None if `name` is no initializer or has more values."""
    value = initializer_value(graph, name)
    return None if value is None or value.size != 1 else float(value.item())


def set_initializer(graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for i in list(graph.initializer):
        if i.name == name:
            graph.initializer.remove(i)
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))


def attribute(node, name: str, default=None):
    from onnx import helper

    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else default


def set_attribute(node, name: str, value) -> None:
    from onnx import helper

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def consumers(graph, tensor: str) -> list:
    return [n for n in graph.node if tensor in n.input]


def rename_input(graph, old: str, new: str) -> None:
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def remove_unused(graph) -> None:
    needed = {o.name for o in graph.output}
    for node in reversed(list(graph.node)):
        if set(node.output) & needed:
            needed.update(node.input)
        else:
            graph.node.remove(node)
    for init in list(graph.initializer):
        if init.name not in needed:
            graph.initializer.remove(init)


def flatten_output(graph) -> None:
    """tf2onnx writes Keras's Flatten as a Reshape to a shape computed from the input's (six
    small ops); Flatten(axis=1) is the same [N, F] with none."""
    from onnx import helper

    output = graph.output[0].name
    producers = [n for n in graph.node if output in n.output]
    if len(producers) != 1 or producers[0].op_type != "Reshape":
        return
    reshape = producers[0]
    if initializer_value(graph, reshape.input[1]) is not None:
        return
    index = list(graph.node).index(reshape)
    graph.node.remove(reshape)
    graph.node.insert(index, helper.make_node("Flatten", [reshape.input[0]], [output], axis=1, name="flatten"))
    remove_unused(graph)


def input_chain(graph) -> list | None:
    """[Cast, Mul/Add by scalars..., Transpose to NCHW, Conv]: the uint8 frames' way into the
    first convolution, as models/export.py writes it; None for any other graph."""
    chain, tensor = [], graph.input[0].name
    while True:
        following = consumers(graph, tensor)
        if len(following) != 1:
            return None
        node = following[0]
        chain.append(node)
        if node.op_type == "Conv":
            break
        if node.op_type in ("Mul", "Add"):
            constant = initializer_value(graph, node.input[1])
            if constant is None or constant.size != 1:
                return None
        elif not (node.op_type == "Cast" or (node.op_type == "Transpose" and attribute(node, "perm") == [0, 3, 1, 2])):
            return None
        tensor = node.output[0]
    shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if chain[0].op_type != "Cast" or chain[-2].op_type != "Transpose" or len(shape) != 4 or not all(shape[1:]):
        return None
    return chain


def space_to_depth_first_conv(graph, chain: list) -> None:
    """A k x k stride-2 convolution on C channels (C not a multiple of 4) as a ceil(k/2) x ceil(k/2)
    stride-1 convolution on the 2x2 space-to-depth frames' 4C channels: the same products,
    on ONNX Runtime's fast INT8 path. The rearrangement is on the uint8 frames, before the
    normalisation (elementwise, so it commutes), as Split and Concat (ONNX Runtime's 6-D
    Transpose of uint8 costs twice as much)."""
    from onnx import helper

    conv = chain[-1]
    weights = initializer_value(graph, conv.input[1])
    _, height, width, channels = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    top, left, bottom, right = attribute(conv, "pads", [0, 0, 0, 0])
    if (
        weights is None
        or weights.ndim != 4
        or channels % 4 == 0
        or attribute(conv, "strides") != [2, 2]
        or attribute(conv, "group", 1) != 1
        or attribute(conv, "dilations", [1, 1]) != [1, 1]
        or attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or height % 2
        or width % 2
    ):
        return
    out_channels, _, kernel_h, kernel_w = weights.shape
    # Shift the kernel by one tap where the padding before is odd, so whole blocks are padded.
    shift_h, shift_w = top % 2, left % 2
    blocks_h, blocks_w = -(-(kernel_h + shift_h) // 2), -(-(kernel_w + shift_w) // 2)
    padded = np.zeros((out_channels, channels, 2 * blocks_h, 2 * blocks_w), weights.dtype)
    padded[:, :, shift_h : shift_h + kernel_h, shift_w : shift_w + kernel_w] = weights
    # Input channel order (row phase, column phase, colour), as the Concat below builds it.
    weights = padded.reshape(out_channels, channels, blocks_h, 2, blocks_w, 2).transpose(0, 3, 5, 1, 2, 4)
    out_h = (height + top + bottom - kernel_h) // 2 + 1
    out_w = (width + left + right - kernel_w) // 2 + 1
    pads = [(top + shift_h) // 2, (left + shift_w) // 2]
    pads += [out_h + blocks_h - 1 - height // 2 - pads[0], out_w + blocks_w - 1 - width // 2 - pads[1]]
    if min(pads) < 0:
        return
    set_initializer(graph, conv.input[1], weights.reshape(out_channels, 4 * channels, blocks_h, blocks_w))
    set_attribute(conv, "kernel_shape", [blocks_h, blocks_w])
    set_attribute(conv, "strides", [1, 1])
    set_attribute(conv, "pads", pads)

    frames = graph.input[0].name
    set_initializer(graph, "s2d_rows", np.array([0, height // 2, 2, width // 2, 2 * channels], np.int64))
    set_initializer(graph, "s2d_blocks", np.array([0, height // 2, width // 2, 4 * channels], np.int64))
    nodes = [
        # [N, H, W, C] -> [N, H/2, row phase, W/2, (column phase, C)]: a view
        helper.make_node("Reshape", [frames, "s2d_rows"], ["s2d_rows_out"], name="s2d_rows"),
        helper.make_node("Split", ["s2d_rows_out"], ["s2d_even", "s2d_odd"], axis=2, name="s2d_split"),
        helper.make_node("Concat", ["s2d_even", "s2d_odd"], ["s2d_concat_out"], axis=4, name="s2d_concat"),
        helper.make_node("Reshape", ["s2d_concat_out", "s2d_blocks"], ["s2d_frames"], name="s2d_blocks"),
    ]
    chain[0].input[0] = "s2d_frames"
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)


def fold_input_scale(graph, chain: list) -> str | None:
    """Cast -> Mul(s) [-> Add(0)] -> Transpose -> Conv(W) becomes Cast -> Transpose -> Conv(s W):
    exact (zero padding is zero either way); the convolution then reads pixel values 0..255.
    Returns the convolution's input, or None where there is an offset (it would shift the padding)
    or the weights are computed, not stored (nothing to fold the scale into)."""
    ops = [node.op_type for node in chain]
    if ops not in (["Cast", "Mul", "Transpose", "Conv"], ["Cast", "Mul", "Add", "Transpose", "Conv"]):
        return None
    if ops[2] == "Add" and initializer_scalar(graph, chain[2].input[1]) != 0:
        return None
    cast, mul, transpose, conv = chain[0], chain[1], chain[-2], chain[-1]
    scale = initializer_scalar(graph, mul.input[1])
    weights = initializer_value(graph, conv.input[1])
    if scale is None or weights is None:
        return None
    set_initializer(graph, conv.input[1], (weights * np.float32(scale)).astype(weights.dtype))
    transpose.input[0] = cast.output[0]
    for node in chain[1:-2]:
        graph.node.remove(node)
    remove_unused(graph)
    return conv.input[0]


def drop_input_quantize(graph, pixels: str) -> None:
    """In the quantised graph, Cast(uint8 -> float) -> Transpose -> QuantizeLinear(scale 1,
    zero point 0) is the identity on values: the Transpose takes the uint8 frames directly."""
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pixels]
    (transpose,) = [n for n in graph.node if pixels in n.output]
    (cast,) = [n for n in graph.node if transpose.input[0] in n.output]
    if (
        len(quantize) != 1
        or cast.op_type != "Cast"
        or initializer_scalar(graph, quantize[0].input[1]) != 1.0
        or initializer_scalar(graph, quantize[0].input[2]) != 0
    ):
        return  # the quantiser did not take the override: correct as it is, only slower
    quantize = quantize[0]
    transpose.input[0] = cast.input[0]
    rename_input(graph, quantize.output[0], pixels)
    remove_unused(graph)
    del graph.value_info[:]  # it types the Transpose's output float


def check_same_output(original: str | Path, rewritten: str | Path, frames: np.ndarray) -> None:
    import onnxruntime

    def run(path):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: frames})[0]

    expected, got = run(original), run(rewritten)
    if expected.shape != got.shape:
        raise LrcnError(
            f"INT8 graph preparation changed the fp32 encoder's output shape {expected.shape} -> {got.shape}: a bug"
        )
    difference = float(np.abs(expected - got).max()) / max(1.0, float(np.abs(expected).max()))
    if difference > 1e-4:
        raise LrcnError(f"INT8 graph preparation changed the fp32 encoder's output (relative {difference:.2g}): a bug")
