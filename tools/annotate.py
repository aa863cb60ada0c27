"""`lrcn annotate`: a copy of a video with the streaming prediction drawn on every frame (the work
is done by tools/annotate_video.py)."""
from __future__ import annotations

import argparse

from lrcn.tools.args import add_head_arguments
from lrcn.tools.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("video")
    parser.add_argument("-o", "--out", required=True, help="output video (.mp4, .avi, .mkv)")
    add_head_arguments(parser)


@command("annotate", help="write a copy of a video with the prediction drawn on each frame", arguments=add_arguments)
def run(args) -> None:
    # Imported here: PyAV and OpenCV need not load for every command line.
    from lrcn.tools.annotate_video import annotate

    result = annotate(args.bundle, args.video, args.out, mode=args.mode, hop=args.hop, reset_every=args.reset_every,
                      smooth=args.smooth, fps=args.fps, backend=args.backend or "onnxruntime", threads=args.threads)
    print(f"wrote {result['out']}: {result['frames']} frames, {result['predictions']} predictions")
