"""The MQTT sink: publishes every message to an MQTT broker with paho-mqtt, beside or instead of ZeroMQ.

Topics (the payload is the message's schema v1 JSON, byte for byte what ZeroMQ sends):

    <prefix>/<stream>/pred      predictions
    <prefix>/<stream>/status    state changes, retained: a new subscriber gets each stream's latest
    <prefix>/<stream>/event     event starts, updates and ends
    <prefix>/heartbeat          heartbeats
    <prefix>/availability       `online` on every (re)connect, `offline` on a clean close and, as the
                                last will, when the broker loses the connection; retained, qos 1
    <prefix>/<stream>/snapshot  the event snapshot, JPEG bytes, retained (`publish_snapshot`)

With `homeassistant` (stream.hass): Home Assistant discovery configs and the retained activity
states `<prefix>/<stream>/activity` (the label, `idle` or `unknown`, set at event edges only) and
`<prefix>/<stream>/activity/<label>` (ON or OFF). A stream that a reload removes has its retained
topics cleared (status, snapshot and, with discovery, its configs and states).

Options (a [[sink]] table with `type = "mqtt"`, or `--mqtt URL`): `url`
(`mqtt://[user:pass@]host[:1883][/prefix]` or `mqtts://host[:8883][/prefix]`) or `host` and
`port`; `prefix` (default "lrcn"); `qos` (0, 1 or 2, default 1); `retain_status` (default true);
`buffer` (messages held while the broker is away, default 10000); `client_id` (default
`lrcn-<node>`: give each sink its own when two share a broker and a node); `keepalive_s` (30);
`username`, `password`; `tls` (implied by mqtts://), `ca_file` (default: the system's CAs),
`cert_file`, `key_file` (a client certificate), `tls_insecure` (skip the hostname check);
`kinds` (default all: ["pred", "status", "event", "heartbeat"]; ["status", "event"] spares the
broker and this process a message per frame); `homeassistant` (default off: `true`, or a table of
stream.settings.HomeAssistant's keys, `discovery_prefix` and `node_id`).

Delivery. The sink never blocks the caller: paho connects and reconnects (1 s, doubling to 30 s)
in its own thread, so a broker that is down at start is not an error. While not connected,
messages wait in a buffer of `buffer` messages; when it is full the oldest is dropped (counted
in `dropped`). On each connect the sink publishes `online`, then the backlog in order, and only
then takes new messages straight to paho, whose own queue of unacknowledged messages is bounded
by `buffer` too (a message it refuses is dropped).

At qos 1 and 2, messages the broker had not acknowledged when the connection went are taken back
from paho and re-sent first on the next connection, so a broker restart loses nothing within the
bound; one that reached the broker just before the connection went can arrive twice (a new
session means qos 2 is exactly-once only within a connection). At qos 0 nothing is acknowledged:
what paho had written to, or queued for, a dying connection is lost without a count; only
messages sent after the sink noticed the loss are buffered.

`stats()`: `sent` (taken by paho on a live connection, less what came back to be re-sent),
`dropped`, `buffered`, `connected`, `connects`, `failed` (connection attempts refused or failed,
connections lost, publishes paho refused with an error) and `problem` (the latest of those).
On close, what is still unsent or unacknowledged moves to `dropped`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec
import paho.mqtt.client as mqtt

from lrcn.stream import __version__, hass, messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import SinkStats
from lrcn.stream.outbox import default_node
from lrcn.stream.settings import STREAM_ID_RULE, HomeAssistant
from lrcn.stream.sinks import KINDS, OptionTypes, Outgoing, Sink, check_keys, check_kinds, register

log = logging.getLogger("lrcn.sinks.mqtt")

OPTION_TYPES: OptionTypes = {
    "url": str,
    "host": str,
    "port": int,
    "prefix": str,
    "qos": int,
    "retain_status": bool,
    "buffer": int,
    "client_id": str,
    "keepalive_s": int,
    "username": str,
    "password": str,
    "tls": bool,
    "ca_file": str,
    "cert_file": str,
    "key_file": str,
    "tls_insecure": bool,
    "kinds": list,
    "homeassistant": (bool, dict),
}
SCHEMES = {"mqtt": False, "mqtts": True}  # scheme: TLS
RECONNECT_MAX_S = 30


def _check_file(path: str | None, key: str) -> str | None:
    if path is not None and not Path(path).is_file():
        raise LrcnError(f"mqtt sink: {key} {path!r} does not exist (expected a PEM file)")
    return path


def _check_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
        raise LrcnError(f"mqtt sink: bad topic prefix {prefix!r} (expected levels like lrcn or site/lrcn, no + or #)")
    return prefix


def parse_url(url: str) -> dict:
    """The options a mqtt:// or mqtts:// URL stands for; LrcnError saying what is wrong."""
    expected = "expected mqtt://[user:pass@]host[:port][/prefix] or mqtts://..."
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise LrcnError(f"mqtt sink: URL scheme {parts.scheme or '(none)'!r} is not mqtt or mqtts ({expected})")
    try:
        port = parts.port
    except ValueError:
        raise LrcnError(f"mqtt sink: bad port in {parts.netloc.rpartition('@')[2]!r} ({expected})") from None
    if not parts.hostname:
        raise LrcnError(f"mqtt sink: no host in the URL ({expected})")
    if parts.query or parts.fragment:
        raise LrcnError(f"mqtt sink: the URL takes no ?query or #fragment ({expected})")
    options = {"host": parts.hostname, "tls": SCHEMES[parts.scheme]}
    if port is not None:
        options["port"] = port
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        options["prefix"] = unquote(parts.path)
    return options


HOME_ASSISTANT_RULES = {
    "node_id": STREAM_ID_RULE,
    "discovery_prefix": "topic levels of letters, digits, _ and - (like homeassistant)",
}


def home_assistant(value: bool | Mapping) -> HomeAssistant | None:
    """The `homeassistant` option as settings: false is off, true the defaults, a table its keys."""
    if value is False:
        return None
    table = {} if value is True else dict(value)
    try:
        return msgspec.convert(table, HomeAssistant)
    except msgspec.ValidationError as err:
        message, _, at = str(err).replace("`", "'").partition(" - at '$.")
        key = at.rstrip("'")
        if message.startswith("Object contains unknown field"):
            known = ", ".join(f.name for f in msgspec.structs.fields(HomeAssistant))
            raise LrcnError(
                f"mqtt sink: unknown key {message.rpartition(' ')[2]} in homeassistant (known: {known})"
            ) from None
        rule = HOME_ASSISTANT_RULES.get(key) if "regex" in message else None
        raise LrcnError(
            f"mqtt sink: homeassistant.{key} must be {rule}, got {table.get(key)!r}"
            if rule
            else f"mqtt sink: homeassistant.{key}: {message}"
        ) from None


def client_id_for(node: str) -> str:
    return "lrcn-" + re.sub(r"[^A-Za-z0-9_-]+", "-", node).strip("-")


@register
class MqttSink(Sink):
    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        prefix: str = "lrcn",
        qos: int = 1,
        retain_status: bool = True,
        buffer: int = 10000,
        client_id: str | None = None,
        keepalive_s: int = 30,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls_insecure: bool = False,
        kinds=KINDS,
        homeassistant: HomeAssistant | None = None,
    ):
        if qos not in (0, 1, 2):
            raise LrcnError(f"mqtt sink: qos must be 0, 1 or 2, got {qos}")
        if buffer < 1:
            raise LrcnError(f"mqtt sink: buffer must be at least 1 message, got {buffer}")
        if keepalive_s < 1:
            raise LrcnError(f"mqtt sink: keepalive_s must be at least 1 second, got {keepalive_s}")
        port = port if port is not None else (8883 if tls else 1883)
        if not 0 < port < 65536:
            raise LrcnError(f"mqtt sink: port must be 1-65535, got {port}")
        if password is not None and username is None:
            raise LrcnError("mqtt sink: a password needs a username")
        if key_file and not cert_file:
            raise LrcnError("mqtt sink: key_file needs cert_file (the client certificate)")
        if not tls and (ca_file or cert_file or tls_insecure):
            raise LrcnError("mqtt sink: ca_file, cert_file, key_file and tls_insecure need tls (or mqtts://)")
        self.kinds = check_kinds(kinds, self.name)
        self.host, self.port, self.prefix, self.qos = host, port, _check_prefix(prefix), qos
        self.retain_status, self.buffer, self.tls = retain_status, buffer, tls
        self.availability = f"{self.prefix}/availability"
        if homeassistant is not None and messages.EVENT not in self.kinds:
            raise LrcnError("mqtt sink: homeassistant needs the event kind (its activity changes at event edges)")
        self.hass = (
            None
            if homeassistant is None
            else hass.Layout(
                self.prefix,
                homeassistant.discovery_prefix,
                homeassistant.node_id or hass.default_node_id(),
                qos,
                __version__,
                stream_status=retain_status and messages.STATUS in self.kinds,
            )
        )
        self._hass_lock = threading.Lock()  # orders the inference thread's edges against serving(); taken before _lock
        self._streams: dict[str, tuple[str, ...] | None] = {}  # as serving() last said; None: no discovery
        self._last_label: dict[str, str] = {}  # each announced stream's latest predicted label
        self.sent = self.dropped = self.connects = self.failed = 0
        self.problem = ""
        self._backlog: deque[tuple[str, bytes, bool]] = deque()
        self._lock = threading.Lock()  # orders send() against the flush on (re)connect
        self._connected = self._closed = False
        self._last: mqtt.MQTTMessageInfo | None = None  # the newest data message paho took
        self.last_error = ""  # why it is not connected, for a status line; "" once connected

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or client_id_for(default_node()),
            protocol=mqtt.MQTTv311,
        )
        client.max_queued_messages_set(buffer + 2)  # room for online and offline beside a full backlog
        client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        client.will_set(self.availability, b"offline", qos=1, retain=True)
        if username is not None:
            client.username_pw_set(username, password)
        if tls:
            try:
                client.tls_set(
                    ca_certs=_check_file(ca_file, "ca_file"),
                    certfile=_check_file(cert_file, "cert_file"),
                    keyfile=_check_file(key_file, "key_file"),
                )
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise LrcnError(f"mqtt sink: cannot use the TLS files: {err}") from None
            client.tls_insecure_set(tls_insecure)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.connect_async(host, port, keepalive=keepalive_s)
        client.loop_start()
        self._client = client

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> MqttSink:
        check_keys(options, OPTION_TYPES, cls.name)
        options = dict(options)
        if "url" in options:
            clash = sorted({"host", "port"} & set(options))
            if clash:
                raise LrcnError(f"mqtt sink: give either url or {' and '.join(clash)}, not both")
            options = {**parse_url(options.pop("url")), **options}  # the table's own keys win
        if "host" not in options:
            raise LrcnError("mqtt sink: needs url (mqtt://host:1883/prefix) or host")
        options.setdefault("client_id", client_id_for(node))
        if "homeassistant" in options:
            options["homeassistant"] = home_assistant(options["homeassistant"])
        return cls(**options)

    @classmethod
    def from_url(cls, url: str, *, node: str) -> MqttSink:
        """The `--mqtt URL` shorthand."""
        return cls.from_config({"url": url}, node=node)

    def topic(self, message: Outgoing) -> str:
        if message.stream is None:
            return f"{self.prefix}/{message.kind}"
        return f"{self.prefix}/{message.stream}/{message.kind}"

    def send(self, message: Outgoing) -> bool:
        return self._publish(
            self.topic(message), message.payload, self.retain_status and message.kind == messages.STATUS
        )

    def prediction(self, message: Outgoing) -> bool:
        if self.hass is not None and message.stream and self._streams.get(message.stream) is not None:
            # Only the prediction before an event's end matters (was it the guard's `unknown`?), but
            # that is known only once the end comes, after the prediction was sent.
            self._last_label[message.stream] = json.loads(message.payload)["label"]
        return self.send(message)

    def event(self, message: Outgoing) -> bool:
        taken = self.send(message)
        stream, layout = message.stream, self.hass
        if stream is None or layout is None:
            return taken
        with self._hass_lock:
            labels = self._streams.get(stream)
            if labels is not None:
                edge = hass.activity_edge(
                    layout, stream, labels, json.loads(message.payload), self._last_label.get(stream)
                )
                for topic, payload in edge:
                    self._publish(topic, payload, True)
        return taken

    def serving(self, streams: Mapping[str, tuple[str, ...] | None]) -> None:
        """Announce added streams to Home Assistant, update those whose watched classes changed, and
        clear every retained topic of removed streams (stream.hass.reconcile)."""
        with self._hass_lock:
            wanted = {name: (labels if self.hass is not None else None) for name, labels in streams.items()}
            for topic, payload in hass.reconcile(self.hass or hass.Layout(self.prefix, "", ""), self._streams, wanted):
                self._publish(topic, payload, True)
            self._last_label = {name: label for name, label in self._last_label.items() if name in wanted}
            self._streams = wanted

    @property
    def takes_snapshots(self) -> bool:
        return messages.EVENT in self.kinds

    def publish_snapshot(self, stream: str, jpeg: bytes) -> bool:
        """An event's snapshot, JPEG bytes, retained on `<prefix>/<stream>/snapshot` (as Frigate's);
        only by a sink that takes events."""
        if messages.EVENT not in self.kinds:
            return False
        return self._publish(f"{self.prefix}/{stream}/snapshot", bytes(jpeg), True)

    def _publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        with self._lock:
            if self._closed:
                self.dropped += 1
                return False
            if not self._connected:
                self._hold([(topic, payload, retain)])
                return True
            info = self._client.publish(topic, payload, self.qos, retain)
            # At qos >= 1 paho keeps what it could not write (NO_CONN): _on_connect takes it back.
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos > 0):
                self.sent += 1
                self._last = info
                return True
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                self._hold([(topic, payload, retain)])
                return True
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:  # a full queue is shedding; anything else a failure
                self.failed += 1
                self.problem = f"publish to {self.host}:{self.port} refused: {mqtt.error_string(info.rc)}"
            self.dropped += 1
            return False

    def _hold(self, backlog: list) -> None:
        """Append to the backlog (caller holds the lock), dropping the oldest beyond the bound."""
        self._backlog.extend(backlog)
        excess = len(self._backlog) - self.buffer
        for _ in range(max(0, excess)):
            self._backlog.popleft()
        self.dropped += max(0, excess)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._note_error(f"refused by {self.host}:{self.port}: {reason}")
            return
        with self._lock:
            # Unacknowledged messages of the last connection come back from paho to be re-sent ahead
            # of the backlog: left to paho, it would re-send them after this callback, out of order.
            held = [(m.topic, m.payload, m.retain) for m in client.drop_out_messages() if m.topic != self.availability]
            self.sent -= len(held)
            backlog, self._backlog = list(self._backlog), deque()
            self._hold(held + backlog)
            client.publish(self.availability, b"online", qos=1, retain=True)
            while self._backlog:
                topic, payload, retain = self._backlog.popleft()
                info = client.publish(topic, payload, self.qos, retain)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.sent += 1
                    self._last = info
                else:
                    self.dropped += 1
            self._connected = True
            self.connects += 1
        self.last_error = ""
        log.info("mqtt: connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        # No lock here: paho may call this while holding its message lock, which send() takes under ours.
        was_connected, self._connected = self._connected, False
        if was_connected and not self._closed:
            self._note_error(f"lost {self.host}:{self.port}: {reason}")

    def _on_connect_fail(self, client, userdata) -> None:
        self._note_error(f"cannot connect to {self.host}:{self.port}")

    def _note_error(self, error: str) -> None:
        # Counted here, logged at warning by the pipeline (Outbox.report_failures), at most once a stats interval.
        self.failed += 1
        self.problem = f"{error}; buffering up to {self.buffer} messages and retrying"
        if error != self.last_error:
            log.info("mqtt: %s", self.problem)
        self.last_error = error

    def stats(self) -> SinkStats:
        return SinkStats(
            sent=self.sent,
            dropped=self.dropped,
            buffered=len(self._backlog),
            connected=self._connected,
            connects=self.connects,
            failed=self.failed,
            problem=self.problem,
        )

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port} prefix {self.prefix} qos {self.qos}"

    @staticmethod
    def _wait(info: mqtt.MQTTMessageInfo | None, deadline: float) -> None:
        try:
            if info is not None:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (ValueError, RuntimeError):  # refused or its connection gone: nothing to wait for
            pass

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait up to `timeout_s` for the broker to acknowledge what was sent (qos 1 and 2); True if it did."""
        deadline = time.monotonic() + timeout_s
        while self._backlog and time.monotonic() < deadline:
            time.sleep(0.02)
        last = self._last
        self._wait(last, deadline)
        return not self._backlog and (last is None or last.is_published())

    def close(self, timeout_s: float = 1.0) -> None:
        """Publish `offline`, wait up to `timeout_s` for the broker to take what is queued, disconnect.
        What is still in the backlog then counts as dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        while self._backlog and not self._connected and time.monotonic() < deadline:
            time.sleep(0.02)  # a connection may be coming that would flush the backlog
        # The broker acknowledges in order, so the newest message done means all are; then `offline`.
        self._wait(self._last if self._connected else None, deadline)
        with self._lock:
            connected = self._connected
            offline = self._client.publish(self.availability, b"offline", qos=1, retain=True) if connected else None
        self._wait(offline, deadline)
        self._client.disconnect()
        # loop_stop() joins paho's thread, which can be stuck in a TCP connect; wait in another thread.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-close", daemon=True)
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic()))
        with self._lock:
            unacknowledged = [m for m in self._client.drop_out_messages() if m.topic != self.availability]
            self.sent -= len(unacknowledged)
            self.dropped += len(self._backlog) + len(unacknowledged)
            self._backlog.clear()
