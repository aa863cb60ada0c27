"""The head registry: a head type defined here plugs into the streaming windows with no other
change, and every registered head type keeps its arrays in head.npz (no TensorFlow)."""

from dataclasses import dataclass

import numpy as np
import pytest

from lrcn.stream import bundle
from lrcn.stream.errors import LrcnError
from lrcn.stream.heads import HEAD_TYPES, Head, head_names, load_head, register, save_head, softmax
from lrcn.stream.heads.lstm import LstmHead
from lrcn.stream.heads.pool import PoolHead
from lrcn.stream.heads.single_frame import FrameHead
from lrcn.stream.windows import CONTINUOUS, EXACT, WindowConfig, frame_inputs, initial_state, step, step_streams

pytestmark = pytest.mark.timeout(60)

CLASSES = ("a", "b", "c")
T, F, U = 5, 7, 6


@dataclass(frozen=True)
class LastFrameHead(Head):
    """A head whose output is the softmax of the window's last frame: each slot keeps that softmax."""

    classes: tuple[str, ...]
    dense_kernel: np.ndarray  # [F, C]
    dense_bias: np.ndarray  # [C]
    kind = "last"

    @property
    def feature_size(self):
        return self.dense_kernel.shape[0]

    def clip_probabilities(self, features):
        return softmax(np.asarray(features, np.float32)[:, -1] @ self.dense_kernel + self.dense_bias)

    def frame_inputs(self, features):
        return softmax(np.asarray(features, np.float32) @ self.dense_kernel + self.dense_bias)

    def initial_state(self, slots, clip_length):
        return {"last": np.zeros((slots, len(self.classes)), np.float32)}

    def advance(self, state, frame_inputs, opened, active):
        return {"last": np.where(active[..., None], frame_inputs[:, None], state["last"])}

    def emit(self, state, rows, slots, steps):
        return state["last"][rows, slots]

    def emit_running(self, state, rows, slots, steps):
        return state["last"][rows, slots], np.ones_like(steps)  # it depends on the latest frame alone

    def arrays(self):
        return {"dense_kernel": self.dense_kernel, "dense_bias": self.dense_bias}

    @classmethod
    def from_arrays(cls, classes, arrays):
        return cls(classes, arrays["dense_kernel"], arrays["dense_bias"])


@pytest.fixture
def last_head():
    register(LastFrameHead)
    yield LastFrameHead(CLASSES, *weights(3, (F, 3), (3,)))
    HEAD_TYPES.remove("last")


def weights(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.6, shape).astype(np.float32) for shape in shapes]


# One example of every head type (and variant); a new head type adds its own here.
EXAMPLES = {
    "lstm": lambda: LstmHead(CLASSES, *weights(0, (F, 4 * U), (U, 4 * U), (4 * U,), (U, 3), (3,))),
    "lstm-per-timestep": lambda: LstmHead(
        CLASSES, *weights(1, (F, 4 * U), (U, 4 * U), (4 * U,), (U, 3), (3,)), per_timestep=True
    ),
    "single_frame": lambda: FrameHead(CLASSES, *weights(2, (F, 3), (3,))),
    "pool": lambda: PoolHead(CLASSES, *weights(3, (2 * F, 3), (3,))),
    "last": lambda: LastFrameHead(CLASSES, *weights(4, (F, 3), (3,))),
}
# The arrays each built-in type wrote to head.npz before the registry: existing bundles must load.
NPZ_KEYS = {
    "lstm": {"kind", "classes", "per_timestep", "dense_kernel", "dense_bias", "kernel", "recurrent_kernel", "bias"},
    "single_frame": {"kind", "classes", "per_timestep", "dense_kernel", "dense_bias"},
    "pool": {"kind", "classes", "per_timestep", "dense_kernel", "dense_bias"},
}


def features(seed, count=40):
    return np.random.default_rng(seed).normal(0, 1, (count, F)).astype(np.float32)


def run(head, config, xs, indices):
    state, windows = initial_state(head, T, config), []
    for x, index in zip(frame_inputs(head, xs), indices):
        state, window = step(head, T, config, state, x, index)
        windows.append(window)
    return [w for w in windows if w is not None]


def test_the_registry_names_the_built_in_heads_and_the_model_spec_accepts_them():
    assert head_names()[:3] == ["lstm", "single_frame", "pool"]
    assert bundle.HEADS == tuple(head_names())
    with pytest.raises(LrcnError, match="head 'last' is not one of lstm, single_frame, pool"):
        bundle.ModelSpec(classes=CLASSES, head="last")


@pytest.mark.parametrize("hop", [1, 2, T, T + 3])
def test_a_head_type_defined_in_a_test_runs_in_exact_windows(last_head, hop):
    xs, indices = features(5), list(range(100, 140))
    windows = run(last_head, WindowConfig(EXACT, hop=hop), xs, indices)
    starts = list(range(0, len(xs) - T + 1, hop))
    assert [(w.first, w.last) for w in windows] == [(indices[s], indices[s + T - 1]) for s in starts]
    for s, w in zip(starts, windows):
        np.testing.assert_allclose(w.probabilities, last_head.clip_probabilities(xs[None, s : s + T])[0], atol=1e-6)
    assert "last" in head_names()


@pytest.mark.parametrize("config", [WindowConfig(CONTINUOUS), WindowConfig(CONTINUOUS, hop=3, reset_every=4)])
def test_a_head_type_defined_in_a_test_runs_in_continuous_mode_over_the_frames_it_covers(last_head, config):
    xs = features(6, 20)
    windows = run(last_head, config, xs, range(20))
    assert len(windows) == (20 if config.hop == 1 else 5)
    for w in windows:
        assert w.first == w.last  # it said its output depends on the latest frame alone
        np.testing.assert_allclose(
            w.probabilities, last_head.clip_probabilities(xs[None, w.first : w.last + 1])[0], atol=1e-6
        )


def test_streams_of_a_test_head_stepped_together_give_what_each_gives_alone(last_head):
    config, xs = WindowConfig(EXACT, hop=2), {s: features(seed, 25) for seed, s in enumerate("ab")}
    alone = {s: run(last_head, config, xs[s], range(25)) for s in "ab"}
    states, together = [initial_state(last_head, T, config)] * 2, {"a": [], "b": []}
    for i in range(25):
        states, windows = step_streams(
            last_head, T, config, states, frame_inputs(last_head, np.stack([xs["a"][i], xs["b"][i]])), [i, i]
        )
        for s, window in zip("ab", windows):
            together[s] += [window] if window else []
    for s in "ab":
        assert [(w.first, w.last) for w in together[s]] == [(w.first, w.last) for w in alone[s]] != []
        np.testing.assert_array_equal([w.probabilities for w in together[s]], [w.probabilities for w in alone[s]])


def test_every_registered_head_round_trips_through_head_npz(last_head, tmp_path):
    kinds = {EXAMPLES[name]().kind for name in EXAMPLES}
    assert kinds == set(head_names()), "every registered head type needs an example in EXAMPLES"
    clips = np.random.default_rng(7).normal(0, 1, (4, T, F)).astype(np.float32)
    for name, example in EXAMPLES.items():
        head = example()
        path = save_head(tmp_path / f"{name}.npz", head)
        if head.kind in NPZ_KEYS:
            with np.load(path) as data:
                assert set(data.files) == NPZ_KEYS[head.kind], name
        loaded = load_head(path)
        assert type(loaded) is type(head) and loaded.classes == CLASSES and loaded.per_timestep == head.per_timestep
        assert loaded.feature_size == F
        for key, array in head.arrays().items():
            np.testing.assert_array_equal(loaded.arrays()[key], array)
        np.testing.assert_array_equal(loaded.clip_probabilities(clips), head.clip_probabilities(clips))


def test_a_head_file_of_an_unknown_or_broken_type_is_one_line(tmp_path):
    np.savez(
        tmp_path / "odd.npz", kind=np.array("transformer"), classes=np.array(CLASSES), per_timestep=np.array(False)
    )
    with pytest.raises(LrcnError, match="unknown head type 'transformer'"):
        load_head(tmp_path / "odd.npz")
    odd_pool = PoolHead(CLASSES, *weights(0, (2 * F + 1, 3), (3,)))
    with pytest.raises(LrcnError, match="not a pool head file .*pooling kernel has 15 rows"):
        load_head(save_head(tmp_path / "pool.npz", odd_pool))
    with pytest.raises(LrcnError, match="bundle has no head.npz"):
        load_head(tmp_path / "head.npz")
