"""Streaming accuracy: held-out test videos of different classes joined into one long video,
served live by ffmpeg on 127.0.0.1, run through `lrcn serve` and scored frame by frame.

    lrcn stream-accuracy runs/sa/weizmann4 ../shared/data/weizmann4 --test-groups 6,7,8 --out weizmann4.json

Every head mode runs at once in one `lrcn serve` process (a deployment file with one stream per
mode, each stream its own ffmpeg server of the same video), and a real Subscriber records the
predictions. A bundle that does not exist yet is first trained on the training groups only
(`lrcn train`, frozen MobileNetV2 at 112x112, cached features) and exported; a bundle that
trained or validated on any group of the test videos is refused.

Events: every stream also has event rules (`--min-score`, `--min-duration`, `--cooldown`,
`--ignore-classes`; `--no-events` for none), the Subscriber records `event/<stream>` too, and
each stream's `end` events are scored against the joined videos (the sidecar's segments).
lrcn.tools.stream_accuracy.stream_scoring says how frames, changes and events are scored.

`--static SECONDS` also serves a scene where nothing happens (the middle frame of one joined test
video per class, each held still, then a uniform gray frame) the same way and counts its events
per minute: all are false.

The parts: joining the videos (lrcn.tools.stream_accuracy.joined_streams), serving and recording them
(lrcn.tools.stream_accuracy.stream_live) or replaying them offline (lrcn.tools.stream_accuracy.stream_replay), the scoring
(lrcn.tools.stream_accuracy.stream_scoring), the tables and the comparison over seeds (lrcn.tools.stream_accuracy.stream_results).

    python -m lrcn.tools.stream_accuracy.streaming_accuracy OUT.json RUN.json... [--plot PNG]

writes `side_by_side` of per-seed runs (stream-trained against window-trained LSTMs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from lrcn.stream.settings import Stream, default
from lrcn.tools.cli.commands import command
from lrcn.tools.stream_accuracy.joined_streams import frame_size, gray_clip, join_videos, order_videos, still_clips
from lrcn.tools.stream_accuracy.stream_live import measure, measure_static
from lrcn.tools.stream_accuracy.stream_replay import replay
from lrcn.tools.stream_accuracy.stream_results import event_table_lines, summary, table_lines, write_side_by_side
from lrcn.tools.stream_accuracy.stream_scoring import HeadMode, head_modes

# The cheap training recipe (README, Results): frozen ImageNet MobileNetV2, features cached.
TRAIN_RECIPE = (
    "--backbone",
    "mobilenet_v2",
    "--size",
    "112",
    "--lr",
    "1e-3",
    "--epochs",
    "40",
    "--patience",
    "10",
    "--no-refit",
    "--quiet",
)
DEFAULT_EVENTS = EventRules(min_score=0.6, min_duration_s=0.5, cooldown_s=0.0)


def lrcn(*args: str) -> None:
    """Run an `lrcn` command in a child process (TensorFlow stays out of this one)."""
    done = subprocess.run([sys.executable, "-m", "lrcn.tools.cli", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise LrcnError(f"lrcn {args[0]} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    print(done.stdout.strip(), file=sys.stderr)


def split_flags(args) -> list[str]:
    if args.split_lists:
        return ["--split-lists", *args.split_lists]
    return ["--test-groups", args.test_groups]


def ensure_bundle(args) -> Path:
    """The bundle, trained on the training groups and exported first if it is not there yet."""
    bundle = Path(args.bundle)
    if not (bundle / "meta.json").is_file():
        if not args.weights:
            raise LrcnError(
                f"no bundle at {bundle}: give --weights (MobileNetV2 .weights.h5 or 'imagenet') to train one"
            )
        print(f"lrcn: training {bundle} on the training groups of {args.data}", file=sys.stderr)
        group = ["--group-pattern", args.group_pattern] if args.group_pattern else []
        lrcn(
            "train",
            str(args.data),
            *split_flags(args),
            *group,
            "--out",
            str(bundle),
            *TRAIN_RECIPE,
            "--weights",
            args.weights,
        )
    if not (bundle / "encoder.onnx").is_file():
        lrcn("export", str(bundle))
    return bundle


def check_held_out(meta, test_videos: Sequence, data: Path) -> None:
    """Refuse a bundle that trained or validated on a group of the test videos, or whose training
    groups are not recorded."""
    training = meta.training
    used = set(training.get("train_groups", [])) | set(training.get("val_groups", []))
    if not used:
        raise LrcnError(
            "the bundle does not record its training groups, so the test videos cannot be shown to be held out"
        )
    if training.get("data") and Path(training["data"]).resolve() != data.resolve():
        raise LrcnError(f"the bundle was trained on {training['data']}, not {data}")
    overlap = sorted(used & {v.group for v in test_videos})
    if overlap:
        raise LrcnError(f"the bundle trained on group(s) {', '.join(overlap)} of the test videos")


def parse_modes(text: str | None, clip_length: int) -> list[HeadMode] | None:
    if not text:
        return None
    known = {m.name: m for m in head_modes(clip_length)}
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise LrcnError(f"unknown head mode(s) {', '.join(unknown) or repr(text)} (known: {', '.join(known)})")
    return [known[n] for n in names]


def compare_offline(result: dict, report_path: Path) -> None:
    """Where the bundle's offline evaluation (`lrcn train`/`evaluate` report.json) predicted the same
    videos: per mode, in how many joined videos the label shown most equals the offline prediction."""
    if not report_path.is_file():
        return
    offline = {Path(p["video"]).name: p["predicted"] for p in json.loads(report_path.read_text())["predictions"]}
    for row in result["modes"].values():
        pairs = [(s["most_shown"], offline[s["video"]]) for s in row["segments"] if s["video"] in offline]
        row["offline"] = {
            "videos": len(pairs),
            "agree": sum(a == b for a, b in pairs),
            "offline_correct": sum(s["label"] == offline[s["video"]] for s in row["segments"] if s["video"] in offline),
        }


def event_rules(args, classes: Sequence[str]) -> EventRules | None:
    """The rules every stream gets from --min-score, --min-duration, --cooldown and
    --ignore-classes; None with --no-events."""
    if args.no_events:
        return None
    ignore = tuple(c.strip() for c in (args.ignore_classes or "").split(",") if c.strip())
    unknown = sorted(set(ignore) - set(classes))
    if unknown:
        raise LrcnError(
            f"--ignore-classes names classes the bundle lacks: {', '.join(unknown)} (classes: {', '.join(classes)})"
        )
    return EventRules(
        min_score=args.min_score, min_duration_s=args.min_duration, cooldown_s=args.cooldown, ignore=ignore
    )


def static_scene(
    bundle: Path,
    chosen: Sequence,
    class_names: Sequence[str],
    work: Path,
    seconds: float,
    fps: float,
    modes,
    rules: EventRules | None,
    size: tuple[int, int],
    idle_motion: float | None = None,
) -> dict:
    """A scene where nothing happens: the middle frame of the first joined test video of each
    class, held still, then a uniform gray frame, each as long, together `seconds`, joined and
    served like the test stream."""
    if rules is None:
        raise LrcnError("--static counts events: it needs event rules (drop --no-events)")
    firsts = {}
    for number, video in enumerate(chosen):
        firsts.setdefault(video.label, number)
    numbers = sorted(firsts.values())
    parts = [work / "stream.parts" / f"{number:03d}.avi" for number in numbers]
    each = seconds / (len(parts) + 1)
    clips = still_clips(parts, work / "static.stills", each, fps) + [gray_clip(work / "static.stills", each, fps, size)]
    print(
        f"lrcn: serving a static scene: {len(parts)} still frames and a gray one, {seconds:g} s in all", file=sys.stderr
    )
    video, labels = join_videos([(clip, "static") for clip in clips], work / "static.avi", size, fps)
    result = measure_static(bundle, video, labels, modes, work / "static-serve", rules, idle_motion)
    result["stills_from"] = [chosen[n].path.name for n in numbers] + ["gray"]
    return result


def parse_wh(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240), width x height as ffmpeg's scale takes it."""
    try:
        width, height = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if min(width, height) < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return width, height


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lrcn.tools.cli.args import positive_float, positive_int

    parser.add_argument("bundle", help="bundle trained on the training groups (trained and exported here if absent)")
    parser.add_argument("data", help="DATA/<class>/<video> holding the test videos")
    split = parser.add_mutually_exclusive_group(required=True)
    split.add_argument("--split-lists", nargs=2, metavar=("TRAIN", "TEST"), help="UCF101-style list files")
    split.add_argument("--test-groups", help="comma-separated group ids held out for testing")
    parser.add_argument("--group-pattern", help="regex or preset naming each file's group (default: detected)")
    parser.add_argument("--videos", type=positive_int, metavar="N", help="join at most N test videos (default all)")
    parser.add_argument("--size", type=parse_wh, metavar="WxH", help="joined frame size (default: the first video's)")
    parser.add_argument("--fps", type=positive_float, default=25.0, help="joined frame rate (default 25)")
    parser.add_argument(
        "--modes",
        help="comma-separated head modes (default all: exact-hop1, exact-hop4, "
        "continuous-resetT, continuous, exact-hop1-ema0.3, exact-hop1-hyst3)",
    )
    parser.add_argument("--weights", help="MobileNetV2 weights, to train a bundle that is not there yet")
    parser.add_argument(
        "--work", help="keep the joined video, its labels and serve's files here (default: a temporary folder, removed)"
    )
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--summary", help="also write them without the per-prediction, per-change and per-video rows")
    parser.add_argument("--seed", type=int, default=0, help="order of the joined videos")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="BUNDLE",
        help="another bundle scored on the same joined stream, side by side (repeatable; exported "
        "first if it has no encoder.onnx)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="replay instead of serving: the joined video's frames sampled on the model's grid, "
        "encoded by the bundle's encoder and stepped through the runtime's windows in every "
        "head mode, scored the same way (no events; minutes instead of the stream's length)",
    )
    events = parser.add_argument_group(
        "events",
        "every stream turns its predictions into events (event/<stream>), "
        "scored against the joined videos: one per video expected",
    )
    events.add_argument(
        "--min-score",
        type=unit_float,
        metavar="S",
        default=DEFAULT_EVENTS.min_score,
        help=f"an action counts at this score or more (default {DEFAULT_EVENTS.min_score:g})",
    )
    events.add_argument(
        "--min-duration",
        type=non_negative_float,
        metavar="S",
        default=DEFAULT_EVENTS.min_duration_s,
        help=f"seconds an action must hold to start an event (default {DEFAULT_EVENTS.min_duration_s:g})",
    )
    events.add_argument(
        "--cooldown",
        type=non_negative_float,
        metavar="S",
        default=DEFAULT_EVENTS.cooldown_s,
        help=f"seconds before an ended action may start again (default {DEFAULT_EVENTS.cooldown_s:g})",
    )
    events.add_argument(
        "--ignore-classes",
        metavar="A,B",
        help="classes that never start events (a background); their videos are not counted in the recall",
    )
    events.add_argument("--no-events", action="store_true", help="serve without event rules (accuracy only)")
    events.add_argument(
        "--idle-motion",
        type=non_negative_float,
        metavar="PX",
        help="every stream's idle_motion (0: the gate off; default: serve's)",
    )
    events.add_argument(
        "--static",
        type=positive_float,
        metavar="SECONDS",
        help="also serve a scene where nothing happens for SECONDS (the middle frame of one test "
        "video per class, held still, then a gray frame) and count its events",
    )


@command(
    "stream-accuracy",
    help="per-frame accuracy and change delay of every head mode on held-out test videos "
    "joined, served by ffmpeg, run through serve",
    arguments=add_arguments,
)
def run(args) -> dict:
    from lrcn.models.data import discover
    from lrcn.stream.bundle import read_meta
    from lrcn.tools.cli.args import choose_split

    data = Path(args.data)
    dataset = discover(data, args.group_pattern)
    _, test_videos = choose_split(dataset, args)
    if not test_videos:
        raise LrcnError("no test videos: the split holds none")
    if args.static and args.no_events:
        raise LrcnError("--static counts events: it needs event rules (drop --no-events)")
    if args.offline and args.static:
        raise LrcnError("--static counts events, which --offline does not replay")
    also = [Path(b) for b in args.also]
    for other in also:
        if not (other / "meta.json").is_file():
            raise LrcnError(f"--also {other}: no bundle there (no meta.json)")
        check_held_out(read_meta(other), test_videos, data)
    if (Path(args.bundle) / "meta.json").is_file():  # fail before any export
        check_held_out(read_meta(args.bundle), test_videos, data)
        parse_modes(args.modes, read_meta(args.bundle).spec.clip_length)
        event_rules(args, read_meta(args.bundle).spec.classes)
    else:  # or training
        parse_modes(args.modes, 16)
    bundle = ensure_bundle(args)
    meta = read_meta(bundle)
    check_held_out(meta, test_videos, data)
    modes = parse_modes(args.modes, meta.spec.clip_length)
    chosen = order_videos(test_videos, dataset.classes, args.videos, args.seed)
    with contextlib.ExitStack() as stack:  # no --work: a temporary folder, removed at the end
        work = (
            Path(args.work)
            if args.work
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lrcn-stream-accuracy-")))
        )
        size = args.size or frame_size(chosen[0].path)
        print(
            f"lrcn: joining {len(chosen)} test videos at {size[0]}x{size[1]}, {args.fps:g} fps into {work}",
            file=sys.stderr,
        )
        video, labels = join_videos(
            [(v.path, dataset.classes[v.label]) for v in chosen], work / "stream.avi", size, args.fps
        )
        rules = None if args.offline else event_rules(args, meta.spec.classes)
        encoded: dict = {}  # --offline: one encoding per encoder, shared by the bundles
        score = lambda b, name: (
            replay(b, video, labels, modes, encoded)
            if args.offline
            else measure(b, video, labels, modes, work / name, rules, args.idle_motion)
        )  # noqa: E731
        result = score(bundle, "serve")
        compared = {}
        for number, other in enumerate(also):
            if not (other / "encoder.onnx").is_file():
                lrcn("export", str(other))
            compared[str(other)] = score(other, f"serve-also{number}")
        static = None
        if args.static:
            static = static_scene(
                bundle, chosen, dataset.classes, work, args.static, args.fps, modes, rules, size, args.idle_motion
            )
    compare_offline(result, bundle / "evaluation" / "report.json")
    for other, row in compared.items():
        compare_offline(row, Path(other) / "evaluation" / "report.json")
        row["stream_trained"] = "stream_training" in read_meta(other).training
        row["offline_test"] = read_meta(other).metrics.get("test")
    result = {
        "data": str(data),
        "split": split_flags(args),
        "test_videos": len(chosen),
        "videos": [v.path.name for v in chosen],
        "stream_trained": "stream_training" in meta.training,
        "offline_test": meta.metrics.get("test"),
        "model_seed": meta.training.get("config", {}).get("seed"),
        "idle_motion": default(Stream, "idle_motion") if args.idle_motion is None else args.idle_motion,
        **result,
        **({"static": static} if static else {}),
        **({"compared": compared} if compared else {}),
    }
    print("\n".join(table_lines(result)))
    for other, row in compared.items():
        print(f"\n{other}{' (stream-trained)' if row['stream_trained'] else ''}:")
        print("\n".join(table_lines({**result, **row})[1:]))
    if rules is not None:
        print("\n".join(event_table_lines(result)))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"lrcn: wrote {args.out}", file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary(result), indent=1) + "\n")
        print(f"lrcn: wrote {args.summary}", file=sys.stderr)
    return result


if __name__ == "__main__":  # python -m lrcn.tools.stream_accuracy.streaming_accuracy OUT.json RUN.json... [--plot PNG]
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.stream_accuracy.streaming_accuracy",
        description="stream-trained against window-trained LSTMs over seeds",
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path)
    options = parser.parse_args()
    for seed in write_side_by_side(options.out, options.runs, options.plot)["seeds"]:
        print(seed["seed"], seed["targets"])
