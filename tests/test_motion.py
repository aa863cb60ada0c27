"""Motion on real video files: each sampled frame's flow computed once in the capture thread,
never across a segment start, equal to the offline path's; and the idle gate, which publishes
`idle` and no event for a still scene while the same frames in motion go through unchanged."""

import time

import cv2
import numpy as np
import pytest

from lrcn.stream.flow import FLOW_OFFSET, MotionTracker, decode_field, encoding_scale, window_motion
from lrcn.stream.ring import FrameRing
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sources import SourceOptions, open_source
from lrcn.stream.video import read_frames, read_motion
from tests.bundles import real_video
from tests.live_servers import FFMPEG, ts_with_timestamp_break
from tests.media import still_video
from tests.receivers import run_pipeline

pytestmark = pytest.mark.timeout(120)
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
SIZE = (112, 112)


def read_all(source, until=None, timeout_s: float = 30.0) -> list:
    """Every frame a lossless source writes, read as the scheduler reads them, until it ends (or `until(frames)`)."""
    source.start()
    frames, deadline = [], time.monotonic() + timeout_s
    while source.running and not (until and until(frames)):
        assert time.monotonic() < deadline, source.stats()
        frames += source.ring.read_new()
        time.sleep(0.005)
    source.stop()
    return frames + source.ring.read_new()


def test_a_shifted_texture_gives_its_shift_and_a_repeated_frame_exactly_none():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), (5, 5), 1.5)
    moved = np.roll(texture, shift=(0, 2), axis=(0, 1))  # 2 px to the right
    tracker = MotionTracker()
    first, level = tracker.step(texture, segment=0)
    assert level is None and (first == FLOW_OFFSET).all(), "a segment's first frame: a zero field, no level"
    field, level = tracker.step(moved, segment=0)
    dx = decode_field(field, encoding_scale(SIZE))[12:-12, 12:-12, 0]
    assert abs(np.median(dx) - 2.0) < 0.1 and 1.8 < level < 2.2
    assert tracker.step(moved, segment=0)[1] == 0.0
    assert tracker.step(moved, segment=1)[1] is None, "no flow across a segment start"
    assert tracker.computed == 2


def test_a_ring_without_flow_holds_none_and_one_with_flow_keeps_each_frames_own():
    plain = FrameRing(capacity=2, size=(4, 4))
    plain.write(np.zeros((4, 4, 3), np.uint8), index=0, captured_at=0.0)
    assert plain.read_new()[0].flow is None
    ring = FrameRing(capacity=2, size=(4, 4), flow=True)
    for i, motion in enumerate([None, 0.5, 0.25]):
        ring.write(
            np.zeros((4, 4, 3), np.uint8),
            index=i,
            captured_at=0.0,
            flow=np.full((4, 4, 2), 100 + i, np.uint8),
            motion=motion,
        )
    frames = ring.read_new()
    assert [(f.index, int(f.flow[0, 0, 0]), f.motion) for f in frames] == [(1, 101, 0.5), (2, 102, 0.25)]


def test_each_sampled_frame_has_its_flow_computed_once_and_equal_to_the_offline_path(tmp_path):
    video = real_video(tmp_path)
    source = open_source(
        str(video), SIZE, options=SourceOptions(fps=10, pace=False, flow=True, ring_capacity=4), start=False
    )
    frames = read_all(source)
    fields, levels = read_motion(video, SIZE, 10)
    assert len(frames) == len(fields) == source.stats().sampled
    assert source.stats().flows == source.motion.computed == len(frames) - 1, "once per sampled frame but the first"
    np.testing.assert_array_equal(np.stack([f.flow for f in frames]), fields)
    assert [f.motion for f in frames] == [None, *levels[1:].tolist()] and np.isnan(levels[0])
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), read_frames(video, SIZE, 10))


def test_a_looping_file_computes_no_flow_across_its_restart_and_each_pass_equals_the_offline_one(tmp_path):
    video = real_video(tmp_path)
    fields, levels = read_motion(video, SIZE, 10)
    source = open_source(
        str(video), SIZE, options=SourceOptions(fps=10, pace=False, loop=True, flow=True, ring_capacity=4), start=False
    )
    frames = read_all(source, until=lambda got: any(f.segment == 2 for f in got))
    passes = [[f for f in frames if f.segment == s] for s in (0, 1)]
    for got in passes:
        assert got[0].motion is None and (got[0].flow == FLOW_OFFSET).all(), "the pass's first frame: no flow"
        np.testing.assert_array_equal(np.stack([f.flow for f in got]), fields)
        assert [f.motion for f in got][1:] == levels[1:].tolist()
    assert source.stats().flows == sum(f.motion is not None for f in frames)


@needs_ffmpeg
def test_a_timestamp_jump_starts_a_segment_live_and_offline_alike(tmp_path):
    video, boundary = ts_with_timestamp_break(tmp_path / "broken.ts", "jump")
    source = open_source(str(video), SIZE, options=SourceOptions(fps=10, pace=False, flow=True), start=False)
    frames = read_all(source)
    _, levels = read_motion(video, SIZE, 10)
    starts = [i for i, f in enumerate(frames) if f.motion is None]
    assert len(starts) == 2 and frames[starts[1]].index == boundary
    assert starts == np.flatnonzero(np.isnan(levels)).tolist()
    assert [f.motion for f in frames if f.motion is not None] == levels[~np.isnan(levels)].tolist()


# ---------------------------------------------------------------- the idle gate, through the pipeline


@needs_ffmpeg
def test_a_still_scene_is_idle_and_starts_no_event_while_the_same_frames_in_motion_do(exported_seed, tmp_path):
    bundle = load_runtime_bundle(exported_seed[0])
    still = still_video(tmp_path)
    stats, predictions, events = run_pipeline(bundle, still)
    assert predictions and {p["label"] for p in predictions} == {"idle"} and events == []
    assert all(p["motion"] == 0.0 and p["probabilities"] for p in predictions), "probabilities still published"
    assert stats.flows == stats.sampled - 1
    _, ungated, ungated_events = run_pipeline(bundle, still, idle_motion=0.0)
    assert "idle" not in {p["label"] for p in ungated} and ungated_events, "without the gate a still names a class"
    moving = real_video(tmp_path)
    _, predictions, events = run_pipeline(bundle, moving)
    assert "idle" not in {p["label"] for p in predictions} and any(e["type"] == "start" for e in events)


def test_the_gate_off_computes_no_flow_and_changes_no_prediction_of_moving_footage(exported_seed, tmp_path):
    bundle = load_runtime_bundle(exported_seed[0])
    video = real_video(tmp_path)
    on_stats, on, on_events = run_pipeline(bundle, video)
    off_stats, off, off_events = run_pipeline(bundle, video, idle_motion=0.0)
    assert off_stats.flows == 0 and all("motion" not in p for p in off)
    # Batches differ from run to run with the capture's timing, and so the encoder's last bits: 1e-4, as elsewhere.
    assert [(p["window"], p["label"]) for p in on] == [(p["window"], p["label"]) for p in off] and len(on) > 10
    np.testing.assert_allclose(
        [list(p["probabilities"].values()) for p in on], [list(p["probabilities"].values()) for p in off], atol=1e-4
    )
    assert [(e["type"], e["label"], e["start_frame"]) for e in on_events] == [
        (e["type"], e["label"], e["start_frame"]) for e in off_events
    ]
    _, levels = read_motion(video, bundle.meta.spec.input_size, bundle.meta.spec.fps)
    assert [p["motion"] for p in on] == [round(v, 4) for v in window_motion(levels, bundle.meta.spec.clip_length)], (
        "the published window motion is the offline path's"
    )


def test_the_frame_cache_keeps_a_videos_motion_as_the_offline_path_computes_it(tmp_path):
    from lrcn.models.frame_cache import FrameCache

    video = real_video(tmp_path)
    cache = FrameCache(tmp_path / "cache", SIZE, fps=10)
    fields, levels = cache.motion(video)
    kept = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "cache").iterdir())
    assert kept == ["flow.npy", "motion.npy"]
    again = cache.motion(video)
    expected = read_motion(video, SIZE, 10)
    for got in ((fields, levels), again):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert len(fields) == len(cache.frames(video))
