import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PRETRAINED = SHARED / "pretrained" / "mobilenet_v2_1.0_imagenet_notop.weights.h5"
needs_shared_data = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data not present")
needs_pretrained = pytest.mark.skipif(not PRETRAINED.is_file(), reason="../shared/pretrained weights not present")
