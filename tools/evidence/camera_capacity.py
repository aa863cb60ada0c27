"""How many 1080p30 H.264 RTSP cameras one box sustains: `lrcn serve` of a checkout, N = 1, 2, 3, ...

    python -m lrcn.tools.evidence.camera_capacity --checkout . --out docs/results/cameras_after.json
    python -m lrcn.tools.evidence.camera_capacity --checkout /tmp/lrcn-before --python /tmp/lrcn-before/.venv/bin/python \
        --out docs/results/cameras_before.json

A trial with N cameras:
- one GStreamer RTSP server process (tools/evidence/rtsp_h264_server.py) serves the same 1080p30 H.264 file
  (IPPP, 6 Mbit/s, a noisy test pattern so the bitrate is real) as rtsp://127.0.0.1:PORT/cam0 ..
  camN-1, each client from the file's start in real time, without re-encoding; it runs on the same
  cores as the recognizer, so its CPU share is measured and reported beside the recognizer's;
- `PYTHON -m lrcn.tools.cli serve BUNDLE URL... --fps 10 --duration D --stats-json ...` runs with
  cwd=CHECKOUT and that checkout's code (checked before the first trial: since the `lrcn`
  package, a checkout runs from a venv where it is installed with `pip install -e`, named by
  --python; older checkouts ran `tools.cli` from their folder), with a
  MobileNetV2-112 bundle (T=16, LSTM head, untrained head weights: they cost what trained ones do);
- a ZeroMQ subscriber in this process receives every message, so they are really sent.

A trial holds when every stream connected, dropped no frame at the ring, kept its capture-to-publish
p99 under 100 ms, and encoded about --fps frames a second: at least 90% of it both over the run
(less a start allowance) and between its first and last prediction as the subscriber saw them; and,
where the messages carry `stream_time` (the new code), its stream clock slipped at most 0.25 s
further behind real time between the first and the last 5 s: a decoder that keeps falling
behind shows there, not in capture-to-publish latency (a frame is stamped as it leaves the
decoder).
The search stops at the first N that fails twice (one retry: the machine is shared); the capacity is
the largest N below it. The source video and the bundle are built once into --work and kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import FFMPEG, free_port, stop_process
from lrcn.tools.evidence.harness.procfs import children_cpu_s, load_average, machine_busy_s, machine_info, process_cpu_s
from lrcn.tools.evidence.harness.recorder import Recorder
from lrcn.tools.evidence.harness.script import save
from lrcn.tools.evidence.harness.servers import REPO, rtsp_cameras, rtsp_server_missing, serve_command

PRETRAINED = REPO.parent / "shared" / "pretrained" / "mobilenet_v2_1.0_imagenet_notop.weights.h5"

P99_LIMIT_MS = 100.0
RATE_SHARE = 0.9  # of --fps, for "encoded about --fps frames a second"
START_ALLOWANCE_S = 5.0  # connecting and the first key frame, not counted against the encoded rate
SLIP_LIMIT_S = 0.25  # how far a stream's clock may slip behind real time over a trial (where published):
# a few frames of jitter, not a decoder that keeps falling further behind
SLIP_EDGE_S = 5.0  # the slip compares the lag over the first and the last this many seconds
SAMPLE_S = 0.25  # CPU sampling interval
STOP_GRACE_S = 90.0  # serve's start-up and shut-down beyond --duration before it is killed


@dataclass(frozen=True)
class Source:
    width: int = 1920
    height: int = 1080
    rate: int = 30
    seconds: float = 90.0
    bitrate_mbit: int = 6

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}@{self.rate} H.264 IPPP {self.bitrate_mbit} Mbit/s, {self.seconds:g} s"


# -- what the trials need, built once ----------------------------------------------------------


def source_video(folder: Path, source: Source) -> Path:
    """The camera's video, generated with ffmpeg into `folder` unless already there; the name
    carries a hash of the recipe, so a changed recipe never reuses a stale file."""
    if FFMPEG is None:
        raise LrcnError("ffmpeg not found: it generates the cameras' video (apt install ffmpeg)")
    rate = source.bitrate_mbit
    arguments = [
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={source.width}x{source.height}:rate={source.rate},noise=alls=6:allf=t",
        "-t",
        f"{source.seconds:g}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        f"{rate}M",
        "-maxrate",
        f"{rate}M",
        "-bufsize",
        f"{2 * rate}M",
        "-g",
        str(2 * source.rate),
        "-bf",
        "0",
        "-pix_fmt",
        "yuv420p",
    ]
    recipe = hashlib.sha1(" ".join(arguments).encode()).hexdigest()[:10]
    path = folder / f"camera-{source.width}x{source.height}-{source.rate}-{source.seconds:g}s-{recipe}.mp4"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    done = subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *arguments, str(partial)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise LrcnError(f"ffmpeg could not generate {path.name}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    partial.replace(path)
    return path


def mobilenet_bundle(folder: Path, video: Path, weights: Path = PRETRAINED) -> Path:
    """A MobileNetV2 112x112, T=16, 10 fps, LSTM bundle from the ImageNet weights, exported for the
    runtime (encoder.onnx, head.npz); built into `folder` unless already there. Needs TensorFlow."""
    bundle = folder / "bundle-mobilenet_v2-112"
    if all((bundle / name).is_file() for name in ("encoder.onnx", "head.npz", "export.json")):
        return bundle
    if not weights.is_file():
        raise LrcnError(f"MobileNetV2 ImageNet weights not found at {weights}")
    from lrcn.models.seed_bundle import build_mobilenet_bundle

    return build_mobilenet_bundle(bundle, video, weights)


def bundle_info(bundle: Path) -> dict:
    meta = json.loads((bundle / "meta.json").read_text())
    model = meta["model"]
    return {
        "path": str(bundle.resolve()),
        "feature_size": meta["feature_size"],
        **{key: model.get(key) for key in ("backbone", "input_size", "clip_length", "fps", "head", "lstm_units")},
        "modalities": model.get("modalities", ["rgb"]),
    }


def child_env() -> dict:
    # Nothing may put another tree ahead of the checkout's on the path.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def cli_module(checkout: Path) -> str:
    """The command line's module in that checkout: `lrcn.tools.cli`, or `tools.cli` in checkouts
    from before the `lrcn` package."""
    pyproject = checkout / "pyproject.toml"
    return "lrcn.tools.cli" if pyproject.is_file() and '"lrcn.tools"' in pyproject.read_text() else "tools.cli"


def checkout_code(checkout: Path, python: str = sys.executable) -> dict:
    """Which code `python -m <cli_module>` runs from `checkout`: its files and git commit, checked
    to lie inside it."""
    cli = cli_module(checkout)
    package = cli.removesuffix(".tools.cli") + ".stream" if cli.startswith("lrcn.") else "stream"
    probe = subprocess.run(
        [python, "-c", f"import {package}, {cli}; print({package}.__file__); print({cli}.__file__)"],
        cwd=checkout,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if probe.returncode != 0:
        raise LrcnError(f"cannot import the code in {checkout}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    files = probe.stdout.split()
    outside = [f for f in files if not Path(f).resolve().is_relative_to(checkout.resolve())]
    if outside:
        raise LrcnError(
            f"{python} -m {cli} from {checkout} imports {outside[0]}, outside it "
            f"(install the checkout into a venv with `pip install -e` and name its python with --python)"
        )

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "checkout": str(checkout.resolve()),
        "python": python,
        "cli": cli,
        "stream_module": files[0],
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


# -- measuring one trial -----------------------------------------------------------------------


class CpuSampler(threading.Thread):
    """Samples (time, serve CPU, server CPU, machine busy) every SAMPLE_S until stopped."""

    def __init__(self, serve_pid: int, server_pid: int):
        super().__init__(daemon=True)
        self.pids = serve_pid, server_pid
        self.samples: list[tuple[float, float | None, float | None, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), *map(process_cpu_s, self.pids), machine_busy_s()))
            self.stop.wait(SAMPLE_S)

    def shares(self, start: float, end: float) -> dict:
        """Cores used by serve, the server and the whole machine between the first sample at or after
        `start` and the last at or before `end`."""
        inside = [s for s in self.samples if start <= s[0] <= end and None not in s]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1.0:
            return {"window_s": None, "serve_cores": None, "server_cores": None, "machine_cores": None}
        first, last = inside[0], inside[-1]
        span = last[0] - first[0]
        return {
            "window_s": round(span, 2),
            "serve_cores": round((last[1] - first[1]) / span, 3),
            "server_cores": round((last[2] - first[2]) / span, 3),
            "machine_cores": round((last[3] - first[3]) / span, 3),
        }


class Listener(Recorder):
    """Every message serve publishes, tallied per stream: predictions received, the first and last
    arrival times, sequence gaps (messages the publisher shed), the last status state, and the
    lag of the stream's own clock behind the receive clock."""

    def __init__(self, endpoint: str):
        self.streams: dict[str, dict] = {}
        # Subscribed before serve binds: ZeroMQ connects when it can.
        super().__init__(endpoint, ("pred/", "status/"), clock=time.monotonic)

    def take(self, now: float, message) -> None:
        seen = self.streams.setdefault(
            message.stream, {"predictions": 0, "first_s": None, "last_s": None, "missed": 0, "state": None}
        )
        missed = self.subscriber.missed
        seen["missed"] = missed.get(f"pred/{message.stream}", 0) + missed.get(f"status/{message.stream}", 0)
        if message.kind == "status":
            seen["state"] = message.payload.get("state")
            return
        seen["predictions"] += 1
        seen["first_s"] = seen["first_s"] or now
        seen["last_s"] = now
        # Receive clock minus the stream's own clock: constant while capture keeps up with the
        # camera, growing when decoding falls behind (which capture-to-publish latency cannot see,
        # since a frame is stamped when it comes out of the decoder).
        stream_time = message.payload.get("stream_time")
        if isinstance(stream_time, (int, float)) and now - seen["first_s"] > START_ALLOWANCE_S:
            seen.setdefault("lags", []).append((now, now - stream_time))


def run_trial(
    checkout: Path,
    bundle: Path,
    video: Path,
    count: int,
    duration_s: float,
    fps: float,
    serve_args: tuple[str, ...] = (),
    python: str = sys.executable,
) -> dict:
    """One trial of `count` cameras for `duration_s`: the figures of every stream, CPU shares and
    whether it holds (see `judge`)."""
    with (
        tempfile.TemporaryDirectory(prefix="camera-capacity-") as scratch,
        rtsp_cameras(video, count) as (urls, server),
    ):
        stats_path, log_path = Path(scratch) / "stats.json", Path(scratch) / "serve.log"
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        names = [arg for i in range(count) for arg in ("--name", f"cam{i}")]
        command = serve_command(
            bundle.resolve(),
            *urls,
            *names,
            "--fps",
            f"{fps:g}",
            "--duration",
            f"{duration_s:g}",
            "--stats-json",
            stats_path,
            "--endpoint",
            endpoint,
            *serve_args,
            python=python,
            cli=cli_module(checkout),
        )
        listener = Listener(endpoint)
        children_before = children_cpu_s()
        started = time.monotonic()
        with open(log_path, "w") as log:
            serve = subprocess.Popen(
                command, cwd=checkout, env=child_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        sampler = CpuSampler(serve.pid, server.pid)
        sampler.start()
        try:
            exit_code = serve.wait(timeout=duration_s + STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            exit_code = None
        finally:
            stop_process(serve)
            sampler.stop.set()
            sampler.join()
            time.sleep(0.5)  # the last messages in flight
            listener.close()
        wall_s = time.monotonic() - started
        serve_cpu_s = children_cpu_s() - children_before
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
        log_tail = log_path.read_text(errors="replace").strip().splitlines()[-8:]
    seen = listener.streams
    firsts = [s["first_s"] for s in seen.values() if s["first_s"]]
    lasts = [s["last_s"] for s in seen.values() if s["last_s"]]
    # Steady state: every stream predicting, start-up and shut-down left out.
    window = sampler.shares(max(firsts) + 1.0, min(lasts)) if firsts else sampler.shares(0, 0)
    streams = {}
    for i in range(count):
        name = f"cam{i}"
        s = (stats or {}).get("streams", {}).get(name, {})
        heard = seen.get(name, {})
        span = (heard["last_s"] - heard["first_s"]) if heard.get("first_s") else 0.0
        streams[name] = {
            "state": s.get("state"),
            "frames": s.get("frames"),
            "encoded": s.get("encoded"),
            "dropped": s.get("dropped"),
            "latency_p50_ms": s.get("latency_p50_ms"),
            "latency_p99_ms": s.get("latency_p99_ms"),
            "reconnects": s.get("reconnects"),
            "fps_in": s.get("fps_in"),
            "predictions_received": heard.get("predictions", 0),
            "messages_missed": heard.get("missed", 0),
            "slip_s": slip(heard.get("lags")),
            "received_fps": round((heard["predictions"] - 1) / span, 2) if span > 1.0 else None,
        }
    elapsed = (stats or {}).get("elapsed_s")
    for figures in streams.values():
        figures["encoded_fps"] = round(figures["encoded"] / elapsed, 2) if elapsed and figures["encoded"] else None
    trial = {
        "cameras": count,
        "duration_s": duration_s,
        "exit_code": exit_code,
        "timed_out": exit_code is None,
        "elapsed_s": elapsed,
        "wall_s": round(wall_s, 1),
        "serve_cpu_s": round(serve_cpu_s, 2),
        "serve_cores_whole_run": round(serve_cpu_s / wall_s, 3),
        **window,
        "load_after": load_average(),
        "streams": streams,
    }
    if stats is None or exit_code != 0:
        trial["serve_log_tail"] = log_tail
    trial["holds"], trial["reasons"] = judge(trial, fps)
    return trial


def slip(lags: list[tuple[float, float]] | None) -> float | None:
    """How much further behind the camera a stream was at the end of a trial than at its start:
    the median lag (receive time minus stream time) over the last SLIP_EDGE_S seconds minus the
    median over the first; None without published stream times.

    >>> slip([(t, 0.05 + 0.01 * t) for t in range(30)])   # falling behind by 1% of real time
    0.25
    """
    if not lags or lags[-1][0] - lags[0][0] < 2 * SLIP_EDGE_S:
        return None
    first = [lag for t, lag in lags if t < lags[0][0] + SLIP_EDGE_S]
    last = [lag for t, lag in lags if t > lags[-1][0] - SLIP_EDGE_S]
    return round(statistics.median(last) - statistics.median(first), 3)


def judge(trial: dict, fps: float) -> tuple[bool, list[str]]:
    """(holds, why not): every stream connected, 0 dropped, p99 under the limit, and about `fps`
    frames a second encoded over the run and received between its first and last prediction."""
    reasons = []
    if trial["timed_out"]:
        reasons.append("serve did not stop in time")
    if trial["elapsed_s"] is None:
        reasons.append("no stats written")
    for name, s in trial["streams"].items():
        if not s["frames"] or not s["encoded"]:
            reasons.append(f"{name}: no frames (never connected?), state {s['state']}")
            continue
        if s["state"] == "failed":
            reasons.append(f"{name}: failed")
        if s["dropped"]:
            reasons.append(f"{name}: {s['dropped']} dropped")
        if s["latency_p99_ms"] is None or s["latency_p99_ms"] >= P99_LIMIT_MS:
            reasons.append(f"{name}: p99 {s['latency_p99_ms']} ms")
        wanted = RATE_SHARE * fps * max(0.0, trial["elapsed_s"] - START_ALLOWANCE_S)
        if s["encoded"] < wanted:
            reasons.append(f"{name}: {s['encoded']} encoded, wanted {wanted:.0f}")
        if s["received_fps"] is None or s["received_fps"] < RATE_SHARE * fps:
            reasons.append(f"{name}: received {s['received_fps']} predictions/s")
        if s["slip_s"] is not None and s["slip_s"] > SLIP_LIMIT_S:
            reasons.append(f"{name}: its clock slipped {s['slip_s']} s behind the camera's")
    return not reasons, reasons


# -- the search --------------------------------------------------------------------------------


def wait_for_quiet(limit: float | None, longest_s: float, log) -> list[float]:
    """The load average once its 1-minute figure is below `limit` (or after `longest_s`)."""
    deadline = time.monotonic() + longest_s
    while limit and os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        log(f"camera capacity: load {load_average()}, waiting for the 1-minute figure to fall below {limit:g}")
        time.sleep(30)
    return load_average()


def search(
    checkout: Path,
    work: Path,
    *,
    duration_s: float,
    fps: float,
    max_cameras: int,
    first: int = 1,
    source: Source = Source(),
    quiet_load: float | None = None,
    serve_args: tuple[str, ...] = (),
    python: str = sys.executable,
    bundle: Path | None = None,
    save=lambda result: None,
    log=lambda line: None,
) -> dict:
    """N = first, first+1, ... up to max_cameras until a trial fails twice in a row; the result as a
    dict, handed to `save` after every trial. `bundle`: an exported bundle served instead of the
    untrained MobileNetV2-112 one (a two-stream bundle, say)."""
    if duration_s + 15 > source.seconds:
        raise LrcnError(
            f"--duration {duration_s:g} s leaves too little of the {source.seconds:g} s video: "
            "each camera plays it once from the start"
        )
    missing = rtsp_server_missing()
    if missing:
        raise LrcnError(f"the GStreamer RTSP server cannot run: {missing}")
    code = checkout_code(checkout, python)
    log(f"camera capacity: {code['checkout']} runs {code['stream_module']} (commit {code['commit'][:9]})")
    video = source_video(work, source)
    if bundle is None:
        log("camera capacity: bundle (built once, needs TensorFlow)")
        bundle = mobilenet_bundle(work, video)
    elif not (bundle / "meta.json").is_file():
        raise LrcnError(f"--bundle {bundle}: no meta.json there")
    result = {
        "settings": {
            "duration_s": duration_s,
            "fps": fps,
            "max_cameras": max_cameras,
            "first": first,
            "serve_args": list(serve_args),
            "p99_limit_ms": P99_LIMIT_MS,
            "rate_share": RATE_SHARE,
            "start_allowance_s": START_ALLOWANCE_S,
        },
        "code": code,
        "source": {
            "video": str(video.resolve()),
            "label": source.label,
            "mbit_s": round(video.stat().st_size * 8 / source.seconds / 1e6, 2),
        },
        "bundle": bundle_info(bundle),
        "server": "GStreamer RTSP server (tools/evidence/rtsp_h264_server.py), one process, no re-encoding, "
        "on the same cores as serve",
        "machine": machine_info(),
        "load_before": load_average(),
        "trials": [],
        "capacity": 0,
    }
    for count in range(first, max_cameras + 1):
        for attempt in (1, 2):
            load = wait_for_quiet(quiet_load, 900, log)
            log(f"camera capacity: {count} camera(s), try {attempt}, load {load}")
            trial = {
                "attempt": attempt,
                "load_before": load,
                **run_trial(checkout, bundle, video, count, duration_s, fps, serve_args, python),
            }
            result["trials"].append(trial)
            log(trial_line(trial))
            save(result)
            if trial["holds"]:
                break
        if not trial["holds"]:
            break
        result["capacity"] = count
        save(result)
    return result


# -- output ------------------------------------------------------------------------------------


def _figure(value, spec: str) -> str:
    width = spec.split(".")[0]
    return f"{'-':>{width}}" if value is None else format(value, spec)


def trial_line(trial: dict) -> str:
    streams = trial["streams"].values()
    p99 = [s["latency_p99_ms"] for s in streams if s["latency_p99_ms"] is not None]
    rates = [s["encoded_fps"] for s in streams if s["encoded_fps"] is not None]
    received = [s["received_fps"] for s in streams if s["received_fps"] is not None]
    dropped = sum(s["dropped"] or 0 for s in streams)
    behind = [s["slip_s"] for s in streams if s["slip_s"] is not None]
    verdict = "holds" if trial["holds"] else "FAILS: " + "; ".join(trial["reasons"][:3])
    return (
        f"{trial['cameras']:>3} {trial['attempt']:>3} {dropped:>7} {_figure(max(p99, default=None), '8.1f')} "
        f"{_figure(min(rates, default=None), '8.2f')} {_figure(min(received, default=None), '8.2f')} "
        f"{_figure(trial['serve_cores'], '7.2f')} {_figure(trial['server_cores'], '7.2f')} "
        f"{_figure(trial['machine_cores'], '7.2f')} {_figure(max(behind, default=None), '7.2f')}  {verdict}"
    )


def table(result: dict) -> str:
    lines = [
        f"{result['code']['checkout']} (commit {result['code']['commit'][:9]}"
        f"{', with uncommitted changes' if result['code']['uncommitted_changes'] else ''}): "
        f"{result['source']['label']}, {result['settings']['duration_s']:g} s per trial, "
        f"sampled at {result['settings']['fps']:g} fps",
        "  N try dropped  p99 max  enc/s min recv/s min   serve  server machine    slip  (cores, steady "
        "state; slip: s the stream clock fell further behind)",
        *(trial_line(t) for t in result["trials"]),
        f"capacity: {result['capacity']} camera(s) (0 dropped, p99 < {P99_LIMIT_MS:g} ms, "
        f">= {RATE_SHARE * result['settings']['fps']:g} frames/s each); {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores shared by serve, the RTSP server and anything else running "
        f"(load before {result['load_before']})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.camera_capacity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=REPO,
        help="tree whose `lrcn serve` runs (default: the checkout holding the current directory)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the venv where --checkout is installed (default: this one)",
    )
    parser.add_argument("--out", type=Path, required=True, help="result JSON, rewritten after every trial")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("bench-results/cameras"),
        help="where the video and the bundle are built and kept",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per trial (default 60)")
    parser.add_argument("--fps", type=float, default=10.0, help="sampling rate (default 10)")
    parser.add_argument("--first", type=int, default=1, help="cameras in the first trial (default 1)")
    parser.add_argument("--max-cameras", type=int, default=12, help="stop after this many (default 12)")
    parser.add_argument(
        "--quiet-load",
        type=float,
        metavar="L",
        help="before each trial, wait (up to 15 min) until the 1-minute load is below L",
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        help="serve this exported bundle (default: an untrained MobileNetV2-112 LSTM bundle built into --work)",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for `lrcn serve`, repeatable (e.g. --serve-arg=--threads=1)",
    )
    args = parser.parse_args(argv)
    if not (0 < args.duration and 0 < args.fps and 1 <= args.first <= args.max_cameras):
        parser.error("need --duration > 0, --fps > 0 and 1 <= --first <= --max-cameras")
    if args.work.resolve().is_relative_to((REPO / "docs").resolve()):
        parser.error("--work must not be under docs/: it holds a large video and a bundle")

    try:
        result = search(
            args.checkout,
            args.work,
            duration_s=args.duration,
            fps=args.fps,
            max_cameras=args.max_cameras,
            first=args.first,
            quiet_load=args.quiet_load,
            serve_args=tuple(args.serve_arg),
            python=args.python,
            bundle=args.bundle,
            save=lambda result: save(result, args.out),
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except LrcnError as err:
        print(f"camera capacity: {err}", file=sys.stderr)
        return 2
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
