"""Synthetic action videos: files and layout, and that one frame is ambiguous while motion is not.

The statistics are measured on rendered pixels: the shape is whatever differs from the clip's
static background by more than the pixel noise can explain.
"""

import re

import cv2
import numpy as np
import pytest

from lrcn.models import synth
from lrcn.stream.errors import LrcnError

N_FRAMES, SIZE = 24, 48
GROUP = re.compile(r"_g(\d+)_")


def rendered(action: str, seed: int, n_frames: int = N_FRAMES, size: int = SIZE):
    """(frames, scene) exactly as render_clip would make them from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    scene = synth.draw_scene(n_frames, size, rng)
    return synth.render(scene, synth.poses(scene, action), rng), scene


def shape_masks(frames: np.ndarray, background: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """[n, h, w] bool: pixels that differ from the background in some channel by more than noise can."""
    return np.abs(frames.astype(np.float32) - background).max(axis=-1) > threshold


def centroid_x(masks: np.ndarray) -> np.ndarray:
    """Horizontal centre of each mask in pixels (column index), a circular mean since the frame wraps.

    >>> masks = np.zeros((1, 2, 8), bool); masks[0, :, [0, 7]] = True
    >>> centroid_x(masks).round(6).tolist()
    [7.5]
    """
    width = masks.shape[2]
    phase = 2 * np.pi * np.arange(width) / width
    columns = masks.sum(axis=1).astype(np.float64)
    angle = np.arctan2(columns @ np.sin(phase), columns @ np.cos(phase))
    return (angle % (2 * np.pi)) * width / (2 * np.pi)


def wrapped(dx, width: int = SIZE):
    """A horizontal distance taken the short way round: wrapped(47, 48) == -1."""
    return (np.asarray(dx) + width / 2) % width - width / 2


def circular_mean(x: np.ndarray, width: int = SIZE) -> float:
    """The mean of positions on a frame that wraps around."""
    return float(np.angle(np.exp(2j * np.pi * np.asarray(x) / width).mean()) % (2 * np.pi) * width / (2 * np.pi))


def log_area(masks: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(masks.sum(axis=(1, 2)), 1))


def centroid_y(masks: np.ndarray) -> np.ndarray:
    """Vertical centre of each mask in pixels (row index), a circular mean since the frame wraps."""
    return centroid_x(masks.transpose(0, 2, 1))


def net_shift(masks: np.ndarray) -> float:
    """Horizontal displacement from first to last frame, summed frame to frame across the wrap."""
    return float(wrapped(np.diff(centroid_x(masks)), masks.shape[2]).sum())


def net_rise(masks: np.ndarray) -> float:
    """Vertical displacement from first to last frame (positive: down the screen), across the wrap."""
    return net_shift(masks.transpose(0, 2, 1))


def growth(masks: np.ndarray) -> float:
    """log(area at the end / area at the start), each averaged over three frames."""
    area = log_area(masks)
    return float(area[-3:].mean() - area[:3].mean())


def kolmogorov_smirnov_uniform(samples: np.ndarray, width: float) -> float:
    """Largest gap between the samples' cumulative distribution and that of uniform on [0, width)."""
    ranked = np.sort(np.asarray(samples) / width)
    n = len(ranked)
    return float(max((np.arange(1, n + 1) / n - ranked).max(), (ranked - np.arange(n) / n).max()))


@pytest.fixture(scope="module")
def per_class():
    """Per-frame centroid x, log area and centroid y of 100 independently drawn clips of every class."""
    stats = {}
    for index, action in enumerate(synth.CLASSES):
        clips = [rendered(action, 10_000 * index + seed) for seed in range(100)]
        masks = [shape_masks(frames, scene.background) for frames, scene in clips]
        stats[action] = (
            np.array([centroid_x(m) for m in masks]),
            np.array([log_area(m) for m in masks]),
            np.array([centroid_y(m) for m in masks]),
        )
    return stats


def test_classes_are_the_agreed_tuple():
    assert synth.CLASSES == ("still", "move_left", "move_right", "move_up", "move_down", "grow", "shrink")


def test_render_clip_shape_and_determinism():
    first = synth.render_clip("move_up", 10, 32, np.random.default_rng(7))
    again = synth.render_clip("move_up", 10, 32, np.random.default_rng(7))
    other = synth.render_clip("move_up", 10, 32, np.random.default_rng(8))
    assert first.shape == (10, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other).mean() > 10
    with pytest.raises(ValueError, match="unknown action"):
        synth.render_clip("jump", 10, 32, np.random.default_rng(0))


def test_write_dataset_layout_and_files(tmp_path):
    paths = synth.write_dataset(tmp_path / "data", videos_per_class=3, n_frames=12, size=32, fps=25.0, seed=3, groups=2)
    assert len(paths) == 3 * len(synth.CLASSES)
    for action in synth.CLASSES:
        names = sorted(p.name for p in (tmp_path / "data" / action).iterdir())
        assert names == [f"v_{action}_g01_c01.avi", f"v_{action}_g01_c02.avi", f"v_{action}_g02_c01.avi"]
        assert sorted(GROUP.search(name).group(1) for name in names) == ["01", "01", "02"]
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        assert capture.isOpened(), path
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        capture.release()
        assert len(frames) == 12 and frames[0].shape == (32, 32, 3), path


def test_write_dataset_is_deterministic_under_its_seed(tmp_path):
    def contents(seed, folder):
        paths = synth.write_dataset(tmp_path / folder, videos_per_class=1, n_frames=6, size=32, seed=seed, groups=1)
        return [p.read_bytes() for p in paths]

    assert contents(5, "a") == contents(5, "b")
    assert all(x != y for x, y in zip(contents(5, "a"), contents(6, "c")))


def test_write_dataset_spreads_videos_evenly_over_groups(tmp_path):
    paths = synth.write_dataset(tmp_path, videos_per_class=8, n_frames=2, size=16, groups=4)
    groups = [GROUP.search(p.name).group(1) for p in paths]
    assert {g: groups.count(g) for g in set(groups)} == {f"{g:02d}": 2 * len(synth.CLASSES) for g in range(1, 5)}


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(LrcnError):
        synth.write_dataset(tmp_path, videos_per_class=0)
    with pytest.raises(LrcnError, match=r"\.avi"):
        synth.write_continuous(tmp_path / "stream.mp4", duration_s=1)
    with pytest.raises(LrcnError, match="cannot write video"):
        synth.open_writer(tmp_path / "clip.unknown-container", 25.0, 32)
    with pytest.raises(LrcnError, match="not found"):
        synth.read_labels(tmp_path / "missing.labels.json")


def test_the_mask_finds_the_shape():
    frames, scene = rendered("still", 1)
    masks = shape_masks(frames, scene.background)
    truth = synth.coverage(synth.polygons(scene.outline, synth.poses(scene, "still")), SIZE) > 0.5
    assert (masks != truth).mean() < 0.01


def test_one_frame_positions_are_the_same_for_every_class(per_class):
    # Positions wrap, so the shape is anywhere with equal chance, in the first frame too: a
    # move_left that tended to start on the left (or end there) would move these means.
    for action, (x, _, y) in per_class.items():
        for frame in (0, N_FRAMES // 2, -1):
            for position in (x, y):
                # 100 clips: the mean of a uniform position is SIZE / 2 give or take 1.4 px.
                assert position[:, frame].mean() == pytest.approx(SIZE / 2, abs=6.0), (action, frame)
                assert kolmogorov_smirnov_uniform(position[:, frame], SIZE) < 0.25, (action, frame)


def test_one_frame_sizes_are_the_same_for_every_class(per_class):
    pooled = np.concatenate([area.ravel() for _, area, _ in per_class.values()])
    for action, (_, area, _) in per_class.items():
        assert area.mean() == pytest.approx(pooled.mean(), abs=0.25), action
        np.testing.assert_allclose(
            np.quantile(area, [0.1, 0.5, 0.9]), np.quantile(pooled, [0.1, 0.5, 0.9]), atol=0.3, err_msg=action
        )
    # The statistic does see a size bias when there is one: grow starts small and shrink large.
    grow, shrink = per_class["grow"][1], per_class["shrink"][1]
    assert shrink[:, :6].mean() - grow[:, :6].mean() > 0.3


def test_opposite_motions_visit_the_same_states_for_the_same_scene():
    # The same scene traversed either way: each frame of one clip is a frame of the other.
    for seed in range(20):
        (left, scene), (right, _) = rendered("move_left", seed), rendered("move_right", seed)
        centres = [circular_mean(centroid_x(shape_masks(f, scene.background))) for f in (left, right)]
        assert abs(wrapped(centres[0] - centres[1])) < 1.0, seed
        (up, scene), (down, _) = rendered("move_up", seed), rendered("move_down", seed)
        centres = [circular_mean(centroid_y(shape_masks(f, scene.background))) for f in (up, down)]
        assert abs(wrapped(centres[0] - centres[1])) < 1.0, seed
        (grow, scene), (shrink, _) = rendered("grow", seed), rendered("shrink", seed)
        areas = [np.sort(log_area(shape_masks(f, scene.background))) for f in (grow, shrink)]
        assert np.abs(areas[0] - areas[1]).mean() < 0.08, seed  # jitter and anti-aliasing: ~8% area


def test_motion_separates_the_classes():
    unit = SIZE / 64
    for seed in range(30):
        masks = {a: shape_masks(*_frames_and_background(a, seed)) for a in synth.CLASSES}
        # At least 1 px per frame sampled at 10 fps from 25 fps, at 64 px, and nothing sideways.
        least = 0.4 * unit * (N_FRAMES - 1)
        assert net_shift(masks["move_left"]) < -least and abs(net_rise(masks["move_left"])) < 2.0, seed
        assert net_shift(masks["move_right"]) > least and abs(net_rise(masks["move_right"])) < 2.0, seed
        assert net_rise(masks["move_up"]) < -least and abs(net_shift(masks["move_up"])) < 2.0, seed
        assert net_rise(masks["move_down"]) > least and abs(net_shift(masks["move_down"])) < 2.0, seed
        assert growth(shape_masks(*_frames_and_background("grow", seed))) > 0.25, seed
        assert growth(shape_masks(*_frames_and_background("shrink", seed))) < -0.25, seed
        still = masks["still"]
        assert abs(net_shift(still)) < 2.0 and abs(net_rise(still)) < 2.0 and abs(growth(still)) < 0.2, seed


def _frames_and_background(action, seed):
    frames, scene = rendered(action, 500 + seed)
    return frames, scene.background


def test_write_continuous_video_matches_its_labels(tmp_path):
    video, labels = synth.write_continuous(
        tmp_path / "live" / "stream.avi",
        duration_s=16.0,
        size=32,
        fps=25.0,
        seed=2,
        min_segment_s=0.6,
        max_segment_s=1.2,
    )
    assert labels == tmp_path / "live" / "stream.labels.json"
    record = synth.read_labels(labels)
    assert record["fps"] == 25.0 and record["classes"] == list(synth.CLASSES)
    segments, per_frame = record["segments"], record["labels"]

    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == len(per_frame) == 400 == segments[-1]["end_frame"]

    assert segments[0]["start_frame"] == 0
    for before, after in zip(segments, segments[1:]):
        assert before["end_frame"] == after["start_frame"]
        assert before["label"] != after["label"]
    for segment in segments:
        assert segment["label"] in synth.CLASSES
        assert 15 <= segment["end_frame"] - segment["start_frame"] <= 30 + 15
        assert set(per_frame[segment["start_frame"] : segment["end_frame"]]) == {segment["label"]}
    assert set(per_frame) == set(synth.CLASSES)


def test_write_continuous_is_deterministic(tmp_path):
    first = synth.write_continuous(
        tmp_path / "a.avi", duration_s=3.0, size=16, seed=4, min_segment_s=0.5, max_segment_s=1.0
    )
    second = synth.write_continuous(
        tmp_path / "b.avi", duration_s=3.0, size=16, seed=4, min_segment_s=0.5, max_segment_s=1.0
    )
    assert first[0].read_bytes() == second[0].read_bytes()
    assert synth.read_labels(first[1]) == synth.read_labels(second[1])


def test_segment_lengths_and_labels():
    rng = np.random.default_rng(0)
    for total in (1, 40, 75, 1000, 1499):
        lengths = synth.segment_lengths(total, 75, 150, rng)
        assert sum(lengths) == total and all(length >= min(75, total) for length in lengths)
    labels = synth.segment_labels(50, rng)
    assert all(a != b for a, b in zip(labels, labels[1:]))
    assert set(labels[: len(synth.CLASSES)]) == set(synth.CLASSES)
