"""Stream training: the joined sequences, their per-frame targets and ignore margin (NumPy, no
training), the flags' one-line errors, and a tiny model stream-trained, exported and run in
continuous mode without resets through the runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrcn.models.stream_training import (
    Segment,
    StreamConfig,
    background_label,
    frame_targets,
    plan_sequence,
    sequence_batch,
    sequence_features,
    sequence_frames,
)
from lrcn.stream.errors import LrcnError


def feature_items(lengths_and_labels, views=2, features=3):
    """Per video: `views` arrays whose rows say where they come from: (video, view, frame)."""
    return [
        [np.stack([np.array([video, view, frame], np.float32) for frame in range(length)]) for view in range(views)]
        for video, (length, _) in enumerate(lengths_and_labels)
    ]


VIDEOS = [(30, 0), (12, 0), (40, 1), (25, 1), (50, 2), (8, 2), (60, 3)]  # (frames, label); label 3: background


def test_a_sequence_joins_random_stretches_of_videos_one_action_after_another():
    items = [(frames, label, 2) for frames, label in VIDEOS]
    for seed in range(20):
        plan = plan_sequence(items, 300, 10, 30, np.random.default_rng(seed), background=3, background_share=0.4)
        assert sum(s.length for s in plan) == 300
        assert all(a.label != b.label for a, b in zip(plan, plan[1:]))  # every segment is a change
        for s in plan:
            frames, label, views = items[s.item]
            assert s.label == label and 0 <= s.view < views
            assert 0 <= s.start and s.start + s.length <= frames  # inside its video
            assert s.length <= 30 and (s.length >= 10 or s.length == frames or s is plan[-1])
        assert plan[0].label != 3  # background only after an action
    labels = [
        s.label
        for seed in range(20)
        for s in plan_sequence(items, 300, 10, 30, np.random.default_rng(seed), background=3, background_share=0.4)
    ]
    assert set(labels) == {0, 1, 2, 3}
    shares = labels.count(3) / len(labels)
    assert 0.15 < shares < 0.4, shares  # about share / (1 + share) of the segments
    plain = [s.label for seed in range(5) for s in plan_sequence(items, 300, 10, 30, np.random.default_rng(seed))]
    assert plain[0] in (0, 1, 2, 3) and 3 in plain  # without a background it is an ordinary class
    none = plan_sequence(items, 300, 10, 30, np.random.default_rng(0), background=3, background_share=0.0)
    assert 3 not in {s.label for s in none}


def test_targets_are_the_current_action_and_the_margin_masks_frames_after_each_change():
    plan = [Segment(0, 0, 0, 6, 1), Segment(1, 1, 3, 4, 2), Segment(2, 0, 0, 5, 0)]
    targets, weights = frame_targets(plan, margin_frames=3)
    assert targets.tolist() == [1] * 6 + [2] * 4 + [0] * 5
    assert weights.tolist() == [0, 0, 0, 1, 1, 1] + [0, 0, 0, 1] + [0, 0, 0, 1, 1]
    assert frame_targets(plan, 0)[1].tolist() == [1] * 15  # no margin: every frame counts
    assert frame_targets(plan, 10)[1].tolist() == [0] * 15  # longer than a segment: all masked
    # Two neighbours of one label (as a plan never makes, but a caller might) are one action: no margin between.
    assert frame_targets([Segment(0, 0, 0, 4, 1), Segment(1, 0, 0, 4, 1)], 2)[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]


def test_sequence_features_are_the_segments_rows_in_order():
    items = feature_items(VIDEOS)
    plan = [Segment(2, 1, 5, 3, 1), Segment(5, 0, 0, 8, 2)]
    rows = sequence_features(items, plan)
    assert rows.tolist() == [[2, 1, 5], [2, 1, 6], [2, 1, 7]] + [[5, 0, f] for f in range(8)]


def test_a_batch_of_sequences_lines_up_features_targets_and_margin():
    items = feature_items(VIDEOS)
    labels = [label for _, label in VIDEOS]
    config = StreamConfig(segment_s=(1.0, 3.0), sequence_s=(6.4, 6.4), ignore_margin_s=0.4, background="bg", chunk=16)
    rng = np.random.default_rng(3)
    frames = sequence_frames(config, 10.0, rng)
    assert frames == 64  # 6.4 s at 10 fps, in whole chunks of 16
    x, y, w = sequence_batch(items, labels, 5, frames, 10.0, config, rng, background=3)
    assert x.shape == (5, 64, 3) and y.shape == w.shape == (5, 64) and x.dtype == np.float32
    for features, targets, weights in zip(x, y, w):
        videos = features[:, 0].astype(int)
        assert (targets == np.array([labels[v] for v in videos])).all()  # each frame's target is its video's class
        starts = [0] + [i for i in range(1, 64) if targets[i] != targets[i - 1]]
        for start in starts:
            assert (weights[start : start + 4] == 0).all()  # 0.4 s at 10 fps
        assert weights.sum() == 64 - sum(min(4, end - start) for start, end in zip(starts, starts[1:] + [64]))


def test_sequence_lengths_are_whole_chunks_within_the_range():
    config = StreamConfig(sequence_s=(3.0, 9.0), chunk=8)
    lengths = {sequence_frames(config, 10.0, np.random.default_rng(s)) for s in range(50)}
    assert lengths <= {32, 40, 48, 56, 64, 72, 80, 88} and len(lengths) > 3 and all(n % 8 == 0 for n in lengths)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(LrcnError, match="--background 'nope' is not a class"):
        background_label(("bend", "wave"), "nope")
    with pytest.raises(LrcnError, match="--ignore-margin must be >= 0"):
        StreamConfig(ignore_margin_s=-0.5)
    with pytest.raises(LrcnError, match="--segment-seconds"):
        StreamConfig(segment_s=(3.0, 1.0))
    with pytest.raises(LrcnError, match="not the background"):
        plan_sequence([(10, 0, 1)], 20, 2, 5, np.random.default_rng(0), background=0)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--background", "nope"], "--background 'nope' is not a class of the data"),
        (["--ignore-margin", "-1"], "--ignore-margin must be >= 0 seconds"),
        (["--cv"], "not with --cv"),
        (["--init-from", "no/such/bundle"], "model bundle not found: no/such/bundle"),
    ],
)
def test_bad_stream_flags_are_one_line_and_exit_2(small_synthetic, tmp_path, capsys, flags, message):
    pytest.importorskip("tensorflow")
    from lrcn.tools.cli.commands import main

    status = main(
        [
            "train",
            str(small_synthetic),
            "--out",
            str(tmp_path / "b"),
            "--stream-training",
            "--backbone",
            "small",
            "--trainable-layers",
            "0",
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("lrcn: error:") == 1 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "b" / "meta.json").exists()


def test_init_from_without_stream_training_is_one_line_and_exit_2(small_synthetic, tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from lrcn.tools.cli.commands import main

    status = main(["train", str(small_synthetic), "--out", str(tmp_path / "b"), "--init-from", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("lrcn: error:") == 1 and "apply to --stream-training only" in err, err


@pytest.mark.slow
def test_a_stream_trained_model_exports_and_runs_continuously_without_resets(small_synthetic, tmp_path):
    """A tiny LSTM on frozen (random) small-CNN features, stream-trained for a few epochs: the
    bundle is the usual one (meta says how it was trained), exports to the usual head.npz, and
    the runtime's continuous mode without resets gives at every frame what the trained
    Keras LSTM gives running over the whole stream from a zero state; exact windows still work."""
    pytest.importorskip("tensorflow")
    from lrcn.models import synth
    from lrcn.models.data import discover, split_by_groups
    from lrcn.models.experiment import load_bundle
    from lrcn.models.export import export_bundle
    from lrcn.models.stream_training import build_stream_head, train_stream_and_test
    from lrcn.models.train import TrainConfig
    from lrcn.stream.bundle import ModelSpec, read_meta
    from lrcn.stream.heads import load_head
    from lrcn.stream.heads.lstm import LstmHead
    from lrcn.stream.runtime_bundle import load_runtime_bundle
    from lrcn.stream.video import read_frames
    from lrcn.tools.stream_accuracy.stream_replay import replay_predictions
    from lrcn.tools.stream_accuracy.stream_scoring import HeadMode
    from lrcn.stream.windows import WindowConfig, frame_inputs, initial_state, step

    dataset = discover(small_synthetic)
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["02"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="small",
        trainable_layers=0,
        input_size=(32, 32),
        clip_length=8,
        fps=10,
        lstm_units=24,
    )
    config = TrainConfig(
        epochs=3,
        batch_size=4,
        learning_rate=1e-3,
        patience=3,
        clips_per_video=4,
        cache_dir=str(tmp_path / "cache"),
        progress=False,
        refit=False,
    )
    stream = StreamConfig(segment_s=(0.8, 2.0), sequence_s=(3.2, 4.8), ignore_margin_s=0.2, background="still", chunk=8)
    bundle = tmp_path / "bundle"
    result = train_stream_and_test(spec, train_videos, test_videos, bundle, config, stream)
    assert result["videos"] == len(test_videos) == 14  # evaluated on isolated test clips, as usual

    meta = read_meta(bundle)
    recorded = meta.training["stream_training"]
    assert recorded["ignore_margin_s"] == 0.2 and recorded["background"] == "still" and recorded["chunk"] == 8
    assert meta.training["test_groups"] == ["02"] and meta.metrics["test"]["videos"] == 14
    assert json.loads((bundle / "meta.json").read_text())["model"]["head"] == "lstm"

    video, sidecar = synth.write_continuous(
        tmp_path / "stream.avi", duration_s=12.0, size=32, seed=9, min_segment_s=1.5, max_segment_s=3.0
    )
    frames = read_frames(video, spec.input_size, spec.fps)
    export_bundle(bundle, frames[:16])
    runtime = load_runtime_bundle(bundle)
    head = load_head(bundle / "head.npz")
    assert isinstance(head, LstmHead) and not head.per_timestep  # the same head form as window training
    features = runtime.encoder.encode(frames)
    assert len(features) > 10 * spec.clip_length  # far past the 8 steps of a window

    # The trained LSTM over the whole stream, from a zero state, in Keras.
    model, _ = load_bundle(bundle)
    keras_head = build_stream_head(spec, features.shape[1])
    from keras import layers

    lstm_of = lambda m: next(layer for layer in m.layers if isinstance(layer, layers.LSTM))  # noqa: E731
    lstm_of(keras_head).set_weights(lstm_of(model).get_weights())
    keras_head.layers[-1].set_weights(model.layers[-1].get_weights())
    zeros = np.zeros((1, spec.lstm_units), np.float32)
    expected = np.asarray(keras_head([features[None], zeros, zeros], training=False)[0])[0]

    inputs = frame_inputs(head, features)
    continuous = replay_predictions(
        head, spec.clip_length, HeadMode("continuous", "continuous"), inputs, range(len(features))
    )
    assert len(continuous) == len(features)  # one prediction per frame, no reset
    assert [p["label"] for p in continuous] == [spec.classes[i] for i in expected.argmax(axis=1)]
    config_c = WindowConfig(mode="continuous")
    state = initial_state(head, spec.clip_length, config_c)
    for t, x in enumerate(inputs):
        state, window = step(head, spec.clip_length, config_c, state, x, t)
        np.testing.assert_allclose(window.probabilities, expected[t], atol=2e-5)
        assert window.first == 0  # the state holds every frame since the start
    # Exact windows: each equals the exported head on exactly those frames, as for window training.
    exact = WindowConfig(mode="exact", hop=4)
    state, windows = initial_state(head, spec.clip_length, exact), []
    for t, x in enumerate(inputs):
        state, window = step(head, spec.clip_length, exact, state, x, t)
        if window is not None:
            windows.append(window)
    assert len(windows) == (len(features) - spec.clip_length) // 4 + 1
    for window in windows:
        clip = features[window.first : window.last + 1][None]
        np.testing.assert_allclose(window.probabilities, head.clip_probabilities(clip)[0], atol=2e-5)

    # --init-from: fine-tuning starts exactly where this bundle's chosen epoch ended (the same
    # validation sequences score the same before the first step), and a bundle that does not fit is one line.
    from dataclasses import replace

    tuned = tmp_path / "tuned"
    train_stream_and_test(
        spec, train_videos, [], tuned, replace(config, epochs=1), replace(stream, init_from=str(bundle))
    )
    tuned_meta = read_meta(tuned)
    assert tuned_meta.training["stream_training"]["init_from"] == str(bundle)
    assert tuned_meta.training["initial"]["val_loss"] == pytest.approx(
        meta.training["at_best_epoch"]["val_loss"], abs=1e-4
    )
    with pytest.raises(LrcnError, match=r"--init-from .*: its lstm_units \(24\) differs from this model's \(16\)$"):
        train_stream_and_test(
            replace(spec, lstm_units=16),
            train_videos,
            [],
            tmp_path / "no",
            config,
            replace(stream, init_from=str(bundle)),
        )
