"""The shell of a measurement script that serves looping videos in rounds (bench_scrape,
bench_sinks): the arguments they share, and how they end: figures printed, the result written
as JSON, or one line and exit status 2 when it could not measure."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from lrcn.stream.errors import LrcnError


def rounds_parser(
    tool: str, description: str, *, rounds: int, rounds_help: str | None, round_s: float, round_s_help: str
) -> argparse.ArgumentParser:
    """`python -m lrcn.tools.evidence.TOOL BUNDLE [--streams N] [--rounds R] [--round-s S]`; the tool adds
    its own flags, then `add_video_and_out`."""
    parser = argparse.ArgumentParser(prog=f"python -m lrcn.tools.{tool}", description=description)
    parser.add_argument("bundle")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--round-s", type=float, default=round_s, help=round_s_help)
    return parser


def add_video_and_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", help="video each stream plays in a loop (default: as lrcn bench)")
    parser.add_argument("--out", default="bench-results")


def save(result: dict, path: Path, indent: int = 1) -> Path:
    """`result` as JSON at `path` (its folder made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    return path


def print_and_save(report: dict, out: Path | None) -> int:
    """Print `report` as JSON and, given an --out path, write it there too; exit status 0."""
    print(json.dumps(report, indent=1))
    if out:
        save(report, out)
    return 0


def measure_and_save(tool: str, measure: Callable[[], dict], report: Callable[[dict], str], path: Path) -> int:
    """Run `measure`, print `report` of its result, write the result to `path` and say so: exit
    status 0; an LrcnError is one line `TOOL: error: ...` and exit status 2."""
    try:
        result = measure()
    except LrcnError as err:
        print(f"{tool}: error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    print(f"wrote {save(result, path)}")
    return 0
