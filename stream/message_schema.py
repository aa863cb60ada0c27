"""Every schema v1 message, defined once as a typed record (a msgspec Struct per kind): the
publisher builds and encodes these (`stream.messages`), a reader checks received payloads against
their required fields, and `json_schema(kind)` makes the JSON Schema files in docs/schemas/
(`python -m lrcn.tools.evidence.schemas` writes them; a test fails when they differ).

A field's order is its order on the wire; a field whose default is None is left out when None; a
field marked `older_may_omit` is always sent, but a reader does not require it.

>>> schema = json_schema("heartbeat")
>>> schema["required"], schema["properties"]["interval_s"]["type"]
(['schema', 'seq', 'time', 'interval_s', 'streams'], 'number')
>>> Heartbeat(schema=1, seq=0, time=2.0, interval_s=1.0, streams=["cam0"], node="box:1").__struct_fields__[-1]
'node'
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, structs

SCHEMA_VERSION = 1
SCHEMA_ID = "urn:lrcn-stream:schema:v1:{kind}"

_NUMBER_PAIR = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "minItems": 2, "maxItems": 2}
_SCHEMA = "the schema version, 1; a newer one only adds fields and topics"
_STREAM = "the stream id, equal to the topic's suffix"
_SEQ = "per-topic sequence number from 0 on each publisher start; a gap means messages were shed on the way"
_TIME = "when it was published, s since the epoch (wall clock)"


def _about(meaning: str, **schema: Any) -> Meta:
    """A field's meaning, and what its JSON Schema says beyond its type (items, length, pattern)."""
    return Meta(description=meaning, extra=schema)


class Record(Struct, kw_only=True, omit_defaults=True, frozen=True):
    """A message payload; subclasses are the kinds."""


class Prediction(Record, kw_only=True, frozen=True):
    schema: Annotated[int, _about(_SCHEMA)]
    stream: Annotated[str, _about(_STREAM)]
    seq: Annotated[int, _about(_SEQ)]
    frame_index: Annotated[int, _about("index of the newest frame the prediction used, from the source's first frame")]
    window: Annotated[
        list[int],
        _about("[first, last] frame indices the prediction covers", items={"type": "integer", "minimum": 0}, length=2),
    ]
    label: Annotated[
        str,
        _about(
            "the top class; `idle` when the window's motion is under the stream's idle_motion; "
            "`unknown` below the stream's min_score or when the window's novelty is over the "
            "threshold"
        ),
    ]
    score: Annotated[float, _about("the top class's probability, 0..1")]
    top_k: Annotated[
        list[tuple[str, float]], _about("the best classes with their probabilities, highest first", items=_NUMBER_PAIR)
    ]
    capture_time: Annotated[float, _about("when the newest frame was captured, s since the epoch (wall clock)")]
    publish_time: Annotated[float, _about("when the message was sent, s since the epoch (wall clock)")]
    latency_ms: Annotated[float, _about("capture to publish, ms, on the publisher's monotonic clock")]
    stream_time: Annotated[float | None, _about("the newest frame's presentation time in its stream, s")] = None
    novelty: Annotated[
        float | None,
        _about(
            "the window's open-set score: how far its mean encoder features are from the training windows (higher: "
            "less like them); only from bundles with novelty.npz"
        ),
    ] = None
    motion: Annotated[
        float | None,
        _about(
            "the window's motion: the lower quartile of its frames' mean optical flow, pixels at the model's input "
            "size; only from streams that compute flow (idle_motion on)"
        ),
    ] = None
    probabilities: Annotated[
        dict[str, float] | None, _about("every class's probability", values={"type": "number"})
    ] = None


class Status(Record, kw_only=True, frozen=True):
    schema: Annotated[int, _about(_SCHEMA)]
    stream: Annotated[str, _about(_STREAM)]
    seq: Annotated[int, _about(_SEQ)]
    state: Annotated[
        str,
        _about(
            "the stream's state: connecting, connected, lost, reconnecting, failed, ended, "
            "stopped, degraded (connected, but far too few predictions)"
        ),
    ]
    reason: Annotated[str, _about("one line of detail, may be empty")]
    time: Annotated[float, _about(_TIME)]
    stats: Annotated[dict[str, Any], _about("counters at that moment; names may grow")]


class Event(Record, kw_only=True, frozen=True):
    """The event/<stream> message's own fields; an `ActionEvent`'s fields follow them on the wire."""

    schema: Annotated[int, _about(_SCHEMA)]
    stream: Annotated[str, _about(_STREAM)]
    seq: Annotated[int, _about(_SEQ)]
    time: Annotated[float, _about(_TIME)]


class ActionEvent(Record, kw_only=True, frozen=True):
    """An action's start, update or end (stream.events makes them from predictions): what the
    pipeline hands to the sinks, the event store and the logs, and the rest of an event message."""

    type: Annotated[Literal["start", "update", "end"], _about("start, update or end")]
    id: Annotated[
        str,
        _about(
            "the event's id, the same in its start, updates and end; letters, digits, `.`, `_` and `-` (safe in a URL "
            "and a file name); the key of /api/events/ID. Always sent; optional here only so that an older "
            "publisher's events still check",
            pattern=r"^[A-Za-z0-9._-]{1,64}$",
            older_may_omit=True,
        ),
    ]
    label: Annotated[str, _about("the action")]
    start_frame: Annotated[int, _about("the last frame of the action's first window")]
    start_time: Annotated[float, _about("that frame's time in the stream, s")]
    score: Annotated[float | None, _about("start: the score that started it; update: the latest")] = None
    end_frame: Annotated[int | None, _about("update and end: the last frame that showed the action")] = None
    end_time: Annotated[float | None, _about("update and end: that frame's time in the stream, s")] = None
    duration_s: Annotated[float | None, _about("update and end: end_time - start_time")] = None
    peak_score: Annotated[float | None, _about("update and end: the highest score so far")] = None
    mean_score: Annotated[float | None, _about("update and end: the mean score so far")] = None
    clip: Annotated[
        str | None,
        _about(
            "end: the MP4 recorded for the event, named by its id (complete post_s after the end, at most max_clip_s "
            "long)"
        ),
    ] = None
    snapshot: Annotated[
        str | None,
        _about(
            "start: the JPEG of the event's first frame; end: of its best-scoring frame (streams that record; a path "
            "on the recognizer's disk, as clip)"
        ),
    ] = None


class Heartbeat(Record, kw_only=True, frozen=True):
    schema: Annotated[int, _about(_SCHEMA)]
    seq: Annotated[int, _about("heartbeat sequence number")]
    time: Annotated[float, _about(_TIME)]
    interval_s: Annotated[float, _about("the next heartbeat is due this many seconds later")]
    streams: Annotated[list[str], _about("the streams this publisher serves", items={"type": "string"})]
    node: Annotated[str | None, _about("which publisher (host:pid)")] = None


KINDS: dict[str, type[Record]] = {"pred": Prediction, "status": Status, "event": Event, "heartbeat": Heartbeat}

_JSON_TYPES: dict[Any, str] = {
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    tuple: "array",
    dict: "object",
}


def required(kind: str) -> dict[str, str]:
    """{field: its JSON Schema type} for the fields a message of `kind` must have, in wire order."""
    return {name: json_type for name, json_type, _, is_required in _described(kind) if is_required}


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one kind's payload: required fields typed, others allowed."""
    properties: dict[str, dict[str, Any]] = {}
    for name, json_type, meta, _ in _described(kind):
        prop: dict[str, Any] = {"type": json_type, "description": meta.description}
        extra = meta.extra or {}
        if "items" in extra:
            prop["items"] = extra["items"]
        if "values" in extra:
            prop["additionalProperties"] = extra["values"]
        if "length" in extra:
            prop["minItems"] = prop["maxItems"] = extra["length"]
        if json_type == "string" and (enum := _literal(name)):
            prop["enum"] = enum
        if "pattern" in extra:
            prop["pattern"] = extra["pattern"]
        properties[name] = prop
    properties["schema"]["minimum"] = SCHEMA_VERSION
    topic = kind if kind == "heartbeat" else f"{kind}/<stream>"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(kind=kind),
        "title": f"lrcn-stream {topic} message, schema v{SCHEMA_VERSION}",
        "type": "object",
        "required": list(required(kind)),
        "properties": properties,
        "additionalProperties": True,
    }


def _described(kind: str) -> list[tuple[str, str, Meta, bool]]:
    """(name, JSON type, Meta, required) of each payload field of `kind`, in wire order."""
    out = []
    for record in (KINDS[kind], ActionEvent) if kind == "event" else (KINDS[kind],):
        hints = typing.get_type_hints(record, include_extras=True)
        for field in structs.fields(record):
            base, meta = typing.get_args(hints[field.name])[:2]
            out.append(
                (
                    field.name,
                    _json_type(base),
                    meta,
                    field.required and not (meta.extra or {}).get("older_may_omit", False),
                )
            )
    return out


def _json_type(annotation: Any) -> str:
    """The JSON Schema type of a field's Python type (an optional's non-None member)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        origin = typing.get_origin(annotation)
    if origin is Literal:
        return _JSON_TYPES[type(typing.get_args(annotation)[0])]
    return _JSON_TYPES[origin or annotation]


def _literal(name: str) -> list[str] | None:
    """The values of an event field that takes a fixed few (its `type`)."""
    if name not in ActionEvent.__struct_fields__:
        return None
    annotation = typing.get_args(typing.get_type_hints(ActionEvent, include_extras=True)[name])[0]
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal else None
