"""The single-frame baseline: a softmax per frame, averaged over the window. No recurrent state:
a stream keeps the softmaxes of its last T frames, and a window's output is their mean."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lrcn.stream.heads import Head, State, latest, push_recent, register, softmax


@register
@dataclass(frozen=True)
class FrameHead(Head):
    classes: tuple[str, ...]
    dense_kernel: np.ndarray  # [F, C]
    dense_bias: np.ndarray  # [C]
    kind = "single_frame"
    per_timestep = True

    @property
    def feature_size(self) -> int:
        return self.dense_kernel.shape[0]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(features @ self.dense_kernel + self.dense_bias)

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        return self.probabilities(np.asarray(features, np.float32)).mean(axis=1)

    # The streaming windows: the ring of the last T frames' softmaxes, summed in float64.

    def frame_inputs(self, features: np.ndarray) -> np.ndarray:
        return self.probabilities(np.asarray(features, np.float32))

    def initial_state(self, slots: int, clip_length: int) -> State:
        return {"recent": np.zeros((clip_length, len(self.classes)), np.float64)}

    def advance(self, state: State, frame_inputs: np.ndarray, opened: np.ndarray, active: np.ndarray) -> State:
        return {"recent": push_recent(state["recent"], frame_inputs)}

    def emit(self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
        recent = state["recent"][rows]
        return (recent * latest(recent, steps)[..., None]).sum(axis=1) / steps[:, None]

    def emit_running(
        self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        covered = np.minimum(steps, state["recent"].shape[1])
        return self.emit(state, rows, slots, covered), covered

    # head.npz and Keras

    def arrays(self) -> dict[str, np.ndarray]:
        return {"dense_kernel": self.dense_kernel, "dense_bias": self.dense_bias}

    @classmethod
    def from_arrays(cls, classes: tuple[str, ...], arrays: Mapping[str, np.ndarray]) -> FrameHead:
        return cls(classes, arrays["dense_kernel"].astype(np.float32), arrays["dense_bias"].astype(np.float32))
