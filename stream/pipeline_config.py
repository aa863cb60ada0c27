"""What a pipeline is asked to serve: each stream's config, the pipeline's options, and what
follows from a config alone (its id, capture settings, the label it publishes).

    StreamConfig("rtsp://10.0.0.5:8554/live", id="door", events=EventRules(classes=("fall",)))
    PipelineOptions(endpoint="tcp://127.0.0.1:5556", sinks=({"type": "mqtt", "url": "mqtt://127.0.0.1/lrcn"},))

A deployment file's [[stream]] tables become StreamConfigs in stream.deploy; `lrcn serve`'s flags
become PipelineOptions in tools/cli/serving.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from lrcn.stream.recording import RecordRules
from lrcn.stream.degraded import DegradedRules
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules, published_label
from lrcn.stream.keys import ClientKeys, ServerKeys
from lrcn.stream.novelty import stream_threshold
from lrcn.stream.runtime_bundle import RuntimeBundle
from lrcn.stream.scheduler import Prediction
from lrcn.stream.settings import Stream as StreamSettings
from lrcn.stream.settings import check_distinct_ids, check_stream_id, default
from lrcn.stream.sinks.zeromq import DEFAULT_ENDPOINT
from lrcn.stream.sources import SourceOptions, stream_name
from lrcn.stream.windows import EXACT


@dataclass(frozen=True)
class StreamConfig:
    source: str  # camera index, file path, URL, pattern: or gst: pipeline
    id: str | None = None  # default: derived from the source
    fps: float | None = None  # sampling rate; default: the model's
    crop: tuple[int, int, int, int] | None = None  # x, y, width, height in source pixels: what the model watches
    decoder: str | None = None  # "cpu", "auto" or a hardware decoder; default: PipelineOptions.source
    mode: str = EXACT  # "exact" or "continuous"
    hop: int = 1
    reset_every: int | None = None
    smooth: str | None = None  # "ema:ALPHA", "hysteresis:M[:MARGIN]" or None
    backend: str | None = None  # default: PipelineOptions.backend
    pace: bool = True  # files: real time
    loop: bool = False  # files: start again at the end
    events: EventRules | None = None  # turn predictions into event/<stream> messages; label `unknown` below min_score
    novelty: str | float | None = None  # open-set guard: None the bundle's threshold, "off", or a threshold
    record: RecordRules | None = None  # write an MP4 per event (needs events and a PyAV source)
    # Publish `idle` for a window whose motion (stream.flow) is below this many pixels; 0: off, no flow computed.
    idle_motion: float = default(StreamSettings, "idle_motion")


@dataclass(frozen=True)
class PipelineOptions:
    endpoint: str | None = DEFAULT_ENDPOINT  # None: no ZeroMQ socket (the Python API's callbacks are the sink)
    connect: bool = False  # connect to `endpoint` (a proxy's XSUB side) instead of binding it
    backend: str = "onnxruntime"
    threads: int | None = None
    curve: ServerKeys | ClientKeys | None = None  # ClientKeys with `connect`: a CURVE client of a proxy
    top_k: int = 3
    max_batch: int = 16  # largest encoder call; a TensorRT engine's profile (as `lrcn engine build`)
    hwm: int = 1000
    stats_interval_s: float = 5.0
    heartbeat_interval_s: float = 1.0
    # After a frame arrives, wait this long for other streams' frames so they share one encoder
    # call: throughput for a GPU, at up to this much latency. 0: encode what is there at once.
    gather_s: float = 0.0
    source: SourceOptions = field(default_factory=SourceOptions)
    sinks: tuple[dict, ...] = ()  # more sinks beside ZeroMQ: [[sink]] tables ({"type": "mqtt", ...})
    state_dir: str | None = None  # events of streams that record nothing: DIR/lrcn.sqlite; None: in memory
    degraded: DegradedRules = field(default_factory=DegradedRules)  # when a connected stream counts as degraded


def with_unique_ids(streams: Sequence[StreamConfig]) -> list[StreamConfig]:
    """Give each stream without an id one derived from its source, numbered if it repeats; LrcnError
    for an id against the rule or ids that would share a folder or topic (stream.settings)."""
    for config in streams:
        if config.id is not None:
            check_stream_id(config.id)
    check_distinct_ids(c.id for c in streams if c.id is not None)
    taken = {c.id.casefold() for c in streams if c.id}
    named = []
    for config in streams:
        if config.id is None:
            base = candidate = stream_name(config.source)
            n = 2
            while candidate.casefold() in taken:
                suffix = f"-{n}"
                candidate, n = base[: 64 - len(suffix)] + suffix, n + 1
            taken.add(candidate.casefold())
            config = replace(config, id=candidate)
        named.append(config)
    return named


def check_stream(config: StreamConfig, bundle: RuntimeBundle) -> None:
    """LrcnError if the bundle cannot serve `config` as it asks: events naming classes the model
    lacks, a bad novelty threshold or idle motion, clips without events."""
    if config.events is not None:
        unknown = sorted(set(config.events.classes + config.events.ignore) - set(bundle.classes))
        if unknown:
            raise LrcnError(
                f"stream {config.id}: events name classes the model lacks: {', '.join(unknown)} "
                f"(it has {', '.join(bundle.classes)})"
            )
    stream_threshold(config.novelty, bundle.novelty, stream_id(config))  # a bad setting fails here
    if not 0 <= config.idle_motion < float("inf"):
        raise LrcnError(
            f"stream {config.id}: idle_motion must be a motion in pixels >= 0 (0: off), got {config.idle_motion}"
        )
    if config.record is not None and config.events is None:
        raise LrcnError(f"stream {config.id}: record needs events (clips are cut per event)")


def source_options(
    config: StreamConfig, defaults: SourceOptions, model_fps: float, model_needs_flow: bool = False
) -> SourceOptions:
    """A stream's capture settings: its own where it sets them, else the pipeline's. Flow is
    computed for the idle gate and for a bundle that sees motion."""
    return replace(
        defaults,
        fps=config.fps or model_fps,
        pace=config.pace,
        loop=config.loop,
        flow=config.idle_motion > 0 or model_needs_flow,
        crop=_crop(config.crop) if config.crop is not None else defaults.crop,
        decoder=config.decoder or defaults.decoder,
    )


def stream_id(config: StreamConfig) -> str:
    """A stream's id: every config the pipeline holds has one (with_unique_ids names the rest)."""
    if config.id is None:
        raise LrcnError("a stream without an id reached the pipeline")
    return config.id


def _crop(crop: Sequence[int]) -> tuple[int, int, int, int]:
    x, y, width, height = crop  # the settings check it is four numbers
    return x, y, width, height


def stream_label(config: StreamConfig, bundle: RuntimeBundle, prediction: Prediction) -> str:
    """The label a stream publishes for a prediction: the model's, or `idle`/`unknown` by the
    stream's idle gate, open-set guard and event rules (stream.events.published_label)."""
    threshold = stream_threshold(config.novelty, bundle.novelty, stream_id(config))
    novel = threshold is not None and prediction.novelty is not None and prediction.novelty > threshold
    idle = prediction.motion is not None and prediction.motion < config.idle_motion
    return published_label(config.events, prediction.label, prediction.score, novel, idle)
