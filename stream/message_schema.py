"""The fields of every schema v1 message, written once: `stream.messages` checks received
messages against the required ones, and `json_schema(kind)` makes the JSON Schema files in
docs/schemas/ (`python -m lrcn.tools.evidence.schemas` writes them; a test fails when they differ).

>>> schema = json_schema("heartbeat")
>>> schema["required"], schema["properties"]["interval_s"]["type"]
(['schema', 'seq', 'time', 'interval_s', 'streams'], 'number')
"""
from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1
SCHEMA_ID = "urn:lrcn-stream:schema:v1:{kind}"


@dataclass(frozen=True)
class Field:
    name: str
    type: str            # a JSON Schema type: integer, number, string, array, object
    meaning: str
    required: bool = True
    items: dict | None = None        # arrays: the schema of an item
    values: dict | None = None       # objects: the schema of every property (additionalProperties)
    enum: tuple | None = None
    length: int | None = None        # arrays of a fixed length
    pattern: str | None = None       # strings: a regular expression they match


_HEAD = (Field("schema", "integer", f"the schema version, {SCHEMA_VERSION}; a newer one only adds fields and topics"),
         Field("stream", "string", "the stream id, equal to the topic's suffix"),
         Field("seq", "integer", "per-topic sequence number from 0 on each publisher start; a gap means messages "
                                 "were shed on the way"))
_NUMBER_PAIR = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "minItems": 2, "maxItems": 2}

FIELDS: dict[str, tuple[Field, ...]] = {
    "pred": _HEAD + (
        Field("frame_index", "integer", "index of the newest frame the prediction used, from the source's first frame"),
        Field("window", "array", "[first, last] frame indices the prediction covers",
              items={"type": "integer", "minimum": 0}, length=2),
        Field("label", "string", "the top class; `idle` when the window's motion is under the stream's idle_motion; "
                                 "`unknown` below the stream's min_score or when the window's novelty is over the "
                                 "threshold"),
        Field("score", "number", "the top class's probability, 0..1"),
        Field("top_k", "array", "the best classes with their probabilities, highest first", items=_NUMBER_PAIR),
        Field("capture_time", "number", "when the newest frame was captured, s since the epoch (wall clock)"),
        Field("publish_time", "number", "when the message was sent, s since the epoch (wall clock)"),
        Field("latency_ms", "number", "capture to publish, ms, on the publisher's monotonic clock"),
        Field("stream_time", "number", "the newest frame's presentation time in its stream, s", required=False),
        Field("probabilities", "object", "every class's probability", required=False, values={"type": "number"}),
        Field("novelty", "number", "the window's open-set score: how far its mean encoder features are from the "
                                   "training windows (higher: less like them); only from bundles with novelty.npz",
              required=False),
        Field("motion", "number", "the window's motion: the lower quartile of its frames' mean optical flow, pixels "
                                  "at the model's input size; only from streams that compute flow (idle_motion on)",
              required=False),
    ),
    "status": _HEAD + (
        Field("state", "string", "the stream's state: connecting, connected, lost, reconnecting, failed, ended, "
                                 "stopped, degraded (connected, but far too few predictions)"),
        Field("reason", "string", "one line of detail, may be empty"),
        Field("time", "number", "when it was published, s since the epoch (wall clock)"),
        Field("stats", "object", "counters at that moment; names may grow"),
    ),
    "event": _HEAD + (
        Field("time", "number", "when it was published, s since the epoch (wall clock)"),
        Field("type", "string", "start, update or end", enum=("start", "update", "end")),
        Field("id", "string", "the event's id, the same in its start, updates and end; letters, digits, `.`, `_` "
                              "and `-` (safe in a URL and a file name); the key of /api/events/ID. Always sent; optional "
                              "here only so that an older publisher's events still check", required=False, pattern=r"^[A-Za-z0-9._-]{1,64}$"),
        Field("label", "string", "the action"),
        Field("start_frame", "integer", "the last frame of the action's first window"),
        Field("start_time", "number", "that frame's time in the stream, s"),
        Field("score", "number", "start: the score that started it; update: the latest", required=False),
        Field("end_frame", "integer", "update and end: the last frame that showed the action", required=False),
        Field("end_time", "number", "update and end: that frame's time in the stream, s", required=False),
        Field("duration_s", "number", "update and end: end_time - start_time", required=False),
        Field("peak_score", "number", "update and end: the highest score so far", required=False),
        Field("mean_score", "number", "update and end: the mean score so far", required=False),
        Field("clip", "string", "end: the MP4 recorded for the event, named by its id (complete post_s after the "
                                "end, at most max_clip_s long)", required=False),
        Field("snapshot", "string", "start: the JPEG of the event's first frame; end: of its best-scoring frame "
                                    "(streams that record; a path on the recognizer's disk, as clip)", required=False),
    ),
    "heartbeat": (
        Field("schema", "integer", _HEAD[0].meaning),
        Field("seq", "integer", "heartbeat sequence number"),
        Field("time", "number", "when it was published, s since the epoch (wall clock)"),
        Field("interval_s", "number", "the next heartbeat is due this many seconds later"),
        Field("streams", "array", "the streams this publisher serves", items={"type": "string"}),
        Field("node", "string", "which publisher (host:pid)", required=False),
    ),
}


def json_schema(kind: str) -> dict:
    """The JSON Schema (2020-12) of one kind's payload: required fields typed, others allowed."""
    properties = {}
    for field in FIELDS[kind]:
        prop: dict[str, object] = {"type": field.type, "description": field.meaning}
        if field.items is not None:
            prop["items"] = field.items
        if field.values is not None:
            prop["additionalProperties"] = field.values
        if field.length is not None:
            prop["minItems"] = prop["maxItems"] = field.length
        if field.enum is not None:
            prop["enum"] = list(field.enum)
        if field.pattern is not None:
            prop["pattern"] = field.pattern
        properties[field.name] = prop
    properties["schema"]["minimum"] = SCHEMA_VERSION
    topic = kind if kind == "heartbeat" else f"{kind}/<stream>"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID.format(kind=kind),
            "title": f"lrcn-stream {topic} message, schema v{SCHEMA_VERSION}", "type": "object",
            "required": [f.name for f in FIELDS[kind] if f.required], "properties": properties,
            "additionalProperties": True}
