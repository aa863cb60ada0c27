"""The ZeroMQ sink: a PUB socket that binds (subscribers connect to it) or connects (to an
`lrcn proxy`'s XSUB side). It never blocks: it sends with NOBLOCK behind a high-water mark and
counts what the socket refused as `shed`; a send that fails otherwise (the socket or its context
closed) is counted in `failed`. A PUB socket also drops a slow subscriber's messages
at that subscriber's high-water mark without telling the sender; those show as `seq` gaps at
the subscriber (`stream.publisher.Subscriber.missed`).

A connecting sink queues only to a peer that has completed its handshake (ZMQ_IMMEDIATE) and
watches its socket's monitor (`stream.curve.HandshakeWatch`): while no proxy has accepted it (none
listening, or a CURVE key it refuses), a message counts as `undelivered`, not `sent`, and a warning
says why, at most once per `warn_every_s`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
import zmq
from lrcn.stream.curve import HandshakeWatch, KeyGate, RateLimit, secure_client, secure_server
from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import PublisherStats, SinkStats
from lrcn.stream.keys import ClientKeys, ServerKeys, load_client_keys, load_server_keys
from lrcn.stream.sinks import OptionTypes, Outgoing, Sink, check_keys, register

log = logging.getLogger("lrcn.sinks.zeromq")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
_FIRST_FRAME = int(zmq.NOBLOCK | zmq.SNDMORE)  # combined once: an enum flag `|` per message costs more than the send
OPTION_TYPES: OptionTypes = {"endpoint": str, "connect": bool, "hwm": int, "curve_keys": str, "curve_client": str}
SUBSCRIBERS = "subscribers"  # the ZAP domain of a publisher's subscribers


@register
class ZeroMqSink(Sink):
    name = "zeromq"

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        bind: bool = True,
        hwm: int = 1000,
        linger_s: float = 1.0,
        curve: ServerKeys | ClientKeys | None = None,
        warn_every_s: float = 5.0,
    ):
        """`curve`: ServerKeys to bind as a CURVE server admitting `authorized_dir`'s subscribers;
        ClientKeys to connect as a CURVE client (of a proxy's XSUB side)."""
        self._context = zmq.Context()
        self._gate: KeyGate | None = None
        self._watch: HandshakeWatch | None = None
        self._socket = self._context.socket(zmq.PUB)
        self._socket.sndhwm = hwm
        self._socket.linger = int(linger_s * 1000)
        self.linger_s = linger_s
        self._closed = False
        self.sent = self.shed = self.failed = self.undelivered = 0
        self.problem = ""
        self._warn = RateLimit(warn_every_s, first_due=False)
        try:
            if isinstance(curve, ServerKeys):
                self._gate = KeyGate(self._context, {SUBSCRIBERS: curve.authorized_dir}).start()
                secure_server(self._socket, curve, SUBSCRIBERS)
            elif isinstance(curve, ClientKeys):
                secure_client(self._socket, curve)
            if bind:
                if curve is not None:
                    self._watch = HandshakeWatch(self._socket, f"zeromq on {endpoint}", server=True)
                self._socket.bind(endpoint)
            else:
                self._socket.immediate = True  # no queue for a peer that has not completed its handshake
                self._watch = HandshakeWatch(self._socket, f"zeromq into {endpoint}")
                self._socket.connect(endpoint)
        except zmq.ZMQError as err:
            self.close(0)
            raise LrcnError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {err}") from None
        except LrcnError:
            self.close(0)
            raise
        self.bind = bind
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> ZeroMqSink:
        check_keys(options, OPTION_TYPES, cls.name)
        keys, connect = options.get("curve_keys"), options.get("connect", False)
        curve = (
            None
            if not keys
            else load_client_keys(keys, options.get("curve_client", "publisher"))
            if connect
            else load_server_keys(keys)
        )
        return cls(
            options.get("endpoint", DEFAULT_ENDPOINT), bind=not connect, hwm=options.get("hwm", 1000), curve=curve
        )

    def send(self, message: Outgoing) -> bool:
        # A connecting sink (which always has a watch) that no proxy has accepted delivers nothing.
        if not self.bind and self._watch is not None and not self._watch.up:
            self._undeliverable()
            return False
        try:
            # Two plain sends are a quarter of send_multipart's cost, which checks and wraps each frame.
            # A PUB socket queues the whole message or nothing, so Again can only come from the first.
            self._socket.send(message.frames[0], _FIRST_FRAME)
            self._socket.send(message.frames[1], zmq.NOBLOCK)
        except zmq.Again:
            self.shed += 1
            return False
        except zmq.ZMQError as err:  # a closed socket or context: counted, never raised at the caller
            self.failed += 1
            self.problem = f"cannot send on {self.endpoint}: {err}"
            return False
        self.sent += 1
        return True

    def _undeliverable(self) -> None:
        self.undelivered += 1
        if self._warn.due():
            log.warning(
                "zeromq into %s delivers nothing: %s; %d messages not delivered so far",
                self.endpoint,
                self._watch.reason if self._watch is not None else "",
                self.undelivered,
            )

    def handshake_failures(self) -> int:
        """Failed CURVE (or ZMTP) handshakes: refused keys and protocol failures, either side."""
        if self._watch is None:
            return 0
        if self._gate is not None:  # a CURVE server's watch
            return self._gate.denied[SUBSCRIBERS] + self._watch.protocol_failures()
        return sum(self._watch.failures.values())

    def reload_keys(self) -> dict[str, int] | None:
        """Re-read the authorized subscribers (a CURVE server); {domain: keys removed}, None if not
        one. A revoked key is refused at its next handshake; a connection it has stays until then."""
        return None if self._gate is None else self._gate.reload()

    def stats(self) -> SinkStats:
        client = None if self.bind else self._watch  # a connecting sink always has a watch
        problem = f"delivers nothing: {client.reason}" if client is not None and not client.up else self.problem
        return SinkStats(
            sent=self.sent,
            dropped=self.shed + self.undelivered,
            shed=self.shed,
            failed=self.failed,
            undelivered=self.undelivered,
            problem=problem,
            handshake_failures=self.handshake_failures(),
            connected=msgspec.UNSET if client is None else client.up,
        )

    def counts(self) -> PublisherStats:
        """The socket's own counts, as a publisher reports them (`stats` is what every sink reports)."""
        return PublisherStats(sent=self.sent, shed=self.shed, undelivered=self.undelivered)

    def describe(self) -> str:
        return f"zeromq {'on' if self.bind else 'into'} {self.endpoint}"

    def close(self, timeout_s: float | None = None) -> None:
        """Close the socket, waiting up to `timeout_s` (default: the constructor's linger) to flush."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=None if timeout_s is None else int(timeout_s * 1000))
        if self._watch is not None:
            self._watch.stop()
        if self._gate is not None:
            self._gate.stop()
        self._context.term()
