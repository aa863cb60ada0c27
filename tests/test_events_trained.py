"""Events from a TRAINED model on the real path: the demo's small LRCN (trained on freshly rendered
motion-only clips, as `lrcn demo` trains it) serves a joined file of known segments through
ffmpeg on 127.0.0.1 -> `lrcn serve` (with event rules from a deployment file) -> a Subscriber,
and the tool's event scoring must find exactly one event of the right label per segment; a
static scene (one frame held still) must give no event at all.

The segments are the classes whose motion keeps its speed however long a segment is (the
shifts, and still): a long grow or shrink is rendered slower than any training clip and reads
as still (tools/cli/demo.py). "still" is the background class: ignored by the rules, not counted in
the recall. min_duration_s (0.8 s) is longer than the model's window (8 frames at 10 fps), so a
window that straddles a change cannot start an event of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.live_servers import FFMPEG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed"),
    pytest.mark.timeout(900),
]

SEGMENTS = ("move_right", "still", "move_left", "move_down", "move_up", "move_right", "move_left")
SEGMENT_S, FPS, SIZE = 4.0, 25.0, 32


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    """The demo's small LRCN (tools.cli.demo: 32x32, T=8 at 10 fps, LSTM 128, trained on freshly
    rendered clips, validated on written videos of another group), trained for 14 epochs of 1400
    clips rather than the demo's 8 (about 3 minutes on 2 cores), then exported. The demo's 8 epochs
    are right on whole test videos but flicker on long segments: measured on 4 s segments of 14
    streams, a third to two thirds of the segments got exactly one event; with 14 epochs, all but
    one of 10 streams (exact windows; all 10 with EMA 0.3)."""
    pytest.importorskip("tensorflow")
    from lrcn.models import synth
    from lrcn.models.data import discover, split_by_groups
    from lrcn.models.experiment import train_and_test
    from lrcn.models.train import TrainConfig
    from lrcn.stream.bundle import ModelSpec
    from lrcn.tools.cli.demo import CLIP_LENGTH, FPS as MODEL_FPS, SIZE as MODEL_SIZE, export

    work = tmp_path_factory.mktemp("demo")
    data = work / "synth"
    synth.write_dataset(data, videos_per_class=6, n_frames=24, size=MODEL_SIZE, seed=0, groups=2)
    dataset = discover(data, "ucf101")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["02"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="small",
        input_size=(MODEL_SIZE, MODEL_SIZE),
        clip_length=CLIP_LENGTH,
        fps=MODEL_FPS,
        lstm_units=128,
        feature_dropout=0.0,
        lstm_dropout=0.0,
    )
    config = TrainConfig(
        epochs=14,
        batch_size=16,
        learning_rate=1e-3,
        patience=14,
        synthetic_clips=1400,
        refit=False,
        cache_dir=str(work / "cache"),
        progress=False,
    )
    result = train_and_test(spec, train_videos, test_videos, work / "bundle", config)
    assert result["video_accuracy"] == 1.0, result  # trained, not chance: the rest depends on it
    export(work / "bundle", data)
    return work / "bundle"


def write_segments(path: Path, labels, seconds: float, seed: int = 0) -> Path:
    """A video of one fresh scene per label, `seconds` each, and its sidecar (models.synth's format)."""
    from lrcn.models import synth

    rng = np.random.default_rng(seed)
    n = round(seconds * FPS)
    segments = []
    writer = synth.open_writer(path, FPS, SIZE)
    try:
        for k, label in enumerate(labels):
            synth.write_frames(writer, synth.render_clip(label, n, SIZE, rng, fps=FPS))
            segments.append({"label": label, "start_frame": k * n, "end_frame": (k + 1) * n})
    finally:
        writer.release()
    record = {
        "fps": FPS,
        "classes": sorted(set(labels)),
        "segments": segments,
        "labels": [s["label"] for s in segments for _ in range(n)],
    }
    sidecar = synth.sidecar_path(path)
    sidecar.write_text(json.dumps(record))
    return sidecar


def write_still(path: Path, seconds: float, seed: int = 1) -> Path:
    """One frame of a moving shape, held still for `seconds`, and a sidecar of one segment."""
    from lrcn.models import synth

    frame = synth.render_clip("move_left", 25, SIZE, np.random.default_rng(seed), fps=FPS)[12]
    n = round(seconds * FPS)
    writer = synth.open_writer(path, FPS, SIZE)
    try:
        synth.write_frames(writer, np.repeat(frame[None], n, axis=0))
    finally:
        writer.release()
    sidecar = synth.sidecar_path(path)
    sidecar.write_text(
        json.dumps(
            {
                "fps": FPS,
                "classes": ["static"],
                "labels": ["static"] * n,
                "segments": [{"label": "static", "start_frame": 0, "end_frame": n}],
            }
        )
    )
    return sidecar


RULES = dict(min_score=0.6, min_duration_s=0.8, ignore=("still",))  # the tool's min_score


def test_each_segment_of_a_known_stream_gives_exactly_one_event_of_its_label(demo_bundle, tmp_path):
    from lrcn.stream.events import EventRules
    from lrcn.tools.stream_accuracy.stream_live import measure
    from lrcn.tools.stream_accuracy.stream_scoring import HeadMode

    video = tmp_path / "segments.avi"
    sidecar = write_segments(video, SEGMENTS, SEGMENT_S)
    rules = EventRules(**RULES)
    modes = [HeadMode("exact-hop1"), HeadMode("exact-hop1-ema0.3", smooth="ema:0.3")]
    result = measure(demo_bundle, video, sidecar, modes, tmp_path / "serve", rules)

    row = result["modes"]["exact-hop1"]
    events = row["events"]
    listed = [(label, start, end) for label, start, end, _ in events["list"]]
    watched = [s for s in json.loads(sidecar.read_text())["segments"] if s["label"] != "still"]
    assert row["frames_received"] == len(SEGMENTS) * SEGMENT_S * FPS and row["missed_messages"] == 0
    assert events["missed_messages"] == 0 and events["starts"] == events["events"], events
    assert (events["events"], events["true_positives"], events["segments"]) == (len(watched),) * 3, listed
    assert (events["precision"], events["recall"], events["false_per_min"]) == (1.0, 1.0, 0.0)
    assert [label for label, _, _ in listed] == [s["label"] for s in watched]
    n = SEGMENT_S * FPS
    for (label, start, end), segment in zip(listed, watched):
        # Each event lies over its segment: it starts in the segment's first half and ends near its
        # end (the last window that still shows the action), before the next segment is half over.
        assert segment["start_frame"] < start < segment["start_frame"] + n / 2, (label, start, end, segment)
        assert segment["end_frame"] - n / 4 <= end < segment["end_frame"] + n / 2, (label, start, end, segment)
    assert events["replay_matches"], "the live events are the rules applied to the received predictions"
    assert row["accuracy"] > 0.7, row["accuracy"]  # the head's label, `unknown` or not

    # A smoothing head: the label hidden as `unknown` is recovered by replaying the smoothing, so
    # the replayed events equal the live ones there too.
    smoothed = result["modes"]["exact-hop1-ema0.3"]
    assert smoothed["events"]["replay_matches"] and smoothed["events"]["precision"] is not None
    sweep = {(r["min_score"], r["min_duration_s"]): r for r in row["event_sweep"]}
    assert sweep[(0.6, 1.0)]["events"] <= sweep[(0.6, 0.5)]["events"] <= sweep[(0.6, 0.0)]["events"]


def test_a_static_scene_gives_no_event(demo_bundle, tmp_path):
    from lrcn.stream.events import EventRules
    from lrcn.tools.stream_accuracy.stream_live import measure_static
    from lrcn.tools.stream_accuracy.stream_scoring import HeadMode

    video = tmp_path / "static.avi"
    sidecar = write_still(video, 8.0)
    result = measure_static(
        demo_bundle, video, sidecar, [HeadMode("exact-hop1")], tmp_path / "serve", EventRules(**RULES)
    )
    row = result["modes"]["exact-hop1"]
    assert row["predictions"] > 50 and row["frames_received"] == 200
    assert row["events"]["events"] == 0 and row["events"]["per_min"] == 0.0, row["events"]
    # Not only because `still` is ignored: the model saw nothing but still.
    assert row["head_labels"].get("still", 0) >= 0.9 * row["predictions"], row["head_labels"]
    for r in row["event_sweep"]:
        assert r["events"] == 0, r
