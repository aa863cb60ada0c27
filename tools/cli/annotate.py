"""`lrcn annotate`: a copy of a video with the streaming prediction drawn on every frame (the work
is done by tools/cli/annotate_video.py)."""

from __future__ import annotations

import argparse

from lrcn.tools.cli.args import add_head_arguments
from lrcn.tools.cli.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("video")
    parser.add_argument("-o", "--out", required=True, help="output video (.mp4, .avi, .mkv)")
    add_head_arguments(parser)
    parser.add_argument(
        "--novelty",
        metavar="off|THRESHOLD",
        help="the open-set guard: a window whose novelty score is over the threshold is drawn as "
        "`unknown` (default: the bundle's novelty.npz threshold, if it has one)",
    )


@command("annotate", help="write a copy of a video with the prediction drawn on each frame", arguments=add_arguments)
def run(args) -> None:
    # Imported here: PyAV and OpenCV need not load for every command line.
    from lrcn.tools.cli.annotate_video import annotate

    result = annotate(
        args.bundle,
        args.video,
        args.out,
        mode=args.mode,
        hop=args.hop,
        reset_every=args.reset_every,
        smooth=args.smooth,
        fps=args.fps,
        backend=args.backend or "onnxruntime",
        threads=args.threads,
        novelty=args.novelty,
    )
    unknown = f" ({result['unknown']} unknown)" if result["guarded"] else ""
    print(f"wrote {result['out']}: {result['frames']} frames, {result['predictions']} predictions{unknown}")
