"""What a pipeline holds per stream: one table, stream id -> `Served`, replaced whole.

The inference thread builds a new table when a reload adds or removes streams and swaps it in
with one assignment (copy-on-write), so a reader in another thread (stats, the HTTP service, a
scrape) that takes `pipeline.table` once holds one consistent snapshot: every stream in it has
its config, source, scheduler track, counters and event store together.

`Counters` are the one mutable part: the inference thread counts into them while readers read
plain numbers (each read is atomic; a read may be a frame behind, never torn across streams).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lrcn.stream.event_store import EventStore
from lrcn.stream.events import EventState
from lrcn.stream.pipeline_config import stream_id
from lrcn.stream.scheduler import Track
from lrcn.stream.snapshots import Original
from lrcn.stream.sources import Source
from lrcn.stream.stats import RateMeter, Reservoir

if TYPE_CHECKING:
    from lrcn.stream.pipeline_config import StreamConfig

TIMELINE_LENGTH = 8  # state changes, problems and action events kept per stream for the status page


@dataclass
class Counters:
    """What the inference thread counts and remembers per stream beyond the source and the scheduler."""

    frames_in: RateMeter = field(default_factory=RateMeter)
    predictions_out: RateMeter = field(default_factory=RateMeter)
    latency_ms: Reservoir = field(default_factory=Reservoir)
    publisher_dropped: int = 0
    shutdown_dropped: int = 0  # frames still in the ring when the stop deadline came
    dropped_logged: int = 0  # ring drops already reported in the log
    last_reason: str = ""
    last_label: str | None = None
    last_score: float | None = None
    last_image: np.ndarray | None = None  # the newest sampled frame, RGB at model size
    timeline: deque = field(default_factory=lambda: deque(maxlen=TIMELINE_LENGTH))  # (wall time, state, reason)
    events: EventState = field(default_factory=EventState)
    clips: dict = field(default_factory=dict)  # event id -> the path its clip will have
    events_started: dict = field(default_factory=dict)  # label -> events started (a metrics scrape reads it)
    event_frames: dict = field(default_factory=dict)  # event id -> EventFrames of the open event
    originals: dict = field(default_factory=dict)  # frame index -> Original, of the frames read last
    last_original: Original | None = None  # the newest frame at the source's resolution
    health: deque = field(default_factory=deque)  # degraded.Sample, about one a second, the last window
    connected_since: float | None = None  # monotonic; None while not connected
    degraded: str | None = None  # why the stream is degraded, or None


@dataclass(frozen=True)
class Served:
    """One served stream: everything about it that the pipeline holds, together."""

    config: StreamConfig
    source: Source
    track: Track  # the scheduler's (its head state and counts)
    counters: Counters = field(default_factory=Counters)
    store: EventStore | None = None  # where its events are stored; None: it has no event rules

    @property
    def name(self) -> str:
        return stream_id(self.config)


Table = Mapping[str, Served]


def without(table: Table, names: set[str]) -> dict[str, Served]:
    return {name: served for name, served in table.items() if name not in names}
