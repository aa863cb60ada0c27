"""Modalities: what a bundle's encoders look at, one module each, found through a registry.

A modality names the per-frame input its encoder takes (a field of `stream.ring.Frame`), how
many uint8 channels that input has, the ONNX files its encoder is exported to, whether the
capture must compute optical flow for it, and how training mirrors it. A bundle lists its
modalities in ModelSpec.modalities; the runtime encodes each frame once per modality and
joins the features in that order (stream.modalities.joined_features).

>>> [m.name for m in map(modality, modality_names())]
['rgb', 'flow']
>>> modality("flow").channels, modality("flow").encoder_file
(2, 'encoder.flow.onnx')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrcn.stream.registry import Registry

BUILT_IN = ("lrcn.stream.modalities.rgb", "lrcn.stream.modalities.flow")


@dataclass(frozen=True)
class Modality:
    name: str
    channels: int  # uint8 channels of the encoder's input, [N, H, W, channels]
    frame_field: str  # the stream.ring.Frame attribute that holds the input
    encoder_file: str  # fp32 ONNX encoder in the bundle
    int8_file: str  # its static INT8 variant
    needs_flow: bool  # the capture must compute optical flow (stream.flow)
    # [N, H, W, C] uint8 -> the same frames as a left-right mirrored camera would give them
    mirror: Callable[[np.ndarray], np.ndarray]

    def inputs(self, frames) -> np.ndarray:
        """The encoder input of a sequence of stream.ring.Frame: uint8 [N, H, W, channels]."""
        return np.stack([getattr(frame, self.frame_field) for frame in frames])


MODALITIES: Registry[Modality] = Registry("modality", BUILT_IN)


def register(item: Modality, module: str) -> Modality:
    """Add `item`, made in `module` (its `__name__`): a Modality's own `__module__` is this package's,
    and the registry lists the built-in ones by their module's place in BUILT_IN, whichever was
    imported first."""
    return MODALITIES.add(item.name, item, module)


def modality_names() -> list[str]:
    return MODALITIES.names()


def modality(name: str) -> Modality:
    """The modality called `name`, or one LrcnError line naming the known ones."""
    return MODALITIES.get(name)
