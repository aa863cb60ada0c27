"""What a `lrcn stream-accuracy` result is shown as: its tables, its summary kept beside the docs,
and the stream-trained against window-trained LSTMs over seeds (`side_by_side`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lrcn.stream.errors import LrcnError


def table_lines(result: dict) -> list[str]:
    lines = [
        (
            f"{result['test_videos']} test videos, {result['frames']} frames ({result['seconds']} s at "
            f"{result['fps']:g} fps), {result['changes']} action changes; accuracy from frame "
            f"{result['scored_from_frame']}"
        ),
        (
            f"{'head mode':<22} {'accuracy':>17} {'delay median':>13} {'mean':>7} {'max':>7} {'missed':>7} "
            f"{'settle (n)':>12} "
            f"{'preds':>6} {'p50 ms':>7} {'drops':>6} {'frames in':>9}"
        ),
    ]
    fmt = lambda v, unit="s": "-" if v is None else f"{v:.2f} {unit}"
    offline = next(iter(result["modes"].values())).get("offline")
    if offline:
        lines.insert(
            1,
            f"offline evaluation (report.json): {offline['offline_correct']}/{offline['videos']} of these "
            f"videos right; videos whose most shown label is the offline prediction: "
            + ", ".join(f"{n} {r['offline']['agree']}" for n, r in result["modes"].items()),
        )
    for name, row in result["modes"].items():
        delay = row["delay"]
        settle = f"{fmt(delay['settle_median_s'])} ({delay['settled']})"
        lines.append(
            f"{name:<22} {row['correct']:>5}/{row['frames']:<5} {row['accuracy'] or 0:>5.3f} "
            f"{fmt(delay['median_s']):>13} {fmt(delay['mean_s']):>7} {fmt(delay['max_s']):>7} "
            f"{delay['missed']:>3}/{delay['changes']:<3} {settle:>12} "
            f"{row['predictions']:>6} "
            f"{row.get('latency_p50_ms') if row.get('latency_p50_ms') is not None else '-':>7} "
            f"{(row.get('dropped') or 0) + (row.get('publisher_dropped') or 0) + row.get('missed_messages', 0):>6} "
            f"{row.get('frames_received') if row.get('frames_received') is not None else '-':>9}"
        )
    return lines


def event_table_lines(result: dict) -> list[str]:
    """The events of each mode (and of the static scene, if measured), below the accuracy table."""
    rules = result["event_rules"]
    fmt = lambda v, spec=".3f": "-" if v is None else format(v, spec)  # noqa: E731
    lines = [
        (
            f"events (min_score {rules['min_score']:g}, min_duration {rules['min_duration_s']:g} s, cooldown "
            f"{rules['cooldown_s']:g} s{', ignore ' + ','.join(rules['ignore']) if rules['ignore'] else ''}): "
            f"true when its label is the segment's and it covers >= {result['min_overlap']:g} of it"
        ),
        (
            f"{'head mode':<22} {'events':>6} {'true':>5} {'precision':>9} {'recall':>10} {'false/min':>9} "
            f"{'onset':>7} {'false: wrong/short/dup':>22}" + (f" {'static /min':>11}" if "static" in result else "")
        ),
    ]
    for name, row in result["modes"].items():
        ev = row["events"]
        false = ev["false"]
        static = result.get("static", {}).get("modes", {}).get(name)
        lines.append(
            f"{name:<22} {ev['events']:>6} {ev['true_positives']:>5} {fmt(ev['precision']):>9} "
            f"{ev['true_positives']:>3}/{ev['segments']:<3} {fmt(ev['recall'], '.2f'):>4} "
            f"{fmt(ev['false_per_min'], '.2f'):>9} {fmt(ev['onset_median_s'], '.2f'):>7} "
            f"{false.get('wrong_label', 0):>12}/{false.get('short', 0)}/{false.get('duplicate', 0)}"
            + (f" {fmt(static['events']['per_min'], '.2f'):>11}" if static else "")
        )
    if "static" in result:
        static = result["static"]
        first = static["modes"].get("exact-hop1") or next(iter(static["modes"].values()))
        lines.append(
            f"static scene: {len(static['segments']) - 1} still frames of test videos and a gray one, "
            f"{static['seconds']:g} s; events per still (exact-hop1 or the first mode): "
            f"{first['events']['per_segment']}"
        )
    return lines


# Per mode, what --summary leaves out: the per-prediction, per-change and per-video rows.
BULKY = ("published", "changes", "segments")


def summary(result: dict) -> dict:
    """The result without its per-prediction, per-change and per-video rows (the figures, the
    event lists and the sweeps stay), small enough to keep beside the docs.

    >>> summary({"modes": {"m": {"accuracy": 0.5, "published": [[0, 1.0, "a"]], "changes": []}}})
    {'modes': {'m': {'accuracy': 0.5}}}
    """

    def lean(modes: dict) -> dict:
        return {name: {k: v for k, v in row.items() if k not in BULKY} for name, row in modes.items()}

    out = {**result, "modes": lean(result["modes"])}
    if "compared" in result:
        out["compared"] = {name: {**row, "modes": lean(row["modes"])} for name, row in result["compared"].items()}
    if "static" in result:
        out["static"] = {**result["static"], "modes": lean(result["static"]["modes"])}
    return out


# -- stream-trained against window-trained, over seeds ------------------------------------------


def head_summary(run: dict) -> dict:
    """One bundle's figures in a run: offline test videos right, and per mode frame accuracy and delay."""
    return {
        "bundle": run["bundle"],
        "stream_trained": run.get("stream_trained", False),
        "offline_test": run.get("offline_test"),
        "modes": {
            name: {
                "correct": row["correct"],
                "frames": row["frames"],
                "accuracy": row["accuracy"],
                "delay_median_s": row["delay"]["median_s"],
                "delay_mean_s": row["delay"]["mean_s"],
                "missed": row["delay"]["missed"],
                "changes": row["delay"]["changes"],
            }
            for name, row in run["modes"].items()
        },
    }


def side_by_side(runs: Sequence[dict]) -> dict:
    """Runs of one data set, one per seed, each with the window-trained bundle first and the
    stream-trained one under `compared`: every head's figures per seed, and the issue's targets
    per seed (continuous mode of the stream-trained LSTM against the best mode of the window-trained
    one; its median delay against exact hop 1's; offline test videos right).

    >>> mode = lambda acc, delay: {"correct": 0, "frames": 1, "accuracy": acc, "missed": 0,
    ...                            "delay": {"median_s": delay, "mean_s": delay, "missed": 0, "changes": 1}}
    >>> window = {"bundle": "w", "offline_test": {"video_correct": 11}, "modes": {
    ...     "exact-hop1": mode(0.8, 0.6), "continuous": mode(0.7, 0.5)}}
    >>> stream = {"bundle": "s", "stream_trained": True, "offline_test": {"video_correct": 10}, "modes": {
    ...     "exact-hop1": mode(0.8, 0.6), "continuous": mode(0.9, 0.2)}}
    >>> side_by_side([{**window, "model_seed": 0, "compared": {"s": stream}}])["seeds"][0]["targets"]
    {'accuracy_points_over_best_window_mode': 10.0, 'best_window_mode': 'exact-hop1', 'delay_ratio_to_exact_hop1': 0.333, 'offline_videos_lost': 1}
    """
    seeds = []
    for run in runs:
        window = head_summary(run)
        (stream,) = [head_summary(row) for row in run.get("compared", {}).values() if row.get("stream_trained")]
        best = max(window["modes"], key=lambda name: window["modes"][name]["accuracy"])
        continuous = stream["modes"]["continuous"]
        hop1 = window["modes"]["exact-hop1"]["delay_median_s"]
        offline = lambda head: (head["offline_test"] or {}).get("video_correct")  # noqa: E731
        seeds.append(
            {
                "seed": run.get("model_seed"),
                "window_trained": window,
                "stream_trained": stream,
                "targets": {
                    "accuracy_points_over_best_window_mode": round(
                        100 * (continuous["accuracy"] - window["modes"][best]["accuracy"]), 1
                    ),
                    "best_window_mode": best,
                    "delay_ratio_to_exact_hop1": round(continuous["delay_median_s"] / hop1, 3) if hop1 else None,
                    "offline_videos_lost": None
                    if offline(window) is None or offline(stream) is None
                    else offline(window) - offline(stream),
                },
            }
        )
    return {
        "seeds": seeds,
        "targets": {
            "accuracy_points_over_best_window_mode": ">= 5",
            "delay_ratio_to_exact_hop1": "<= 0.5",
            "offline_videos_lost": "<= 1",
        },
    }


def write_side_by_side(out: Path, runs: Sequence[Path], plot: Path | None = None) -> dict:
    """`side_by_side` of the per-seed run JSONs (`lrcn stream-accuracy ... --also STREAM_BUNDLE
    --summary RUN.json`) written to `out`; with `plot`, the accuracy-against-delay figure of every
    stream_training_*.json beside `out`. A side-by-side written earlier may be given among the
    runs: its seeds are kept as they are, so a seed measured later joins those measured before."""
    loaded = [json.loads(Path(p).read_text()) for p in runs]
    earlier = [run for run in loaded if "seeds" in run]
    fresh = side_by_side([run for run in loaded if "seeds" not in run])
    seeds = sorted([seed for run in earlier for seed in run["seeds"]] + fresh["seeds"], key=lambda seed: seed["seed"])
    if len({seed["seed"] for seed in seeds}) < len(seeds):
        raise LrcnError(f"{out}: a seed is given twice ({', '.join(str(seed['seed']) for seed in seeds)})")
    result = {
        "runs": [name for run in earlier for name in run["runs"]]
        + [str(p) for p, run in zip(runs, loaded) if "seeds" not in run],
        "seeds": seeds,
        "targets": fresh["targets"],
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    if plot is not None:
        from lrcn.tools.evidence.plots import accuracy_against_delay

        sets = {
            p.stem.removeprefix("stream_training_"): json.loads(p.read_text())
            for p in sorted(out.parent.glob("stream_training_*.json"))
        }
        accuracy_against_delay(sets, plot)
    return result
