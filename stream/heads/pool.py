"""Temporal pooling: the mean and the maximum of each feature over the window, then one softmax
layer (the feature-pooling alternative to an LSTM of Ng et al., "Beyond Short Snippets", CVPR
2015). It ignores frame order, so it cannot tell motion directions apart, but with few training
people it generalises where an LSTM learns the people. A stream keeps its last T feature vectors;
a window's output is the model on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lrcn.stream.heads import Head, State, latest, push_recent, register, softmax


@register
@dataclass(frozen=True)
class PoolHead(Head):
    """The standardisation the Keras model applies to the pooled vector is folded into the kernel."""

    classes: tuple[str, ...]
    dense_kernel: np.ndarray  # [2F, C]: rows 0..F-1 weigh the mean, F..2F-1 the maximum
    dense_bias: np.ndarray  # [C]
    kind = "pool"
    per_timestep = False

    @property
    def feature_size(self) -> int:
        return self.dense_kernel.shape[0] // 2

    def window_probabilities(self, features: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """[B, T, F] features -> [B, C]. With `counts` [B], window b is its last counts[b] frames."""
        features = np.asarray(features, np.float32)
        if counts is None:
            pooled = np.concatenate([features.mean(axis=1), features.max(axis=1)], axis=-1)
        else:
            kept = latest(features, counts)[..., None]
            mean = np.where(kept, features, 0).sum(axis=1) / np.asarray(counts, np.float32)[:, None]
            pooled = np.concatenate([mean, np.where(kept, features, -np.inf).max(axis=1)], axis=-1)
        return softmax(pooled @ self.dense_kernel + self.dense_bias)

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        return self.window_probabilities(features)

    # The streaming windows: the ring of the last T feature vectors (the pooling needs them all).

    def frame_inputs(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float32)

    def initial_state(self, slots: int, clip_length: int) -> State:
        return {"recent": np.zeros((clip_length, self.feature_size), np.float32)}

    def advance(self, state: State, frame_inputs: np.ndarray, opened: np.ndarray, active: np.ndarray) -> State:
        return {"recent": push_recent(state["recent"], frame_inputs)}

    def emit(self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.window_probabilities(state["recent"][rows])  # a completed window is the whole ring

    def emit_running(
        self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        covered = np.minimum(steps, state["recent"].shape[1])
        return self.window_probabilities(state["recent"][rows], counts=covered), covered

    # head.npz and Keras

    def arrays(self) -> dict[str, np.ndarray]:
        return {"dense_kernel": self.dense_kernel, "dense_bias": self.dense_bias}

    @classmethod
    def from_arrays(cls, classes: tuple[str, ...], arrays: Mapping[str, np.ndarray]) -> PoolHead:
        kernel = arrays["dense_kernel"].astype(np.float32)
        if kernel.shape[0] % 2:
            raise ValueError(f"pooling kernel has {kernel.shape[0]} rows, not 2 x features")
        return cls(classes, kernel, arrays["dense_bias"].astype(np.float32))
