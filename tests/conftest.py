import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PRETRAINED = SHARED / "pretrained" / "mobilenet_v2_1.0_imagenet_notop.weights.h5"
needs_shared_data = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data not present")
needs_pretrained = pytest.mark.skipif(not PRETRAINED.is_file(), reason="../shared/pretrained weights not present")


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory):
    """A small rendered dataset (3 motion classes, 4 videos each in 2 groups, 24 frames at 32x32)
    for the training tests that need real files but not a model that learns much."""
    from lrcn.models import synth

    root = tmp_path_factory.mktemp("small_synthetic")
    synth.write_dataset(root, videos_per_class=4, n_frames=24, size=32, seed=2, groups=2)
    return root
