"""The window state machines against the offline head, on random weights and features (no TensorFlow)."""

import numpy as np
import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.heads.lstm import LstmHead
from lrcn.stream.heads.pool import PoolHead
from lrcn.stream.heads.single_frame import FrameHead
from lrcn.stream.smoothing import SmootherState, parse_smoothing, smooth
from lrcn.stream.windows import (
    CONTINUOUS,
    EXACT,
    WindowConfig,
    frame_inputs,
    initial_state,
    slot_count,
    step,
    step_streams,
)

pytestmark = pytest.mark.timeout(60)

CLASSES = ("a", "b", "c", "d")
T, F, U = 6, 10, 8


def lstm_head(per_timestep=False, seed=0) -> LstmHead:
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.normal(0, 0.6, shape).astype(np.float32)
    return LstmHead(
        CLASSES,
        kernel=w(F, 4 * U),
        recurrent_kernel=w(U, 4 * U),
        bias=w(4 * U),
        dense_kernel=w(U, 4),
        dense_bias=w(4),
        per_timestep=per_timestep,
    )


def frame_head(seed=0) -> FrameHead:
    rng = np.random.default_rng(seed)
    return FrameHead(CLASSES, rng.normal(0, 0.6, (F, 4)).astype(np.float32), rng.normal(0, 0.6, 4).astype(np.float32))


def pool_head(seed=0) -> PoolHead:
    rng = np.random.default_rng(seed)
    return PoolHead(
        CLASSES, rng.normal(0, 0.6, (2 * F, 4)).astype(np.float32), rng.normal(0, 0.6, 4).astype(np.float32)
    )


HEADS = {
    "lstm": lstm_head(),
    "lstm-per-timestep": lstm_head(per_timestep=True),
    "single-frame": frame_head(),
    "pool": pool_head(),
}


def run(head, config, features, indices=None):
    """Step a stream over all features; return the emitted windows."""
    indices = range(len(features)) if indices is None else indices
    state, windows = initial_state(head, T, config), []
    for x, index in zip(frame_inputs(head, features), indices):
        state, window = step(head, T, config, state, x, index)
        if window is not None:
            windows.append(window)
    return windows


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("hop", [1, 2, 3, 4, T, T + 3])
def test_every_exact_window_equals_the_offline_model_on_the_same_frames(name, hop):
    head = HEADS[name]
    features = np.random.default_rng(1).normal(0, 1, (40, F)).astype(np.float32)
    windows = run(head, WindowConfig(EXACT, hop=hop), features)
    starts = list(range(0, len(features) - T + 1, hop))
    assert [(w.first, w.last) for w in windows] == [(s, s + T - 1) for s in starts]
    offline = head.clip_probabilities(np.stack([features[s : s + T] for s in starts]))
    np.testing.assert_allclose(np.stack([w.probabilities for w in windows]), offline, atol=1e-5)


def test_exact_windows_keep_ceil_t_over_hop_states():
    assert [slot_count(16, WindowConfig(EXACT, hop=h)) for h in (1, 3, 16, 40)] == [16, 6, 1, 1]
    assert slot_count(16, WindowConfig(CONTINUOUS, hop=3)) == 1
    state = initial_state(HEADS["lstm"], T, WindowConfig(EXACT, hop=4))
    assert state.head["h"].shape == (2, U) and list(state.steps) == [-1, -1]


def test_windows_report_source_frame_indices_not_step_counts():
    features = np.random.default_rng(2).normal(0, 1, (8, F)).astype(np.float32)
    indices = [10, 13, 15, 18, 20, 23, 25, 28]
    windows = run(HEADS["lstm"], WindowConfig(EXACT, hop=2), features, indices)
    assert [(w.first, w.last) for w in windows] == [(10, 23), (15, 28)]


def test_continuous_mode_keeps_one_state_and_restarts_it_every_n_frames():
    head = HEADS["lstm"]
    features = np.random.default_rng(3).normal(0, 1, (20, F)).astype(np.float32)
    windows = run(head, WindowConfig(CONTINUOUS, hop=1, reset_every=7), features)
    assert len(windows) == 20
    assert [w.first for w in windows] == [0] * 7 + [7] * 7 + [14] * 6
    for w in windows:
        # The state after frames first..last, from zero, is the offline last-step output.
        expected = head.clip_probabilities(features[None, w.first : w.last + 1])[0]
        np.testing.assert_allclose(w.probabilities, expected, atol=1e-5)


def test_continuous_mode_without_reset_runs_on_and_emits_every_hop_frames():
    head = HEADS["lstm"]
    features = np.random.default_rng(4).normal(0, 1, (30, F)).astype(np.float32)
    windows = run(head, WindowConfig(CONTINUOUS, hop=5), features)
    assert [(w.first, w.last) for w in windows] == [(0, i) for i in range(4, 30, 5)]
    np.testing.assert_allclose(windows[-1].probabilities, head.clip_probabilities(features[None])[0], atol=1e-5)


def test_a_single_frame_head_in_continuous_mode_averages_the_last_t_frames():
    head = HEADS["single-frame"]
    features = np.random.default_rng(5).normal(0, 1, (15, F)).astype(np.float32)
    windows = run(head, WindowConfig(CONTINUOUS), features)
    assert [(w.first, w.last) for w in windows] == [(max(0, i - T + 1), i) for i in range(15)]
    for w in windows:
        recent = features[max(0, w.last - T + 1) : w.last + 1]
        np.testing.assert_allclose(w.probabilities, head.probabilities(recent).mean(axis=0), atol=1e-6)


def test_pool_head_frame_inputs_are_the_features_themselves():
    features = np.random.default_rng(7).normal(0, 1, (3, F))
    inputs = frame_inputs(HEADS["pool"], features)
    assert inputs.dtype == np.float32 and inputs.shape == (3, F)
    np.testing.assert_array_equal(inputs, features.astype(np.float32))


@pytest.mark.parametrize("hop", [1, 3])
def test_every_exact_pool_window_is_the_pooled_model_on_exactly_its_frames(hop):
    head = HEADS["pool"]
    # Sampled frame indices with uneven gaps: windows must name source frames, not step counts.
    features = np.random.default_rng(8).normal(0, 1, (25, F)).astype(np.float32)
    indices = np.cumsum(np.random.default_rng(9).integers(1, 4, 25)) + 100
    windows = run(head, WindowConfig(EXACT, hop=hop), features, indices.tolist())
    starts = list(range(0, 25 - T + 1, hop))
    assert len(starts) > 3
    assert [(w.first, w.last) for w in windows] == [(indices[s], indices[s + T - 1]) for s in starts]
    for s, w in zip(starts, windows):
        np.testing.assert_allclose(w.probabilities, head.clip_probabilities(features[None, s : s + T])[0], atol=1e-6)
    # The ring order matters to nothing but rounding; a window of other frames must differ.
    assert not np.allclose(windows[0].probabilities, windows[1].probabilities, atol=1e-3)


@pytest.mark.parametrize("hop, reset_every", [(1, None), (2, None), (1, 4), (3, 9)])
def test_pool_head_in_continuous_mode_pools_the_last_t_frames_since_the_restart(hop, reset_every):
    head = HEADS["pool"]
    features = np.random.default_rng(10).normal(0, 1, (26, F)).astype(np.float32)
    windows = run(head, WindowConfig(CONTINUOUS, hop=hop, reset_every=reset_every), features)
    period = reset_every or len(features)
    expected = []
    for i in range(len(features)):
        restart = i // period * period
        since = i - restart + 1
        if since % hop == 0:
            expected.append((max(restart, i - T + 1), i))
    assert [(w.first, w.last) for w in windows] == expected
    for w in windows:
        pooled = head.clip_probabilities(features[None, w.first : w.last + 1])[0]
        np.testing.assert_allclose(w.probabilities, pooled, atol=1e-6)
    if reset_every and reset_every < T:
        # Right after a restart the window is the new frames alone, not the last T.
        w = next(w for w in windows if w.first == reset_every)
        assert w.last - w.first + 1 < T


def test_step_does_not_change_the_state_it_was_given():
    head, config = HEADS["lstm-per-timestep"], WindowConfig(EXACT, hop=2)
    x = frame_inputs(head, np.ones((1, F), np.float32))[0]
    before = initial_state(head, T, config)
    copies = {k: v.copy() for k, v in vars(before).items() if isinstance(v, np.ndarray)}
    after, _ = step(head, T, config, before, x, 0)
    assert after is not before and after.frames == 1
    assert all(np.array_equal(getattr(before, k), v) for k, v in copies.items())


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize(
    "config",
    [
        WindowConfig(EXACT, hop=1),
        WindowConfig(EXACT, hop=4),
        WindowConfig(EXACT, hop=T + 2),
        WindowConfig(CONTINUOUS, hop=2, reset_every=5),
        WindowConfig(CONTINUOUS),
    ],
    ids=["exact1", "exact4", "exact-sparse", "continuous-reset", "continuous"],
)
def test_stepping_streams_together_gives_what_each_gives_alone(name, config):
    """Streams at different phases (one joins late, one is reset midway) stepped in one call
    emit exactly the windows they emit stepped one by one."""
    head = HEADS[name]
    rng = np.random.default_rng(6)
    features = {s: rng.normal(0, 1, (30, F)).astype(np.float32) for s in "abc"}
    starts = {"a": 0, "b": 0, "c": 7}
    alone = {s: run(head, config, features[s][starts[s] :], range(starts[s], 30)) for s in "ab"}
    alone["c"] = run(head, config, features["c"][7:12], range(7, 12)) + run(
        head, config, features["c"][12:], range(12, 30)
    )
    states = {s: initial_state(head, T, config) for s in "abc"}
    together = {s: [] for s in "abc"}
    for i in range(30):
        names = [s for s in "abc" if i >= starts[s]]
        if i == 12:
            states["c"] = initial_state(head, T, config)  # a gap in c
        inputs = frame_inputs(head, np.stack([features[s][i] for s in names]))
        new, windows = step_streams(head, T, config, [states[s] for s in names], inputs, [i] * len(names))
        for s, state, window in zip(names, new, windows):
            states[s] = state
            if window is not None:
                together[s].append(window)
    for s in "abc":
        assert [(w.first, w.last) for w in together[s]] == [(w.first, w.last) for w in alone[s]] != []
        np.testing.assert_allclose(
            [w.probabilities for w in together[s]], [w.probabilities for w in alone[s]], atol=1e-6
        )


def test_bad_window_settings_are_one_line_errors():
    for kwargs, complaint in (
        ({"mode": "sliding"}, "head mode"),
        ({"hop": 0}, "hop"),
        ({"reset_every": 0}, "reset_every"),
    ):
        with pytest.raises(LrcnError, match=complaint):
            WindowConfig(**kwargs)


def test_ema_smooths_the_label_and_score_only():
    config = parse_smoothing("ema:0.5")
    state, label, score = smooth(config, SmootherState(), np.array([0.8, 0.2]))
    assert (label, score) == (0, 0.8)
    raw = np.array([0.3, 0.7])
    state, label, score = smooth(config, state, raw)
    assert label == 0 and score == pytest.approx(0.55)
    assert list(raw) == [0.3, 0.7]


def test_hysteresis_switches_after_m_wins_in_a_row_and_a_margin():
    config = parse_smoothing("hysteresis:3:0.2")
    state, labels = SmootherState(), []
    for p in ([0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.3, 0.7], [0.3, 0.7], [0.2, 0.8]):
        state, label, _ = smooth(config, state, np.array(p))
        labels.append(label)
    # [0.45, 0.55] wins by less than the margin, which breaks the streak.
    assert labels == [0, 0, 0, 0, 0, 1]
    assert smooth(None, SmootherState(), np.array([0.1, 0.9]))[1:] == (1, 0.9)


@pytest.mark.parametrize("text", ["ema", "ema:0", "ema:2", "hysteresis:0", "hysteresis:x", "median:3"])
def test_bad_smoothing_is_a_one_line_error(text):
    with pytest.raises(LrcnError, match="smoothing must be"):
        parse_smoothing(text)
