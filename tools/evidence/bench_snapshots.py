"""What a snapshot costs: the CPU time of `Original.rgb()` + `encode_jpeg` on real decoded H.264
frames at 720p and 1080p, and what keeping each sampled frame's original costs the capture
(a reference in the ring, against none). The process's CPU time (OpenCV may use more than one
thread), so other load on the machine counts little.

    python -m lrcn.tools.evidence.bench_snapshots --out docs/results/snapshot_cost.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from lrcn.stream.ring import FrameRing
from lrcn.stream.snapshots import Original, encode_jpeg
from lrcn.tools.evidence.ffmpeg_server import keyframe_every, pattern_video
from lrcn.tools.evidence.harness.script import print_and_save


def make_video(path: Path, width: int, height: int, seconds: int) -> None:
    pattern_video(path, [("pattern", seconds)], f"{width}x{height}", *keyframe_every(25, exactly=False))


def measure(path: Path, snapshots: int) -> dict:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    ring_plain, ring_kept = FrameRing(64, (112, 112)), FrameRing(64, (112, 112))
    image = np.zeros((112, 112, 3), np.uint8)
    costs = {}
    for name, ring, keep in (("ring_write_us", ring_plain, False), ("ring_write_with_original_us", ring_kept, True)):
        began = time.process_time()
        for n, frame in enumerate(frames):
            ring.write(image, n, 0.0, original=Original(frame) if keep else None)
            if n % 32 == 31:
                ring.read_new()
        costs[name] = round((time.process_time() - began) / len(frames) * 1e6, 2)
    per_snapshot, sizes = [], []
    for frame in frames[:snapshots]:
        began = time.process_time()
        jpeg = encode_jpeg(Original(frame).rgb())
        per_snapshot.append(time.process_time() - began)
        sizes.append(len(jpeg))
    return {
        "width": frames[0].width,
        "height": frames[0].height,
        "frames": len(frames),
        **costs,
        "snapshot_ms_median": round(statistics.median(per_snapshot) * 1000, 2),
        "snapshot_ms_p90": round(sorted(per_snapshot)[int(0.9 * len(per_snapshot))] * 1000, 2),
        "jpeg_kb_median": round(statistics.median(sizes) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for width, height in ((1280, 720), (1920, 1080)):
            video = Path(scratch) / f"{height}.mp4"
            make_video(video, width, height, 4)
            results.append(measure(video, args.snapshots))
    report = {
        "command": "python -m lrcn.tools.evidence.bench_snapshots",
        "machine": platform.processor() or platform.machine(),
        "pyav": av.__version__,
        "results": results,
    }
    return print_and_save(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
