"""Clip recording on real video: H.264 files with a 1 s GOP made by ffmpeg, demuxed directly or
read by a real Source (a paced file, an ffmpeg-served MPEG-TS stream); clips are checked by
decoding them with PyAV."""

import gc
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from lrcn.stream.recording import ClipRecorder, RecordRules, check_record_dir, writer
from lrcn.stream.errors import LrcnError
from lrcn.stream.media_index import INDEX_NAME, MediaIndex
from lrcn.stream.sources import Source, SourceOptions, SourceState
from lrcn.stream.sources.pyav import PyavCapture
from lrcn.tools.evidence.ffmpeg_server import ffmpeg_sending
from lrcn.stream.stats import ClipStats
from tests.live_servers import FFMPEG, free_port, served, wait_until, write_video
from tests.media import Demux, finished, one_line, record_one
from tests.media import FPS

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")]

SIZE = (48, 64)


@pytest.fixture(scope="module")
def short_h264(h264) -> Path:
    """Its first 8 s."""
    path = h264.with_name("short.mp4")
    subprocess.run(
        [FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(h264), "-t", "8", "-c", "copy", str(path)],
        check=True,
        timeout=30,
    )
    return path


def decoded(path: Path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def source_frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if abs(frame.time - t) < 1e-6:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t}")


def clip_seconds(frames: list) -> float:
    return len(frames) / FPS


def test_a_clip_demuxed_faster_than_real_time_covers_pre_event_and_post_roll(h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=2, post_s=2), "cam 1")
    feeding = Demux(h264, recorder)

    def feed_at_five_times_real_time():
        started = time.monotonic()
        for packet in feeding.packets:
            recorder.feed(packet)
            feeding.t = float(packet.pts * feeding.video_stream.time_base)
            time.sleep(max(0.0, started + feeding.t / 5 - time.monotonic()))

    feeder = threading.Thread(target=feed_at_five_times_real_time, daemon=True)
    feeder.start()
    assert wait_until(lambda: (feeding.t or 0) >= 9.0, 10)
    path = recorder.start(8.0, "wave/hands", "1700000000000-0a1b2c3d")  # the inference thread: a second behind
    assert recorder.stats().recording
    assert wait_until(lambda: feeding.t >= 12.0, 10)
    recorder.end(11.0)
    assert finished(recorder, 1)
    assert recorder.stats().clips == 1, recorder.problem
    feeder.join(10)
    feeding.close()
    assert recorder.close()

    path = Path(path)
    assert path.parent == tmp_path / "clips" / "cam-1" and path.name == "1700000000000-0a1b2c3d.mp4"
    assert path.is_file()
    assert list(path.parent.iterdir()) == [path], "no .part left"
    frames = decoded(path)
    assert frames[0].key_frame
    assert abs(clip_seconds(frames) - 7.0) <= 1.0, clip_seconds(frames)
    # It starts at the keyframe at 6.0 (= 8.0 - pre_s) and runs to 13.0 (= 11.0 + post_s).
    assert np.array_equal(frames[0].to_ndarray(format="rgb24"), source_frame_at(h264, 6.0))
    assert frames[0].time == 0.0 and 12.9 <= 6.0 + frames[-1].time <= 13.3
    assert recorder.stats() == ClipStats(clips=1, failed=0, deleted=0, recording=False, preroll_s=0.0)
    assert recorder.take_problem() is None


def test_a_paced_file_source_feeds_its_recorder_from_the_capture_thread(short_h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "file")
    source = Source(str(short_h264), SIZE, options=SourceOptions(ring_capacity=512), recorder=recorder)
    path = record_while_reading(source, recorder, start_after=2.0, end_after=3.0)
    assert source.stop() and recorder.close()
    frames = decoded(path)
    assert frames[0].key_frame and abs(clip_seconds(frames) - 3.0) <= 1.0, clip_seconds(frames)
    assert np.array_equal(frames[0].to_ndarray(format="rgb24"), source_frame_at(short_h264, 1.0))


def test_a_live_mpeg_ts_stream_records_h264_into_mp4(short_h264, tmp_path):
    port = free_port()
    serve = ffmpeg_sending(short_h264, f"tcp://127.0.0.1:{port}?listen=1", ["-c", "copy", "-f", "mpegts"])
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "live")
    source = Source(f"tcp://127.0.0.1:{port}", SIZE, options=SourceOptions(ring_capacity=512), recorder=recorder)
    with served(serve, port):
        path = record_while_reading(source, recorder, start_after=2.0, end_after=3.0)
        assert source.stop() and recorder.close()
    frames = decoded(path)
    assert frames[0].key_frame and abs(clip_seconds(frames) - 3.0) <= 1.0, clip_seconds(frames)


def record_while_reading(source: Source, recorder: ClipRecorder, start_after: float, end_after: float) -> Path:
    """Start `source`; as its frames arrive, call start() and end() at `start_after` and
    `end_after` seconds past its first frame, as the inference thread would (a little later);
    wait for the clip; the clip's path."""
    source.start()
    first, path = None, None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not recorder.stats().clips:
        for frame in source.ring.read_new():
            first = frame.pts if first is None else first
            if path is None and frame.pts >= first + start_after + 0.3:
                path = recorder.start(first + start_after, "walk")
                assert path is not None
            elif path is not None and recorder.stats().recording and frame.pts >= first + end_after + 0.3:
                recorder.end(first + end_after)
        time.sleep(0.02)
    assert recorder.stats().clips == 1, (recorder.stats(), recorder.problem, source.stats())
    assert source.state is SourceState.CONNECTED, "recording does not disturb the capture"
    assert Path(path).is_file() and not Path(path + ".part").exists()
    return Path(path)


def test_over_the_quota_the_oldest_clips_are_deleted_never_the_newest(h264, tmp_path):
    clip_bytes = 3 * h264.stat().st_size / 20  # a 3 s clip at the file's bit rate
    rules = RecordRules(tmp_path / "clips", pre_s=1, post_s=1, max_gb=2.5 * clip_bytes / 1e9, min_free_gb=0)
    recorder = ClipRecorder(rules, "cam")
    feeding = Demux(h264, recorder)
    paths = [record_one(recorder, feeding, start) for start in (2.0, 7.0, 12.0)]
    assert wait_until(lambda: recorder.stats().deleted == 1, 10), "a clip past max_gb wakes retention"
    feeding.close()
    assert recorder.close()
    assert [p.exists() for p in paths] == [False, True, True]
    assert recorder.stats().clips == 3
    assert sum(p.stat().st_size for p in paths[1:]) <= rules.max_bytes
    assert recorder.take_problem() is None

    tiny = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1, max_gb=1e-9, min_free_gb=0), "other")
    feeding = Demux(h264, tiny)
    alone = record_one(tiny, feeding, 2.0)
    assert wait_until(lambda: not any(p.exists() for p in paths), 10), "the others go"
    assert wait_until(lambda: tiny.problem is not None, 10)
    assert tiny.close()
    feeding.close()
    assert alone.exists(), "the one just written stays"
    problem = tiny.take_problem()
    assert one_line(problem) and "alone" in problem and "max_gb" in problem, problem


def test_a_record_dir_that_cannot_be_made_or_written_is_one_line_error(tmp_path):
    (tmp_path / "afile").write_text("not a dir")
    with pytest.raises(LrcnError, match="cannot be created") as err:
        check_record_dir(tmp_path / "afile" / "clips")
    assert "\n" not in str(err.value)
    assert check_record_dir(tmp_path / "new" / "clips") == tmp_path / "new" / "clips"
    assert RecordRules(str(tmp_path / "x")).dir == tmp_path / "x"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(LrcnError, match="not writable"):
            check_record_dir(locked)
    for bad, field in [({"pre_s": -1}, "pre_s"), ({"post_s": -0.5}, "post_s"), ({"max_gb": 0}, "max_gb")]:
        with pytest.raises(LrcnError, match=field):
            RecordRules(tmp_path, **bad)


def test_a_record_dir_removed_mid_clip_is_a_problem_and_the_feed_goes_on(h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "cam")
    feeding = Demux(h264, recorder)
    feeding.to(3.0)
    path = Path(recorder.start(3.0, "fall"))
    part = path.with_name(path.name + ".part")
    assert wait_until(part.exists, 10)
    shutil.rmtree(tmp_path / "clips")  # the part file is open: the rename at the end fails
    recorder.end(4.0)
    feeding.to(6.0)
    assert finished(recorder, 1)
    problem = recorder.take_problem()
    assert one_line(problem) and problem.startswith("clip not written: ") and path.name in problem, problem
    assert "No such file" in problem
    assert recorder.take_problem() is None
    assert recorder.stats().failed == 1 and recorder.stats().clips == 0
    feeding.to(14.0)
    assert recorder.stats().preroll_s > 10, "the feed goes on"
    assert recorder.start(13.0, "fall") is not None
    feeding.to(16.0)
    recorder.close()
    feeding.close()
    problem = recorder.take_problem()
    assert one_line(problem) and "record dir" in problem and "is gone" in problem, problem
    assert recorder.stats().failed == 2


def test_a_source_keeps_capturing_when_its_record_dir_goes(short_h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=0.5), "file")
    source = Source(str(short_h264), SIZE, options=SourceOptions(ring_capacity=512), recorder=recorder)
    source.start()
    try:
        assert wait_until(lambda: source.stats().frames >= 30, 10)
        shutil.rmtree(tmp_path / "clips")  # it holds only the media index
        (tmp_path / "clips").write_text("a file where the dir was")
        assert recorder.start(1.0, "sit") is not None
        recorder.end(1.0)
        assert wait_until(lambda: recorder.problem is not None, 10)
        frames = source.stats().frames
        assert wait_until(lambda: source.stats().frames >= frames + 25, 5), "capture goes on"
        assert source.state is SourceState.CONNECTED
        problem = recorder.take_problem()
        assert one_line(problem) and "is gone" in problem, problem
    finally:
        source.stop()
    assert recorder.close()


def test_events_overlapping_in_pre_and_post_roll_get_a_clip_each_sharing_packets(h264, tmp_path):
    """An event starting in another's post-roll gets its own clip (its pre-roll holds the same
    packets), named by its id; neither clip is extended by the other."""
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "cam")
    feeding = Demux(h264, recorder)
    feeding.to(4.5)
    first = recorder.start(4.0, "wave", "1-first")
    recorder.end(4.5, "1-first")  # its clip runs to 5.5
    feeding.to(5.2)
    second = recorder.start(5.2, "point", "2-second")
    assert second != first and recorder.stats().recording
    feeding.to(8.0)
    assert recorder.stats().recording, "the later event is still open"
    recorder.end(7.0, "2-second")  # its clip runs to 8.0
    feeding.to(9.0)
    assert finished(recorder, 2)
    feeding.close()
    assert recorder.close()
    assert recorder.stats().clips == 2, recorder.problem
    assert sorted(p.name for p in Path(first).parent.iterdir()) == ["1-first.mp4", "2-second.mp4"]
    one, two = decoded(Path(first)), decoded(Path(second))
    assert abs(clip_seconds(one) - 2.5) <= 0.6, clip_seconds(one)  # 3.0 to 5.5
    assert abs(clip_seconds(two) - 4.0) <= 0.6, clip_seconds(two)  # 4.0 (the keyframe before 4.2) to 8.0
    # The second clip's pre-roll is the first's event and post-roll: the same source frames.
    assert np.array_equal(two[0].to_ndarray(format="rgb24"), source_frame_at(h264, 4.0))
    assert np.array_equal(one[25].to_ndarray(format="rgb24"), two[0].to_ndarray(format="rgb24"))


def test_a_clip_is_capped_at_max_clip_s_while_its_event_goes_on(h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1, max_clip_s=3), "cam")
    feeding = Demux(h264, recorder)
    feeding.to(3.0)
    path = Path(recorder.start(3.0, "walk", "9-long"))
    feeding.to(12.0)
    assert not recorder.stats().recording, "capped: the clip ended while the event is open"
    recorder.end(11.0, "9-long")  # too late to extend anything
    feeding.to()
    feeding.close()
    assert recorder.close() and recorder.stats().clips == 1
    frames = decoded(path)
    assert frames[0].key_frame and clip_seconds(frames) <= 3.0 + 0.2, clip_seconds(frames)
    assert np.array_equal(frames[0].to_ndarray(format="rgb24"), source_frame_at(h264, 2.0))


def test_a_timestamp_reset_ends_the_open_clip_with_what_it_has(short_h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "cam")
    feeding = Demux(short_h264, recorder)
    feeding.to(5.0)
    path = Path(recorder.start(4.0, "jump"))
    feeding.to()  # to 8.0: the event never ends
    again = av.open(str(short_h264))  # the same packets again: times restart at 0, no new connection
    for packet in again.demux(video=0):
        if packet.size:
            recorder.feed(packet)
    assert finished(recorder, 1)
    assert abs(clip_seconds(decoded(path)) - 5.0) <= 1.0  # 3.0 to 8.0
    assert recorder.start(7.0, "loop") is not None
    recorder.connected(again.streams.video[0])  # a reconnect, or a file's next loop
    assert finished(recorder, 2) and recorder.stats().clips == 2 and not recorder.stats().recording
    assert recorder.close()
    recorder.connected(again.streams.video[0])
    assert recorder.start(1.0, "late") is None, "closed"
    again.close()
    feeding.close()


def test_sources_without_timestamps_or_pyav_say_they_cannot_record(tmp_path):
    avi = write_video(tmp_path / "clip.avi", n_frames=10)
    recorder = ClipRecorder(RecordRules(tmp_path / "clips"), "avi")
    capture = PyavCapture(str(avi), SIZE, SourceOptions())
    try:
        assert not capture.timestamped
        recorder.connected(capture.video_stream, timestamped=capture.timestamped)
        for _ in capture.frames():
            pass
    finally:
        capture.close()
    assert recorder.start(0.1, "wave") is None
    problem = recorder.take_problem()
    assert one_line(problem) and "presentation times" in problem and "avi" in problem, problem
    with pytest.raises(LrcnError, match="only sources read through PyAV"):
        Source("pattern:25", SIZE, recorder=recorder)
    assert recorder.close()


def test_a_connection_that_ends_mid_clip_finishes_it_after_the_input_is_gone(h264, tmp_path):
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "cam")
    feeding = Demux(h264, recorder)
    feeding.to(3.0)
    path = Path(recorder.start(3.0, "lost"))
    feeding.to(12.0)
    feeding.close()  # the capture closes its container; queued packets outlive it
    del feeding
    gc.collect()
    assert finished(recorder, 1) and recorder.close()
    assert recorder.stats().clips == 1, recorder.problem
    assert abs(clip_seconds(decoded(path)) - 10.0) <= 1.0  # 2.0 to 12.0


def test_a_disk_too_slow_for_the_stream_gives_up_the_clip_not_the_capture(h264, tmp_path, monkeypatch):
    mux = writer.ClipFile.mux
    monkeypatch.setattr(writer.ClipFile, "mux", lambda self, kept: time.sleep(0.02) or mux(self, kept))
    monkeypatch.setattr(writer, "WRITER_BACKLOG_BYTES", 50_000)
    recorder = ClipRecorder(RecordRules(tmp_path / "clips", pre_s=1, post_s=1), "cam")
    feeding = Demux(h264, recorder)
    feeding.to(3.0)
    path = Path(recorder.start(3.0, "slow"))
    started = time.monotonic()
    feeding.to(10.0)  # 7 s of packets, about 270 KB
    assert time.monotonic() - started < 1.0, "feeding never waits for the disk"
    recorder.end(8.0)
    feeding.to(12.0)
    assert finished(recorder, 1) and recorder.close()
    feeding.close()
    problem = recorder.take_problem()
    assert one_line(problem) and "too slow" in problem and path.name in problem, problem
    assert recorder.stats().failed == 1
    left = [p for p in (tmp_path / "clips").rglob("*") if p.is_file() and not p.name.startswith(INDEX_NAME)]
    assert not left, "its part file is removed"
    assert not MediaIndex(tmp_path / "clips").entries(), "and its row in the index"
