"""The whole pipeline with real parts: an exported bundle, real video files and ffmpeg/GStreamer
servers on 127.0.0.1, real ZeroMQ subscribers."""

from itertools import groupby

import numpy as np
import pytest
import zmq

from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sources import SourceOptions
from lrcn.stream.video import read_frames
from tests.bundles import WEIZMANN_VIDEO
from tests.live_servers import (
    FFMPEG,
    ffmpeg_http_mjpeg,
    ffmpeg_tcp_ts,
    free_port,
    gstreamer_rtsp_missing,
    rtsp_server,
    served,
    write_video,
)
from tests.receivers import ANY_PORT, Inbox, joined, run_received
from tests.live_servers import LIVE
from tests.offline import offline_windows

pytestmark = pytest.mark.timeout(90)

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def different_videos(tmp_path, count: int = 4) -> list:
    """One video per class: Weizmann's when ../shared is present, else synthetic ones."""
    if WEIZMANN_VIDEO.is_file():
        root = WEIZMANN_VIDEO.parents[1]
        return [min((root / c).glob("*.avi")) for c in sorted(p.name for p in root.iterdir())][:count]
    from lrcn.models import synth

    paths = synth.write_dataset(tmp_path / "synth", videos_per_class=1, n_frames=40, size=64, seed=5, groups=1)
    return [paths[i] for i in range(count)]


def test_five_streams_in_one_process_each_equal_their_own_offline_predictions(exported_seed, tmp_path):
    from lrcn.models.synth import write_continuous

    bundle_dir, _, _ = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    videos = different_videos(tmp_path)
    synthetic, _ = write_continuous(
        tmp_path / "live.avi", duration_s=2.4, size=64, seed=2, min_segment_s=1.0, max_segment_s=1.4
    )
    videos.append(synthetic)
    configs = [StreamConfig(str(v), id=f"s{i}", hop=1 + i % 2) for i, v in enumerate(videos)]
    pipeline = Pipeline(bundle, configs, PipelineOptions(endpoint=ANY_PORT, stats_interval_s=0.5, gather_s=0.03))
    stats, inbox = run_received(pipeline, duration_s=30)
    assert pipeline.wait(0), "the pipeline ends by itself when its files end"
    assert len({m.stream for m in inbox.messages if m.stream}) == len(videos)
    for config, video in zip(configs, videos):
        expected = offline_windows(bundle, video, config.hop)
        received = inbox.predictions(config.id)
        assert [tuple(p["window"]) for p in received] == list(expected), config.id
        for p in received:
            got = np.array([p["probabilities"][c] for c in bundle.classes])
            np.testing.assert_allclose(got, expected[tuple(p["window"])], atol=1e-4)
        assert stats.streams[config.id].dropped == 0
        assert stats.streams[config.id].encoded == len(
            read_frames(video, bundle.meta.spec.input_size, bundle.meta.spec.fps)
        )
    firsts = [tuple(inbox.predictions(c.id)[0]["probabilities"].values()) for c in configs]
    assert len(set(firsts)) == len(configs), "the videos differ enough that mixed states would show"
    periodic = [s for s in inbox.statuses() if s["stats"].get("report") == "periodic"]
    assert periodic and {"fps_in", "fps_out", "latency_p95_ms", "dropped", "batch_sizes"} <= set(periodic[0]["stats"])
    finals = [s for s in inbox.statuses() if s["stats"].get("report") == "final"]
    assert sorted(s["stream"] for s in finals) == sorted(c.id for c in configs)
    assert all(s["state"] == "ended" for s in finals)
    assert stats.encoded == sum(int(k) * v for k, v in stats.batch_sizes.items())
    assert max(stats.batch_sizes) > 1, "gathering puts several streams' frames in one encoder call"
    assert stats.streams["s0"].latency_p99_ms >= stats.streams["s0"].latency_p50_ms > 0


def test_stop_drains_publishes_a_final_status_per_stream_and_closes(exported_seed, tmp_path):
    bundle_dir, _, video = exported_seed
    configs = [StreamConfig(str(video), id=name, loop=True) for name in ("one", "two")]
    pipeline = Pipeline(bundle_dir, configs, PipelineOptions(endpoint=ANY_PORT, heartbeat_interval_s=0.2))
    inbox = Inbox(pipeline.endpoint)
    try:
        assert inbox.join(pipeline)
        pipeline.start()
        assert inbox.until(lambda box: len(box.predictions("two")) >= 3, 20)
        stats = pipeline.stop()
        inbox.drain()
    finally:
        inbox.close()
    assert pipeline.wait(0), "stop returned with the sources drained and the inference thread done"
    assert any(m.kind == "heartbeat" and m.payload["streams"] == ["one", "two"] for m in inbox.messages)
    for name in ("one", "two"):
        final = inbox.statuses(name)[-1]
        assert (final["state"], final["stats"]["report"]) == ("stopped", "final")
        assert final["stats"]["predictions"] == stats.streams[name].predictions
        assert stats.streams[name].ring_pending == 0, "stop drains the ring"


def test_a_subscriber_that_stops_reading_does_not_hold_back_another(exported_seed, tmp_path):
    """At full speed, with a connected subscriber that never reads, the reading one gets every
    prediction and the publisher never refuses a send. (That the stalled one's queue is bounded
    and shed at its high-water mark is shown with 12 MB in test_publisher.)"""
    bundle_dir, _, video = exported_seed
    configs = [StreamConfig(str(video), id=f"s{i}", pace=False, loop=True) for i in range(3)]
    options = PipelineOptions(endpoint=ANY_PORT, source=SourceOptions(ring_capacity=1024))
    pipeline = Pipeline(bundle_dir, configs, options)
    context = zmq.Context()
    stalled = context.socket(zmq.SUB)
    stalled.rcvbuf, stalled.rcvhwm = 2048, 10  # tiny buffers, never read
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(pipeline.endpoint)
    inbox = Inbox(pipeline.endpoint, topics=["pred/", "heartbeat"])
    try:
        assert inbox.join(pipeline), "the reading subscriber joined"
        assert joined(pipeline, lambda: stalled.poll(0) != 0), "the stalled one joined (it holds a heartbeat)"
        pipeline.start()
        inbox.until(lambda box: False, 4.0)
        stats = pipeline.stop()
        inbox.drain()
    finally:
        inbox.close()
        stalled.close(linger=0)
        context.term()
    published = sum(s.predictions for s in stats.streams.values())
    assert published > 300
    assert len(inbox.predictions()) == published and sum(inbox.subscriber.missed.values()) == 0, (
        "the reading subscriber gets every prediction"
    )
    assert stats.publisher.shed == 0 and all(s.publisher_dropped == 0 for s in stats.streams.values())


@needs_ffmpeg
@pytest.mark.parametrize(
    "serve, url",
    [(ffmpeg_tcp_ts, "tcp://127.0.0.1:{port}"), (ffmpeg_http_mjpeg, "http://127.0.0.1:{port}/s.mjpg")],
    ids=["tcp-mpegts", "http-mjpeg"],
)
def test_a_live_stream_is_predicted_survives_its_server_restarting_and_resets_at_the_gap(
    exported_seed, tmp_path, serve, url
):
    bundle_dir, _, _ = exported_seed
    video = write_video(tmp_path / "clip.mp4", n_frames=50, fourcc="mp4v")
    port = free_port()
    pipeline = Pipeline(
        bundle_dir, [StreamConfig(url.format(port=port), id="cam")], PipelineOptions(endpoint=ANY_PORT, source=LIVE)
    )
    inbox = Inbox(pipeline.endpoint)
    states = lambda: [s["state"] for s in inbox.statuses() if "report" not in s["stats"]]
    try:
        with served(serve(video, port), port):
            pipeline.start()
            assert inbox.until(lambda box: len(box.predictions()) >= 3, 20), states()
        assert inbox.until(lambda box: "reconnecting" in states(), 15), states()
        before = len(inbox.predictions())
        with served(serve(video, port), port):
            assert inbox.until(lambda box: len(box.predictions()) >= before + 3, 20), states()
        stats = pipeline.stop()
        inbox.drain()
    finally:
        pipeline.stop()
        inbox.close()
    # Each failed attempt while the server is away repeats "reconnecting": the sequence of changes is the contract.
    assert [state for state, _ in groupby(states())][:5] == [
        "connecting",
        "connected",
        "lost",
        "reconnecting",
        "connected",
    ]
    reconnected = [s for s in inbox.statuses() if s["state"] == "connected"][1]
    first_new_frame = reconnected["stats"]["frames"]
    assert reconnected["stats"]["segment"] == 1
    windows = [tuple(p["window"]) for p in inbox.predictions()]
    assert not any(first < first_new_frame <= last for first, last in windows), "no window spans the gap"
    assert any(first >= first_new_frame for first, _ in windows), "predictions resumed after the gap"
    assert stats.streams["cam"].reconnects == 1 and stats.streams["cam"].resets >= 1


@pytest.mark.slow
def test_an_rtsp_stream_from_a_gstreamer_server_is_predicted(exported_seed, tmp_path):
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(missing)
    bundle_dir, _, _ = exported_seed
    video = write_video(tmp_path / "clip.mp4", n_frames=150, fourcc="mp4v")
    port = free_port()
    with served(rtsp_server(video, port), port):
        pipeline = Pipeline(
            bundle_dir,
            [StreamConfig(f"rtsp://127.0.0.1:{port}/live", id="rtsp")],
            PipelineOptions(endpoint=ANY_PORT, source=LIVE),
        )
        inbox = Inbox(pipeline.endpoint, topics=["pred/"])
        try:
            pipeline.start()
            assert inbox.until(lambda box: len(box.predictions()) >= 5, 30), pipeline.stats()
        finally:
            pipeline.stop()
            inbox.close()
