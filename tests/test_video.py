"""Decoding real video files of each container, on the model's sampling grid."""

import cv2
import numpy as np
import pytest

from lrcn.models.frame_cache import FrameCache, clip_indices, load_videos, window_starts
from lrcn.stream.errors import LrcnError
from lrcn.stream.sampling import grid_indices, on_grid
from lrcn.stream.video import read_frames
from tests.paths import SHARED, needs_shared_data


def write_video(path, frames_rgb, fps=25.0, fourcc="MJPG"):
    height, width = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"{fourcc} writer failed for {path}"
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def ramp(n=50, size=(48, 64)):
    """Frame i is a flat grey of level 5*i: decoded frames tell which source frame they were."""
    return np.stack([np.full((*size, 3), 5 * i, np.uint8) for i in range(n)])


@pytest.mark.parametrize("name,fourcc", [("a.avi", "MJPG"), ("b.avi", "FFV1"), ("c.mp4", "mp4v"), ("d.mkv", "VP80")])
def test_each_container_decodes_every_frame_resized_rgb(tmp_path, name, fourcc):
    source = ramp()
    source[..., 0] = 200  # a red channel that must stay red: BGR/RGB must not be swapped
    path = write_video(tmp_path / name, source, fourcc=fourcc)
    frames = read_frames(path, size=(32, 40))
    assert frames.shape == (50, 32, 40, 3) and frames.dtype == np.uint8
    assert abs(int(frames[:, :, :, 0].mean()) - 200) < 12
    assert np.abs(frames[10, ..., 1].astype(int) - 50).mean() < 12


def test_frames_are_sampled_on_the_model_grid_by_timestamp(tmp_path):
    path = write_video(tmp_path / "ramp.avi", ramp(50), fps=25.0, fourcc="FFV1")
    frames = read_frames(path, size=(48, 64), fps=10.0)
    expected = grid_indices([i / 25 for i in range(50)], 10.0)
    assert len(frames) == len(expected) == 20
    levels = frames[:, 0, 0, 1].astype(int)
    np.testing.assert_array_equal(levels, 5 * np.asarray(expected))


def test_grid_keeps_the_rate_whatever_the_camera_rate():
    for camera_fps in (7.5, 10, 24, 25, 29.97, 30, 60):
        kept = grid_indices([i / camera_fps for i in range(int(camera_fps * 20))], fps=10)
        assert abs(len(kept) / 20 - min(10, camera_fps)) < 0.2, camera_fps
    # After a gap the grid restarts at the next frame rather than bursting.
    keep, due = on_grid(5.0, 0.3, 0.1)
    assert keep and abs(due - 5.1) < 1e-9


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(LrcnError, match="not found"):
        read_frames(tmp_path / "nope.avi", (32, 32))
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(LrcnError) as err:
        read_frames(garbage, (32, 32))
    assert "garbage.avi" in str(err.value) and "\n" not in str(err.value)
    whole = write_video(tmp_path / "whole.avi", ramp(50), fourcc="MJPG").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    frames = read_frames(truncated, (32, 32))
    assert 10 < len(frames) < 50


def test_frame_cache_decodes_once_and_skips_unreadable_videos(tmp_path, capsys):
    good = write_video(tmp_path / "good.avi", ramp(30))
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all" * 100)
    cache = FrameCache(tmp_path / "cache", size=(32, 32), fps=10)
    frames = load_videos([good, bad], cache, progress=False)
    assert list(frames) == [good]
    assert "bad.avi" in capsys.readouterr().err
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), frames[good])
    good.write_bytes(good.read_bytes())  # touching the file invalidates its entry
    cache.frames(good)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_clip_windows_cover_the_video_and_pad_short_ones():
    assert window_starts(16, 16, 8) == [0]
    starts = window_starts(45, 16, 8)
    assert starts[0] == 0 and starts[-1] == 29 and all(b - a <= 8 for a, b in zip(starts, starts[1:]))
    np.testing.assert_array_equal(clip_indices(5, 8, 0), [0, 1, 2, 3, 4, 4, 4, 4])


@needs_shared_data
@pytest.mark.parametrize(
    "relative",
    ["weizmann4/bend/s0_bend.avi", "ps7/one_arm_raise/PS7A2P1T1.avi", "ucf101_9/Archery/v_Archery_g01_c01.avi"],
)
def test_real_footage_decodes(relative):
    frames = read_frames(SHARED / "data" / relative, size=(112, 112), fps=10)
    assert frames.shape[1:] == (112, 112, 3) and len(frames) >= 16
    assert frames.std() > 10
