"""Figures of the evidence tools' results, drawn with matplotlib (Agg, files only): `lrcn bench`'s
latency histogram and capacity search, and `lrcn soak`'s run over time. The tools import this
module only when they plot, so matplotlib stays optional: without it they write no figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the file-only backend


def bench_latency(result: dict, path: Path) -> str | None:
    """Capture-to-publish and capture-to-subscriber latency of the one-stream run, with p50 and p99."""
    latency = result.get("latency")
    if not latency:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    data = latency["histogram_ms"]
    top = max(max(data["receive"], default=1), 1)
    bins = np.linspace(0, min(top, 40), 60)
    ax.hist(data["publish"], bins=bins, alpha=0.6, label="capture -> publish")
    ax.hist(data["receive"], bins=bins, alpha=0.6, label="capture -> subscriber")
    for q, style in (("p50", ":"), ("p99", "--")):
        ax.axvline(
            latency["capture_to_publish_ms"][q],
            color="k",
            linestyle=style,
            linewidth=1,
            label=f"publish {q} {latency['capture_to_publish_ms'][q]} ms",
        )
    ax.set_xlabel("ms")
    ax.set_ylabel("predictions")
    ax.set_title(f"Latency, one {result['frame_rate']:g} fps stream ({result['model']})", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def bench_capacity(result: dict, path: Path) -> str | None:
    """p99 latency and frames encoded per second against the number of streams, each capacity
    search (in memory, video files), beside the bare throughput measured in the same run."""
    capacities = [result[k] for k in ("capacity_memory", "capacity_file") if k in result]
    if not capacities:
        return None
    rate = result["frame_rate"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for capacity, marker in zip(capacities, "os"):
        runs = capacity["runs"]
        name = "in memory" if capacity["source"].startswith("pattern") else "video files"
        n = [r["streams"] for r in runs]
        left.plot(n, [r["p99_ms"] for r in runs], marker=marker, linestyle="", label=name)
        right.plot(n, [r["frames_per_s"] for r in runs], marker=marker, linestyle="", label=name)
    left.axhline(1000.0 / rate, color="r", linestyle="--", linewidth=1, label="one frame interval")
    left.set_yscale("log")
    left.set_xlabel(f"concurrent {rate:g} fps streams")
    left.set_ylabel("p99 capture->publish, ms")
    left.legend(fontsize=7)
    if "throughput" in result:
        right.axhline(
            result["throughput"]["encoder"]["best_frames_per_s"],
            color="k",
            linestyle=":",
            linewidth=1,
            label="bare encoder (best batch)",
        )
        mode = result.get("capacity_head", {}).get("mode", "exact")
        compute = result["throughput"]["compute" if mode == "exact" else "compute_continuous"]
        right.axhline(
            compute["best_frames_per_s"], color="g", linestyle="-.", linewidth=1, label=f"bare encoder + {mode} head"
        )
    right.set_xlabel(f"concurrent {rate:g} fps streams")
    right.set_ylabel("frames encoded / s")
    right.legend(fontsize=7)
    fig.suptitle(f"Capacity ({result['model']})", fontsize=9)
    return _save(fig, path)


def soak(result: dict, path: Path) -> str | None:
    """The serve process's RSS and threads, p50/p99 latency per interval and cumulative ring drops
    over the soak; with a scrape, the title says how often /metrics was read."""
    samples = [s for s in result["samples"] if "rss_mb" in s]
    if not samples:
        return None
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(8, 4.5), sharex=True)
    for ax, key, label in (
        (axes[0, 0], "rss_mb", "serve RSS, MiB"),
        (axes[0, 1], "threads", "serve threads"),
        (axes[1, 0], "p99_ms", "p99 capture->publish, ms (interval)"),
        (axes[1, 1], "dropped", "ring drops (cumulative)"),
    ):
        ax.plot(t, [s[key] if s[key] is not None else np.nan for s in samples], marker=".", linewidth=1)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("minutes", fontsize=8)
    axes[1, 0].plot(t, [s["p50_ms"] if s["p50_ms"] is not None else np.nan for s in samples], linewidth=1, label="p50")
    axes[1, 0].legend(fontsize=7)
    scraped = f", /metrics scraped every {result['scrape']['interval_s']:g} s" if result.get("scrape") else ""
    fig.suptitle(
        f"Soak: {result['streams']} ffmpeg-served streams, {result['duration_s'] / 60:.0f} min{scraped}", fontsize=9
    )
    return _save(fig, path)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def accuracy_against_delay(results: dict[str, dict], path: Path) -> str | None:
    """Frame accuracy against median switch delay on the joined held-out streams, one panel per data
    set (`results`: name -> `stream_results.side_by_side`), every head mode of the
    window-trained (open) and the stream-trained (filled) LSTM, one point per seed."""
    if not results:
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    modes = sorted({m for r in results.values() for s in r["seeds"] for m in s["window_trained"]["modes"]})
    colours = dict(zip(modes, plt.get_cmap("tab10").colors))
    for ax, (name, result) in zip(axes[0], results.items()):
        for head, filled in (("window_trained", False), ("stream_trained", True)):
            for mode in modes:
                rows = [s[head]["modes"][mode] for s in result["seeds"] if mode in s[head]["modes"]]
                points = [(r["delay_median_s"], r["accuracy"]) for r in rows if r["delay_median_s"] is not None]
                if points:
                    x, y = zip(*points)
                    ax.scatter(
                        x,
                        y,
                        s=40,
                        marker="o" if filled else "s",
                        color=colours[mode],
                        facecolors=colours[mode] if filled else "none",
                        label=f"{'stream' if filled else 'window'}-trained, {mode}",
                    )
        ax.set_xlabel("median switch delay (s)")
        ax.set_ylabel("frames labelled right")
        ax.set_title(f"{name}: {len(result['seeds'])} seeds, offline replay", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="lower left", ncol=1)
    return _save(fig, path)
