"""Schema v1 messages: what the publisher sends and subscribers read. Pure functions, no sockets.

Every message is two ZeroMQ frames, [topic, payload]: the topic alone in the first frame so a
SUB socket filters by prefix, the payload UTF-8 JSON. Topics:

    pred/<stream>     one prediction for one window of one stream
    status/<stream>   a source or pipeline state change, with counters
    event/<stream>    an action's start, update or end (stream.events), for streams with event rules
    heartbeat         periodic, proves the publisher is alive when nothing else is sent

Timestamps (`capture_time`, `publish_time`, `time`) are wall-clock seconds since the Unix
epoch (time.time() of the publishing host). `latency_ms` is measured on the publisher's
monotonic clock, capture to publish, so a wall-clock step cannot distort it; `capture_time`
is `publish_time - latency_ms / 1000`. `seq` counts messages per topic from 0: a gap means
messages were shed on the way; a smaller number than before means the publisher restarted.

Newer versions only add: a reader accepts a `schema` above its own, ignores fields it does not
know, and passes on a topic it does not know (as `event/<stream>` reaches a reader older than
events) as a Message of that kind, checked only for being a JSON object, for the caller to use
or skip.

>>> frames = encode_prediction("cam0", seq=0, frame_index=41, window=(26, 41), label="wave", score=0.9,
...                            top_k=[("wave", 0.9), ("walk", 0.1)], capture_time=100.0, publish_time=100.02)
>>> message = decode(frames)
>>> message.topic, message.payload["label"], message.payload["latency_ms"]
('pred/cam0', 'wave', 20.0)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from lrcn.stream.errors import LrcnError
from lrcn.stream.message_schema import (
    KINDS,
    SCHEMA_VERSION,
    ActionEvent,
    Event,
    Heartbeat,
    Prediction,
    Record,
    Status,
    required,
)

PRED, STATUS, EVENT, HEARTBEAT = "pred", "status", "event", "heartbeat"
EVENT_TYPES = ("start", "update", "end")
HEARTBEAT_TOPIC = HEARTBEAT
STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
TOPIC_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class MessageError(LrcnError):
    """A message that does not follow schema v1."""


@dataclass(frozen=True)
class Message:
    topic: str
    kind: str  # PRED, STATUS, HEARTBEAT, or a kind this reader does not know
    stream: str | None  # None for a heartbeat (and a topic without /<stream>)
    payload: dict[str, Any]

    @property
    def known(self) -> bool:
        """Whether this reader knows the topic (else it is from a newer publisher: use it or skip it)."""
        return self.kind in _FIELDS


def pred_topic(stream: str) -> str:
    return f"{PRED}/{_checked_stream(stream)}"


def status_topic(stream: str) -> str:
    return f"{STATUS}/{_checked_stream(stream)}"


def event_topic(stream: str) -> str:
    return f"{EVENT}/{_checked_stream(stream)}"


def encode_event(stream: str, *, seq: int, event: ActionEvent | Mapping[str, Any], publish_time: float) -> list[bytes]:
    """[topic, payload] for one action event of stream.events: `type`, `label`, where it started
    (`start_frame`, `start_time` in stream seconds) and, for an update or end, where it is now
    (`end_frame`, `end_time`, `duration_s`, `peak_score`, `mean_score`); `clip` when one was recorded.
    A mapping is sent as it is (a test's stand-in for an older or a rogue publisher)."""
    if isinstance(event, ActionEvent):
        kind: Any = event.type
        fields = msgspec.to_builtins(event)
    else:  # sent as given, as an older publisher would
        kind, fields = event.get("type"), dict(event)
    if kind not in EVENT_TYPES:
        raise MessageError(f"event type must be one of {', '.join(EVENT_TYPES)}, got {kind!r}")
    header = msgspec.to_builtins(Event(schema=SCHEMA_VERSION, stream=stream, seq=seq, time=round(publish_time, 6)))
    # Events are rare: one dict and json.dumps, every float rounded as before.
    payload = {
        **header,
        **{key: round(value, 6) if isinstance(value, float) else value for key, value in fields.items()},
    }
    topic = event_topic(stream)
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise MessageError(f"{topic}: scores must be finite") from None
    return [topic.encode("utf-8"), text.encode("utf-8")]


def encode_prediction(
    stream: str,
    *,
    seq: int,
    frame_index: int,
    window: tuple[int, int],
    label: str,
    score: float,
    top_k: Iterable[tuple[str, float]],
    capture_time: float,
    publish_time: float,
    latency_ms: float | None = None,
    probabilities: dict[str, float] | None = None,
    stream_time: float | None = None,
    novelty: float | None = None,
    motion: float | None = None,
) -> list[bytes]:
    """[topic, payload] for one prediction. `latency_ms` defaults to the wall-clock difference;
    `stream_time` is the last frame's presentation time in its stream, in seconds; `novelty` the
    window's open-set score (stream.novelty); `motion` its motion in pixels (stream.flow)."""
    if latency_ms is None:
        latency_ms = (publish_time - capture_time) * 1000.0
    first, last = int(window[0]), int(window[1])
    if not 0 <= first <= last:
        raise MessageError(f"window must be [first, last] frame indices with first <= last, got {list(window)}")
    return _frames(
        pred_topic(stream),
        Prediction(
            schema=SCHEMA_VERSION,
            stream=stream,
            seq=seq,
            frame_index=frame_index,
            window=[first, last],
            label=label,
            score=round(float(score), 6),
            top_k=[(str(name), round(float(p), 6)) for name, p in top_k],
            capture_time=round(capture_time, 6),
            publish_time=round(publish_time, 6),
            latency_ms=round(latency_ms, 3),
            stream_time=None if stream_time is None else round(float(stream_time), 6),
            novelty=None if novelty is None else round(float(novelty), 4),
            motion=None if motion is None else round(float(motion), 4),
            probabilities=None
            if probabilities is None
            else {str(name): round(float(p), 6) for name, p in probabilities.items()},
        ),
    )


def encode_status(
    stream: str, *, seq: int, state: str, reason: str = "", stats: dict[str, Any] | None = None, publish_time: float
) -> list[bytes]:
    """[topic, payload] for one state change of a stream; `stats` holds plain counters."""
    return _frames(
        status_topic(stream),
        Status(
            schema=SCHEMA_VERSION,
            stream=stream,
            seq=seq,
            state=state,
            reason=" ".join(reason.split()),
            time=round(publish_time, 6),
            stats=dict(stats or {}),
        ),
    )


def encode_heartbeat(
    *, seq: int, publish_time: float, interval_s: float, streams: Sequence[str] = (), node: str = ""
) -> list[bytes]:
    """[topic, payload] saying the publisher is alive, what it serves, and when to expect the next one."""
    return _frames(
        HEARTBEAT_TOPIC,
        Heartbeat(
            schema=SCHEMA_VERSION,
            seq=seq,
            time=round(publish_time, 6),
            interval_s=interval_s,
            streams=list(streams),
            node=node,
        ),
    )


# Required payload fields and their Python types, per kind, from the records in stream.message_schema.
_NUMBER = (int, float)
_PYTHON_TYPES = {"integer": int, "number": _NUMBER, "string": str, "array": list, "object": dict}
_FIELDS: dict[str, dict[str, Any]] = {
    kind: {name: _PYTHON_TYPES[json_type] for name, json_type in required(kind).items()} for kind in KINDS
}


def decode(frames: Sequence[bytes]) -> Message:
    """Parse and validate [topic, payload]; raise MessageError saying what is wrong."""
    if len(frames) != 2:
        raise MessageError(f"expected 2 frames [topic, payload], got {len(frames)}")
    try:
        topic = bytes(frames[0]).decode("utf-8")
        payload = json.loads(bytes(frames[1]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise MessageError(f"payload is not UTF-8 JSON: {err}") from None
    kind, slash, stream = topic.partition("/")
    known = kind in _FIELDS
    if (
        not TOPIC_KIND.match(kind)
        or (slash and not STREAM_ID.match(stream))
        or (known and (kind == HEARTBEAT) != (stream == ""))
    ):
        raise MessageError(
            f"malformed topic {topic!r} (expected pred/<stream>, status/<stream>, event/<stream>, "
            f"heartbeat, or a newer kind[/<stream>])"
        )
    if not isinstance(payload, dict):
        raise MessageError(f"{topic}: payload is not a JSON object")
    if not known:  # a newer publisher's topic: passed on unchecked
        return Message(topic=topic, kind=kind, stream=stream or None, payload=payload)
    for field, kinds in _FIELDS[kind].items():
        if field not in payload:
            raise MessageError(f"{topic}: missing field {field!r}")
        value = payload[field]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise MessageError(f"{topic}: field {field!r} has the wrong type ({type(value).__name__})")
    if payload["schema"] < SCHEMA_VERSION:
        raise MessageError(f"{topic}: schema version {payload['schema']}, the first is {SCHEMA_VERSION}")
    if stream and payload["stream"] != stream:
        raise MessageError(f"{topic}: payload stream {payload['stream']!r} differs from the topic")
    if kind == PRED:
        _check_prediction(topic, payload)
    return Message(topic=topic, kind=kind, stream=stream or None, payload=payload)


def _check_prediction(topic: str, payload: dict[str, Any]) -> None:
    window = payload["window"]
    if len(window) != 2 or not all(isinstance(i, int) for i in window) or window[0] > window[1]:
        raise MessageError(f"{topic}: window must be [first, last] frame indices, got {window}")
    for entry in payload["top_k"]:
        if not (
            isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], _NUMBER)
        ):
            raise MessageError(f"{topic}: top_k entries must be [label, score], got {entry!r}")


def _checked_stream(stream: str) -> str:
    if not STREAM_ID.match(stream):
        raise MessageError(f"stream id must be 1-128 of A-Z a-z 0-9 _ . -, got {stream!r}")
    return stream


def _frames(topic: str, record: Record) -> list[bytes]:
    # msgspec's encoder is the fast path; where its bytes could differ from json.dumps' (non-ASCII
    # or escaped text, an exponent, a NaN or infinity it would write as null) the payload goes
    # through json.dumps, so the wire stays as it was: ASCII escapes and Python's float repr.
    text = _ENCODE(record)
    if text.isascii() and not _MAYBE_DIFFERENT.search(text):
        return [topic.encode("utf-8"), text]
    try:
        slow = json.dumps(msgspec.to_builtins(record), separators=(",", ":"), allow_nan=False)
    except ValueError:  # what allow_nan refuses: a NaN or infinite score or probability
        raise MessageError(f"{topic}: scores and probabilities must be finite") from None
    return [topic.encode("utf-8"), slow.encode("utf-8")]


_ENCODE = msgspec.json.Encoder().encode
_MAYBE_DIFFERENT = re.compile(rb"[\\\x7f]|\de|null")
