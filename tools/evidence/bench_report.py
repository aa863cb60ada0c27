"""The text of `lrcn bench`'s result: the targets it is judged against (`check_targets`) and the
table it prints (`table`), both from the result dict alone, so a saved bench.json can be read
again without measuring.
"""

from __future__ import annotations

TARGETS = {
    "exact encode-once at least 14x cheaper per frame than naive": ("cost", "naive_over_exact", ">=", 14.0),
    "pipeline CPU per frame at most 1.2x bare encoder + head": ("pipeline", "cpu_over_bare", "<=", 1.2),
    "capture-to-publish p99 under 10 ms, one stream": ("latency", "p99", "<", 10.0),
    "aggregate capacity at least 90% of bare batched encoder": ("aggregate", "fraction", ">=", 0.9),
    "INT8 encoder at least 2x fp32 (batch 1)": ("cost", "int8_speedup_b1", ">=", 2.0),
}


def check_targets(result: dict) -> dict:
    """Each target with the value measured and whether it is met (None where not measured)."""
    values = {
        "cost": result.get("cost", {}),
        "pipeline": result.get("pipeline", {}),
        "latency": {"p99": result.get("latency", {}).get("capture_to_publish_ms", {}).get("p99")},
        "aggregate": result.get("aggregate", {}),
    }
    checked = {}
    for name, (section, key, op, target) in TARGETS.items():
        value = values[section].get(key)
        met = None if value is None else {">=": value >= target, "<=": value <= target, "<": value < target}[op]
        checked[name] = {"value": value, "target": f"{op} {target}", "met": met}
    return checked


def table(result: dict) -> str:
    """The result as the tables and lines `lrcn bench` prints."""
    rate = result["frame_rate"]
    lines = [
        (
            f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, load {result['load_before']} "
            f"-> {result['load_after']}"
        ),
        f"bundle: {result['bundle']} ({result['model']})",
        "",
    ]
    lines += _cost_lines(result)
    latency = result.get("latency")
    if latency:
        p, r = latency["capture_to_publish_ms"], latency["capture_to_receive_ms"]
        lines += [
            (
                f"latency, one {rate:g} fps stream, {latency['seconds']:.0f} s, {p['count']} predictions: "
                f"capture->publish p50/p95/p99 {p['p50']}/{p['p95']}/{p['p99']} ms; capture->subscriber "
                f"{r['p50']}/{r['p95']}/{r['p99']} ms; dropped {latency['dropped']}"
            ),
            "",
        ]
    for key in ("capacity_memory", "capacity_file"):
        capacity = result.get(key)
        if capacity:
            head = result.get("capacity_head", {})
            lines.append(
                f"capacity ({capacity['source']}, {head.get('mode')} hop {head.get('hop')}): "
                f"{capacity['max_streams']} streams at {rate:g} fps "
                f"(first failing: {capacity['first_failing']}), {capacity['frames_per_s']} frames/s"
            )
    if "throughput" in result:
        for kind, label in (
            ("encoder", "bare encoder"),
            ("compute", "bare encoder + exact head (Scheduler)"),
            ("compute_continuous", "bare encoder + continuous head (Scheduler)"),
        ):
            if kind not in result["throughput"]:
                continue
            t = result["throughput"][kind]
            lines.append(
                f"{label}, frames/s by batch: {t['frames_per_s']} (best {t['best_frames_per_s']} at "
                f"batch {t['best_batch']})"
            )
    if "aggregate" in result:
        a = result["aggregate"]
        lines.append(
            f"aggregate at capacity {a['frames_per_s']} frames/s = {a['fraction']:.0%} of the bare encoder, "
            f"{a['fraction_of_bare_compute']:.0%} of bare encoder + head; sustained without drops (latency "
            f"aside) {a['sustained_without_drops_frames_per_s']} frames/s = {a['sustained_fraction']:.0%}"
        )
    if "pipeline" in result:
        p = result["pipeline"]
        lines.append(
            f"pipeline CPU per frame, one stream: {p['cpu_ms_per_frame']} ms; bare encoder + head in a hot "
            f"loop {p['bare_cpu_ms_per_frame']:.3f} ms ({p['cpu_over_bare']}x); the same compute paced at "
            f"{rate:g} fps {p['paced_compute_cpu_ms_per_frame']} ms ({p['cpu_over_paced_compute']}x); "
            f"over the whole run, start-up and shut-down included, {p['cpu_ms_per_frame_whole_run']} ms "
            f"({p['whole_run_over_bare']}x)"
        )
    lines += _startup_lines(result.get("startup"))
    lines += ["", "| target | value | met |", "| --- | --- | --- |"]
    for name, check in result["targets"].items():
        met = "n/a" if check["met"] is None else ("yes" if check["met"] else "NO")
        lines.append(f"| {name} ({check['target']}) | {check['value']} | {met} |")
    return "\n".join(lines)


def _cost_lines(result: dict) -> list[str]:
    lines: list[str] = []
    cost = result.get("cost")
    if cost:
        lines += ["| per new frame | ms (median) | CPU ms | naive / this |", "| --- | --- | --- | --- |"]
        for key, label in (
            ("naive", f"naive: full {result['clip_length']}-frame model.onnx"),
            ("exact", "exact window, encode once (hop 1)"),
            ("continuous", "continuous"),
            ("encoder_b1", "  encoder alone, batch 1"),
            ("flow", "    optical flow of the frame (capture thread)"),
            ("encoder_rgb_b1", "    RGB encoder, batch 1"),
            ("encoder_flow_b1", "    flow encoder, batch 1"),
            ("head_exact", "  exact head alone (16 states)"),
            ("head_continuous", "  continuous head alone"),
            ("encoder_b16", "  encoder, batch 16, per call"),
            ("int8_b1", "  INT8 encoder, batch 1"),
            ("int8_b16", "  INT8 encoder, batch 16, per call"),
        ):
            if key in cost:
                ratio = f"{cost['naive']['ms'] / cost[key]['ms']:.1f}x" if key in ("exact", "continuous") else ""
                lines.append(f"| {label} | {cost[key]['ms']:.3f} | {cost[key]['cpu_ms']:.3f} | {ratio} |")
        lines.append("")
    return lines


def _startup_lines(startup: dict | None) -> list[str]:
    lines: list[str] = []
    if startup:
        lines.append("")
        for kind, s in startup.items():
            if not isinstance(s, dict):  # the ratios after the runs
                continue
            figures = (
                s["error"]
                if "error" in s
                else f"loaded {s['loaded_s']} s, first prediction {s['first_prediction_s']} s, RSS {s['rss_mb']} MiB"
            )
            lines.append(f"startup {kind}: {figures}")
    return lines
