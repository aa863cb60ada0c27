"""The Python API: `lrcn.Recognizer`, a bundle's model on your own frames or sources, in process.

    import lrcn
    recognizer = lrcn.Recognizer("bundles/mine")
    recognizer.predict(frames)                 # a window of RGB frames -> Prediction
    feed = recognizer.stream("door")           # frames one at a time, sampled by their timestamps
    prediction = feed.push(image, t)           # a Prediction when a window completes, else None
    recognizer.run(["walk.mp4"], on_prediction=show)   # serve's pipeline, callbacks for sinks

Nothing here is a second implementation: frames are scaled by the capture's own filter graph
(stream.sources.pyav.Scaler), sampled by its grid (stream.sampling.Sampler), given motion by its
tracker (stream.flow.MotionTracker), stepped by the scheduler serve runs and labelled by the same
function (stream.pipeline.stream_label); `run` is serve's Pipeline with a callback sink
(stream.sinks.callback) in place of the ZeroMQ socket. docs/guide/python-api.md is the guide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.flow import MotionTracker
from lrcn.stream.messages import Message
from lrcn.stream.novelty import stream_threshold
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig, stream_label
from lrcn.stream.ring import Frame
from lrcn.stream.runtime_bundle import RuntimeBundle, load_runtime_bundle
from lrcn.stream.sampling import Sampler
from lrcn.stream.scheduler import Prediction as WindowPrediction
from lrcn.stream.scheduler import Scheduler, StreamPlan
from lrcn.stream.settings import check_stream_id
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.stats import PipelineStats
from lrcn.stream.sources.capture import CaptureError
from lrcn.stream.sources.pyav import Scaler
from lrcn.stream.windows import WindowConfig

# The StreamConfig settings a feed of pushed frames uses (the others are about sources, events and clips).
FEED_SETTINGS = ("fps", "crop", "mode", "hop", "reset_every", "smooth", "novelty", "idle_motion")

__all__ = ["FrameFeed", "LrcnError", "Prediction", "Recognizer", "Runner", "StreamConfig"]


@dataclass(frozen=True)
class Prediction:
    """One window's answer. `label` is what serve would publish for it (`idle` or `unknown` by the
    stream's gates; `predict` gives the model's top class), `score` the top class's probability,
    `probabilities` every class's. The fields after them say where the window lies in a stream
    (None from `predict`); `message` is the whole schema v1 `pred` payload (docs/reference/messages.md)
    for predictions from `run`."""

    label: str
    score: float
    probabilities: dict[str, float]
    stream: str | None = None
    frame_index: int | None = None  # the window's last frame, counting every frame of the stream
    window: tuple[int, int] | None = None  # (first, last) frame indices
    stream_time: float | None = None  # the last frame's time in its stream, s
    novelty: float | None = None
    motion: float | None = None
    message: dict | None = field(default=None, repr=False)

    @classmethod
    def from_message(cls, message: Message) -> Prediction:
        """A Prediction from a decoded `pred` message (the ZeroMQ, MQTT or JSONL payload)."""
        p = message.payload
        return cls(
            p["label"],
            p["score"],
            dict(p.get("probabilities") or dict(p["top_k"])),
            p["stream"],
            p["frame_index"],
            tuple(p["window"]),
            p.get("stream_time"),
            p.get("novelty"),
            p.get("motion"),
            p,
        )


class Recognizer:
    """A bundle loaded on an encoder backend (ONNX Runtime by default). LrcnError, one line, for a
    missing or broken bundle."""

    def __init__(self, bundle: str | Path, *, backend: str = "onnxruntime", threads: int | None = None):
        self.bundle: RuntimeBundle = load_runtime_bundle(bundle, backend, threads=threads)
        self.backend = backend
        spec = self.bundle.meta.spec
        self.classes: tuple[str, ...] = spec.classes
        self.input_size: tuple[int, int] = spec.input_size  # (height, width) the model sees
        self.fps: float = spec.fps  # the rate it samples streams at
        self.clip_length: int = spec.clip_length  # frames per window
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    def predict(self, frames, crop: tuple[int, int, int, int] | None = None) -> Prediction:
        """One window: RGB frames (uint8 [N, H, W, 3], or a list of [H, W, 3] of any sizes, or PyAV
        VideoFrames), consecutive samples at the bundle's fps, oldest first; `clip_length` of them
        is what the model was trained on. Each is cropped and scaled as capture does. The label is
        the model's top class."""
        images = as_frame_list(frames)
        scaler = Scaler(self.input_size, _checked_crop(crop))
        tracker = MotionTracker() if self.bundle.needs_flow else None
        window = []
        for i, image in enumerate(images):
            scaled = scale(scaler, image)
            flow, motion = tracker.step(scaled, 0) if tracker is not None else (None, None)
            window.append(Frame(scaled, i, 0.0, 0, i / self.fps, flow, motion))
        with self._lock:
            probabilities = self.bundle.clip_probabilities_of(window)
        top = int(np.argmax(probabilities))
        return Prediction(self.classes[top], float(probabilities[top]), dict(zip(self.classes, probabilities.tolist())))

    def stream(self, id: str = "frames", **settings) -> FrameFeed:
        """A stateful feed for one stream of frames pushed one at a time (`FrameFeed.push`).
        `settings` are StreamConfig's (fps, crop, mode, hop, reset_every, smooth, novelty,
        idle_motion), as a [[stream]] table gives them to serve; the defaults are serve's."""
        unknown = sorted(set(settings) - set(FEED_SETTINGS))
        if unknown:
            raise LrcnError(f"stream {id}: a feed takes no {', '.join(unknown)} (it takes {', '.join(FEED_SETTINGS)})")
        config = StreamConfig(source=id, id=id, **settings)
        check_stream_id(id)
        stream_threshold(config.novelty, self.bundle.novelty, id)  # a bad setting fails here, as in serve
        plan = StreamPlan(id, WindowConfig(config.mode, config.hop, config.reset_every), parse_smoothing(config.smooth))
        with self._lock:
            self._feeds().add_stream(plan)
        return FrameFeed(self, config)

    def runner(
        self,
        sources,
        *,
        on_prediction: Callable[[Prediction, np.ndarray | None], None] | None = None,
        on_event: Callable[[dict], None] | None = None,
        on_status: Callable[[dict], None] | None = None,
        pace: bool = True,
    ) -> Runner:
        """serve's pipeline over `sources` (a source string, a StreamConfig, or a list of them:
        files, camera indices, URLs, `pattern:`) with callbacks instead of ZeroMQ; not started
        (`Runner.start`, or use it in a `with` block). Strings are read at the file's own rate
        unless `pace=False` (then as fast as they decode, losing nothing). The callbacks run on
        the inference thread (keep them quick): on_prediction(Prediction, frame), where frame is
        the full-resolution frame if the pipeline keeps one, else None; on_event(payload) and
        on_status(payload) get the schema v1 event and status payloads (docs/reference/messages.md)."""
        return Runner(self, sources, on_prediction, on_event, on_status, pace)

    def run(
        self,
        sources,
        *,
        on_prediction=None,
        on_event=None,
        on_status=None,
        pace: bool = True,
        duration_s: float | None = None,
    ) -> PipelineStats:
        """`runner(...)` started and served until every source ends, `duration_s` passes or Ctrl-C
        is pressed (as for serve, a stop, not an error), then stopped; the pipeline's final stats."""
        with self.runner(
            sources, on_prediction=on_prediction, on_event=on_event, on_status=on_status, pace=pace
        ) as runner:
            try:
                runner.wait(duration_s)
            except KeyboardInterrupt:
                pass
        return runner.stop()  # stopped already: its final stats

    def _feeds(self) -> Scheduler:
        """The scheduler of this recognizer's feeds, made for the first; call it under the lock."""
        if self._scheduler is None:
            self._scheduler = Scheduler(
                self.bundle.head, self.clip_length, self.bundle.encoder, novelty=self.bundle.novelty
            )
        return self._scheduler

    def _step(self, stream: str, frame: Frame) -> list[WindowPrediction]:
        with self._lock:
            return self._feeds().process({stream: [frame]}).predictions

    def _forget(self, stream: str) -> None:
        with self._lock:
            self._feeds().remove_stream(stream)


class FrameFeed:
    """One stream's frames, pushed one at a time with their times; sampled on the bundle's fps
    grid by those times, scaled, given motion and stepped exactly as a capture thread and the
    scheduler do for serve, so the predictions equal serve's on the same frames."""

    def __init__(self, recognizer: Recognizer, config: StreamConfig):
        self.recognizer = recognizer
        if config.id is None:
            raise LrcnError("a feed's stream needs an id")
        self.config = config
        self.id: str = config.id
        self._sampler = Sampler(config.fps or recognizer.fps)
        self._scaler = Scaler(recognizer.input_size, _checked_crop(config.crop))
        needs_flow = config.idle_motion > 0 or recognizer.bundle.needs_flow  # as serve's source_options
        self._motion = MotionTracker() if needs_flow else None
        self.frames = 0  # frames pushed: the next one's index
        self.segment = -1  # bumps at the first frame and at every jump in time

    def push(self, frame, t: float) -> Prediction | None:
        """Offer the next frame (RGB uint8 [H, W, 3] of any size, or a PyAV VideoFrame) at `t`
        seconds of stream time; the Prediction of the window it completes, else None. A frame off
        the sampling grid is counted and skipped; a jump in `t` (over a second either way) starts
        a new segment, which no window spans."""
        image = _checked_image(frame, f"stream {self.id}: frame {self.frames}")
        if not np.isfinite(t):
            raise LrcnError(f"stream {self.id}: frame {self.frames} has time {t}, not a number of seconds")
        keep, jumped = self._sampler.offer(float(t))
        if self.segment < 0 or jumped:
            self.segment += 1
        index, self.frames = self.frames, self.frames + 1
        if not keep:
            return None
        scaled = scale(self._scaler, image)
        flow, motion = self._motion.step(scaled, self.segment) if self._motion is not None else (None, None)
        found = self.recognizer._step(
            self.id, Frame(scaled, index, time.monotonic(), self.segment, float(t), flow, motion)
        )
        return self._typed(found[-1]) if found else None

    def close(self) -> None:
        """Forget this stream's state; its id may then be used again."""
        self.recognizer._forget(self.id)

    def _typed(self, p: WindowPrediction) -> Prediction:
        classes = self.recognizer.classes
        return Prediction(
            stream_label(self.config, self.recognizer.bundle, p),
            p.score,
            dict(zip(classes, p.probabilities.tolist())),
            self.id,
            p.frame_index,
            p.window,
            p.pts,
            p.novelty,
            p.motion,
        )


class Runner:
    """serve's Pipeline with a callback sink and no ZeroMQ port (see Recognizer.runner). `stop()`
    stops the sources, drains what they captured, delivers the final status per stream and ends
    every thread it started; it is safe to call twice."""

    def __init__(self, recognizer: Recognizer, sources, on_prediction, on_event, on_status, pace: bool):
        configs = [s if isinstance(s, StreamConfig) else StreamConfig(str(s), pace=pace) for s in _as_list(sources)]
        sink = {"type": "callback", "frames": self._full_frame}
        if on_prediction is not None:
            sink["on_prediction"] = lambda message, frame: on_prediction(Prediction.from_message(message), frame)
        if on_event is not None:
            sink["on_event"] = lambda message: on_event(message.payload)
        if on_status is not None:
            sink["on_status"] = lambda message: on_status(message.payload)
        sinks = (sink,) if len(sink) > 2 else ()
        self.pipeline = Pipeline(
            recognizer.bundle, configs, PipelineOptions(endpoint=None, backend=recognizer.backend, sinks=sinks)
        )
        self.stats: PipelineStats | None = None
        self._started = False

    @property
    def streams(self) -> list[str]:
        return list(self.pipeline.configs)

    def start(self) -> Runner:
        if not self._started:
            self._started = True
            self.pipeline.start()
        return self

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every source has ended and been drained (True), or `timeout_s` passes (False)."""
        self.pipeline.serve_until(timeout_s)
        return self.pipeline.wait(0)

    def stop(self, timeout_s: float = 2.0) -> PipelineStats:
        """Stop and return the final stats (per stream: frames, predictions, drops, latency)."""
        if self.stats is None:
            self.stats = self.pipeline.stop(timeout_s)
        return self.stats

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _full_frame(self, stream: str) -> np.ndarray | None:
        # The newest decoded frame at the source's resolution (inside its crop), which is what a caller
        # drawing on the picture wants; converted to RGB only here, when a callback asks for it.
        original = self.pipeline.latest_original(stream)
        return None if original is None else original.rgb()


# -- frames in ------------------------------------------------------------------------------


def scale(scaler: Scaler, image: np.ndarray | av.VideoFrame) -> np.ndarray:
    """An RGB array or a decoded frame through the capture's crop-and-scale filter graph."""
    frame = image if isinstance(image, av.VideoFrame) else av.VideoFrame.from_ndarray(image, format="rgb24")
    try:
        return scaler(frame)
    except CaptureError as err:
        raise LrcnError(err.reason) from None


def as_frame_list(frames) -> list:
    """Checked frames: a uint8 [N, H, W, 3] array or a non-empty sequence of frames."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise LrcnError(f"frames must be uint8 RGB [N, H, W, 3], got an array of shape {list(frames.shape)}")
        frames = list(frames)
    elif isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise LrcnError(f"frames must be a uint8 [N, H, W, 3] array or a list of frames, got {type(frames).__name__}")
    if not frames:
        raise LrcnError("frames: a window needs at least one frame")
    return [_checked_image(frame, f"frame {i}") for i, frame in enumerate(frames)]


def _checked_image(image, what: str):
    if isinstance(image, av.VideoFrame):
        return image
    if not isinstance(image, np.ndarray):
        raise LrcnError(f"{what} must be a uint8 RGB array [H, W, 3] or a PyAV VideoFrame, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise LrcnError(f"{what} must be uint8 RGB (0-255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
        raise LrcnError(f"{what} must be RGB [H, W, 3] with H, W >= 2, got shape {list(image.shape)}")
    return np.ascontiguousarray(image)


def _checked_crop(crop) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    if len(crop) != 4 or not all(isinstance(v, int) and v >= 0 for v in crop) or min(crop[2:]) < 2:
        raise LrcnError(f"crop must be [x, y, width, height] in pixels, got {list(crop)}")
    return tuple(crop)


def _as_list(sources) -> list:
    found = [sources] if isinstance(sources, (str, Path, StreamConfig)) else list(sources)
    if not found:
        raise LrcnError("no sources to run")
    return found
