"""Per-frame encoder latency on every backend here, against Keras; prints a table, writes JSON.

    python -m lrcn.tools.evidence.bench_encoders BUNDLE --out bench.json [--repeats 100] [--threads 2] [--batches 1,16]
    python -m lrcn.tools.evidence.bench_encoders BUNDLE --no-keras --batches 1,16 --onnx other.int8.onnx   # compare recipes

The bundle must be exported (`lrcn export BUNDLE --int8` for the INT8 row). Frames are
real when --video is given, else random pixels (latency does not depend on content).
Rows: ONNX Runtime fp32 and INT8 (and any --onnx encoder file), TensorRT where usable, Keras
eager `model(x)` and a tf.function over the same Keras encoder (with the same uint8 -> float
normalisation), each at every batch size (default 1 and 8); then the head step, the naive
full-clip model.onnx, and INT8's speed-up over fp32. The ONNX Runtime and TensorRT calls are
interleaved call by call, so load from other processes falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from lrcn.stream.bundle import read_meta
from lrcn.stream.encoders import INT8_ENCODER_FILE, open_encoder
from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import HEAD_FILE, load_head
from lrcn.tools.evidence.harness.procfs import load_average
from lrcn.tools.evidence.harness.scoring import interleaved, median_ms

BATCHES = (1, 8)


def keras_encoders(bundle: Path, spec):
    """(eager call, tf.function) over the Keras encoder, both taking uint8 frames."""
    import tensorflow as tf

    from lrcn.models.architectures import split_model
    from lrcn.models.experiment import load_bundle

    model, _ = load_bundle(bundle)
    encoder, _ = split_model(model, spec)
    scale, offset = spec.preprocessing

    def eager(frames):
        return encoder(tf.cast(frames, tf.float32) * scale + offset, training=False).numpy()

    graph = tf.function(
        lambda frames: encoder(tf.cast(frames, tf.float32) * scale + offset, training=False),
        input_signature=[tf.TensorSpec((None, *spec.input_size, 3), tf.uint8)],
    )
    return eager, lambda frames: graph(frames).numpy()


def head_timings(head, feature_size: int, repeats: int) -> dict:
    if head.kind != "lstm":
        return {}
    features = np.random.default_rng(1).standard_normal((1, feature_size)).astype(np.float32)
    h, c = head.zero_state(1)
    hk, ck = head.zero_state(8)
    return {
        "head step, numpy, 1 state (ms)": round(median_ms(lambda: head.step(features, h, c), repeats), 4),
        "head step, numpy, 8 states sharing x.W (ms)": round(
            median_ms(lambda: head.recurrent_step(head.input_projection(features), hk, ck), repeats), 4
        ),
    }


def bench(
    bundle: Path,
    repeats: int,
    threads: int | None,
    video: str | None,
    keras: bool = True,
    batches: tuple[int, ...] = BATCHES,
    onnx_files: tuple[Path, ...] = (),
) -> dict:
    meta = read_meta(bundle)
    spec = meta.spec
    if video:
        from lrcn.stream.video import read_frames

        frames = read_frames(video, spec.input_size, spec.fps)
        frames = frames[np.arange(max(batches)) % len(frames)]
    else:
        frames = np.random.default_rng(0).integers(0, 256, (max(batches), *spec.input_size, 3), dtype=np.uint8)
    # The head first: ONNX Runtime's and TensorFlow's idle worker threads, once started,
    # compete with NumPy's BLAS threads for the same cores and blur its figure.
    extra = head_timings(load_head(bundle / HEAD_FILE), meta.feature_size, repeats)
    encoders = {"onnxruntime fp32": open_encoder(bundle, "onnxruntime", threads=threads)}
    if (bundle / INT8_ENCODER_FILE).is_file():
        encoders["onnxruntime int8"] = open_encoder(bundle, "onnxruntime-int8", threads=threads)
    for path in onnx_files:
        encoders[f"onnxruntime {path.name}"] = OnnxRuntimeEncoder(path, threads)
    try:
        encoders["tensorrt fp16"] = open_encoder(bundle, "tensorrt", precision="fp16")
    except LrcnError as err:
        print(f"tensorrt: skipped ({err})", file=sys.stderr)
    batch = {b: np.ascontiguousarray(frames[:b]) for b in batches}
    calls = {
        (name, b): (lambda encode=encoder.encode, x=batch[b]: encode(x))
        for b in batches
        for name, encoder in encoders.items()
    }
    measured = interleaved(calls, repeats)
    timed = {key: value["ms"] for key, value in measured.items()}
    cpu = {key: value["cpu_ms"] for key, value in measured.items()}
    if keras:
        for name, call in zip(("keras model(x)", "keras tf.function"), keras_encoders(bundle, spec)):
            for b in batches:
                timed[(name, b)] = median_ms(
                    lambda call=call, x=batch[b]: call(x), repeats if "model(x)" not in name else max(10, repeats // 5)
                )
    names = dict.fromkeys(name for name, _ in timed)
    rows = [
        {
            "backend": name,
            "batch": b,
            "ms_per_call": round(timed[(name, b)], 3),
            "ms_per_frame": round(timed[(name, b)] / b, 3),
            "cpu_ms_per_call": cpu.get((name, b)),
        }
        for name in names
        for b in batches
    ]
    for name in encoders:
        if name.startswith("onnxruntime ") and name != "onnxruntime fp32":
            for b in batches:
                extra[f"{name} speed-up over fp32, batch {b} (wall, CPU)"] = [
                    round(timed[("onnxruntime fp32", b)] / timed[(name, b)], 2),
                    round(cpu[("onnxruntime fp32", b)] / cpu[(name, b)], 2),
                ]
    if (bundle / "model.onnx").is_file():
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
        clip = frames[np.arange(spec.clip_length) % len(frames)][None]
        extra[f"naive: full {spec.clip_length}-frame model.onnx per new frame (ms)"] = round(
            median_ms(lambda: session.run(None, {session.get_inputs()[0].name: clip}), max(10, repeats // 5)), 3
        )
    return {
        "bundle": str(bundle),
        "backbone": spec.backbone,
        "input_size": list(spec.input_size),
        "clip_length": spec.clip_length,
        "threads": threads,
        "repeats": repeats,
        "load_average": load_average(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rows": rows,
        "extra": extra,
    }


def table(result: dict) -> str:
    lines = ["| backend | batch | ms per call | ms per frame | CPU ms per call |", "| --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        cpu = "" if r["cpu_ms_per_call"] is None else f"{r['cpu_ms_per_call']:.3f}"  # Keras rows: wall only
        lines.append(f"| {r['backend']} | {r['batch']} | {r['ms_per_call']:.3f} | {r['ms_per_frame']:.3f} | {cpu} |")
    lines += [f"{name}: {value}" for name, value in result["extra"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per core)")
    parser.add_argument("--video", help="a video whose frames to encode")
    parser.add_argument("--no-keras", action="store_true", help="skip the TensorFlow rows")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes, comma-separated")
    parser.add_argument(
        "--onnx",
        type=Path,
        action="append",
        default=[],
        help="another encoder ONNX file to time beside the bundle's (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        batches = tuple(int(b) for b in args.batches.split(","))
        result = bench(
            args.bundle,
            args.repeats,
            args.threads,
            args.video,
            keras=not args.no_keras,
            batches=batches,
            onnx_files=tuple(args.onnx),
        )
    except LrcnError as err:
        print(f"lrcn: error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
