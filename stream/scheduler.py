"""The scheduler: encode the new frames of all streams in one batch, then step the heads of all
streams at once (one `step_streams` per window config; a stream with several new frames is
stepped in capture order, one frame per round).

No threads and no sockets: the pipeline calls `process` from its inference thread with the
frames it read from the rings; `lrcn annotate` calls it with the sampled frames of a file.
Frames arrive already sampled on the model's grid (the capture threads sample them by
presentation time, as training's `read_frames` does), so every frame offered is encoded once;
a frame whose segment differs from the stream's last one resets the stream's head first.
A bundle of several modalities (RGB and flow) has one joined encoder (stream.encoders.joint):
each due frame is encoded once per modality, in one batch per modality, its features joined.

With a novelty model (stream.novelty), each stream also keeps its last T frames' features in a
ring, and every prediction carries the novelty score of the mean of the window's frames there
(the last T frames since the last reset: what a T-frame window is, and at most T of a longer
continuous one).

>>> scheduler = Scheduler(bundle.head, 16, bundle.encoder, [StreamPlan("cam0")])          # doctest: +SKIP
>>> step = scheduler.process({"cam0": ring.read_new()})                                    # doctest: +SKIP
>>> [(p.window, p.label) for p in step.predictions]                                         # doctest: +SKIP
[((0, 37), 'wave')]
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lrcn.stream.encoders import Encoder
from lrcn.stream.encoders.joint import JointEncoder, as_joint
from lrcn.stream.errors import LrcnError
from lrcn.stream.flow import window_level
from lrcn.stream.heads import Head, limit_blas_threads
from lrcn.stream.novelty import NoveltyModel
from lrcn.stream.ring import Frame
from lrcn.stream.smoothing import SmootherState, Smoothing, smooth
from lrcn.stream.stats import Histogram, SchedulerStats, TrackStats
from lrcn.stream.windows import (
    WindowConfig,
    WindowState,
    frame_inputs,
    initial_state,
    step_streams,
)

DEFAULT_ENCODER = "default"


@dataclass(frozen=True)
class StreamPlan:
    id: str
    windows: WindowConfig = field(default_factory=WindowConfig)
    smoothing: Smoothing | None = None
    encoder: str = DEFAULT_ENCODER  # key into the scheduler's encoders


@dataclass(frozen=True)
class Prediction:
    stream: str
    frame_index: int  # the window's last frame
    window: tuple[int, int]  # (first, last) frame indices
    captured_at: float  # the last frame's capture time, time.monotonic()
    pts: float  # the last frame's presentation time in the stream, seconds
    probabilities: np.ndarray  # [C] raw, as the model gives them
    label: str  # published label: smoothed, if the stream smooths
    score: float
    novelty: float | None = None  # the window's novelty score, with a novelty model
    motion: float | None = None  # the window's motion (stream.flow.window_level), for frames that carry flow

    def top_k(self, classes: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(classes[i], float(self.probabilities[i])) for i in order]


@dataclass(frozen=True)
class StepResult:
    predictions: list[Prediction]
    encoded: list[tuple[str, int]]  # (stream, frame index) of every frame encoded, in batch order
    batch_sizes: list[int]  # one per encoder call


class FeatureRing:
    """One stream's last `length` frame features, oldest overwritten; `mean()` of those since the last clear."""

    def __init__(self, length: int, feature_size: int):
        self.rows = np.zeros((length, feature_size), np.float32)
        self.count = 0  # frames pushed since the last clear

    def push(self, features: np.ndarray) -> None:
        self.rows[self.count % len(self.rows)] = features
        self.count += 1

    def mean(self) -> np.ndarray:
        return self.rows[: min(self.count, len(self.rows))].mean(0)

    def clear(self) -> None:
        self.count = 0


@dataclass
class Track:
    """What the scheduler holds for one stream between calls."""

    plan: StreamPlan
    state: WindowState
    smoother: SmootherState = field(default_factory=SmootherState)
    segment: int | None = None  # the segment the head state belongs to
    features: FeatureRing | None = None  # with a novelty model: the last T frames' features
    motions: deque = field(default_factory=deque)  # the last T frames' motion levels since the last reset
    last_encoded: int = -1
    seen: int = 0  # frames offered
    encoded: int = 0  # frames encoded
    repeats: int = 0  # frames offered again after a later one was encoded (must stay 0)
    predictions: int = 0
    resets: int = 0


def track_stats(track: Track) -> TrackStats:
    return TrackStats(track.seen, track.encoded, track.repeats, track.predictions, track.resets)


class Scheduler:
    def __init__(
        self,
        head: Head,
        clip_length: int,
        encoders: Encoder | JointEncoder | Mapping[str, Encoder | JointEncoder],
        streams: Sequence[StreamPlan] = (),
        max_batch: int = 16,
        novelty: NoveltyModel | None = None,
    ):
        """`encoders`: one (a plain Encoder is taken as an RGB bundle's), or several by key
        (StreamPlan.encoder names which a stream uses)."""
        limit_blas_threads(1)
        self.head = head
        self.novelty = novelty
        self.clip_length = clip_length
        given = dict(encoders) if isinstance(encoders, Mapping) else {DEFAULT_ENCODER: encoders}
        self.encoders = {key: as_joint(encoder) for key, encoder in given.items()}
        self.max_batch = max_batch
        self.encoder_calls = 0
        self.batch_histogram: Counter[int] = Counter()
        self.encode_seconds = {key: Histogram() for key in self.encoders}  # per encoder call
        # Replaced, never changed in place, so another thread may iterate it (stats) at any time.
        self._tracks: dict[str, Track] = {}
        for plan in streams:
            self.add_stream(plan)

    def add_stream(self, plan: StreamPlan) -> Track:
        """Take a stream from its next frame on; its track, whose counts `track_stats` reads."""
        if plan.id in self._tracks:
            raise LrcnError(f"stream id {plan.id!r} is used twice")
        if plan.encoder not in self.encoders:
            raise LrcnError(f"stream {plan.id!r}: no encoder {plan.encoder!r} (have {', '.join(self.encoders)})")
        ring = FeatureRing(self.clip_length, self.novelty.feature_size) if self.novelty is not None else None
        track = Track(
            plan,
            initial_state(self.head, self.clip_length, plan.windows),
            features=ring,
            motions=deque(maxlen=self.clip_length),
        )
        self._tracks = {**self._tracks, plan.id: track}
        return track

    def add_encoder(self, key: str, encoder: Encoder | JointEncoder) -> None:
        self.encoders = {**self.encoders, key: as_joint(encoder)}
        self.encode_seconds = {**self.encode_seconds, key: Histogram()}

    def remove_stream(self, stream: str) -> None:
        """Forget a stream and its state (a stream removed or restarted by a reload)."""
        self._tracks = {name: track for name, track in self._tracks.items() if name != stream}

    def reset(self, stream: str, segment: int | None = None) -> None:
        """Forget the stream's open windows and smoothing: a gap in the source.
        With `segment`, only if the head still holds that segment's frames (a state change about
        a segment the frames have already left behind changes nothing)."""
        track = self._tracks[stream]
        if segment is not None and track.segment != segment:
            return
        self._reset_head(track)
        track.segment = None

    def _reset_head(self, track: Track) -> None:
        track.state = initial_state(self.head, self.clip_length, track.plan.windows)
        track.smoother = SmootherState()
        track.resets += 1
        track.motions.clear()
        if track.features is not None:
            track.features.clear()

    def process(self, frames: Mapping[str, Sequence[Frame]]) -> StepResult:
        """Encode (once per frame, batched over streams) and step; frames of each stream must come
        oldest first."""
        due = [
            (track, frame)
            for name, batch in frames.items()
            for frame in batch
            if self._fresh(track := self._tracks[name], frame)
        ]
        if not due:
            return StepResult([], [], [])
        features, sizes = self._encode(due)
        inputs = frame_inputs(self.head, features)
        predictions, window_means = [], []
        for position, track, frame, window, mean in self._step(due, inputs, features):
            track.smoother, label, score = smooth(track.plan.smoothing, track.smoother, window.probabilities)
            track.predictions += 1
            window_means.append(mean)
            predictions.append(
                (
                    position,
                    Prediction(
                        track.plan.id,
                        frame.index,
                        (window.first, window.last),
                        frame.captured_at,
                        frame.pts,
                        window.probabilities,
                        self.head.classes[label],
                        score,
                        motion=window_level(track.motions),
                    ),
                )
            )
        if self.novelty is not None and predictions:  # one matmul for every window of the call
            scores = self.novelty.score(np.stack(window_means)).tolist()
            predictions = [(position, replace(p, novelty=s)) for (position, p), s in zip(predictions, scores)]
        predictions.sort(key=lambda item: item[0])  # in `due` order, as if each frame were stepped alone
        return StepResult([p for _, p in predictions], [(t.plan.id, f.index) for t, f in due], sizes)

    def _step(self, due: list[tuple[Track, Frame]], inputs: np.ndarray, features: np.ndarray):
        """Step every due frame's stream, all streams of one window config at once: round r steps
        each stream's r-th due frame. Yields (position in `due`, track, frame, window, mean window
        features or None) per window."""
        rounds: dict[tuple[int, WindowConfig], list[int]] = {}
        taken: Counter[str] = Counter()
        for position, (track, _) in enumerate(due):
            rounds.setdefault((taken[track.plan.id], track.plan.windows), []).append(position)
            taken[track.plan.id] += 1
        for (_, config), positions in sorted(rounds.items(), key=lambda item: item[0][0]):
            tracks = []
            for position in positions:
                track, frame = due[position]
                if track.segment is not None and frame.segment != track.segment:
                    self._reset_head(track)
                track.segment = frame.segment
                track.motions.append(frame.motion)
                if track.features is not None:
                    track.features.push(features[position])
                tracks.append(track)
            states, windows = step_streams(
                self.head,
                self.clip_length,
                config,
                [t.state for t in tracks],
                inputs[positions],
                [due[p][1].index for p in positions],
            )
            for position, track, state, window in zip(positions, tracks, states, windows):
                track.state = state
                if window is not None:
                    mean = track.features.mean() if track.features is not None else None
                    yield position, track, due[position][1], window, mean

    def batch_sizes(self) -> dict[int, int]:
        """Encoder calls by batch size, smallest first."""
        histogram = dict(self.batch_histogram)  # a copy first: other threads read stats while this one counts
        return dict(sorted(histogram.items()))

    def stats(self) -> SchedulerStats:
        streams = {name: track_stats(t) for name, t in self._tracks.items()}
        by_modality: Counter[str] = Counter()
        for encoder in list(self.encoders.values()):
            by_modality.update(encoder.encoded)
        return SchedulerStats(
            streams=streams,
            encoded=sum(s.encoded for s in streams.values()),
            encoded_by_modality=dict(by_modality),
            encoder_calls=self.encoder_calls,
            batch_sizes=self.batch_sizes(),
        )

    def _fresh(self, track: Track, frame: Frame) -> bool:
        """False for a frame offered again after a later one was encoded (counted; must stay 0)."""
        track.seen += 1
        if frame.index <= track.last_encoded:
            track.repeats += 1
            return False
        track.last_encoded = frame.index
        track.encoded += 1
        return True

    def _encode(self, due: list[tuple[Track, Frame]]) -> tuple[np.ndarray, list[int]]:
        """Features for every due frame, in order: one (joined) encoder call per encoder, split at
        max_batch; a joined encoder calls each modality's encoder once per call."""
        features: dict[int, np.ndarray] = {}  # by position in `due`
        sizes = []
        for key, encoder in self.encoders.items():
            positions = [i for i, (track, _) in enumerate(due) if track.plan.encoder == key]
            for start in range(0, len(positions), self.max_batch):
                chunk = positions[start : start + self.max_batch]
                started = time.perf_counter()
                encoded = encoder.encode_frames([due[i][1] for i in chunk])
                self.encode_seconds[key].observe(time.perf_counter() - started)
                self.encoder_calls += 1
                self.batch_histogram[len(chunk)] += 1
                sizes.append(len(chunk))
                for i, row in zip(chunk, encoded):
                    features[i] = row
        return np.stack([features[i] for i in range(len(due))]), sizes
