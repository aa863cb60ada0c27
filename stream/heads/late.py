"""Late fusion: one head per modality, each over its own slice of the joined features, and the
weighted mean of their probabilities (the two-stream paper's weighted average of the streams'
softmax scores). It is a head like the others to `stream.windows` and the scheduler: its frame
inputs are the sub-heads' frame inputs side by side, its state their states under
"<modality>." keys, so exact and continuous windows step all sub-heads together.

head.npz (the layout models/export.py writes, CONTRACT23 "late head.npz layout"): kind "late",
`head_kind` (the sub-heads' kind), `modalities`, `feature_sizes`, `weights`, the sub-heads'
shared `per_timestep`, and each sub-head's arrays under "<modality>.<key>".

>>> head = LateHead.fuse({"rgb": rgb_head, "flow": flow_head}, weights=(0.4, 0.6))   # doctest: +SKIP
>>> head.clip_probabilities(np.concatenate([rgb_features, flow_features], -1)).shape  # doctest: +SKIP
(1, 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lrcn.stream.heads import Head, State, head_type, register


@register
@dataclass(frozen=True)
class LateHead(Head):
    classes: tuple[str, ...]
    modalities: tuple[str, ...]
    heads: tuple[Head, ...]  # one per modality, all of one kind
    weights: np.ndarray  # [M], summing to 1
    # The sub-heads' (fuse checks they agree), set from them: Head's attributes, not arguments.
    per_timestep: bool = field(init=False, repr=False, compare=False)
    dense_bias: np.ndarray = field(init=False, repr=False, compare=False)
    kind = "late"
    fuses = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_timestep", self.heads[0].per_timestep)
        object.__setattr__(self, "dense_bias", self.heads[0].dense_bias)

    @classmethod
    def fuse(cls, heads: Mapping[str, Head], weights: Sequence[float] | np.ndarray) -> LateHead:
        """The late fusion of `heads` (modality -> head, in the joined features' order)."""
        parts = tuple(heads.values())
        kinds = {(h.kind, h.per_timestep, tuple(h.classes)) for h in parts}
        if len(kinds) != 1:
            raise ValueError(f"late fusion needs heads of one kind and classes, got {sorted(k[0] for k in kinds)}")
        shares = np.asarray(weights, np.float64)
        if shares.shape != (len(parts),) or (shares < 0).any() or abs(shares.sum() - 1) > 1e-6:
            raise ValueError(f"fusion weights {shares.tolist()} must be one per modality, >= 0, summing to 1")
        return cls(tuple(parts[0].classes), tuple(heads), parts, shares)

    @property
    def sub_kind(self) -> str:
        return self.heads[0].kind

    @property
    def feature_sizes(self) -> tuple[int, ...]:
        return tuple(h.feature_size for h in self.heads)

    @property
    def feature_size(self) -> int:
        return sum(self.feature_sizes)

    @cached_property
    def _feature_bounds(self) -> np.ndarray:
        return np.cumsum((0, *self.feature_sizes))

    @cached_property
    def _input_bounds(self) -> np.ndarray:
        """Where each sub-head's frame inputs lie in ours."""
        widths = [h.frame_inputs(np.zeros((1, h.feature_size), np.float32)).shape[1] for h in self.heads]
        return np.cumsum((0, *widths))

    def _split(self, array: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
        return [array[..., start:end] for start, end in zip(bounds[:-1], bounds[1:])]

    def _fused(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        return sum(w * p for w, p in zip(self.weights, probabilities))

    def clip_probabilities(self, features: np.ndarray) -> np.ndarray:
        parts = self._split(np.asarray(features, np.float32), self._feature_bounds)
        return self._fused([h.clip_probabilities(x) for h, x in zip(self.heads, parts)])

    # The streaming windows: every sub-head's state under its modality's prefix.

    def frame_inputs(self, features: np.ndarray) -> np.ndarray:
        parts = self._split(np.asarray(features, np.float32), self._feature_bounds)
        return np.concatenate([h.frame_inputs(x) for h, x in zip(self.heads, parts)], axis=-1)

    def initial_state(self, slots: int, clip_length: int) -> State:
        return {
            f"{m}.{key}": array
            for m, h in zip(self.modalities, self.heads)
            for key, array in h.initial_state(slots, clip_length).items()
        }

    def _sub_state(self, state: State, modality: str) -> State:
        prefix = f"{modality}."
        return {key[len(prefix) :]: array for key, array in state.items() if key.startswith(prefix)}

    def advance(self, state: State, frame_inputs: np.ndarray, opened: np.ndarray, active: np.ndarray) -> State:
        advanced = {}
        for m, h, x in zip(self.modalities, self.heads, self._split(frame_inputs, self._input_bounds)):
            sub = h.advance(self._sub_state(state, m), np.ascontiguousarray(x), opened, active)
            advanced.update({f"{m}.{key}": array for key, array in sub.items()})
        return advanced

    def emit(self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self._fused(
            [h.emit(self._sub_state(state, m), rows, slots, steps) for m, h in zip(self.modalities, self.heads)]
        )

    def emit_running(
        self, state: State, rows: np.ndarray, slots: np.ndarray, steps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        outputs = [
            h.emit_running(self._sub_state(state, m), rows, slots, steps) for m, h in zip(self.modalities, self.heads)
        ]
        # Sub-heads of one kind depend on the same frames; the widest is what the fusion covers.
        return self._fused([p for p, _ in outputs]), np.max([c for _, c in outputs], axis=0)

    # head.npz

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "head_kind": np.array(self.sub_kind),
            "modalities": np.array(self.modalities),
            "feature_sizes": np.array(self.feature_sizes, np.int64),
            "weights": np.asarray(self.weights, np.float32),
        }
        for m, h in zip(self.modalities, self.heads):
            arrays |= {f"{m}.{key}": array for key, array in h.arrays().items()}
        return arrays

    @classmethod
    def from_arrays(cls, classes: tuple[str, ...], arrays: Mapping[str, np.ndarray]) -> LateHead:
        modalities = tuple(str(m) for m in arrays["modalities"])
        sizes = [int(s) for s in arrays["feature_sizes"]]
        kind = str(arrays["head_kind"])
        if head_type(kind).fuses:
            raise ValueError(f"its heads are {kind} heads, which fuse heads themselves")
        heads = {}
        for m in modalities:
            prefix = f"{m}."
            sub = {key[len(prefix) :]: array for key, array in arrays.items() if key.startswith(prefix)}
            heads[m] = head_type(kind).from_arrays(classes, {**sub, "per_timestep": arrays["per_timestep"]})
        found = [h.feature_size for h in heads.values()]
        if found != sizes:
            raise ValueError(f"sub-heads take {found} features, feature_sizes says {sizes}")
        return cls.fuse(heads, arrays["weights"])
