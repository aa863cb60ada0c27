"""The `degraded` state: the pure decision (stream.degraded) on counted histories; its thresholds
as settings; a real starved camera (an ffmpeg server delivering a 2 fps MPEG-4 stream to a bundle
that samples more than twice that) and a real camera whose connection drops every second, each
seen by the log, /metrics and the status page's JSON."""

import json
import logging
import time
from dataclasses import replace

import pytest

from lrcn.stream.degraded import DegradedRules, Sample, assess
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.service import ServiceServer
from tests.live_servers import (
    FFMPEG,
    LIVE,
    DroppingServer,
    ffmpeg_tcp_ts,
    free_port,
    served,
    ts_clip,
    wait_until,
    write_video,
)
from tests.receivers import get, scrape

RULES = DegradedRules(window_s=10, warmup_s=5, max_resets=3)


def steady(rate: float, seconds: int, resets_every: int | None = None) -> list[Sample]:
    return [
        Sample(float(t), predictions=round(rate * t), resets=t // resets_every if resets_every else 0)
        for t in range(seconds + 1)
    ]


def test_far_fewer_predictions_than_the_bundle_samples_is_degraded_after_the_warmup():
    assert assess(RULES, steady(2, 30), connected_since=0.0, expected=10, now=30, degraded=False).startswith(
        "2.0 predictions/s"
    )
    assert assess(RULES, steady(9, 30), connected_since=0.0, expected=10, now=30, degraded=False) is None
    assert assess(RULES, steady(2, 30), connected_since=25.0, expected=10, now=30, degraded=False) is None, "warming up"
    assert assess(RULES, steady(2, 30), connected_since=None, expected=10, now=30, degraded=False) is None, (
        "not connected"
    )


def test_recovery_needs_a_margin_over_the_bound_so_it_does_not_flap():
    assert assess(RULES, steady(5.5, 30), connected_since=0.0, expected=10, now=30, degraded=False) is None
    assert assess(RULES, steady(5.5, 30), connected_since=0.0, expected=10, now=30, degraded=True) is not None
    assert assess(RULES, steady(6.5, 30), connected_since=0.0, expected=10, now=30, degraded=True) is None


def test_resets_in_a_loop_are_degraded_at_once_whatever_the_rate():
    why = assess(RULES, steady(10, 30, resets_every=2), connected_since=29.0, expected=10, now=30, degraded=False)
    assert why == "5 state resets in the last 10 s"
    assert (
        assess(RULES, steady(10, 30, resets_every=5), connected_since=0.0, expected=10, now=30, degraded=False) is None
    )


def test_the_thresholds_are_settings_a_flag_sets_and_overrides_the_file_and_a_bad_pair_is_one_line(tmp_path, capsys):
    from lrcn.stream.deploy import load_deployment
    from lrcn.tools.cli.commands import build_parser, main
    from lrcn.tools.cli.serving import options_from_args

    config = tmp_path / "cameras.toml"
    config.write_text('degraded_window_s = 20\ndegraded_max_resets = 9\n[[stream]]\nsource = "a.avi"\n')
    settings = load_deployment(config).settings
    parse = lambda *argv: build_parser("serve").parse_args(["serve", "b", *argv])  # noqa: E731
    assert options_from_args(parse(), {}).degraded == DegradedRules(), "the defaults: stream/settings.py"
    assert options_from_args(parse(), settings).degraded == DegradedRules(window_s=20, max_resets=9)
    flagged = options_from_args(parse("--degraded-window-s", "7", "--degraded-min-rate", "0.25"), settings).degraded
    assert flagged == DegradedRules(window_s=7, max_resets=9, min_rate=0.25), "a flag wins over the file's value"
    assert main(["serve", str(tmp_path), "a.avi", "--degraded-min-rate", "0.8"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "lrcn: error: degraded_recover_rate (0.6) must be at least degraded_min_rate (0.8), "
        "or a stream at the bound flaps\n"
    ), err
    assert main(["serve", str(tmp_path), "a.avi", "--degraded-max-resets", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: --degraded-max-resets must be an integer >= 1") and err.count("\n") == 1, err


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
def test_a_starved_camera_is_logged_exported_and_shown_degraded(exported_seed, tmp_path, caplog):
    bundle, _, _ = exported_seed
    video = write_video(tmp_path / "slow.mp4", n_frames=40, fps=2.0, fourcc="mp4v")
    port = free_port()
    pipeline = Pipeline(
        bundle,
        [StreamConfig(f"tcp://127.0.0.1:{port}", id="cam")],
        PipelineOptions(
            endpoint="tcp://127.0.0.1:0",
            source=replace(LIVE, open_timeout_s=15.0, read_timeout_s=10.0),
            degraded=DegradedRules(window_s=4, warmup_s=2),
        ),
    )
    # A 2 fps MPEG-TS stream is slow to probe and may reach the reader in bunches: long timeouts,
    # so that it is starved, never lost.
    fps = pipeline.bundle.meta.spec.fps
    assert fps > 4, "the source must deliver under half of what the bundle samples"
    service = ServiceServer(pipeline, "127.0.0.1:0").start()
    page = lambda: json.loads(get(service.url + "/api/streams")[1])["streams"]["cam"]  # noqa: E731
    try:
        with (
            caplog.at_level(logging.INFO, logger="lrcn"),
            served(ffmpeg_tcp_ts(video, port, codec="mpeg4", gop=2), port),
        ):
            pipeline.start()
            assert wait_until(lambda: page()["state"] == "degraded", 30), page()
            samples = scrape(service.url)
            shown = page()
            # The same trickle judged by a lower bound (as a camera that got its rate back): recovered.
            pipeline.options = replace(
                pipeline.options, degraded=DegradedRules(window_s=4, warmup_s=2, min_rate=0.02, recover_rate=0.05)
            )
            assert wait_until(lambda: page()["state"] == "connected", 15), page()
            recovered = page()
    finally:
        pipeline.stop()
        service.stop()
    assert "predictions/s" in shown["reason"] and shown["predictions"] > 0, shown
    assert samples[("lrcn_stream_state", (("state", "degraded"), ("stream", "cam")))] == 1.0
    assert samples[("lrcn_stream_state", (("state", "connected"), ("stream", "cam")))] == 0.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("degraded: ")]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and r.getMessage().startswith("recovered: ")]
    assert len(infos) == 1 and recovered["reason"].startswith("recovered: "), recovered


@pytest.mark.timeout(90)
@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
def test_a_camera_that_drops_its_connection_every_second_is_degraded_once_through_its_reconnects(
    exported_seed, tmp_path, caplog
):
    bundle, _, _ = exported_seed
    server = DroppingServer(ts_clip(tmp_path / "second.ts", 1.0).read_bytes(), hold_s=1.0)
    rules = DegradedRules(window_s=30, warmup_s=0, min_rate=0, recover_rate=0, max_resets=3)  # resets only
    pipeline = Pipeline(
        bundle,
        [StreamConfig(f"tcp://127.0.0.1:{server.port}", id="cam")],
        PipelineOptions(endpoint="tcp://127.0.0.1:0", source=replace(LIVE, backoff_max_s=0.5), degraded=rules),
    )
    service = ServiceServer(pipeline, "127.0.0.1:0").start()
    page = lambda: json.loads(get(service.url + "/api/streams")[1])["streams"]["cam"]  # noqa: E731
    exported = lambda: scrape(service.url)[("lrcn_stream_state", (("state", "degraded"), ("stream", "cam")))]  # noqa: E731
    try:
        with caplog.at_level(logging.INFO, logger="lrcn"):
            pipeline.start()
            assert wait_until(lambda: page()["state"] == "degraded", 40), (page(), server.connections)
            shown = page()
            assert wait_until(lambda: exported() == 1.0, 10)
            connections = server.connections
            assert wait_until(lambda: server.connections >= connections + 3, 20), "it keeps dropping"
            assert wait_until(lambda: page()["state"] == "degraded", 5), page()
    finally:
        pipeline.stop()
        service.stop()
        server.close()
    assert shown["reason"].endswith("state resets in the last 30 s"), shown
    assert shown["predictions"] > 0, "it delivers between the drops"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("degraded: ")]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in caplog.records if r.getMessage().startswith("recovered: ")], "no false recovery at a gap"


@pytest.mark.timeout(60)
def test_a_stream_that_samples_slower_or_predicts_every_hop_frames_is_judged_by_its_own_rate(
    exported_seed, tmp_path, caplog
):
    bundle, _, _ = exported_seed
    video = write_video(tmp_path / "eight-seconds.avi", n_frames=200)  # 25 fps: few loop restarts to cut windows
    file = dict(source=str(video), loop=True, pace=True)
    pipeline = Pipeline(
        bundle,
        [StreamConfig(id="hop4", hop=4, **file), StreamConfig(id="slow", fps=4.0, **file)],
        PipelineOptions(endpoint="tcp://127.0.0.1:0", degraded=DegradedRules(window_s=4, warmup_s=1)),
    )
    assert 4.0 < 0.5 * pipeline.bundle.meta.spec.fps, "judged by the bundle's fps, both would be degraded"
    with caplog.at_level(logging.INFO, logger="lrcn"):
        pipeline.start()
        try:
            assert wait_until(lambda: all(s.predictions >= 4 for s in pipeline.overview().values()), 30)
            time.sleep(6)  # past the warm-up and a window
            shown = {name: s.state for name, s in pipeline.overview().items()}
        finally:
            pipeline.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert shown == {"hop4": "connected", "slow": "connected"}, (shown, messages)
    assert not [m for m in messages if m.startswith("degraded: ")], messages
