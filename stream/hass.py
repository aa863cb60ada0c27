"""Home Assistant over MQTT: the discovery configs and the retained activity states. Pure functions.

Per stream (an MQTT sink with `homeassistant` on, docs/guide/integrations.md):

    <discovery>/sensor/<node>/<stream>_activity/config           an enum sensor: the stream's activity
    <discovery>/binary_sensor/<node>/<stream>_<label>/config     one per watched class: ON while it happens
    <prefix>/<stream>/activity                                   retained: the label, `idle` or `unknown`
    <prefix>/<stream>/activity/<label>                           retained: ON or OFF

The activity changes only at event edges, never per prediction: the event's label at its start;
at its end `idle`, or `unknown` when the open-set guard (or the score threshold) ended it. Every
entity belongs to one device per recognizer (the node id) and is available while the recognizer's
`<prefix>/availability` says `online` and its stream's retained status says `connected`.

>>> layout = Layout("lrcn", "homeassistant", "edge_1", qos=1)
>>> sorted(discovery(layout, "door", ("wave", "jump rope")))
['homeassistant/binary_sensor/edge_1/door_jump_rope/config', \
'homeassistant/binary_sensor/edge_1/door_wave/config', 'homeassistant/sensor/edge_1/door_activity/config']
>>> activity_edge(layout, "door", ("wave",), {"type": "start", "label": "wave"}, "wave")
[('lrcn/door/activity', b'wave'), ('lrcn/door/activity/wave', b'ON')]
>>> activity_edge(layout, "door", ("wave",), {"type": "end", "label": "wave"}, "unknown")
[('lrcn/door/activity', b'unknown'), ('lrcn/door/activity/wave', b'OFF')]
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lrcn.stream.events import IDLE, UNKNOWN, EventRules

ON, OFF = b"ON", b"OFF"
MANUFACTURER = "lrcn-stream"


def sanitise(text: str) -> str:
    """`text` as a Home Assistant node or object id: runs of anything but [a-zA-Z0-9_-] become `_`.

    >>> sanitise("edge box.local"), sanitise("jump-rope"), sanitise("..")
    ('edge_box_local', 'jump-rope', '_')
    """
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_") or "_"


def default_node_id() -> str:
    """This machine's host name, sanitised: the same recognizer gets the same entities after a restart."""
    return sanitise(socket.gethostname().partition(".")[0])


@dataclass(frozen=True)
class Layout:
    """Where an MQTT sink puts things: its topic prefix, the discovery prefix, the node id, its qos."""

    prefix: str
    discovery_prefix: str
    node_id: str
    qos: int = 1
    version: str = ""
    stream_status: bool = True  # each stream's status is retained on the broker, so it can say availability

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    def status(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/status"

    def activity(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/activity"

    def snapshot(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/snapshot"


def watched_classes(rules: EventRules | None, classes: Sequence[str]) -> tuple[str, ...] | None:
    """The classes whose events a stream reports: its rules' `classes`, else all the model's but the
    ignored ones (never `idle` nor `unknown`, which start no event); None for a stream without events.

    >>> watched_classes(EventRules(ignore=("walk",)), ("wave", "walk", "idle")), watched_classes(None, ("wave",))
    (('wave',), None)
    """
    if rules is None:
        return None
    chosen = rules.classes or tuple(c for c in classes if c not in rules.ignore)
    return tuple(c for c in chosen if c not in (IDLE, UNKNOWN))


def object_ids(labels: Sequence[str]) -> dict[str, str]:
    """{label: its id in topics}, sanitised and made distinct in the labels' order.

    >>> object_ids(["a b", "a_b", "wave"])
    {'a b': 'a_b', 'a_b': 'a_b_2', 'wave': 'wave'}
    """
    ids: dict[str, str] = {}
    for label in labels:
        base = candidate = sanitise(label)
        n = 2
        while candidate in ids.values():
            candidate, n = f"{base}_{n}", n + 1
        ids[label] = candidate
    return ids


def label_topic(layout: Layout, stream: str, object_id: str) -> str:
    return f"{layout.activity(stream)}/{object_id}"


def _device(layout: Layout) -> dict:
    device = {
        "identifiers": [f"lrcn_{layout.node_id}"],
        "name": f"lrcn {layout.node_id}",
        "manufacturer": MANUFACTURER,
        "model": "activity recognizer",
    }
    return {**device, "sw_version": layout.version} if layout.version else device


def _common(layout: Layout, stream: str, object_id: str) -> dict:
    """The keys every entity of a stream shares: its id, device and availability."""
    connected = "{{ 'online' if value_json.state == 'connected' else 'offline' }}"
    availability = [{"topic": layout.availability, "payload_available": "online", "payload_not_available": "offline"}]
    if layout.stream_status:
        availability.append({"topic": layout.status(stream), "value_template": connected})
    return {
        "unique_id": f"lrcn_{layout.node_id}_{stream}_{object_id}",
        "device": _device(layout),
        "availability": availability,
        "availability_mode": "all",
        "qos": layout.qos,
    }


def discovery(layout: Layout, stream: str, labels: Sequence[str]) -> dict[str, dict]:
    """{config topic: config} of a stream's activity sensor and a binary sensor per watched label."""
    sensor = {
        "name": f"{stream} activity",
        "state_topic": layout.activity(stream),
        "device_class": "enum",
        "options": list(dict.fromkeys([*labels, IDLE, UNKNOWN])),
        "icon": "mdi:run",
        **_common(layout, stream, "activity"),
    }
    configs = {f"{layout.discovery_prefix}/sensor/{layout.node_id}/{stream}_activity/config": sensor}
    for label, object_id in object_ids(labels).items():
        configs[f"{layout.discovery_prefix}/binary_sensor/{layout.node_id}/{stream}_{object_id}/config"] = {
            "name": f"{stream} {label}",
            "state_topic": label_topic(layout, stream, object_id),
            "payload_on": ON.decode(),
            "payload_off": OFF.decode(),
            "icon": "mdi:run",
            **_common(layout, stream, object_id),
        }
    return configs


def idle_states(layout: Layout, stream: str, labels: Sequence[str]) -> list[tuple[str, bytes]]:
    """A stream's states with no event open: `idle`, and every label OFF."""
    states = [(label_topic(layout, stream, object_id), OFF) for object_id in object_ids(labels).values()]
    return [(layout.activity(stream), IDLE.encode())] + states


def announced(layout: Layout, stream: str, labels: Sequence[str]) -> list[tuple[str, bytes]]:
    """What a stream's discovery publishes, retained: its configs, then its idle states."""
    configs = [(topic, json.dumps(config).encode()) for topic, config in discovery(layout, stream, labels).items()]
    return configs + idle_states(layout, stream, labels)


def retained_topics(layout: Layout, stream: str, labels: Sequence[str] | None) -> list[str]:
    """Every retained topic of a stream (labels None: it has no discovery)."""
    ours = [layout.status(stream), layout.snapshot(stream)]
    if labels is None:
        return ours
    return ours + [topic for topic, _ in announced(layout, stream, labels)]


def reconcile(
    layout: Layout, before: Mapping[str, Sequence[str] | None], after: Mapping[str, Sequence[str] | None]
) -> list[tuple[str, bytes]]:
    """The retained messages that take the broker from the streams `before` to those `after`
    ({stream: its watched labels, None without discovery}): every retained topic a stream no
    longer has is cleared (an empty payload: all of a removed stream's, status and snapshot
    included); an added stream is announced; a changed one gets its configs again, and idle
    states only on the topics new to it (the others keep what its events set).

    >>> layout = Layout("lrcn", "ha", "n")
    >>> reconcile(layout, {"a": ("wave",), "b": None}, {"a": ("wave",)})
    [('lrcn/b/status', b''), ('lrcn/b/snapshot', b'')]
    >>> [(t, p) for t, p in reconcile(layout, {"a": ("wave", "walk")}, {"a": ("wave",)}) if not t.endswith("config")]
    [('lrcn/a/activity/walk', b'')]
    """
    messages: list[tuple[str, bytes]] = []
    for stream, old in before.items():
        if stream not in after or after[stream] != old:
            keep = set(retained_topics(layout, stream, after[stream])) if stream in after else set()
            messages += [(topic, b"") for topic in retained_topics(layout, stream, old) if topic not in keep]
    for stream, labels in after.items():
        if labels is None or (stream in before and before[stream] == labels):
            continue
        had = set(retained_topics(layout, stream, before[stream])) if stream in before else set()
        configs = [(topic, json.dumps(config).encode()) for topic, config in discovery(layout, stream, labels).items()]
        messages += configs + [
            (topic, payload) for topic, payload in idle_states(layout, stream, labels) if topic not in had
        ]
    return messages


def activity_edge(
    layout: Layout, stream: str, labels: Sequence[str], event: Mapping, last_label: str | None
) -> list[tuple[str, bytes]]:
    """The retained states an event message sets: at a start the label (and its binary sensor ON);
    at an end `idle`, or `unknown` when the prediction that ended it (`last_label`) was `unknown`;
    nothing for an update."""
    kind, label = event.get("type"), event.get("label")
    object_id = object_ids(labels).get(label) if isinstance(label, str) else None
    if kind == "start":
        state, switch = str(label), ON
    elif kind == "end":
        state, switch = (UNKNOWN if last_label == UNKNOWN else IDLE), OFF
    else:
        return []
    edge = [(layout.activity(stream), state.encode())]
    return edge + ([(label_topic(layout, stream, object_id), switch)] if object_id is not None else [])
