"""The live measurement of `lrcn stream-accuracy`: a labelled video served once per head mode by
ffmpeg on 127.0.0.1, all of them run through one `lrcn serve` process (a deployment file with one
stream per mode), every message a real Subscriber receives recorded, and each stream scored by
lrcn.tools.stream_accuracy.stream_scoring."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import IDLE, UNKNOWN, EventRules
from lrcn.tools.stream_accuracy.stream_scoring import (
    MIN_OVERLAP,
    HeadMode,
    event_fields,
    event_sweep,
    events_per_minute,
    first_full_window,
    head_labels,
    head_modes,
    replay_events,
    run_record,
    score_events,
    score_stream,
    segment_rows,
)


def events_table(rules: EventRules) -> str:
    """A [[stream]]'s `events` inline table for the rules (lists only when set).

    >>> events_table(EventRules(min_score=0.6, min_duration_s=0.5, ignore=("still",)))
    'events = { min_score = 0.6, min_duration_s = 0.5, cooldown_s = 0.0, ignore = ["still"] }'
    """
    items = [
        f"min_score = {float(rules.min_score)!r}",
        f"min_duration_s = {float(rules.min_duration_s)!r}",
        f"cooldown_s = {float(rules.cooldown_s)!r}",
    ]
    items += [
        f"{key} = {json.dumps(list(getattr(rules, key)))}" for key in ("classes", "ignore") if getattr(rules, key)
    ]
    items += [f"update_s = {float(rules.update_s)!r}"] if rules.update_s is not None else []
    return "events = { " + ", ".join(items) + " }"


def stream_id(mode_name: str) -> str:
    """A head mode's stream id: the mode's name without dots, which a stream id may not hold.

    >>> stream_id("exact-hop1-ema0.3")
    'exact-hop1-ema0_3'
    """
    return mode_name.replace(".", "_")


def deployment_toml(
    modes: Sequence[HeadMode], ports: Sequence[int], events: EventRules | None = None, idle_motion: float | None = None
) -> str:
    """Every mode a [[stream]]; `idle_motion` None: serve's default."""
    lines = []
    for mode, port in zip(modes, ports):
        lines += [
            "[[stream]]",
            f'id = "{stream_id(mode.name)}"',
            f'source = "tcp://127.0.0.1:{port}"',
            f'mode = "{mode.mode}"',
            f"hop = {mode.hop}",
        ]
        lines += [f"reset_every = {mode.reset_every}"] if mode.reset_every else []
        lines += [f'smooth = "{mode.smooth}"'] if mode.smooth else []
        lines += [f"idle_motion = {float(idle_motion)!r}"] if idle_motion is not None else []
        lines += [events_table(events)] if events is not None else []
        lines.append("")
    return "\n".join(lines)


def serve_and_record(
    bundle: Path,
    video: Path,
    modes: Sequence[HeadMode],
    seconds: float,
    work: Path,
    events: EventRules | None = None,
    idle_motion: float | None = None,
) -> dict:
    """Serve `video` once per mode with ffmpeg (TCP MPEG-TS on 127.0.0.1), run `lrcn serve` on all
    of them (each stream with the event rules, if given), and record every message a Subscriber
    receives until serve exits (bounded by the stream's length plus a margin). Returns
    {"predictions": {mode: [payload...]}, "events": {mode: [event payload...]}, "stats": serve's
    final stats, "missed": seq gaps per topic, "status": {mode: [states]}}."""
    from lrcn.tools.evidence.ffmpeg_server import ffmpeg_tcp_ts, free_port, served
    from lrcn.tools.evidence.harness.recorder import Recorder
    from lrcn.tools.evidence.harness.servers import serve_command, terminate

    work.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in modes]
    config, stats_path = work / "deployment.toml", work / "serve-stats.json"
    config.write_text(deployment_toml(modes, ports, events, idle_motion))
    stats_path.unlink(missing_ok=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    predictions: dict[str, list[dict]] = {m.name: [] for m in modes}
    states: dict[str, list[str]] = {m.name: [] for m in modes}
    event_messages: dict[str, list[dict]] = {m.name: [] for m in modes}
    limit_s = seconds + 60.0
    with contextlib.ExitStack() as stack:
        for port in ports:
            stack.enter_context(served(ffmpeg_tcp_ts(video, port, loop=False), port))
        recorder = Recorder(endpoint, ("pred/", "status/", "event/"))
        stack.callback(recorder.close)
        log = stack.enter_context(open(work / "serve.log", "w+"))
        command = serve_command(
            bundle,
            "--config",
            config,
            "--endpoint",
            endpoint,
            "--max-attempts",
            "1",
            "--duration",
            f"{limit_s:.0f}",
            "--stats-json",
            stats_path,
        )
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=limit_s + 30.0)
        except subprocess.TimeoutExpired:
            raise LrcnError(
                f"lrcn serve did not finish within {limit_s + 30:.0f} s (log: {work / 'serve.log'})"
            ) from None
        finally:
            terminate(process)
        time.sleep(0.5)  # the last messages in flight
        recorded = recorder.close()
        missed = dict(recorder.subscriber.missed)
    names = {stream_id(m.name): m.name for m in modes}
    for _, message in recorded:
        name = names.get(message.stream)
        if name is None:
            continue
        if message.kind == "pred":
            predictions[name].append(message.payload)
        elif message.kind == "event":
            event_messages[name].append(message.payload)
        elif message.payload["state"] not in states[name][-1:]:  # changes, not periodic stats
            states[name].append(message.payload["state"])
    missed = {
        f"{kind}/{names.get(stream, stream)}": count
        for topic, count in missed.items()
        for kind, _, stream in [topic.partition("/")]
    }
    # Exit status 1 is the plan: each stream gives up (--max-attempts 1) once ffmpeg has served the video.
    if process.returncode not in (0, 1) or not stats_path.is_file():
        log_tail = (work / "serve.log").read_text().strip().splitlines()[-1:] or ["?"]
        raise LrcnError(f"lrcn serve failed ({process.returncode}): {log_tail[0]}")
    stats = json.loads(stats_path.read_text())
    stats["streams"] = {names.get(stream, stream): values for stream, values in stats["streams"].items()}
    return {"predictions": predictions, "events": event_messages, "stats": stats, "missed": missed, "status": states}


def measure(
    bundle: Path,
    video: Path,
    labels_path: Path,
    modes: Sequence[HeadMode] | None,
    work: Path,
    events: EventRules | None = None,
    idle_motion: float | None = None,
) -> dict:
    """Serve the labelled `video` through `lrcn serve` in every head mode and score each stream;
    with event rules, each stream also turns its predictions into events, and they are scored
    against the video's segments (`events` per mode; `event_sweep`: other thresholds replayed
    over the same predictions).

    The accuracy is of the label the head gave, as without rules: a prediction published as
    `unknown` (below min_score) counts as its head label (`unknown` says how many were); one
    published as `idle` (the stream's idle gate) counts as wrong (`idle` says how many were)."""
    from lrcn.models.synth import read_labels
    from lrcn.stream.bundle import read_meta

    spec = read_meta(bundle).spec
    record = read_labels(labels_path)
    truth, media_fps = record["labels"], float(record["fps"])
    unknown = sorted(set(truth) - set(spec.classes))
    if unknown:
        raise LrcnError(f"labels {', '.join(unknown)} are not classes of the bundle ({', '.join(spec.classes)})")
    modes = list(modes or head_modes(spec.clip_length))
    start = first_full_window(len(truth), media_fps, spec.fps, spec.clip_length)
    seconds = len(truth) / media_fps
    run = serve_and_record(bundle, video, modes, seconds, work, events, idle_motion)
    results = {}
    for mode in modes:
        payloads = run["predictions"][mode.name]
        labels = head_labels(payloads, spec.classes, mode.smooth)
        stream_stats = run["stats"]["streams"].get(mode.name, {})
        scores = score_stream(truth, [{**p, "label": label} for p, label in zip(payloads, labels)], media_fps, start)
        shown = scores.pop("shown")
        results[mode.name] = {
            "head": asdict(mode),
            **scores,
            "segments": segment_rows(record["segments"], shown, start),
            "predictions": len(payloads),
            "first_seq": payloads[0]["seq"] if payloads else None,
            "missed_messages": run["missed"].get(f"pred/{mode.name}", 0),
            "frames_received": stream_stats.get("frames"),
            "encoded": stream_stats.get("encoded"),
            "dropped": stream_stats.get("dropped"),
            "publisher_dropped": stream_stats.get("publisher_dropped"),
            "latency_p50_ms": stream_stats.get("latency_p50_ms"),
            "latency_p99_ms": stream_stats.get("latency_p99_ms"),
            "states": run["status"][mode.name],
            "published": [
                [p["frame_index"], p["latency_ms"], label, p["score"], stream_time(p, media_fps)]
                for p, label in zip(payloads, labels)
            ],
        }
        if events is not None:
            score = lambda ends: score_events(record["segments"], ends, seconds, media_fps, events.ignore)  # noqa: E731
            results[mode.name].update(event_results(run, mode.name, payloads, labels, media_fps, events, score))
    rules = {"event_rules": asdict(events), "min_overlap": MIN_OVERLAP} if events is not None else {}
    return run_record(bundle, video, labels_path, record, spec, start, results, **rules)


def stream_time(payload: dict, media_fps: float) -> float:
    """A prediction's stream time (its last frame's time in the stream), or frame_index / fps."""
    return payload.get("stream_time", payload["frame_index"] / media_fps)


def event_results(
    run: dict, name: str, payloads: Sequence[dict], labels: Sequence[str], media_fps: float, rules: EventRules, score
) -> dict:
    """One stream's events as served (`score(end events)`), the same rules replayed over its
    received predictions (`replay_matches`: whether they give the same events), and the sweep."""
    messages = run["events"][name]
    ends = [event_fields(m) for m in messages if m["type"] == "end"]
    predictions = [
        (p["frame_index"], stream_time(p, media_fps), label, p["score"]) for p, label in zip(payloads, labels)
    ]
    replayed = [event_fields(e) for e in replay_events(rules, predictions)]
    key = lambda e: (e["label"], e["start_frame"], e["end_frame"])  # noqa: E731
    return {
        "unknown": sum(p["label"] == UNKNOWN for p in payloads),
        "idle": sum(p["label"] == IDLE for p in payloads),
        "events": {
            **score(ends),
            "starts": sum(m["type"] == "start" for m in messages),
            "missed_messages": run["missed"].get(f"event/{name}", 0),
            "replay_matches": [key(e) for e in replayed] == [key(e) for e in ends],
            "list": [[e["label"], e["start_frame"], e["end_frame"], e.get("peak_score")] for e in ends],
        },
        "event_sweep": [
            {k: v for k, v in row.items() if k not in ("matched",)} for row in event_sweep(predictions, rules, score)
        ],
    }


def measure_static(
    bundle: Path,
    video: Path,
    labels_path: Path,
    modes: Sequence[HeadMode] | None,
    work: Path,
    events: EventRules,
    idle_motion: float | None = None,
) -> dict:
    """Serve a scene where nothing happens (`video`, whose sidecar names its still segments) like
    the test stream and count the events each mode sends: every one is false. Also per mode: the
    share of predictions published as `unknown`, the head labels given, and the sweep of
    thresholds replayed over the same predictions."""
    from lrcn.models.synth import read_labels
    from lrcn.stream.bundle import read_meta

    spec = read_meta(bundle).spec
    record = read_labels(labels_path)
    media_fps, frames = float(record["fps"]), len(record["labels"])
    seconds = frames / media_fps
    modes = list(modes or head_modes(spec.clip_length))
    run = serve_and_record(bundle, video, modes, seconds, work, events, idle_motion)
    count = lambda ends: {"events": len(ends), "per_min": events_per_minute(ends, seconds)}  # noqa: E731
    results = {}
    for mode in modes:
        payloads = run["predictions"][mode.name]
        labels = head_labels(payloads, spec.classes, mode.smooth)
        stream_stats = run["stats"]["streams"].get(mode.name, {})
        row = event_results(run, mode.name, payloads, labels, media_fps, events, count)
        starts = [e[1] for e in row["events"]["list"]]
        row["events"]["per_segment"] = [
            sum(s["start_frame"] <= f < s["end_frame"] for f in starts) for s in record["segments"]
        ]
        results[mode.name] = {
            "head": asdict(mode),
            "predictions": len(payloads),
            **row,
            "head_labels": dict(Counter(labels).most_common()),
            "frames_received": stream_stats.get("frames"),
            "dropped": stream_stats.get("dropped"),
            "missed_messages": run["missed"].get(f"pred/{mode.name}", 0),
        }
    return {
        "video": str(video),
        "frames": frames,
        "fps": media_fps,
        "seconds": round(seconds, 2),
        "segments": [[s["start_frame"], s["end_frame"]] for s in record["segments"]],
        "event_rules": asdict(events),
        "modes": results,
    }
