"""`lrcn synth`: synthetic action videos whose only cue is motion (`lrcn.models.synth`), no TensorFlow."""

from __future__ import annotations

import argparse
from pathlib import Path

from lrcn.tools.cli.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder, or a .avi path with --continuous")
    parser.add_argument("--videos-per-class", type=int, default=24)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--continuous",
        type=float,
        metavar="SECONDS",
        help="one long video whose action changes, with a .labels.json sidecar",
    )


@command("synth", help="write synthetic action videos (motion is the only cue)", arguments=add_arguments)
def run(args) -> None:
    from lrcn.models import synth

    if args.continuous:
        video, labels = synth.write_continuous(
            Path(args.out), duration_s=args.continuous, size=args.size, fps=args.fps, seed=args.seed
        )
        print(f"wrote {video} and {labels}")
        return
    paths = synth.write_dataset(
        args.out,
        videos_per_class=args.videos_per_class,
        n_frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        groups=args.groups,
    )
    print(f"wrote {len(paths)} videos of {len(synth.CLASSES)} classes under {args.out}")
