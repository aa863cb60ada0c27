"""Small real bundles for the export and backend tests: untrained weights, real layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED

WEIZMANN_VIDEO = SHARED / "data" / "weizmann4" / "bend" / "s0_bend.avi"


def make_bundle(directory: Path, spec, frames: np.ndarray | None = None, seed: int = 0) -> Path:
    """Build the spec's model and save it as a bundle (model.keras + meta.json). With frames,
    a CNN trained from scratch gets LSUV scaling first, so its features vary between frames
    as a trained model's do (Keras's initialisation leaves them nearly constant)."""
    from lrcn.models.seed_bundle import untrained_bundle

    return untrained_bundle(spec, Path(directory), frames, seed)


def real_video(tmp_dir: Path) -> Path:
    """A Weizmann video when ../shared is present, else a synthetic one written to disk."""
    if WEIZMANN_VIDEO.is_file():
        return WEIZMANN_VIDEO
    from lrcn.models import synth

    # 60 frames: the scheduler tests cut the video at frame 30 and re-offer its first 30.
    paths = synth.write_dataset(tmp_dir / "synth", videos_per_class=1, n_frames=60, size=64, seed=3, groups=1)
    return Path(paths[0])


def frames_of(video: Path, spec) -> np.ndarray:
    from lrcn.stream.video import read_frames

    return read_frames(video, spec.input_size, spec.fps)


SEED_SPEC_ARGS = dict(classes=("bend", "jumping_jack", "wave_one_hand"), input_size=(64, 64), clip_length=4,
                      lstm_units=16)


@pytest.fixture(scope="session")
def exported_seed(tmp_path_factory):
    """(bundle, frames, video): a small seed LRCN exported with its INT8 encoder, shared by
    the tests that only read it (copy it before breaking it)."""
    pytest.importorskip("tensorflow")
    from lrcn.models.export import export_bundle
    from lrcn.stream.bundle import ModelSpec

    spec = ModelSpec(**SEED_SPEC_ARGS)
    video = real_video(tmp_path_factory.mktemp("video"))
    frames = frames_of(video, spec)
    bundle = make_bundle(tmp_path_factory.mktemp("seed") / "bundle", spec, frames[:16])
    export_bundle(bundle, frames, calibration=frames)
    return bundle, frames, video
