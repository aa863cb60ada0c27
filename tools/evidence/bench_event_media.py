"""Events, clips and snapshots on a long real stream (issue 24, "Measure"): serves an H.264 MP4
through `lrcn serve --record` in real time (paced, as a camera delivers it), then checks what the
run left behind against what it published (the JSONL sink's copy of every message):

- clips = events, one to one: every ended event has exactly one clip, `<stream>/<id>.mp4`, the
  one its end message names, and no clip (nor `.part`) is left without an event;
- every clip plays with PyAV from a keyframe, and lasts what its event's rules say: from
  `start_time - pre_s` (back to a keyframe) to `end_time + post_s`, within the stream, never
  more than `max_clip_s`;
- every event has its two snapshots (`<id>-start.jpg`, `<id>.jpg`), JPEGs at the source's own
  resolution (decoded with OpenCV), and no snapshot is without an event;
- the event store's rows (the record dir's `lrcn.sqlite`) equal the published events, and the
  media index lists exactly the clips and snapshots.

Sources: `weizmann4` (default when ../shared is there): the held-out subjects' videos of
../shared/data/weizmann4 ordered so the action changes (as `lrcn stream-accuracy` joins them),
repeated to `--duration`; `pattern`: black and ffmpeg's test pattern in turn; or a video file,
looped. Either way re-encoded to H.264 MP4 with a keyframe every `--gop-s` (clips need
timestamps: an MJPEG AVI cannot record), in `--work` or a temporary folder. Bundle: `--bundle`,
else a tiny untrained seed bundle built in the work folder (needs TensorFlow).

    python -m lrcn.tools.evidence.bench_event_media --bundle /work/runs23/study/bundles/weizmann4-s0-rgb \\
        --out docs/results/event_media.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lrcn.tools.evidence.checkout import checkout_or_here

REPOSITORY = checkout_or_here()
WEIZMANN4 = REPOSITORY.parent / "shared" / "data" / "weizmann4"
STREAM = "cam"
SOURCE_FPS = 25


# ------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Encoding:
    """The H.264 source: `seconds` long at SOURCE_FPS, a keyframe every `gop_s`, at most `bframes`
    B-frames in a row (0 by default, as many IP cameras send, for latency), scaled to `size` (None: as is)."""

    seconds: float
    gop_s: float = 1.0
    bframes: int = 0
    size: tuple[int, int] | None = None


def encode_h264(inputs: Sequence[str], out: Path, encoding: Encoding, graph: str | None = None) -> Path:
    """ffmpeg `inputs` (its input arguments; `graph` a filter graph over them) to `encoding`'s MP4."""
    from lrcn.tools.evidence.ffmpeg_server import run_ffmpeg

    seconds, size = encoding.seconds, encoding.size
    gop = max(1, round(encoding.gop_s * SOURCE_FPS))
    chain = ",".join([f"fps={SOURCE_FPS}", *([f"scale={size[0]}:{size[1]}:flags=area"] if size else [])])
    filters = ["-filter_complex", f"{graph},{chain}[v]", "-map", "[v]"] if graph else ["-vf", chain]
    run_ffmpeg(
        *inputs,
        "-t",
        f"{seconds:.3f}",
        "-an",
        *filters,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        str(encoding.bframes),
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        str(out),
        timeout_s=max(300.0, seconds),
    )
    return out


def weizmann4_source(data: Path, test_groups: str, work: Path, encoding: Encoding) -> tuple[Path, dict]:
    from lrcn.models.data import discover
    from lrcn.stream.errors import LrcnError
    from lrcn.tools.stream_accuracy.joined_streams import frame_size, join_videos, order_videos

    dataset = discover(data)
    groups = {g.strip() for g in test_groups.split(",") if g.strip()}
    held_out = [v for v in dataset.videos if v.group in groups]
    if not held_out:
        raise LrcnError(f"{data}: no videos of groups {sorted(groups)}")
    chosen = order_videos(held_out, dataset.classes, None)
    joined, _ = join_videos(
        [(v.path, dataset.classes[v.label]) for v in chosen],
        work / "joined.avi",
        frame_size(chosen[0].path),
        SOURCE_FPS,
    )
    video = encode_h264(["-stream_loop", "-1", "-i", str(joined)], work / "stream.mp4", encoding)
    return video, {
        "kind": "weizmann4",
        "data": str(data),
        "test_groups": sorted(groups),
        "videos": [v.path.name for v in chosen],
    }


def pattern_source(work: Path, encoding: Encoding, phase_s: float = 3.0) -> tuple[Path, dict]:
    width, height = encoding.size or (160, 120)
    cycle = work / "cycle.mp4"
    encode_h264(
        [
            "-f",
            "lavfi",
            "-i",
            f"color=black:s={width}x{height}:r={SOURCE_FPS}:d={phase_s}",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={width}x{height}:r={SOURCE_FPS}:d={phase_s}",
        ],
        cycle,
        replace(encoding, seconds=2 * phase_s, size=None),
        graph="[0][1]concat=n=2:v=1",
    )
    video = encode_h264(["-stream_loop", "-1", "-i", str(cycle)], work / "stream.mp4", replace(encoding, size=None))
    return video, {"kind": "pattern", "phase_s": phase_s}


def file_source(path: Path, work: Path, encoding: Encoding) -> tuple[Path, dict]:
    video = encode_h264(["-stream_loop", "-1", "-i", str(path)], work / "stream.mp4", encoding)
    return video, {"kind": "file", "file": str(path)}


def probe(video: Path) -> dict:
    import av

    with av.open(str(video)) as container:
        video_stream = container.streams.video[0]
        frames = sum(1 for _ in container.demux(video_stream) if _.size)
        return {
            "width": video_stream.codec_context.width,
            "height": video_stream.codec_context.height,
            "codec": video_stream.codec_context.name,
            "fps": float(video_stream.average_rate),
            "frames": frames,
            "seconds": frames / float(video_stream.average_rate),
        }


def seed_bundle(out: Path, video: Path) -> Path:
    """The tests' tiny seed LRCN (64x64, T=4, LSTM 16), untrained, exported for the runtime."""
    from lrcn.models.export import export_bundle
    from lrcn.models.seed_bundle import untrained_bundle
    from lrcn.stream.bundle import ModelSpec
    from lrcn.stream.video import read_frames

    spec = ModelSpec(
        classes=("bend", "jumping_jack", "wave_one_hand"), input_size=(64, 64), clip_length=4, lstm_units=16
    )
    frames = read_frames(video, spec.input_size, spec.fps)[:64]
    untrained_bundle(spec, out, frames[:16])
    export_bundle(out, frames, calibration=frames)
    return out


# ------------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Rules:
    pre_s: float
    post_s: float
    max_clip_s: float
    min_score: float
    min_duration_s: float
    classes: str | None


def serve(bundle: Path, video: Path, record: Path, jsonl: Path, rules: Rules, timeout_s: float) -> dict:
    """`lrcn serve --record` on the file, paced, to its end: exit code, wall and CPU seconds, stderr's tail."""
    command = [
        sys.executable,
        "-m",
        "lrcn.tools.cli",
        "serve",
        str(bundle),
        str(video),
        "--name",
        STREAM,
        "--pace",
        "--endpoint",
        "tcp://127.0.0.1:0",
        "--jsonl",
        str(jsonl),
        "--record",
        str(record),
        "--pre-s",
        str(rules.pre_s),
        "--post-s",
        str(rules.post_s),
        "--max-clip-s",
        str(rules.max_clip_s),
        "--min-score",
        str(rules.min_score),
        "--min-duration-s",
        str(rules.min_duration_s),
        *(["--classes", rules.classes] if rules.classes else []),
        "--stats-interval-s",
        "5",
    ]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        from lrcn.stream.errors import LrcnError

        raise LrcnError(f"lrcn serve did not finish {video.name} within {timeout_s:.0f} s") from None
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
        "stderr_tail": done.stderr.strip().splitlines()[-5:],
    }


# ------------------------------------------------------------------------------------ checks (pure but for reading files)


def events_by_id(messages: list[dict]) -> dict[str, dict[str, dict]]:
    """{id: {"start": message, "end": message}} of the stream's event messages (updates left out)."""
    events: dict[str, dict[str, dict]] = {}
    for message in messages:
        if message.get("topic") == f"event/{STREAM}" and message["type"] in ("start", "end"):
            events.setdefault(message.get("id", ""), {})[message["type"]] = message
    return events


def check(ok: bool, detail: str) -> dict:
    return {"ok": bool(ok), "detail": detail}


def check_ids(events: dict[str, dict[str, dict]]) -> dict:
    unended = sorted(i for i, e in events.items() if "end" not in e)
    unstarted = sorted(i for i, e in events.items() if "start" not in e)
    return check(
        bool(events) and "" not in events and not unended and not unstarted,
        f"{len(events)} events, each one start and one end with its id; without an end: {len(unended)}, "
        f"without a start: {len(unstarted)}",
    )


def check_clips(events: dict[str, dict[str, dict]], record: Path) -> dict:
    folder = record / STREAM
    on_disk = {p.stem for p in folder.glob("*.mp4")}
    named = {i for i, e in events.items() if Path(e.get("end", {}).get("clip", "")) == folder / f"{i}.mp4"}
    parts = sorted(p.name for p in record.rglob("*.part"))
    without_clip, orphans = sorted(set(events) - on_disk), sorted(on_disk - set(events))
    misnamed = sorted(set(events) - named)
    return check(
        not without_clip and not orphans and not misnamed and not parts,
        f"{len(on_disk)} clips for {len(events)} events; events without their clip: {len(without_clip)}, "
        f"end messages not naming <id>.mp4: {len(misnamed)}, clips without an event: {len(orphans)}, "
        f".part files: {len(parts)}",
    )


def play(path: Path) -> tuple[float, int, bool]:
    """(seconds from the first frame shown to the end of the last, frames decoded, first is a keyframe)."""
    import av

    with av.open(str(path)) as container:
        video_stream = container.streams.video[0]
        times = []
        first_key = None
        for frame in container.decode(video_stream):
            times.append(frame.time)
            first_key = frame.key_frame if first_key is None else first_key
        period = 1 / float(video_stream.average_rate)
        return (max(times) + period - min(times) if times else 0.0), len(times), bool(first_key)


def clip_spans(events: dict[str, dict[str, dict]], rules: Rules, stream_s: float) -> dict[str, tuple[float, float]]:
    """What each clip should cover of the stream, (from, to) in stream seconds, before the cap."""
    return {
        i: (max(0.0, e["start"]["start_time"] - rules.pre_s), min(stream_s, e["end"]["end_time"] + rules.post_s))
        for i, e in events.items()
        if "start" in e and "end" in e
    }


def check_clip_lengths(
    events: dict[str, dict[str, dict]],
    record: Path,
    rules: Rules,
    stream_s: float,
    gop_s: float,
    fps: float,
    bframes: int,
) -> tuple[dict, dict, dict]:
    """Every clip plays from a keyframe, every frame of it (no hole), and lasts its span (its start
    may reach back to the keyframe before it; its end a frame or two either way, more with
    B-frames: it ends by decode time); and none is longer than max_clip_s, strictly."""
    slack = (bframes + 2) / fps
    lengths, deviations, over_cap, capped = [], [], [], 0
    unkeyed, holed, outside = [], [], []
    for event_id, (begin, end) in sorted(clip_spans(events, rules, stream_s).items()):
        path = record / STREAM / f"{event_id}.mp4"
        if not path.is_file():
            continue
        seconds, frames, keyed = play(path)
        expected = min(end - begin, rules.max_clip_s)
        low, high = expected - slack, min(end - begin + gop_s, rules.max_clip_s) + slack
        capped += end - begin > rules.max_clip_s
        lengths.append(seconds)
        deviations.append(seconds - expected)
        missing = round(seconds * fps) - frames
        if not keyed:
            unkeyed.append(event_id)
        if missing > 0:
            holed.append(missing)
        if not low <= seconds <= high:
            outside.append({"id": event_id, "seconds": round(seconds, 3), "expected": [round(low, 3), round(high, 3)]})
        if seconds > rules.max_clip_s + 1e-6:
            over_cap.append(event_id)
    figures = {
        "clips_played": len(lengths),
        "clips_capped": capped,
        "clip_s_median": round(statistics.median(lengths), 2) if lengths else None,
        "clip_s_max": round(max(lengths), 3) if lengths else None,
        "clip_s_over_max_clip_s_max": round(max(0.0, max(lengths) - rules.max_clip_s), 3) if lengths else None,
        "clip_s_over_span_max": round(max(deviations), 3) if deviations else None,
        "clip_s_under_span_max": round(-min(deviations), 3) if deviations else None,
        "clips_over_max_clip_s": len(over_cap),
        "clips_missing_frames": len(holed),
        "missing_frames_max": max(holed, default=0),
    }
    return (
        check(
            lengths and not unkeyed and not holed and not outside,
            f"{len(lengths)} clips played; not starting at a keyframe: {len(unkeyed)}, with frames missing: "
            f"{len(holed)} (at most {max(holed, default=0)}), outside their span: {len(outside)}"
            + (f": {outside[:3]}" if outside else ""),
        ),
        check(
            lengths and not over_cap,
            f"longest {figures['clip_s_max']} s, max_clip_s {rules.max_clip_s:g}: "
            f"{len(over_cap)} over; {capped} events' spans were longer than the cap",
        ),
        figures,
    )


def check_snapshots(events: dict[str, dict[str, dict]], record: Path, width: int, height: int) -> tuple[dict, dict]:
    import cv2

    folder = record / STREAM
    expected = {f"{i}-start.jpg": e.get("start", {}).get("snapshot") for i, e in events.items()} | {
        f"{i}.jpg": e.get("end", {}).get("snapshot") for i, e in events.items()
    }
    on_disk = {p.name for p in folder.glob("*.jpg")}
    missing = sorted(name for name, named in expected.items() if name not in on_disk or named != str(folder / name))
    orphans = sorted(on_disk - set(expected))
    wrong, sizes = [], []
    for name in sorted(on_disk & set(expected)):
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None or image.shape[:2] != (height, width):
            wrong.append({"name": name, "shape": None if image is None else list(image.shape)})
        sizes.append((folder / name).stat().st_size)
    figures = {
        "snapshots": len(on_disk),
        "snapshot_kb_median": round(statistics.median(sizes) / 1024, 1) if sizes else None,
    }
    return check(
        sizes and not missing and not orphans and not wrong,
        f"{len(on_disk)} JPEGs for {len(events)} events (2 each), {width}x{height} expected; "
        f"missing or not named by their message: {len(missing)}, without an event: {len(orphans)}, "
        f"not a JPEG of that size: {len(wrong)}" + (f": {wrong[:3]}" if wrong else ""),
    ), figures


def stored_rows(record: Path) -> list[dict]:
    """The events table, read with sqlite3 alone (not the code under test)."""
    connection = sqlite3.connect(f"file:{record / 'lrcn.sqlite'}?mode=ro", uri=True)
    try:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM events")]
    finally:
        connection.close()


def row_differences(row: dict, start: dict, end: dict, record: Path) -> list[str]:
    def relative(path: str | None) -> str | None:
        return None if path is None else Path(path).relative_to(record).as_posix()

    expected = {
        "stream": STREAM,
        "label": start["label"],
        "start_frame": start["start_frame"],
        "stream_start": start["start_time"],
        "end_frame": end["end_frame"],
        "stream_end": end["end_time"],
        "peak_score": end["peak_score"],
        "clip": relative(end.get("clip")),
        "snapshot": relative(end.get("snapshot")),
        "start_snapshot": relative(start.get("snapshot")),
    }
    differences = [
        f"{key}: stored {row[key]!r}, published {value!r}" for key, value in expected.items() if row[key] != value
    ]
    for key, message in (("start_time", start), ("end_time", end)):  # wall times: when it was stored vs published
        if row[key] is None or abs(row[key] - message["time"]) > 1.0:
            differences.append(f"{key}: stored {row[key]!r}, published at {message['time']!r}")
    return differences


def check_store(events: dict[str, dict[str, dict]], record: Path) -> tuple[dict, dict]:
    rows = {row["id"]: row for row in stored_rows(record)}
    differing = {
        i: row_differences(rows[i], e["start"], e["end"], record)
        for i, e in events.items()
        if i in rows and "start" in e and "end" in e
    }
    differing = {i: d for i, d in differing.items() if d}
    unstored, unpublished = sorted(set(events) - set(rows)), sorted(set(rows) - set(events))
    wall = [
        max(abs(rows[i]["start_time"] - e["start"]["time"]), abs(rows[i]["end_time"] - e["end"]["time"]))
        for i, e in events.items()
        if i in rows and "end" in e and rows[i]["end_time"] is not None
    ]
    return (
        check(
            rows and not differing and not unstored and not unpublished,
            f"{len(rows)} rows for {len(events)} published events; differing: {len(differing)}, not stored: "
            f"{len(unstored)}, stored but not published: {len(unpublished)}"
            + (f": {list(differing.items())[:2]}" if differing else ""),
        ),
        {"stored_rows": len(rows), "wall_time_difference_s_max": round(max(wall), 3) if wall else None},
    )


def check_media_index(events: dict[str, dict[str, dict]], record: Path) -> dict:
    connection = sqlite3.connect(f"file:{record / 'lrcn.sqlite'}?mode=ro", uri=True)
    try:
        listed = {row[0] for row in connection.execute("SELECT path FROM media WHERE finished = 1")}
    except sqlite3.Error as err:
        return check(False, f"cannot read the media index: {err}")
    finally:
        connection.close()
    expected = {f"{STREAM}/{i}{suffix}" for i in events for suffix in (".mp4", ".jpg", "-start.jpg")}
    return check(
        listed == expected,
        f"{len(listed)} finished entries, {len(expected)} expected (a clip and two "
        f"snapshots per event); unlisted: {len(expected - listed)}, listed but not an event's: {len(listed - expected)}",
    )


def overlapping(spans: dict[str, tuple[float, float]]) -> int:
    """Events whose clip span overlaps the next event's: packets that two clips share."""
    ordered = sorted(spans.values())
    return sum(1 for (_, end), (begin, _) in itertools.pairwise(ordered) if begin < end)


# ------------------------------------------------------------------------------------ the shell


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        default=None,
        help="weizmann4 (default when ../shared/data/weizmann4 is there), pattern (default otherwise), "
        "or a video file, looped",
    )
    parser.add_argument(
        "--data", type=Path, default=WEIZMANN4, help="the weizmann4 folder (default ../shared/data/weizmann4)"
    )
    parser.add_argument("--test-groups", default="6,7,8", help="weizmann4: the held-out subjects joined")
    parser.add_argument(
        "--bundle", type=Path, help="exported bundle (default: a tiny untrained seed bundle, built here)"
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of stream, served in real time")
    parser.add_argument(
        "--size", type=parse_size, help="WxH to scale the source to (default: its own; pattern 160x120)"
    )
    parser.add_argument("--gop-s", type=float, default=1.0, help="seconds between keyframes of the H.264 source")
    parser.add_argument(
        "--bframes", type=int, default=0, help="B-frames in a row at most in the H.264 source (default 0)"
    )
    parser.add_argument("--pre-s", type=float, default=5.0)
    parser.add_argument("--post-s", type=float, default=5.0)
    parser.add_argument(
        "--max-clip-s",
        type=float,
        default=12.0,
        help="(default 12: shorter than most events' pre-roll + event + post-roll, so the cap is exercised)",
    )
    parser.add_argument("--min-score", type=float, default=0.6)
    parser.add_argument("--min-duration-s", type=float, default=0.5)
    parser.add_argument("--classes", help="only these classes start events (default: all)")
    parser.add_argument(
        "--work", type=Path, help="keep the source, clips and messages here (default: a temporary folder)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")


def measure(args, work: Path) -> dict:
    from lrcn.stream.errors import LrcnError

    work.mkdir(parents=True, exist_ok=True)
    source = args.source or ("weizmann4" if args.data.is_dir() else "pattern")
    if source not in ("weizmann4", "pattern") and not Path(source).is_file():
        raise LrcnError(f"--source {source}: not weizmann4, pattern or a video file")
    encoding = Encoding(args.duration, args.gop_s, args.bframes, args.size)
    print(f"bench_event_media: making {args.duration:g} s of {source} as H.264 in {work}", file=sys.stderr)
    if source == "weizmann4":
        video, described = weizmann4_source(args.data, args.test_groups, work, encoding)
    elif source == "pattern":
        video, described = pattern_source(work, encoding)
    else:
        video, described = file_source(Path(source), work, encoding)
    facts = probe(video)
    bundle = args.bundle or seed_bundle(work / "seed-bundle", video)
    rules = Rules(args.pre_s, args.post_s, args.max_clip_s, args.min_score, args.min_duration_s, args.classes)
    record, jsonl = work / "record", work / "messages.jsonl"
    print(
        f"bench_event_media: serving {facts['seconds']:.1f} s of {facts['width']}x{facts['height']} through "
        f"lrcn serve --record (paced)",
        file=sys.stderr,
    )
    run = serve(Path(bundle), video, record, jsonl, rules, timeout_s=facts["seconds"] * 2 + 300)
    messages = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []
    events = events_by_id(messages)
    final = [
        m for m in messages if m.get("topic") == f"status/{STREAM}" and m.get("stats", {}).get("report") == "final"
    ]
    stats = final[-1]["stats"] if final else {}
    spans = clip_spans(events, rules, facts["seconds"])
    lengths, cap, clip_figures = check_clip_lengths(
        events, record, rules, facts["seconds"], args.gop_s, facts["fps"], args.bframes
    )
    snapshots, snapshot_figures = check_snapshots(events, record, facts["width"], facts["height"])
    store, store_figures = (
        check_store(events, record)
        if (record / "lrcn.sqlite").is_file()
        else (check(False, "no lrcn.sqlite in the record dir"), {})
    )
    checks = {
        "serve_exit_0": check(run["exit"] == 0, f"exit {run['exit']}: {' | '.join(run['stderr_tail'][-2:])}"),
        "event_ids": check_ids(events),
        "clips_equal_events": check_clips(events, record),
        "clips_play_and_span_their_event": lengths,
        "clips_within_max_clip_s": cap,
        "snapshots_at_source_resolution": snapshots,
        "stored_rows_equal_published_events": store,
        "media_index_lists_exactly_them": check_media_index(events, record)
        if store_figures
        else check(False, "no lrcn.sqlite in the record dir"),
    }
    predictions = sum(1 for m in messages if m.get("topic") == f"pred/{STREAM}")
    labels: dict[str, int] = {}
    for event in events.values():
        if "start" in event:
            labels[event["start"]["label"]] = labels.get(event["start"]["label"], 0) + 1
    return {
        "command": "python -m lrcn.tools.evidence.bench_event_media "
        + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "source": {**described, **facts, "gop_s": args.gop_s, "bframes": args.bframes},
        "bundle": str(bundle),
        "rules": {
            "pre_s": rules.pre_s,
            "post_s": rules.post_s,
            "max_clip_s": rules.max_clip_s,
            "min_score": rules.min_score,
            "min_duration_s": rules.min_duration_s,
            "classes": rules.classes,
        },
        "serve": {key: run[key] for key in ("exit", "wall_s", "cpu_s")},
        "cpu_per_stream_s": round(run["cpu_s"] / facts["seconds"], 3) if facts["seconds"] else None,
        "predictions": predictions,
        "events": len(events),
        "events_by_label": dict(sorted(labels.items())),
        "events_sharing_packets_with_the_next": overlapping(spans),
        "event_s_median": round(statistics.median(e["end"]["duration_s"] for e in events.values() if "end" in e), 2)
        if any("end" in e for e in events.values())
        else None,
        "clips_on_disk": len(list((record / STREAM).glob("*.mp4"))),
        **clip_figures,
        **snapshot_figures,
        **store_figures,
        "final_stats": {"frames": stats.get("frames"), "dropped": stats.get("dropped"), "clips": stats.get("clips")},
        "checks": checks,
        "all_pass": all(c["ok"] for c in checks.values()),
    }


def summary_lines(report: dict) -> list[str]:
    source = report["source"]
    lines = [
        (
            f"{source['kind']}: {source['seconds']:.0f} s of {source['width']}x{source['height']} {source['codec']} "
            f"at {source['fps']:g} fps, {source['bframes']} B-frames, served paced in {report['serve']['wall_s']} s "
            f"({report['serve']['cpu_s']} CPU s, {report['cpu_per_stream_s']} CPU s per stream second)"
        ),
        (
            f"{report['predictions']} predictions, {report['events']} events ({report['events_sharing_packets_with_the_next']} "
            f"sharing packets with the next), {report['clips_on_disk']} clips (median {report.get('clip_s_median')} s, "
            f"longest {report.get('clip_s_max')} s, {report.get('clips_capped')} events' spans over max_clip_s), "
            f"{report.get('snapshots')} snapshots, {report.get('stored_rows')} stored rows"
        ),
    ]
    lines += [f"  {'PASS' if c['ok'] else 'FAIL'} {name}: {c['detail']}" for name, c in report["checks"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    from lrcn.stream.errors import LrcnError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with contextlib.ExitStack() as stack:
            work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lrcn-event-media-")))
            report = measure(args, Path(work))
    except LrcnError as err:
        print(f"bench_event_media: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
