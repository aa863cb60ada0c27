"""`lrcn export` and `lrcn engine build`: a trained bundle made ready for the runtime (encoder.onnx,
head.npz, model.onnx, checked against Keras), and its TensorRT engines, built on the target GPU box."""

from __future__ import annotations

import argparse

from lrcn.tools.cli.args import require_tensorflow
from lrcn.tools.cli.commands import command


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("--video", help="video file or folder for the check (default: the bundle's training data)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write encoder.int8.onnx (ONNX Runtime static INT8; "
        "a two-stream bundle also encoder.flow.int8.onnx, calibrated on real flow fields)",
    )
    parser.add_argument("--calibration", help="video file or folder for INT8 calibration (default: --video)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument(
        "--model-onnx",
        action="store_true",
        help="two-stream bundles: also write the whole model as model.onnx (one input per modality; "
        "minutes of tf2onnx: the runtime does not need it)",
    )


@command(
    "export",
    help="add encoder.onnx (and encoder.flow.onnx), head.npz and model.onnx to a bundle, checked against "
    "Keras on real frames (and flow fields)",
    arguments=add_export_arguments,
)
def export(args) -> None:
    require_tensorflow()
    from lrcn.models.export import describe, export_from_paths

    report = export_from_paths(
        args.bundle,
        args.video,
        int8=args.int8,
        calibration=args.calibration,
        tolerance=args.tolerance,
        whole_model=args.model_onnx,
    )
    print(f"exported {args.bundle}: {describe(report)}")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """`engine` has one subcommand so far, `build`."""
    subcommands = parser.add_subparsers(dest="engine_command", required=True)
    build = subcommands.add_parser(
        "build",
        help="build (or find cached) an engine from each encoder file "
        "(encoder.onnx; encoder.flow.onnx too for a two-stream bundle)",
    )
    build.add_argument("bundle")
    build.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    build.add_argument("--max-batch", type=int, default=16, help="largest batch the engine takes (default 16)")
    build.add_argument("--calibration", help="video file or folder of real frames for INT8 calibration")
    build.add_argument("--rebuild", action="store_true", help="build even when the cache has this engine")


@command("engine", help="TensorRT engines for a bundle (run on the target GPU box)", arguments=add_engine_arguments)
def engine_build(args) -> None:
    from lrcn.stream.bundle import read_meta
    from lrcn.stream.encoders.tensorrt import ensure_engine

    for modality in read_meta(args.bundle).spec.modalities:
        path = ensure_engine(
            args.bundle, args.precision, args.max_batch, args.calibration, rebuild=args.rebuild, modality=modality
        )
        print(f"engine: {path}")
