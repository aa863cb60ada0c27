"""The LSTM head: an LSTM step with its state passed in and out, then softmax.

Keras's LSTM exactly: gates packed in the order i, f, c, o along the last axis of the
kernels, sigmoid on the gates, tanh on the cell input and the output. Every function takes
a batch of states, so one call steps many streams, or the K staggered windows of
exact-window mode, at once: the frame's input projection x·W + b is computed once and shared
by all of them, only the recurrent product h·U is per state.

>>> head = load_head("bundle/head.npz")                      # doctest: +SKIP
>>> h, c = head.zero_state(2)                                 # doctest: +SKIP
>>> h, c = head.step(features[:2], h, c)                      # doctest: +SKIP
>>> head.probabilities(h).shape                               # doctest: +SKIP
(2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lrcn.stream.heads import Head, State, register, softmax


@register
@dataclass(frozen=True)
class LstmHead(Head):
    """LSTM + softmax. With `per_timestep` the model's clip output is the mean of the
    per-step softmax over the window (as Keras's per-step outputs are averaged at test time);
    otherwise it is the softmax of the last step."""

    classes: tuple[str, ...]
    kernel: np.ndarray  # [F, 4U]
    recurrent_kernel: np.ndarray  # [U, 4U]
    bias: np.ndarray  # [4U]
    dense_kernel: np.ndarray  # [U, C]
    dense_bias: np.ndarray  # [C]
    per_timestep: bool = False
    kind = "lstm"
    per_timestep_variant = True

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]

    @property
    def feature_size(self) -> int:
        return self.kernel.shape[0]

    def zero_state(self, count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((count, self.units), np.float32), np.zeros((count, self.units), np.float32)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """x·W + b, [N, F] -> [N, 4U]: the part of a step that depends on the frame alone."""
        return x @ self.kernel + self.bias

    def recurrent_step(self, xw: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step from a precomputed projection. h, c [..., U]: any leading axes, all in one
        matmul; xw [..., 4U] broadcasts against them, so one frame's projection serves many states."""
        u = self.units
        z = (h.reshape(-1, u) @ self.recurrent_kernel).reshape(*h.shape[:-1], 4 * u)
        z += xw
        # All four gates in one tanh: sigmoid(x) = (1 + tanh(x / 2)) / 2 for i, f, o; tanh for g.
        # In place: at 16 states per stream the temporaries cost as much as the gate arithmetic.
        z *= self._gate_scale
        t = np.tanh(z, out=z)
        i, f, g, o = (t[..., k * u : (k + 1) * u] for k in range(4))
        for gate in (i, f, o):
            gate *= 0.5
            gate += 0.5
        c = f * c
        i *= g
        c += i
        h = np.tanh(c)
        h *= o
        return h, c

    @cached_property
    def _gate_scale(self) -> np.ndarray:
        u = self.units
        return np.concatenate([np.full(2 * u, 0.5), np.ones(u), np.full(u, 0.5)]).astype(self.recurrent_kernel.dtype)

    def step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.recurrent_step(self.input_projection(x), h, c)

    def probabilities(self, h: np.ndarray) -> np.ndarray:
        """Softmax of one step's output, [..., U] -> [..., C]."""
        logits = h.reshape(-1, self.units) @ self.dense_kernel + self.dense_bias
        return softmax(logits).reshape(*h.shape[:-1], len(self.classes))

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float32)
        h, c = self.zero_state(len(features))
        projected = self.input_projection(features)
        steps = []
        for t in range(features.shape[1]):
            h, c = self.recurrent_step(projected[:, t], h, c)
            if self.per_timestep:
                steps.append(self.probabilities(h))
        return np.mean(steps, axis=0) if self.per_timestep else self.probabilities(h)

    # The streaming windows: h and c per slot, and with `per_timestep` the running sum of each
    # slot's per-step softmax.

    def frame_inputs(self, features: np.ndarray) -> np.ndarray:
        return self.input_projection(np.asarray(features, np.float32))

    def initial_state(self, slots: int, clip_length: int) -> State:
        h, c = self.zero_state(slots)
        state = {"h": h, "c": c}
        if self.per_timestep:
            state["prob_sum"] = np.zeros((slots, len(self.classes)), np.float64)
        return state

    def advance(self, state: State, frame_inputs: np.ndarray, opened: np.ndarray, active: np.ndarray) -> State:
        for array in state.values():
            array[opened] = 0
        every = active.all()
        h, c = self.recurrent_step(frame_inputs[:, None, :], state["h"], state["c"])
        if not every:  # idle slots stay zero
            h, c = np.where(active[..., None], h, 0), np.where(active[..., None], c, 0)
        if not self.per_timestep:
            return {"h": h, "c": c}
        step_probabilities = self.probabilities(h)
        prob_sum = state["prob_sum"]
        prob_sum += step_probabilities if every else np.where(active[..., None], step_probabilities, 0)
        return {"h": h, "c": c, "prob_sum": prob_sum}

    def emit(self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self.per_timestep:
            return state["prob_sum"][rows, slots] / steps[:, None]
        return self.probabilities(state["h"][rows, slots])

    def emit_running(
        self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # The state carries every frame since the restart; per-timestep or not, the output at
        # this frame is this step's softmax.
        return self.probabilities(state["h"][rows, slots]), steps

    # head.npz and Keras

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "dense_kernel": self.dense_kernel,
            "dense_bias": self.dense_bias,
            "kernel": self.kernel,
            "recurrent_kernel": self.recurrent_kernel,
            "bias": self.bias,
        }

    @classmethod
    def from_arrays(cls, classes: tuple[str, ...], arrays: Mapping[str, np.ndarray]) -> LstmHead:
        weights = {
            k: arrays[k].astype(np.float32)
            for k in ("kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias")
        }
        head = cls(classes, **weights, per_timestep=bool(arrays["per_timestep"]))
        units = head.units
        if head.kernel.shape[1] != 4 * units or head.bias.shape != (4 * units,) or head.dense_kernel.shape[0] != units:
            raise ValueError(
                f"LSTM weight shapes disagree ({head.kernel.shape}, {head.recurrent_kernel.shape}, "
                f"{head.dense_kernel.shape})"
            )
        return head

    @classmethod
    def outputs_every_step(cls, spec) -> bool:
        return spec.per_timestep
