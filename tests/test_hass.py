"""Home Assistant over the MQTT sink, against a real Mosquitto with real paho subscribers: the
discovery configs (retained, JSON, only keys Home Assistant documents), the activity states
changing at event edges only, the snapshot's JPEG bytes, retained topics of a removed stream
cleared, and all of it from a real `lrcn serve` with a SIGHUP reload."""

from __future__ import annotations

import json
import signal
import socket
import time

import cv2
import numpy as np
import pytest

from lrcn.stream import hass
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules, EventState, Observation, finish, step
from lrcn.stream.outbox import Outbox
from lrcn.stream.settings import HomeAssistant
from lrcn.stream.sinks.mqtt import MqttSink
from lrcn.tools.evidence.mqtt_broker import MOSQUITTO, free_port, wait_until
from tests.cli import start_lrcn, stop
from tests.mqtt_subscriber import Subscriber

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (apt-get install mosquitto)")

# The keys Home Assistant documents for MQTT sensors and binary sensors (home-assistant.io,
# source/_integrations/sensor.mqtt.markdown and binary_sensor.mqtt.markdown). `platform` is left
# out on purpose: it is "only allowed and required" in device discovery, not in a config per entity.
ENTITY_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "expire_after",
    "force_update",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "payload_available",
    "payload_not_available",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
}
DOCUMENTED = {
    "sensor": ENTITY_KEYS
    | {"last_reset_value_template", "options", "suggested_display_precision", "state_class", "unit_of_measurement"},
    "binary_sensor": ENTITY_KEYS | {"off_delay", "payload_off", "payload_on"},
}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}


def check_config(platform: str, config: dict) -> None:
    """What Home Assistant requires of a discovered entity that belongs to a device."""
    assert set(config) <= DOCUMENTED[platform], set(config) - DOCUMENTED[platform]
    assert isinstance(config["state_topic"], str) and config["state_topic"], "required"
    assert config["unique_id"], "a device needs the entity's unique_id"
    assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"]
    assert not ({"availability", "availability_topic"} <= set(config)), "documented as exclusive"
    for entry in config.get("availability", []):
        assert set(entry) <= AVAILABILITY_KEYS and entry["topic"]
    assert config.get("availability_mode", "latest") in ("all", "any", "latest")
    assert config.get("qos", 0) in (0, 1, 2)
    if "options" in config:
        assert config.get("device_class") == "enum" and config["options"], "options need device_class enum"
        assert not {"state_class", "unit_of_measurement"} & set(config)


def make_sink(port: int, client_id: str, **options) -> MqttSink:
    sink = MqttSink.from_config(
        {"url": f"mqtt://127.0.0.1:{port}/lrcn", "client_id": client_id, **options}, node="test"
    )
    assert wait_until(lambda: sink.stats().connected, 20), sink.stats()
    return sink


def retained(port: int, until, topic_filter: str = "#") -> dict[str, bytes]:
    """{topic: payload} of what the broker retains under `topic_filter`, read by a new subscriber
    once `until(received)` holds and all the broker had for it has arrived (what comes live is left
    out)."""
    subscriber = Subscriber(port, topic_filter=topic_filter)
    try:
        assert subscriber.wait_for(until), subscriber.messages()
        assert subscriber.settled(), subscriber.messages()
        return {topic: payload for topic, payload, kept in subscriber.messages() if kept}
    finally:
        subscriber.close()


def jpeg_image() -> tuple[np.ndarray, bytes]:
    image = np.zeros((240, 320, 3), np.uint8)
    image[..., 0] = np.arange(320, dtype=np.uint8)[None, :]
    cv2.rectangle(image, (100, 60), (220, 180), (255, 255, 255), -1)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    return image, jpeg.tobytes()


@pytest.mark.timeout(60)
def test_discovery_configs_are_retained_json_with_only_the_keys_home_assistant_documents(broker):
    sink = make_sink(broker.port, "sink-discovery", homeassistant={"discovery_prefix": "ha/lab", "node_id": "edge-1"})
    try:
        sink.serving({"door": ("wave", "jump rope"), "yard": ("wave",), "still": None})
        assert sink.flush(10)
        got = retained(broker.port, lambda ms: len(ms) >= 11)
    finally:
        sink.close(2.0)
    configs = {topic: json.loads(payload) for topic, payload in got.items() if topic.startswith("ha/")}
    assert sorted(configs) == [
        "ha/lab/binary_sensor/edge-1/door_jump_rope/config",
        "ha/lab/binary_sensor/edge-1/door_wave/config",
        "ha/lab/binary_sensor/edge-1/yard_wave/config",
        "ha/lab/sensor/edge-1/door_activity/config",
        "ha/lab/sensor/edge-1/yard_activity/config",
    ], "a stream without events has none"
    for topic, config in configs.items():
        check_config(topic.split("/")[2], config)
        assert config["state_topic"] in got, f"{topic}: its state is retained from the start"
        for entry in config["availability"]:
            assert entry["topic"] in ("lrcn/availability", f"lrcn/{config['state_topic'].split('/')[1]}/status")
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    assert len({json.dumps(c["device"], sort_keys=True) for c in configs.values()}) == 1, "one device per recognizer"
    assert configs["ha/lab/sensor/edge-1/door_activity/config"]["options"] == ["wave", "jump rope", "idle", "unknown"]
    states = {topic: payload for topic, payload in got.items() if not topic.startswith("ha/")}
    assert states == {
        "lrcn/availability": b"online",
        "lrcn/door/activity": b"idle",
        "lrcn/yard/activity": b"idle",
        "lrcn/door/activity/wave": b"OFF",
        "lrcn/door/activity/jump_rope": b"OFF",
        "lrcn/yard/activity/wave": b"OFF",
    }
    binary = configs["ha/lab/binary_sensor/edge-1/door_jump_rope/config"]
    assert (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF") and binary["name"] == "door jump rope"


def test_the_defaults_are_the_homeassistant_prefix_and_the_host_name():
    sink = MqttSink("127.0.0.1", free_port(), homeassistant=HomeAssistant())
    try:
        assert sink.hass.discovery_prefix == "homeassistant"
        assert sink.hass.node_id == hass.sanitise(socket.gethostname().partition(".")[0])
        assert all(c.isalnum() or c in "_-" for c in sink.hass.node_id)
    finally:
        sink.close(0.2)


def predictions_and_events(rules: EventRules, labels: list[str]) -> list[tuple[str, object]]:
    """[("pred", label) or ("event", event)] in the order the pipeline sends them."""
    state, sent = EventState(), []
    for i, label in enumerate(labels):
        sent.append(("pred", label))
        state, events = step(rules, state, Observation(label, 0.9, i * 0.1, i))
        sent += [("event", event) for event in events]
    return sent + [("event", event) for event in finish(state)[1]]


@pytest.mark.timeout(60)
def test_the_activity_changes_at_event_edges_only_and_says_unknown_when_the_guard_ended_it(broker):
    labels = ["walk"] * 3 + ["wave"] * 4 + ["unknown"] * 3 + ["idle"] * 2 + ["walk"] * 5 + ["idle"] * 3 + ["wave"] * 3
    script = predictions_and_events(EventRules(min_duration_s=0.15), labels)
    live = Subscriber(broker.port, topic_filter="lrcn/door/#")
    sink = make_sink(broker.port, "sink-edges", homeassistant={"node_id": "edge"})
    try:
        outbox = Outbox([sink], node="test")
        sink.serving({"door": ("wave", "walk")})
        for kind, item in script:
            if kind == "pred":
                assert outbox.publish_prediction(
                    "door",
                    frame_index=0,
                    window=(0, 0),
                    label=item,
                    score=0.9,
                    top_k=[(item, 0.9)],
                    captured_at=time.monotonic(),
                )
            else:
                assert outbox.publish_event("door", item)
        n_events = sum(kind == "event" for kind, _ in script)
        assert live.wait_for(lambda ms: len([m for m in ms if m[0] == "lrcn/door/event"]) == n_events)
        sink.close(2.0)  # all it published is at the broker
        assert live.settled(), live.messages()
    finally:
        sink.close(2.0)
        live.close()
    expected, last = ["idle"], None
    for kind, item in script:
        if kind == "pred":
            last = item
        elif item.type == "start":
            expected.append(item.label)
        else:
            expected.append("unknown" if last == "unknown" else "idle")
    activity = [payload.decode() for _, payload, _ in live.messages("lrcn/door/activity")]
    assert activity == expected == ["idle", "walk", "idle", "wave", "unknown", "walk", "idle", "wave", "idle"]
    assert len(activity) < len(live.messages("lrcn/door/pred")), "not a message per prediction"
    for label, on in (("wave", ["OFF", "ON", "OFF", "ON", "OFF"]), ("walk", ["OFF", "ON", "OFF", "ON", "OFF"])):
        assert [p.decode() for _, p, _ in live.messages(f"lrcn/door/activity/{label}")] == on, label
    edges = [topic for topic, _, _ in live.messages() if topic in ("lrcn/door/event", "lrcn/door/activity")]
    assert edges[1:] == ["lrcn/door/event", "lrcn/door/activity"] * n_events, "each state right after its event"


@pytest.mark.timeout(60)
def test_a_snapshot_is_retained_jpeg_bytes(broker):
    image, jpeg = jpeg_image()
    sink = make_sink(broker.port, "sink-snapshot")
    try:
        assert sink.publish_snapshot("door", jpeg) and sink.flush(10)
        got = retained(broker.port, lambda ms: any(t == "lrcn/door/snapshot" for t, _, _ in ms))
    finally:
        sink.close(2.0)
    assert got["lrcn/door/snapshot"] == jpeg
    statuses_only = MqttSink("127.0.0.1", broker.port, kinds=["status"])
    try:
        assert not statuses_only.publish_snapshot("door", jpeg), "a sink without events takes no snapshot"
    finally:
        statuses_only.close(1.0)
    decoded = cv2.imdecode(np.frombuffer(got["lrcn/door/snapshot"], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).mean() < 3


@pytest.mark.timeout(90)
def test_a_removed_stream_leaves_nothing_retained_and_a_dropped_class_loses_its_sensor(broker):
    _, jpeg = jpeg_image()
    sink = make_sink(broker.port, "sink-remove", homeassistant={"node_id": "edge"})
    plain = make_sink(broker.port, "sink-plain", prefix="plain")  # no discovery: status and snapshot only
    try:
        outbox = Outbox([sink, plain], node="test")
        for each in (sink, plain):
            each.serving({"door": ("wave", "walk"), "gone": ("wave",)})
        for name in ("door", "gone"):
            outbox.publish_status(name, "connected", "ok")
            outbox.publish_event(name, {"type": "start", "label": "wave", "start_frame": 1, "start_time": 0.1})
            sink.publish_snapshot(name, jpeg)
            plain.publish_snapshot(name, jpeg)
        assert sink.flush(10) and plain.flush(10)
        before = retained(broker.port, lambda ms: len(ms) >= 18)
        assert {
            "lrcn/gone/status",
            "lrcn/gone/snapshot",
            "lrcn/gone/activity",
            "lrcn/gone/activity/wave",
            "homeassistant/sensor/edge/gone_activity/config",
            "homeassistant/binary_sensor/edge/gone_wave/config",
            "plain/gone/status",
            "plain/gone/snapshot",
        } <= set(before)
        for each in (sink, plain):
            each.serving({"door": ("wave",)})
            assert each.flush(10)
        after = retained(broker.port, lambda ms: any(t == "plain/availability" for t, _, _ in ms))
    finally:
        sink.close(2.0)
        plain.close(2.0)
    assert not [topic for topic in after if "gone" in topic], "every retained topic of the removed stream is cleared"
    assert "homeassistant/binary_sensor/edge/door_walk/config" in before
    assert "homeassistant/binary_sensor/edge/door_walk/config" not in after and "lrcn/door/activity/walk" not in after
    assert after["lrcn/door/activity"] == b"wave" and after["lrcn/door/activity/wave"] == b"ON", (
        "the kept stream is kept"
    )
    assert {
        "lrcn/door/status",
        "lrcn/door/snapshot",
        "plain/door/status",
        "plain/door/snapshot",
        "homeassistant/sensor/edge/door_activity/config",
    } <= set(after)


@pytest.mark.parametrize(
    "options, says",
    [
        ({"homeassistant": {"node_id": "edge box"}}, "homeassistant.node_id must be letters, digits, _ and -"),
        ({"homeassistant": {"discovery_prefix": "ha/#"}}, "homeassistant.discovery_prefix must be topic levels"),
        ({"homeassistant": {"bogus": 1}}, "unknown key 'bogus' in homeassistant (known: discovery_prefix, node_id)"),
        ({"homeassistant": {"node_id": 3}}, "homeassistant.node_id"),
        ({"homeassistant": "yes"}, "'homeassistant' has the wrong type"),
        ({"homeassistant": True, "kinds": ["status"]}, "homeassistant needs the event kind"),
    ],
)
def test_bad_home_assistant_options_are_one_line_errors(options, says):
    with pytest.raises(LrcnError) as err:
        MqttSink.from_config({"host": "127.0.0.1", "port": free_port(), **options}, node="test")
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


DEPLOYMENT = """
endpoint = "tcp://127.0.0.1:{endpoint}"
{streams}
[[sink]]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker}/lrcn"
homeassistant = {{ node_id = "edge" }}
"""
STREAM = """
[[stream]]
id = "{name}"
source = "{video}"
loop = true
events = {{ min_score = 0.0 }}
"""


def still_and_moving(path, seconds: float = 6.0, fps: int = 25, phase_s: float = 1.5):
    """A video that stands still and moves in turns of `phase_s`: the idle gate ends each event
    and motion starts the next, whatever an untrained model says."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (128, 96))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    x = 10
    for i in range(int(seconds * fps)):
        if int(i / (phase_s * fps)) % 2:
            x = 10 + (x + 3 - 10) % 70
        frame = np.full((96, 128, 3), 60, np.uint8)
        frame[28:68, x : x + 40] = texture
        writer.write(frame)
    writer.release()
    return path


def write_deployment(path, endpoint: int, broker_port: int, video, names) -> None:
    streams = "".join(STREAM.format(name=name, video=video) for name in names)
    path.write_text(DEPLOYMENT.format(endpoint=endpoint, broker=broker_port, streams=streams))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_serve_announces_follows_event_edges_and_a_reload_clears_a_removed_stream(broker, exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    video = still_and_moving(tmp_path / "turns.avi")
    config, endpoint = tmp_path / "cameras.toml", free_port()
    write_deployment(config, endpoint, broker.port, video, ["keep", "drop"])
    live = Subscriber(broker.port, topic_filter="#")
    process = start_lrcn("serve", bundle, "--config", config)
    try:
        events = lambda name: [m for m in live.messages(f"lrcn/{name}/event")]
        assert live.wait_for(lambda ms: len(events("keep")) >= 4 and events("drop"), 60), (
            live.messages()[-5:],
            process.poll(),
        )
        during = retained(broker.port, lambda ms: any("drop_activity" in t for t, _, _ in ms))
        assert {"homeassistant/sensor/edge/drop_activity/config", "lrcn/drop/status", "lrcn/drop/activity"} <= set(
            during
        )
        write_deployment(config, endpoint, broker.port, video, ["keep"])
        process.send_signal(signal.SIGHUP)
        last_cleared = "lrcn/drop/activity/wave_one_hand"
        assert live.wait_for(lambda ms: (last_cleared, b"", False) in ms, 30), "the removed stream is cleared"
        after = retained(broker.port, lambda ms: any("keep_activity" in t for t, _, _ in ms))
        count = len(events("keep"))
        assert live.wait_for(lambda ms: len(events("keep")) >= count + 2, 60), "keep goes on with its events"
    finally:
        _, err = stop(process)
        live.wait_for(lambda ms: ("lrcn/availability", b"offline", False) in ms, 10)
        live.close()
    assert process.returncode == 0, err
    assert not [topic for topic in after if "drop" in topic], sorted(after)
    seed_classes = ("bend", "jumping_jack", "wave_one_hand")
    configs = [t for t in after if t.startswith("homeassistant/")]
    assert sorted(configs) == sorted(
        ["homeassistant/sensor/edge/keep_activity/config"]
        + [f"homeassistant/binary_sensor/edge/keep_{c}/config" for c in seed_classes]
    )
    for topic in configs:
        check_config(topic.split("/")[1], json.loads(after[topic]))

    expected, last = ["idle"], None
    for topic, payload, _ in live.messages():
        if topic == "lrcn/keep/pred":
            last = json.loads(payload)["label"]
        elif topic == "lrcn/keep/event" and json.loads(payload)["type"] != "update":
            event = json.loads(payload)
            expected.append(event["label"] if event["type"] == "start" else "unknown" if last == "unknown" else "idle")
    activity = [payload.decode() for _, payload, _ in live.messages("lrcn/keep/activity")]
    print(f"\nkeep: {len(activity)} activity states for {len(live.messages('lrcn/keep/pred'))} predictions: {activity}")
    assert activity == expected, "the activity changes at each event start and end, and only there"
    assert len(activity) < len(live.messages("lrcn/keep/pred")) / 2
    assert activity[-1] in ("idle", "unknown"), "the last event ended at shutdown"
