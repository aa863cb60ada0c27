"""Streaming accuracy: held-out test videos of different classes joined into one long video,
served live by ffmpeg on 127.0.0.1, run through `lrcn serve` and scored frame by frame.

    lrcn stream-accuracy runs/sa/weizmann4 ../shared/data/weizmann4 --test-groups 6,7,8 --out weizmann4.json

Every head mode runs at once in one `lrcn serve` process (a deployment file with one stream per
mode, each stream its own ffmpeg server of the same video), and a real Subscriber records the
predictions. A bundle that does not exist yet is first trained on the training groups only
(`lrcn train`, frozen MobileNetV2 at 112x112, cached features) and exported; a bundle that
trained or validated on any group of the test videos is refused.

Scoring, as pure functions over the per-frame ground truth (the sidecar format of
models.synth.write_continuous: fps, classes, segments, labels):
- a prediction is shown from the frame it was published at (its frame_index plus its latency
  in frames) until the next prediction replaces it;
- accuracy counts every frame from the one that completes the first T-frame window on the
  model's sampling grid to the end of the stream; a frame with no label yet counts as wrong;
- the delay of an action change at frame c to class y is the first frame f >= c whose shown
  label is y, minus c; a change whose segment ends before the label gets there is missed; the
  time to settle is from c to the frame from which the label stays y to the segment's end.

Events: every stream also has event rules (`--min-score`, `--min-duration`, `--cooldown`,
`--ignore-classes`; `--no-events` for none), the Subscriber records `event/<stream>` too, and
each stream's `end` events are scored against the joined videos (the sidecar's segments):
- an event is true when its label is a segment's and it covers at least half of that segment's
  frames (event frames: the frame_index of its first and last prediction, inclusive); pairs are
  matched greedily by that fraction, each segment and each event at most once;
- precision = true events / events, recall = true events / segments (not counting segments of an
  ignored class), false events per minute of the stream;
- the same rules replayed over the received predictions (stream.events, as the pipeline applies
  them) must give the same events (`replay_matches`); other min_score / min_duration_s pairs are
  replayed too (`event_sweep`), so thresholds can be compared without serving again.
Below min_score the published label is `unknown`; the accuracy is still of the head's label.

`--static SECONDS` also serves a scene where nothing happens (the middle frame of one joined test
video per class, each held still, then a uniform gray frame) the same way and counts its events
per minute: all are false.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import UNKNOWN, EventRules, EventState, Observation, finish, step
from lrcn.stream.sampling import grid_indices
from lrcn.tools.commands import command

# The cheap training recipe (README, Results): frozen ImageNet MobileNetV2, features cached.
TRAIN_RECIPE = ("--backbone", "mobilenet_v2", "--size", "112", "--lr", "1e-3", "--epochs", "40", "--patience", "10",
                "--no-refit", "--quiet")


@dataclass(frozen=True)
class HeadMode:
    name: str                      # also the stream id
    mode: str = "exact"
    hop: int = 1
    reset_every: int | None = None
    smooth: str | None = None


def head_modes(clip_length: int) -> list[HeadMode]:
    """The head modes measured: exact windows (hop 1 and 4), continuous with and without a reset
    every T frames, and exact hop 1 with each kind of label smoothing."""
    return [HeadMode("exact-hop1"), HeadMode("exact-hop4", hop=4),
            HeadMode(f"continuous-reset{clip_length}", "continuous", reset_every=clip_length),
            HeadMode("continuous", "continuous"),
            HeadMode("exact-hop1-ema0.3", smooth="ema:0.3"), HeadMode("exact-hop1-hyst3", smooth="hysteresis:3")]


# -- scoring (pure) ----------------------------------------------------------------------------

def first_full_window(n_frames: int, media_fps: float, model_fps: float, clip_length: int) -> int:
    """The frame that completes the first T-frame window on the model's sampling grid.

    >>> first_full_window(100, 25.0, 10.0, 4)    # sampled frames 0, 3, 5, 8
    8
    """
    sampled = grid_indices((i / media_fps for i in range(n_frames)), model_fps)
    if len(sampled) < clip_length:
        raise LrcnError(f"the stream is too short: {n_frames} frames hold {len(sampled)} sampled frames, "
                        f"the model needs {clip_length}")
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
    ordered = sorted(predictions, key=lambda p: p[0])   # stable: publish order within a frame
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
        rows.append({"frame": change, "from": truth[change - 1], "to": target, "delay_frames": delay,
                     "delay_s": seconds(delay), "settle_frames": settle, "settle_s": seconds(settle)})
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
    return {"changes": len(rows), "reached": len(reached), "missed": len(rows) - len(reached),
            "median_s": round(statistics.median(seconds), 3) if seconds else None,
            "mean_s": round(statistics.fmean(seconds), 3) if seconds else None,
            "max_s": max(seconds) if seconds else None,
            "median_frames": statistics.median([r["delay_frames"] for r in reached]) if reached else None,
            "settled": len(settle), "settle_median_s": round(statistics.median(settle), 3) if settle else None}


def score_stream(truth: Sequence[str], predictions: Sequence[dict], media_fps: float, start: int) -> dict:
    """Accuracy and change delays of one stream's received `pred` payloads against the truth."""
    shown = shown_labels([(shown_from(p["frame_index"], p["latency_ms"], media_fps), p["label"])
                          for p in predictions], len(truth))
    delays = change_delays(truth, shown, media_fps, start)
    return {**frame_accuracy(truth, shown, start), "delay": summarise_delays(delays), "changes": delays,
            "shown": shown}


def segment_rows(segments: Sequence[dict], shown: Sequence[str | None], start: int) -> list[dict]:
    """Per joined video: frames scored, how many showed its label, and the label shown most.

    >>> segment_rows([{"label": "a", "start_frame": 0, "end_frame": 4, "video": "x.avi"}], ["b", "a", "a", "b"], 1)
    [{'video': 'x.avi', 'label': 'a', 'frames': 3, 'correct': 2, 'most_shown': 'a'}]
    """
    rows = []
    for segment in segments:
        labels = list(shown[max(start, segment["start_frame"]):segment["end_frame"]])
        counts = Counter(label for label in labels if label is not None)
        rows.append({"video": segment.get("video"), "label": segment["label"], "frames": len(labels),
                     "correct": labels.count(segment["label"]),
                     "most_shown": counts.most_common(1)[0][0] if counts else None})
    return rows


# -- events (pure) ------------------------------------------------------------------------------
#
# A true segment is a sidecar segment: label, start_frame, end_frame (exclusive), in frames of the
# served video. An event is an `end` message of event/<stream>: label, start_frame and end_frame
# (inclusive), the frame_index of its first and last prediction, which are frames of the same
# video (every frame of the served file arrives, numbered from 0: `frames_received`). The
# publication latency is not added (its median is a few ms, under one 40 ms frame).

MIN_OVERLAP = 0.5
DEFAULT_EVENTS = EventRules(min_score=0.6, min_duration_s=0.5, cooldown_s=0.0)
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


def match_events(segments: Sequence[dict], events: Sequence[dict], ignore: Iterable[str] = (),
                 min_overlap: float = MIN_OVERLAP) -> list[tuple[int, int, float]]:
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
    same = [overlap_frames(s, event) / max(1, s["end_frame"] - s["start_frame"])
            for s in segments if s["label"] == event["label"]]
    if any(f > 0 and f >= min_overlap for f in same):
        return "duplicate"
    return "short" if any(f > 0 for f in same) else "wrong_label"


def score_events(segments: Sequence[dict], events: Sequence[dict], seconds: float, media_fps: float,
                 ignore: Iterable[str] = (), min_overlap: float = MIN_OVERLAP) -> dict:
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
    return {"events": len(events), "segments": scored, "true_positives": tp,
            "precision": round(tp / len(events), 4) if events else None,
            "recall": round(tp / scored, 4) if scored else None,
            "false_events": len(events) - tp,
            "false_per_min": round((len(events) - tp) / minutes, 3) if minutes > 0 else None,
            "false": dict(sorted(false.items())),
            "onset_median_s": round(statistics.median(onsets), 3) if onsets else None,
            "matched": [[i, j, fraction] for i, j, fraction in matched]}


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
    """The `end` events the rules give over (frame_index, stream_time, head label, score) in
    order, the stream ending after the last: what the pipeline does with the same predictions.

    >>> rules = EventRules(min_score=0.6, min_duration_s=0.2)
    >>> preds = [(i, i / 10, "a", 0.9) for i in range(5)] + [(5, 0.5, "b", 0.3)]
    >>> [(e["label"], e["start_frame"], e["end_frame"]) for e in replay_events(rules, preds)]
    [('a', 0, 4)]
    """
    state, ends = EventState(), []
    for frame, time_s, label, score in predictions:
        state, sent = step(rules, state, Observation(label, score, time_s, frame))
        ends += [e for e in sent if e["type"] == "end"]
    state, sent = finish(state)
    return ends + [e for e in sent if e["type"] == "end"]


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
    return {k: event[k] for k in ("label", "start_frame", "end_frame", "start_time", "end_time", "duration_s",
                                  "peak_score", "mean_score") if k in event}


# -- the joined stream -------------------------------------------------------------------------

def order_videos(videos: Sequence, class_names: Sequence[str], count: int | None, seed: int = 0) -> list:
    """Up to `count` videos in rounds of one per class (classes shuffled each round), never two of a
    class in a row; within a class, groups are taken in turn so a round spreads over groups."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for video in sorted(videos, key=lambda v: (v.label, v.group, str(v.path))):
        by_class.setdefault(video.label, []).append(video)
    for label, queue in by_class.items():   # round robin over groups: g01 c01, g02 c01, ..., g01 c02, ...
        per_group: dict[str, list] = {}
        for video in queue:
            per_group.setdefault(video.group, []).append(video)
        lanes = list(per_group.values())
        by_class[label] = [lane[i] for i in range(max(map(len, lanes))) for lane in lanes if i < len(lane)]
    if len(by_class) < 2:
        raise LrcnError(f"the test videos hold {len(by_class)} class(es); a stream whose action changes needs two")
    chosen: list = []
    limit = count if count is not None else len(videos)
    while len(chosen) < limit and any(by_class.values()):
        labels = [label for label, queue in by_class.items() if queue]
        rng.shuffle(labels)
        if chosen and labels[0] == chosen[-1].label:
            labels.append(labels.pop(0))
        for label in labels:
            if len(chosen) < limit and not (chosen and chosen[-1].label == label):
                chosen.append(by_class[label].pop(0))
    return chosen


def ffmpeg(*args: str, timeout_s: float = 300) -> str:
    from lrcn.tools.ffmpeg_server import FFMPEG

    if FFMPEG is None:
        raise LrcnError("ffmpeg not found (apt-get install ffmpeg)")
    done = subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise LrcnError(f"ffmpeg failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


def count_frames(video: Path) -> int:
    """Frames in a video by counting its packets (every MJPEG packet is a frame), without decoding."""
    done = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
                           "stream=nb_read_packets", "-of", "csv=p=0", str(video)], capture_output=True, text=True,
                          timeout=120, check=False)
    try:
        return int(done.stdout.strip().split(",")[0])
    except ValueError:
        raise LrcnError(f"ffprobe cannot count the frames of {video}: {done.stderr.strip()[-200:]}") from None


def frame_size(video: Path) -> tuple[int, int]:
    """(width, height) of a video's frames."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if min(size) <= 0:
        raise LrcnError(f"cannot read the frame size of {video}")
    return size


def join_videos(items: Sequence[tuple[Path, str]], out: Path, size: tuple[int, int], fps: float) -> tuple[Path, Path]:
    """Re-encode each (video, label) to one size and rate, join them into `out` (.avi, MJPEG), and
    write the per-frame labels beside it (models.synth's sidecar: fps, classes, segments, labels).
    Returns (video, sidecar)."""
    from lrcn.models.synth import sidecar_path

    out.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = out.parent / f"{out.stem}.parts"
    parts_dir.mkdir(exist_ok=True)
    segments, start, listing = [], 0, []
    for number, (video, label) in enumerate(items):
        part = parts_dir / f"{number:03d}.avi"
        ffmpeg("-i", str(video), "-an", "-vf", f"fps={fps},scale={size[0]}:{size[1]}:flags=area", "-c:v", "mjpeg",
               "-q:v", "2", "-pix_fmt", "yuvj420p", str(part))
        frames = count_frames(part)
        segments.append({"label": label, "start_frame": start, "end_frame": start + frames, "video": video.name})
        listing.append(f"file '{part.resolve()}'")
        start += frames
    (parts_dir / "list.txt").write_text("\n".join(listing) + "\n")
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(parts_dir / "list.txt"), "-c", "copy", str(out))
    if count_frames(out) != start:
        raise LrcnError(f"joined {out} has {count_frames(out)} frames, its parts {start}")
    sidecar = sidecar_path(out)
    classes = sorted({s["label"] for s in segments})
    sidecar.write_text(json.dumps({"fps": float(fps), "classes": classes, "segments": segments,
                                   "labels": [s["label"] for s in segments
                                              for _ in range(s["end_frame"] - s["start_frame"])]}))
    return out, sidecar


# -- serving and recording ---------------------------------------------------------------------

def events_table(rules: EventRules) -> str:
    """A [[stream]]'s `events` inline table for the rules (lists only when set).

    >>> events_table(EventRules(min_score=0.6, min_duration_s=0.5, ignore=("still",)))
    'events = { min_score = 0.6, min_duration_s = 0.5, cooldown_s = 0.0, ignore = ["still"] }'
    """
    items = [f"min_score = {float(rules.min_score)!r}", f"min_duration_s = {float(rules.min_duration_s)!r}",
             f"cooldown_s = {float(rules.cooldown_s)!r}"]
    items += [f"{key} = {json.dumps(list(getattr(rules, key)))}"
              for key in ("classes", "ignore") if getattr(rules, key)]
    items += [f"update_s = {float(rules.update_s)!r}"] if rules.update_s is not None else []
    return "events = { " + ", ".join(items) + " }"


def deployment_toml(modes: Sequence[HeadMode], ports: Sequence[int], events: EventRules | None = None) -> str:
    lines = []
    for mode, port in zip(modes, ports):
        lines += ["[[stream]]", f'id = "{mode.name}"', f'source = "tcp://127.0.0.1:{port}"', f'mode = "{mode.mode}"',
                  f"hop = {mode.hop}"]
        lines += [f"reset_every = {mode.reset_every}"] if mode.reset_every else []
        lines += [f'smooth = "{mode.smooth}"'] if mode.smooth else []
        lines += [events_table(events)] if events is not None else []
        lines.append("")
    return "\n".join(lines)


def serve_and_record(bundle: Path, video: Path, modes: Sequence[HeadMode], seconds: float, work: Path,
                     events: EventRules | None = None) -> dict:
    """Serve `video` once per mode with ffmpeg (TCP MPEG-TS on 127.0.0.1), run `lrcn serve` on all
    of them (each stream with the event rules, if given), and record every message a Subscriber
    receives until serve exits (bounded by the stream's length plus a margin). Returns
    {"predictions": {mode: [payload...]}, "events": {mode: [event payload...]}, "stats": serve's
    final stats, "missed": seq gaps per topic, "status": {mode: [states]}}."""
    from lrcn.tools.ffmpeg_server import ffmpeg_tcp_ts, free_port, served
    from lrcn.tools.harness.recorder import Recorder
    from lrcn.tools.harness.servers import serve_command, terminate

    work.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in modes]
    config, stats_path = work / "deployment.toml", work / "serve-stats.json"
    config.write_text(deployment_toml(modes, ports, events))
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
        command = serve_command(bundle, "--config", config, "--endpoint", endpoint, "--max-attempts", "1",
                                "--duration", f"{limit_s:.0f}", "--stats-json", stats_path)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=limit_s + 30.0)
        except subprocess.TimeoutExpired:
            raise LrcnError(f"lrcn serve did not finish within {limit_s + 30:.0f} s "
                            f"(log: {work / 'serve.log'})") from None
        finally:
            terminate(process)
        time.sleep(0.5)   # the last messages in flight
        recorded = recorder.close()
        missed = dict(recorder.subscriber.missed)
    for _, message in recorded:
        if message.stream not in predictions:
            continue
        if message.kind == "pred":
            predictions[message.stream].append(message.payload)
        elif message.kind == "event":
            event_messages[message.stream].append(message.payload)
        elif message.payload["state"] not in states[message.stream][-1:]:   # changes, not periodic stats
            states[message.stream].append(message.payload["state"])
    # Exit status 1 is the plan: each stream gives up (--max-attempts 1) once ffmpeg has served the video.
    if process.returncode not in (0, 1) or not stats_path.is_file():
        log_tail = (work / "serve.log").read_text().strip().splitlines()[-1:] or ["?"]
        raise LrcnError(f"lrcn serve failed ({process.returncode}): {log_tail[0]}")
    return {"predictions": predictions, "events": event_messages, "stats": json.loads(stats_path.read_text()),
            "missed": missed, "status": states}


def measure(bundle: Path, video: Path, labels_path: Path, modes: Sequence[HeadMode] | None, work: Path,
            events: EventRules | None = None) -> dict:
    """Serve the labelled `video` through `lrcn serve` in every head mode and score each stream;
    with event rules, each stream also turns its predictions into events, and they are scored
    against the video's segments (`events` per mode; `event_sweep`: other thresholds replayed
    over the same predictions).

    The accuracy is of the label the head gave, as without rules: a prediction published as
    `unknown` (below min_score) counts as its head label (`unknown` says how many were)."""
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
    run = serve_and_record(bundle, video, modes, seconds, work, events)
    results = {}
    for mode in modes:
        payloads = run["predictions"][mode.name]
        labels = head_labels(payloads, spec.classes, mode.smooth)
        stream_stats = run["stats"]["streams"].get(mode.name, {})
        scores = score_stream(truth, [{**p, "label": label} for p, label in zip(payloads, labels)], media_fps, start)
        shown = scores.pop("shown")
        results[mode.name] = {
            "head": asdict(mode), **scores, "segments": segment_rows(record["segments"], shown, start),
            "predictions": len(payloads), "first_seq": payloads[0]["seq"] if payloads else None,
            "missed_messages": run["missed"].get(f"pred/{mode.name}", 0),
            "frames_received": stream_stats.get("frames"), "encoded": stream_stats.get("encoded"),
            "dropped": stream_stats.get("dropped"), "publisher_dropped": stream_stats.get("publisher_dropped"),
            "latency_p50_ms": stream_stats.get("latency_p50_ms"), "latency_p99_ms": stream_stats.get("latency_p99_ms"),
            "states": run["status"][mode.name],
            "published": [[p["frame_index"], p["latency_ms"], label, p["score"], stream_time(p, media_fps)]
                          for p, label in zip(payloads, labels)]}
        if events is not None:
            score = lambda ends: score_events(record["segments"], ends, seconds, media_fps, events.ignore)  # noqa: E731
            results[mode.name].update(event_results(run, mode.name, payloads, labels, media_fps, events, score))
    return {"bundle": str(bundle), "video": str(video), "labels": str(labels_path), "frames": len(truth),
            "fps": media_fps, "seconds": round(seconds, 2), "clip_length": spec.clip_length,
            "model_fps": spec.fps, "scored_from_frame": start, "segments": len(record["segments"]),
            "changes": sum(a != b for a, b in itertools.pairwise(truth)),
            **({"event_rules": asdict(events), "min_overlap": MIN_OVERLAP} if events is not None else {}),
            "modes": results}


def stream_time(payload: dict, media_fps: float) -> float:
    """A prediction's stream time (its last frame's time in the stream), or frame_index / fps."""
    return payload.get("stream_time", payload["frame_index"] / media_fps)


def event_results(run: dict, name: str, payloads: Sequence[dict], labels: Sequence[str], media_fps: float,
                  rules: EventRules, score) -> dict:
    """One stream's events as served (`score(end events)`), the same rules replayed over its
    received predictions (`replay_matches`: whether they give the same events), and the sweep."""
    messages = run["events"][name]
    ends = [event_fields(m) for m in messages if m["type"] == "end"]
    predictions = [(p["frame_index"], stream_time(p, media_fps), label, p["score"])
                   for p, label in zip(payloads, labels)]
    replayed = [event_fields(e) for e in replay_events(rules, predictions)]
    key = lambda e: (e["label"], e["start_frame"], e["end_frame"])   # noqa: E731
    return {"unknown": sum(p["label"] == UNKNOWN for p in payloads),
            "events": {**score(ends), "starts": sum(m["type"] == "start" for m in messages),
                       "missed_messages": run["missed"].get(f"event/{name}", 0),
                       "replay_matches": [key(e) for e in replayed] == [key(e) for e in ends],
                       "list": [[e["label"], e["start_frame"], e["end_frame"], e.get("peak_score")] for e in ends]},
            "event_sweep": [{k: v for k, v in row.items() if k not in ("matched",)}
                            for row in event_sweep(predictions, rules, score)]}


def still_clips(parts: Sequence[Path], out_dir: Path, seconds: float, fps: float) -> list[Path]:
    """One still clip per part: its middle frame held for `seconds` (MJPEG, every frame the same)."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for number, part in enumerate(parts):
        capture = cv2.VideoCapture(str(part))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, max(0, count_frames(part) // 2))
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok:
            raise LrcnError(f"cannot read a frame of {part}")
        image = out_dir / f"still{number:02d}.png"
        cv2.imwrite(str(image), frame)
        clip = out_dir / f"still{number:02d}.avi"
        ffmpeg("-loop", "1", "-framerate", f"{fps:g}", "-i", str(image), "-t", f"{seconds:.3f}", "-c:v", "mjpeg",
               "-q:v", "2", "-pix_fmt", "yuvj420p", str(clip))
        clips.append(clip)
    return clips


def measure_static(bundle: Path, video: Path, labels_path: Path, modes: Sequence[HeadMode] | None, work: Path,
                   events: EventRules) -> dict:
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
    run = serve_and_record(bundle, video, modes, seconds, work, events)
    count = lambda ends: {"events": len(ends), "per_min": events_per_minute(ends, seconds)}   # noqa: E731
    results = {}
    for mode in modes:
        payloads = run["predictions"][mode.name]
        labels = head_labels(payloads, spec.classes, mode.smooth)
        stream_stats = run["stats"]["streams"].get(mode.name, {})
        row = event_results(run, mode.name, payloads, labels, media_fps, events, count)
        starts = [e[1] for e in row["events"]["list"]]
        row["events"]["per_segment"] = [sum(s["start_frame"] <= f < s["end_frame"] for f in starts)
                                        for s in record["segments"]]
        results[mode.name] = {"head": asdict(mode), "predictions": len(payloads), **row,
                              "head_labels": dict(Counter(labels).most_common()),
                              "frames_received": stream_stats.get("frames"), "dropped": stream_stats.get("dropped"),
                              "missed_messages": run["missed"].get(f"pred/{mode.name}", 0)}
    return {"video": str(video), "frames": frames, "fps": media_fps, "seconds": round(seconds, 2),
            "segments": [[s["start_frame"], s["end_frame"]] for s in record["segments"]], "event_rules": asdict(events),
            "modes": results}


# -- training, the held-out check, the command ------------------------------------------------

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
            raise LrcnError(f"no bundle at {bundle}: give --weights (MobileNetV2 .weights.h5 or 'imagenet') to train one")
        print(f"lrcn: training {bundle} on the training groups of {args.data}", file=sys.stderr)
        group = ["--group-pattern", args.group_pattern] if args.group_pattern else []
        lrcn("train", str(args.data), *split_flags(args), *group, "--out", str(bundle), *TRAIN_RECIPE,
             "--weights", args.weights)
    if not (bundle / "encoder.onnx").is_file():
        lrcn("export", str(bundle))
    return bundle


def check_held_out(meta, test_videos: Sequence, data: Path) -> None:
    """Refuse a bundle that trained or validated on a group of the test videos, or whose training
    groups are not recorded."""
    training = meta.training
    used = set(training.get("train_groups", [])) | set(training.get("val_groups", []))
    if not used:
        raise LrcnError("the bundle does not record its training groups, so the test videos cannot be shown "
                        "to be held out")
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
        row["offline"] = {"videos": len(pairs), "agree": sum(a == b for a, b in pairs),
                          "offline_correct": sum(s["label"] == offline[s["video"]] for s in row["segments"]
                                                 if s["video"] in offline)}


def table_lines(result: dict) -> list[str]:
    lines = [(f"{result['test_videos']} test videos, {result['frames']} frames ({result['seconds']} s at "
             f"{result['fps']:g} fps), {result['changes']} action changes; accuracy from frame "
             f"{result['scored_from_frame']}"),
             (f"{'head mode':<22} {'accuracy':>17} {'delay median':>13} {'mean':>7} {'max':>7} {'missed':>7} "
              f"{'settle (n)':>12} "
             f"{'preds':>6} {'p50 ms':>7} {'drops':>6} {'frames in':>9}")]
    fmt = lambda v, unit="s": "-" if v is None else f"{v:.2f} {unit}"
    offline = next(iter(result["modes"].values())).get("offline")
    if offline:
        lines.insert(1, f"offline evaluation (report.json): {offline['offline_correct']}/{offline['videos']} of these "
                        f"videos right; videos whose most shown label is the offline prediction: "
                        + ", ".join(f"{n} {r['offline']['agree']}" for n, r in result["modes"].items()))
    for name, row in result["modes"].items():
        delay = row["delay"]
        settle = f"{fmt(delay['settle_median_s'])} ({delay['settled']})"
        lines.append(f"{name:<22} {row['correct']:>5}/{row['frames']:<5} {row['accuracy'] or 0:>5.3f} "
                     f"{fmt(delay['median_s']):>13} {fmt(delay['mean_s']):>7} {fmt(delay['max_s']):>7} "
                     f"{delay['missed']:>3}/{delay['changes']:<3} {settle:>12} "
                     f"{row['predictions']:>6} "
                     f"{row['latency_p50_ms'] if row['latency_p50_ms'] is not None else '-':>7} "
                     f"{(row['dropped'] or 0) + (row['publisher_dropped'] or 0) + row['missed_messages']:>6} "
                     f"{row['frames_received'] if row['frames_received'] is not None else '-':>9}")
    return lines


def event_table_lines(result: dict) -> list[str]:
    """The events of each mode (and of the static scene, if measured), below the accuracy table."""
    rules = result["event_rules"]
    fmt = lambda v, spec=".3f": "-" if v is None else format(v, spec)   # noqa: E731
    lines = [(f"events (min_score {rules['min_score']:g}, min_duration {rules['min_duration_s']:g} s, cooldown "
              f"{rules['cooldown_s']:g} s{', ignore ' + ','.join(rules['ignore']) if rules['ignore'] else ''}): "
              f"true when its label is the segment's and it covers >= {result['min_overlap']:g} of it"),
             (f"{'head mode':<22} {'events':>6} {'true':>5} {'precision':>9} {'recall':>10} {'false/min':>9} "
              f"{'onset':>7} {'false: wrong/short/dup':>22}" + (f" {'static /min':>11}" if "static" in result else ""))]
    for name, row in result["modes"].items():
        ev = row["events"]
        false = ev["false"]
        static = result.get("static", {}).get("modes", {}).get(name)
        lines.append(f"{name:<22} {ev['events']:>6} {ev['true_positives']:>5} {fmt(ev['precision']):>9} "
                     f"{ev['true_positives']:>3}/{ev['segments']:<3} {fmt(ev['recall'], '.2f'):>4} "
                     f"{fmt(ev['false_per_min'], '.2f'):>9} {fmt(ev['onset_median_s'], '.2f'):>7} "
                     f"{false.get('wrong_label', 0):>12}/{false.get('short', 0)}/{false.get('duplicate', 0)}"
                     + (f" {fmt(static['events']['per_min'], '.2f'):>11}" if static else ""))
    if "static" in result:
        static = result["static"]
        first = static["modes"].get("exact-hop1") or next(iter(static["modes"].values()))
        lines.append(f"static scene: {len(static['segments']) - 1} still frames of test videos and a gray one, "
                     f"{static['seconds']:g} s; events per still (exact-hop1 or the first mode): "
                     f"{first['events']['per_segment']}")
    return lines


def event_rules(args, classes: Sequence[str]) -> EventRules | None:
    """The rules every stream gets from --min-score, --min-duration, --cooldown and
    --ignore-classes; None with --no-events."""
    if args.no_events:
        return None
    ignore = tuple(c.strip() for c in (args.ignore_classes or "").split(",") if c.strip())
    unknown = sorted(set(ignore) - set(classes))
    if unknown:
        raise LrcnError(f"--ignore-classes names classes the bundle lacks: {', '.join(unknown)} "
                        f"(classes: {', '.join(classes)})")
    return EventRules(min_score=args.min_score, min_duration_s=args.min_duration, cooldown_s=args.cooldown,
                      ignore=ignore)


def static_scene(bundle: Path, chosen: Sequence, class_names: Sequence[str], work: Path, seconds: float, fps: float,
                 modes, rules: EventRules | None, size: tuple[int, int]) -> dict:
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
    print(f"lrcn: serving a static scene: {len(parts)} still frames and a gray one, {seconds:g} s in all",
          file=sys.stderr)
    video, labels = join_videos([(clip, "static") for clip in clips], work / "static.avi", size, fps)
    result = measure_static(bundle, video, labels, modes, work / "static-serve", rules)
    result["stills_from"] = [chosen[n].path.name for n in numbers] + ["gray"]
    return result


def gray_clip(out_dir: Path, seconds: float, fps: float, size: tuple[int, int]) -> Path:
    """A uniform mid-gray clip: a scene with nothing in it at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / "gray.avi"
    ffmpeg("-f", "lavfi", "-i", f"color=c=gray:s={size[0]}x{size[1]}:r={fps:g}:d={seconds:.3f}", "-c:v", "mjpeg",
           "-q:v", "2", "-pix_fmt", "yuvj420p", str(clip))
    return clip


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
    if "static" in result:
        out["static"] = {**result["static"], "modes": lean(result["static"]["modes"])}
    return out


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
    from lrcn.tools.args import positive_float, positive_int

    parser.add_argument("bundle", help="bundle trained on the training groups (trained and exported here if absent)")
    parser.add_argument("data", help="DATA/<class>/<video> holding the test videos")
    split = parser.add_mutually_exclusive_group(required=True)
    split.add_argument("--split-lists", nargs=2, metavar=("TRAIN", "TEST"), help="UCF101-style list files")
    split.add_argument("--test-groups", help="comma-separated group ids held out for testing")
    parser.add_argument("--group-pattern", help="regex or preset naming each file's group (default: detected)")
    parser.add_argument("--videos", type=positive_int, metavar="N", help="join at most N test videos (default all)")
    parser.add_argument("--size", type=parse_wh, metavar="WxH", help="joined frame size (default: the first video's)")
    parser.add_argument("--fps", type=positive_float, default=25.0, help="joined frame rate (default 25)")
    parser.add_argument("--modes", help="comma-separated head modes (default all: exact-hop1, exact-hop4, "
                                        "continuous-resetT, continuous, exact-hop1-ema0.3, exact-hop1-hyst3)")
    parser.add_argument("--weights", help="MobileNetV2 weights, to train a bundle that is not there yet")
    parser.add_argument("--work", help="keep the joined video, its labels and serve's files here (default: a "
                                       "temporary folder, removed)")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--summary", help="also write them without the per-prediction, per-change and per-video rows")
    parser.add_argument("--seed", type=int, default=0, help="order of the joined videos")
    events = parser.add_argument_group("events", "every stream turns its predictions into events (event/<stream>), "
                                                 "scored against the joined videos: one per video expected")
    events.add_argument("--min-score", type=unit_float, metavar="S", default=DEFAULT_EVENTS.min_score,
                        help=f"an action counts at this score or more (default {DEFAULT_EVENTS.min_score:g})")
    events.add_argument("--min-duration", type=non_negative_float, metavar="S", default=DEFAULT_EVENTS.min_duration_s,
                        help="seconds an action must hold to start an event "
                             f"(default {DEFAULT_EVENTS.min_duration_s:g})")
    events.add_argument("--cooldown", type=non_negative_float, metavar="S", default=DEFAULT_EVENTS.cooldown_s,
                        help=f"seconds before an ended action may start again (default {DEFAULT_EVENTS.cooldown_s:g})")
    events.add_argument("--ignore-classes", metavar="A,B", help="classes that never start events (a background); "
                                                              "their videos are not counted in the recall")
    events.add_argument("--no-events", action="store_true", help="serve without event rules (accuracy only)")
    events.add_argument("--static", type=positive_float, metavar="SECONDS",
                        help="also serve a scene where nothing happens for SECONDS (the middle frame of one test "
                             "video per class, held still, then a gray frame) and count its events")


@command("stream-accuracy", help="per-frame accuracy and change delay of every head mode on held-out test videos "
                                 "joined, served by ffmpeg, run through serve", arguments=add_arguments)
def run(args) -> dict:
    from lrcn.models.data import discover
    from lrcn.stream.bundle import read_meta
    from lrcn.tools.args import choose_split

    data = Path(args.data)
    dataset = discover(data, args.group_pattern)
    _, test_videos = choose_split(dataset, args)
    if not test_videos:
        raise LrcnError("no test videos: the split holds none")
    if args.static and args.no_events:
        raise LrcnError("--static counts events: it needs event rules (drop --no-events)")
    if (Path(args.bundle) / "meta.json").is_file():   # fail before any export
        check_held_out(read_meta(args.bundle), test_videos, data)
        parse_modes(args.modes, read_meta(args.bundle).spec.clip_length)
        event_rules(args, read_meta(args.bundle).spec.classes)
    else:                                             # or training
        parse_modes(args.modes, 16)
    bundle = ensure_bundle(args)
    meta = read_meta(bundle)
    check_held_out(meta, test_videos, data)
    modes = parse_modes(args.modes, meta.spec.clip_length)
    chosen = order_videos(test_videos, dataset.classes, args.videos, args.seed)
    with contextlib.ExitStack() as stack:   # no --work: a temporary folder, removed at the end
        work = Path(args.work) if args.work else \
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lrcn-stream-accuracy-")))
        size = args.size or frame_size(chosen[0].path)
        print(f"lrcn: joining {len(chosen)} test videos at {size[0]}x{size[1]}, {args.fps:g} fps into {work}",
              file=sys.stderr)
        video, labels = join_videos([(v.path, dataset.classes[v.label]) for v in chosen], work / "stream.avi", size,
                                    args.fps)
        rules = event_rules(args, meta.spec.classes)
        result = measure(bundle, video, labels, modes, work / "serve", rules)
        static = None
        if args.static:
            static = static_scene(bundle, chosen, dataset.classes, work, args.static, args.fps, modes, rules, size)
    compare_offline(result, bundle / "evaluation" / "report.json")
    result = {"data": str(data), "split": split_flags(args), "test_videos": len(chosen),
              "videos": [v.path.name for v in chosen],
              **result, **({"static": static} if static else {})}
    print("\n".join(table_lines(result)))
    if rules is not None:
        print("\n".join(event_table_lines(result)))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"lrcn: wrote {args.out}", file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary(result), indent=1) + "\n")
        print(f"lrcn: wrote {args.summary}", file=sys.stderr)
    return result
