"""What a Prometheus scrape every second costs a recognizer serving 8 streams.

    python -m lrcn.tools.evidence.bench_scrape BUNDLE [--streams 8] [--rounds 8] [--round-s 30] [--out docs/results]

Two `lrcn serve` processes run side by side, each serving the same N looping video files
paced like cameras, each with its metrics port open. The run is cut into rounds; in each round
one process is scraped (GET /metrics every --interval seconds) and the other is not, the
roles swapping every round. Each process's CPU time (utime + stime, from /proc) is summed
over the rounds it was scraped and the rounds it was not, so each is compared with itself
under the same load, in the same minutes: the noise of a shared machine hits both sides.
The figure is the extra CPU while scraped, per process and their mean. Where that effect is
smaller than the machine's noise, a second figure measures it directly: each process in turn
is scraped --burst times back to back; its CPU in that time, less what it spends at its own rate
in the quiet seconds before and after, divided by the scrapes, is the server's CPU per scrape. Prints a table and
writes scrape_overhead.json.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import percentiles
from lrcn.tools.evidence.ffmpeg_server import free_port, stop_process
from lrcn.tools.evidence.harness.procfs import machine_info, process_cpu_s
from lrcn.tools.evidence.harness.script import add_video_and_out, measure_and_save, rounds_parser
from lrcn.tools.evidence.harness.scoring import extra_percent, mean
from lrcn.tools.evidence.harness.servers import REPO, checked_inputs, http_get, serve_command


class Scraper:
    """GET /metrics over one kept-alive HTTP connection, as Prometheus scrapes a target."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def scrape(self) -> tuple[int, bytes]:
        try:
            self.connection.request("GET", "/metrics")
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request opens a new connection
            return 0, b""


class Recognizer:
    """One `lrcn serve` process with its metrics port."""

    def __init__(self, bundle: Path, video: Path, streams: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = serve_command(
            bundle, *[video] * streams, "--loop", "--metrics", self.port, "--endpoint", f"tcp://127.0.0.1:{free_port()}"
        )
        self.process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w")
        )
        self.scraper = Scraper(self.port)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while http_get(self.url + "/readyz", 1.0)[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LrcnError(f"serve on port {self.port} did not become ready (exit {self.process.poll()})")
            time.sleep(0.2)

    def cpu(self) -> float:
        """The serve process's CPU seconds so far, all its threads."""
        seconds = process_cpu_s(self.process.pid)
        if seconds is None:
            raise LrcnError(f"serve on port {self.port} exited ({self.process.poll()})")
        return seconds

    def stop(self) -> None:
        stop_process(self.process)


def run_rounds(recognizers: list[Recognizer], rounds: int, round_s: float, interval_s: float) -> dict:
    cpu = {i: {"scraped": 0.0, "idle": 0.0, "scraped_s": 0.0, "idle_s": 0.0} for i in range(len(recognizers))}
    scrape_ms, sizes, failures = [], [], 0
    for number in range(rounds):
        target = number % len(recognizers)
        before = [r.cpu() for r in recognizers]
        started = time.monotonic()
        next_scrape = started
        while (now := time.monotonic()) < started + round_s:
            if now >= next_scrape:
                status, body = recognizers[target].scraper.scrape()
                took = time.monotonic() - now
                if status == 200:
                    scrape_ms.append(took * 1000)
                    sizes.append(len(body))
                else:
                    failures += 1
                next_scrape += interval_s
            time.sleep(max(0.0, min(next_scrape, started + round_s) - time.monotonic()))
        elapsed = time.monotonic() - started
        for i, recognizer in enumerate(recognizers):
            side = "scraped" if i == target else "idle"
            cpu[i][side] += recognizer.cpu() - before[i]
            cpu[i][f"{side}_s"] += elapsed
        print(
            f"round {number + 1}/{rounds}: scraped serve #{target}; CPU "
            + ", ".join(f"#{i} {recognizer.cpu() - before[i]:.2f} s" for i, recognizer in enumerate(recognizers)),
            file=sys.stderr,
            flush=True,
        )
    per_process = []
    for i, c in cpu.items():
        scraped, idle = c["scraped"] / c["scraped_s"], c["idle"] / c["idle_s"]
        per_process.append(
            {
                "process": i,
                "cores_scraped": round(scraped, 4),
                "cores_not_scraped": round(idle, 4),
                "ratio": round(scraped / idle, 4),
            }
        )
    ratios = [p["ratio"] for p in per_process]
    return {
        "per_process": per_process,
        "ratio": round(mean(ratios), 4),
        "extra_percent": extra_percent(mean(ratios), 1.0),
        "scrapes": len(scrape_ms),
        "scrape_failures": failures,
        "scrape_ms_p50": percentiles(scrape_ms, 2)["p50"],
        "scrape_ms_p99": percentiles(scrape_ms, 2)["p99"],
        "metrics_bytes": int(np.median(sizes)) if sizes else None,
    }


def burst_cost(recognizers: list[Recognizer], scrapes: int, quiet_s: float = 6.0) -> dict:
    """Server CPU per scrape: each process in turn is scraped `scrapes` times back to back; its CPU
    in that time, less what it spends at its own rate in the quiet seconds before and after."""

    def rate(recognizer: Recognizer) -> float:
        cpu, started = recognizer.cpu(), time.monotonic()
        time.sleep(quiet_s)
        return (recognizer.cpu() - cpu) / (time.monotonic() - started)

    per_scrape = []
    for recognizer in recognizers:
        before = rate(recognizer)
        cpu, started = recognizer.cpu(), time.monotonic()
        for _ in range(scrapes):
            recognizer.scraper.scrape()
        spent, took = recognizer.cpu() - cpu, time.monotonic() - started
        after = rate(recognizer)
        per_scrape.append((spent - (before + after) / 2 * took) / scrapes)
    return {
        "burst_scrapes": scrapes,
        "cpu_ms_per_scrape": round(mean(per_scrape) * 1000, 2),
        "cpu_ms_per_scrape_each": [round(m * 1000, 2) for m in per_scrape],
    }


def bench(args) -> dict:
    bundle, out, video = checked_inputs(args.bundle, args.out, args.video)
    recognizers = []
    try:
        for i in range(2):
            recognizers.append(Recognizer(bundle, video, args.streams, out / f"scrape-serve-{i}.log"))
        for recognizer in recognizers:
            recognizer.wait_ready()
        time.sleep(args.warmup_s)
        result = run_rounds(recognizers, args.rounds, args.round_s, args.interval)
        result.update(burst_cost(recognizers, args.burst))
        cores = mean(p["cores_not_scraped"] for p in result["per_process"])
        result["direct_extra_percent"] = round(result["cpu_ms_per_scrape"] / 1000 / args.interval / cores * 100, 2)
    finally:
        for recognizer in recognizers:
            recognizer.stop()
    return {
        "what": "CPU of lrcn serve with 8 streams, scraped every interval vs not, same run, roles swapped each round",
        "bundle": str(bundle),
        "streams": args.streams,
        "video": str(video),
        "rounds": args.rounds,
        "round_s": args.round_s,
        "interval_s": args.interval,
        "machine": machine_info(runtime=True),
        **result,
    }


def report(result: dict) -> str:
    """Each process scraped against not, the extra CPU, and the direct cost per scrape."""
    interval = result["interval_s"]
    lines = [
        f"serve #{p['process']}: {p['cores_scraped']:.3f} cores scraped, {p['cores_not_scraped']:.3f} not: "
        f"x{p['ratio']:.4f}"
        for p in result["per_process"]
    ]
    lines.append(
        f"scrape every {interval:g} s: {result['extra_percent']:+.2f}% CPU (target < 2%); "
        f"{result['scrapes']} scrapes, p50 {result['scrape_ms_p50']} ms, p99 {result['scrape_ms_p99']} ms, "
        f"{result['metrics_bytes']} bytes each, {result['scrape_failures']} failed"
    )
    lines.append(
        f"direct: {result['cpu_ms_per_scrape']} ms of server CPU per scrape "
        f"({result['cpu_ms_per_scrape_each']}), {result['direct_extra_percent']:+.2f}% of this load at one "
        f"scrape every {interval:g} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = rounds_parser(
        "bench_scrape",
        __doc__.splitlines()[0],
        rounds=8,
        rounds_help="rounds, an even number (default 8)",
        round_s=30.0,
        round_s_help="seconds per round (default 30)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes (default 1)")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=300, help="back-to-back scrapes for the direct cost (default 300)")
    add_video_and_out(parser)
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.rounds % 2 or args.streams < 1:
        print("bench_scrape: error: --rounds must be even and >= 2, --streams >= 1", file=sys.stderr)
        return 2
    return measure_and_save("bench_scrape", lambda: bench(args), report, Path(args.out) / "scrape_overhead.json")


if __name__ == "__main__":
    sys.exit(main())
