"""The Python API (`import lrcn`): a real exported bundle, real video files (written with PyAV),
and `lrcn serve` through the real command line as the reference its numbers must equal."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

import lrcn
from lrcn.stream.events import EventRules
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.stats import plain
from lrcn.stream.video import read_frames, read_video_frames
from tests.live_servers import free_port
from tests.edge_install import BLOCK
from tests.two_stream_bundle import TinyTwoStream

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]


def write_video(
    path: Path, n_frames: int = 75, fps: int = 25, size=(96, 128), codec: str = "libx264", pix_fmt: str = "yuv420p"
) -> Path:
    """A square sweeping across a gradient, in colour, `n_frames` at `fps`."""
    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(n_frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = np.linspace(20, 220, width, dtype=np.uint8)[None]
            image[..., 2] = 40 + (i * 5) % 200
            x = (i * 3) % (width - 24)
            image[30:54, x : x + 24] = (250, 240, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded(video: Path):
    """(stream time, PyAV frame) of every frame of a file, as a caller's own decoding gives them."""
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            yield frame.time, frame


def served_resolution(video: Path) -> tuple[int, int]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return stream.height, stream.width


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "sweep.mp4")


@pytest.fixture(scope="module")
def served(exported_seed, mp4, tmp_path_factory):
    """{frame index: pred payload} of `lrcn serve` on the mp4, read unpaced, from its JSONL sink."""
    bundle, _, _ = exported_seed
    work = tmp_path_factory.mktemp("serve")
    config = work / "deploy.toml"
    config.write_text(
        f'endpoint = "tcp://127.0.0.1:{free_port()}"\n\n'
        f'[[stream]]\nid = "sweep"\nsource = "{mp4}"\npace = false\n\n'
        f'[[sink]]\ntype = "jsonl"\npath = "{work / "messages.jsonl"}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.cli", "serve", bundle, "--config", config],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (work / "messages.jsonl").read_text().splitlines()]
    predictions = {p["frame_index"]: p for p in lines if p["topic"] == "pred/sweep"}
    assert len(predictions) >= 20, "enough windows to compare"
    return predictions


def same_as_served(prediction: lrcn.Prediction, served: dict, tolerance: float) -> None:
    reference = served[prediction.frame_index]
    assert prediction.label == reference["label"], prediction.frame_index
    assert list(prediction.window) == reference["window"]
    assert prediction.score == pytest.approx(reference["score"], abs=tolerance)
    for name, p in reference["probabilities"].items():
        assert prediction.probabilities[name] == pytest.approx(p, abs=tolerance), (prediction.frame_index, name)


# -- predict --------------------------------------------------------------------------------------


def test_predict_on_a_window_equals_the_bundles_own_head(exported_seed):
    bundle, frames, _ = exported_seed
    recognizer = lrcn.Recognizer(bundle)
    window = frames[: recognizer.clip_length]
    prediction = recognizer.predict(window)
    expected = load_runtime_bundle(bundle).clip_probabilities(window)
    assert list(prediction.probabilities) == list(recognizer.classes)
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected, rtol=0, atol=1e-6)
    assert prediction.label == recognizer.classes[int(np.argmax(expected))]
    assert prediction.score == pytest.approx(float(expected.max()), abs=1e-6)
    assert recognizer.predict(list(window)) == prediction, "a list of frames is the same window"


def test_predict_scales_frames_of_any_size_exactly_as_capture_does(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    recognizer = lrcn.Recognizer(bundle)
    # Lossless RGB: the caller's arrays are the very pixels the capture decodes from this file.
    video = write_video(tmp_path / "rgb.mov", n_frames=12, fps=10, size=(90, 150), codec="png", pix_fmt="rgb24")
    full = [frame.to_ndarray(format="rgb24") for _, frame in decoded(video)][: recognizer.clip_length]
    assert full[0].shape == (90, 150, 3)
    captured = read_frames(video, recognizer.input_size, recognizer.fps)[: recognizer.clip_length]
    expected = recognizer.bundle.clip_probabilities(captured)
    np.testing.assert_allclose(list(recognizer.predict(full).probabilities.values()), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        list(recognizer.predict(np.stack(full)).probabilities.values()), expected, rtol=0, atol=1e-6
    )
    other = recognizer.predict([np.ascontiguousarray(image[::-1]) for image in full])
    assert list(other.probabilities.values()) != pytest.approx(list(expected), abs=1e-6), "the pixels matter"


# -- a feed of frames, and run: both equal serve --------------------------------------------------


def test_frames_pushed_one_at_a_time_with_their_times_predict_what_serve_publishes(exported_seed, mp4, served):
    recognizer = lrcn.Recognizer(exported_seed[0])
    feed = recognizer.stream("sweep")
    predictions = [p for p in (feed.push(frame, t) for t, frame in decoded(mp4)) if p is not None]
    assert [p.frame_index for p in predictions] == sorted(served), "the same windows, sampled at the bundle's fps"
    for prediction in predictions:
        same_as_served(prediction, served, tolerance=1e-5)
    assert feed.frames == 75


def test_a_two_stream_bundle_gets_its_motion_from_the_feed_and_from_predict(tmp_path, mp4):
    """A bundle that sees motion (RGB + optical flow, tests/two_stream_bundle.py): each pushed frame's
    flow is the capture's, so every window equals the encoders and head in NumPy on the frames and
    fields `read_video_frames` gives (the capture's path, offline)."""
    tiny = TinyTwoStream.write(tmp_path / "bundle", fusion="early")
    recognizer = lrcn.Recognizer(tiny.path)
    frames = read_video_frames(mp4, recognizer.input_size, recognizer.fps, flow=True)
    features = tiny.features(np.stack([f.image for f in frames]), np.stack([f.flow for f in frames]))
    feed = recognizer.stream("moving")
    predictions = [p for p in (feed.push(frame, t) for t, frame in decoded(mp4)) if p is not None]
    assert len(predictions) == len(frames) - 3
    for j, prediction in enumerate(predictions):  # the j-th window ends on the (j + 4)-th sampled frame
        expected = tiny.head.clip_probabilities(features[None, j : j + 4])[0]
        np.testing.assert_allclose(list(prediction.probabilities.values()), expected, atol=1e-5)
        assert prediction.motion is not None
    window = recognizer.predict([f.image for f in frames[:4]])
    np.testing.assert_allclose(
        list(window.probabilities.values()), tiny.head.clip_probabilities(features[None, :4])[0], atol=1e-5
    )


def test_two_feeds_keep_their_own_state(exported_seed, mp4):
    recognizer = lrcn.Recognizer(exported_seed[0])
    frames = list(decoded(mp4))[:40]
    one, other = recognizer.stream("one"), recognizer.stream("other")
    first, second = [], []
    for t, frame in frames:  # interleaved with a stream of another scene
        first.append(one.push(frame, t))
        second.append(other.push(np.full((96, 128, 3), 90, np.uint8), t))
    reference = recognizer.stream("reference")
    again = [reference.push(frame, t) for t, frame in frames]
    assert [p and (p.window, p.probabilities) for p in first] == [p and (p.window, p.probabilities) for p in again]
    assert any(p is not None for p in second)
    with pytest.raises(lrcn.LrcnError, match="used twice"):
        recognizer.stream("one")
    one.close()
    renewed = recognizer.stream("one")
    assert [p and p.probabilities for p in (renewed.push(frame, t) for t, frame in frames)] == [
        p and p.probabilities for p in again
    ], "a closed feed's id starts afresh"


def test_a_jump_in_time_starts_a_new_segment_that_no_window_spans(exported_seed, mp4):
    recognizer = lrcn.Recognizer(exported_seed[0])
    feed = recognizer.stream("jumpy")
    frames = list(decoded(mp4))
    predictions = [feed.push(frame, t + (100.0 if i >= 40 else 0.0)) for i, (t, frame) in enumerate(frames)]
    windows = [p.window for p in predictions if p is not None]
    assert feed.segment == 1
    assert not any(first < 40 <= last for first, last in windows), windows


@pytest.mark.slow
def test_run_delivers_serves_predictions_and_events_to_callbacks_without_a_port(exported_seed, mp4, served):
    recognizer = lrcn.Recognizer(exported_seed[0])
    predictions, frames, events, statuses = [], [], [], []
    stats = recognizer.run(
        lrcn.StreamConfig(str(mp4), id="sweep", pace=False, events=EventRules(min_score=0.0)),
        on_prediction=lambda p, frame: (predictions.append(p), frames.append(frame)),
        on_event=events.append,
        on_status=statuses.append,
    )
    assert [p.frame_index for p in predictions] == sorted(served)
    for prediction in predictions:
        # Not bit for bit: how frames share an encoder batch depends on timing, and a batch of two
        # rounds a float differently from two of one (seen: 0.271683 against 0.271682).
        same_as_served(prediction, served, tolerance=1e-5)
        assert prediction.message["stream"] == "sweep" and prediction.message["seq"] >= 0
    # the source's own resolution (the model sees far fewer pixels), as RGB
    height, width = served_resolution(mp4)
    assert frames and all(f is not None and f.shape == (height, width, 3) and f.dtype == np.uint8 for f in frames)
    assert events and events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert statuses[-1]["state"] == "ended" and statuses[-1]["stats"]["report"] == "final"
    assert stats.streams["sweep"].predictions == len(predictions)
    assert plain(stats.sinks) == {
        "callback": {"sent": len(predictions) + len(events) + len(statuses), "dropped": 0, "failed": 0, "problem": ""}
    }


def test_a_runner_stops_cleanly_and_leaves_no_thread_running(exported_seed, mp4):
    recognizer = lrcn.Recognizer(exported_seed[0])
    before = set(threading.enumerate())
    got = []
    with recognizer.runner(
        [lrcn.StreamConfig(str(mp4), id="a", loop=True), lrcn.StreamConfig("pattern:25", id="b")],
        on_prediction=lambda p, _: got.append(p.stream),
    ) as runner:
        assert runner.streams == ["a", "b"]
        deadline = time.monotonic() + 30
        while set(got) != {"a", "b"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not runner.wait(0.2), "a looping file and an endless pattern never end by themselves"
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    assert set(got) == {"a", "b"}
    assert took < 10.0  # stopped, not waited out: the file loops and the pattern never ends
    assert runner.stats.streams["a"].state == "stopped"
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], left
    assert runner.stop() is runner.stats, "stopping twice is harmless"


def test_a_callback_that_raises_is_counted_and_the_pipeline_goes_on(exported_seed, mp4):
    recognizer = lrcn.Recognizer(exported_seed[0])
    seen = []

    def broken(prediction, frame):
        seen.append(prediction.frame_index)
        raise ValueError("drawing failed")

    stats = recognizer.run(mp4, on_prediction=broken, pace=False)
    assert stats.streams["sweep"].predictions == len(seen) > 5
    assert stats.sinks["callback"].failed == len(seen)
    assert stats.sinks["callback"].problem == "on_prediction raised ValueError: drawing failed"


# -- bad input: one line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames, complaint",
    [
        (np.zeros((4, 64, 64, 3), np.float32), "must be uint8 RGB"),
        (np.zeros((4, 64, 64), np.uint8), "shape [4, 64, 64]"),
        (np.zeros((64, 64, 3), np.uint8), "shape [64, 64, 3]"),
        ([np.zeros((64, 64, 4), np.uint8)], "got shape [64, 64, 4]"),
        ([], "at least one frame"),
        ("clip.avi", "got str"),
    ],
)
def test_bad_frames_are_one_line_errors(exported_seed, frames, complaint):
    recognizer = lrcn.Recognizer(exported_seed[0])
    with pytest.raises(lrcn.LrcnError) as raised:
        recognizer.predict(frames)
    assert complaint in str(raised.value) and "\n" not in str(raised.value)


def test_bad_bundles_streams_and_sinks_are_one_line_errors(exported_seed, tmp_path):
    with pytest.raises(lrcn.LrcnError, match="bundle not found"):
        lrcn.Recognizer(tmp_path / "missing")
    recognizer = lrcn.Recognizer(exported_seed[0])
    feed = recognizer.stream("cam")
    for frame, t, complaint in [
        (np.zeros((8, 8, 3), np.int64), 0.0, "must be uint8"),
        (np.zeros((8, 8, 3), np.uint8), float("nan"), "not a number of seconds"),
    ]:
        with pytest.raises(lrcn.LrcnError, match=complaint):
            feed.push(frame, t)
    with pytest.raises(lrcn.LrcnError, match="a feed takes no hopp, loop"):
        recognizer.stream("typo", hopp=2, loop=True)
    with pytest.raises(lrcn.LrcnError, match="crop"):
        recognizer.predict(np.zeros((2, 64, 64, 3), np.uint8), crop=(50, 50, 30, 30))
    with pytest.raises(lrcn.LrcnError, match="video not found"):
        recognizer.runner(tmp_path / "nothing.mp4")
    with pytest.raises(lrcn.LrcnError, match="on_prediction must be a function"):
        from lrcn.stream.sinks.callback import CallbackSink

        CallbackSink(on_prediction="print")


def test_a_deployment_file_cannot_name_a_callback_sink(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    config = tmp_path / "deploy.toml"
    config.write_text(f'[[stream]]\nsource = "{video}"\n\n[[sink]]\ntype = "callback"\non_prediction = "print"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrcn.tools.cli",
            "serve",
            bundle,
            "--config",
            config,
            "--endpoint",
            f"tcp://127.0.0.1:{free_port()}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "for lrcn.Recognizer.run, not a deployment file" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- import lrcn -----------------------------------------------------------------------------------


def test_import_lrcn_gives_the_api_without_tensorflow(exported_seed):
    bundle = exported_seed[0]
    code = (
        BLOCK
        + """
import json, sys, numpy as np, lrcn
lazy = sorted(m for m in sys.modules if m.startswith("lrcn."))
recognizer = lrcn.Recognizer(sys.argv[1])
frames = np.zeros((recognizer.clip_length, 64, 64, 3), np.uint8)
print(json.dumps({"lazy": lazy, "label": recognizer.predict(frames).label, "names": lrcn.__all__}))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["lazy"] == [], "importing lrcn loads nothing until a name is used"
    assert found["label"] in load_runtime_bundle(bundle).classes
    assert {"Recognizer", "Prediction", "LrcnError", "StreamConfig"} <= set(found["names"])


# -- docs/guide/python-api.md's example, run as written ---------------------------------------------------


def example_code() -> str:
    """The first python block under the page's `## Example` heading."""
    text = (ROOT / "docs" / "guide" / "python-api.md").read_text()
    section = text.split("\n## Example\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"


@pytest.mark.slow
def test_the_documented_example_runs_as_written(exported_seed, mp4, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(example_code())
    done = subprocess.run(
        [sys.executable, script, exported_seed[0], mp4],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    windows = sum(line.startswith("frame ") for line in lines)
    assert windows >= 20 and f"predictions: {windows}" in lines
    assert any(line.startswith("event start: ") for line in lines)
    assert f"the feed agrees with run on {windows} of {windows} windows" in lines
    assert any(line.startswith("first window: ") for line in lines)
