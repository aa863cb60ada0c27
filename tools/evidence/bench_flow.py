"""Which optical flow the capture computes: cost and accuracy of each candidate in stream.flow.

    python -m lrcn.tools.evidence.bench_flow [--video FILE] [--repeats 200] [--out docs/results]

- cost: ms per field (median over `repeats` consecutive sampled pairs of a real video, 10 fps,
  one OpenCV thread, as a capture thread computes it) at 112, 160 and 224 px;
- accuracy: endpoint error (mean length of estimated minus true displacement, pixels) on a real
  frame shifted by known amounts, whole and sub-pixel, measured away from the border where
  the shift brings in pixels no method can know; and the motion level of a frame against itself
  (a still), which must be exactly 0.

Prints a table and writes flow.json (docs/evidence/results.md#motion is generated from it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lrcn.stream.flow import DEFAULT_METHOD, METHODS, grayscale, motion_level
from lrcn.stream.video import read_frames
from lrcn.tools.evidence.checkout import checkout_or_here
from lrcn.tools.evidence.harness.procfs import machine_info

SIZES = (112, 160, 224)
SHIFTS = ((0.25, 0.0), (0.5, 0.5), (1.0, 0.0), (1.5, -1.0), (3.0, 2.0))  # (dx, dy) in pixels at model size
BORDER = 12  # pixels left out of the error at each side
DEFAULT_VIDEO = checkout_or_here().parent / "shared/data/ucf101_9/Basketball"


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """`image` moved by (dx, dy): content at x lands at x + dx (bicubic, so sub-pixel shifts are true)."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def endpoint_error(method: str, gray: np.ndarray, dx: float, dy: float) -> float:
    field = METHODS[method]()(gray, shifted(gray, dx, dy))
    inner = field[BORDER:-BORDER, BORDER:-BORDER]
    return float(np.mean(np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)))


def ms_per_field(method: str, grays: list[np.ndarray], repeats: int) -> float:
    flow = METHODS[method]()
    times = []
    for i in range(repeats):
        previous, current = grays[i % (len(grays) - 1)], grays[i % (len(grays) - 1) + 1]
        started = time.perf_counter()
        flow(previous, current)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000.0, 3)


def measure(video: Path, repeats: int) -> dict:
    cv2.setNumThreads(1)
    rows = []
    for size in SIZES:
        frames = read_frames(video, (size, size), fps=10)
        grays = [grayscale(f) for f in frames]
        still = grays[len(grays) // 2]
        for method in METHODS:
            errors = {f"{dx:g},{dy:g}": round(endpoint_error(method, still, dx, dy), 4) for dx, dy in SHIFTS}
            rows.append(
                {
                    "method": method,
                    "size": size,
                    "ms": ms_per_field(method, grays, repeats),
                    "epe": errors,
                    "epe_mean": round(float(np.mean(list(errors.values()))), 4),
                    "still_level": motion_level(METHODS[method]()(still, still)),
                }
            )
    return {
        "video": str(video),
        "fps": 10,
        "repeats": repeats,
        "threads": 1,
        "shifts": [list(s) for s in SHIFTS],
        "border": BORDER,
        "chosen": DEFAULT_METHOD,
        "machine": machine_info(),
        "rows": rows,
    }


def first_video(path: Path) -> Path:
    return path if path.is_file() else sorted(path.glob("*.avi"))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.bench_flow", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="a video file or a folder (its first .avi)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    result = measure(first_video(args.video), args.repeats)
    for row in result["rows"]:
        print(
            f"{row['method']:14} {row['size']:4d} px  {row['ms']:7.3f} ms  EPE {row['epe_mean']:.3f} px  "
            f"still {row['still_level']:.5f}",
            file=sys.stderr,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flow.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
