"""The temporal head in NumPy: an LSTM step with its state passed in and out, then softmax.

Keras's LSTM exactly: gates packed in the order i, f, c, o along the last axis of the
kernels, sigmoid on the gates, tanh on the cell input and the output. Every function takes
a batch of states, so one call steps many streams, or the K staggered windows of
exact-window mode, at once.

>>> head = load_head("bundle/head.npz")                      # doctest: +SKIP
>>> h, c = head.zero_state(2)                                 # doctest: +SKIP
>>> h, c = head.step(features[:2], h, c)                      # doctest: +SKIP
>>> head.probabilities(h).shape                               # doctest: +SKIP
(2, 4)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError

HEAD_FILE = "head.npz"


def limit_blas_threads(threads: int = 1) -> None:
    """Run NumPy's BLAS on `threads` threads, process-wide. The head's matmuls are small
    ([K, U] x [U, 4U]); extra BLAS threads cost more in wake-ups, and in fights with the
    encoder's own threads for the same cores, than they save (profiled on 2 cores under load:
    the 16-state exact head step took 10.7 ms with OpenBLAS's 2 threads, 1.6 ms with 1)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it BLAS keeps its default; only speed differs
        return
    threadpool_limits(threads, user_api="blas")


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows on large |x| and is one pass, not a split by sign.
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class LstmHead:
    """LSTM + softmax. With `per_timestep` the model's clip output is the mean of the
    per-step softmax over the window (as Keras's per-step outputs are averaged at test time);
    otherwise it is the softmax of the last step."""
    classes: tuple[str, ...]
    kernel: np.ndarray            # [F, 4U]
    recurrent_kernel: np.ndarray  # [U, 4U]
    bias: np.ndarray              # [4U]
    dense_kernel: np.ndarray      # [U, C]
    dense_bias: np.ndarray        # [C]
    per_timestep: bool = False
    kind = "lstm"

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
        i, f, g, o = (t[..., k * u:(k + 1) * u] for k in range(4))
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
        """What the Keras model outputs for whole clips: [B, T, F] features -> [B, C]."""
        features = np.asarray(features, np.float32)
        h, c = self.zero_state(len(features))
        projected = self.input_projection(features)
        steps = []
        for t in range(features.shape[1]):
            h, c = self.recurrent_step(projected[:, t], h, c)
            if self.per_timestep:
                steps.append(self.probabilities(h))
        return np.mean(steps, axis=0) if self.per_timestep else self.probabilities(h)


@dataclass(frozen=True)
class FrameHead:
    """The single-frame baseline: a softmax per frame, averaged over the clip. No state."""
    classes: tuple[str, ...]
    dense_kernel: np.ndarray      # [F, C]
    dense_bias: np.ndarray        # [C]
    kind = "single_frame"
    per_timestep = True

    @property
    def feature_size(self) -> int:
        return self.dense_kernel.shape[0]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(features @ self.dense_kernel + self.dense_bias)

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        return self.probabilities(np.asarray(features, np.float32)).mean(axis=1)


@dataclass(frozen=True)
class PoolHead:
    """Temporal pooling: the mean and the maximum of each feature over the window, then one
    softmax layer (the feature-pooling alternative to an LSTM of Ng et al., "Beyond Short
    Snippets", CVPR 2015). It ignores frame order, so it cannot tell motion directions apart,
    but with few training people it generalises where an LSTM learns the people. The
    standardisation the Keras model applies to the pooled vector is folded into the kernel."""
    classes: tuple[str, ...]
    dense_kernel: np.ndarray      # [2F, C]: rows 0..F-1 weigh the mean, F..2F-1 the maximum
    dense_bias: np.ndarray        # [C]
    kind = "pool"
    per_timestep = False

    @property
    def feature_size(self) -> int:
        return self.dense_kernel.shape[0] // 2

    def window_probabilities(self, features: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """[B, T, F] features -> [B, C]. With `counts` [B], window b is its first counts[b] frames."""
        features = np.asarray(features, np.float32)
        if counts is None:
            pooled = np.concatenate([features.mean(axis=1), features.max(axis=1)], axis=-1)
        else:
            kept = np.arange(features.shape[1])[None, :, None] < np.asarray(counts)[:, None, None]
            mean = np.where(kept, features, 0).sum(axis=1) / np.asarray(counts, np.float32)[:, None]
            pooled = np.concatenate([mean, np.where(kept, features, -np.inf).max(axis=1)], axis=-1)
        return softmax(pooled @ self.dense_kernel + self.dense_bias)

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        return self.window_probabilities(features)


Head = LstmHead | FrameHead | PoolHead


def save_head(path: str | Path, head: Head) -> Path:
    arrays = {name: getattr(head, name) for name in ("kernel", "recurrent_kernel", "bias") if hasattr(head, name)}
    np.savez(path, kind=np.array(head.kind), classes=np.array(head.classes), per_timestep=np.array(head.per_timestep),
             dense_kernel=head.dense_kernel, dense_bias=head.dense_bias, **arrays)
    return Path(path)


def load_head(path: str | Path) -> Head:
    """Read head.npz; a missing or damaged file is one LrcnError line."""
    path = Path(path)
    if not path.is_file():
        raise LrcnError(f"bundle has no {path.name}: {path.parent} (run `lrcn export {path.parent}`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        kind, classes = str(arrays["kind"]), tuple(str(c) for c in arrays["classes"])
        dense = {k: arrays[k].astype(np.float32) for k in ("dense_kernel", "dense_bias")}
        if kind == "single_frame":
            return FrameHead(classes, **dense)
        if kind == "pool":
            if dense["dense_kernel"].shape[0] % 2:
                raise ValueError(f"pooling kernel has {dense['dense_kernel'].shape[0]} rows, not 2 x features")
            return PoolHead(classes, **dense)
        lstm = {k: arrays[k].astype(np.float32) for k in ("kernel", "recurrent_kernel", "bias")}
        head = LstmHead(classes, **lstm, **dense, per_timestep=bool(arrays["per_timestep"]))
    except (KeyError, ValueError, OSError) as err:
        raise LrcnError(f"{path}: not a head file ({err})") from None
    units = head.units
    if head.kernel.shape[1] != 4 * units or head.bias.shape != (4 * units,) or head.dense_kernel.shape[0] != units:
        raise LrcnError(f"{path}: LSTM weight shapes disagree ({head.kernel.shape}, {head.recurrent_kernel.shape}, "
                        f"{head.dense_kernel.shape})")
    return head
