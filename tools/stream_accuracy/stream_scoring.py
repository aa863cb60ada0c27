"""The scoring of `lrcn stream-accuracy`: pure functions over the per-frame ground truth of a
joined video (the sidecar format of models.synth.write_continuous: fps, classes, segments,
labels) and the predictions and events a stream published, and the head modes measured.

- a prediction is shown from the frame it was published at (its frame_index plus its latency
  in frames) until the next prediction replaces it;
- accuracy counts every frame from the one that completes the first T-frame window on the
  model's sampling grid to the end of the stream; a frame with no label yet counts as wrong;
- the delay of an action change at frame c to class y is the first frame f >= c whose shown
  label is y, minus c; a change whose segment ends before the label gets there is missed; the
  time to settle is from c to the frame from which the label stays y to the segment's end.

Events, each stream's `end` events against the joined videos (the sidecar's segments):
- an event is true when its label is a segment's and it covers at least half of that segment's
  frames (event frames: the frame_index of its first and last prediction, inclusive); pairs are
  matched greedily by that fraction, each segment and each event at most once;
- precision = true events / events, recall = true events / segments (not counting segments of an
  ignored class), false events per minute of the stream;
- the same rules replayed over the received predictions (stream.events, as the pipeline applies
  them) must give the same events (`replay_matches`); other min_score / min_duration_s pairs are
  replayed too (`event_sweep`), so thresholds can be compared without serving again.
Below min_score the published label is `unknown`; the accuracy is still of the head's label.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import UNKNOWN, EventRules, EventState, Observation, finish, step
from lrcn.stream.sampling import grid_indices


@dataclass(frozen=True)
class HeadMode:
    name: str  # also the stream id
    mode: str = "exact"
    hop: int = 1
    reset_every: int | None = None
    smooth: str | None = None


def run_record(
    bundle: Path, video: Path, labels_path: Path, record: dict, spec, start: int, modes: dict, **more
) -> dict:
    """What a live or replayed run of `bundle` over the labelled `video` (its labels `record`) was,
    scored from frame `start`, with each head mode's results (`modes`) and `more` fields."""
    truth, media_fps = record["labels"], float(record["fps"])
    return {
        "bundle": str(bundle),
        "video": str(video),
        "labels": str(labels_path),
        "frames": len(truth),
        "fps": media_fps,
        "seconds": round(len(truth) / media_fps, 2),
        "clip_length": spec.clip_length,
        "model_fps": spec.fps,
        "scored_from_frame": start,
        "segments": len(record["segments"]),
        "changes": sum(a != b for a, b in itertools.pairwise(truth)),
        **more,
        "modes": modes,
    }


def head_modes(clip_length: int) -> list[HeadMode]:
    """The head modes measured: exact windows (hop 1 and 4), continuous with and without a reset
    every T frames, and exact hop 1 with each kind of label smoothing."""
    return [
        HeadMode("exact-hop1"),
        HeadMode("exact-hop4", hop=4),
        HeadMode(f"continuous-reset{clip_length}", "continuous", reset_every=clip_length),
        HeadMode("continuous", "continuous"),
        HeadMode("exact-hop1-ema0.3", smooth="ema:0.3"),
        HeadMode("exact-hop1-hyst3", smooth="hysteresis:3"),
    ]


# -- scoring (pure) ----------------------------------------------------------------------------


def first_full_window(n_frames: int, media_fps: float, model_fps: float, clip_length: int) -> int:
    """The frame that completes the first T-frame window on the model's sampling grid.

    >>> first_full_window(100, 25.0, 10.0, 4)    # sampled frames 0, 3, 5, 8
    8
    """
    sampled = grid_indices((i / media_fps for i in range(n_frames)), model_fps)
    if len(sampled) < clip_length:
        raise LrcnError(
            f"the stream is too short: {n_frames} frames hold {len(sampled)} sampled frames, "
            f"the model needs {clip_length}"
        )
    return sampled[clip_length - 1]


def shown_from(frame_index: int, latency_ms: float, media_fps: float) -> int:
    """The frame during which a prediction about `frame_index` became visible to a subscriber."""
    return frame_index + int(max(0.0, latency_ms) / 1000.0 * media_fps)


def shown_labels(predictions: Iterable[tuple[int, str]], n_frames: int) -> list[str | None]:
    """The label a subscriber shows at each frame: each (shown-from frame, label) holds until the
    next one; None before the first.

    >>> shown_labels([(2, "a"), (4, "b")], 6)
    [None, None, 'a', 'a', 'b', 'b']
    """
    ordered = sorted(predictions, key=lambda p: p[0])  # stable: publish order within a frame
    shown: list[str | None] = []
    current, j = None, 0
    for frame in range(n_frames):
        while j < len(ordered) and ordered[j][0] <= frame:
            current, j = ordered[j][1], j + 1
        shown.append(current)
    return shown


def frame_accuracy(truth: Sequence[str], shown: Sequence[str | None], start: int) -> dict:
    """Accuracy over frames start..end; a frame with no label counts as wrong.

    >>> frame_accuracy(["a", "a", "b", "b"], [None, "a", "a", "b"], start=1)
    {'frames': 3, 'correct': 2, 'accuracy': 0.6667}
    """
    if len(truth) != len(shown):
        raise ValueError(f"{len(truth)} true labels but {len(shown)} shown")
    frames = max(0, len(truth) - start)
    correct = sum(t == s for t, s in zip(truth[start:], shown[start:]))
    return {"frames": frames, "correct": correct, "accuracy": round(correct / frames, 4) if frames else None}


def change_delays(truth: Sequence[str], shown: Sequence[str | None], media_fps: float, start: int = 0) -> list[dict]:
    """For each change of the true label at a frame >= start: how many frames until the shown label
    is the new class (`delay`), and until it is the new class for good, to the segment's end
    (`settle`); None: not before the next change or the end.

    >>> change_delays(["a", "a", "b", "b", "b", "b", "c"], ["a", "a", "a", "b", "a", "b", "b"], 25.0)
    [{'frame': 2, 'from': 'a', 'to': 'b', 'delay_frames': 1, 'delay_s': 0.04, 'settle_frames': 3, 'settle_s': 0.12}, \
{'frame': 6, 'from': 'b', 'to': 'c', 'delay_frames': None, 'delay_s': None, 'settle_frames': None, 'settle_s': None}]
    """
    changes = [c for c in range(max(1, start), len(truth)) if truth[c] != truth[c - 1]]
    seconds = lambda frames: None if frames is None else round(frames / media_fps, 3)
    rows = []
    for k, change in enumerate(changes):
        end = changes[k + 1] if k + 1 < len(changes) else len(truth)
        target = truth[change]
        hit = next((f for f in range(change, end) if shown[f] == target), None)
        delay = None if hit is None else hit - change
        settled = end
        while settled > change and shown[settled - 1] == target:
            settled -= 1
        settle = None if settled == end else settled - change
        rows.append(
            {
                "frame": change,
                "from": truth[change - 1],
                "to": target,
                "delay_frames": delay,
                "delay_s": seconds(delay),
                "settle_frames": settle,
                "settle_s": seconds(settle),
            }
        )
    return rows


def summarise_delays(rows: Sequence[dict]) -> dict:
    """Median, mean and max delay (s and frames) over the changes the label reached, how many it
    missed, and the median time to settle over the changes where it settled.

    >>> summarise_delays([{"delay_frames": 10, "delay_s": 0.4, "settle_frames": 20, "settle_s": 0.8},
    ...                   {"delay_frames": None, "delay_s": None, "settle_frames": None, "settle_s": None}])
    {'changes': 2, 'reached': 1, 'missed': 1, 'median_s': 0.4, 'mean_s': 0.4, 'max_s': 0.4, 'median_frames': 10, \
'settled': 1, 'settle_median_s': 0.8}
    """
    reached = [r for r in rows if r["delay_frames"] is not None]
    seconds = [r["delay_s"] for r in reached]
    settle = [r["settle_s"] for r in rows if r["settle_s"] is not None]
    return {
        "changes": len(rows),
        "reached": len(reached),
        "missed": len(rows) - len(reached),
        "median_s": round(statistics.median(seconds), 3) if seconds else None,
        "mean_s": round(statistics.fmean(seconds), 3) if seconds else None,
        "max_s": max(seconds) if seconds else None,
        "median_frames": statistics.median([r["delay_frames"] for r in reached]) if reached else None,
        "settled": len(settle),
        "settle_median_s": round(statistics.median(settle), 3) if settle else None,
    }


def score_stream(truth: Sequence[str], predictions: Sequence[dict], media_fps: float, start: int) -> dict:
    """Accuracy and change delays of one stream's received `pred` payloads against the truth."""
    shown = shown_labels(
        [(shown_from(p["frame_index"], p["latency_ms"], media_fps), p["label"]) for p in predictions], len(truth)
    )
    delays = change_delays(truth, shown, media_fps, start)
    return {**frame_accuracy(truth, shown, start), "delay": summarise_delays(delays), "changes": delays, "shown": shown}


def segment_rows(segments: Sequence[dict], shown: Sequence[str | None], start: int) -> list[dict]:
    """Per joined video: frames scored, how many showed its label, and the label shown most.

    >>> segment_rows([{"label": "a", "start_frame": 0, "end_frame": 4, "video": "x.avi"}], ["b", "a", "a", "b"], 1)
    [{'video': 'x.avi', 'label': 'a', 'frames': 3, 'correct': 2, 'most_shown': 'a'}]
    """
    rows = []
    for segment in segments:
        labels = list(shown[max(start, segment["start_frame"]) : segment["end_frame"]])
        counts = Counter(label for label in labels if label is not None)
        rows.append(
            {
                "video": segment.get("video"),
                "label": segment["label"],
                "frames": len(labels),
                "correct": labels.count(segment["label"]),
                "most_shown": counts.most_common(1)[0][0] if counts else None,
            }
        )
    return rows


# -- events (pure) ------------------------------------------------------------------------------
#
# A true segment is a sidecar segment: label, start_frame, end_frame (exclusive), in frames of the
# served video. An event is an `end` message of event/<stream>: label, start_frame and end_frame
# (inclusive), the frame_index of its first and last prediction, which are frames of the same
# video (every frame of the served file arrives, numbered from 0: `frames_received`). The
# publication latency is not added (its median is a few ms, under one 40 ms frame).

MIN_OVERLAP = 0.5
# The rules replayed over the recorded predictions, besides the ones served: every pair of these.
SWEEP_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
SWEEP_DURATIONS = (0.0, 0.5, 1.0)


def overlap_frames(segment: dict, event: dict) -> int:
    """Frames shared by a segment [start_frame, end_frame) and an event [start_frame, end_frame].

    >>> overlap_frames({"start_frame": 10, "end_frame": 20}, {"start_frame": 15, "end_frame": 24})
    5
    >>> overlap_frames({"start_frame": 10, "end_frame": 20}, {"start_frame": 20, "end_frame": 30})
    0
    """
    return max(0, min(segment["end_frame"], event["end_frame"] + 1) - max(segment["start_frame"], event["start_frame"]))


def match_events(
    segments: Sequence[dict], events: Sequence[dict], ignore: Iterable[str] = (), min_overlap: float = MIN_OVERLAP
) -> list[tuple[int, int, float]]:
    """Events matched to true segments: (segment index, event index, overlap / segment length).

    A pair can match when the labels are equal and the event covers at least `min_overlap` of
    the segment's frames; pairs are taken greedily, largest fraction first (ties: earlier
    segment, then earlier event), each segment and each event at most once. Segments of an
    `ignore`d class are never matched.

    >>> span = lambda label, start, end: {"label": label, "start_frame": start, "end_frame": end}
    >>> segments = [span("a", 0, 10), span("b", 10, 20)]
    >>> events = [span("a", 3, 12), span("a", 14, 19), span("b", 12, 15), span("b", 16, 25)]
    >>> match_events(segments, events)     # event 1: wrong label; events 2 and 3: 4 of b's 10 frames each
    [(0, 0, 0.7)]
    """
    ignored = set(ignore)
    pairs = []
    for i, segment in enumerate(segments):
        length = segment["end_frame"] - segment["start_frame"]
        if segment["label"] in ignored or length <= 0:
            continue
        for j, event in enumerate(events):
            if event["label"] == segment["label"]:
                fraction = overlap_frames(segment, event) / length
                if fraction > 0 and fraction >= min_overlap:
                    pairs.append((i, j, round(fraction, 4)))
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    matched, used_segments, used_events = [], set(), set()
    for i, j, fraction in pairs:
        if i not in used_segments and j not in used_events:
            matched.append((i, j, fraction))
            used_segments.add(i)
            used_events.add(j)
    return sorted(matched)


def false_event_kind(segments: Sequence[dict], event: dict, min_overlap: float = MIN_OVERLAP) -> str:
    """Why an unmatched event is false: `duplicate` (it covers enough of a segment of its label
    that another event matched), `short` (it overlaps a segment of its label, but too little) or
    `wrong_label` (no segment of its label under it).

    >>> segments = [{"label": "a", "start_frame": 0, "end_frame": 10}]
    >>> [false_event_kind(segments, {"label": l, "start_frame": s, "end_frame": e})
    ...  for l, s, e in [("a", 0, 9), ("a", 8, 12), ("b", 0, 9)]]
    ['duplicate', 'short', 'wrong_label']
    """
    same = [
        overlap_frames(s, event) / max(1, s["end_frame"] - s["start_frame"])
        for s in segments
        if s["label"] == event["label"]
    ]
    if any(f > 0 and f >= min_overlap for f in same):
        return "duplicate"
    return "short" if any(f > 0 for f in same) else "wrong_label"


def score_events(
    segments: Sequence[dict],
    events: Sequence[dict],
    seconds: float,
    media_fps: float,
    ignore: Iterable[str] = (),
    min_overlap: float = MIN_OVERLAP,
) -> dict:
    """Precision (true events / events), recall (true events / segments not of an ignored class)
    and false events per minute of stream, of the `end` events of one stream.

    `onset_median_s`: over the true events, the median time from the segment's first frame to the
    event's first prediction (its start message follows min_duration_s later).

    >>> span = lambda label, start, end: {"label": label, "start_frame": start, "end_frame": end}
    >>> segments = [span("a", 0, 50), span("b", 50, 100)]
    >>> score = score_events(segments, [span("a", 10, 55), span("a", 70, 80)], seconds=60.0, media_fps=25.0)
    >>> {k: score[k] for k in ("events", "true_positives", "precision", "recall", "false_per_min")}
    {'events': 2, 'true_positives': 1, 'precision': 0.5, 'recall': 0.5, 'false_per_min': 1.0}
    >>> score["false"]
    {'wrong_label': 1}
    """
    ignored = set(ignore)
    matched = match_events(segments, events, ignored, min_overlap)
    scored = sum(1 for s in segments if s["label"] not in ignored and s["end_frame"] > s["start_frame"])
    tp = len(matched)
    by_event = {j: i for i, j, _ in matched}
    false = Counter(false_event_kind(segments, e, min_overlap) for j, e in enumerate(events) if j not in by_event)
    onsets = [(events[j]["start_frame"] - segments[i]["start_frame"]) / media_fps for i, j, _ in matched]
    minutes = seconds / 60.0
    return {
        "events": len(events),
        "segments": scored,
        "true_positives": tp,
        "precision": round(tp / len(events), 4) if events else None,
        "recall": round(tp / scored, 4) if scored else None,
        "false_events": len(events) - tp,
        "false_per_min": round((len(events) - tp) / minutes, 3) if minutes > 0 else None,
        "false": dict(sorted(false.items())),
        "onset_median_s": round(statistics.median(onsets), 3) if onsets else None,
        "matched": [[i, j, fraction] for i, j, fraction in matched],
    }


def events_per_minute(events: Sequence[dict], seconds: float) -> float | None:
    """Events per minute of stream: on a scene where nothing happens, every event is false.

    >>> events_per_minute([{}, {}, {}], 90.0)
    2.0
    """
    return round(len(events) / (seconds / 60.0), 3) if seconds > 0 else None


def head_labels(payloads: Sequence[dict], classes: Sequence[str], smoothing: str | None = None) -> list[str]:
    """The label the head gave each prediction, where event rules published `unknown` instead
    (score below min_score): the top class for a head that does not smooth; for a smoothing head,
    the smoothing replayed over the published probabilities (in publication order).

    >>> head_labels([{"label": "unknown", "top_k": [["b", 0.5], ["a", 0.4]]}, {"label": "a"}], ["a", "b"])
    ['b', 'a']
    """
    if UNKNOWN in classes or not any(p["label"] == UNKNOWN for p in payloads):
        return [p["label"] for p in payloads]
    if smoothing is None:
        return [p["top_k"][0][0] if p["label"] == UNKNOWN else p["label"] for p in payloads]
    import numpy as np

    from lrcn.stream.smoothing import SmootherState, parse_smoothing, smooth

    config, state, labels = parse_smoothing(smoothing), SmootherState(), []
    for p in payloads:
        state, index, _ = smooth(config, state, np.array([p["probabilities"][c] for c in classes]))
        labels.append(p["label"] if p["label"] != UNKNOWN else classes[index])
    return labels


def replay_events(rules: EventRules, predictions: Iterable[tuple[int, float, str, float]]) -> list[dict]:
    """The `end` events (as their messages' fields) the rules give over (frame_index, stream_time, head label, score) in
    order, the stream ending after the last: what the pipeline does with the same predictions.

    >>> rules = EventRules(min_score=0.6, min_duration_s=0.2)
    >>> preds = [(i, i / 10, "a", 0.9) for i in range(5)] + [(5, 0.5, "b", 0.3)]
    >>> [(e["label"], e["start_frame"], e["end_frame"]) for e in replay_events(rules, preds)]
    [('a', 0, 4)]
    """
    state, ends = EventState(), []
    for frame, time_s, label, score in predictions:
        state, sent = step(rules, state, Observation(label, score, time_s, frame))
        ends += [msgspec.to_builtins(e) for e in sent if e.type == "end"]
    state, sent = finish(state)
    return ends + [msgspec.to_builtins(e) for e in sent if e.type == "end"]


def event_sweep(predictions: Sequence[tuple[int, float, str, float]], rules: EventRules, score) -> list[dict]:
    """`score(end events)` for the rules replayed at every min_score of SWEEP_SCORES and
    min_duration_s of SWEEP_DURATIONS (the other rules as given): several thresholds side by
    side, none chosen on the stream scored."""
    from dataclasses import replace

    rows = []
    for min_score, min_duration in itertools.product(SWEEP_SCORES, SWEEP_DURATIONS):
        ends = replay_events(replace(rules, min_score=min_score, min_duration_s=min_duration), predictions)
        rows.append({"min_score": min_score, "min_duration_s": min_duration, **score(ends)})
    return rows


def event_fields(event: dict) -> dict:
    """What the scoring and the JSON keep of an `end` message."""
    return {
        k: event[k]
        for k in (
            "label",
            "start_frame",
            "end_frame",
            "start_time",
            "end_time",
            "duration_s",
            "peak_score",
            "mean_score",
        )
        if k in event
    }
