"""`lrcn novelty fit` and `lrcn novelty measure`: the open-set guard (stream.novelty) of a bundle.

    lrcn novelty fit runs/stream/weizmann4 ../shared/data/weizmann4 --test-groups 6,7,8
    lrcn novelty measure runs/stream/weizmann4 --foreign ../shared/data/ucf101_9 --foreign ../shared/data/ps7 \\
        --out docs/results/novelty_weizmann4.json

Both run the bundle's own runtime encoders (no TensorFlow) over decoded videos, exactly as a live
stream of them reaches it (stream.video.read_video_frames: the frames and, for a bundle that sees
motion, their flow), and pool T-frame windows of the joined features (fit: 4 frames apart;
measure: every window, as exact hop-1 serving publishes). Per-frame features are cached by the
encoder files' hashes.

A bundle trained with stills has a class `idle` that no dataset folder holds: fit gives it the
windows training gave it, held frames of the training videos (T times the same frame, so its
flow is the zero field) and blank frames, about as many as an average class has (`still_windows`).

fit: only the training split is read (the split flags of `lrcn train`; a bundle's recorded test
groups are refused). Its groups are shuffled by --seed and dealt into --folds folds; each fold is
held out once, scored by the method fitted on the others, and the threshold is the score that
the share --target of those held-out windows exceed (a method of several parts, `combined`,
first puts its parts on one scale by those same out-of-fold scores). The fit served is on every training window
(so slightly closer to new in-distribution windows than the folds were: the threshold errs
towards fewer false `unknown`s). --val-groups instead holds out those groups only, and fits on
the rest. It writes novelty.npz and records it in meta.json's metrics.

measure: for each bundle, the share of its held-out test windows (its recorded test groups of
its recorded data, or the split flags) labelled `unknown`, and the share of every window of each
--foreign dataset labelled so, with the threshold-free AUROC of the score (foreign against
held-out) and the share over the test windows' own quantile (the threshold that puts exactly the
target share of them over it: what the score could do with a perfect threshold rule); a table,
and the JSON with --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from lrcn.stream.bundle import read_meta, write_meta
from lrcn.stream.encoders.joint import open_joint_encoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import IDLE
from lrcn.stream.heads import HEAD_FILE, load_head
from lrcn.stream.novelty import (
    DEFAULT_METHOD,
    DEFAULT_TARGET,
    METHODS,
    fit_novelty,
    load_novelty,
    save_novelty,
    window_means,
    with_threshold,
)
from lrcn.stream.modalities import modality
from lrcn.stream.video import DECODE_VERSION, read_video_frames
from lrcn.tools.cli.args import choose_split
from lrcn.tools.cli.commands import command

DEFAULT_FOLDS = 5
DEFAULT_CACHE = Path.home() / ".cache" / "lrcn-stream" / "novelty"


# -- features --------------------------------------------------------------------------------


class FrameFeatures:
    """Per-frame joined features of videos through one bundle's runtime encoders, cached on disk
    by the encoder files' hashes and the video's path, size and time."""

    def __init__(self, bundle: str | Path, cache: Path | None, threads: int | None = None):
        self.meta = read_meta(bundle)
        self.encoder = open_joint_encoder(bundle, self.meta.spec.modalities, threads=threads)
        files = [Path(bundle) / modality(name).encoder_file for name in self.meta.spec.modalities]
        digest = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()[:16]
        self.cache = cache / digest if cache is not None else None

    def __call__(self, video: Path) -> np.ndarray:
        spec = self.meta.spec
        stat = video.stat()
        key = hashlib.sha256(
            f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{spec.input_size}|{spec.fps}|"
            f"{DECODE_VERSION}".encode()
        ).hexdigest()[:20]
        path = self.cache / f"{key}.npy" if self.cache is not None else None
        if path is not None and path.is_file():
            return np.load(path)
        frames = read_video_frames(video, spec.input_size, spec.fps, flow=self.encoder.needs_flow)
        features = np.concatenate([self.encoder.encode_frames(frames[i : i + 64]) for i in range(0, len(frames), 64)])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, features)
        return features


def windows_of(features: FrameFeatures, videos, hop: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(window means [N, F], the index into `videos` of each window's video [N], videos too short for a window)."""
    means, owners, short = [], [], 0
    for number, video in enumerate(videos):
        pooled = window_means(features(video.path), features.meta.spec.clip_length, hop)
        short += len(pooled) == 0
        means.append(pooled)
        owners.append(np.full(len(pooled), number))
    if not any(len(m) for m in means):
        raise LrcnError("no video is long enough for one window")
    return np.concatenate(means), np.concatenate(owners), short


def top_scores(features: FrameFeatures, head, videos) -> np.ndarray:
    """The softmax's top probability on the back-to-back T-frame windows of each video: what a
    threshold on the score alone (`min_score`) would have to catch."""
    t = features.meta.spec.clip_length
    scores = []
    for video in videos:
        x = features(video.path)
        clips = [x[i : i + t] for i in range(0, len(x) - t + 1, t)]
        if clips:
            scores.append(head.clip_probabilities(np.stack(clips)).max(1))
    return np.concatenate(scores)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside score), ties half: the threshold-free separation.

    >>> auroc(np.array([1.0, 2.0]), np.array([3.0, 2.0]))
    0.875
    """
    both = np.concatenate([inside, outside])
    ranks = np.empty(len(both))
    order = np.argsort(both, kind="stable")
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[len(inside) :].sum() - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))


STILL_BLANK_SHARE = 0.25  # of the still windows, blank frames; the rest held frames (as training makes them)


def still_windows(features: FrameFeatures, videos, count: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """`count` windows of nothing moving: a held frame of one of `videos` (its own features for
    each modality that looks at the frame, the zero field's for each that looks at motion) or a
    blank frame of a random colour; and the index into `videos` each held frame came from (-1 for
    a blank one)."""
    from lrcn.stream.flow import zero_field

    spec, encoder = features.meta.spec, features.encoder
    rng = np.random.default_rng(seed)
    sizes = list(encoder.feature_sizes.values())
    bounds = np.cumsum([0, *sizes])
    zero = np.stack([zero_field(spec.input_size)])
    moving = [i for i, name in enumerate(encoder.feature_sizes) if modality(name).needs_flow]
    blank_count = int(round(count * STILL_BLANK_SHARE)) if count > 1 else 0
    frames = [(number, row) for number, video in enumerate(videos) for row in features(video.path)]
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, count - blank_count).astype(int)]
    held = np.stack([row for _, row in picked]) if picked else np.zeros((0, bounds[-1]), np.float32)
    colours = rng.integers(0, 256, (blank_count, 1, 1, 3), dtype=np.uint8)
    blanks = np.broadcast_to(colours, (blank_count, *spec.input_size, 3)).copy()
    inputs = {
        name: blanks if not modality(name).needs_flow else np.repeat(zero, blank_count, axis=0)
        for name in encoder.feature_sizes
    }
    blank = encoder.encode_inputs(inputs) if blank_count else np.zeros((0, bounds[-1]), np.float32)
    if moving:
        still_flow = encoder.encode_inputs(
            {
                name: zero if modality(name).needs_flow else np.zeros((1, *spec.input_size, 3), np.uint8)
                for name in encoder.feature_sizes
            }
        )[0]
        for i in moving:
            held[:, bounds[i] : bounds[i + 1]] = still_flow[bounds[i] : bounds[i + 1]]
    return np.concatenate([held, blank]).astype(np.float32), [n for n, _ in picked] + [-1] * blank_count


# -- the split -------------------------------------------------------------------------------


def bundle_classes(dataset, classes: tuple[str, ...], videos):
    """The videos relabelled to the bundle's class indices; a class the bundle lacks is an error."""
    from dataclasses import replace

    missing = sorted({dataset.classes[v.label] for v in videos} - set(classes))
    if missing:
        raise LrcnError(f"{dataset.root}: class(es) {', '.join(missing)} are not the bundle's ({', '.join(classes)})")
    return [replace(v, label=classes.index(dataset.classes[v.label])) for v in videos]


def validation_folds(dataset, train_videos, meta, val_groups: str | None, folds: int, seed: int) -> list[set[str]]:
    """The validation groups of each fold: `val_groups` alone, or the training groups shuffled by
    `seed` and dealt into `folds` folds (fewer with fewer groups), so every group validates once."""
    recorded = meta.training
    same_data = recorded.get("data") and Path(recorded["data"]).resolve() == dataset.root.resolve()
    train_groups = sorted({v.group for v in train_videos})
    leaked = sorted(set(train_groups) & set(recorded.get("test_groups", []))) if same_data else []
    if leaked:
        raise LrcnError(
            f"group(s) {', '.join(leaked)} are the bundle's test groups: leave them out "
            f"(--test-groups {','.join(recorded['test_groups'])})"
        )
    if val_groups:
        chosen = {g.strip() for g in val_groups.split(",") if g.strip()}
        unknown = sorted(chosen - set(train_groups))
        if unknown:
            raise LrcnError(f"--val-groups: no training videos in group(s) {', '.join(unknown)}")
        if chosen == set(train_groups):
            raise LrcnError("no training groups left to fit on besides the validation groups")
        return [chosen]
    if len(train_groups) < 2:
        raise LrcnError("novelty: the training split has one group; validation needs two (give more groups)")
    random.Random(seed).shuffle(train_groups)
    count = min(folds, len(train_groups))
    return [set(train_groups[i::count]) for i in range(count)]


# -- commands --------------------------------------------------------------------------------


def fit(args) -> None:
    """Out-of-fold scores of every validation window choose the threshold; the statistics served
    are fitted on every window of the training split (or, with --val-groups, of the other groups)."""
    from lrcn.models.data import discover

    features = FrameFeatures(args.bundle, None if args.no_cache else Path(args.cache or DEFAULT_CACHE), args.threads)
    meta, spec = features.meta, features.meta.spec
    dataset = discover(args.data, args.group_pattern)
    train_videos = bundle_classes(dataset, spec.classes, choose_split(dataset, args)[0])
    folds = validation_folds(dataset, train_videos, meta, args.val_groups, args.folds, args.seed)
    started = time.monotonic()
    x, owners, _ = windows_of(features, train_videos, args.hop)
    labels = np.array([train_videos[i].label for i in owners])
    groups = np.array([train_videos[i].group for i in owners])
    if IDLE in spec.classes and not (labels == spec.classes.index(IDLE)).any():  # trained with stills
        count = len(x) // len(set(labels.tolist()))
        stills, sources = still_windows(features, train_videos, count, args.seed)
        train_groups = sorted(set(groups.tolist()))
        still_groups = [
            train_videos[n].group if n >= 0 else train_groups[i % len(train_groups)] for i, n in enumerate(sources)
        ]
        x = np.concatenate([x, stills])
        labels = np.concatenate([labels, np.full(len(stills), spec.classes.index(IDLE))])
        groups = np.concatenate([groups, np.array(still_groups, groups.dtype)])
    parts = []  # the raw score of each of the method's parts, per validation window
    for held in folds:
        out = np.isin(groups, sorted(held))
        parts.append(
            fit_novelty(x[~out], labels[~out], spec.classes, spec.clip_length, args.method).part_scores(x[out])
        )
    parts = np.concatenate(parts)
    fitted = ~np.isin(groups, sorted(folds[0])) if args.val_groups else np.ones(len(x), bool)
    model = fit_novelty(x[fitted], labels[fitted], spec.classes, spec.clip_length, args.method).calibrated(
        parts, args.target
    )
    validation = model.combine(parts)
    model = with_threshold(model, validation, args.target)
    path = save_novelty(model, args.bundle)
    meta.metrics["novelty"] = {
        **model.summary(),
        "data": str(dataset.root.resolve()),
        "fit_groups": sorted(set(groups[fitted])),
        "validation_folds": [sorted(f) for f in folds],
        "fit_windows": int(fitted.sum()),
        "val_windows": len(validation),
        "hop": args.hop,
        "seed": args.seed,
    }
    write_meta(args.bundle, meta)
    print(
        f"{path}: {model.method} on {int(fitted.sum())} windows; threshold "
        f"{model.threshold:.3f}, over which {args.target:.0%} of {len(validation)} validation windows lie "
        f"({len(folds)} fold(s) of groups held out; {time.monotonic() - started:.0f} s)"
    )


def measure_bundle(bundle: str, foreign: list[str], args, cache: Path | None) -> dict:
    from lrcn.models.data import discover

    model = load_novelty(bundle)
    if model is None or model.threshold is None:
        raise LrcnError(f"bundle {bundle} has no novelty.npz with a threshold (run `lrcn novelty fit` first)")
    features = FrameFeatures(bundle, cache, args.threads)
    recorded = features.meta.training
    data = args.data or recorded.get("data")
    if not data:
        raise LrcnError(f"bundle {bundle} does not record its data: give --data")
    dataset = discover(data, args.group_pattern or recorded.get("group_pattern"))
    if not (args.test_groups or args.split_lists):
        if not recorded.get("test_groups"):
            raise LrcnError(f"bundle {bundle} records no test groups: give --test-groups or --split-lists")
        args = argparse.Namespace(**{**vars(args), "test_groups": ",".join(recorded["test_groups"])})
    _, test_videos = choose_split(dataset, args)
    rows = {}
    inside, _, _ = windows_of(features, test_videos, args.hop)
    inside_scores = model.score(inside)
    head = load_head(Path(bundle) / HEAD_FILE)
    rows[dataset.root.name] = {
        **_row(inside_scores, model.threshold, len(test_videos), held_out=True),
        **_softmax(top_scores(features, head, test_videos)),
    }
    # The threshold that puts exactly the target share of these very test windows over it: what
    # the score catches of the foreign ones with a perfect threshold rule.
    oracle = float(np.quantile(inside_scores, 1 - model.target))
    for folder in foreign:
        videos = list(discover(folder).videos)
        outside, _, _ = windows_of(features, videos, args.hop)
        scores = model.score(outside)
        rows[Path(folder).name] = {
            **_row(scores, model.threshold, len(videos), held_out=False),
            "auroc": round(auroc(inside_scores, scores), 4),
            "unknown_share_at_test_quantile": round(float((scores > oracle).mean()), 4),
            **_softmax(top_scores(features, head, videos)),
        }
    fitted = features.meta.metrics.get("novelty", {})
    seed = fitted.get("seed") if fitted.get("seed") is not None else recorded.get("config", {}).get("seed")
    return {
        "bundle": str(bundle),
        "seed": seed,
        "method": model.method,
        "classes": list(model.classes),
        "threshold": round(model.threshold, 4),
        "target": model.target,
        "fit": {k: fitted.get(k) for k in ("fit_groups", "validation_folds", "fit_windows", "val_windows")},
        "test_groups": sorted({v.group for v in test_videos}),
        "datasets": rows,
    }


def _row(scores: np.ndarray, threshold: float, videos: int, held_out: bool) -> dict:
    return {
        "role": "held-out" if held_out else "foreign",
        "videos": videos,
        "windows": len(scores),
        "unknown": int((scores > threshold).sum()),
        "unknown_share": round(float((scores > threshold).mean()), 4),
        "score_p5_p50_p95": [round(float(q), 3) for q in np.quantile(scores, (0.05, 0.5, 0.95))],
    }


def _softmax(top: np.ndarray) -> dict:
    return {
        "softmax_windows": len(top),
        "softmax_top_median": round(float(np.median(top)), 4),
        "softmax_top_at_least_0.9": round(float((top >= 0.9).mean()), 4),
    }


def measure(args) -> None:
    cache = None if args.no_cache else Path(args.cache or DEFAULT_CACHE)
    started = time.monotonic()
    results = [measure_bundle(bundle, args.foreign, args, cache) for bundle in args.bundles]
    summary = {
        "command": "lrcn novelty measure " + " ".join(sys.argv[3:])
        if sys.argv[1:3] == ["novelty", "measure"]
        else None,
        "hop": args.hop,
        "bundles": results,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(table(summary))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"written to {args.out}")


def table(summary: dict) -> str:
    """The measurement as a Markdown table: one row per bundle and dataset."""
    lines = [
        "| bundle (seed) | threshold | dataset | role | videos | windows | labelled unknown | AUROC | "
        "softmax top >= 0.9 |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in summary["bundles"]:
        for name, row in result["datasets"].items():
            auc = f"{row['auroc']:.3f}" if "auroc" in row else "-"
            lines.append(
                f"| {Path(result['bundle']).name} ({result['seed']}) | {result['threshold']:.2f} | {name} | "
                f"{row['role']} | {row['videos']} | {row['windows']} | {row['unknown_share']:.1%} | {auc} | "
                f"{row['softmax_top_at_least_0.9']:.0%} |"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    fit_parser = actions.add_parser("fit", help="fit a bundle's novelty statistics and threshold on its training data")
    fit_parser.add_argument("bundle")
    fit_parser.add_argument("data", help="DATA/<class>/<video>: the data the bundle was trained on")
    _add_split(fit_parser)
    fit_parser.add_argument(
        "--folds",
        type=int,
        default=DEFAULT_FOLDS,
        help=f"the training groups are dealt into this many folds, each held out once to "
        f"score its windows for the threshold (default {DEFAULT_FOLDS})",
    )
    fit_parser.add_argument(
        "--val-groups",
        metavar="G,G",
        help="instead of folds: choose the threshold on these groups of the training split, fitting on the others only",
    )
    fit_parser.add_argument("--seed", type=int, default=0, help="how the groups are shuffled into folds (default 0)")
    fit_parser.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=DEFAULT_METHOD,
        help=f"how a window's novelty is scored (stream.novelty; default {DEFAULT_METHOD})",
    )
    fit_parser.add_argument("--hop", type=int, default=4, help="frames between the windows fitted (default 4)")
    fit_parser.add_argument(
        "--target",
        type=float,
        default=DEFAULT_TARGET,
        help=f"share of validation windows over the threshold (default {DEFAULT_TARGET})",
    )
    measure_parser = actions.add_parser("measure", help="share of held-out and foreign windows labelled unknown")
    measure_parser.add_argument("bundles", nargs="+", metavar="BUNDLE")
    measure_parser.add_argument(
        "--foreign",
        action="append",
        default=[],
        metavar="DATA",
        help="a dataset the bundles never saw (repeatable): all its videos",
    )
    measure_parser.add_argument("--data", help="the bundles' own data (default: as meta.json records)")
    _add_split(measure_parser)
    measure_parser.add_argument("--out", metavar="JSON", help="write the results here")
    measure_parser.add_argument("--hop", type=int, default=1, help="frames between the windows measured (default 1)")
    for sub in (fit_parser, measure_parser):
        sub.add_argument("--threads", type=int, help="encoder threads")
        sub.add_argument("--cache", help=f"frame feature cache (default {DEFAULT_CACHE})")
        sub.add_argument("--no-cache", action="store_true")


def _add_split(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-pattern", help="as `lrcn train`'s")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--split-lists", nargs=2, metavar=("TRAIN", "TEST"), help="UCF101-style list files")
    split.add_argument("--test-groups", help="comma-separated group ids held out for testing")


@command("novelty", help="the open-set guard: fit a bundle's novelty.npz, measure it", arguments=add_arguments)
def novelty(args) -> None:
    if args.hop < 1:
        raise LrcnError(f"--hop must be a positive integer, got {args.hop}")
    if getattr(args, "folds", 2) < 2:
        raise LrcnError(f"--folds must be at least 2, got {args.folds}")
    (fit if args.action == "fit" else measure)(args)
