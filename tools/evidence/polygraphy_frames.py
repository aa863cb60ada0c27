"""Real frames for `polygraphy run --data-loader-script tools/evidence/polygraphy_frames.py`.

    LRCN_BUNDLE=bundles/mine LRCN_VIDEO=clip.avi polygraphy run bundles/mine/encoder.onnx --trt --onnxrt ...

Yields batches of 8 frames of the video at the bundle's size and frame rate, so the engine
is compared with ONNX Runtime on real pixels, not random ones.
"""

import os

from lrcn.stream.bundle import read_meta
from lrcn.stream.video import read_frames

BATCH = 8


def load_data():
    spec = read_meta(os.environ["LRCN_BUNDLE"]).spec
    frames = read_frames(os.environ["LRCN_VIDEO"], spec.input_size, spec.fps)
    for start in range(0, len(frames) - BATCH + 1, BATCH):
        yield {"frames": frames[start : start + BATCH]}
