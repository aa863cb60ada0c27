"""Multi-worker training against one worker, on this machine: does `--distribute multiworker` learn
as well as a plain run? For each seed, `lrcn train` once as one worker and once as N workers on
127.0.0.1 (TF_CONFIG per process, free loopback ports), with the same global batch, each run with
a cache of its own so that the N workers really share out decoding and feature extraction; then
the test figures of both bundles side by side, as JSON.

    python -m lrcn.tools.evidence.local_workers ../shared/data/weizmann4 --work runs/workers --seeds 0 1 2 \\
        --batch-size 16 --out docs/results/distribute_weizmann4.json -- --test-groups 6,7,8 \\
        --backbone mobilenet_v2 --weights W.h5 --size 112 --epochs 40 --patience 10 --no-refit --lr 1e-3

It is also the recipe for trying multiworker training on one box before a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import free_port

WORKER_TIMEOUT_S = 3600


def tf_config(workers: list[str], index: int) -> str:
    """TF_CONFIG of worker `index` of a cluster of `workers` (host:port each).

    >>> json.loads(tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1))["task"]
    {'type': 'worker', 'index': 1}
    """
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def train(data: Path, out: Path, flags: list[str], cache: Path, workers: int) -> tuple[float, list[str]]:
    """One `lrcn train` as `workers` processes (plain when 1): its wall time in seconds, and each
    process's stderr."""
    command = [
        sys.executable,
        "-m",
        "lrcn.tools.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--quiet",
        *flags,
    ]
    started = time.monotonic()
    if workers == 1:
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    else:
        cluster = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
        processes = [
            subprocess.Popen(
                [*command, "--distribute", "multiworker"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TF_CONFIG": tf_config(cluster, index), "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
            for index in range(workers)
        ]
    try:
        results = [process.communicate(timeout=WORKER_TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for index, (process, (_, err)) in enumerate(zip(processes, results)):
        if process.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit {process.returncode}"
            raise LrcnError(f"{out}: worker {index} of {workers} failed: {last}")
    return time.monotonic() - started, [err for _, err in results]


def figures(bundle: Path, seconds: float) -> dict:
    meta = json.loads((bundle / "meta.json").read_text())
    test = meta["metrics"]["test"]
    return {
        "bundle": str(bundle),
        "seconds": round(seconds, 1),
        "videos": test["videos"],
        "video_correct": test["video_correct"],
        "clip_accuracy": round(test["clip_accuracy"], 4),
        "distribute": meta["training"].get("distribute"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.local_workers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="bundles and caches go here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=16, help="global batch: per worker, this / --workers")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    parser.epilog = "-- and then the flags of lrcn train (split, model, recipe)"
    argv = sys.argv[1:] if argv is None else argv
    ours, flags = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    if args.workers < 2 or args.batch_size % args.workers:
        parser.error(f"--workers must be 2 or more and divide --batch-size ({args.workers}, {args.batch_size})")
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for name, workers in (("one_worker", 1), (f"{args.workers}_workers", args.workers)):
            out = args.work / f"{name}-s{seed}"
            seconds, _ = train(
                args.data,
                out,
                [*flags, "--seed", str(seed), "--batch-size", str(args.batch_size // workers)],
                args.work / f"cache-{name}-s{seed}",
                workers,
            )
            row[name] = figures(out, seconds)
            print(
                f"seed {seed}, {name}: {row[name]['video_correct']}/{row[name]['videos']} test videos, "
                f"clip accuracy {row[name]['clip_accuracy']:.3f}, {seconds:.0f} s",
                flush=True,
            )
        rows.append(row)
    result = {
        "command": "python -m lrcn.tools.evidence.local_workers " + " ".join(argv),
        "data": str(args.data),
        "workers": args.workers,
        "global_batch": args.batch_size,
        "seeds": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    try:
        main()
    except LrcnError as err:
        sys.exit(f"lrcn: {err}")
