"""The service surface with real parts: `lrcn serve` as a process with its HTTP port scraped by a
real HTTP client and parsed by prometheus_client's parser, health endpoints of a running
pipeline, SIGHUP reloads of a real deployment file, JSON logs."""

import json
import re
import signal
from pathlib import Path

import msgspec
import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.service import ServiceServer
from tests.live_servers import FFMPEG, ffmpeg_tcp_ts, free_port, LIVE, served, wait_until, write_video
from tests.cli import cam_serve, metrics_url, start_lrcn, stop
from tests.receivers import Collector, get, joined, scrape

pytestmark = pytest.mark.timeout(120)
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def stream_value(samples: dict, name: str, stream: str) -> float:
    return samples[(name, (("stream", stream),))]


@needs_ffmpeg
def test_scraped_counters_agree_with_the_final_stats(exported_seed, tmp_path):
    """A camera that serves 3 s and goes away: once nothing moves, the scrape and the final stats
    (the numbers of the summary line) must say the same."""
    bundle, _, _ = exported_seed
    video = write_video(tmp_path / "clip.mp4", n_frames=75, fourcc="mp4v")
    port, metrics_port = free_port(), free_port()
    stats_json = tmp_path / "stats.json"
    process = None
    try:
        with served(ffmpeg_tcp_ts(video, port, loop=False), port):
            process = start_lrcn(
                *cam_serve(bundle, f"tcp://127.0.0.1:{port}"),
                "--metrics",
                metrics_port,
                "--endpoint",
                f"tcp://127.0.0.1:{free_port()}",
                "--stats-json",
                stats_json,
                "--backoff-max",
                "0.5",
            )
            url = metrics_url(process)
            assert url == f"http://127.0.0.1:{metrics_port}"
            predictions = lambda: stream_value(scrape(url), "lrcn_predictions_total", "cam")  # noqa: E731
            assert wait_until(lambda: predictions() > 0, 30)
            state = lambda s: scrape(url)[("lrcn_stream_state", (("state", s), ("stream", "cam")))]  # noqa: E731
            assert wait_until(lambda: state("reconnecting") == 1.0, 30), "the camera is gone and retried"

        # Nothing moves once the inference thread has taken every frame the camera delivered and
        # then the gap (which resets the head state).
        def settled(samples) -> bool:
            value = lambda name: stream_value(samples, name, "cam")  # noqa: E731
            taken = value("lrcn_frames_encoded_total") + value("lrcn_ring_dropped_frames_total")
            return taken == value("lrcn_frames_sampled_total") and value("lrcn_state_resets_total") >= 1

        assert wait_until(lambda: settled(scrape(url)), 10)
        samples = scrape(url)
    finally:
        _, err = stop(process) if process else ("", "")
    assert process.returncode == 0, err
    final = json.loads(stats_json.read_text())
    cam = final["streams"]["cam"]
    for metric, key in [
        ("lrcn_frames_decoded_total", "frames"),
        ("lrcn_frames_sampled_total", "sampled"),
        ("lrcn_flows_computed_total", "flows"),
        ("lrcn_frames_encoded_total", "encoded"),
        ("lrcn_predictions_total", "predictions"),
        ("lrcn_ring_dropped_frames_total", "dropped"),
        ("lrcn_publisher_dropped_predictions_total", "publisher_dropped"),
        ("lrcn_reconnects_total", "reconnects"),
        ("lrcn_state_resets_total", "resets"),
    ]:
        assert stream_value(samples, metric, "cam") == cam[key], metric
    assert cam["frames"] > 50 and cam["predictions"] > 10 and 0 < cam["flows"] < cam["sampled"]
    summary = next(line for line in err.splitlines() if "[cam] stopped, " in line)
    assert f"{cam['frames']} frames in" in summary and f"{cam['predictions']} predictions" in summary
    assert samples[("lrcn_capture_to_publish_seconds_count", ())] == cam["predictions"]
    assert samples[("lrcn_encoder_batch_size_count", ())] == final["encoder_calls"]
    assert (
        samples[("lrcn_modality_frames_encoded_total", (("modality", "rgb"),))]
        == final["encoded"]
        == final["encoded_by_modality"]["rgb"]
    )
    assert samples[("lrcn_encoder_call_seconds_count", (("encoder", "onnxruntime"),))] == final["encoder_calls"]
    build = [labels for (name, labels) in samples if name == "lrcn_build_info"]
    assert dict(build[0])["clip_length"] == "4" and dict(build[0])["classes"] == "bend,jumping_jack,wave_one_hand"
    assert samples[("process_resident_memory_bytes", ())] > 0


@needs_ffmpeg
def test_healthz_fails_while_inference_is_blocked_and_readyz_while_a_camera_is_lost(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    clip = write_video(tmp_path / "clip.mp4", n_frames=50, fourcc="mp4v")
    port = free_port()
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(video), id="file", loop=True), StreamConfig(f"tcp://127.0.0.1:{port}", id="cam")],
        PipelineOptions(endpoint="tcp://127.0.0.1:*", source=LIVE),
    )
    service = ServiceServer(pipeline, "127.0.0.1:0").start()
    try:
        assert get(service.url + "/healthz")[0] == 503, "not started: not healthy"
        with served(ffmpeg_tcp_ts(clip, port), port):
            pipeline.start()
            assert wait_until(lambda: get(service.url + "/readyz")[0] == 200, 20), get(service.url + "/readyz")
            assert get(service.url + "/healthz")[0] == 200
            # Block the inference thread where it really blocks: publishing, behind the publisher's lock.
            with pipeline.outbox._lock:
                assert wait_until(lambda: get(service.url + "/healthz")[0] == 503, 5)
                status, body = get(service.url + "/healthz")
                assert json.loads(body)["alive"] is False
            assert wait_until(lambda: get(service.url + "/healthz")[0] == 200, 5), "healthy again once unblocked"
        # The camera's server is gone.
        assert wait_until(lambda: get(service.url + "/readyz")[0] == 503, 15)
        not_ready = json.loads(get(service.url + "/readyz")[1])["not_ready"]
        assert set(not_ready) == {"cam"} and not_ready["cam"].split(":")[0] in ("lost", "reconnecting")
        assert get(service.url + "/healthz")[0] == 200, "a lost camera is not a sick process"
        status, jpeg = get(service.url + "/frame/file.jpg")
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        assert get(service.url + "/frame/nope.jpg")[0] == 404
    finally:
        pipeline.stop()
        service.stop()


DEPLOYMENT = """
metrics = "127.0.0.1:{metrics}"
endpoint = "tcp://127.0.0.1:{endpoint}"
{streams}
"""


def deployment(path: Path, metrics: int, endpoint: int, streams: dict[str, Path], top: str = "") -> Path:
    """`top`: more top-level settings, one per line."""
    tables = "\n".join(
        f'[[stream]]\nid = "{name}"\nsource = "{video}"\nloop = true\n' for name, video in streams.items()
    )
    path.write_text(top + DEPLOYMENT.format(metrics=metrics, endpoint=endpoint, streams=tables))
    return path


def test_sighup_adds_removes_and_keeps_streams_and_a_bad_file_changes_nothing(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    metrics, endpoint = free_port(), free_port()
    config = deployment(tmp_path / "cameras.toml", metrics, endpoint, {"keep": video, "drop": video})
    process = start_lrcn("serve", bundle, "--config", config, "--log-format", "json")
    collector = Collector(f"tcp://127.0.0.1:{endpoint}")
    collector.start()
    url = f"http://127.0.0.1:{metrics}"
    try:
        metrics_url(process)
        assert wait_until(
            lambda: len(collector.predictions("keep")) >= 5 and len(collector.predictions("drop")) >= 5, 30
        )
        deployment(config, metrics, endpoint, {"keep": video, "add": video}, top='allowed_hosts = ["cam.example"]\n')
        process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(collector.predictions("add")) >= 5, 30), "the added stream runs"
        assert wait_until(lambda: any(s["stats"].get("report") == "final" for s in collector.statuses("drop")), 5)
        assert set(json.loads(get(url + "/api/streams")[1])["streams"]) == {"keep", "add"}

        config.write_text(config.read_text() + '\n[[stream]]\nid = "broken"\nsorce = "x.avi"\n')
        process.send_signal(signal.SIGHUP)
        reloads = len(collector.predictions("keep"))
        assert wait_until(lambda: len(collector.predictions("keep")) >= reloads + 10, 20), "still serving"
        assert set(json.loads(get(url + "/api/streams")[1])["streams"]) == {"keep", "add"}, "nothing changed"
        dropped_after, kept = len(collector.predictions("drop")), len(collector.predictions("keep"))
        assert wait_until(lambda: len(collector.predictions("keep")) >= kept + 5, 20), "the pipeline ran on meanwhile"
    finally:
        _, err = stop(process)
        collector.close()
    assert process.returncode == 0, err
    assert len(collector.predictions("drop")) == dropped_after, "the removed stream stays removed"

    keep = collector.predictions("keep")
    assert [p["seq"] for p in keep] == list(range(keep[0]["seq"], keep[0]["seq"] + len(keep))), "seq without a gap"
    assert [p["frame_index"] for p in keep] == sorted(p["frame_index"] for p in keep)
    drop_final = [s for s in collector.statuses("drop") if s["stats"].get("report") == "final"]
    assert len(drop_final) == 1 and drop_final[0]["state"] == "stopped"

    records = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is one JSON object
    reloaded = [r for r in records if r["message"].startswith("reloaded")]
    assert len(reloaded) == 1 and reloaded[0]["added"] == ["add"] and reloaded[0]["removed"] == ["drop"]
    assert reloaded[0]["kept"] == ["keep"] and reloaded[0]["restarted"] == []
    later = [r for r in records if r["message"].startswith("reload: ")]
    assert len(later) == 1 and "allowed_hosts changed" in later[0]["message"], "the port's lock waits for a restart"
    refused = [r for r in records if r["message"].startswith("reload refused")]
    assert len(refused) == 1 and refused[0]["level"] == "error" and "sorce" in refused[0]["message"]
    states = lambda name: [r["state"] for r in records if r.get("stream") == name and "state" in r]  # noqa: E731
    assert states("keep") == ["connecting", "connected", "stopped"], "the kept stream ran untouched until shutdown"
    assert states("drop") == ["connecting", "connected", "stopped"] and states("add")[:2] == ["connecting", "connected"]


def test_reconfigure_restarts_a_changed_stream_and_keeps_the_others(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    streams = [StreamConfig(str(video), id="a", loop=True), StreamConfig(str(video), id="b", loop=True)]
    pipeline = Pipeline(bundle, streams, PipelineOptions(endpoint="tcp://127.0.0.1:*"))
    try:
        pipeline.start()
        assert wait_until(lambda: all(s.predictions >= 3 for s in pipeline.stats().streams.values()), 30)
        kept_source = pipeline.sources["a"]
        change = pipeline.reconfigure([streams[0], StreamConfig(str(video), id="b", loop=True, hop=2)])
        assert change == {"added": [], "removed": [], "restarted": ["b"], "kept": ["a"]}
        assert pipeline.sources["a"] is kept_source and pipeline.sources["b"].running
        assert wait_until(lambda: pipeline.stats().streams["b"].predictions >= 3, 30)
        with pytest.raises(LrcnError, match="no-such-file"):
            pipeline.reconfigure([streams[0], StreamConfig(str(tmp_path / "no-such-file.avi"), id="c")])
        assert set(pipeline.sources) == {"a", "b"}, "a refused reload changes nothing"
    finally:
        pipeline.stop()


def test_the_batch_size_histogram_counts_each_size_without_replaying_every_call():
    from lrcn.stream.metrics import batch_histogram

    histogram = batch_histogram({1: 5, 3: 2, 16: 10**9})  # a year of encoder calls is one addition per size
    assert histogram.cumulative()[:3] == [(1, 5), (2, 5), (4, 7)]
    assert histogram.count == 5 + 2 + 10**9 and histogram.sum == 5 + 6 + 16 * 10**9


def test_events_follow_the_published_predictions_and_low_scores_are_unknown(exported_seed):
    """Live events equal the rules applied to the predictions the subscriber received; with a
    threshold above every score, every label is `unknown` and no event starts."""
    from lrcn.stream.events import EVENT_ID_PATTERN, EventRules, EventState, Observation, finish, step

    bundle, _, video = exported_seed
    rules = EventRules(min_score=0.0, min_duration_s=0.2)
    strict = EventRules(min_score=0.999)
    pipeline = Pipeline(
        bundle,
        [
            StreamConfig(str(video), id="cam", pace=False, events=rules),
            StreamConfig(str(video), id="strict", pace=False, events=strict),
        ],
        PipelineOptions(endpoint="tcp://127.0.0.1:*"),
    )
    collector = Collector(pipeline.endpoint)
    collector.start()
    try:
        assert joined(pipeline, lambda: collector.messages)  # before anything is sent
        pipeline.start()
        assert pipeline.wait(60)
        pipeline.stop()
        assert wait_until(
            lambda: all(
                any(s["stats"].get("report") == "final" for s in collector.statuses(name)) for name in ("cam", "strict")
            ),
            10,
        ), "the last messages arrived"
    finally:
        pipeline.stop()
        collector.close()
    predictions = collector.predictions("cam")
    assert predictions and predictions[0]["seq"] == 0, "every prediction was received"
    state, expected = EventState(), []
    for p in predictions:
        state, events = step(rules, state, Observation(p["label"], p["score"], p["stream_time"], p["frame_index"]))
        expected += [msgspec.to_builtins(e) for e in events]
    expected += [msgspec.to_builtins(e) for e in finish(state)[1]]
    received = [m.payload for m in collector.messages if m.kind == "event" and m.stream == "cam"]
    strip = lambda e: {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in e.items()  # noqa: E731
        if k not in ("schema", "stream", "seq", "time", "id")
    }
    assert [strip(e) for e in received] == [strip(e) for e in expected] and expected
    starts = [e["id"] for e in received if e["type"] == "start"]
    assert [e["id"] for e in received if e["type"] == "end"] == starts and len(set(starts)) == len(starts), (
        "an event's start and end share one id, and no two events do"
    )
    assert all(re.fullmatch(EVENT_ID_PATTERN, i) for i in starts)
    assert [e["seq"] for e in received] == list(range(len(received)))
    assert {p["label"] for p in collector.predictions("strict")} == {"unknown"}
    assert all(max(p["probabilities"].values()) == p["score"] for p in collector.predictions("strict")), (
        "the probabilities are published unchanged"
    )
    assert not [m for m in collector.messages if m.kind == "event" and m.stream == "strict"]
