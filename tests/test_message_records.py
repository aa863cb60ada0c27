"""The typed message records encode to the same bytes as the hand-written encoders they replaced:
tests/data/messages_v1_wire.json holds what those encoders sent for the calls below (written once by
the old code, not by the code under test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrcn.stream import messages
from lrcn.stream.message_schema import KINDS, ActionEvent, json_schema

WIRE = json.loads((Path(__file__).parent / "data" / "messages_v1_wire.json").read_text(encoding="utf-8"))
CASES = [
    (
        "prediction",
        dict(
            stream="cam0",
            seq=0,
            frame_index=41,
            window=(26, 41),
            label="wave",
            score=0.9,
            top_k=[("wave", 0.9), ("walk", 0.1)],
            capture_time=100.0,
            publish_time=100.02,
        ),
    ),
    (
        "prediction",
        dict(
            stream="door.1",
            seq=7,
            frame_index=1200,
            window=[1185, 1200],
            label="café ✓",
            score=0.123456789,
            top_k=[("café ✓", 0.123456789), ("walk", 1e-07)],
            capture_time=1765000000.1234567,
            publish_time=1765000000.2,
            latency_ms=75.55555,
            probabilities={"café ✓": 0.5, "walk": 2.5e-05},
            stream_time=48.0000004,
            novelty=1.234567,
            motion=0.00004,
        ),
    ),
    (
        "prediction",
        dict(
            stream="x",
            seq=3,
            frame_index=0,
            window=(0, 0),
            label="unknown",
            score=1,
            top_k=[],
            capture_time=5,
            publish_time=5,
            stream_time=0,
            novelty=12,
            motion=3,
        ),
    ),
    (
        "status",
        dict(
            stream="cam0",
            seq=2,
            state="lost",
            reason="  read  failed\n again ",
            publish_time=1765000000.5,
            stats={"frames": 10, "fps": 7.25, "note": "é"},
        ),
    ),
    ("status", dict(stream="cam0", seq=0, state="connecting", publish_time=3.0)),
    (
        "event",
        dict(
            stream="cam0",
            seq=0,
            publish_time=1765000001.0000001,
            event={
                "type": "start",
                "id": "1765-ab",
                "label": "wave",
                "start_frame": 41,
                "start_time": 1.6,
                "score": 0.9123456789,
            },
        ),
    ),
    (
        "event",
        dict(
            stream="cam0",
            seq=4,
            publish_time=1765000009.0,
            event={
                "type": "start",
                "id": "e1",
                "label": "wave",
                "start_frame": 41,
                "start_time": 1.6,
                "score": 0.9,
                "snapshot": "/var/lib/lrcn/snap/e1.jpg",
            },
        ),
    ),
    ("heartbeat", dict(seq=9, publish_time=1765000002.25, interval_s=1.0, streams=["cam0", "door.1"], node="box:12")),
    ("heartbeat", dict(seq=0, publish_time=2.0, interval_s=5, streams=())),
]


@pytest.mark.parametrize(("case", "wire"), list(zip(CASES, WIRE, strict=True)), ids=[c[0] for c in CASES])
def test_records_encode_the_bytes_the_old_encoders_sent(case, wire):
    kind, call = case
    call = dict(call)
    encode = getattr(messages, f"encode_{kind}")
    frames = encode(**call) if kind == "heartbeat" else encode(call.pop("stream"), **call)
    assert [frame.decode("utf-8") for frame in frames] == wire
    assert messages.decode(frames).payload == json.loads(wire[1])


def test_every_payload_field_is_a_field_of_its_kinds_record():
    for topic, payload in WIRE:
        kind = topic.partition("/")[0]
        properties = json_schema(kind)["properties"]
        assert list(json.loads(payload)) == [name for name in properties if name in json.loads(payload)]
    assert set(KINDS) == {"pred", "status", "event", "heartbeat"}


def test_an_update_and_an_end_carry_the_same_fields_and_values_with_type_first():
    """The old encoders sent an update's and an end's `type` (and an update's `score`) after the
    summary fields, where a dict spread put them; the record sends its fields in one order, a
    start's. JSON objects have no order, so readers see the same message; only the bytes' order differs."""
    old = json.loads((Path(__file__).parent / "data" / "messages_v1_event_wire.json").read_text(encoding="utf-8"))
    update = ActionEvent(
        type="update",
        id="e1",
        label="wave",
        start_frame=41,
        start_time=1.6,
        score=0.8812345,
        end_frame=60,
        end_time=2.5333333,
        duration_s=0.933333,
        peak_score=0.95,
        mean_score=0.871234,
    )
    end = ActionEvent(
        type="end",
        id="e1",
        label="wave",
        start_frame=41,
        start_time=1.6,
        end_frame=70,
        end_time=2.9,
        duration_s=1.3,
        peak_score=0.95,
        mean_score=0.85,
        clip="clips/e1.mp4",
        snapshot="/s/e1.jpg",
    )
    for seq, event, (topic, payload) in ((5, update, old[0]), (6, end, old[1])):
        frames = messages.encode_event("cam0", seq=seq, event=event, publish_time=1765000010.5)
        assert frames[0].decode() == topic
        new, was = json.loads(frames[1]), json.loads(payload)
        assert new == was and list(new)[4] == "type"
        assert messages.decode(frames).payload == was
