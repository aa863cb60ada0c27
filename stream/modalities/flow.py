"""Motion: the optical flow field from the previous sampled frame (stream.flow), uint8 [H, W, 2]
holding 128 + A * (dx, dy)."""

from __future__ import annotations

import numpy as np

from lrcn.stream.flow import FLOW_OFFSET
from lrcn.stream.modalities import Modality, register


def mirror_flow(fields: np.ndarray) -> np.ndarray:
    """A mirrored camera sees the picture flipped left-right and every horizontal displacement
    negated: 128 + A*dx becomes 128 - A*dx (clipped to uint8, as stream.flow encodes)."""
    flipped = fields[:, :, ::-1].astype(np.int16)
    flipped[..., 0] = np.clip(2 * FLOW_OFFSET - flipped[..., 0], 0, 255)
    return flipped.astype(np.uint8)


FLOW = register(
    Modality(
        name="flow",
        channels=2,
        frame_field="flow",
        encoder_file="encoder.flow.onnx",
        int8_file="encoder.flow.int8.onnx",
        needs_flow=True,
        mirror=mirror_flow,
    ),
    __name__,
)
