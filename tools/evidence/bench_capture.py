"""`lrcn bench capture`: what capture costs at HD, the old OpenCV path against the PyAV one, in one run.

    lrcn bench capture --out bench-results/capture      # 720p to 2160p, H.264 and H.265: several minutes on 2 cores
    lrcn bench capture --quick --out /tmp/capture       # small, short clips: a smoke test, not a measurement

Three paths read the same generated files:

- (a) opencv: `cv2.VideoCapture(path, cv2.CAP_FFMPEG)`, `read()` every frame, INTER_AREA resize of the
  full BGR frame to model size, BGR->RGB, every frame: what `lrcn serve` did before PyAV;
- (b) pyav: `PyavCapture` through the supervisor's `timeline` and a `Sampler` at --fps, `to_rgb` on
  the sampled frames only: what `lrcn serve` does now;
- (c) decode: the same `PyavCapture`, `frames()` only, nothing converted: the floor (b) stands on.

Each figure is process CPU time (the decoder's own threads included) for reading one whole file,
opening and closing left out, per decoded source frame and per second of video. Every (source,
path) pair runs --repeats times, a b c a b c ..., so load from other processes falls on all three
alike; the table gives the median and the spread (max - min over the median), and the ratios
(b)/(c) and (a)/(b) against the targets: (b) at most 1.15x (c) on every source, (a)/(b) at least
2.5x at 1080p30. Since the conversion is smaller than this shared machine's run-to-run noise,
(b) also times its own conversion calls: (b) over (b) less them ("in-run") estimates (b)/(c)
from one run, judged against the same target.

The videos are generated with ffmpeg (a noisy test pattern, so the bitrate is real) into --cache
and kept there between runs; capture.json and capture.png go into --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.cli.commands import command

PATHS = {
    "a": "OpenCV read() + INTER_AREA resize + BGR->RGB, every frame (before)",
    "b": "PyAV timeline + Sampler, to_rgb on sampled frames only (now)",
    "c": "PyAV decode only (floor)",
}
B_OVER_C_MAX = 1.15
A_OVER_B_MIN = 2.5
QUICK_SCALE = 4  # --quick divides every frame side by this: still larger than the model input


@dataclass(frozen=True)
class SourceSpec:
    id: str
    label: str
    width: int
    height: int
    rate: int
    encoder: str  # libx264 or libx265
    b_frames: int
    bitrate: str  # ffmpeg's -b:v; maxrate the same, bufsize twice it
    length: float = 1.0  # fraction of --seconds: 2160p is slow to encode on two cores
    a_over_b_target: bool = False


SOURCES = (
    SourceSpec("720p30-h264-ippp", "720p30 H.264 IPPP", 1280, 720, 30, "libx264", 0, "6M"),
    SourceSpec("720p30-h264-bf2", "720p30 H.264 B-frames", 1280, 720, 30, "libx264", 2, "6M"),
    SourceSpec("1080p30-h264-ippp", "1080p30 H.264 IPPP", 1920, 1080, 30, "libx264", 0, "6M", a_over_b_target=True),
    SourceSpec("1080p30-h264-bf2", "1080p30 H.264 B-frames", 1920, 1080, 30, "libx264", 2, "6M", a_over_b_target=True),
    SourceSpec("2160p25-h264-ippp", "2160p25 H.264 IPPP", 3840, 2160, 25, "libx264", 0, "20M", length=0.5),
    SourceSpec("1080p30-h265-ippp", "1080p30 H.265 IPPP", 1920, 1080, 30, "libx265", 0, "6M", a_over_b_target=True),
)


# -- sources -----------------------------------------------------------------------------------


def ffmpeg_binary() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise LrcnError("ffmpeg not found: the capture bench generates its videos with it (apt install ffmpeg)")
    return ffmpeg


def ffmpeg_encoders(ffmpeg: str) -> str:
    return subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False).stdout


def encode_arguments(spec: SourceSpec, width: int, height: int, seconds: float) -> list[str]:
    pattern = f"testsrc2=size={width}x{height}:rate={spec.rate},noise=alls=6:allf=t"
    rate = int(spec.bitrate.rstrip("M"))
    arguments = [
        "-f",
        "lavfi",
        "-i",
        pattern,
        "-t",
        f"{seconds:g}",
        "-c:v",
        spec.encoder,
        "-preset",
        "veryfast",
        "-b:v",
        spec.bitrate,
        "-maxrate",
        spec.bitrate,
        "-bufsize",
        f"{2 * rate}M",
        "-g",
        "60",
        "-bf",
        str(spec.b_frames),
        "-pix_fmt",
        "yuv420p",
    ]
    if spec.encoder == "libx265":
        arguments += ["-x265-params", "log-level=error"]
    return arguments


def frame_size(spec: SourceSpec, quick: bool) -> tuple[int, int]:
    if not quick:
        return spec.width, spec.height
    return spec.width // QUICK_SCALE // 8 * 8, spec.height // QUICK_SCALE // 8 * 8


def prepare_source(spec: SourceSpec, cache: Path, seconds: float, quick: bool, ffmpeg: str, encoders: str, log) -> dict:
    """The source's description, with `file` once it exists in the cache (generated if absent), or
    `skipped` with the reason. The file name carries a hash of the recipe, so a changed recipe
    never reuses a stale video."""
    width, height = frame_size(spec, quick)
    length = round(seconds * spec.length, 3)
    info = {
        "label": spec.label,
        "width": width,
        "height": height,
        "rate": spec.rate,
        "codec": spec.encoder,
        "b_frames": spec.b_frames,
        "bitrate": spec.bitrate,
        "seconds": length,
    }
    if f" {spec.encoder} " not in encoders:
        return {**info, "skipped": f"ffmpeg here lists no {spec.encoder} encoder (`ffmpeg -encoders`)"}
    arguments = encode_arguments(spec, width, height, length)
    recipe = hashlib.sha1(" ".join(arguments).encode()).hexdigest()[:10]
    path = cache / f"{spec.id}-{width}x{height}-{length:g}s-{recipe}.mp4"
    if not path.is_file():
        log(f"lrcn bench capture: generating {path.name}")
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.mp4")
        done = subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *arguments, str(partial)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise LrcnError(f"ffmpeg could not generate {path.name}: {lines[-1]}")
        partial.replace(path)
    size = path.stat().st_size
    return {**info, "file": str(path), "bytes": size, "mbit_s": round(size * 8 / length / 1e6, 2)}


# -- the three paths ---------------------------------------------------------------------------
# Each opens the file, times reading all of it, closes it; (frames decoded, frames converted,
# CPU seconds, wall seconds).


def _clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(start: tuple[float, float], frames: int, converted: int) -> dict:
    cpu, wall = _clocks()
    return {"frames": frames, "converted": converted, "cpu_s": cpu - start[0], "wall_s": wall - start[1]}


def opencv_every_frame(path: str, size: tuple[int, int], fps: float) -> dict:
    import cv2

    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise LrcnError(f"OpenCV cannot open {path}")
    height, width = size
    try:
        start, frames = _clocks(), 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            frames += 1
        return _since(start, frames, frames)
    finally:
        capture.release()


def pyav_sampled(path: str, size: tuple[int, int], fps: float) -> dict:
    from lrcn.stream.sampling import Sampler
    from lrcn.stream.sources.pyav import PyavCapture
    from lrcn.stream.sources.supervisor import SourceOptions, timeline

    capture = PyavCapture(path, size, SourceOptions(fps=fps))
    try:
        start, frames, converted, convert_cpu_s = _clocks(), 0, 0, 0.0
        for _, _, frame in timeline(capture, False, Sampler(fps, capture.fps)):
            frames += 1
            if frame is not None:
                before = time.process_time()
                capture.to_rgb(frame)
                convert_cpu_s += time.process_time() - before
                converted += 1
        # The conversion's own CPU, timed inside the run: (b) over (b) without it estimates (b)/(c)
        # free of the run-to-run noise of a shared machine, which is larger than the conversion.
        return {**_since(start, frames, converted), "convert_cpu_s": convert_cpu_s}
    finally:
        capture.close()


def pyav_decode_only(path: str, size: tuple[int, int], fps: float) -> dict:
    from lrcn.stream.sources.pyav import PyavCapture
    from lrcn.stream.sources.supervisor import SourceOptions

    capture = PyavCapture(path, size, SourceOptions(fps=fps))
    try:
        start, frames = _clocks(), 0
        for _ in capture.frames():
            frames += 1
        return _since(start, frames, 0)
    finally:
        capture.close()


RUNNERS = {"a": opencv_every_frame, "b": pyav_sampled, "c": pyav_decode_only}


def decoder_threads(path: str) -> dict:
    """How each library's decoder threads this file (CPU time counts every thread)."""
    import cv2

    from lrcn.stream.sources.pyav import PyavCapture
    from lrcn.stream.sources.supervisor import SourceOptions

    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    opencv = int(capture.get(cv2.CAP_PROP_N_THREADS))
    capture.release()
    pyav = PyavCapture(path, (16, 16), SourceOptions())
    try:
        next(pyav.frames(), None)
        context = pyav.video_stream.codec_context
        return {
            "opencv_threads": opencv,
            "pyav_threads": context.thread_count,
            "pyav_thread_type": str(context.thread_type),
        }
    finally:
        pyav.close()


# -- measuring ---------------------------------------------------------------------------------


def spread(values: list[float]) -> dict:
    median = statistics.median(values)
    return {
        "median": round(median, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread_pct": round(100 * (max(values) - min(values)) / median, 1) if median else None,
    }


def measure(sources: dict, size: tuple[int, int], fps: float, repeats: int, log) -> tuple[dict, list]:
    """Round after round, every source, a b c: ({source id: {path: [run, ...]}}, the load average
    at the start of each round, which tells a quiet run from a contested one)."""
    runs = {sid: {p: [] for p in RUNNERS} for sid, info in sources.items() if "file" in info}
    loads = []
    for round_ in range(repeats):
        loads.append(load_average())
        log(f"lrcn bench capture: round {round_ + 1} of {repeats}, load average {loads[-1]}")
        for sid in runs:
            for name, runner in RUNNERS.items():
                runs[sid][name].append(runner(sources[sid]["file"], size, fps))
    return runs, loads


def summarise(info: dict, path_runs: dict) -> dict:
    """Per path: CPU ms per decoded frame and per second of video (median, min, max, spread), wall
    ms per frame; then (b)/(c) and (a)/(b) of the medians, with the range of the per-round ratios."""
    result = {}
    for name, runs in path_runs.items():
        per_frame = [1e3 * r["cpu_s"] / r["frames"] for r in runs]
        result[name] = {
            "frames": runs[0]["frames"],
            "converted": runs[0]["converted"],
            "cpu_ms_per_frame": spread(per_frame),
            "cpu_ms_per_camera_s": spread([ms * info["rate"] for ms in per_frame]),
            "wall_ms_per_frame": round(statistics.median(1e3 * r["wall_s"] / r["frames"] for r in runs), 4),
        }
    ratios = {
        "b_over_c_same_run": round(
            statistics.median(r["cpu_s"] / (r["cpu_s"] - r["convert_cpu_s"]) for r in path_runs["b"]), 3
        )
    }
    result["b"]["convert_cpu_ms_per_frame"] = spread([1e3 * r["convert_cpu_s"] / r["frames"] for r in path_runs["b"]])
    for key, top, bottom in (("b_over_c", "b", "c"), ("a_over_b", "a", "b")):
        rounds = [
            (t["cpu_s"] / t["frames"]) / (b["cpu_s"] / b["frames"]) for t, b in zip(path_runs[top], path_runs[bottom])
        ]
        ratios[key] = round(result[top]["cpu_ms_per_frame"]["median"] / result[bottom]["cpu_ms_per_frame"]["median"], 3)
        ratios[f"{key}_rounds"] = [round(min(rounds), 3), round(max(rounds), 3)]
    return {"paths": result, "ratios": ratios}


def check_targets(sources: dict) -> list[dict]:
    """Every target on every source it applies to; a skipped source is listed, never passed."""
    checks = []
    for sid, info in sources.items():
        wanted = [
            ("b_over_c", f"(b) <= {B_OVER_C_MAX}x (c)", B_OVER_C_MAX, "max"),
            ("b_over_c_same_run", f"(b) <= {B_OVER_C_MAX}x (c), in-run", B_OVER_C_MAX, "max"),
        ]
        if info["a_over_b_target"]:
            wanted.append(("a_over_b", f"(a)/(b) >= {A_OVER_B_MIN}x", A_OVER_B_MIN, "min"))
        for key, name, limit, kind in wanted:
            check = {"target": name, "source": sid, "limit": limit}
            if "ratios" not in info:
                checks.append({**check, "value": None, "verdict": "SKIPPED", "reason": info.get("skipped", "")})
                continue
            value = info["ratios"][key]
            met = value <= limit if kind == "max" else value >= limit
            checks.append({**check, "value": value, "verdict": "PASS" if met else "MISS"})
    return checks


def machine_info() -> dict:
    import av
    import cv2

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    build = cv2.getBuildInformation()
    opencv_avcodec = next(
        (line.split()[-1].strip("()") for line in build.splitlines() if line.strip().startswith("avcodec:")), None
    )
    ffmpeg = shutil.which("ffmpeg")
    cli = (
        subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
        if ffmpeg
        else None
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pyav": av.__version__,
        "pyav_ffmpeg": str(av.ffmpeg_version_info),
        "pyav_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "opencv": cv2.__version__,
        "opencv_libavcodec": opencv_avcodec,
        "ffmpeg_cli": cli,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_capture(
    cache: Path, *, seconds: float, repeats: int, fps: float, size: tuple[int, int], quick: bool, log=lambda line: None
) -> dict:
    """The whole benchmark as a plain dict (nothing printed or written but the cached videos)."""
    result = {
        "settings": {"seconds": seconds, "repeats": repeats, "fps": fps, "size": list(size), "quick": quick},
        "paths": PATHS,
        "machine": machine_info(),
        "load_before": load_average(),
    }
    ffmpeg = ffmpeg_binary()
    encoders = ffmpeg_encoders(ffmpeg)
    sources = {
        spec.id: {
            **prepare_source(spec, cache, seconds, quick, ffmpeg, encoders, log),
            "a_over_b_target": spec.a_over_b_target,
        }
        for spec in SOURCES
    }
    for info in sources.values():
        if "file" in info:
            info["decoder_threads"] = decoder_threads(info["file"])
            Path(info["file"]).read_bytes()  # into the page cache: the first round reads no disk either
    started = time.perf_counter()
    runs, result["load_rounds"] = measure(sources, size, fps, repeats, log)
    for sid, path_runs in runs.items():
        sources[sid].update(summarise(sources[sid], path_runs))
    result["measure_s"] = round(time.perf_counter() - started, 1)
    result["load_after"] = load_average()
    result["sources"] = sources
    result["targets"] = check_targets(sources)
    return result


# -- output ------------------------------------------------------------------------------------


def table(result: dict) -> str:
    settings = result["settings"]
    lines = [
        f"capture cost, process CPU ({settings['repeats']} rounds a b c; median, spread = (max-min)/median), "
        f"model input {settings['size'][0]}x{settings['size'][1]}, sampled at {settings['fps']:g} fps",
        f"{'source':24} {'size':>9} {'path':14} {'ms/frame':>9} {'spread':>7} {'ms/camera-s':>12} "
        f"{'wall ms/f':>10} {'frames':>7} {'conv':>5}",
    ]
    names = {"a": "(a) opencv", "b": "(b) pyav", "c": "(c) decode"}
    for info in result["sources"].values():
        label, size = info["label"], f"{info['width']}x{info['height']}"
        if "skipped" in info:
            lines.append(f"{label:24} {size:>9} skipped: {info['skipped']}")
            continue
        for name, figures in info["paths"].items():
            frame, camera = figures["cpu_ms_per_frame"], figures["cpu_ms_per_camera_s"]
            lines.append(
                f"{label:24} {size:>9} {names[name]:14} {frame['median']:9.2f} {frame['spread_pct']:6.1f}% "
                f"{camera['median']:12.1f} {figures['wall_ms_per_frame']:10.2f} {figures['frames']:7d} "
                f"{figures['converted']:5d}"
            )
            label = size = ""
    lines.append("")
    lines.append(
        f"{'source':24} {'(b)/(c)':>8} {'rounds':>13} {'in-run':>7} {'(a)/(b)':>8} {'rounds':>13} {'Mbit/s':>7}"
    )
    for info in result["sources"].values():
        if "ratios" in info:
            r = info["ratios"]
            lines.append(
                f"{info['label']:24} {r['b_over_c']:8.3f} {r['b_over_c_rounds'][0]:6.3f}-"
                f"{r['b_over_c_rounds'][1]:<6.3f} {r['b_over_c_same_run']:7.3f} "
                f"{r['a_over_b']:8.3f} {r['a_over_b_rounds'][0]:6.3f}-"
                f"{r['a_over_b_rounds'][1]:<6.3f} {info['mbit_s']:7.2f}"
            )
    lines.append(
        "in-run: (b) over (b) less its own conversion CPU, timed inside each run; the across-run ratio "
        "carries this machine's run-to-run noise, which is larger than the conversion"
    )
    lines.append("")
    lines.append(
        "targets"
        + (" (--quick: small clips, not HD; these verdicts say nothing about HD)" if settings["quick"] else "")
    )
    for check in result["targets"]:
        value = "-" if check["value"] is None else f"{check['value']:.3f}"
        reason = f" ({check['reason']})" if check.get("reason") else ""
        lines.append(f"  {check['target']:26} {check['source']:20} {value:>7}  {check['verdict']}{reason}")
    busiest = max(load[0] for load in result["load_rounds"])
    lines.append(
        f"load average before {result['load_before']}, highest 1-min at a round's start {busiest}, "
        f"after {result['load_after']}; "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores"
    )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("lrcn: matplotlib not installed, no plot (pip install matplotlib)", file=sys.stderr)
        return False
    measured = [info for info in result["sources"].values() if "paths" in info]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.27
    for offset, (name, colour) in enumerate(zip(PATHS, ("tab:red", "tab:blue", "tab:gray"))):
        figures = [info["paths"][name]["cpu_ms_per_camera_s"] for info in measured]
        medians = [f["median"] for f in figures]
        errors = [[f["median"] - f["min"] for f in figures], [f["max"] - f["median"] for f in figures]]
        xs = [i + (offset - 1) * width for i in range(len(measured))]
        ax.bar(xs, medians, width, yerr=errors, capsize=2, color=colour, label=f"({name}) {PATHS[name]}")
    for i, info in enumerate(measured):
        top = max(info["paths"][n]["cpu_ms_per_camera_s"]["max"] for n in PATHS)
        ax.annotate(
            f"a/b {info['ratios']['a_over_b']:.2f}\nb/c {info['ratios']['b_over_c']:.2f}",
            (i, top),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
        )
    ax.axhline(1000, color="k", linestyle=":", linewidth=1, label="one core")
    ax.set_xticks(range(len(measured)))
    settings = result["settings"]
    ticks = [info["label"].replace(" H.", "\nH.") for info in measured]
    if settings["quick"]:
        ticks = [f"{tick}\n{info['width']}x{info['height']}" for tick, info in zip(ticks, measured)]
    ax.set_xticklabels(ticks, fontsize=8)
    ax.set_ylabel("CPU ms per camera-second")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    ax.set_title(
        f"Capture cost to a {settings['size'][0]}x{settings['size'][1]} model input at {settings['fps']:g} fps"
        f" ({result['machine']['cpu']}; median of {settings['repeats']}, bars min-max"
        f"{'; --quick: small clips' if settings['quick'] else ''})",
        fontsize=8,
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="bench-results/capture", help="folder for capture.json and capture.png")
    parser.add_argument(
        "--cache",
        default="bench-results/capture-sources",
        help="folder for the generated videos, kept between runs (default %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"frames 1/{QUICK_SCALE} the size, 1 s clips, 2 rounds: a smoke test"
    )
    parser.add_argument("--seconds", type=float, help="clip length (default 10, --quick 1; 2160p half of it)")
    parser.add_argument("--repeats", type=int, help="rounds of a b c over every source (default 5, --quick 2)")
    parser.add_argument("--fps", type=float, default=10.0, help="the model's sampling rate for (b) (default 10)")
    parser.add_argument("--size", type=int, default=112, help="model input side in pixels (default 112)")


# A two-word command: it parses apart from `lrcn bench [BUNDLE]` (tools/cli/commands.py).
@command("bench capture", arguments=add_arguments, description=__doc__.splitlines()[0].split(": ", 1)[1])
def run(args) -> None:
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 10.0)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if not seconds > 0 or repeats < 1 or not args.fps > 0 or args.size < 1:
        raise LrcnError("--seconds and --fps must be positive, --repeats and --size at least 1")
    log = lambda line: print(line, file=sys.stderr, flush=True)
    if os.getloadavg()[0] > 1.5:
        log(f"lrcn bench capture: warning: load average {load_average()} before starting: other work shares the CPU")
    out = Path(args.out)
    result = bench_capture(
        Path(args.cache),
        seconds=seconds,
        repeats=repeats,
        fps=args.fps,
        size=(args.size, args.size),
        quick=args.quick,
        log=log,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "capture.json").write_text(json.dumps(result, indent=2) + "\n")
    written = [str(out / "capture.json")]
    if plot(result, out / "capture.png"):
        written.append(str(out / "capture.png"))
    print(table(result))
    print("wrote " + ", ".join(written))
