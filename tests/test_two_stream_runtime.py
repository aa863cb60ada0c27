"""A two-stream (RGB + flow) bundle in the runtime, on real video files and real ONNX encoders
(tests/two_stream.py, no TensorFlow): each frame's flow computed once and encoded once per
modality; its windows, live and offline, what the encoders and head give in NumPy; late fusion
through the windows; `idle` from the gate or the model's own class starts no event; the open-set
guard fitted over the joined features; and one-line errors for a bundle that does not fit."""

import json
import shutil

import numpy as np
import pytest

from lrcn.stream.encoders.joint import JointEncoder, open_joint_encoder
from lrcn.stream.encoders.onnxruntime import OnnxRuntimeEncoder
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules, EventState, Observation, published_label, step
from lrcn.stream.heads import load_head, save_head
from lrcn.stream.heads.late import LateHead
from lrcn.stream.pipeline import StreamConfig, source_options
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.scheduler import Scheduler, StreamPlan
from lrcn.stream.sources import SourceOptions
from lrcn.stream.video import read_video_frames
from lrcn.stream.windows import CONTINUOUS, EXACT, WindowConfig, frame_inputs, initial_state, step as window_step
from lrcn.tools.cli.commands import main
from tests.bundles import real_video
from tests.live_servers import FFMPEG, ts_with_timestamp_break
from tests.media import still_video
from tests.receivers import run_pipeline
from tests.two_stream_bundle import F_FLOW, F_RGB, SIZE, TinyTwoStream, flow_graph, lstm_head, motion_head, save_graph

pytestmark = pytest.mark.timeout(180)
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return real_video(tmp_path_factory.mktemp("video"))


def offline(tiny: TinyTwoStream, frames) -> np.ndarray:
    """The encoders in NumPy on the frames and their fields: [N, F]."""
    return tiny.features(
        np.stack([f.image for f in frames]), np.stack([f.flow for f in frames]) if frames[0].flow is not None else None
    )


def windows_of(scheduler: Scheduler, frames, chunks=(1, 3, 2, 5)) -> list:
    """Every prediction of stream "s" fed `frames` in chunks of varying size, as the rings hand them over."""
    predictions, i, turn = [], 0, 0
    while i < len(frames):
        size = chunks[turn % len(chunks)]
        predictions += scheduler.process({"s": frames[i : i + size]}).predictions
        i, turn = i + size, turn + 1
    return predictions


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_exact_windows_equal_the_encoders_and_head_in_numpy_and_each_frame_is_encoded_once_per_modality(
    tmp_path, video, fusion
):
    tiny = TinyTwoStream.write(tmp_path / "bundle", fusion=fusion)
    bundle = load_runtime_bundle(tiny.path)
    assert bundle.needs_flow and bundle.encoder.feature_sizes == {"rgb": F_RGB, "flow": F_FLOW}
    frames = read_video_frames(video, SIZE, 10, flow=True)
    scheduler = Scheduler(bundle.head, 4, bundle.encoder, [StreamPlan("s", WindowConfig(EXACT, 1))])
    predictions = windows_of(scheduler, frames)
    features = offline(tiny, frames)
    assert len(predictions) == len(frames) - 3
    for p in predictions:
        first, last = p.window
        expected = tiny.head.clip_probabilities(features[None, first : last + 1])[0]
        np.testing.assert_allclose(p.probabilities, expected, atol=1e-4)
    stats = scheduler.stats()
    assert stats.encoded == len(frames) and stats.streams["s"].repeats == 0
    assert stats.encoded_by_modality == {"rgb": len(frames), "flow": len(frames)}, "once per frame and modality"


def test_a_flow_only_bundle_runs_on_its_flow_encoder_alone(tmp_path, video):
    tiny = TinyTwoStream.write(tmp_path / "bundle", modalities=("flow",))
    bundle = load_runtime_bundle(tiny.path)
    assert bundle.needs_flow and not (tiny.path / "encoder.onnx").exists()
    frames = read_video_frames(video, SIZE, 10, flow=True)
    scheduler = Scheduler(bundle.head, 4, bundle.encoder, [StreamPlan("s")])
    predictions = windows_of(scheduler, frames)
    features = tiny.features(None, np.stack([f.flow for f in frames]), modalities=("flow",))
    for p in predictions:
        expected = tiny.head.clip_probabilities(features[None, p.window[0] : p.window[1] + 1])[0]
        np.testing.assert_allclose(p.probabilities, expected, atol=1e-4)
    assert scheduler.stats().encoded_by_modality == {"flow": len(frames)} and len(predictions) == len(frames) - 3


def test_the_late_head_is_the_weighted_mean_of_its_heads_in_every_window_mode_and_survives_its_file(tmp_path):
    rng = np.random.default_rng(3)
    for kind in ("lstm", "pool"):
        parts = (
            {"rgb": lstm_head(F_RGB, seed=1), "flow": lstm_head(F_FLOW, seed=2)}
            if kind == "lstm"
            else {
                m: type(motion_head())(
                    ("bend", "wave", "walk"),
                    rng.standard_normal((2 * f, 3)).astype(np.float32),
                    rng.standard_normal(3).astype(np.float32),
                )
                for m, f in (("rgb", F_RGB), ("flow", F_FLOW))
            }
        )
        head = LateHead.fuse(parts, weights=(0.3, 0.7))
        again = load_head(save_head(tmp_path / f"{kind}.npz", head))
        assert again.kind == "late" and again.sub_kind == kind and again.modalities == ("rgb", "flow")
        features = rng.standard_normal((1, 11, F_RGB + F_FLOW)).astype(np.float32)
        clip = features[:, :4]
        expected = 0.3 * parts["rgb"].clip_probabilities(clip[..., :F_RGB]) + 0.7 * parts["flow"].clip_probabilities(
            clip[..., F_RGB:]
        )
        np.testing.assert_allclose(again.clip_probabilities(clip), expected, atol=1e-6)
        inputs = frame_inputs(again, features[0])
        for config in (WindowConfig(EXACT, 2), WindowConfig(CONTINUOUS, 1, reset_every=6)):
            state = initial_state(again, 4, config)
            for index, row in enumerate(inputs):
                state, window = window_step(again, 4, config, state, row, index)
                if window is not None:
                    covered = features[:, window.first : window.last + 1]
                    np.testing.assert_allclose(window.probabilities, again.clip_probabilities(covered)[0], atol=1e-5)


@needs_ffmpeg
@pytest.mark.parametrize("pace", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_served_live_a_two_stream_bundle_equals_its_offline_path_and_has_no_flow_across_a_segment_start(tmp_path, pace):
    """A file whose timestamps jump, served paced (as a camera) and unpaced: two segments live
    (capture) and offline (read_video_frames) alike; no window spans the jump, the jump's first
    frame has the zero field, and every published window is the NumPy model on the offline
    frames and fields."""
    video, boundary = ts_with_timestamp_break(tmp_path / "jump.ts", "jump", seconds=2.0)
    tiny = TinyTwoStream.write(tmp_path / "bundle", fusion="early")
    stats, predictions, _ = run_pipeline(load_runtime_bundle(tiny.path), video, idle_motion=0.0, pace=pace)
    frames = read_video_frames(video, SIZE, 10, flow=True)
    starts = [f.index for f in frames if f.motion is None]
    assert len(starts) == 2 and all((f.flow == 128).all() for f in frames if f.motion is None)
    assert stats.flows == stats.sampled - 2 == len(frames) - 2, "one field per frame, none at a segment start"
    assert stats.encoded == len(frames)
    features = offline(tiny, frames)
    assert len(predictions) == len(frames) - 2 * 3
    assert not any(p["window"][0] < boundary <= p["window"][1] for p in predictions), "no window across the jump"
    # Live indices count decoded frames, offline ones sampled frames: the j-th window of a segment
    # ends on its (j + 4)-th sampled frame either way.
    segment_starts = [0, starts[1]]
    for part, start in enumerate(segment_starts):
        published = [p for p in predictions if (p["window"][0] >= boundary) == bool(part)]
        for j, p in enumerate(published):
            rows = features[start + j : start + j + 4]
            expected = tiny.head.clip_probabilities(rows[None])[0]
            np.testing.assert_allclose(list(p["probabilities"].values()), expected, atol=1e-4)


@needs_ffmpeg
def test_a_still_is_idle_from_the_gate_or_the_models_own_class_and_starts_no_event_while_motion_does(tmp_path, video):
    tiny = TinyTwoStream.write(tmp_path / "bundle", head=motion_head())
    bundle = load_runtime_bundle(tiny.path)
    still = still_video(tmp_path)
    stats, gated, events = run_pipeline(bundle, still)
    assert gated and {p["label"] for p in gated} == {"idle"} and events == []
    stats, ungated, events = run_pipeline(bundle, still, idle_motion=0.0)
    assert stats.flows == stats.sampled - 1, "the bundle sees motion: flow computed with the gate off"
    assert ungated and {p["label"] for p in ungated} == {"idle"} and events == [], "the model's idle class"
    assert all(p["probabilities"]["idle"] > 0.5 for p in ungated)
    _, moving, events = run_pipeline(bundle, video, idle_motion=0.0)
    assert "wave" in {p["label"] for p in moving} and any(e["type"] == "start" for e in events)


def test_idle_from_the_model_ends_a_running_event_and_is_published_over_the_guard():
    rules = EventRules(min_score=0.5)
    state, sent = EventState(), []
    for t, label in enumerate(["wave", "wave", "idle", "idle", "wave"]):
        shown = published_label(rules, label, 0.9, novel=label == "idle")
        state, events = step(rules, state, Observation(shown, 0.9, float(t), t))
        sent += [(e.type, e.label, t) for e in events]
    assert sent == [("start", "wave", 0), ("end", "wave", 2), ("start", "wave", 4)]
    assert published_label(rules, "idle", 0.4) == "unknown", "a weak idle is as unsure as any class"


def test_an_rgb_bundle_runs_as_before_and_computes_no_flow(tmp_path, video):
    tiny = TinyTwoStream.write(tmp_path / "bundle", modalities=("rgb",))
    bundle = load_runtime_bundle(tiny.path)
    assert not bundle.needs_flow and (tmp_path / "bundle" / "encoder.flow.onnx").exists() is False
    assert "modalities" not in json.loads((tiny.path / "meta.json").read_text())["model"]
    assert not source_options(StreamConfig("x", idle_motion=0.0), SourceOptions(), 10, bundle.needs_flow).flow
    assert source_options(StreamConfig("x", idle_motion=0.0), SourceOptions(), 10, True).flow
    frames = read_video_frames(video, SIZE, 10)
    plain = OnnxRuntimeEncoder(tiny.path / "encoder.onnx")
    runs = [
        windows_of(Scheduler(bundle.head, 4, encoder, [StreamPlan("s")]), frames) for encoder in (plain, bundle.encoder)
    ]
    assert [p.window for p in runs[0]] == [p.window for p in runs[1]]
    np.testing.assert_array_equal([p.probabilities for p in runs[0]], [p.probabilities for p in runs[1]])
    np.testing.assert_array_equal(
        bundle.encoder.encode(np.stack([f.image for f in frames])), plain.encode(np.stack([f.image for f in frames]))
    )


def test_a_joined_encoder_refuses_frames_without_flow_and_rgb_arrays(tmp_path, video):
    tiny = TinyTwoStream.write(tmp_path / "bundle")
    encoder = open_joint_encoder(tiny.path, ("rgb", "flow"))
    frames = read_video_frames(video, SIZE, 10)
    with pytest.raises(LrcnError, match="carry no flow input"):
        encoder.encode_frames(frames[:2])
    with pytest.raises(LrcnError, match="needs every modality's input"):
        encoder.encode(np.stack([f.image for f in frames[:2]]))
    assert isinstance(encoder, JointEncoder) and encoder.name.count("onnxruntime") == 2


def broken(tmp_path, breakage: str):
    tiny = TinyTwoStream.write(tmp_path / "bundle")
    path = tiny.path
    if breakage == "missing":
        (path / "encoder.flow.onnx").unlink()
    elif breakage == "channels":
        save_graph(flow_graph(np.ones((3, F_FLOW), np.float32), channels=3), path / "encoder.flow.onnx")
    elif breakage == "features":
        save_graph(flow_graph(np.ones((2, 5), np.float32)), path / "encoder.flow.onnx")
    elif breakage == "size":
        save_graph(flow_graph(size=(40, 40)), path / "encoder.flow.onnx")
    elif breakage == "modality":
        meta = json.loads((path / "meta.json").read_text())
        meta["model"]["modalities"] = ["rgb", "depth"]
        (path / "meta.json").write_text(json.dumps(meta))
    elif breakage == "late head":
        save_head(path / "head.npz", LateHead.fuse({"rgb": lstm_head(F_RGB), "flow": lstm_head(F_FLOW)}, (0.5, 0.5)))
    return path


@pytest.mark.parametrize(
    "breakage, words",
    [
        ("missing", ["has no encoder.flow.onnx", "lrcn export"]),
        ("channels", ["encoder.flow.onnx", "expected uint8 [N, H, W, 2]"]),
        ("features", ["encoder.flow.onnx gives 5 features per frame, meta.json says 4"]),
        ("size", ["encoder.flow.onnx takes 40x40 frames but meta.json says 32x32"]),
        ("modality", ["modalities depth: each must be one of rgb, flow"]),
        ("late head", ["is a late fusion of lstm head, meta.json says lstm"]),
    ],
)
def test_a_two_stream_bundle_that_does_not_fit_is_one_line(tmp_path, breakage, words, capsys, video):
    path = broken(tmp_path, breakage)
    with pytest.raises(LrcnError) as err:
        load_runtime_bundle(path)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)
    assert main(["annotate", str(path), str(video), "-o", str(tmp_path / "out.mp4")]) == 2
    printed = capsys.readouterr().err.strip()
    assert "\n" not in printed and "Traceback" not in printed and words[0] in printed


@pytest.mark.slow
def test_annotate_stream_accuracy_offline_and_novelty_fit_take_a_two_stream_bundle(tmp_path, video):
    """With no new flags: annotate draws the served windows, the offline replay encodes the flow
    too, and `lrcn novelty fit` fits over the joined features, which the scheduler then scores; the
    bundle's `idle` class (trained with stills, in no data folder) gets still windows of its own."""
    from lrcn.models import synth
    from lrcn.tools.cli.annotate_video import annotate
    from lrcn.tools.stream_accuracy.stream_replay import sampled_features

    tiny = TinyTwoStream.write(tmp_path / "bundle", head=lstm_head(F_RGB + F_FLOW, classes=(*synth.CLASSES, "idle")))
    result = annotate(tiny.path, video, tmp_path / "out.mp4")
    frames = read_video_frames(video, SIZE, 10, flow=True)
    assert result["predictions"] == len(frames) - 3
    import cv2

    capture = cv2.VideoCapture(str(video))
    media_frames, media_fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    features, indices = sampled_features(tiny.path, video, media_frames, media_fps, {})
    np.testing.assert_allclose(features, offline(tiny, frames), atol=1e-5)
    data = tmp_path / "data"
    synth.write_dataset(data, videos_per_class=3, n_frames=30, size=32, seed=4, groups=3)
    assert (
        main(
            [
                "novelty",
                "fit",
                str(tiny.path),
                str(data),
                "--test-groups",
                "03",
                "--val-groups",
                "02",
                "--method",
                "mahalanobis",
                "--hop",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    runtime = load_runtime_bundle(tiny.path)
    assert runtime.novelty is not None and runtime.novelty.feature_size == F_RGB + F_FLOW
    assert runtime.novelty.classes[-1] == "idle"
    trained = read_video_frames(sorted((data / "grow").glob("*_g01_*"))[0], SIZE, 10)
    held = tiny.features(np.stack([trained[5].image]), np.full((1, *SIZE, 2), 128, np.uint8))  # T times one frame
    assert runtime.novelty.score(held)[0] <= runtime.novelty.threshold, "a held training frame is a known still"
    scheduler = Scheduler(runtime.head, 4, runtime.encoder, [StreamPlan("s")], novelty=runtime.novelty)
    predictions = windows_of(scheduler, frames)
    means = np.stack([offline(tiny, frames)[p.window[0] : p.window[1] + 1].mean(0) for p in predictions])
    np.testing.assert_allclose([p.novelty for p in predictions], runtime.novelty.score(means), rtol=1e-4, atol=1e-4)
    shutil.rmtree(data)


# ---------------------------------------------------------------- a two-stream bundle made by Keras


@pytest.fixture(scope="module")
def keras_late(tmp_path_factory):
    """A tiny late-fusion two-stream bundle trained and exported by models/ (TensorFlow), with the
    data it was trained on; skipped without TensorFlow or the two-stream training."""
    from importlib.util import find_spec

    if find_spec("lrcn.models.two_stream") is None:  # before TensorFlow's import, which takes seconds
        pytest.skip("models/ has no two-stream training (lrcn.models.two_stream)")
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    two_stream = pytest.importorskip("lrcn.models.two_stream")
    from lrcn.models import synth
    from lrcn.models.data import discover, split_by_groups
    from lrcn.models.export import export_from_paths
    from lrcn.models.train import TrainConfig
    from lrcn.stream.bundle import ModelSpec

    root = tmp_path_factory.mktemp("keras_two_stream")
    synth.write_dataset(root / "data", videos_per_class=3, n_frames=32, size=64, seed=2, groups=3)
    dataset = discover(root / "data")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["03"])
    spec = ModelSpec(
        classes=(*dataset.classes, two_stream.IDLE),
        modalities=("rgb", "flow"),
        fusion="late",
        backbone="seed",
        trainable_layers=0,
        input_size=(64, 64),
        clip_length=4,
        lstm_units=16,
    )
    config = TrainConfig(
        epochs=3,
        batch_size=8,
        learning_rate=3e-3,
        patience=3,
        clips_per_video=2,
        refit=False,
        cache_dir=None,
        progress=False,
    )
    out = root / "bundle"
    options = two_stream.JointOptions(fusions=("late",), stills=True)
    two_stream.train_joint_and_test(spec, train_videos, test_videos, out, config, options, {"data": str(root / "data")})
    export_from_paths(out, video=test_videos[0].path)
    return out, root / "data", test_videos[0].path


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("pace", [False, True])
def test_a_keras_made_two_stream_bundle_served_live_equals_its_keras_model(keras_late, pace):
    from lrcn.models.experiment import load_bundle
    from lrcn.models.modalities import model_inputs
    from lrcn.stream.video import read_frames, read_motion

    bundle_dir, _, video = keras_late
    runtime = load_runtime_bundle(bundle_dir)
    spec = runtime.meta.spec
    assert runtime.head.kind == "late" and runtime.needs_flow and spec.classes[-1] == "idle"
    stats, predictions, _ = run_pipeline(runtime, video, idle_motion=0.0, pace=pace)
    frames, (fields, _) = read_frames(video, spec.input_size, spec.fps), read_motion(video, spec.input_size, spec.fps)
    t = spec.clip_length
    clips = {
        "rgb": np.stack([frames[i : i + t] for i in range(len(frames) - t + 1)]),
        "flow": np.stack([fields[i : i + t] for i in range(len(frames) - t + 1)]),
    }
    model, _ = load_bundle(bundle_dir)
    keras = np.asarray(model(model_inputs(spec, clips), training=False))
    assert len(predictions) == len(keras) and stats.flows == len(frames) - 1
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in predictions], keras, atol=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_keras_made_two_stream_bundle_goes_through_annotate_and_novelty_fit(keras_late, tmp_path):
    bundle_dir, data, video = keras_late
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    assert main(["annotate", str(copy), str(video), "-o", str(tmp_path / "out.mp4")]) == 0
    assert (
        main(
            [
                "novelty",
                "fit",
                str(copy),
                str(data),
                "--test-groups",
                "03",
                "--val-groups",
                "02",
                "--method",
                "mahalanobis",
                "--hop",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    runtime = load_runtime_bundle(copy)
    assert runtime.novelty.feature_size == runtime.meta.feature_size == sum(runtime.meta.feature_sizes.values())
