"""gst: sources on real GStreamer: files written here with ffmpeg, generated pipelines, a UDP
sender, a refused RTSP port and a GStreamer RTSP server on 127.0.0.1."""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.sources import Source, SourceOptions, SourceState, open_source
from lrcn.stream.sources.gstreamer import FORMATS, MISSING_BINDINGS, GstCapture, doctor_lines
from lrcn.stream.sampling import grid_indices
from lrcn.tools.evidence.ffmpeg_server import pattern_video
from lrcn.stream.video import read_frames
from tests.live_servers import (
    FFMPEG,
    free_port,
    gstreamer_rtsp_missing,
    read_across_a_server_restart,
    rtsp_server,
    run_to_end,
    states,
    wait_until,
    write_video,
)

pytestmark = pytest.mark.timeout(60)


def gstreamer_missing() -> str | None:
    try:
        import gi

        for namespace in ("Gst", "GstApp", "GstVideo"):
            gi.require_version(namespace, "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as err:
        return f"GStreamer's Python bindings are not installed ({err}): {MISSING_BINDINGS}"
    Gst.init(None)
    missing = [
        e
        for e in ("appsink", "uridecodebin", "videoconvert", "videotestsrc", "rawvideoparse", "avdec_h264")
        if Gst.ElementFactory.find(e) is None
    ]
    return f"GStreamer elements missing: {', '.join(missing)}" if missing else None


GSTREAMER_MISSING = gstreamer_missing()
needs_gstreamer = pytest.mark.skipif(GSTREAMER_MISSING is not None, reason=str(GSTREAMER_MISSING))
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 64)
FAST = SourceOptions(pace=False, ring_capacity=1024)
LIVE = SourceOptions(
    ring_capacity=1024, backoff_initial_s=0.2, backoff_max_s=1.0, open_timeout_s=5.0, read_timeout_s=3.0
)
CONNECTING, CONNECTED, LOST, RECONNECTING, ENDED, FAILED, STOPPED = SourceState


def h264_clip(path, size="320x240", seconds=2):
    return pattern_video(path, [("pattern", seconds)], size)


@needs_gstreamer
@needs_ffmpeg
def test_a_file_gives_every_frame_timestamped_and_the_sampled_frames_equal_the_pyav_captures(tmp_path):
    clip = h264_clip(tmp_path / "clip.mp4")
    capture = GstCapture(f"gst:{clip}", SIZE, SourceOptions())
    try:
        times = [t for t, _ in capture.frames()]
    finally:
        capture.close()
    with av.open(str(clip)) as container:
        assert times == pytest.approx([f.time for f in container.decode(video=0)]), "the file's own times, as PyAV's"

    events = []
    source = Source(
        f"gst:{clip}", SIZE, options=SourceOptions(fps=10, pace=False, ring_capacity=8), on_status=events.append
    )
    assert not source.live and source.lossless
    frames = []
    source.start()
    assert wait_until(lambda: frames.extend(source.ring.read_new()) or not source.running, 20)
    frames += source.ring.read_new()
    offline = read_frames(clip, SIZE, fps=10)
    assert [f.index for f in frames] == grid_indices([i / 25 for i in range(50)], fps=10)
    assert np.abs(np.stack([f.image for f in frames]).astype(int) - offline).mean() < 1.0, (
        "GStreamer's frames go through the PyAV capture's conversion"
    )
    assert source.stats().frames == 50 and source.stats().sampled == 20
    assert states(events) == [CONNECTING, CONNECTED, ENDED]
    assert re.fullmatch(r"320x240 \w+ at 25\.0 fps, decoder (?!none)\S+ \(gstreamer\)", events[1].reason), events[
        1
    ].reason


@needs_gstreamer
def test_a_custom_pipeline_ending_in_an_appsink_is_read_like_a_file():
    events = []
    uri = "gst:videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 ! appsink"
    frames = run_to_end(open_source(uri, SIZE, options=FAST, on_status=events.append, start=False))
    assert len(frames) == 50 and [f.index for f in frames] == list(range(50))
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(50)])
    assert all(f.image.shape == (*SIZE, 3) and f.image.dtype == np.uint8 for f in frames)
    assert states(events) == [CONNECTING, CONNECTED, ENDED]
    assert events[1].reason.startswith("320x240 ") and events[1].reason.endswith(
        " at 25.0 fps, decoder none (gstreamer)"
    )
    assert events[-1].reason == "end of video after 50 frames"


@needs_gstreamer
@needs_ffmpeg
def test_the_crop_is_cut_before_scaling_as_in_training(tmp_path):
    clip = h264_clip(tmp_path / "clip.mp4", seconds=1)
    crop = (160, 120, 160, 120)
    frames = run_to_end(Source(f"gst:{clip}", SIZE, options=SourceOptions(pace=False, crop=crop, ring_capacity=64)))
    images = np.stack([f.image for f in frames]).astype(int)
    assert np.abs(images - read_frames(clip, SIZE, crop=crop)).mean() < 1.0
    assert np.abs(images - read_frames(clip, SIZE)).mean() > 10, "the crop made a difference"
    with pytest.raises(LrcnError, match=r"crop \[160, 120, 200, 120\] reaches outside the 320x240 frame") as raised:
        open_source(f"gst:{clip}", SIZE, options=SourceOptions(crop=(160, 120, 200, 120)))
    assert "\n" not in str(raised.value)


@needs_gstreamer
@pytest.mark.parametrize("gst_format", list(FORMATS))
def test_each_raw_format_the_appsink_accepts_converts_to_the_same_picture(gst_format):
    def picture(caps):
        # 322x242: GStreamer pads these rows to 4 bytes, PyAV to its own alignment.
        uri = (
            f"gst:videotestsrc num-buffers=1 ! video/x-raw,width=322,height=242,format=RGB ! videoconvert ! "
            f"{caps} ! appsink"
        )
        capture = GstCapture(uri, (121, 161), SourceOptions())
        try:
            ((_, sample),) = list(capture.frames())
            return capture.to_rgb(sample).astype(float), capture.description
        finally:
            capture.close()

    reference, _ = picture("video/x-raw,format=RGB")
    image, description = picture(f"video/x-raw,format={gst_format}")
    assert description.startswith(f"322x242 {gst_format} ")
    if gst_format.startswith("GRAY"):
        assert np.array_equal(image[..., 0], image[..., 2])
        reference = reference @ [0.299, 0.587, 0.114]
        image = image[..., 0]
    assert np.abs(image - reference).mean() < 4, "planes, strides and colour taken as GStreamer laid them out"


@needs_gstreamer
def test_bad_pipelines_and_decoder_choices_are_one_line_errors_up_front(tmp_path):
    cases = [
        ("gst:videotestsrc ! ! appsink", "gst: pipeline does not parse: syntax error"),
        ("gst:videotestsrc ! nosuchelement ! appsink", 'gst: pipeline does not parse: no element "nosuchelement"'),
        ("gst:videotestsrc ! fakesink", "gst: pipeline has no appsink"),
        ("gst:videotestsrc ! tee name=t ! appsink t. ! appsink", "gst: pipeline has 2 appsinks; name the one"),
        (f"gst:{tmp_path / 'missing.mp4'}", "video not found"),
        ("gst:", "gst: needs a pipeline, a URI or a file path"),
    ]
    for uri, complaint in cases:
        with pytest.raises(LrcnError, match=complaint) as raised:
            open_source(uri, SIZE)
        assert "\n" not in str(raised.value)
    with pytest.raises(LrcnError, match="decoder 'cuda' does not apply to gst: sources: their pipeline picks"):
        open_source("gst:rtsp://127.0.0.1:1/live", SIZE, options=SourceOptions(decoder="cuda"))
    named = "gst:videotestsrc num-buffers=3 ! tee name=t ! queue ! appsink name=sink t. ! queue ! appsink"
    assert len(run_to_end(open_source(named, SIZE, options=FAST, start=False))) == 3, "the appsink named sink"


@needs_gstreamer
@pytest.mark.parametrize(
    "uri, live",
    [
        ("gst:clip.mp4", False),
        ("gst:file:///data/clip.mp4", False),
        ("gst:filesrc location=clip.mp4 ! decodebin ! videoconvert ! appsink", False),
        ("gst:videotestsrc ! appsink", False),
        ("gst:uridecodebin uri=file:///data/clip.mp4 ! videoconvert ! appsink", False),
        ("gst:videotestsrc is-live=true ! appsink", True),
        ("gst:rtsp://cam/live", True),
        ("gst:http://cam/video.mjpg", True),
        ("gst:rtspsrc location=rtsp://cam/live ! rtph264depay ! h264parse ! avdec_h264 ! appsink", True),
        ("gst:udpsrc port=5000 ! rawvideoparse ! appsink", True),
        ("gst:v4l2src device=/dev/video0 ! videoconvert ! appsink", True),
        ("gst:uridecodebin uri=rtsp://cam/live ! videoconvert ! appsink", True),
    ],
)
def test_a_source_is_live_unless_it_reads_a_file(uri, live):
    assert GstCapture.is_live(uri) is live


@needs_gstreamer
def test_stop_interrupts_a_live_pipeline():
    options = SourceOptions(open_timeout_s=30.0, read_timeout_s=30.0)
    silent = open_source(f"gst:udpsrc port={free_port()} ! rawvideoparse ! appsink", SIZE, options=options)
    running = open_source("gst:videotestsrc is-live=true ! video/x-raw,framerate=25/1 ! appsink", SIZE, options=options)
    try:
        assert wait_until(lambda: running.frames >= 5, 10)
        time.sleep(0.5)  # a while with no frame: still waiting, not failed
        assert silent.running and silent.state == CONNECTING, "waiting for a first frame that never comes"
    finally:
        for source in (silent, running):
            asked = time.monotonic()
            assert source.stop(timeout_s=10.0)  # well inside the 30 s timeouts: interrupted
            assert time.monotonic() - asked < 10.0
    assert silent.state == STOPPED and running.state == STOPPED


@needs_gstreamer
def test_a_live_pipeline_that_fails_is_retried_with_the_reason_and_given_up_only_when_asked():
    uri = f"gst:rtspsrc location=rtsp://127.0.0.1:{free_port()}/live ! rtph264depay ! avdec_h264 ! appsink"
    events = []
    options = SourceOptions(backoff_initial_s=0.05, max_attempts=3, open_timeout_s=3.0)
    run_to_end(open_source(uri, SIZE, options=options, on_status=events.append, start=False))
    assert states(events) == [CONNECTING, RECONNECTING, FAILED]
    assert re.fullmatch(
        r"attempt 2 in \d\.\d s: rtspsrc\d+: Could not open resource for reading and writing\. .*", events[1].reason
    ), events[1].reason
    assert all("\n" not in e.reason for e in events)
    assert events[-1].reason.endswith("gave up after 3 attempts")


def udp_bound(port: int) -> bool:
    with open("/proc/net/udp") as table:
        return any(line.split()[1].endswith(f":{port:04X}") for line in table.readlines()[1:])


@needs_gstreamer
def test_a_live_stream_that_goes_quiet_times_out_and_reconnects():
    port = free_port()
    uri = f"gst:udpsrc port={port} ! rawvideoparse width=64 height=48 format=i420 framerate=25/1 ! appsink"
    events = []
    source = open_source(
        uri,
        SIZE,
        on_status=events.append,
        options=SourceOptions(read_timeout_s=1.0, open_timeout_s=10.0, backoff_initial_s=0.2),
    )
    try:
        assert wait_until(lambda: udp_bound(port), 10), "udpsrc is listening"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(10):  # one raw I420 frame per datagram
                sender.sendto(bytes([40 + 20 * i]) * (64 * 48 * 3 // 2), ("127.0.0.1", port))
                time.sleep(0.04)
        assert wait_until(lambda: RECONNECTING in states(events), 10), states(events)
    finally:
        assert source.stop(timeout_s=10.0)
    assert states(events)[:4] == [CONNECTING, CONNECTED, LOST, RECONNECTING]
    assert events[2].reason == "no frame for 1 s" and source.frames == 10
    frames = source.ring.read_new()
    assert len(frames) == 10 and all(b.pts > a.pts for a, b in zip(frames, frames[1:]))


@needs_gstreamer
@pytest.mark.slow
def test_an_rtsp_stream_read_through_gstreamer_survives_its_server_restarting(tmp_path):
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(missing)
    video = write_video(tmp_path / "clip.mp4", n_frames=150, fourcc="mp4v")
    port = free_port()
    uri = f"gst:rtsp://127.0.0.1:{port}/live"
    assert GstCapture.is_live(uri)
    events = []
    source = Source(uri, SIZE, options=LIVE, on_status=events.append)
    read_across_a_server_restart(source, rtsp_server(video, port), port, frames=20, timeout_s=20)
    assert states(events) == [CONNECTING, CONNECTED, LOST, RECONNECTING, CONNECTED, STOPPED]
    assert re.fullmatch(r"128x96 \w+( at [\d.]+ fps)?, decoder (?!none)\S+ \(gstreamer\)", events[1].reason), events[
        1
    ].reason
    frames = source.ring.read_new()
    assert [f.index for f in frames] == list(range(len(frames))) and {f.segment for f in frames} == {0, 1}
    red, blue = frames[-1].image[..., 0].mean(), frames[-1].image[..., 2].mean()
    assert red > blue + 20, "the red the file was written with"


@needs_gstreamer
def test_doctor_names_the_gstreamer_version_and_its_hardware_decoders():
    version, decoders = doctor_lines()
    assert version.startswith("GStreamer 1.")
    assert decoders.startswith("GStreamer hardware video decoders: ")


def test_without_the_bindings_gst_sources_are_a_one_line_error_and_nothing_else_needs_them():
    code = (
        "import sys; sys.modules['gi'] = None\n"  # as if PyGObject were not installed
        "from lrcn.stream.errors import LrcnError\n"
        "from lrcn.stream.sources import open_source, scheme_of\n"
        "assert scheme_of('gst:videotestsrc ! appsink') == 'gst'\n"
        "try:\n"
        "    open_source('gst:videotestsrc ! appsink', (48, 64))\n"
        "except LrcnError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    assert done.stdout.startswith(MISSING_BINDINGS) and done.stdout.count("\n") == 1, done.stdout + done.stderr
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, stream.sources; print('gi' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert imports.stdout.strip() == "False", "importing stream.sources does not import GStreamer"


@needs_gstreamer
@needs_ffmpeg
def test_an_srt_stream_is_read_through_gstreamer(tmp_path):
    from gi.repository import Gst

    if Gst.ElementFactory.find("srtsrc") is None:
        pytest.skip("GStreamer's srtsrc is not installed (gstreamer1.0-plugins-bad)")
    clip = h264_clip(tmp_path / "clip.mp4", seconds=4)
    port = free_port()
    server = subprocess.Popen(
        [
            FFMPEG,
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(clip),
            "-c",
            "copy",
            "-f",
            "mpegts",
            f"srt://127.0.0.1:{port}?mode=listener",
        ]
    )
    events = []
    try:
        assert wait_until(lambda: udp_bound(port), 10), "ffmpeg's SRT listener is up"
        source = open_source(f"gst:srt://127.0.0.1:{port}", SIZE, options=LIVE, on_status=events.append)
        try:
            assert wait_until(lambda: source.frames >= 20, 20), (states(events), source.stats())
        finally:
            assert source.stop(timeout_s=10.0)
    finally:
        server.kill()
        server.wait(10)
    assert events[1].state == CONNECTED and "decoder avdec_h264" in events[1].reason
    assert source.ring.read_new()[0].image.shape == (*SIZE, 3)
