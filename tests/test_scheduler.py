"""The scheduler with a real exported encoder on real video: encode-once batching, per-stream
state, segments, and exact-window parity with the offline model."""

import itertools

import numpy as np
import pytest

from lrcn.stream.ring import Frame
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sampling import grid_indices
from lrcn.stream.scheduler import Scheduler, StreamPlan
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.windows import EXACT, WindowConfig
from tests.offline import file_frames, offline

pytestmark = pytest.mark.timeout(120)


def feed(scheduler, frames_by_stream, chunk=7):
    """Offer each stream's frames in chunks, interleaved across streams, as ring reads do."""
    predictions, encoded, sizes = [], [], []
    longest = max(len(f) for f in frames_by_stream.values())
    for start in range(0, longest, chunk):
        result = scheduler.process({name: frames[start : start + chunk] for name, frames in frames_by_stream.items()})
        predictions += result.predictions
        encoded += result.encoded
        sizes += result.batch_sizes
    return predictions, encoded, sizes


@pytest.mark.parametrize("hop", [1, 3])
def test_every_prediction_on_a_real_video_equals_the_offline_model_on_its_window(exported_seed, hop):
    bundle_dir, _, video = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    frames = file_frames(video, spec.input_size, spec.fps)
    scheduler = Scheduler(
        bundle.head, spec.clip_length, bundle.encoder, [StreamPlan("cam", WindowConfig(EXACT, hop=hop))]
    )
    predictions, _, _ = feed(scheduler, {"cam": frames})
    expected = offline(bundle, frames, hop)
    assert frames[-1].index >= 2 * (len(frames) - 1), "a file faster than the model's rate, sampled on its grid"
    assert [p.window for p in predictions] == list(expected)
    for p in predictions:
        np.testing.assert_allclose(p.probabilities, expected[p.window], atol=1e-4)
        assert p.label == spec.classes[int(np.argmax(p.probabilities))]


def test_each_sampled_frame_is_encoded_exactly_once_in_one_batch_across_streams(exported_seed):
    bundle_dir, _, video = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    frames = file_frames(video, spec.input_size, spec.fps)
    names = ("a", "b", "c")
    scheduler = Scheduler(bundle.head, spec.clip_length, bundle.encoder, [StreamPlan(n) for n in names])
    offered = {"a": frames, "b": frames[5:], "c": frames[:20]}
    # Offering a chunk twice (a reader that re-reads) must not encode anything twice.
    _, encoded, sizes = feed(scheduler, offered, chunk=5)  # 3 streams x 5 frames: one call within max_batch
    again, encoded_again, _ = feed(scheduler, {"a": frames[:12]})
    assert again == [] and encoded_again == []
    assert len(encoded) == len(set(encoded)), "no (stream, frame) encoded twice"
    stats = scheduler.stats()
    for name, stream_frames in offered.items():
        assert [i for n, i in encoded if n == name] == [f.index for f in stream_frames]
        assert stats.streams[name].encoded == len(stream_frames)
    assert stats.streams["a"].repeats == 12
    assert stats.encoded == len(encoded) == sum(sizes)
    assert stats.encoder_calls == len(sizes) == len(range(0, len(frames), 5)), "one encoder call per process()"
    assert max(sizes) > 1 and sum(k * v for k, v in stats.batch_sizes.items()) == len(encoded)


def test_streams_never_share_state_and_a_new_segment_resets_the_head(exported_seed):
    bundle_dir, _, video = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    frames = file_frames(video, spec.input_size, spec.fps)
    reversed_frames = [Frame(f.image, i, f.captured_at) for i, f in enumerate(reversed(frames))]
    # The third stream reconnects after frame 30: a new segment, frames counted on.
    split = [Frame(f.image, f.index, f.captured_at, segment=int(f.index >= 30)) for f in frames]
    scheduler = Scheduler(
        bundle.head,
        spec.clip_length,
        bundle.encoder,
        [StreamPlan(n) for n in ("forward", "backward", "split")],
        max_batch=4,
    )
    predictions, _, sizes = feed(scheduler, {"forward": frames, "backward": reversed_frames, "split": split})
    assert max(sizes) <= 4
    by_stream = {
        n: {p.window: p.probabilities for p in predictions if p.stream == n} for n in ("forward", "backward", "split")
    }
    for name, stream_frames in (("forward", frames), ("backward", reversed_frames)):
        expected = offline(bundle, stream_frames)
        assert list(by_stream[name]) == list(expected)
        for window, probabilities in by_stream[name].items():
            np.testing.assert_allclose(probabilities, expected[window], atol=1e-4)
    assert all(last < 30 or first >= 30 for first, last in by_stream["split"]), "no window spans the gap"
    assert scheduler.stats().streams["split"].resets == 1
    after_gap = {w: p for w, p in by_stream["split"].items() if w[0] >= 30}
    assert min(after_gap)[0] == min(f.index for f in split if f.segment == 1), "windows restart at the new segment"


def test_smoothing_changes_the_published_label_never_the_raw_probabilities(exported_seed):
    bundle_dir, _, video = exported_seed
    bundle = load_runtime_bundle(bundle_dir)
    spec = bundle.meta.spec
    frames = file_frames(video, spec.input_size, spec.fps)
    plans = [
        StreamPlan("raw"),
        StreamPlan("ema", smoothing=parse_smoothing("ema:0.2")),
        StreamPlan("hys", smoothing=parse_smoothing("hysteresis:4")),
    ]
    scheduler = Scheduler(bundle.head, spec.clip_length, bundle.encoder, plans)
    predictions, _, _ = feed(scheduler, {p.id: frames for p in plans})
    by_stream = {p.id: [q for q in predictions if q.stream == p.id] for p in plans}
    for name in ("ema", "hys"):
        assert [q.window for q in by_stream[name]] == [q.window for q in by_stream["raw"]]
        for smoothed, raw in zip(by_stream[name], by_stream["raw"]):
            # Equal up to float rounding: the streams' frames share batches in other orders.
            np.testing.assert_allclose(smoothed.probabilities, raw.probabilities, atol=1e-6)
    switches = {n: sum(a.label != b.label for a, b in itertools.pairwise(by_stream[n])) for n in by_stream}
    assert switches["hys"] <= switches["raw"]
    hys = by_stream["hys"]
    assert hys[0].top_k(spec.classes, 2)[0][1] == pytest.approx(float(hys[0].probabilities.max()))


class PixelEncoder:
    """A stand-in encoder without TensorFlow: a fixed random projection of each frame's pixels."""

    name, input_size, feature_size = "pixels", (4, 4), 6

    def __init__(self):
        self.weights = np.random.default_rng(11).normal(0, 0.05, (4 * 4 * 3, self.feature_size)).astype(np.float32)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        return (frames.reshape(len(frames), -1).astype(np.float32) / 255) @ self.weights


def random_head(kind: str):
    from lrcn.stream.heads.lstm import LstmHead
    from lrcn.stream.heads.pool import PoolHead
    from lrcn.stream.heads.single_frame import FrameHead

    rng = np.random.default_rng(12)
    w = lambda *shape: rng.normal(0, 0.8, shape).astype(np.float32)
    classes, F = ("a", "b", "c", "d"), PixelEncoder.feature_size
    if kind == "pool":
        return PoolHead(classes, w(2 * F, 4), w(4))
    if kind == "single_frame":
        return FrameHead(classes, w(F, 4), w(4))
    return LstmHead(classes, w(F, 20), w(5, 20), w(20), w(5, 4), w(4))


@pytest.mark.parametrize("kind", ["pool", "single_frame", "lstm"])
@pytest.mark.parametrize("hop", [1, 3])
def test_scheduler_windows_of_any_head_equal_the_offline_head_on_the_sampled_frames(kind, hop):
    """A 25 fps stream sampled at 10 fps, with a gap (new segment) at frame 60: every prediction is
    the offline head on the encoder features of exactly its window's frames."""
    head, encoder, T = random_head(kind), PixelEncoder(), 5
    images = np.random.default_rng(13).integers(0, 256, (120, 4, 4, 3), dtype=np.uint8)
    parts = [
        [Frame(images[i], i, 100.0 + i / 25, segment=segment, pts=i / 25) for i in range(start, start + 60)]
        for segment, start in enumerate((0, 60))
    ]
    sampled_parts = [[part[i] for i in grid_indices([f.pts for f in part], 10.0)] for part in parts]
    scheduler = Scheduler(head, T, encoder, [StreamPlan("cam", WindowConfig(EXACT, hop=hop))])
    predictions, _, _ = feed(scheduler, {"cam": sampled_parts[0] + sampled_parts[1]})
    expected = {}
    for sampled in sampled_parts:
        features = encoder.encode(np.stack([f.image for f in sampled]))
        for s in range(0, len(sampled) - T + 1, hop):
            expected[(sampled[s].index, sampled[s + T - 1].index)] = head.clip_probabilities(features[None, s : s + T])[
                0
            ]
    assert len(expected) > 8
    assert [p.window for p in predictions] == list(expected)
    for p in predictions:
        np.testing.assert_allclose(p.probabilities, expected[p.window], atol=1e-6)
