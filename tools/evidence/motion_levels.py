"""How much moves in a window of real footage and of a still: the evidence for `idle_motion`'s default.

    python -m lrcn.tools.evidence.motion_levels ../shared/data [--size 112] [--fps 10] [--clip-length 16] \\
        [--out docs/results/motion_levels.json]

Every held-out video (weizmann4: subjects 6-8, the streaming runs' test groups; ucf101_9: the
official testlist01; ps7: all, as its protocol holds each person out in turn) is decoded and its
flow computed exactly as a live stream of the file is (stream.video.read_motion); each exact
window of T sampled frames (hop 1; a shorter video: one window of all it has) gets the motion a
stream's idle gate compares with its threshold (stream.flow.window_motion). Stills: the middle
frame of each ucf101_9 and weizmann4 test video held for 4 s, written as `lrcn stream-accuracy
--static` writes them (MJPEG) and also re-encoded as its ffmpeg server sends them (MPEG-2,
q 5, GOP 10), whose coding noise is what a gate must stay above; and a uniform gray frame.
Prints and writes, per set, the distribution of window motion and the share gated at each
candidate threshold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lrcn.stream.flow import DEFAULT_METHOD, window_motion
from lrcn.stream.video import read_motion
from lrcn.tools.evidence.ffmpeg_server import mpeg_ts, run_ffmpeg
from lrcn.tools.stream_accuracy.joined_streams import gray_clip, still_clips

THRESHOLDS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
STILL_SECONDS = 4.0


def held_out(data: Path) -> dict[str, list[Path]]:
    ucf = data / "ucf101_9"
    return {
        "weizmann4": sorted(p for p in (data / "weizmann4").glob("*/*.avi") if p.name[:3] in ("s6_", "s7_", "s8_")),
        "ucf101_9": [
            ucf / line.split()[0] for line in (ucf / "splits/testlist01.txt").read_text().splitlines() if line.strip()
        ],
        "ps7": sorted((data / "ps7").glob("*/*.avi")),
    }


def windows_of(video: Path, size: int, fps: float, clip_length: int) -> list[float]:
    _, levels = read_motion(video, (size, size), fps)
    return window_motion(levels, clip_length).tolist()


def mpeg2(clip: Path) -> Path:
    """`clip` as tools/evidence/ffmpeg_server.py serves it (MPEG-2 in MPEG-TS), so its coding noise is in it."""
    out = clip.with_suffix(".ts")
    run_ffmpeg("-i", str(clip), *mpeg_ts(), str(out))
    return out


def summary(values: list[float], videos: int) -> dict:
    array = np.asarray(values)
    quantiles = {f"p{q:g}": round(float(np.percentile(array, q)), 4) for q in (0, 1, 5, 50, 95, 100)}
    gated = {f"{t:g}": round(float(np.mean(array < t)), 4) for t in THRESHOLDS}
    return {"videos": videos, "windows": len(values), **quantiles, "gated_share": gated}


def measure(data: Path, size: int, fps: float, clip_length: int) -> dict:
    sets = held_out(data)
    results = {}
    for name, videos in sets.items():
        values = [v for video in videos for v in windows_of(video, size, fps, clip_length)]
        results[name] = summary(values, len(videos))
        print(f"{name}: {results[name]}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lrcn-motion-") as work:
        parts = sets["ucf101_9"][::14] + sets["weizmann4"][::3]
        clips = still_clips(parts, Path(work), STILL_SECONDS, 25.0)
        clips.append(gray_clip(Path(work), STILL_SECONDS, 25.0, (320, 240)))
        for name, chosen in (("stills_mjpeg", clips), ("stills_mpeg2", [mpeg2(c) for c in clips])):
            values = [v for clip in chosen for v in windows_of(clip, size, fps, clip_length)]
            results[name] = summary(values, len(chosen))
            print(f"{name}: {results[name]}", file=sys.stderr)
    return {
        "size": size,
        "fps": fps,
        "clip_length": clip_length,
        "method": DEFAULT_METHOD,
        "thresholds": THRESHOLDS,
        "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0],
        "command": "python -m lrcn.tools.evidence.motion_levels ../shared/data --out docs/results/motion_levels.json",
        "sets": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.motion_levels", description=__doc__.split("\n")[0]
    )
    parser.add_argument("data", type=Path, help="the folder holding weizmann4, ucf101_9 and ps7")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--clip-length", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("docs/results/motion_levels.json"))
    args = parser.parse_args(argv)
    result = measure(args.data, args.size, args.fps, args.clip_length)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
