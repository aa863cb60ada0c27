"""Streaming accuracy: the scoring on hand-made sequences, the joined stream and its labels, and
one short run of the whole path (ffmpeg on 127.0.0.1 -> lrcn serve -> Subscriber) on the
synthetic continuous stream with a small untrained bundle."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from lrcn.stream.deploy import load_deployment
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from tests.live_servers import FFMPEG
from lrcn.tools.stream_accuracy.joined_streams import join_videos, order_videos
from lrcn.tools.stream_accuracy.stream_live import deployment_toml, measure
from lrcn.tools.stream_accuracy.stream_scoring import (
    HeadMode,
    change_delays,
    event_sweep,
    events_per_minute,
    false_event_kind,
    first_full_window,
    frame_accuracy,
    head_labels,
    head_modes,
    match_events,
    replay_events,
    score_events,
    score_stream,
    segment_rows,
    shown_from,
    shown_labels,
    summarise_delays,
)
from lrcn.tools.stream_accuracy.streaming_accuracy import check_held_out

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def test_first_full_window_is_the_t_th_frame_on_the_sampling_grid():
    # 25 fps sampled at 10 fps keeps frames 0, 3, 5, 8, 10, 13, ... (every 0.1 s, the nearest at or after)
    assert first_full_window(100, 25.0, 10.0, 4) == 8
    assert first_full_window(100, 25.0, 10.0, 16) == 38
    assert first_full_window(100, 10.0, 10.0, 16) == 15
    with pytest.raises(LrcnError, match="too short"):
        first_full_window(30, 25.0, 10.0, 16)


def test_a_label_is_shown_from_its_publication_until_the_next_one():
    assert shown_labels([], 3) == [None, None, None]
    assert shown_labels([(5, "b"), (2, "a")], 7) == [None, None, "a", "a", "a", "b", "b"]
    assert shown_labels([(1, "a"), (1, "b")], 3) == [None, "b", "b"]  # same frame: the later one wins
    assert shown_from(10, 3.0, 25.0) == 10  # 3 ms: still during frame 10
    assert shown_from(10, 85.0, 25.0) == 12  # 85 ms: two 40 ms frames later


def test_accuracy_counts_exactly_the_frames_from_the_first_full_window_on():
    truth = ["a"] * 6 + ["b"] * 6
    shown = [None] * 4 + ["a"] * 4 + ["b"] * 4  # wrong on frames 6 and 7 only, unlabelled before 4
    assert frame_accuracy(truth, shown, start=4) == {"frames": 8, "correct": 6, "accuracy": 0.75}
    assert frame_accuracy(truth, shown, start=0)["correct"] == 6  # frames 0-3 have no label: wrong
    assert frame_accuracy(truth, shown, start=0)["frames"] == 12
    assert frame_accuracy(truth, shown, start=12) == {"frames": 0, "correct": 0, "accuracy": None}


def test_delay_is_frames_from_the_change_to_the_new_label_and_misses_are_counted():
    truth = ["a"] * 5 + ["b"] * 5 + ["c"] * 5 + ["a"] * 5
    shown = ["a"] * 8 + ["b"] * 7 + ["c"] * 5  # b after 3 frames; c only after its segment; a never
    rows = change_delays(truth, shown, media_fps=25.0)
    assert [(r["frame"], r["from"], r["to"], r["delay_frames"]) for r in rows] == [
        (5, "a", "b", 3),
        (10, "b", "c", None),
        (15, "c", "a", None),
    ]
    assert rows[0]["delay_s"] == pytest.approx(0.12)
    # Changes before the first full window are not scored; a label that is already right costs 0.
    assert [r["frame"] for r in change_delays(truth, shown, 25.0, start=6)] == [10, 15]
    assert change_delays(["a", "b"], ["b", "b"], 25.0)[0]["delay_frames"] == 0
    # A label that flickers reaches the new class early but settles only when it stops flickering.
    flicker = change_delays(["a"] * 4 + ["b"] * 8, ["a"] * 5 + ["b", "a", "b", "a"] + ["b"] * 3, 25.0)[0]
    assert (flicker["delay_frames"], flicker["settle_frames"]) == (1, 5)
    assert change_delays(["a", "b", "b"], ["a", "b", "a"], 25.0)[0]["settle_frames"] is None  # wrong at the end
    summary = summarise_delays(rows)
    assert summary == {
        "changes": 3,
        "reached": 1,
        "missed": 2,
        "median_s": 0.12,
        "mean_s": 0.12,
        "max_s": 0.12,
        "median_frames": 3,
        "settled": 1,
        "settle_median_s": 0.12,
    }
    assert summarise_delays([])["median_s"] is None


def test_score_stream_maps_payloads_to_frames_through_frame_index_and_latency():
    truth = ["a"] * 10 + ["b"] * 10
    payloads = [
        {"frame_index": 4, "latency_ms": 2.0, "label": "a"},
        {"frame_index": 11, "latency_ms": 2.0, "label": "a"},
        {"frame_index": 13, "latency_ms": 45.0, "label": "b"},
    ]  # shown from frame 14
    result = score_stream(truth, payloads, 25.0, start=4)
    assert (result["frames"], result["correct"]) == (16, 6 + 6)  # frames 4-9 right, 10-13 wrong, 14-19 right
    assert result["changes"][0]["delay_frames"] == 4
    assert result["delay"]["median_s"] == pytest.approx(0.16)
    segments = [
        {"label": "a", "start_frame": 0, "end_frame": 10, "video": "a.avi"},
        {"label": "b", "start_frame": 10, "end_frame": 20, "video": "b.avi"},
    ]
    assert segment_rows(segments, result["shown"], start=4) == [
        {"video": "a.avi", "label": "a", "frames": 6, "correct": 6, "most_shown": "a"},
        {"video": "b.avi", "label": "b", "frames": 10, "correct": 6, "most_shown": "b"},
    ]


@dataclass(frozen=True)
class FakeVideo:
    path: Path
    label: int
    group: str


def test_order_videos_never_repeats_a_class_and_spreads_over_groups():
    videos = [
        FakeVideo(Path(f"v{c}_g{g}_{k}.avi"), c, f"{g:02d}") for c in range(3) for g in range(1, 4) for k in (1, 2)
    ]
    ordered = order_videos(videos, ["x", "y", "z"], count=None, seed=3)
    assert sorted(v.path for v in ordered) == sorted(v.path for v in videos)
    assert all(a.label != b.label for a, b in itertools.pairwise(ordered))
    first_round = ordered[:3]
    assert {v.label for v in first_round} == {0, 1, 2} and {v.group for v in first_round} == {"01"}
    assert [v.group for v in ordered if v.label == 0][:3] == ["01", "02", "03"]  # groups in turn
    assert len(order_videos(videos, ["x", "y", "z"], count=5)) == 5
    with pytest.raises(LrcnError, match="two"):
        order_videos(videos[:6], ["x"], count=None)


def test_deployment_file_gives_each_head_mode_its_own_stream(tmp_path):
    modes = head_modes(16)
    path = tmp_path / "deploy.toml"
    path.write_text(deployment_toml(modes, range(7000, 7000 + len(modes))))
    streams = load_deployment(path).streams
    assert [(s.id, s.source, s.mode, s.hop, s.reset_every, s.smooth) for s in streams] == [
        ("exact-hop1", "tcp://127.0.0.1:7000", "exact", 1, None, None),
        ("exact-hop4", "tcp://127.0.0.1:7001", "exact", 4, None, None),
        ("continuous-reset16", "tcp://127.0.0.1:7002", "continuous", 1, 16, None),
        ("continuous", "tcp://127.0.0.1:7003", "continuous", 1, None, None),
        ("exact-hop1-ema0_3", "tcp://127.0.0.1:7004", "exact", 1, None, "ema:0.3"),
        ("exact-hop1-hyst3", "tcp://127.0.0.1:7005", "exact", 1, None, "hysteresis:3"),
    ]


def test_a_bundle_that_saw_a_test_group_is_refused(tmp_path):
    @dataclass
    class Meta:
        training: dict

    test = [FakeVideo(tmp_path / "a.avi", 0, "07")]
    check_held_out(Meta({"train_groups": ["08", "09"], "val_groups": ["10"], "data": str(tmp_path)}), test, tmp_path)
    with pytest.raises(LrcnError, match="group"):
        check_held_out(Meta({"train_groups": ["08"], "val_groups": ["07"]}), test, tmp_path)
    with pytest.raises(LrcnError, match="does not record"):
        check_held_out(Meta({}), test, tmp_path)
    with pytest.raises(LrcnError, match="trained on"):
        check_held_out(Meta({"train_groups": ["08"], "data": str(tmp_path / "other")}), test, tmp_path)


def write_clip(path: Path, n_frames: int, fps: float, size: tuple[int, int], level: int) -> Path:
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for _ in range(n_frames):
        writer.write(np.full((height, width, 3), level, np.uint8))
    writer.release()
    return path


@needs_ffmpeg
def test_joined_video_has_one_label_per_frame_at_one_size_and_rate(tmp_path):
    from lrcn.models.synth import read_labels

    clips = [
        (write_clip(tmp_path / "a.avi", 50, 25.0, (64, 48), 30), "a"),  # 2.0 s
        (write_clip(tmp_path / "b.avi", 60, 30.0, (80, 60), 200), "b"),  # 2.0 s at 30 fps
        (write_clip(tmp_path / "c.avi", 25, 25.0, (64, 48), 120), "a"),
    ]
    video, sidecar = join_videos(clips, tmp_path / "out" / "stream.avi", (64, 48), 25.0)
    record = read_labels(sidecar)
    assert record["fps"] == 25.0 and record["classes"] == ["a", "b"]
    assert [(s["label"], s["start_frame"], s["end_frame"]) for s in record["segments"]] == [
        ("a", 0, 50),
        ("b", 50, 100),
        ("a", 100, 125),
    ]
    capture = cv2.VideoCapture(str(video))
    levels = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (48, 64, 3)
        levels.append(int(frame.mean()))
    capture.release()
    assert len(levels) == len(record["labels"]) == 125
    # Each frame's content is the clip its label says.
    expected = {0: 30, 49: 30, 50: 200, 99: 200, 100: 120, 124: 120}
    assert all(abs(levels[i] - level) <= 3 for i, level in expected.items()), levels


@needs_ffmpeg
@pytest.mark.slow
def test_synthetic_stream_through_ffmpeg_and_serve_is_scored_frame_by_frame(tmp_path):
    """The whole path with a small untrained bundle: what the subscriber got is scored over exactly
    the frames after the first full window, and the tool's figures agree with a plain recount."""
    pytest.importorskip("tensorflow")
    from lrcn.models import synth
    from lrcn.models.export import export_bundle
    from lrcn.stream.bundle import ModelSpec
    from tests.bundles import frames_of, make_bundle

    video, sidecar = synth.write_continuous(
        tmp_path / "stream.avi", duration_s=7.0, size=64, seed=5, min_segment_s=2.0, max_segment_s=3.0
    )
    record = synth.read_labels(sidecar)
    truth = record["labels"]
    spec = ModelSpec(classes=tuple(record["classes"]), input_size=(64, 64), clip_length=4, lstm_units=16)
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path / "bundle", spec, frames[:16])
    export_bundle(bundle, frames[:16])

    modes = [HeadMode("exact-hop1"), HeadMode("continuous", "continuous")]
    result = measure(bundle, video, sidecar, modes, tmp_path / "serve")

    start = 8  # the 4th frame on the 10 fps grid of a 25 fps file: 0, 3, 5, 8
    assert result["scored_from_frame"] == start and result["frames"] == len(truth) == 175
    changes = [c for c in range(start, len(truth)) if truth[c] != truth[c - 1]]
    assert result["changes"] == len(record["segments"]) - 1 >= 1
    for name, row in result["modes"].items():
        assert row["frames_received"] == len(truth), name  # every frame arrived, none twice
        assert row["first_seq"] == 0 and row["missed_messages"] == 0 and row["dropped"] == 0, name
        assert row["states"][0] in ("connecting", "connected") and row["states"][-1] == "failed", row["states"]
        published = row["published"]
        indices = [p[0] for p in published]
        assert indices == sorted(set(indices)) and indices[-1] < len(truth), name
        expected_predictions = row["encoded"] - (3 if name == "exact-hop1" else 0)
        assert row["predictions"] == len(published) == expected_predictions, name
        if name == "exact-hop1":
            assert indices[0] >= start - 1  # no window is full before the grid's 4th frame
        # A plain recount: the label at each frame is the last one published at or before it.
        shown = []
        for f in range(len(truth)):
            before = [p[2] for p in published if p[0] + int(p[1] / 40.0) <= f]
            shown.append(before[-1] if before else None)
        correct = sum(shown[f] == truth[f] for f in range(start, len(truth)))
        assert (row["frames"], row["correct"]) == (len(truth) - start, correct), name
        assert [c["frame"] for c in row["changes"]] == changes
        for change in row["changes"]:
            segment_end = next((c for c in changes if c > change["frame"]), len(truth))
            hits = [f for f in range(change["frame"], segment_end) if shown[f] == change["to"]]
            assert change["delay_frames"] == (hits[0] - change["frame"] if hits else None)
            stays = [
                f
                for f in range(change["frame"], segment_end)
                if all(shown[g] == change["to"] for g in range(f, segment_end))
            ]
            assert change["settle_frames"] == (stays[0] - change["frame"] if stays else None)
    json.dumps(result)  # what --out writes


def test_offline_agreement_counts_videos_whose_most_shown_label_is_the_offline_prediction(tmp_path):
    from lrcn.tools.stream_accuracy.streaming_accuracy import compare_offline

    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "predictions": [
                    {"video": "/d/a/x.avi", "label": "a", "predicted": "a"},
                    {"video": "/d/b/y.avi", "label": "b", "predicted": "a"},
                ]
            }
        )
    )
    segments = [
        {"video": "x.avi", "label": "a", "most_shown": "a"},
        {"video": "y.avi", "label": "b", "most_shown": "b"},
        {"video": "z.avi", "label": "b", "most_shown": "b"},
    ]
    result = {"modes": {"exact-hop1": {"segments": segments}}}
    compare_offline(result, report)
    assert result["modes"]["exact-hop1"]["offline"] == {"videos": 2, "agree": 1, "offline_correct": 1}
    compare_offline(result, tmp_path / "absent.json")  # no report: nothing to compare, no error


@pytest.fixture
def weizmann_like(tmp_path):
    """DATA/<class>/sS_<class>.avi for two classes and subjects 0-2, and a bundle's meta.json alone,
    trained on subjects 0 and 1."""
    from lrcn.stream.bundle import BundleMeta, ModelSpec, write_meta

    data = tmp_path / "data"
    for name in ("bend", "wave"):
        (data / name).mkdir(parents=True)
        for subject in range(3):
            write_clip(data / name / f"s{subject}_{name}.avi", 10, 25.0, (32, 32), 50 * subject)
    bundle = tmp_path / "bundle"
    write_meta(
        bundle,
        BundleMeta(
            spec=ModelSpec(classes=("bend", "wave")),
            feature_size=8,
            training={"data": str(data), "train_groups": ["0"], "val_groups": ["1"]},
        ),
    )
    return data, bundle


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--test-groups", "1"], "the bundle trained on group(s) 1 of the test videos"),
        (["--test-groups", "2", "--modes", "exact-hop1,sideways"], "unknown head mode(s) sideways"),
        (["--test-groups", "9"], "no videos in group(s) 9"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(weizmann_like, capsys, arguments, message):
    from lrcn.tools.cli.commands import main

    data, bundle = weizmann_like
    assert main(["stream-accuracy", str(bundle), str(data), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_missing_bundle_needs_weights_to_be_trained(weizmann_like, capsys, tmp_path):
    from lrcn.tools.cli.commands import main

    data, _ = weizmann_like
    assert main(["stream-accuracy", str(tmp_path / "none"), str(data), "--test-groups", "2"]) == 2
    assert "give --weights" in capsys.readouterr().err


# -- events --------------------------------------------------------------------------------------


def seg(label, start, end):
    return {"label": label, "start_frame": start, "end_frame": end}


def ev(label, start, end):
    return {"label": label, "start_frame": start, "end_frame": end}


SEGMENTS = [seg("a", 0, 100), seg("b", 100, 200), seg("c", 200, 300)]


def test_an_event_is_true_when_it_has_the_label_and_covers_half_of_the_segment():
    # Inclusive event frames: 50..99 is exactly half of a's 100 frames; 51..99 is one short.
    assert match_events(SEGMENTS, [ev("a", 50, 99)]) == [(0, 0, 0.5)]
    assert match_events(SEGMENTS, [ev("a", 51, 99)]) == []
    assert false_event_kind(SEGMENTS, ev("a", 51, 99)) == "short"
    # Running past the segment's end does not count against it, nor for the next segment.
    assert match_events(SEGMENTS, [ev("a", 40, 180)]) == [(0, 0, 0.6)]
    # The right frames with the wrong label.
    assert match_events(SEGMENTS, [ev("b", 0, 99)]) == []
    assert false_event_kind(SEGMENTS, ev("b", 0, 99)) == "wrong_label"
    assert false_event_kind(SEGMENTS, ev("z", 0, 99)) == "wrong_label"


def test_two_events_on_one_segment_match_it_once_the_larger_first():
    events = [ev("b", 105, 160), ev("b", 165, 199)]  # 56 and 35 frames: split by a dip
    assert match_events(SEGMENTS, events) == [(1, 0, 0.56)]
    assert false_event_kind(SEGMENTS, events[1]) == "short"
    both_long = [ev("b", 100, 170), ev("b", 120, 199)]  # 71 and 80 frames: the second wins, the first is a duplicate
    assert match_events(SEGMENTS, both_long) == [(1, 1, 0.8)]
    assert false_event_kind(SEGMENTS, both_long[0]) == "duplicate"
    score = score_events(SEGMENTS, both_long, seconds=12.0, media_fps=25.0)
    assert (score["events"], score["true_positives"], score["precision"], score["recall"]) == (2, 1, 0.5, 0.3333)
    assert score["false"] == {"duplicate": 1} and score["false_per_min"] == 5.0


def test_one_event_never_matches_two_segments_and_same_label_segments_pair_by_overlap():
    segments = [seg("a", 0, 50), seg("b", 50, 60), seg("a", 60, 110)]
    # One long `a` over both a segments: it matches the one it covers more of, the other is missed.
    assert match_events(segments, [ev("a", 20, 109)]) == [(2, 0, 1.0)]
    # Two events, each mostly over one segment: each matches its own.
    assert match_events(segments, [ev("a", 60, 109), ev("a", 0, 49)]) == [(0, 1, 1.0), (2, 0, 1.0)]


def test_precision_recall_and_false_events_per_minute():
    events = [ev("a", 20, 110), ev("c", 120, 150), ev("b", 130, 199), ev("c", 210, 260), ev("c", 280, 299)]
    score = score_events(SEGMENTS, events, seconds=300 / 25.0, media_fps=25.0)
    assert score["matched"] == [[0, 0, 0.8], [1, 2, 0.7], [2, 3, 0.51]]
    assert (score["events"], score["true_positives"], score["segments"]) == (5, 3, 3)
    assert (score["precision"], score["recall"]) == (0.6, 1.0)
    assert score["false"] == {"short": 1, "wrong_label": 1}
    assert score["false_events"] == 2 and score["false_per_min"] == 10.0  # 2 in 12 s
    assert score["onset_median_s"] == pytest.approx(0.8)  # 20, 30, 10 frames at 25 fps
    nothing = score_events(SEGMENTS, [], seconds=12.0, media_fps=25.0)
    assert (nothing["precision"], nothing["recall"], nothing["false_per_min"]) == (None, 0.0, 0.0)


def test_segments_of_an_ignored_class_are_not_counted_nor_matched():
    segments = [seg("background", 0, 100), seg("wave", 100, 200)]
    events = [ev("wave", 120, 199)]
    score = score_events(segments, events, 8.0, 25.0, ignore=("background",))
    assert (score["segments"], score["true_positives"], score["recall"]) == (1, 1, 1.0)
    assert match_events(segments, [ev("background", 0, 99)], ignore=("background",)) == []


def test_events_per_minute_of_a_static_scene():
    assert events_per_minute([], 120.0) == 0.0
    assert events_per_minute([{}] * 3, 120.0) == 1.5
    assert events_per_minute([{}], 0.0) is None


def test_replayed_events_are_what_the_rules_make_of_the_predictions():
    rules = EventRules(min_score=0.6, min_duration_s=0.3)
    preds = (
        [(f, f / 10, "a", 0.9) for f in range(10)]
        + [(10, 1.0, "a", 0.5)]  # a dip below min_score
        + [(f, f / 10, "a", 0.9) for f in range(11, 13)]  # too short to start again
        + [(f, f / 10, "b", 0.8) for f in range(13, 20)]
    )  # b, to the end
    assert [(e["label"], e["start_frame"], e["end_frame"]) for e in replay_events(rules, preds)] == [
        ("a", 0, 9),
        ("b", 13, 19),
    ]
    segments = [seg("a", 0, 12), seg("b", 12, 20)]
    rows = event_sweep(preds, rules, lambda ends: score_events(segments, ends, 2.0, 10.0))
    assert len(rows) == 15 and {(r["min_score"], r["min_duration_s"]) for r in rows} >= {(0.5, 0.0), (0.9, 1.0)}
    by = {(r["min_score"], r["min_duration_s"]): r for r in rows}
    assert by[(0.6, 0.0)]["events"] == 3 and by[(0.6, 0.0)]["true_positives"] == 2  # the a after the dip counts too
    assert by[(0.5, 0.5)]["events"] == 2 and by[(0.5, 0.5)]["precision"] == 1.0  # no dip at 0.5
    assert by[(0.9, 0.0)]["events"] == 2  # the b's at 0.8 never count


def test_head_labels_recover_the_label_hidden_as_unknown():
    classes = ["a", "b"]
    payloads = [
        {"label": "a", "score": 0.9, "top_k": [["a", 0.9], ["b", 0.1]], "probabilities": {"a": 0.9, "b": 0.1}},
        {
            "label": "unknown",
            "score": 0.55,
            "top_k": [["b", 0.55], ["a", 0.45]],
            "probabilities": {"a": 0.45, "b": 0.55},
        },
    ]
    assert head_labels(payloads, classes) == ["a", "b"]
    # EMA 0.5: (0.9, 0.1) then (0.675, 0.325): the smoothed label is still a, whatever the top class.
    assert head_labels(payloads, classes, "ema:0.5") == ["a", "a"]
    assert head_labels(payloads[:1], classes, "ema:0.5") == ["a"]  # nothing hidden: as published


def test_the_deployment_gives_every_stream_the_event_rules(tmp_path):
    rules = EventRules(min_score=0.7, min_duration_s=1.0, cooldown_s=2.0, ignore=("wave",))
    path = tmp_path / "deploy.toml"
    path.write_text(deployment_toml(head_modes(16)[:2], [7000, 7001], rules))
    assert [s.events for s in load_deployment(path).streams] == [rules, rules]
    path.write_text(deployment_toml(head_modes(16)[:1], [7000]))
    assert load_deployment(path).streams[0].events is None


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--test-groups", "2", "--ignore-classes", "jump"], "--ignore-classes names classes the bundle lacks: jump"),
        (["--test-groups", "2", "--static", "10", "--no-events"], "--static counts events"),
    ],
)
def test_bad_event_options_are_one_line_before_any_work(weizmann_like, capsys, arguments, message):
    from lrcn.tools.cli.commands import main

    data, bundle = weizmann_like
    assert main(["stream-accuracy", str(bundle), str(data), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_scoring_examples_in_the_docstrings_hold():
    import doctest

    import lrcn.tools.stream_accuracy.stream_scoring

    result = doctest.testmod(lrcn.tools.stream_accuracy.stream_scoring)
    assert result.attempted >= 15 and result.failed == 0, result


@needs_ffmpeg
@pytest.mark.slow
def test_the_offline_replay_publishes_what_the_live_run_publishes(tmp_path):
    """`--offline` replays the runtime over the video's frames sampled on the model's grid; served
    live through ffmpeg and `lrcn serve`, the same bundle publishes at the same frames, and its
    scores are those of the replay's labels (the live stream is re-encoded, so the probabilities
    may differ by the codec's rounding; the labels and frames must not)."""
    pytest.importorskip("tensorflow")
    from lrcn.models import synth
    from lrcn.models.export import export_bundle
    from lrcn.stream.bundle import ModelSpec
    from lrcn.tools.stream_accuracy.stream_replay import replay
    from tests.bundles import frames_of, make_bundle

    video, sidecar = synth.write_continuous(
        tmp_path / "stream.avi", duration_s=6.0, size=64, seed=7, min_segment_s=2.0, max_segment_s=3.0
    )
    spec = ModelSpec(
        classes=tuple(synth.read_labels(sidecar)["classes"]), input_size=(64, 64), clip_length=4, lstm_units=16
    )
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path / "bundle", spec, frames[:16])
    export_bundle(bundle, frames[:16])
    modes = [HeadMode("exact-hop1"), HeadMode("continuous", "continuous")]
    offline = replay(bundle, video, sidecar, modes)
    live = measure(bundle, video, sidecar, modes, tmp_path / "serve")
    for name in ("exact-hop1", "continuous"):
        replayed, served = offline["modes"][name], live["modes"][name]
        assert [p[0] for p in replayed["published"]] == [p[0] for p in served["published"]], name
        agree = np.mean([a[2] == b[2] for a, b in zip(replayed["published"], served["published"])])
        assert agree >= 0.9, (name, agree)
        assert replayed["frames"] == served["frames"] and offline["scored_from_frame"] == live["scored_from_frame"]


def test_a_seed_measured_later_joins_the_side_by_side_written_before(tmp_path):
    """docs/results' ucf101_9 side-by-side (seeds 0 and 1 there have no run files any more) and a
    run of one more seed give every seed, the earlier ones unchanged; a seed given twice is refused."""
    from lrcn.tools.stream_accuracy.stream_results import write_side_by_side

    earlier_path = Path(__file__).parents[1] / "docs" / "results" / "stream_training_ucf101_9.json"
    earlier = json.loads(earlier_path.read_text())
    mode = lambda accuracy, delay: {
        "correct": int(accuracy * 100),
        "frames": 100,
        "accuracy": accuracy,  # noqa: E731
        "delay": {"median_s": delay, "mean_s": delay, "missed": 0, "changes": 10},
    }
    modes = lambda continuous: {"exact-hop1": mode(0.7, 0.8), "continuous": mode(continuous, 0.3)}  # noqa: E731
    new_seed = max(seed["seed"] for seed in earlier["seeds"]) + 1
    run = {
        "bundle": "window-new",
        "model_seed": new_seed,
        "offline_test": {"video_correct": 100},
        "modes": modes(0.6),
        "compared": {
            "stream-new": {
                "bundle": "stream-new",
                "stream_trained": True,
                "offline_test": {"video_correct": 99},
                "modes": modes(0.8),
            }
        },
    }
    (tmp_path / "new.json").write_text(json.dumps(run))
    merged = write_side_by_side(tmp_path / "out.json", [earlier_path, tmp_path / "new.json"])
    assert [seed["seed"] for seed in merged["seeds"]] == [seed["seed"] for seed in earlier["seeds"]] + [new_seed]
    assert merged["seeds"][:-1] == earlier["seeds"]
    assert merged["seeds"][-1]["targets"] == {
        "accuracy_points_over_best_window_mode": 10.0,
        "best_window_mode": "exact-hop1",
        "delay_ratio_to_exact_hop1": 0.375,
        "offline_videos_lost": 1,
    }
    assert merged["runs"] == earlier["runs"] + [str(tmp_path / "new.json")]
    assert json.loads((tmp_path / "out.json").read_text()) == merged
    run["model_seed"] = 1
    (tmp_path / "s1.json").write_text(json.dumps(run))
    with pytest.raises(LrcnError, match="a seed is given twice"):
        write_side_by_side(tmp_path / "again.json", [earlier_path, tmp_path / "s1.json"])
