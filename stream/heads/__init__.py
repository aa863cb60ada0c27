"""The temporal heads in NumPy, one module per head type, found through a registry.

A head type is a frozen dataclass of its weights that subclasses `Head` and is `@register`ed
under its `kind` (the name a ModelSpec's `head` and head.npz's `kind` give). It owns everything
that differs between head types, so `stream.windows` keeps only the slot and hop bookkeeping:

- `frame_inputs`: what it keeps per frame, computed once per frame and shared by every window
  (x·W + b for an LSTM, the frame's softmax for the single-frame head, the features for pooling);
- `initial_state`, `advance`, `emit`, `emit_running`: its state for one stream's window slots,
  one step of it, and the probabilities of a completed window or of the running one;
- `clip_probabilities`: the offline model on whole clips, which the windows must equal;
- `arrays` / `from_arrays`: its arrays in head.npz;

Its Keras side (the layers that train it, and this head exported from them) is in
`lrcn.models.architectures` (KERAS_HEADS, by the same name): stream/ imports no TensorFlow.

>>> head = load_head("bundle/head.npz")                      # doctest: +SKIP
>>> head.clip_probabilities(features[None, :16]).shape        # doctest: +SKIP
(1, 4)
>>> head_names()
['lstm', 'single_frame', 'pool']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.registry import Registry

HEAD_FILE = "head.npz"

# Modules that register the built-in head types, imported on the first lookup; their order is
# the order of `head_names()`.
BUILT_IN = (
    "lrcn.stream.heads.lstm",
    "lrcn.stream.heads.single_frame",
    "lrcn.stream.heads.pool",
    "lrcn.stream.heads.late",
)

State = dict[str, np.ndarray]


class Head:
    """What a head type provides. In `advance`, `emit` and `emit_running` a state is stacked
    over S streams: each array of `initial_state` gains a leading stream axis. Those arrays are
    fresh copies, free to change in place."""

    kind: ClassVar[str] = ""
    # Whether the Keras model outputs per-step probabilities that are averaged over the clip.
    per_timestep: bool = False
    # Whether a ModelSpec may ask for `per_timestep` training of this head type.
    per_timestep_variant: ClassVar[bool] = False
    # Whether it fuses other heads (stream.heads.late): a bundle's fusion, never a ModelSpec's head.
    fuses: ClassVar[bool] = False
    classes: tuple[str, ...]
    dense_bias: np.ndarray  # [C]: every head ends in one softmax layer

    @property
    def feature_size(self) -> int:
        raise NotImplementedError

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        """What the Keras model outputs for whole clips: [B, T, F] features -> [B, C]."""
        raise NotImplementedError

    def frame_inputs(self, features: np.ndarray) -> np.ndarray:
        """The part of a step that depends on the frame alone: [N, F] features -> [N, D]."""
        raise NotImplementedError

    def initial_state(self, slots: int, clip_length: int) -> State:
        """One stream's state with `slots` empty windows of up to `clip_length` frames."""
        raise NotImplementedError

    def advance(self, state: State, frame_inputs: np.ndarray, opened: np.ndarray, active: np.ndarray) -> State:
        """One frame for S streams: frame_inputs [S, D] (each shared by its stream's slots);
        opened [S, K] marks the slots whose window starts with this frame, active [S, K] the
        slots open after that (others are idle: what they hold is never emitted)."""
        raise NotImplementedError

    def emit(self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The model on each completed window (slot slots[r] of stream rows[r], `steps[r]` =
        clip_length frames): [R, C]."""
        raise NotImplementedError

    def emit_running(
        self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuous mode: the output of windows that have seen `steps` frames since they opened,
        [R, C], and how many of the latest frames it depends on, [R] (`steps`, or at most
        clip_length for a head that forgets older frames)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays head.npz keeps, besides kind, classes and per_timestep."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, classes: tuple[str, ...], arrays: Mapping[str, np.ndarray]) -> Head:
        """The head from head.npz's arrays; KeyError or ValueError if they do not fit."""
        raise NotImplementedError

    @classmethod
    def outputs_every_step(cls, spec) -> bool:
        """Whether the Keras model of this ModelSpec outputs [B, T, C], averaged over T at test time."""
        return cls.per_timestep


HEAD_TYPES: Registry[type[Head]] = Registry("head type", BUILT_IN)


def register(cls: type[Head]) -> type[Head]:
    """Class decorator: add a head type under its `kind`."""
    return HEAD_TYPES.add(cls.kind, cls)


def head_names() -> list[str]:
    """The head types a ModelSpec may name, built-in ones first (a fusing head, which a
    bundle's fusion picks, is left out)."""
    return [name for name in HEAD_TYPES.names() if not HEAD_TYPES.get(name).fuses]


def head_type(kind: str) -> type[Head]:
    return HEAD_TYPES.get(kind)


def save_head(path: str | Path, head: Head) -> Path:
    arrays: dict[str, Any] = {
        "kind": np.array(head.kind),
        "classes": np.array(head.classes),
        "per_timestep": np.array(head.per_timestep),
        **head.arrays(),
    }
    np.savez(path, **arrays)
    return Path(path)


def load_head(path: str | Path) -> Head:
    """Read head.npz; a missing or damaged file is one LrcnError line."""
    path = Path(path)
    if not path.is_file():
        raise LrcnError(f"bundle has no {path.name}: {path.parent} (run `lrcn export {path.parent}`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        kind, classes = str(arrays.pop("kind")), tuple(str(c) for c in arrays.pop("classes"))
    except (KeyError, ValueError, OSError) as err:
        raise LrcnError(f"{path}: not a head file ({err})") from None
    cls = head_type(kind)
    try:
        return cls.from_arrays(classes, arrays)
    except (KeyError, ValueError) as err:
        raise LrcnError(f"{path}: not a {kind} head file ({err})") from None


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


def push_recent(recent: np.ndarray, frame_inputs: np.ndarray) -> np.ndarray:
    """Streams' rings of their last T frame inputs, [S, T, D] oldest first, with one more frame
    each ([S, D]) in place of the oldest."""
    return np.concatenate([recent[:, 1:], frame_inputs[:, None].astype(recent.dtype)], axis=1)


def latest(recent: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[R, T] mask of the last counts[r] places of each ring."""
    return np.arange(recent.shape[1]) >= recent.shape[1] - np.asarray(counts)[:, None]
