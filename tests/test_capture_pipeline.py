"""Capture as the whole pipeline sees it, with a real exported bundle and real servers: an
unpaced file that loses nothing and equals `lrcn evaluate`, frames arriving in bursts, a
timestamp break, and a camera that is gone for a minute."""

import time

import numpy as np
import pytest

from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sources import SourceOptions
from lrcn.stream.video import read_frames
from tests.live_servers import (
    FFMPEG,
    BurstRelay,
    ffmpeg_tcp_ts,
    free_port,
    gstreamer_rtsp_missing,
    rtsp_server,
    served,
    ts_with_timestamp_break,
    write_video,
)
from tests.receivers import ANY_PORT, Inbox, run_received

pytestmark = pytest.mark.timeout(120)
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def serve_until_done(bundle, configs, options, limit_s=60):
    return run_received(Pipeline(bundle, configs, options), duration_s=limit_s)


def test_an_unpaced_file_loses_no_frame_and_every_window_equals_lrcn_evaluate(keras_seed, tmp_path):
    from lrcn.models.evaluate import predict_videos
    from lrcn.models.experiment import load_bundle
    from lrcn.models.synth import write_continuous

    bundle_dir = keras_seed  # the Keras model, run offline by `lrcn evaluate`, is the oracle
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    assert spec.fps == 10
    video, _ = write_continuous(tmp_path / "ten-fps.avi", duration_s=75, size=64, fps=10.0, seed=4)  # 750 frames
    options = PipelineOptions(endpoint=ANY_PORT, source=SourceOptions(ring_capacity=8))  # far smaller than the file
    stats, inbox = serve_until_done(bundle, [StreamConfig(str(video), id="file", pace=False)], options)
    frames = read_frames(video, spec.input_size, spec.fps)
    assert len(frames) == 750, "a 10 fps file at the model's 10 fps: every frame is sampled"
    model, meta = load_bundle(bundle_dir)
    offline = predict_videos(model, meta.spec, {video: frames}, stride=1)[video]
    received = inbox.predictions("file")
    T = spec.clip_length
    assert [tuple(p["window"]) for p in received] == [(s, s + T - 1) for s in range(len(frames) - T + 1)]
    got = np.array([[p["probabilities"][c] for c in bundle.classes] for p in received])
    np.testing.assert_allclose(got, offline, atol=1e-4)
    stream = stats.streams["file"]
    assert stream.dropped == 0 and stream.encoded == 750 and stream.state == "ended"


@needs_ffmpeg
def test_frames_arriving_in_bursts_are_sampled_by_their_timestamps_not_their_arrival(exported_seed, tmp_path):
    bundle_dir, _, _ = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    video = write_video(tmp_path / "clip.mp4", n_frames=250, fourcc="mp4v")  # 25 fps
    port = free_port()
    with served(ffmpeg_tcp_ts(video, port), port):
        relay = BurstRelay(port, hold_s=1.0)
        try:
            options = PipelineOptions(endpoint=ANY_PORT, source=SourceOptions(read_timeout_s=5.0))
            pipeline = Pipeline(bundle, [StreamConfig(f"tcp://127.0.0.1:{relay.port}", id="cam")], options)
            inbox = Inbox(pipeline.endpoint)
            try:
                pipeline.start()
                assert inbox.until(lambda box: len(box.predictions()) >= 40, 30), pipeline.stats()
            finally:
                pipeline.stop()
                inbox.close()
        finally:
            relay.close()
    assert relay.bursts >= 3
    # T sampled frames at 10 fps span (T - 1) / 10 s of stream time: 7.5 frames of a 25 fps source.
    expected_span = (spec.clip_length - 1) * 25 / spec.fps
    spans = [p["window"][1] - p["window"][0] for p in inbox.predictions()]
    assert all(abs(span - expected_span) <= 1 for span in spans), sorted(set(spans))
    latencies = [p["latency_ms"] for p in inbox.predictions()]
    assert np.median(latencies) < 200, "each burst is processed at once, not replayed at its stream rate"


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["reset", "jump"])
def test_no_window_spans_a_timestamp_break(exported_seed, tmp_path, kind):
    bundle_dir, _, _ = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    video, boundary = ts_with_timestamp_break(tmp_path / "broken.ts", kind)
    options = PipelineOptions(endpoint=ANY_PORT)
    stats, inbox = serve_until_done(bundle, [StreamConfig(str(video), id="cam", pace=False)], options)
    windows = [tuple(p["window"]) for p in inbox.predictions("cam")]
    assert any(last < boundary for _, last in windows) and any(first >= boundary for first, _ in windows)
    assert all(last < boundary or first >= boundary for first, last in windows), "a window spans the break"
    assert stats.streams["cam"].jumps == 1 and stats.streams["cam"].resets >= 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_rtsp_camera_gone_for_a_minute_comes_back_with_default_settings(exported_seed, tmp_path):
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(missing)
    bundle_dir, _, _ = exported_seed
    video = write_video(tmp_path / "clip.mp4", n_frames=250, fourcc="mp4v")
    port = free_port()
    pipeline = Pipeline(
        load_runtime_bundle(bundle_dir),
        [StreamConfig(f"rtsp://127.0.0.1:{port}/live", id="door")],
        PipelineOptions(endpoint=ANY_PORT),
    )  # default capture settings: SourceOptions()
    inbox = Inbox(pipeline.endpoint)
    try:
        with served(rtsp_server(video, port), port):
            pipeline.start()
            assert inbox.until(lambda box: len(box.predictions()) >= 10, 40), pipeline.stats()
        gone_at = time.monotonic()
        inbox.until(lambda box: time.monotonic() - gone_at > 60, 70)
        before = len(inbox.predictions())
        with served(rtsp_server(video, port), port):
            assert inbox.until(lambda box: len(box.predictions()) >= before + 10, 40), pipeline.stats()
            back_after = time.monotonic() - gone_at
    finally:
        stats = pipeline.stop()
        inbox.close()
    states = [s["state"] for s in inbox.statuses("door") if s["stats"].get("report") is None]
    assert states[:2] == ["connecting", "connected"]
    after = states[2:]
    assert after[0] == "lost" and after.count("reconnecting") >= 3 and "connected" in after, after
    assert after.index("connected") > after.index("reconnecting")
    assert "failed" not in states and stats.streams["door"].reconnects == 1
    assert back_after < 60 + 25, "reconnected within the capped backoff of the server's return"
