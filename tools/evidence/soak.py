"""`lrcn soak BUNDLE`: four ffmpeg-served live streams through `lrcn serve` for a set time.

    lrcn soak bundles/mine --duration 1800 --out soak-results     # the record: 30 minutes
    lrcn soak bundles/mine --duration 1800 --scrape 1             # ... with /metrics scraped every second
    lrcn soak bundles/mine --duration 60 --interval 5             # a short run

The runtime runs as its own process (`lrcn serve`, as deployed); this harness serves each
stream with ffmpeg (TCP MPEG-TS on 127.0.0.1, restarting a server that exits), subscribes
over ZeroMQ, and every --interval samples the serve process's resident memory and thread
count from /proc, the drops its periodic status messages report, and the capture-to-publish
latency of the predictions received in that interval. With --scrape S, serve opens its metrics
port and a scraper GETs /metrics and /healthz every S seconds, counting failures and slow
answers, as Prometheus and a liveness probe would. Writes soak.json and soak.png; exits
non-zero if the serve process died or the run broke a limit (--max-rss-growth-mb, drops).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import percentiles
from lrcn.tools.cli import commands
from lrcn.tools.evidence.ffmpeg_server import free_port
from lrcn.tools.evidence.harness.procfs import proc_status
from lrcn.tools.evidence.harness.recorder import Monitor
from lrcn.tools.evidence.harness.scoring import mean, quarters
from lrcn.tools.evidence.harness.servers import StreamServer, checked_inputs, http_get, start_serve, tear_down


class Scraper:
    """GETs /metrics and /healthz every `interval_s` in a thread, as Prometheus and a probe would."""

    def __init__(self, url: str, interval_s: float):
        self.url, self.interval_s = url, interval_s
        self.scrapes, self.failures, self.unhealthy = 0, 0, 0
        self.times_ms: list[float] = []
        self._interval_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.monotonic()
            status, _ = http_get(self.url + "/metrics")
            took_ms = (time.monotonic() - started) * 1000
            health, _ = http_get(self.url + "/healthz")
            if status == 200:
                self.scrapes += 1
                if len(self.times_ms) < 100_000:
                    self.times_ms.append(took_ms)
                self._interval_ms.append(took_ms)
            elif status:  # 0: not up yet, or already gone
                self.failures += 1
            self.unhealthy += health == 503

    def take_median_ms(self) -> float | None:
        """The median scrape time since the last call: it must not grow as the process runs."""
        taken, self._interval_ms = self._interval_ms, []
        return round(float(np.median(taken)), 2) if taken else None

    def summary(self) -> dict:
        times = percentiles(self.times_ms, 2)
        return {
            "scrapes": self.scrapes,
            "scrape_failures": self.failures,
            "healthz_503": self.unhealthy,
            "scrape_ms_p50": times["p50"],
            "scrape_ms_p99": times["p99"],
            "scrape_ms_max": round(max(self.times_ms), 2) if self.times_ms else None,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(6.0)


def soak(args) -> dict:
    bundle, out, video = checked_inputs(args.bundle, args.out, args.video)
    servers = [StreamServer(video) for _ in range(args.streams)]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    samples, restarts = [], 0
    monitor = Monitor(endpoint)
    serve, scraper = None, None
    try:
        for server in servers:
            server.start()
        extra = ["--fps", str(args.fps)] if args.fps else []
        if args.scrape:
            metrics_port = free_port()
            extra += ["--metrics", str(metrics_port)]
            scraper = Scraper(f"http://127.0.0.1:{metrics_port}", args.scrape)
        serve = start_serve(
            bundle,
            [s.url for s in servers],
            [f"cam{i}" for i in range(len(servers))],
            endpoint,
            args.duration,
            out / "serve-stats.json",
            extra,
        )
        started = time.monotonic()
        next_sample = started + args.interval
        while serve.poll() is None and time.monotonic() < started + args.duration + 20:
            time.sleep(max(0.0, min(0.2, next_sample - time.monotonic())))
            serving = serve.poll() is None and time.monotonic() < started + args.duration - 1.0
            for server in servers:  # a server that exits mid-run (none should) is started again and counted
                if not server.alive and serving:
                    server.start()
                    restarts += 1
            if time.monotonic() < next_sample or serve.poll() is not None:
                continue
            next_sample += args.interval
            latencies = monitor.take_latencies()
            stats = dict(monitor.stats)
            try:
                process = proc_status(serve.pid)
            except OSError:
                break
            sample = {
                "t_s": round(time.monotonic() - started, 1),
                **process,
                "predictions": sum(monitor.predictions.values()),
                "dropped": sum(s.get("dropped", 0) for s in stats.values()),
                "publisher_dropped": sum(s.get("publisher_dropped", 0) for s in stats.values()),
                "reconnects": sum(s.get("reconnects", 0) for s in stats.values()),
                "p50_ms": percentiles(latencies)["p50"],
                "p99_ms": percentiles(latencies)["p99"],
                "received": len(latencies),
            }
            if scraper is not None:
                sample["scrape_ms"] = scraper.take_median_ms()
            samples.append(sample)
            print(
                f"soak {sample['t_s']:7.1f} s: RSS {sample.get('rss_mb')} MiB, {sample.get('threads')} threads, "
                f"{sample['received']} predictions, p50/p99 {sample['p50_ms']}/{sample['p99_ms']} ms, dropped "
                f"{sample['dropped']}, reconnects {sample['reconnects']}",
                file=sys.stderr,
                flush=True,
            )
        try:
            code = serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if scraper is not None:
            scraper.close()
        tear_down(serve, servers, monitor)
    result = summarise(samples, code, restarts, args, video, monitor)
    if scraper is not None:
        result["scrape"] = {"interval_s": args.scrape, **scraper.summary()}
        timed = [s["scrape_ms"] for s in samples if s.get("scrape_ms") is not None]
        if len(timed) >= 4:  # the median scrape, first quarter of the run against the last
            first, last = quarters(timed)
            result["scrape"]["ms_first"], result["scrape"]["ms_last"] = round(mean(first), 2), round(mean(last), 2)
    (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    result["plot"] = plot(result, out / "soak.png")
    return result


def summarise(samples: list[dict], code, restarts: int, args, video: Path, monitor: Monitor) -> dict:
    """Growth and drift: the last quarter of the run against the first quarter after warm-up."""
    result = {
        "streams": args.streams,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "video": str(video),
        "serve_exit": code,
        "server_restarts": restarts,
        "samples": samples,
        "events": monitor.state_change_list(),
        "max_heartbeat_gap_s": round(monitor.max_heartbeat_gap_s, 3),
        "predictions": dict(monitor.predictions),
    }
    usable = [s for s in samples if "rss_mb" in s and s["p99_ms"] is not None]
    if len(usable) >= 4:
        first, last = quarters(usable, skip=1)  # the first sample is the warm-up
        result["rss_first_mb"] = round(mean(s["rss_mb"] for s in first), 1)
        result["rss_last_mb"] = round(mean(s["rss_mb"] for s in last), 1)
        result["rss_growth_mb"] = round(result["rss_last_mb"] - result["rss_first_mb"], 1)
        result["threads_min"] = min(s["threads"] for s in usable)
        result["threads_max"] = max(s["threads"] for s in usable)
        result["p99_first_ms"] = round(mean(s["p99_ms"] for s in first), 2)
        result["p99_last_ms"] = round(mean(s["p99_ms"] for s in last), 2)
        result["p99_drift_ms"] = round(result["p99_last_ms"] - result["p99_first_ms"], 2)
        result["dropped"] = samples[-1]["dropped"]
        result["publisher_dropped"] = samples[-1]["publisher_dropped"]
    return result


def plot(result: dict, path: Path) -> str | None:
    """soak.png (tools/evidence/plots.py), or None without matplotlib or samples."""
    try:
        from lrcn.tools.evidence import plots
    except ImportError:
        return None
    return plots.soak(result, path)


def verdict(result: dict, max_rss_growth_mb: float) -> list[str]:
    problems = []
    if result["serve_exit"] != 0:
        problems.append(f"serve exited with {result['serve_exit']}")
    if result.get("rss_growth_mb") is None:
        problems.append("too few samples to judge growth")
    elif result["rss_growth_mb"] > max_rss_growth_mb:
        problems.append(f"RSS grew {result['rss_growth_mb']} MiB (limit {max_rss_growth_mb})")
    if result.get("dropped"):
        problems.append(f"{result['dropped']} frames dropped at the rings")
    scrape = result.get("scrape")
    if scrape and (scrape["scrape_failures"] or scrape["healthz_503"] or not scrape["scrapes"]):
        problems.append(
            f"{scrape['scrapes']} scrapes, {scrape['scrape_failures']} failed, "
            f"{scrape['healthz_503']} unhealthy answers"
        )
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--fps", type=float, help="sampling rate (default: the model's)")
    parser.add_argument("--video", help="video each server plays in a loop (default: a UCF101 clip from ../shared)")
    parser.add_argument("--out", default="soak-results")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    parser.add_argument(
        "--scrape",
        type=float,
        metavar="S",
        help="open serve's metrics port and GET /metrics and /healthz every S seconds",
    )


@commands.command(
    "soak",
    help="four ffmpeg-served streams through lrcn serve for a set time: RSS, threads, drops, latency drift",
    arguments=add_arguments,
)
def run(args) -> None:
    if args.streams < 1 or args.duration <= 0 or args.interval <= 0:
        raise LrcnError("--streams, --duration and --interval must be positive")
    result = soak(args)
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "events")}, indent=1))
    problems = verdict(result, args.max_rss_growth_mb)
    if problems:
        raise LrcnError("soak: " + "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    """`python -m lrcn.tools.evidence.soak ...` is `lrcn soak ...`."""
    return commands.main(["soak", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
