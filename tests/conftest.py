"""The fixtures any test module asks for by name: they live here (or in tests/bundles.py, loaded
as a plugin), never imported from another test module."""

import os
import shutil
from pathlib import Path

import pytest

from lrcn.tools.evidence.ffmpeg_server import H264, keyframe_every, lavfi, pattern_video, run_ffmpeg
from tests.media import FPS, HEIGHT, SEGMENTS, WIDTH

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# exported_seed (the checked-in bundle) and keras_seed (its build, with TensorFlow).
pytest_plugins = ["tests.bundles"]


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """A small rendered dataset (3 motion classes, 4 videos each in 2 groups, 24 frames at 32x32)
    for the training tests that need real files but not a model that learns much."""
    from lrcn.models import synth

    root = tmp_path_factory.mktemp("small_synthetic")
    synth.write_dataset(root, videos_per_class=4, n_frames=24, size=32, seed=2, groups=2)
    return root


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    """20 s of testsrc2 at 25 fps in H.264 with B-frames and a keyframe every second."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    run_ffmpeg(*lavfi(f"testsrc2=size=320x240:rate={FPS}"), "-t", "20", *H264, *keyframe_every(FPS), str(path))
    return path


@pytest.fixture(scope="module")
def patterned(tmp_path_factory) -> Path:
    """H.264 at WIDTH x HEIGHT, 1 s GOP: black and ffmpeg's test pattern in turn (SEGMENTS)."""
    path = tmp_path_factory.mktemp("video") / "events.mp4"
    pattern_video(path, SEGMENTS, f"{WIDTH}x{HEIGHT}", *keyframe_every(25))
    return path


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """Synthetic actions (everything but the synthetic 'still' class: held frames are the idle class)."""
    from lrcn.models import synth
    from lrcn.models.data import discover, split_by_groups

    root = tmp_path_factory.mktemp("moving")
    synth.write_dataset(root, videos_per_class=6, n_frames=32, size=64, seed=2, groups=3)
    shutil.rmtree(root / "still")
    dataset = discover(root)
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["03"])
    return root, dataset, train_videos, test_videos


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto broker of this test's own, on a free port."""
    from lrcn.tools.evidence.mqtt_broker import Broker

    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()
