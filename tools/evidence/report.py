"""The tables of README.md and docs/**/*.md, generated from result JSON under docs/results/.

A table sits between markers in a document::

    <!-- report:sink-cost -->
    | sink | ... |
    <!-- /report -->

Each name is a small function registered with ``@table(name, sources, command)``: it reads
its JSON file(s) and returns Markdown. ``python -m lrcn.tools.evidence.report`` rewrites every marked
table in place; ``--check`` changes nothing, names each table that differs and exits 1.
A table whose JSON is not committed yet renders as one line naming the command that writes it.

>>> markdown_table(["a", "b"], [[1, "x"]])
'| a | b |\\n| --- | --- |\\n| 1 | x |'
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from lrcn.tools.evidence import reference, restructure_ab
from lrcn.tools.evidence.checkout import find_checkout

MARKED = re.compile(r"(<!-- report:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)


@dataclass(frozen=True)
class Table:
    """One generated table: its JSON files (relative to docs/results/), the command that
    writes them, and the function that turns their contents into Markdown."""

    name: str
    sources: tuple[str, ...]
    command: str
    render: Callable[..., str]


TABLES: dict[str, Table] = {}


def table(name: str, sources: str | tuple[str, ...], command: str):
    """Register ``render(*documents) -> markdown`` as the generator of table ``name``."""
    paths = (sources,) if isinstance(sources, str) else tuple(sources)

    def register(render: Callable[..., str]) -> Callable[..., str]:
        if name in TABLES:
            raise ValueError(f"table {name!r} registered twice")
        TABLES[name] = Table(name, paths, command, render)
        return render

    return register


# ---------------------------------------------------------------- formatting helpers


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table, every cell through ``str``."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fixed(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; ``-`` for a missing one.

    >>> fixed(2.655), fixed(0.0, 1), fixed(None)
    ('2.65', '0.0', '-')
    """
    return "-" if value is None else f"{value:.{digits}f}"


def thousands(value: int) -> str:
    """``value`` with a comma between thousands.

    >>> thousands(17978)
    '17,978'
    """
    return f"{value:,}"


HEAD_MODES = {
    "exact-hop1": "exact, hop 1",
    "exact-hop4": "exact, hop 4",
    "continuous-reset16": "continuous, reset every 16",
    "continuous": "continuous, no reset",
    "exact-hop1-ema0.3": "exact, hop 1, EMA 0.3",
    "exact-hop1-hyst3": "exact, hop 1, hysteresis 3",
}


def head_mode(key: str) -> str:
    return HEAD_MODES.get(key, key)


# ---------------------------------------------------------------- streaming accuracy and events

STREAM_ACCURACY = (
    "lrcn stream-accuracy runs/stream/{data} $D/{data} {split} --weights $W --static {still} "
    "--out runs/stream/events_{data}.full.json --summary docs/results/events_{data}.json"
)
WEIZMANN4 = STREAM_ACCURACY.format(data="weizmann4", split="--test-groups 6,7,8", still=120)
UCF101_9 = STREAM_ACCURACY.format(
    data="ucf101_9",
    still=180,
    split="--split-lists $D/ucf101_9/splits/trainlist01.txt $D/ucf101_9/splits/testlist01.txt",
)


def stream_accuracy(run: dict) -> str:
    rows = []
    for key, mode in run["modes"].items():
        delay = mode["delay"]
        rows.append(
            [
                head_mode(key),
                f"{mode['correct']}/{mode['frames']} = {mode['accuracy']:.3f}",
                f"{delay['median_s']:.2f} s",
                f"{delay['max_s']:.2f} s",
                f"{delay['missed']}/{delay['changes']}",
                f"{delay['settle_median_s']:.2f} s ({delay['settled']})",
                f"{mode['offline']['agree']}/{mode['offline']['videos']}",
                f"{mode['latency_p99_ms']:.0f} ms",
            ]
        )
    header = [
        "head mode",
        "frames right",
        "delay median",
        "delay max",
        "missed",
        "settle median (n)",
        "longest label = offline's",
        "latency p99",
    ]
    return markdown_table(header, rows)


def events(run: dict) -> str:
    still_modes = run.get("static", {}).get("modes", {})
    rows = []
    for key, mode in run["modes"].items():
        found = mode["events"]
        still = still_modes.get(key, {}).get("events", {}).get("per_min")
        rows.append(
            [
                head_mode(key),
                f"{found['true_positives']}/{found['events']}",
                fixed(found["precision"]),
                fixed(found["recall"]),
                fixed(found["false_per_min"], 1),
                fixed(still, 1),
                "yes" if found["replay_matches"] else "**no**",
            ]
        )
    header = [
        "head mode",
        "true / events",
        "precision",
        "recall",
        "false per min",
        "events per min on stills",
        "= rules replayed",
    ]
    return markdown_table(header, rows)


@table("stream-accuracy-weizmann4", "events_weizmann4.json", WEIZMANN4)
def stream_accuracy_weizmann4(run: dict) -> str:
    return stream_accuracy(run)


@table("stream-accuracy-ucf101_9", "events_ucf101_9.json", UCF101_9)
def stream_accuracy_ucf101_9(run: dict) -> str:
    return stream_accuracy(run)


@table("events-weizmann4", "events_weizmann4.json", WEIZMANN4)
def events_weizmann4(run: dict) -> str:
    return events(run)


@table("events-ucf101_9", "events_ucf101_9.json", UCF101_9)
def events_ucf101_9(run: dict) -> str:
    return events(run)


# ---------------------------------------------------------------- motion


@table("flow", "flow.json", "python -m lrcn.tools.evidence.bench_flow --video ../shared/data/ucf101_9/Basketball")
def flow(run: dict) -> str:
    """Per candidate optical flow and model size: ms per field, endpoint error on known shifts, a still's level."""
    rows = [
        [
            f"**{row['method']}**" if row["method"] == run["chosen"] else row["method"],
            f"{row['size']} px",
            fixed(row["ms"], 3),
            fixed(row["epe_mean"], 3),
            fixed(max(row["epe"].values()), 3),
            fixed(row["still_level"], 5),
        ]
        for row in run["rows"]
    ]
    return markdown_table(
        ["method", "size", "ms per field", "endpoint error, mean (px)", "worst shift (px)", "still: motion (px)"], rows
    )


MOTION_SETS = {
    "weizmann4": "weizmann4, subjects 6-8",
    "ucf101_9": "ucf101_9, testlist01",
    "ps7": "ps7, all",
    "stills_mjpeg": "stills, MJPEG (as `--static` writes them)",
    "stills_mpeg2": "the same stills, MPEG-2 q 5 GOP 10 (as the test server sends them)",
}


@table(
    "motion-levels",
    "motion_levels.json",
    "python -m lrcn.tools.evidence.motion_levels ../shared/data --out docs/results/motion_levels.json",
)
def motion_levels(run: dict) -> str:
    """Window motion per set: its distribution and the share of windows under each threshold."""
    thresholds = [f"{t:g}" for t in run["thresholds"]]
    rows = [
        [
            MOTION_SETS.get(name, name),
            row["videos"],
            row["windows"],
            fixed(row["p0"], 4),
            fixed(row["p1"], 4),
            fixed(row["p50"], 3),
            *(fixed(row["gated_share"][t], 3) for t in thresholds),
        ]
        for name, row in run["sets"].items()
    ]
    return markdown_table(
        ["videos", "n", "windows", "min (px)", "1st pct", "median", *(f"share < {t}" for t in thresholds)], rows
    )


IDLE = (
    "lrcn stream-accuracy runs/stream/{data} $D/{data} {split} --static {still} [--idle-motion 0] "
    "--summary docs/results/idle_{data}_on.json (_off.json with the gate off)"
)


def idle_gate(off: dict, on: dict) -> str:
    """Per head mode, the gate off and on: frames right, events on real footage and on stills."""
    rows = []
    for key, gated in on["modes"].items():
        plain, still_on, still_off = off["modes"][key], on["static"]["modes"][key], off["static"]["modes"][key]
        pair = lambda a, b: f"{a} / {b}"  # noqa: E731
        rows.append(
            [
                head_mode(key),
                pair(fixed(plain["accuracy"], 3), fixed(gated["accuracy"], 3)),
                pair(fixed(plain["events"]["precision"]), fixed(gated["events"]["precision"])),
                pair(fixed(plain["events"]["recall"]), fixed(gated["events"]["recall"])),
                pair(fixed(plain["events"]["false_per_min"], 1), fixed(gated["events"]["false_per_min"], 1)),
                f"{gated.get('idle', 0)}/{gated['predictions']}",
                pair(fixed(still_off["events"]["per_min"], 1), fixed(still_on["events"]["per_min"], 1)),
                f"{still_on.get('idle', 0)}/{still_on['predictions']}",
            ]
        )
    return markdown_table(
        [
            "head mode",
            "frames right, off / on",
            "precision",
            "recall",
            "false per min",
            "idle on footage",
            "events per min on stills, off / on",
            "idle on stills",
        ],
        rows,
    )


@table(
    "idle-weizmann4",
    ("idle_weizmann4_off.json", "idle_weizmann4_on.json"),
    IDLE.format(data="weizmann4", split="--test-groups 6,7,8", still=120),
)
def idle_weizmann4(off: dict, on: dict) -> str:
    return idle_gate(off, on)


@table(
    "idle-ucf101_9",
    ("idle_ucf101_9_off.json", "idle_ucf101_9_on.json"),
    IDLE.format(
        data="ucf101_9",
        still=180,
        split="--split-lists $D/ucf101_9/splits/trainlist01.txt $D/ucf101_9/splits/testlist01.txt",
    ),
)
def idle_ucf101_9(off: dict, on: dict) -> str:
    return idle_gate(off, on)


# ---------------------------------------------------------------- stream training

STREAM_TRAINING = (
    "lrcn stream-accuracy WINDOW_BUNDLE $D/{data} SPLIT --offline --also STREAM_BUNDLE --summary RUN.json "
    "per seed, then python -m lrcn.tools.stream_accuracy.streaming_accuracy docs/results/stream_training_{data}.json "
    "RUN.json... --plot docs/results/stream_training.png (docs/evidence/results.md, Stream training)"
)


def stream_training_modes(run: dict) -> str:
    """Per head mode and seed, each head's frame accuracy, median switch delay and missed changes."""

    def cell(mode: dict) -> str:
        missed = f", {mode['missed']} missed" if mode["missed"] else ""
        return f"{mode['accuracy']:.3f}, {mode['delay_median_s']:.2f} s{missed}"

    def offline(head: dict) -> str:
        test = head["offline_test"]
        return f"{test['video_correct']}/{test['videos']} ({test['clip_accuracy']:.3f})"

    seeds = run["seeds"]
    rows = [
        [head_mode(key)]
        + [cell(seed[head]["modes"][key]) for seed in seeds for head in ("window_trained", "stream_trained")]
        for key in seeds[0]["window_trained"]["modes"]
    ]
    rows.append(
        ["offline: test videos right (clip accuracy)"]
        + [offline(seed[head]) for seed in seeds for head in ("window_trained", "stream_trained")]
    )
    header = ["head mode"] + [name for seed in seeds for name in (f"seed {seed['seed']}: window", "stream")]
    return markdown_table(header, rows)


def stream_training_targets(run: dict) -> str:
    """The issue's three targets per seed: met, or by how much they are missed."""
    seeds = run["seeds"]

    def accuracy(seed: dict) -> str:
        points, best = seed["targets"]["accuracy_points_over_best_window_mode"], seed["targets"]["best_window_mode"]
        ours = seed["stream_trained"]["modes"]["continuous"]["accuracy"]
        theirs = seed["window_trained"]["modes"][best]["accuracy"]
        verdict = "met" if points >= 5 else f"**missed by {5 - points:.1f} points**"
        return f"{verdict}: {points:+.1f} ({ours:.3f} against {head_mode(best)}, {theirs:.3f})"

    def delay(seed: dict) -> str:
        ratio = seed["targets"]["delay_ratio_to_exact_hop1"]
        ours = seed["stream_trained"]["modes"]["continuous"]["delay_median_s"]
        hop1 = seed["window_trained"]["modes"]["exact-hop1"]["delay_median_s"]
        verdict = "met" if ratio is not None and ratio <= 0.5 else "**missed**"
        return f"{verdict}: {fixed(ratio, 2)} ({ours:.2f} s against {hop1:.2f} s)"

    def offline(seed: dict) -> str:
        lost = seed["targets"]["offline_videos_lost"]
        verdict = "met" if lost is not None and lost <= 1 else "**missed**"
        right = [seed[head]["offline_test"]["video_correct"] for head in ("stream_trained", "window_trained")]
        return f"{verdict}: {right[0]} against {right[1]} right"

    rows = [
        [name] + [judge(seed) for seed in seeds]
        for name, judge in (
            ("frame accuracy >= 5 points over the best window mode", accuracy),
            ("median switch delay <= half of exact hop 1's", delay),
            ("offline: no more than one test video lost", offline),
        )
    ]
    return markdown_table(["target"] + [f"seed {seed['seed']}" for seed in seeds], rows)


for _data in ("weizmann4", "ucf101_9"):
    table(f"stream-training-{_data}", f"stream_training_{_data}.json", STREAM_TRAINING.format(data=_data))(
        stream_training_modes
    )
    table(f"stream-training-targets-{_data}", f"stream_training_{_data}.json", STREAM_TRAINING.format(data=_data))(
        stream_training_targets
    )


# ---------------------------------------------------------------- distributed training


@table(
    "distribute-weizmann4",
    "distribute_weizmann4.json",
    "python -m lrcn.tools.evidence.local_workers $D/weizmann4 --work runs/workers --seeds 0 1 2 --batch-size 16 "
    "--out docs/results/distribute_weizmann4.json -- TRAIN_FLAGS (docs/guide/training.md)",
)
def distribute_weizmann4(run: dict) -> str:
    runs = [key for key in run["seeds"][0] if key != "seed"]
    rows = [
        [seed["seed"]]
        + [f"{seed[key]['video_correct']}/{seed[key]['videos']} ({seed[key]['clip_accuracy']:.3f})" for key in runs]
        + [f"{seed[key]['seconds']:.0f} s" for key in runs]
        for seed in run["seeds"]
    ]
    names = [key.replace("_", " ") for key in runs]
    return markdown_table(
        ["seed"]
        + [f"{name}: test videos right (clip accuracy)" for name in names]
        + [f"{name}: wall time" for name in names],
        rows,
    )


# ---------------------------------------------------------------- open set

NOVELTY = (
    "lrcn novelty fit BUNDLE DATA SPLIT --seed S [--method mahalanobis|combined] for seeds 0-2, then "
    "lrcn novelty measure BUNDLES --foreign $D/ucf101_9|weizmann4 --foreign $D/ps7 "
    "--out docs/results/novelty_{weizmann4,ucf101_9}[_mahalanobis|_combined].json (docs/evidence/results.md, Open set)"
)


@table(
    "novelty",
    (
        "novelty_weizmann4.json",
        "novelty_weizmann4_mahalanobis.json",
        "novelty_weizmann4_combined.json",
        "novelty_ucf101_9.json",
        "novelty_ucf101_9_mahalanobis.json",
        "novelty_ucf101_9_combined.json",
    ),
    NOVELTY,
)
def novelty(*runs: dict) -> str:
    rows = []
    for run in runs:
        for result in run["bundles"]:
            held_out = [
                f"{row['unknown_share']:.1%} of {row['windows']}"
                for row in result["datasets"].values()
                if row["role"] == "held-out"
            ]
            foreign = [
                f"{name}: **{row['unknown_share']:.1%}** of {row['windows']} (AUROC {row['auroc']:.3f}"
                + (
                    f"; {row['unknown_share_at_test_quantile']:.1%} at the test's own quantile"
                    if "unknown_share_at_test_quantile" in row
                    else ""
                )
                + f"; softmax top >= 0.9: {row['softmax_top_at_least_0.9']:.0%})"
                for name, row in result["datasets"].items()
                if row["role"] == "foreign"
            ]
            folds = result["fit"]["validation_folds"]
            chosen_on = f"groups {','.join(folds[0])}" if len(folds) == 1 else f"{len(folds)} folds"
            rows.append(
                [
                    next(iter(result["datasets"])),
                    result["method"],
                    f"{result['seed']}: {chosen_on}",
                    fixed(result["threshold"], 3),
                    "; ".join(held_out),
                    "; ".join(foreign),
                ]
            )
    header = [
        "trained on",
        "method",
        "seed: threshold from",
        "threshold",
        "held-out windows labelled unknown (target <= 5%)",
        "foreign windows labelled unknown (target >= 90%)",
    ]
    return markdown_table(header, rows)


# ---------------------------------------------------------------- capture and cameras


@table("capture-cost", "capture.json", "lrcn bench capture --out docs/results --repeats 11")
def capture_cost(run: dict) -> str:
    rows = []
    for source in run["sources"].values():
        paths, ratios = source["paths"], source["ratios"]
        a_over_b = fixed(ratios["a_over_b"])
        rows.append(
            [
                source["label"],
                *(fixed(paths[p]["cpu_ms_per_frame"]["median"]) for p in "abc"),
                f"**{a_over_b}**" if source["a_over_b_target"] and ratios["a_over_b"] >= 2.5 else a_over_b,
                fixed(ratios["b_over_c"], 3),
                fixed(ratios["b_over_c_same_run"], 3),
            ]
        )
    header = [
        "source",
        "(a) OpenCV, ms/frame",
        "(b) PyAV sampled",
        "(c) decode only",
        "(a)/(b)",
        "(b)/(c) across runs",
        "(b)/(c) in-run",
    ]
    return markdown_table(header, rows)


def camera_trials(code: str, run: dict) -> list[list[object]]:
    rows = []
    for trial in run["trials"]:
        streams = trial["streams"].values()
        slips = [s["slip_s"] for s in streams if s.get("slip_s") is not None]
        rows.append(
            [
                code,
                trial["cameras"],
                trial["attempt"],
                sum(s["dropped"] for s in streams),
                f"{max(s['latency_p99_ms'] for s in streams):.0f}",
                fixed(min(s["encoded_fps"] for s in streams)),
                fixed(trial["serve_cores"]),
                fixed(max(slips)) if slips else "-",
                "holds" if trial["holds"] else "fails",
            ]
        )
    return rows


@table(
    "cameras",
    ("cameras_before.json", "cameras_after.json"),
    "python -m lrcn.tools.evidence.camera_capacity --out docs/results/cameras_after.json --duration 60 "
    "--quiet-load 1.5 (and --checkout a worktree of 9b6c281 --out docs/results/cameras_before.json)",
)
def cameras(before: dict, after: dict) -> str:
    header = [
        "code",
        "cameras",
        "try",
        "ring drops",
        "p99 ms (worst stream)",
        "encoded/s (slowest)",
        "serve cores",
        "clock slip s",
        "",
    ]
    rows = camera_trials("before", before) + camera_trials("after", after)
    return markdown_table(header, rows) + (
        f"\n\nCapacity: {before['capacity']} cameras before, **{after['capacity']}** after."
    )


# ---------------------------------------------------------------- the service: scrapes, sinks, soak


@table(
    "scrape-overhead",
    ("scrape_overhead_demo.json", "scrape_overhead_seed.json"),
    "python -m lrcn.tools.evidence.bench_scrape BUNDLE --out bench-results, then its scrape_overhead.json copied to "
    "docs/results/scrape_overhead_demo.json (lrcn-demo/bundle) or _seed.json (bench-results/seed-112)",
)
def scrape_overhead(*runs: dict) -> str:
    rows = []
    for run in runs:
        each = ", ".join(f"{(p['ratio'] - 1) * 100:+.1f}%" for p in run["per_process"])
        cores = sum(p["cores_not_scraped"] for p in run["per_process"]) / len(run["per_process"])
        rows.append(
            [
                run["bundle"],
                f"{cores:.2f} cores",
                f"**{run['extra_percent']:+.2f}%** ({each})",
                f"{run['cpu_ms_per_scrape']:.2f} ms",
                f"{run['direct_extra_percent']:+.2f}%",
                f"{run['metrics_bytes'] / 1000:.1f} kB",
                f"{run['scrapes']} ({run['scrape_failures']} failed)",
            ]
        )
    header = [
        f"bundle, {runs[0]['streams']} streams",
        "CPU, not scraped",
        "extra CPU, 1 scrape/s, paired rounds (per process)",
        "server CPU per scrape",
        "the same as a share of the load",
        "`/metrics` size",
        "scrapes",
    ]
    return markdown_table(header, rows)


SINK_SETS = {
    "zeromq+mqtt": "MQTT, qos 1",
    "zeromq+mqtt0": "MQTT, qos 0",
    "zeromq+mqttev": 'MQTT, `kinds = ["status", "event"]`',
    "zeromq+jsonl": "JSONL",
    "zeromq+mqtt+jsonl": "MQTT qos 1 and JSONL",
}


@table(
    "sink-cost", "sink_cost.json", "python -m lrcn.tools.evidence.bench_sinks bench-results/seed-112 --out docs/results"
)
def sink_cost(run: dict) -> str:
    base = run["sets"]["zeromq"]
    rows = [
        [
            "ZeroMQ alone (the baseline, JSON encoding included)",
            f"{base['cpu_us_per_message']:.0f} us in all",
            f"{base['serving_cpu_ms_per_frame']:.1f} ms a frame",
        ]
    ]
    for key, label in SINK_SETS.items():
        if key in run["sets"]:
            cost = run["sets"][key]
            rows.append([label, f"{cost['extra_us_per_message']:.0f} us", f"{cost['extra_percent_of_frame']:.1f}%"])
    return markdown_table(["sink", "extra CPU per message", "as a share of a frame"], rows)


def spread(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    return fixed(low, digits) if round(low, digits) == round(high, digits) else f"{low:.{digits}f}-{high:.{digits}f}"


@table(
    "soak-scrape",
    "soak_scrape.json",
    "lrcn soak bench-results/seed-112 --duration 1800 --interval 30 --scrape 1 --out soak-scrape",
)
def soak_scrape(run: dict) -> str:
    scrape, samples = run["scrape"], run["samples"]
    predictions = sorted(set(run["predictions"].values()))
    threads = (
        f"{run['threads_min']} at every sample"
        if run["threads_min"] == run["threads_max"]
        else f"{run['threads_min']}-{run['threads_max']}"
    )
    rows = [
        ["serve process", f"exit {run['serve_exit']}"],
        ["predictions per stream", " / ".join(thousands(p) for p in predictions)],
        [
            "ring drops; publisher drops; reconnects; ffmpeg restarts",
            f"{run['dropped']}; {run['publisher_dropped']}; {max(s['reconnects'] for s in samples)}; {run['server_restarts']}",
        ],
        [
            "RSS of serve, first quarter -> last quarter",
            f"{run['rss_first_mb']} -> {run['rss_last_mb']} MiB: **{run['rss_growth_mb']:+.1f} MiB**",
        ],
        ["threads of serve", threads],
        [
            "scrapes; failed; `/healthz` answers other than 200",
            f"{thousands(scrape['scrapes'])}; {scrape['scrape_failures']}; {scrape['healthz_503']}",
        ],
        [
            "time of one scrape, p50 / p99 / max",
            f"{scrape['scrape_ms_p50']} / {scrape['scrape_ms_p99']} / {scrape['scrape_ms_max']} ms",
        ],
        ["median scrape, first quarter -> last quarter", f"{scrape['ms_first']} -> {scrape['ms_last']} ms"],
        [
            "capture-to-publish per interval, p50 / p99",
            f"{spread([s['p50_ms'] for s in samples])} / {spread([s['p99_ms'] for s in samples])} ms; "
            f"p99 first quarter {run['p99_first_ms']} -> last {run['p99_last_ms']} ms",
        ],
        ["largest heartbeat gap", f"{run['max_heartbeat_gap_s']:.2f} s"],
    ]
    minutes = run["duration_s"] / 60
    return markdown_table(
        [f"over {minutes:.0f} minutes, {run['streams']} streams, scraped every {scrape['interval_s']:g} s", "result"],
        rows,
    )


@table(
    "soak-latency-compare",
    "soak_latency_compare.json",
    "lrcn soak bench-results/seed-112 --duration 120 --interval 20 (one run per row, see the JSON's `command`)",
)
def soak_latency_compare(run: dict) -> str:
    rows = [
        [
            name,
            fixed(r["p50_ms_median_of_intervals"]),
            fixed(r["p99_ms_median_of_intervals"]),
            fixed(r["rss_mb"], 1),
            r["threads"],
            r["dropped"],
            f"{r['duration_s']:.0f} s",
        ]
        for name, r in run["runs"].items()
    ]
    header = ["run", "p50 ms (median of intervals)", "p99 ms", "RSS MiB", "threads", "drops", "length"]
    return markdown_table(header, rows)


# ---------------------------------------------------------------- lrcn bench

BENCH = "lrcn bench --seed-model --out bench-results && cp bench-results/bench.json docs/results/bench.json"
BENCH_CONTINUOUS = (
    "lrcn bench bench-results/seed-112 --mode continuous --no-startup --out bench-results/continuous"
    " && cp bench-results/continuous/bench.json docs/results/bench_continuous.json"
)


def load(values: list[float]) -> str:
    """Load averages as the machine printed them.

    >>> load([1.28, 1.5, 2.79])
    '1.28, 1.5, 2.79'
    """
    return ", ".join(f"{v:g}" for v in values)


@table("bench-machine", ("bench.json", "bench_continuous.json"), f"{BENCH}; {BENCH_CONTINUOUS}")
def bench_machine(exact: dict, continuous: dict) -> str:
    runs = {
        "exact windows, the main run (`bench.json`)": exact,
        "continuous, right after it (`bench_continuous.json`)": continuous,
    }
    rows = [
        [label, run["machine"]["cpu"], run["machine"]["cores"], load(run["load_before"]), load(run["load_after"])]
        for label, run in runs.items()
    ]
    header = ["`lrcn bench` run", "CPU", "cores", "load average at the start (1, 5, 15 min)", "at the end"]
    software = sorted(
        {(m["platform"], m["python"], m["numpy"], m["onnxruntime"]) for m in (run["machine"] for run in runs.values())}
    )
    threads = sorted(
        {
            run["backend"] + (f", {run['threads']} threads" if run["threads"] else ", its default threads")
            for run in runs.values()
        }
    )
    lines = [
        f"{platform}; Python {python}, NumPy {numpy}, ONNX Runtime {onnxruntime}."
        for platform, python, numpy, onnxruntime in software
    ]
    return markdown_table(header, rows) + "\n\n" + " ".join(lines) + f" Encoder: {'; '.join(threads)}."


COST_ROWS = {
    "naive": "**naive**: full T-frame `model.onnx` re-run",
    "exact": "**exact window**, encode once",
    "continuous": "**continuous** (1 state)",
    "encoder_b1": "  encoder alone, batch 1",
    "head_exact": "  exact head alone (x·W + b, T recurrent steps)",
    "head_continuous": "  continuous head alone",
    "int8_b1": "  INT8 encoder, batch 1",
    "encoder_b16": "  fp32 encoder, batch 16 (per call)",
    "int8_b16": "  INT8 encoder, batch 16 (per call)",
}


@table("bench-cost", "bench.json", BENCH)
def bench_cost(run: dict) -> str:
    cost = run["cost"]
    ratios = {"exact": cost.get("naive_over_exact"), "continuous": cost.get("naive_over_continuous")}
    rows = [
        [label, fixed(cost[key]["ms"]), fixed(cost[key]["cpu_ms"]), f"**{ratios[key]}x**" if ratios.get(key) else ""]
        for key, label in COST_ROWS.items()
        if key in cost
    ]
    table_text = markdown_table(["per new frame", "median ms", "CPU ms", "naive / this"], rows)
    if "int8_speedup_b1" in cost:
        table_text += (
            f"\n\nINT8 against fp32 encoder: {cost['int8_speedup_b1']}x at batch 1, "
            f"{cost['int8_speedup_b16']}x at batch 16. Model: {run['model']}."
        )
    return table_text


@table("bench-latency", "bench.json", BENCH)
def bench_latency(run: dict) -> str:
    latency, pipeline = run["latency"], run["pipeline"]
    rows = [
        [label, fixed(part["p50"], 3), fixed(part["p95"], 3), fixed(part["p99"], 3), part["count"]]
        for label, part in (
            ("capture -> publish (the message's `latency_ms`)", latency["capture_to_publish_ms"]),
            ("capture -> received by the subscriber", latency["capture_to_receive_ms"]),
        )
    ]
    return markdown_table(
        [
            f"{latency['streams']} stream, {latency['frames_per_s']:g} frames/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "predictions",
        ],
        rows,
    ) + (
        f"\n\nRing drops {latency['dropped']}, publisher drops {latency['publisher_dropped']}. Process CPU per "
        f"frame (the subscriber's own thread subtracted): **{pipeline['cpu_ms_per_frame']:.2f} ms**, against "
        f"{pipeline['bare_cpu_ms_per_frame']:.2f} ms for the encoder + exact head in a hot loop "
        f"({pipeline['cpu_over_bare']}x) and {pipeline['paced_compute_cpu_ms_per_frame']:.2f} ms for the same "
        f"`Scheduler` calls paced at {latency['frames_per_s']:g} fps without the pipeline around them "
        f"({pipeline['cpu_over_paced_compute']}x). Over the whole run, start-up and shut-down included: "
        f"{pipeline['cpu_ms_per_frame_whole_run']:.2f} ms, {pipeline['whole_run_over_bare']}x."
    )


def capacity_rows(run: dict, mode: str) -> list[list[object]]:
    rows = []
    bare = run["throughput"]["encoder"]["best_frames_per_s"]
    compute = run["throughput"]["compute" if mode == "exact" else "compute_continuous"]["best_frames_per_s"]
    for key, sources in (("capacity_memory", "in memory (`pattern:25`)"), ("capacity_file", "video files, decoded")):
        if key in run:
            capacity = run[key]
            rows.append(
                [
                    f"{mode}, {sources}",
                    f"**{capacity['max_streams']}**",
                    capacity["first_failing"] or "-",
                    fixed(capacity["frames_per_s"], 1),
                    f"{capacity['frames_per_s'] / bare:.0%}",
                    f"{capacity['frames_per_s'] / compute:.0%}",
                ]
            )
    return rows


def fewer_in_memory(run: dict, mode: str) -> str:
    """A sentence when in-memory sources, the cheaper ones, held fewer streams than video files; else ''."""
    memory, files = run.get("capacity_memory"), run.get("capacity_file")
    if not (memory and files and memory["max_streams"] < files["max_streams"]):
        return ""
    runs = {r["streams"]: r for r in memory["runs"]}
    held, failed = runs[memory["max_streams"]], runs.get(memory["first_failing"])
    one_memory, one_file = runs.get(1), {r["streams"]: r for r in files["runs"]}.get(1)
    cost = (
        f", though an in-memory stream costs less (one stream: {one_memory['cpu_ms_per_frame']:.2f} against "
        f"{one_file['cpu_ms_per_frame']:.2f} CPU ms per frame)"
        if one_memory and one_file
        else ""
    )
    reason = "on p99 alone" if failed and failed["dropped"] == 0 else "on p99 or ring drops"
    failing = (
        f": its {failed['streams']}-stream run failed {reason} ({failed['p99_ms']:.0f} ms, the lower of "
        f"two tries; {failed['dropped']} ring drops, batch mean {failed['batch_mean']:g}), after "
        f"{held['streams']} streams had held at p99 {held['p99_ms']:.1f} ms"
        if failed
        else ""
    )
    return (
        f"In {mode} mode, in-memory sources held fewer streams than video files ({memory['max_streams']} "
        f"against {files['max_streams']}){cost}{failing}."
    )


def own_baseline(run: dict) -> str:
    """The continuous run's own bare throughput and one-stream CPU, which its rows are measured against."""
    encoder, compute = run["throughput"]["encoder"], run["throughput"]["compute_continuous"]
    pipeline = run["pipeline"]
    return (
        f"The continuous run measured its own bare figures: encoder {encoder['best_frames_per_s']:.1f} frames/s "
        f"at batch {encoder['best_batch']}, encoder + continuous head {compute['best_frames_per_s']:.1f} "
        f"({compute['best_batch']} streams per call). One-stream CPU in that run (the same exact-window stream "
        f"as the latency table's, measured again): "
        f"{pipeline['cpu_ms_per_frame']:.2f} ms per frame, {pipeline['cpu_over_bare']}x the hot-loop compute "
        f"({pipeline['bare_cpu_ms_per_frame']:.2f}), {pipeline['cpu_over_paced_compute']}x the paced compute "
        f"({pipeline['paced_compute_cpu_ms_per_frame']:.2f})."
    )


@table("bench-capacity", ("bench.json", "bench_continuous.json"), f"{BENCH}; {BENCH_CONTINUOUS}")
def bench_capacity(exact: dict, continuous: dict) -> str:
    header = [
        "head mode, sources",
        "streams held",
        "first failing",
        "frames/s at capacity",
        "% of bare encoder",
        "% of bare encoder + head",
    ]
    notes = [own_baseline(continuous), fewer_in_memory(exact, "exact"), fewer_in_memory(continuous, "continuous")]
    return markdown_table(header, capacity_rows(exact, "exact") + capacity_rows(continuous, "continuous")) + (
        "\n\n" + " ".join(note for note in notes if note)
    )


@table("bench-capacity-runs", "bench.json", BENCH)
def bench_capacity_runs(run: dict) -> str:
    rows = []
    for key, sources in (("capacity_memory", "memory"), ("capacity_file", "files")):
        for r in run.get(key, {}).get("runs", []):
            rows.append(
                [
                    sources,
                    r["streams"],
                    fixed(r["frames_per_s"], 1),
                    fixed(r["p50_ms"], 3),
                    fixed(r["p99_ms"], 3),
                    r["dropped"],
                    fixed(r["batch_mean"]),
                    fixed(r["cpu_ms_per_frame"]),
                    fixed(r["load"][0]),
                ]
            )
    header = ["sources", "streams", "frames/s", "p50 ms", "p99 ms", "ring drops", "batch mean", "CPU ms/frame", "load"]
    return markdown_table(header, rows)


@table("bench-throughput", "bench.json", BENCH)
def bench_throughput(run: dict) -> str:
    parts = run["throughput"]
    batches = list(parts["encoder"]["frames_per_s"])
    labels = {
        "encoder": "encoder alone",
        "compute": "encoder + exact head",
        "compute_continuous": "encoder + continuous head",
    }
    rows = [
        [label, *(fixed(parts[key]["frames_per_s"][b], 1) for b in batches)]
        for key, label in labels.items()
        if key in parts
    ]
    if "aggregate" not in run:
        return markdown_table(["batch", *batches], rows)
    mode = run["capacity_head"]["mode"]
    total, encoder = run["aggregate"], parts["encoder"]
    compute = parts["compute" if mode == "exact" else "compute_continuous"]
    return markdown_table(["batch", *batches], rows) + (
        f"\n\nAggregate at capacity, {mode}: **{total['frames_per_s']:.1f} frames/s = {total['fraction']:.0%} of "
        f"the bare encoder's best ({encoder['best_frames_per_s']:.1f} at batch {encoder['best_batch']})**, "
        f"{total['fraction_of_bare_compute']:.0%} of the bare encoder + {mode} head's best "
        f"({compute['best_frames_per_s']:.1f}). Sustained without a ring drop, latency aside: "
        f"{total['sustained_without_drops_frames_per_s']:.1f} frames/s ({total['sustained_fraction']:.0%})."
    )


@table("bench-startup", "bench.json", BENCH)
def bench_startup(run: dict) -> str:
    startup = run["startup"]
    rows = [
        [
            "this runtime (ONNX Runtime + NumPy, no TensorFlow)",
            *(fixed(startup["runtime"][k], 3) for k in ("loaded_s", "first_prediction_s")),
            startup["runtime"]["rss_mb"],
        ],
        [
            "Keras (`model.keras`)",
            *(fixed(startup["keras"][k], 3) for k in ("loaded_s", "first_prediction_s")),
            startup["keras"]["rss_mb"],
        ],
    ]
    return markdown_table(["", "loaded, s", "first prediction, s", "RSS, MiB"], rows) + (
        f"\n\nKeras takes {startup['keras_over_runtime_first_prediction']}x as long to its first prediction "
        f"and {startup['keras_over_runtime_rss']}x the memory."
    )


@table("bench-targets", "bench.json", BENCH)
def bench_targets(run: dict) -> str:
    rows = [
        [f"{name} ({target['target']})", target["value"], "yes" if target["met"] else "**no**"]
        for name, target in run["targets"].items()
    ]
    return markdown_table(["target", "measured", "met"], rows)


@table(
    "faults",
    "faults.json",
    "lrcn faults bench-results/seed-112 --out fault-results && cp fault-results/faults.json docs/results/faults.json",
)
def faults(run: dict) -> str:
    cycles = run["cycles"]
    recovered = sum(1 for c in cycles if c["resumed"] and c["gap_event"] and c["connected_event"])
    waits = sorted(c["kill_to_prediction_s"] for c in cycles if c.get("kill_to_prediction_s") is not None)
    stalled = run["stalled_subscriber"]
    finals = run["final_stats"].values()
    rows = [
        ["kills recovered (a gap status, `connected` again, then predictions)", f"**{recovered} / {len(cycles)}**"],
        [
            "kill to the stream's next prediction, median / max",
            f"{waits[len(waits) // 2]:.1f} / {waits[-1]:.1f} s" if waits else "-",
        ],
        [
            "ring drops; publisher drops (every stream)",
            f"{sum(s['dropped'] for s in finals)}; {sum(s['publisher_dropped'] for s in finals)}",
        ],
        ["largest gap between heartbeats", f"{run['max_heartbeat_gap_s']:.2f} s"],
        [
            f"stalled subscriber ({run['stall_s']:g} s): before / after; seq gaps",
            f"{stalled['received_before']} / {stalled['received_after']} messages; {stalled['missed_seq']} missed",
        ],
        [
            "corrupt file: predictions; still coming at the end",
            f"{run['predictions'].get('corrupt', '-')}; {'yes' if run['corrupt_predictions_still_coming'] else 'no'}",
        ],
        ["serve stop after SIGTERM; exit status", f"{run['stop_s']:.2f} s; {run['serve_exit']}"],
        ["problems found", len(run["problems"])],
        ["whole run", f"{run['elapsed_s']:.0f} s"],
    ]
    return markdown_table(["check", "result"], rows)


@table("demo", "demo.json", "lrcn demo && cp lrcn-demo/demo.json docs/results/demo.json")
def demo(run: dict) -> str:
    test, streaming = run["test"], run["streaming"]
    rows = [
        [
            f"{run['seconds']:.0f} s",
            f"{test['video_correct']}/{test['videos']}",
            streaming["predictions"],
            f"{streaming['accuracy']:.0%}",
            f"{streaming['accuracy_within_one_action']:.0%} of {streaming['within_one_action']}",
            f"{streaming['latency_ms_p50']:.1f} / {streaming['latency_ms_p99']:.1f} ms",
        ]
    ]
    header = [
        "demo, start to end",
        "test videos right",
        "streaming predictions",
        "right, of all",
        "right, windows showing one action",
        "latency p50 / p99",
    ]
    return markdown_table(header, rows)


# ---------------------------------------------------------------- issue 23: input size, two streams


INPUT_SIZE = (
    "python -m lrcn.tools.evidence.input_size_study ../shared/data --weights $W --work runs/input_size "
    "--out docs/results/input_size.json"
)
SETS = ("weizmann4", "ps7", "ucf101_9")


@table("input-size", "input_size.json", INPUT_SIZE)
def input_size(run: dict) -> str:
    """Per size: validation videos right on each set (folds of the training groups), encoder CPU per frame."""
    accuracy, cost = run["accuracy"], run.get("cost", {}).get("sizes", {})
    rows = []
    for size in run["sizes"]:
        cells = []
        for name in SETS:
            row = accuracy.get(name, {}).get("sizes", {}).get(str(size))
            cells.append(
                "-"
                if row is None
                else f"{row['val_correct']}/{row['val_videos']} = {row['val_video_accuracy']:.3f} "
                f"({', '.join(map(str, row['per_fold']))}; clips {row['mean_val_clip_accuracy']:.3f})"
            )
        part = cost.get(str(size), {})
        rows.append(
            [
                f"{size} px",
                *cells,
                f"{fixed(part.get('batch1_cpu_ms_per_frame'))} ({fixed(part.get('batch1_cpu_ratio'))}x)",
                f"{fixed(part.get('batch8_cpu_ms_per_frame'))} ({fixed(part.get('batch8_cpu_ratio'))}x)",
            ]
        )
    header = [
        "input",
        *(f"{name}: validation videos right (per fold; clip accuracy)" for name in SETS),
        "encoder CPU ms/frame, batch 1",
        "batch 8",
    ]
    folds = "; ".join(
        f"{name}: {len(accuracy[name]['folds'])} folds, test {accuracy[name]['test_groups_left_out']} never read"
        for name in SETS
        if name in accuracy
    )
    note = (
        f"\n\nValidation folds: {folds}. Encoder: {run['cost']['backend']}, load {run['cost']['load_average']}. "
        f"Smallest size within two binomial standard errors of the best size's validation accuracy on every "
        f"set: "
        f"**{run['recommended_size']} px**."
        if "cost" in run
        else ""
    )
    return markdown_table(header, rows) + note


TWO_STREAM = (
    "python -m lrcn.tools.evidence.two_stream_study --data ../shared/data --weights $W --work runs/two_stream "
    "--summary docs/results/two_stream.json"
)
STREAMS = {"rgb": "RGB", "flow": "flow", "both": "RGB + flow"}


def two_stream_runs(summary: dict) -> dict:
    """{(dataset, seed): {modality: run}}, in the summary's order."""
    out: dict = {}
    for run in summary["runs"]:
        out.setdefault((run["dataset"], run["seed"]), {})[run["modality"]] = run
    return out


def offline_cell(run: dict | None) -> str:
    test = (run or {}).get("offline")
    return "-" if not test else f"{test['video_correct']}/{test['videos']} = {test['video_accuracy']:.3f}"


def fusion_validation(choice: dict | None) -> str:
    """meta.json's training["fusion_choice"] as "early 0.750, late 1.000" (validation video accuracy).

    >>> fusion_validation({"chosen": "late", "validation": {"early": {"video_accuracy": 0.75}, "late": {"video_accuracy": 1.0}}})
    'early 0.750, late 1.000'
    """
    if not choice:
        return "-"
    scores = choice.get("validation", choice)
    return ", ".join(
        f"{name} {fixed(value.get('video_accuracy') if isinstance(value, dict) else value, 3)}"
        for name, value in scores.items()
        if name != "chosen"
    )


@table("two-stream-offline", "two_stream.json", TWO_STREAM)
def two_stream_offline(summary: dict) -> str:
    """Offline video accuracy on the held-out test groups: RGB, flow, both, per data set and seed."""
    rows = []
    for (name, seed), runs in two_stream_runs(summary).items():
        both = runs.get("both", {})
        choice = (both.get("training") or {}).get("fusion_choice")
        model = both.get("model") or {}
        # meta.json leaves out a field at its default, so a two-stream model without "fusion" is early
        fusion = model.get("fusion") or ("early" if model.get("modalities") else None)
        accuracies = {m: (r.get("offline") or {}).get("video_accuracy") for m, r in runs.items()}
        better = max((accuracies.get(m) for m in ("rgb", "flow") if accuracies.get(m) is not None), default=None)
        verdict = (
            "-"
            if accuracies.get("both") is None or better is None
            else ("yes" if accuracies["both"] >= better else f"**no** ({accuracies['both'] - better:+.3f})")
        )
        rows.append(
            [
                name,
                seed,
                *(offline_cell(runs.get(m)) for m in STREAMS),
                fusion or "-",
                fusion_validation(choice),
                verdict,
            ]
        )
    return markdown_table(
        ["data set", "seed", *STREAMS.values(), "fusion kept", "validation (fusion choice)", "both >= better single"],
        rows,
    )


def best_mode(modes: dict | None) -> tuple[str, dict] | None:
    if not modes:
        return None
    return max(modes.items(), key=lambda item: item[1].get("accuracy") or 0.0)


def still_cell(still: dict) -> str:
    """Events a minute on the still scene, and the share of its predictions published idle or unknown."""
    if not still:
        return "-"
    quiet = (still.get("idle") or 0) + (still.get("unknown") or 0)
    share = f" ({quiet / still['predictions']:.0%} idle/unknown)" if still.get("predictions") else ""
    return fixed(still.get("events_per_min"), 1) + share


@table("two-stream-live", "two_stream.json", TWO_STREAM)
def two_stream_live(summary: dict) -> str:
    """Per run, the best head mode: frames right replayed and live, delay, events, stills."""
    rows = []
    for (name, seed), runs in two_stream_runs(summary).items():
        for modality in STREAMS:
            run = runs.get(modality)
            if not run:
                continue
            replay, served = best_mode(run.get("stream_offline")), best_mode(run.get("live"))
            stills = (run.get("stills") or {}).get("modes", {})
            still = stills.get(served[0], {}) if served else {}
            live = served[1] if served else {}
            rows.append(
                [
                    name,
                    seed,
                    STREAMS[modality],
                    f"{head_mode(replay[0])}: {fixed(replay[1]['accuracy'], 3)}" if replay else "-",
                    f"{head_mode(served[0])}: {fixed(live['accuracy'], 3)}" if served else "-",
                    f"{fixed(live.get('delay_median_s'))} s" if served else "-",
                    fixed(live.get("precision")),
                    fixed(live.get("recall")),
                    fixed(live.get("false_per_min"), 1),
                    still_cell(still),
                ]
            )
    header = [
        "data set",
        "seed",
        "streams",
        "frames right, replayed (best mode)",
        "frames right, live (best mode)",
        "delay median",
        "event precision",
        "recall",
        "false per min",
        "events per min on stills",
    ]
    return markdown_table(header, rows)


@table("two-stream-modes", "two_stream.json", TWO_STREAM)
def two_stream_modes(summary: dict) -> str:
    """Frames right per head mode, replayed (`--offline`), mean over seeds, each stream side by side."""
    sums: dict = {}
    for run in summary["runs"]:
        for mode, row in (run.get("stream_offline") or {}).items():
            sums.setdefault((run["dataset"], mode), {}).setdefault(run["modality"], []).append(row["accuracy"])
    rows = [
        [name, head_mode(mode), *(f"{sum(v) / len(v):.3f} ({len(v)})" if (v := cells.get(m)) else "-" for m in STREAMS)]
        for (name, mode), cells in sums.items()
    ]
    return markdown_table(
        ["data set", "head mode", *(f"{s}: mean frames right (seeds)" for s in STREAMS.values())], rows
    )


@table("two-stream-open-set", "two_stream.json", TWO_STREAM)
def two_stream_open_set(summary: dict) -> str:
    """The guard fitted on each run's training groups: held-out and foreign windows labelled unknown."""
    rows = []
    for run in summary["runs"]:
        guard = run.get("novelty")
        if not guard:
            continue
        held = [
            f"{row['unknown_share']:.1%} of {row['windows']}"
            for row in guard["datasets"].values()
            if row["role"] == "held-out"
        ]
        foreign = [
            f"{name}: **{row['unknown_share']:.1%}** of {row['windows']} (AUROC {fixed(row['auroc'], 3)})"
            for name, row in guard["datasets"].items()
            if row["role"] == "foreign"
        ]
        rows.append(
            [
                run["dataset"],
                run["seed"],
                STREAMS[run["modality"]],
                guard["method"],
                "; ".join(held),
                "; ".join(foreign),
            ]
        )
    return markdown_table(
        [
            "trained on",
            "seed",
            "streams",
            "method",
            "held-out unknown (target <= 5%)",
            "foreign unknown (target >= 90%)",
        ],
        rows,
    )


TWO_STREAM_TRAINED = (
    "python -m lrcn.tools.evidence.two_stream_study --data ../shared/data --weights $W --work runs/trained "
    "--flow-encoder auto --summary docs/results/two_stream_trained.json"
)


def candidate_cell(row: dict | None) -> str:
    """A flow encoder candidate's validation video and field accuracy."""
    if not row:
        return "-"
    return f"{fixed(row.get('val_video_accuracy'), 3)} / {fixed(row.get('val_field_accuracy'), 3)}"


@table("two-stream-flow-encoder", ("two_stream.json", "two_stream_trained.json"), TWO_STREAM_TRAINED)
def two_stream_flow_encoder(frozen: dict, trained: dict) -> str:
    """The flow encoder chosen on validation among frozen, tuned and scratch, and the test accuracy of the
    flow-only and two-stream bundles with it beside those of the frozen encoder (the study above)."""
    before = two_stream_runs(frozen)
    rows = []
    for (name, seed), runs in two_stream_runs(trained).items():
        for modality in ("flow", "both"):
            run = runs.get(modality)
            if not run or not run.get("flow_encoder"):
                continue
            choice = run["flow_encoder"]
            rows.append(
                [
                    name,
                    seed,
                    STREAMS[modality],
                    *(candidate_cell(choice["candidates"].get(c)) for c in ("frozen", "tuned", "scratch")),
                    f"**{choice['chosen']}**",
                    offline_cell(before.get((name, seed), {}).get(modality)),
                    offline_cell(run),
                ]
            )
    return markdown_table(
        [
            "data set",
            "seed",
            "streams",
            "frozen (val video / field)",
            "tuned",
            "scratch",
            "kept",
            "test videos, frozen encoder",
            "test videos, encoder kept",
        ],
        rows,
    )


@table(
    "two-stream-cost",
    "two_stream_cost.json",
    "python -m lrcn.tools.evidence.two_stream_cost RGB_BUNDLE TWO_STREAM_BUNDLE --out docs/results/two_stream_cost.json",
)
def two_stream_cost(run: dict) -> str:
    """CPU per sampled frame of `serve` on 1080p30 RTSP cameras, RGB-only against two-stream, and the parts."""
    trials = run.get("pipeline", {}).get("trials", [])

    def held(count: str, bundle: str) -> str:
        mine = [t for t in trials if str(t["cameras"]) == count and t["bundle"] == bundle]
        return f"{sum(t['holds'] for t in mine)}/{len(mine)}"

    rows = [
        [
            count,
            fixed(row["cpu_ms_per_frame"].get("rgb")),
            fixed(row["cpu_ms_per_frame"].get("two_stream")),
            f"**{fixed(row['ratio'])}**" if row["meets_target"] else fixed(row["ratio"]),
            f"{held(count, 'rgb')} / {held(count, 'two_stream')}",
        ]
        for count, row in run.get("pipeline", {}).get("summary", {}).items()
    ]
    parts = "; ".join(f"{name} {value['cpu_ms']:.2f}" for name, value in run["parts"].items())
    return (
        markdown_table(
            [
                "cameras",
                "RGB-only: CPU ms per sampled frame",
                "two-stream",
                "ratio (target <= 1.8)",
                "trials held (RGB / two-stream)",
            ],
            rows,
        )
        + f"\n\nParts, CPU ms per call at batch 1: {parts}. Load after the trials: "
        + ", ".join(str(t["load_after"]) for t in trials)
        + "."
    )


# ---------------------------------------------------------------- issue 24: events, clips and snapshots

EVENT_MEDIA = (
    "python -m lrcn.tools.evidence.bench_event_media --bundle WEIZMANN4_BUNDLE --out docs/results/event_media.json; "
    "the same with --duration 120 --bframes 3 --out docs/results/event_media_bframes.json"
)


@table("event-media", ("event_media.json", "event_media_bframes.json"), EVENT_MEDIA)
def event_media(*runs: dict) -> str:
    rows = []
    for run in runs:
        source, checks = run["source"], run["checks"]
        failed = [name for name, result in checks.items() if not result["ok"]]
        groups = f" subjects {', '.join(source['test_groups'])}" if source.get("test_groups") else ""
        rows.append(
            [
                (
                    f"{source['kind']}{groups}: {source['seconds'] / 60:.0f} min, {source['width']}x{source['height']} "
                    f"H.264, {source['bframes']} B-frames"
                ),
                f"{run['events']} ({run['events_sharing_packets_with_the_next']})",
                f"{run['clips_on_disk']} / {run['events']}",
                f"{run['clip_s_median']} / {run['clip_s_max']} s",
                f"{run['clips_capped']}",
                (
                    f"{run['clips_over_max_clip_s']} (by {run['clip_s_over_max_clip_s_max']} s at most); "
                    f"{run['clips_missing_frames']}"
                ),
                f"{run['snapshots']}, "
                + (
                    f"all {source['width']}x{source['height']}"
                    if checks["snapshots_at_source_resolution"]["ok"]
                    else "FAIL"
                ),
                f"{run['stored_rows']}" + ("" if checks["stored_rows_equal_published_events"]["ok"] else ", FAIL"),
                f"{len(checks) - len(failed)}/{len(checks)}" + (f" (failed: {', '.join(failed)})" if failed else ""),
                f"{run['cpu_per_stream_s']:.3f}",
            ]
        )
    cap = "/".join(sorted({f"{run['rules']['max_clip_s']:g}" for run in runs}))
    return markdown_table(
        [
            "paced stream",
            "events (sharing packets with the next)",
            "clips / events",
            "clip median / longest",
            f"events whose span is over max_clip_s ({cap} s)",
            "clips longer than max_clip_s; with frames missing",
            "snapshots (2 per event)",
            "stored rows = published",
            "checks passed",
            "serve CPU s per stream s",
        ],
        rows,
    )


# ---------------------------------------------------------------- the README's one table


@table(
    "headline",
    (
        "events_ucf101_9.json",
        "capture.json",
        "cameras_after.json",
        "scrape_overhead_seed.json",
        "sink_cost.json",
        "soak_scrape.json",
    ),
    "the commands of the tables it summarises (docs/evidence/results.md)",
)
def headline(events_run: dict, capture: dict, cameras_after: dict, scrape: dict, sinks: dict, soak: dict) -> str:
    exact = events_run["modes"]["exact-hop1"]
    hd = capture["sources"]["1080p30-h264-ippp"]
    mqtt = sinks["sets"]["zeromq+mqtt"]
    rows = [
        [
            "ucf101_9 test videos joined into one live stream, exact windows: frames labelled right; "
            "event precision / recall",
            f"{exact['accuracy']:.1%}; {exact['events']['precision']:.2f} / {exact['events']['recall']:.2f}",
            "[results](docs/evidence/results.md#streaming-accuracy)",
        ],
        [
            "capture CPU per 1080p30 H.264 frame: OpenCV, every frame / PyAV, only sampled frames converted",
            f"{hd['paths']['a']['cpu_ms_per_frame']['median']:.1f} / **{hd['paths']['b']['cpu_ms_per_frame']['median']:.1f} ms**",
            "[performance](docs/evidence/performance.md#capture-at-hd-pyav-only-the-sampled-frames-converted)",
        ],
        [
            "1080p30 RTSP cameras one 2-core box serves (10 fps sampling, 0 drops, p99 < 100 ms)",
            f"**{cameras_after['capacity']}**",
            "[performance](docs/evidence/performance.md#capture-at-hd-pyav-only-the-sampled-frames-converted)",
        ],
        [
            "extra CPU of a Prometheus scrape every second, 8 streams",
            f"{scrape['extra_percent']:+.2f}%",
            "[performance](docs/evidence/performance.md#what-a-scrape-costs)",
        ],
        [
            "extra CPU per message of an MQTT sink (qos 1)",
            f"{mqtt['extra_us_per_message']:.0f} us",
            "[performance](docs/evidence/performance.md#what-a-sink-costs)",
        ],
        [
            f"{soak['duration_s'] / 60:.0f}-minute soak, {soak['streams']} streams, scraped every second: "
            "RSS growth; drops; failed scrapes",
            f"{soak['rss_growth_mb']:+.1f} MiB; {soak['dropped']}; {soak['scrape']['scrape_failures']}",
            "[reliability](docs/evidence/reliability.md#soak-with-the-service-port)",
        ],
    ]
    return markdown_table(["measured on a 2-core CPU, no GPU", "result", "more"], rows)


# ---------------------------------------------------------------- the settings reference (from the schema, no JSON)


def settings_reference(section_name: str) -> str:
    """Every setting of one section of stream/settings.py, with the `lrcn serve` flag it has."""
    import argparse as _argparse

    from lrcn.stream import settings as schema
    from lrcn.tools.cli.serve import add_arguments

    parser = _argparse.ArgumentParser()
    add_arguments(parser)
    flags = {
        option
        for action in parser._actions
        if action.help is not _argparse.SUPPRESS
        for option in action.option_strings
    }
    on_command_line = {
        "source": "SOURCE",
        "id": "--name",
        "dir": "--record",
        **{
            name: schema.flag(name)
            for name in schema.SECTIONS[section_name].__struct_fields__
            if schema.flag(name) in flags
        },
    }
    return markdown_table(
        ["key", "flag", "type", "range", "default", "what it does"],
        schema.reference_rows(schema.SECTIONS[section_name], on_command_line.get),
    )


for _section in ("", "stream", "events", "record", "homeassistant"):
    table(f"settings{'-' + _section if _section else ''}", (), "the schema: stream/settings.py")(
        lambda section=_section: settings_reference(section)
    )


# The command line and metrics references (docs/reference/), from the parsers and stream/metrics.py.
table("cli", (), "the parsers: tools/cli/commands.py and each command's module")(
    lambda: reference.cli_reference_fresh()
)
table("metrics", (), "the collector: stream/metrics.py")(lambda: reference.metrics_reference())


# The same speed before and after a restructuring: the tool that measures it renders its table.
table("restructure-ab", "restructure_ab.json", restructure_ab.COMMAND)(restructure_ab.markdown)


# ---------------------------------------------------------------- rewriting the documents


def render(name: str, results: Path) -> str:
    """Table ``name`` from its JSON under ``results``, or a line saying how to produce it."""
    spec = TABLES[name]
    missing = [s for s in spec.sources if not (results / s).is_file()]
    if missing:
        return (
            f"*Not generated yet: no {', '.join(f'`docs/results/{m}`' for m in missing)}. "
            f"`{spec.command}`, then `python -m lrcn.tools.evidence.report`.*"
        )
    documents = [json.loads((results / s).read_text()) for s in spec.sources]
    return spec.render(*documents).rstrip("\n")


def rewrite(text: str, results: Path) -> tuple[str, list[str]]:
    """``text`` with every marked table regenerated, and the names of those that changed."""
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r} (known: {', '.join(sorted(TABLES))})")
        body = render(name, results) + "\n"
        if body != match["body"]:
            changed.append(name)
        return match[1] + body + match[4]

    return MARKED.sub(replace, text), changed


def documents(root: Path) -> list[Path]:
    """README.md and docs/**/*.md under ``root``."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrcn.tools.evidence.report", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each table that differs")
    parser.add_argument(
        "--root", type=Path, help="the checkout (README.md, docs/; default: the one holding the current directory)"
    )
    parser.add_argument("--list", action="store_true", help="print each table, its JSON and its command")
    args = parser.parse_args(argv)
    args.root = args.root or find_checkout()
    if args.root is None:
        parser.error("no lrcn-stream checkout at or above the current directory: run it in one, or give --root")
    results = args.root / "docs" / "results"
    if args.list:
        for spec in TABLES.values():
            state = "ok" if all((results / s).is_file() for s in spec.sources) else "JSON missing"
            print(f"{spec.name}: {', '.join(spec.sources)} ({state})\n    {spec.command}")
        return 0
    stale = []
    for path in documents(args.root):
        text = path.read_text()
        new, changed = rewrite(text, results)
        stale += [f"{path.relative_to(args.root)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    verb = "differs from its JSON" if args.check else "rewritten"
    for line in stale:
        print(f"{line} {verb}", file=sys.stderr if args.check else sys.stdout)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
