"""Clips through `lrcn serve --record`: an event's end message names an MP4 that plays and spans
pre-roll + event + post-roll within one GOP; a record dir that goes away mid-run becomes a status
reason while the stream goes on. Real parts: an H.264 MP4 made by ffmpeg, the seed bundle, the
JSONL sink as the recorder of messages, PyAV to play the clip."""

import os
import shutil
import time
from pathlib import Path

import av
import pytest

from lrcn.stream.media_index import MediaIndex
from lrcn.tools.evidence.ffmpeg_server import keyframe_every, pattern_video
from tests.cli import serve_events

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")]

GOP_S = 1.0


@pytest.fixture(scope="module")
def dark_bright_dark(tmp_path_factory) -> Path:
    """4 s black, 6 s of ffmpeg's test pattern, 5 s black; H.264 with a keyframe every second. The
    checked-in bundle is taught to call black `bend` and the pattern `wave_one_hand`
    (tests/test_checked_in_bundle.py checks that it does)."""
    path = tmp_path_factory.mktemp("video") / "dark-bright-dark.mp4"
    pattern_video(path, [("black", 4), ("pattern", 6), ("black", 5)], "64x64", *keyframe_every(25))
    return path


def played_seconds(path: Path) -> tuple[float, int, bool]:
    """(duration from the first frame's time to the last frame's end, frames, first frame is a keyframe)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        period = 1 / float(stream.average_rate)
        return frames[-1].time + period - frames[0].time, len(frames), frames[0].key_frame


def test_the_clip_of_an_event_plays_and_spans_pre_roll_event_and_post_roll(exported_seed, dark_bright_dark, tmp_path):
    bundle, _, _ = exported_seed
    clips = tmp_path / "clips"
    foreign = [clips / "cam" / "mine.mp4", clips / "cam" / "mine.mp4.part", clips / "other.mp4"]  # a user's own files
    for number, path in enumerate(foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
        os.utime(path, (time.time() - 10**6 * number, time.time() - 10**6 * number))
    messages, err = serve_events(
        bundle, dark_bright_dark, tmp_path, "--record", clips, "--pre-roll", "1", "--post-roll", "1.5"
    )
    events = [m for m in messages if m["topic"] == "event/cam"]
    assert [(e["type"], e["label"]) for e in events] == [("start", "wave_one_hand"), ("end", "wave_one_hand")], err
    end = events[1]
    assert 3.5 <= end["start_time"] <= 5.0 and 9.5 <= end["end_time"] <= 10.5, "the pattern runs from 4 s to 10 s"
    clip = Path(end["clip"])
    assert clip.parent == clips / "cam" and clip.is_file() and list(clips.rglob("*.part")) == [foreign[1]]
    assert all(path.read_bytes() == b"not ours" for path in foreign), "retention leaves others' files alone"
    assert clip.name == f"{end['id']}.mp4"
    assert sorted(entry.path for entry in MediaIndex(clips).entries() if entry.finished) == sorted(
        f"cam/{end['id']}{suffix}" for suffix in (".mp4", ".jpg", "-start.jpg")
    ), "the clip and its snapshots"
    seconds, frames, starts_with_a_keyframe = played_seconds(clip)
    expected = 1 + end["duration_s"] + 1.5
    assert abs(seconds - expected) <= GOP_S, (seconds, expected)
    assert starts_with_a_keyframe and frames >= (expected - GOP_S) * 25, "every frame of that span decodes"
    final = [m for m in messages if m["topic"] == "status/cam" and m["stats"].get("report") == "final"][-1]
    assert final["stats"]["clips"]["clips"] == 1 and final["stats"]["clips"]["failed"] == 0


def test_a_record_dir_that_goes_away_is_a_status_reason_and_the_stream_goes_on(
    exported_seed, dark_bright_dark, tmp_path
):
    bundle, _, _ = exported_seed
    clips = tmp_path / "clips"

    def remove_the_dir(process):
        # Once the first prediction is on file the recorder exists and its clip has not begun
        # (the event starts at 4 s, a prediction comes every 0.1 s from 0.6 s): removing the dir
        # then races with nothing, unlike removing it as the clip's folder appears.
        jsonl = tmp_path / "messages.jsonl"
        while process.poll() is None and not (jsonl.is_file() and '"pred/cam"' in jsonl.read_text()):
            time.sleep(0.05)
        shutil.rmtree(clips)

    messages, err = serve_events(bundle, dark_bright_dark, tmp_path, "--record", clips, during=remove_the_dir)
    reasons = [
        m["reason"] for m in messages if m["topic"] == "status/cam" and m["reason"].startswith("clip not written")
    ]
    assert len(set(reasons)) == 1 and "\n" not in reasons[0], (
        err
    )  # one failure, repeated by each status until it changes
    assert "clip not written" in err
    predictions = [m for m in messages if m["topic"] == "pred/cam"]
    last_window_end = max(p["frame_index"] for p in predictions)
    assert last_window_end >= 360, "predictions went on to the end of the 15 s file"
    end = next(m for m in messages if m["topic"] == "event/cam" and m["type"] == "end")
    assert "clip" not in end or not Path(end["clip"]).exists()
