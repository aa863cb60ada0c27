import json

import pytest

from lrcn.stream.messages import (
    SCHEMA_VERSION,
    MessageError,
    decode,
    encode_heartbeat,
    encode_prediction,
    encode_status,
)


def prediction(**overrides):
    fields = {
        "seq": 3,
        "frame_index": 41,
        "window": (26, 41),
        "label": "wave",
        "score": 0.875,
        "top_k": [("wave", 0.875), ("walk", 0.1)],
        "capture_time": 1_700_000_000.25,
        "publish_time": 1_700_000_000.27,
    }
    fields.update(overrides)
    return encode_prediction("cam-0", **fields)


def with_payload(frames, **changes):
    payload = json.loads(frames[1])
    payload.update(changes)
    return [frames[0], json.dumps(payload).encode()]


def test_prediction_round_trip_keeps_every_field():
    frames = prediction(probabilities={"wave": 0.875, "walk": 0.1, "grow": 0.025})
    assert frames[0] == b"pred/cam-0"
    message = decode(frames)
    assert (message.kind, message.stream, message.topic) == ("pred", "cam-0", "pred/cam-0")
    p = message.payload
    assert p["schema"] == SCHEMA_VERSION == 1
    assert (p["seq"], p["frame_index"], p["window"]) == (3, 41, [26, 41])
    assert (p["label"], p["score"]) == ("wave", 0.875)
    assert p["top_k"] == [["wave", 0.875], ["walk", 0.1]]
    assert p["latency_ms"] == pytest.approx(20.0, abs=1e-3)
    assert p["capture_time"] == 1_700_000_000.25
    assert p["probabilities"]["grow"] == 0.025


def test_probabilities_are_optional_and_latency_can_come_from_a_monotonic_clock():
    payload = decode(prediction(latency_ms=12.5)).payload
    assert "probabilities" not in payload
    assert payload["latency_ms"] == 12.5


def test_status_and_heartbeat_round_trip():
    status = decode(
        encode_status("cam-0", seq=0, state="lost", reason="stream\nended", stats={"dropped": 4}, publish_time=5.0)
    )
    assert status.topic == "status/cam-0" and status.kind == "status"
    assert status.payload["state"] == "lost"
    assert status.payload["reason"] == "stream ended", "reasons are one line"
    assert status.payload["stats"] == {"dropped": 4}
    beat = decode(encode_heartbeat(seq=9, publish_time=6.0, interval_s=1.0, streams=["cam-0"], node="box:1"))
    assert (beat.kind, beat.stream, beat.topic) == ("heartbeat", None, "heartbeat")
    assert beat.payload["streams"] == ["cam-0"] and beat.payload["seq"] == 9


@pytest.mark.parametrize(
    "frames, complaint",
    [
        ([b"pred/cam-0"], "expected 2 frames"),
        ([b"pred/cam-0", b"{not json"], "not UTF-8 JSON"),
        ([b"pred/cam-0", b"\xff\xfe"], "not UTF-8 JSON"),
        ([b"Preds/cam-0", prediction()[1]], "malformed topic"),
        ([b"pred/", prediction()[1]], "malformed topic"),
        ([b"heartbeat/x", prediction()[1]], "malformed topic"),
        ([b"event/cam 0", prediction()[1]], "malformed topic"),
        ([b"pred/cam-0", b"[1, 2]"], "not a JSON object"),
        ([b"pred/other", prediction()[1]], "differs from the topic"),
    ],
)
def test_malformed_frames_are_rejected_with_the_reason(frames, complaint):
    with pytest.raises(MessageError, match=complaint):
        decode(frames)


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"label": None}, "'label' has the wrong type"),
        ({"seq": True}, "'seq' has the wrong type"),
        ({"score": "high"}, "'score' has the wrong type"),
        ({"schema": 0}, "schema version 0"),
        ({"window": [5, 1]}, "window must be"),
        ({"window": [1]}, "window must be"),
        ({"top_k": [["wave"]]}, "top_k entries"),
    ],
)
def test_payload_fields_are_validated(changes, complaint):
    with pytest.raises(MessageError, match=complaint):
        decode(with_payload(prediction(), **changes))


def test_a_missing_field_is_named():
    payload = json.loads(prediction()[1])
    del payload["latency_ms"]
    with pytest.raises(MessageError, match="missing field 'latency_ms'"):
        decode([b"pred/cam-0", json.dumps(payload).encode()])


def test_encoding_refuses_a_stream_id_that_would_break_topic_filtering_and_non_finite_scores():
    with pytest.raises(MessageError, match="stream id"):
        encode_status("cam 0/x", seq=0, state="lost", publish_time=0.0)
    with pytest.raises(MessageError, match="finite"):
        prediction(score=float("nan"))
