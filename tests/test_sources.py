import itertools
import subprocess
import sys

import numpy as np
import pytest

from models.synth import read_labels, write_continuous
from stream.errors import LrcnError
from stream.sources import (
    CONNECTED,
    CONNECTING,
    ENDED,
    FAILED,
    LOST,
    RECONNECTING,
    STOPPED,
    Source,
    SourceOptions,
    backoff_delay,
    capture_url,
    open_source,
    source_kind,
    stream_name,
)
from tests.live_servers import (
    FFMPEG,
    ffmpeg_http_mjpeg,
    ffmpeg_tcp_ts,
    free_port,
    gstreamer_rtsp_missing,
    rtsp_server,
    served,
    wait_until,
    write_video,
)

pytestmark = pytest.mark.timeout(60)

SIZE = (48, 64)
FAST = SourceOptions(pace=False, ring_capacity=1024)
LIVE = SourceOptions(ring_capacity=1024, backoff_initial_s=0.2, backoff_max_s=1.0, max_attempts=None,
                     open_timeout_s=5.0, read_timeout_s=3.0)
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def states(events) -> list[str]:
    """Event states with consecutive repeats folded: [a, b, b, c] -> [a, b, c]."""
    folded = []
    for event in events:
        if not folded or folded[-1] != event.state:
            folded.append(event.state)
    return folded


def run_to_end(source: Source, timeout_s: float = 20.0):
    source.start()
    assert wait_until(lambda: not source.running, timeout_s)
    return source.ring.read_new()


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
    assert states(events) == [CONNECTING, CONNECTED, ENDED]
    assert events[-1].reason == "end of video after 30 frames" and events[-1].frames == 30


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
        assert source.stop(timeout_s=1.0), "stop() joins within a second"
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert all(f.segment == f.index // 10 for f in frames)
    assert source.state == STOPPED and source.reconnects == 0


def test_stop_interrupts_a_paced_file_within_a_second(tmp_path):
    video = write_video(tmp_path / "clip.avi", n_frames=100, fps=5.0)
    source = open_source(str(video), SIZE)
    try:
        assert wait_until(lambda: source.frames >= 1, 10)
    finally:
        assert source.stop(timeout_s=1.0)
    assert source.frames < 100
    assert [e.state for e in source.poll_status()][-1] == STOPPED


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
def test_an_unreachable_live_source_fails_after_its_attempts_and_no_status_is_lost_to_the_callback(uri):
    uri = uri.format(port=free_port())
    options = SourceOptions(backoff_initial_s=0.05, max_attempts=3, open_timeout_s=2.0, status_capacity=1)
    events = []
    source = Source(uri, SIZE, options=options, on_status=events.append)
    run_to_end(source)
    assert states(events) == [CONNECTING, RECONNECTING, FAILED]
    assert len(events) == 4
    assert events[-1].reason.endswith("gave up after 3 attempts")
    assert source.poll_status() == [events[-1]] and source.status_dropped == 3


def test_an_unknown_url_scheme_is_a_one_line_error():
    with pytest.raises(LrcnError, match="unsupported source URL scheme 'ftp'"):
        open_source("ftp://example.com/clip.avi", SIZE)


def test_source_descriptions_and_backoff_are_plain_functions():
    assert [source_kind(u) for u in ("0", "rtsp://h/x", "HTTP://h/x", "udp://@:5000", "clip.mp4")] == \
        ["camera", "url", "url", "url", "file"]
    assert stream_name("tcp://127.0.0.1:9000") == "127.0.0.1-9000"
    assert capture_url("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000?overrun_nonfatal=1&fifo_size=50000000"
    assert capture_url("udp://127.0.0.1:5000?fifo_size=1") == "udp://127.0.0.1:5000?fifo_size=1&overrun_nonfatal=1"
    assert capture_url("tcp://127.0.0.1:5000") == "tcp://127.0.0.1:5000"
    assert [backoff_delay(n, 0.2, 1.0) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


@needs_ffmpeg
@pytest.mark.parametrize("serve, url", [(ffmpeg_tcp_ts, "tcp://127.0.0.1:{port}"),
                                        (ffmpeg_http_mjpeg, "http://127.0.0.1:{port}/s.mjpg")],
                         ids=["tcp-mpegts", "http-mjpeg"])
def test_a_live_stream_survives_its_server_restarting(tmp_path, serve, url):
    video = write_video(tmp_path / "clip.mp4", n_frames=50, fourcc="mp4v")
    port = free_port()
    events = []
    source = Source(url.format(port=port), SIZE, options=LIVE, on_status=events.append)
    try:
        with served(serve(video, port), port):
            source.start()
            assert wait_until(lambda: source.frames >= 10, 15), states(events)
        assert wait_until(lambda: RECONNECTING in states(events), 10), states(events)
        frames_before_restart = source.frames
        with served(serve(video, port), port):
            assert wait_until(lambda: source.segment == 1 and source.frames >= frames_before_restart + 10, 15), \
                states(events)
            assert source.stop(timeout_s=1.0), "stopped while the server still streams"
    finally:
        source.stop()
    assert states(events) == [CONNECTING, CONNECTED, LOST, RECONNECTING, CONNECTED, STOPPED]
    assert source.reconnects == 1
    frames = source.ring.read_new()
    assert [f.index for f in frames] == list(range(len(frames))), "no frame dropped with a large ring"
    assert {f.segment for f in frames} == {0, 1}
    assert all(f.image.shape == (*SIZE, 3) for f in frames)


@pytest.mark.slow
def test_an_rtsp_stream_from_a_gstreamer_server_is_read_like_any_other(tmp_path):
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(missing)
    video = write_video(tmp_path / "clip.mp4", n_frames=150, fourcc="mp4v")
    port = free_port()
    with served(rtsp_server(video, port), port):
        source = open_source(f"rtsp://127.0.0.1:{port}/live", SIZE, options=LIVE)
        try:
            assert wait_until(lambda: source.frames >= 20, 20), source.stats()
        finally:
            assert source.stop(timeout_s=1.0)
    assert source.segment == 0 and source.ring.read_new()[0].image.shape == (*SIZE, 3)


def test_the_runtime_modules_import_no_tensorflow():
    code = ("import sys, stream.ring, stream.sources, stream.messages, stream.publisher, stream.keys, tools.watch; "
            "sys.exit(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
