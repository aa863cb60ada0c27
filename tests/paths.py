"""Where the tests find the checkout and ../shared (datasets, pretrained weights), and the marks
that skip a test when ../shared lacks them."""

from pathlib import Path

import pytest
import shutil

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PRETRAINED = SHARED / "pretrained" / "mobilenet_v2_1.0_imagenet_notop.weights.h5"
needs_shared_data = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data not present")
needs_pretrained = pytest.mark.skipif(not PRETRAINED.is_file(), reason="../shared/pretrained weights not present")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


SCREENSHOT_SIZE = (1280, 900)
