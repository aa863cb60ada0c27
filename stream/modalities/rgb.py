"""Appearance: the sampled RGB frame itself (the only modality of every bundle before flow)."""

from __future__ import annotations

import numpy as np

from lrcn.stream.encoders import ENCODER_FILE, INT8_ENCODER_FILE
from lrcn.stream.modalities import Modality, register


def mirror_rgb(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[:, :, ::-1])


RGB = register(
    Modality(
        name="rgb",
        channels=3,
        frame_field="image",
        encoder_file=ENCODER_FILE,
        int8_file=INT8_ENCODER_FILE,
        needs_flow=False,
        mirror=mirror_rgb,
    ),
    __name__,
)
