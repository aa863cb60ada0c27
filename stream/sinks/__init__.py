"""Sinks: where the pipeline's messages go. ZeroMQ PUB is the default; MQTT and JSONL files beside it,
and Python functions in the same process (`callback`, what `lrcn.Recognizer.run` uses instead of ZeroMQ).

Every message is numbered and encoded once (`stream.outbox.Outbox`), then handed to each sink as
an `Outgoing`: the same schema v1 JSON, with the same `seq`, whatever the transport. A sink gets
one call per message kind, `prediction`, `status`, `event` and `heartbeat`; each defaults to
`send`, so a sink overrides only the kinds it treats differently (MQTT retains the status).
A sink takes only the kinds in its `kinds` (every sink's `kinds` option: a dashboard that wants
events alone need not carry a message per frame).

A sink must never block the caller (the inference thread): it queues or drops, and counts what it
dropped in `stats()`. What its transport refuses (a full disk, a lost connection, a socket error)
it counts in `failed` and says why in `problem`, one line; it never raises at the caller, nor
when it closes. The pipeline logs new failures at warning, at most once per stats interval per
sink (`Outbox.report_failures`), and serves them as `lrcn_sink_failures_total{sink}`.

A new kind of sink is one module with a `@register`ed class:

    @register
    class Webhook(Sink):
        name = "webhook"                         # `type = "webhook"` in a [[sink]] table
        @classmethod
        def from_config(cls, options, *, node): ...   # the table's other keys; LrcnError if wrong
        def send(self, message): ...             # True if taken, False if dropped
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import SinkStats
from lrcn.stream.registry import Registry

# Modules that register the built-in sinks; imported when a sink is first looked up, so that a
# deployment without MQTT or files never imports them.
BUILT_IN = (
    "lrcn.stream.sinks.zeromq",
    "lrcn.stream.sinks.mqtt",
    "lrcn.stream.sinks.jsonl",
    "lrcn.stream.sinks.callback",
)


@dataclass(frozen=True)
class Outgoing:
    """One encoded message: `frames` are ZeroMQ's [topic, payload] (`stream.messages`)."""

    kind: str  # messages.PRED, STATUS, EVENT or HEARTBEAT
    stream: str | None  # None for a heartbeat
    topic: str  # pred/<stream>, status/<stream>, event/<stream> or heartbeat
    frames: tuple[bytes, bytes]

    @property
    def payload(self) -> bytes:
        """The UTF-8 JSON object."""
        return self.frames[1]


KINDS = (messages.PRED, messages.STATUS, messages.EVENT, messages.HEARTBEAT)


class Sink:
    name: ClassVar[str] = ""
    kinds: frozenset[str] = frozenset(KINDS)  # the kinds of message it takes
    failed: int = 0  # failures of its transport so far (see the module docstring)
    problem: str = ""  # why the latest failure happened, one line; "" before any

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> Sink:
        """A sink from a [[sink]] table's keys (all but `type`); LrcnError naming a bad key."""
        raise NotImplementedError

    def send(self, message: Outgoing) -> bool:
        """Queue or send one message without blocking; False if it was dropped."""
        raise NotImplementedError

    def prediction(self, message: Outgoing) -> bool:
        return self.send(message)

    def status(self, message: Outgoing) -> bool:
        return self.send(message)

    def event(self, message: Outgoing) -> bool:
        return self.send(message)

    def heartbeat(self, message: Outgoing) -> bool:
        return self.send(message)

    @property
    def takes_snapshots(self) -> bool:
        """Whether publish_snapshot takes anything (so snapshots are encoded for it without --record)."""
        return False

    def publish_snapshot(self, stream: str, jpeg: bytes) -> bool:
        """An event's snapshot (JPEG bytes) for sinks that carry images (MQTT); False: not taken."""
        return False

    def serving(self, streams: Mapping[str, tuple[str, ...] | None]) -> None:
        """The streams served from now on, each with the classes its events watch (None: no events):
        called at start and after each reload, before the added streams' first message and after the
        removed ones' last (MQTT announces them to Home Assistant and clears what it retained)."""

    def close(self, timeout_s: float = 1.0) -> None:
        """Flush what is queued for up to `timeout_s`, then let go of the transport."""

    def stats(self) -> SinkStats:
        """Its counters: at least sent, dropped, failed and problem. `sent` counts only what the
        transport took: a message lost to a failure is in `failed`."""
        return SinkStats(sent=0, dropped=0, failed=self.failed, problem=self.problem)

    def describe(self) -> str:
        """Where it sends, for the log and the banner."""
        return self.name


SINKS: Registry[type[Sink]] = Registry("sink type", BUILT_IN)


def register(cls: type[Sink]) -> type[Sink]:
    """Class decorator: add a sink type under its `name`."""
    return SINKS.add(cls.name, cls)


def sink_types() -> list[str]:
    return sorted(SINKS.names())


def open_sink(table: Mapping, *, node: str) -> Sink:
    """A sink from a [[sink]] table: `type` picks the class, the other keys are its options."""
    sink_type = SINKS.get(table.get("type"))
    return sink_type.from_config({k: v for k, v in table.items() if k != "type"}, node=node)


# A sink's options and the types each takes: {"port": int, "max_mb": (int, float)}.
OptionTypes = Mapping[str, type | tuple[type, ...]]


def check_keys(options: Mapping, types: OptionTypes, sink: str) -> None:
    """LrcnError for a key `types` does not name or a value of the wrong type."""
    for key, value in options.items():
        if key not in types:
            raise LrcnError(f"unknown key {key!r} in a {sink} sink (known: {', '.join(types)})")
        expected = types[key]
        takes_bool = bool in (expected if isinstance(expected, tuple) else (expected,))
        if (isinstance(value, bool) and not takes_bool) or not isinstance(value, expected):
            raise LrcnError(f"{sink} sink: {key!r} has the wrong type ({type(value).__name__})")


def check_kinds(kinds, sink: str) -> frozenset[str]:
    """A `kinds` option as a set; LrcnError naming a kind that does not exist."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise LrcnError(f"{sink} sink: kinds must be some of {', '.join(KINDS)}, got {list(kinds)}")
    return frozenset(kinds)
