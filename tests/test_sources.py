"""Capture threads on real inputs: video files written here, ffmpeg and GStreamer servers on
127.0.0.1, a burst relay, timestamp breaks, crops, decoders, stops and outages."""

import itertools
import os
import subprocess
import sys
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from lrcn.models.synth import read_labels, write_continuous
from lrcn.stream.errors import LrcnError
from lrcn.stream.sources import (
    Source,
    SourceOptions,
    SourceState,
    backoff_delay,
    open_source,
    scheme_of,
    stream_name,
)
from lrcn.stream.sources.pyav import device_problem, hardware_decoders
from lrcn.tools.evidence.ffmpeg_server import ffmpeg_sending, mpeg_ts, pattern_video
from lrcn.stream.video import read_frames
from tests.live_servers import (
    FFMPEG,
    ffmpeg_http_mjpeg,
    ffmpeg_tcp_ts,
    free_port,
    read_across_a_server_restart,
    gstreamer_rtsp_missing,
    rtsp_server,
    run_to_end,
    served,
    states,
    ts_with_timestamp_break,
    wait_until,
    write_video,
)

pytestmark = pytest.mark.timeout(60)

SIZE = (48, 64)
FAST = SourceOptions(pace=False, ring_capacity=1024)
LIVE = SourceOptions(
    ring_capacity=1024, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=5.0, read_timeout_s=3.0
)
CONNECTING, CONNECTED, LOST, RECONNECTING, ENDED, FAILED, STOPPED = SourceState
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def test_a_file_read_fast_gives_every_frame_once_in_order_resized_and_rgb(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=30)
    events = []
    frames = run_to_end(Source(str(video), SIZE, options=FAST, on_status=events.append))
    assert [f.index for f in frames] == list(range(30))
    assert {f.segment for f in frames} == {0}
    assert all(f.image.shape == (*SIZE, 3) and f.image.dtype == np.uint8 for f in frames)
    red, blue = frames[5].image[..., 0].mean(), frames[5].image[..., 2].mean()
    assert red > blue + 30, "written red in BGR order must read back red in RGB order"
    assert all(b.captured_at >= a.captured_at for a, b in itertools.pairwise(frames))
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(30)])
    assert states(events) == [CONNECTING, CONNECTED, ENDED]
    assert events[1].reason == "128x96 mjpeg at 25.0 fps, decoder cpu"
    assert events[-1].reason == "end of video after 30 frames" and events[-1].frames == 30


def test_the_capture_keeps_only_frames_on_the_model_grid_and_they_equal_read_frames(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=50)  # 25 fps, sampled at 10
    source = Source(str(video), SIZE, options=SourceOptions(fps=10, pace=False, ring_capacity=8))
    source.start()
    frames = []
    assert wait_until(lambda: frames.extend(source.ring.read_new()) or not source.running, 20)
    frames += source.ring.read_new()
    offline = read_frames(video, SIZE, fps=10)
    assert [f.index for f in frames] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38, 40, 43, 45, 48]
    assert np.array_equal(np.stack([f.image for f in frames]), offline), "live and training see the same pixels"
    assert source.stats().frames == 50 and source.stats().sampled == 20
    assert source.ring.stats().dropped == 0, "an unpaced file waits for room in an 8-frame ring"


def test_a_paced_file_delivers_frames_no_faster_than_its_frame_rate(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=11, fps=20.0)
    frames = run_to_end(Source(str(video), SIZE, options=SourceOptions()))
    assert len(frames) == 11
    span = frames[-1].captured_at - frames[0].captured_at
    assert span >= 10 / 20.0 * 0.9


def test_a_looped_file_keeps_counting_frames_and_starts_a_new_segment_each_pass(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=10)
    source = Source(str(video), SIZE, options=SourceOptions(pace=False, loop=True, ring_capacity=1024))
    frames = []
    source.start()
    try:
        assert wait_until(lambda: frames.extend(source.ring.read_new()) or len(frames) >= 35, 20)
    finally:
        assert source.stop(timeout_s=10.0), "stop() joins"
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert all(f.segment == f.index // 10 for f in frames)
    assert source.state == STOPPED and source.reconnects == 0


def test_stop_interrupts_a_paced_file(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=100, fps=5.0)
    source = open_source(str(video), SIZE)
    try:
        assert wait_until(lambda: source.frames >= 1, 10)
    finally:
        assert source.stop(timeout_s=10.0)
    assert source.frames < 100
    assert [e.state for e in source.poll_status()][-1] == STOPPED


def test_stop_interrupts_a_read_blocked_on_a_silent_server():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then never sends a byte
        port = silent.getsockname()[1]
        options = SourceOptions(open_timeout_s=30.0, read_timeout_s=30.0)
        source = open_source(f"tcp://127.0.0.1:{port}", SIZE, options=options)
        silent.settimeout(20)
        connection, _ = silent.accept()  # FFmpeg's open is now waiting for a first byte
        assert source.running and source.state == CONNECTING, "blocked in FFmpeg's open"
        asked = time.monotonic()
        # Well inside the 30 s timeouts: the blocked call was interrupted, not timed out.
        assert source.stop(timeout_s=10.0), "the blocked call was interrupted"
        assert time.monotonic() - asked < 10.0
        connection.close()
    assert source.state == STOPPED


def test_a_synthetic_continuous_stream_is_a_file_source_with_one_frame_per_label(tmp_path):
    video, labels = write_continuous(tmp_path / "stream.avi", duration_s=2.0, size=64, fps=25.0, seed=1)
    frames = run_to_end(open_source(str(video), (64, 64), options=FAST, start=False))
    assert [f.index for f in frames] == list(range(len(read_labels(labels)["labels"])))


def test_a_missing_or_corrupt_file_is_a_one_line_error_up_front_and_a_failed_status_in_the_thread(tmp_path):
    missing = tmp_path / "missing.avi"
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for path, complaint in ((missing, "video not found"), (corrupt, "video")):
        with pytest.raises(LrcnError, match=complaint) as raised:
            open_source(str(path), SIZE)
        assert "\n" not in str(raised.value)
        events = []
        run_to_end(Source(str(path), SIZE, options=FAST, on_status=events.append))
        assert states(events) == [CONNECTING, FAILED]
        assert str(path) in events[-1].reason and "\n" not in events[-1].reason


@pytest.mark.parametrize("uri", ["tcp://127.0.0.1:{port}", "http://127.0.0.1:{port}/s.mjpg", "9"])
def test_an_unreachable_live_source_fails_only_after_the_attempts_asked_for(uri):
    uri = uri.format(port=free_port())
    options = SourceOptions(backoff_initial_s=0.05, max_attempts=3, open_timeout_s=2.0, status_capacity=1)
    events = []
    source = Source(uri, SIZE, options=options, on_status=events.append)
    run_to_end(source)
    assert states(events) == [CONNECTING, RECONNECTING, FAILED]
    assert len(events) == 4
    assert events[-1].reason.endswith("gave up after 3 attempts")
    assert "cannot open source" in events[1].reason and "\n" not in events[1].reason
    assert source.poll_status() == [events[-1]] and source.status_dropped == 3


def test_by_default_a_live_source_is_never_given_up():
    assert SourceOptions().max_attempts is None
    events = []
    options = SourceOptions(backoff_initial_s=0.02, backoff_max_s=0.05, open_timeout_s=1.0)
    source = open_source(f"tcp://127.0.0.1:{free_port()}", SIZE, options=options, on_status=events.append)
    try:
        assert wait_until(lambda: sum(e.state == RECONNECTING for e in events) >= 12, 20)
    finally:
        assert source.stop()
    assert FAILED not in states(events) and states(events)[-1] == STOPPED


def test_an_unknown_url_scheme_or_decoder_is_a_one_line_error():
    with pytest.raises(LrcnError, match="unsupported source URL scheme 'ftp'"):
        open_source("ftp://example.com/clip.avi", SIZE)
    with pytest.raises(LrcnError, match="unknown decoder 'nvdec9'.*offers cpu, auto") as raised:
        open_source("rtsp://127.0.0.1:1/live", SIZE, options=SourceOptions(decoder="nvdec9"))
    assert "\n" not in str(raised.value)


def test_source_descriptions_and_backoff_are_plain_functions():
    assert [
        scheme_of(u)
        for u in (
            "0",
            "/dev/video1",
            "rtsp://h/x",
            "HTTP://h/x",
            "udp://@:5000",
            "clip.mp4",
            "pattern:25",
            "gst:videotestsrc ! appsink",
        )
    ] == ["camera", "camera", "rtsp", "http", "udp", "file", "pattern", "gst"]
    assert stream_name("tcp://127.0.0.1:9000") == "127-0-0-1-9000"
    assert stream_name("/dev/video2") == "camera2"
    assert [backoff_delay(n, 0.2, 1.0) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = [backoff_delay(9, 0.5, 10.0, jitter=0.2) for _ in range(200)]
    assert 8.0 <= min(jittered) < max(jittered) <= 10.0, "spread below the cap, never above it"


def quadrant_video(path, n_frames=20, size=(120, 160)):
    """A gradient with one distinct region: green at x 96..159, y 60..119, where a white square moves."""
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (width, height))
    for i in range(n_frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 2] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]  # red gradient (BGR)
        frame[60:, 96:] = (0, 200, 0)
        frame[70:86, 100 + i : 116 + i] = 255
        writer.write(frame)
    writer.release()
    return path


def test_the_model_sees_the_crop_cut_before_scaling(tmp_path):
    video = quadrant_video(tmp_path / "quadrants.avi")
    crop = (96, 60, 64, 60)
    frames = run_to_end(Source(str(video), SIZE, options=SourceOptions(pace=False, crop=crop, ring_capacity=64)))
    images = np.stack([f.image for f in frames]).astype(float)
    red, green, blue = images[..., 0].mean(), images[..., 1].mean(), images[..., 2].mean()
    assert green > 130 and red < 70 and blue < 70, "only the green region, no red gradient"
    whole = read_frames(video, SIZE)
    assert whole[..., 0].mean() > 80, "uncropped, the red gradient is there"
    assert np.array_equal(images.astype(np.uint8), read_frames(video, SIZE, crop=crop)), "training crops the same"


@needs_ffmpeg
def test_a_crop_outside_the_frame_is_a_one_line_error_for_a_file_and_a_retried_reason_for_a_camera(tmp_path):
    """The crop is checked on every connect: a camera whose resolution changed between two
    connections (two ffmpeg servers, one after the other, on one port) is retried with the reason,
    never failed for good, and reconnects once the resolution fits again."""
    video = quadrant_video(tmp_path / "quadrants.avi")  # 160x120
    smaller = write_video(tmp_path / "small.avi", n_frames=50, size=(96, 128))  # 128x96
    outside = SourceOptions(crop=(100, 0, 100, 50))
    with pytest.raises(LrcnError, match=r"crop \[100, 0, 100, 50\] reaches outside the 160x120 frame") as raised:
        open_source(str(video), SIZE, options=outside)
    assert "\n" not in str(raised.value)
    with pytest.raises(LrcnError, match="crop must be"):
        open_source(str(video), SIZE, options=SourceOptions(crop=(0, 0, 0, 10)))

    port = free_port()
    events = []
    options = replace(LIVE, crop=(0, 0, 140, 100))  # fits 160x120, not 128x96
    source = open_source(f"tcp://127.0.0.1:{port}", SIZE, options=options, on_status=events.append, start=False)
    try:
        with served(ffmpeg_tcp_ts(video, port), port):
            source.start()
            assert wait_until(lambda: source.state == CONNECTED and source.frames >= 5, 15), events
        with served(ffmpeg_tcp_ts(smaller, port), port):
            assert wait_until(lambda: any("reaches outside the 128x96 frame" in e.reason for e in events), 15), events
        refused = next(e for e in events if "reaches outside" in e.reason)
        assert refused.state == RECONNECTING and refused.reason.startswith("attempt ") and "\n" not in refused.reason
        assert source.running and FAILED not in states(events)
        with served(ffmpeg_tcp_ts(video, port), port):
            assert wait_until(lambda: source.reconnects == 1 and source.state == CONNECTED, 15), events
    finally:
        assert source.stop()
    assert FAILED not in states(events)


def test_a_directory_a_device_and_a_foreign_url_each_say_what_is_wrong(tmp_path):
    for uri, says in (
        (str(tmp_path), f"{tmp_path} is a directory, not a video file"),
        ("/dev/null", "/dev/null is a character device, not a video file (a camera is N or /dev/videoN)"),
        ("javascript:alert(1)", "unsupported source URL scheme 'javascript' in 'javascript:alert(1)'"),
        ("file://cams.example.com/a.avi", "a file URL must name a file on this machine"),
        (f"file://{tmp_path}/missing.avi", "video not found: file://"),
    ):
        with pytest.raises(LrcnError) as raised:
            open_source(uri, SIZE)
        assert says in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_a_file_url_reads_the_file_it_names(tmp_path):
    folder = tmp_path / "my clips"
    folder.mkdir()
    video = write_video(folder / "clip.avi", n_frames=12)
    url = "file://" + str(video).replace(" ", "%20")
    assert scheme_of(url) == "file" and stream_name(url) == "clip"
    frames = run_to_end(open_source(url, SIZE, options=FAST, start=False))
    assert [f.index for f in frames] == list(range(12))


def test_decoder_auto_falls_back_to_the_cpu_and_says_why_in_the_connected_status(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n_frames=10, fourcc="mp4v")
    events = []
    run_to_end(Source(str(video), SIZE, options=SourceOptions(pace=False, decoder="auto"), on_status=events.append))
    connected = next(e for e in events if e.state == CONNECTED).reason
    if any(device_problem(k) is None for k in hardware_decoders()):
        assert "decoder cpu" not in connected
    else:
        assert "decoder cpu (auto:" in connected, connected


def test_a_hardware_decoder_this_machine_cannot_open_fails_the_stream_with_the_reason(tmp_path):
    unusable = [k for k in hardware_decoders() if device_problem(k) is not None]
    if not unusable:
        pytest.skip(f"every hardware decoder this PyAV offers ({hardware_decoders()}) works here")
    video = write_video(tmp_path / "clip.mp4", n_frames=10, fourcc="mp4v")
    events = []
    run_to_end(Source(str(video), SIZE, options=SourceOptions(decoder=unusable[0]), on_status=events.append))
    assert states(events) == [CONNECTING, FAILED]
    assert events[-1].reason.startswith(f"decoder {unusable[0]} cannot be used here: ")


@pytest.mark.parametrize("kind", [k for k in ("cuda", "vaapi", "qsv", "videotoolbox")])
def test_hardware_decoding_gives_the_frames_cpu_decoding_gives(tmp_path, kind):
    if kind not in hardware_decoders():
        pytest.skip(f"this PyAV build has no {kind} decoder")
    if device_problem(kind) is not None:
        pytest.skip(f"no {kind} device here: {device_problem(kind)}")
    pattern_video(tmp_path / "clip.mp4", [("pattern", 2)], "640x360")
    cpu = run_to_end(Source(str(tmp_path / "clip.mp4"), SIZE, options=FAST))
    events = []
    hardware = run_to_end(
        Source(
            str(tmp_path / "clip.mp4"),
            SIZE,
            options=SourceOptions(pace=False, decoder=kind, ring_capacity=1024),
            on_status=events.append,
        )
    )
    assert f"decoder {kind}" in events[1].reason
    assert len(hardware) == len(cpu)
    difference = np.abs(np.stack([f.image for f in hardware]).astype(int) - np.stack([f.image for f in cpu])).mean()
    assert difference < 3


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["reset", "jump"])
def test_a_timestamp_reset_or_jump_starts_a_new_segment_at_that_frame(tmp_path, kind):
    video, boundary = ts_with_timestamp_break(tmp_path / "broken.ts", kind)
    source = Source(str(video), SIZE, options=SourceOptions(fps=10, pace=False, ring_capacity=256))
    frames = run_to_end(source)
    segments = {f.index: f.segment for f in frames}
    assert set(segments.values()) == {0, 1}
    first_of_second = min(i for i, s in segments.items() if s == 1)
    assert first_of_second == boundary, "the segment starts at the second part's first frame"
    assert source.jumps == 1
    assert all(
        b.pts - a.pts == pytest.approx(0.1, abs=0.021) for a, b in itertools.pairwise(frames) if a.segment == b.segment
    ), "each segment keeps its own 10 fps grid"


@needs_ffmpeg
@pytest.mark.parametrize(
    "serve, url",
    [(ffmpeg_tcp_ts, "tcp://127.0.0.1:{port}"), (ffmpeg_http_mjpeg, "http://127.0.0.1:{port}/s.mjpg")],
    ids=["tcp-mpegts", "http-mjpeg"],
)
def test_a_live_stream_survives_its_server_restarting(tmp_path, serve, url):
    video = write_video(tmp_path / "clip.mp4", n_frames=50, fourcc="mp4v")
    port = free_port()
    events = []
    source = Source(url.format(port=port), SIZE, options=LIVE, on_status=events.append)
    read_across_a_server_restart(source, serve(video, port), port, frames=10)
    assert states(events)[:5] == [CONNECTING, CONNECTED, LOST, RECONNECTING, CONNECTED]
    assert states(events)[-1] == STOPPED
    assert source.reconnects == 1
    frames = source.ring.read_new()
    assert [f.index for f in frames] == list(range(len(frames))), "no frame dropped with a large ring"
    assert {f.segment for f in frames} >= {0, 1}
    assert all(f.image.shape == (*SIZE, 3) for f in frames)


@pytest.mark.slow
def test_an_rtsp_stream_from_a_gstreamer_server_is_read_like_any_other(tmp_path):
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(missing)
    video = write_video(tmp_path / "clip.mp4", n_frames=150, fourcc="mp4v")
    port = free_port()
    events = []
    with served(rtsp_server(video, port), port):
        source = open_source(f"rtsp://127.0.0.1:{port}/live", SIZE, options=LIVE, on_status=events.append)
        try:
            assert wait_until(lambda: source.frames >= 20, 20), source.stats()
        finally:
            assert source.stop(timeout_s=10.0)
    assert source.segment == 0 and source.ring.read_new()[0].image.shape == (*SIZE, 3)
    assert events[1].reason.startswith("128x96 h264")


def test_the_runtime_modules_import_no_tensorflow():
    code = (
        "import sys, lrcn.stream.ring, lrcn.stream.sources, lrcn.stream.video, lrcn.stream.messages, "
        "lrcn.stream.publisher, lrcn.stream.keys, lrcn.tools.cli.watch; sys.exit(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_a_capture_thread_runs_nicer_than_the_threads_that_serve_every_stream():
    source = open_source("pattern:25:2", SIZE, options=SourceOptions(capture_nice=5))
    try:
        assert wait_until(lambda: source.frames >= 1, 5)
        capture_thread = source._thread.native_id
        base = os.getpriority(os.PRIO_PROCESS, 0)
        if base + 5 > 19:
            pytest.skip(f"this process already runs at nice {base}: Linux stops at 19")
        assert os.getpriority(os.PRIO_PROCESS, capture_thread) == base + 5
    finally:
        source.stop()


@needs_ffmpeg
def test_a_udp_mpegts_stream_is_read_by_listening_on_its_port(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n_frames=100, fourcc="mp4v")
    port = free_port()
    source = open_source(f"udp://127.0.0.1:{port}", SIZE, options=LIVE)
    sender = subprocess.Popen(ffmpeg_sending(video, f"udp://127.0.0.1:{port}?pkt_size=1316", mpeg_ts()))
    try:
        assert wait_until(lambda: source.frames >= 20, 20), source.stats()
    finally:
        sender.kill()
        sender.wait(10)
        assert source.stop(timeout_s=10.0)
    assert source.reconnects == 0 and source.ring.read_new()[0].image.shape == (*SIZE, 3)


@needs_ffmpeg
def test_an_rtmp_stream_is_read_from_an_rtmp_server(tmp_path):
    video = write_video(tmp_path / "clip.mp4", n_frames=100, fourcc="mp4v")
    port = free_port()
    server = [
        FFMPEG,
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(video),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "10",
        "-f",
        "flv",
        "-listen",
        "1",
        f"rtmp://127.0.0.1:{port}/live/cam",
    ]
    events = []
    with served(server, port):
        source = open_source(f"rtmp://127.0.0.1:{port}/live/cam", SIZE, options=LIVE, on_status=events.append)
        try:
            assert wait_until(lambda: source.frames >= 20, 20), source.stats()
        finally:
            assert source.stop(timeout_s=10.0)
    assert events[1].state == CONNECTED and "h264" in events[1].reason


def test_a_protocol_this_pyav_lacks_fails_the_stream_at_once_with_the_way_round():
    import av

    try:
        av.open("srt://127.0.0.1:9", timeout=(1, 1))
    except av.error.ProtocolNotFoundError:
        pass
    except av.FFmpegError:
        pytest.skip("this PyAV's FFmpeg reads srt://")
    events = []
    run_to_end(Source("srt://127.0.0.1:9", SIZE, options=LIVE, on_status=events.append))
    assert states(events) == [CONNECTING, FAILED], "retrying cannot add a protocol"
    assert "cannot read srt://" in events[-1].reason and "gst:srt://127.0.0.1:9" in events[-1].reason
