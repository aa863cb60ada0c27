"""Each `lrcn serve` flag reaches what it changes, seen from outside as a user would: the
published messages (through the JSONL sink, which misses nothing), the final stats, the log,
the process's threads, and what a real server accepts. Oracles: the offline runtime bundle on the
same frames, `stream.events.step` on the published predictions, the schedule of a paced file."""

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from lrcn.stream.events import EventRules, EventState, Observation, finish, step
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.tools.evidence.ffmpeg_server import keyframe_every, pattern_video
from tests.cli import cam_serve, lrcn, start_lrcn, stop
from tests.live_servers import (
    FFMPEG,
    BurstRelay,
    ffmpeg_tcp_ts,
    free_port,
    gstreamer_rtsp_missing,
    rtsp_server,
    served,
    wait_until,
)
from tests.offline import offline_windows

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg")]


def serve_to_end(bundle, tmp_path: Path, *args) -> tuple[list[dict], dict, str]:
    """`lrcn serve BUNDLE ARGS...` to its end: (every JSONL message, the final stats, stderr)."""
    jsonl, stats = tmp_path / "messages.jsonl", tmp_path / "stats.json"
    run = lrcn(
        "serve", bundle, *args, "--endpoint", "tcp://127.0.0.1:0", "--jsonl", jsonl, "--stats-json", stats, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in jsonl.read_text().splitlines()], json.loads(stats.read_text()), run.stderr


def predictions(messages: list[dict], stream: str) -> list[dict]:
    return [m for m in messages if m["topic"] == f"pred/{stream}"]


def test_top_k_and_backend_flags_win_over_the_file_and_no_pace_serves_a_file_faster_than_its_clock(
    exported_seed, tmp_path
):
    bundle = exported_seed[0]
    # ffmpeg's test pattern: the seed bundle is far from saturated there, so INT8 and FP32 differ
    # (on a still synthetic clip they agree to 1e-7 and the backend could not be told apart).
    video = pattern_video(tmp_path / "pattern.mp4", [("pattern", 3)], "64x64", *keyframe_every(25, exactly=False))
    config = tmp_path / "deploy.toml"
    config.write_text(f'top_k = 2\nbackend = "onnxruntime"\n\n[[stream]]\nid = "door"\nsource = "{video}"\n')
    messages, stats, _ = serve_to_end(
        bundle,
        tmp_path,
        video,
        "--name",
        "cam",
        "--config",
        config,
        "--top-k",
        "1",
        "--backend",
        "onnxruntime-int8",
        "--no-pace",
    )
    cam, door = predictions(messages, "cam"), predictions(messages, "door")
    assert cam and door and all(len(p["top_k"]) == 1 for p in cam + door), "--top-k 1 beat the file's top_k = 2"
    int8, fp32 = (
        offline_windows(load_runtime_bundle(bundle, backend), video) for backend in ("onnxruntime-int8", "onnxruntime")
    )
    classes = load_runtime_bundle(bundle).classes
    got = {tuple(p["window"]): [p["probabilities"][c] for c in classes] for p in cam}
    assert set(got) == set(int8)
    np.testing.assert_allclose([got[w] for w in int8], [int8[w] for w in int8], atol=1e-5)
    assert max(np.abs(np.array(got[w]) - fp32[w]).max() for w in fp32) > 1e-4, "the INT8 encoder, not the FP32 one"
    # door (the file's, paced) is captured on its clock; cam (--no-pace) ahead of it.
    span = lambda ps, key: ps[-1][key] - ps[0][key]  # noqa: E731
    assert span(door, "capture_time") >= span(door, "stream_time") - 0.05
    assert span(cam, "capture_time") < span(cam, "stream_time")
    assert stats["streams"]["cam"]["dropped"] == 0


def test_reset_every_restarts_the_continuous_state_and_the_windows_say_so(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    reset, _, _ = serve_to_end(
        bundle, tmp_path, video, "--name", "cam", "--no-pace", "--mode", "continuous", "--reset-every", "5"
    )
    windows = [p["window"] for p in predictions(reset, "cam")]
    sampled = [p["frame_index"] for p in predictions(reset, "cam")]  # continuous: one per sampled frame
    assert windows and all(sum(first <= i <= last for i in sampled) <= 5 for first, last in windows)
    assert len({first for first, _ in windows}) > 1, "the state restarted"
    (tmp_path / "plain").mkdir()
    plain, _, _ = serve_to_end(bundle, tmp_path / "plain", video, "--name", "cam", "--no-pace", "--mode", "continuous")
    assert {p["window"][0] for p in predictions(plain, "cam")} == {windows[0][0]}, "without it, one state all along"


def test_gather_ms_holds_frames_back_to_encode_them_together(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    _, stats, _ = serve_to_end(bundle, tmp_path, video, "--name", "cam", "--gather-ms", "300")
    sizes = {int(size): calls for size, calls in stats["batch_sizes"].items()}
    # A paced 10 fps file gives a frame per 100 ms; waiting 300 ms after one collects the next ones.
    assert sum(size * calls for size, calls in sizes.items()) / sum(sizes.values()) >= 2, sizes


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_threads_sets_the_encoders_thread_pool(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    processes = {
        n: start_lrcn(
            *cam_serve(bundle, video),
            "--loop",
            "--threads",
            n,
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--jsonl",
            tmp_path / f"{n}.jsonl",
        )
        for n in (1, 3)
    }
    try:
        assert wait_until(
            lambda: all(
                (tmp_path / f"{n}.jsonl").exists() and "pred/cam" in (tmp_path / f"{n}.jsonl").read_text()
                for n in processes
            ),
            60,
        )
        counts = {n: threads_of(process.pid) for n, process in processes.items()}
    finally:
        for process in processes.values():
            stop(process)
    assert counts[3] - counts[1] == 2, counts  # ONNX Runtime's intra-op pool: the caller and n - 1 threads


def test_cooldown_and_event_updates_shape_the_events_as_the_rules_say(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    video = pattern_video(
        tmp_path / "twice.mp4",
        [("black", 2), ("pattern", 2.5), ("black", 1), ("pattern", 2.5), ("black", 1.5)],
        "64x64",
        *keyframe_every(25, exactly=False),
    )
    rules = dict(min_score=0.0, min_duration_s=0.5, classes=("wave_one_hand",))
    watch = ["--classes", "wave_one_hand", "--min-score", "0", "--min-duration-s", "0.5"]
    (tmp_path / "plain").mkdir()
    plain, _, _ = serve_to_end(bundle, tmp_path / "plain", video, "--name", "cam", "--no-pace", *watch)
    shaped, _, _ = serve_to_end(
        bundle, tmp_path, video, "--name", "cam", "--no-pace", *watch, "--cooldown-s", "5", "--update-s", "0.5"
    )
    for messages, extra in ((plain, {}), (shaped, {"cooldown_s": 5.0, "update_s": 0.5})):
        state, expected = EventState(), []
        for p in predictions(messages, "cam"):
            state, events = step(
                EventRules(**rules, **extra),
                state,
                Observation(p["label"], p["score"], p["stream_time"], p["frame_index"]),
            )
            expected += [msgspec.to_builtins(e) for e in events]
        expected += [msgspec.to_builtins(e) for e in finish(state)[1]]
        received = [m for m in messages if m["topic"] == "event/cam"]
        key = lambda e: (e["type"], e["label"], e["start_frame"])  # noqa: E731
        assert [key(e) for e in received] == [key(e) for e in expected]
    types = lambda ms: [m["type"] for m in ms if m["topic"] == "event/cam"]  # noqa: E731
    assert types(plain).count("start") == 2 and "update" not in types(plain), "two pattern stretches, two events"
    assert types(shaped).count("start") == 1, "the second stretch began within the 5 s cooldown"
    assert types(shaped).count("update") >= 2, "an update every 0.5 s of the 2.5 s event"


def test_read_timeout_declares_a_silent_camera_lost(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    port, jsonl = free_port(), tmp_path / "messages.jsonl"
    lost = lambda: jsonl.exists() and "no frame for 1 s" in jsonl.read_text()  # noqa: E731
    with served(ffmpeg_tcp_ts(video, port), port):
        relay = BurstRelay(port, hold_s=3.0)  # frames come in bunches 3 s apart (the default timeout is 5 s)
        try:
            process = start_lrcn(
                *cam_serve(bundle, f"tcp://127.0.0.1:{relay.port}"),
                "--read-timeout-s",
                "1",
                "--max-attempts",
                "1",
                "--endpoint",
                "tcp://127.0.0.1:0",
                "--jsonl",
                jsonl,
            )
            try:
                assert wait_until(lambda: lost() or process.poll() is not None, 30)
            finally:
                _, err = stop(process)
        finally:
            relay.close()
    assert lost(), err[-2000:]


def test_rtsp_transport_udp_is_refused_by_a_tcp_only_server_that_serves_tcp(exported_seed, tmp_path):
    if missing := gstreamer_rtsp_missing():
        pytest.skip(missing)
    bundle, _, video = exported_seed
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    with served(rtsp_server(video, port, tcp_only=True), port):
        udp = lrcn(
            *cam_serve(bundle, url),
            "--rtsp-transport",
            "udp",
            "--max-attempts",
            "1",
            "--endpoint",
            "tcp://127.0.0.1:0",
            timeout=60,
        )
        tcp = start_lrcn(
            *cam_serve(bundle, url),
            "--rtsp-transport",
            "tcp",
            "--duration",
            "20",
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--jsonl",
            tmp_path / "tcp.jsonl",
        )
        try:
            assert wait_until(
                lambda: (tmp_path / "tcp.jsonl").exists() and "pred/cam" in (tmp_path / "tcp.jsonl").read_text(), 40
            )
        finally:
            stop(tcp)
    # The server answers 461 Unsupported Transport, which FFmpeg reports as this.
    assert udp.returncode == 1 and "cannot open source" in udp.stderr and "Protocol not supported" in udp.stderr, (
        udp.stderr[-2000:]
    )
