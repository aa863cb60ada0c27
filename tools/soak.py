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
from collections import defaultdict
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import percentiles
from lrcn.tools.bench_scrape import get
from lrcn.tools.ffmpeg_server import ffmpeg_tcp_ts, free_port, is_listening, stop_process

REPO = Path(__file__).resolve().parents[1]


def proc_status(pid: int) -> dict:
    """VmRSS (MiB) and thread count of a live process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "VmRSS":
            values["rss_mb"] = round(int(rest.split()[0]) / 1024, 1)
        elif key == "Threads":
            values["threads"] = int(rest)
    return values


class StreamServer:
    """One ffmpeg TCP MPEG-TS server on a fixed port, which can be killed and started again."""

    def __init__(self, video: Path, port: int | None = None):
        self.video, self.port = video, port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 15.0) -> None:
        self.process = subprocess.Popen(ffmpeg_tcp_ts(self.video, self.port), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LrcnError(f"ffmpeg did not listen on {self.port} (exit {self.process.poll()})")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Monitor:
    """A real subscriber in a thread: counts predictions per stream, keeps every state-change
    status event, the newest periodic stats per stream, heartbeat gaps, and the latencies of the
    current interval (taken and cleared by `take_latencies`)."""

    def __init__(self, endpoint: str):
        from lrcn.stream.publisher import Subscriber

        self.subscriber = Subscriber(endpoint, [""])
        self.predictions: dict[str, int] = defaultdict(int)
        self.last_prediction: dict[str, tuple[float, int]] = {}   # stream -> (monotonic time, frame index)
        self.events: list[dict] = []
        self.stats: dict[str, dict] = {}
        self.heartbeats = 0
        self.last_heartbeat: float | None = None
        self.max_heartbeat_gap_s = 0.0
        self._latencies: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.subscriber.receive(0.05)
            if message is None:
                continue
            now, payload = time.monotonic(), message.payload
            with self._lock:
                if message.kind == "pred":
                    self.predictions[message.stream] += 1
                    self.last_prediction[message.stream] = (now, payload["frame_index"])
                    if len(self._latencies) < 100_000:
                        self._latencies.append(payload["latency_ms"])
                elif message.kind == "status":
                    report = payload["stats"].get("report")
                    if report:
                        self.stats[message.stream] = payload["stats"]
                    else:
                        self.events.append({"t": now, "stream": message.stream, "state": payload["state"],
                                            "reason": payload["reason"]})
                elif message.kind == "heartbeat":
                    if self.last_heartbeat is not None:
                        self.max_heartbeat_gap_s = max(self.max_heartbeat_gap_s, now - self.last_heartbeat)
                    self.last_heartbeat = now
                    self.heartbeats += 1

    def take_latencies(self) -> list[float]:
        with self._lock:
            taken, self._latencies = self._latencies, []
        return taken

    def events_since(self, stream: str, since: float) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["stream"] == stream and e["t"] >= since]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.subscriber.close()


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
            status, _ = get(self.url + "/metrics")
            took_ms = (time.monotonic() - started) * 1000
            health, _ = get(self.url + "/healthz")
            if status == 200:
                self.scrapes += 1
                if len(self.times_ms) < 100_000:
                    self.times_ms.append(took_ms)
                self._interval_ms.append(took_ms)
            elif status:     # 0: not up yet, or already gone
                self.failures += 1
            self.unhealthy += health == 503

    def take_median_ms(self) -> float | None:
        """The median scrape time since the last call: it must not grow as the process runs."""
        taken, self._interval_ms = self._interval_ms, []
        return round(float(np.median(taken)), 2) if taken else None

    def summary(self) -> dict:
        times = percentiles(self.times_ms, 2)
        return {"scrapes": self.scrapes, "scrape_failures": self.failures, "healthz_503": self.unhealthy,
                "scrape_ms_p50": times["p50"], "scrape_ms_p99": times["p99"],
                "scrape_ms_max": round(max(self.times_ms), 2) if self.times_ms else None}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(6.0)


def start_serve(bundle: Path, urls: list[str], names: list[str], endpoint: str, duration_s: float,
                stats_path: Path, extra: list[str] = ()) -> subprocess.Popen:
    command = [sys.executable, "-m", "lrcn.tools.cli", "serve", str(bundle), *urls]
    for name in names:
        command += ["--name", name]
    command += ["--endpoint", endpoint, "--read-timeout", "3", "--stats-interval", "2",
                "--duration", str(duration_s), "--stats-json", str(stats_path), *extra]
    return subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(stats_path.with_suffix(".stderr"), "w"))


def default_video(out: Path) -> Path:
    from lrcn.tools.bench import default_video as bench_video

    return bench_video(out)


def tear_down(serve: subprocess.Popen | None, servers: list, monitor) -> None:
    """Whatever happened: kill a serve that is still up, every stream server, and the subscriber."""
    if serve is not None and serve.poll() is None:
        serve.kill()
        serve.wait(10)
    for server in servers:
        server.kill()
    monitor.close()


def checked_inputs(args) -> tuple[Path, Path, Path]:
    """(bundle, out folder, video to serve) from the soak's and the fault run's arguments."""
    bundle, out = Path(args.bundle), Path(args.out)
    if not (bundle / "meta.json").is_file():
        raise LrcnError(f"not a bundle: {bundle}")
    out.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else default_video(out)
    if not video.is_file():
        raise LrcnError(f"video not found: {video}")
    return bundle, out, video


def soak(args) -> dict:
    bundle, out, video = checked_inputs(args)
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
        serve = start_serve(bundle, [s.url for s in servers], [f"cam{i}" for i in range(len(servers))], endpoint,
                            args.duration, out / "serve-stats.json", extra)
        started = time.monotonic()
        next_sample = started + args.interval
        while serve.poll() is None and time.monotonic() < started + args.duration + 20:
            time.sleep(max(0.0, min(0.2, next_sample - time.monotonic())))
            serving = serve.poll() is None and time.monotonic() < started + args.duration - 1.0
            for server in servers:   # a server that exits mid-run (none should) is started again and counted
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
            sample = {"t_s": round(time.monotonic() - started, 1), **process,
                      "predictions": sum(monitor.predictions.values()),
                      "dropped": sum(s.get("dropped", 0) for s in stats.values()),
                      "publisher_dropped": sum(s.get("publisher_dropped", 0) for s in stats.values()),
                      "reconnects": sum(s.get("reconnects", 0) for s in stats.values()),
                      "p50_ms": percentiles(latencies)["p50"], "p99_ms": percentiles(latencies)["p99"],
                      "received": len(latencies)}
            if scraper is not None:
                sample["scrape_ms"] = scraper.take_median_ms()
            samples.append(sample)
            print(f"soak {sample['t_s']:7.1f} s: RSS {sample.get('rss_mb')} MiB, {sample.get('threads')} threads, "
                  f"{sample['received']} predictions, p50/p99 {sample['p50_ms']}/{sample['p99_ms']} ms, dropped "
                  f"{sample['dropped']}, reconnects {sample['reconnects']}", file=sys.stderr, flush=True)
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
        if len(timed) >= 4:   # the median scrape, first quarter of the run against the last
            quarter = len(timed) // 4
            result["scrape"]["ms_first"] = round(float(np.mean(timed[:quarter])), 2)
            result["scrape"]["ms_last"] = round(float(np.mean(timed[-quarter:])), 2)
    (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    result["plot"] = plot(result, out / "soak.png")
    return result


def summarise(samples: list[dict], code, restarts: int, args, video: Path, monitor: Monitor) -> dict:
    """Growth and drift: the last quarter of the run against the first quarter after warm-up."""
    result = {"streams": args.streams, "duration_s": args.duration, "interval_s": args.interval, "video": str(video),
              "serve_exit": code, "server_restarts": restarts, "samples": samples,
              "events": [{k: e[k] for k in ("stream", "state", "reason")} for e in monitor.events],
              "max_heartbeat_gap_s": round(monitor.max_heartbeat_gap_s, 3), "predictions": dict(monitor.predictions)}
    usable = [s for s in samples if "rss_mb" in s and s["p99_ms"] is not None]
    if len(usable) >= 4:
        quarter = max(1, len(usable) // 4)
        first, last = usable[1:1 + quarter] or usable[:1], usable[-quarter:]
        mean = lambda rows, key: float(np.mean([r[key] for r in rows]))
        result["rss_first_mb"], result["rss_last_mb"] = round(mean(first, "rss_mb"), 1), round(mean(last, "rss_mb"), 1)
        result["rss_growth_mb"] = round(result["rss_last_mb"] - result["rss_first_mb"], 1)
        result["threads_min"] = min(s["threads"] for s in usable)
        result["threads_max"] = max(s["threads"] for s in usable)
        result["p99_first_ms"], result["p99_last_ms"] = round(mean(first, "p99_ms"), 2), round(mean(last, "p99_ms"), 2)
        result["p99_drift_ms"] = round(result["p99_last_ms"] - result["p99_first_ms"], 2)
        result["dropped"] = samples[-1]["dropped"]
        result["publisher_dropped"] = samples[-1]["publisher_dropped"]
    return result


def plot(result: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = [s for s in result["samples"] if "rss_mb" in s]
    if not samples:
        return None
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(8, 4.5), sharex=True)
    for ax, key, label in ((axes[0, 0], "rss_mb", "serve RSS, MiB"), (axes[0, 1], "threads", "serve threads"),
                           (axes[1, 0], "p99_ms", "p99 capture->publish, ms (interval)"),
                           (axes[1, 1], "dropped", "ring drops (cumulative)")):
        ax.plot(t, [s[key] if s[key] is not None else np.nan for s in samples], marker=".", linewidth=1)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("minutes", fontsize=8)
    axes[1, 0].plot(t, [s["p50_ms"] if s["p50_ms"] is not None else np.nan for s in samples], linewidth=1,
                    label="p50")
    axes[1, 0].legend(fontsize=7)
    scraped = f", /metrics scraped every {result['scrape']['interval_s']:g} s" if result.get("scrape") else ""
    fig.suptitle(f"Soak: {result['streams']} ffmpeg-served streams, {result['duration_s'] / 60:.0f} min{scraped}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


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
        problems.append(f"{scrape['scrapes']} scrapes, {scrape['scrape_failures']} failed, "
                        f"{scrape['healthz_503']} unhealthy answers")
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
    parser.add_argument("--scrape", type=float, metavar="S",
                        help="open serve's metrics port and GET /metrics and /healthz every S seconds")


def run(args) -> None:
    if args.streams < 1 or args.duration <= 0 or args.interval <= 0:
        raise LrcnError("--streams, --duration and --interval must be positive")
    result = soak(args)
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "events")}, indent=1))
    problems = verdict(result, args.max_rss_growth_mb)
    if problems:
        raise LrcnError("soak: " + "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    """`python -m lrcn.tools.soak ...` is `lrcn soak ...`."""
    from lrcn.tools.cli import main as lrcn

    return lrcn(["soak", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
