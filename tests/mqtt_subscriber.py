"""An MQTT subscriber on a real broker that keeps every message, for the MQTT sink tests."""

import threading
import uuid

import paho.mqtt.client as mqtt

from tests.live_servers import wait_until

MARKER = "subscriber-settled-"  # the last level of a `settled` marker's topic


class Subscriber:
    """A paho subscriber to `<prefix>/#` at qos 1 that records (topic, payload, retain). With
    `session` (a fixed client id) it keeps a persistent session and subscribes only when the broker
    has none, so messages queued for it across a broker restart or while it is away arrive."""

    def __init__(
        self,
        port: int,
        *,
        prefix: str = "lrcn",
        session: str | None = None,
        tls_ca: str | None = None,
        username: str | None = None,
        password: str | None = None,
        topic_filter: str | None = None,
    ):
        self.received: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._arrived_markers: set[str] = set()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=session or "",
            clean_session=session is None,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.filter = topic_filter or f"{prefix}/#"
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(20), "the subscriber did not subscribe within 20 s"

    def _on_connect(self, client, userdata, flags, reason, properties):
        if not reason.is_failure and not flags.session_present:
            client.subscribe(self.filter, qos=1)
        elif flags.session_present:
            self.subscribed.set()

    def _on_message(self, client, userdata, message):
        with self._lock:
            if message.topic.rsplit("/", 1)[-1].startswith(MARKER):
                self._arrived_markers.add(message.topic)
            else:
                self.received.append((message.topic, bytes(message.payload), bool(message.retain)))

    def messages(self, topic: str | None = None) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.received if topic is None or m[0] == topic]

    def wait_for(self, predicate, timeout_s: float = 20.0) -> bool:
        return wait_until(lambda: predicate(self.messages()), timeout_s, 0.02)

    def settled(self, timeout_s: float = 20.0) -> bool:
        """Wait until everything the broker holds for this subscriber so far has arrived (the retained
        state sent on subscribing, whatever publishers' messages the broker has taken in): a marker
        this client publishes at qos 1 to a topic it is subscribed to comes after them, as the broker
        sends one client's messages in order. Markers (any subscriber's) are left out of `messages()`."""
        assert self.filter.endswith("#") and "+" not in self.filter, "a marker topic needs a filter ending in #"
        marker = self.filter[:-1] + MARKER + uuid.uuid4().hex
        self.client.publish(marker, b"", qos=1)
        return wait_until(lambda: marker in self._arrived_markers, timeout_s, 0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
