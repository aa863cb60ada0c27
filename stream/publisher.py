"""ZeroMQ transport for schema v1 messages: Publisher (PUB), Subscriber (SUB) and an XSUB/XPUB Proxy.

The publisher never blocks the pipeline: it sends with NOBLOCK behind a high-water mark
(`stream.sinks.zeromq`). A PUB socket drops a slow subscriber's messages at that subscriber's
high-water mark without telling the sender, so those losses show up where they can be seen: as
`seq` gaps at the subscriber (`Subscriber.missed`). `Publisher.shed` counts what the socket itself
refused (zmq.Again), `Publisher.undelivered` what a connecting one had no peer for (no proxy has
accepted its handshake: `stream.curve`).

>>> publisher = Publisher("tcp://127.0.0.1:5556")                             # doctest: +SKIP
>>> publisher.publish_prediction("cam0", frame_index=41, window=(26, 41), label="wave", score=0.9,
...                              top_k=[("wave", 0.9)], captured_at=time.monotonic())  # doctest: +SKIP
>>> Subscriber("tcp://127.0.0.1:5556", topics=["pred/"]).receive(timeout_s=1.0)  # doctest: +SKIP
Message(topic='pred/cam0', kind='pred', stream='cam0', payload={...})
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable

import zmq

from lrcn.stream import messages
from lrcn.stream.curve import HandshakeWatch, KeyGate, secure_client, secure_server
from lrcn.stream.errors import LrcnError
from lrcn.stream.keys import ClientKeys, ServerKeys
from lrcn.stream.outbox import Outbox
from lrcn.stream.stats import PublisherStats
from lrcn.stream.sinks.zeromq import DEFAULT_ENDPOINT, SUBSCRIBERS, ZeroMqSink

log = logging.getLogger("lrcn.proxy")
PUBLISHERS = "publishers"  # the ZAP domain of a proxy's XSUB side (SUBSCRIBERS: its XPUB side)


class Publisher(Outbox):
    """An outbox with one ZeroMQ sink that binds (or, for a proxy's XSUB side, connects) a PUB socket.

    Safe to call from several threads: sends are serialised by a lock held only for the send.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        bind: bool = True,
        hwm: int = 1000,
        linger_s: float = 1.0,
        curve: ServerKeys | ClientKeys | None = None,
        node: str | None = None,
    ):
        self.zeromq = ZeroMqSink(endpoint, bind=bind, hwm=hwm, linger_s=linger_s, curve=curve)
        super().__init__([self.zeromq], node)
        self.endpoint = self.zeromq.endpoint

    @property
    def sent(self) -> int:
        return self.zeromq.sent

    @property
    def shed(self) -> int:
        return self.zeromq.shed

    @property
    def undelivered(self) -> int:
        """Messages a connecting publisher had no peer for (no proxy accepted its handshake)."""
        return self.zeromq.undelivered

    def counts(self) -> PublisherStats:
        """The ZeroMQ socket's counts (`stats()`, as for any outbox, is per sink)."""
        return self.zeromq.counts()

    def close(self, linger_s: float | None = None) -> None:
        """Close the socket, waiting up to `linger_s` (default: the constructor's) to flush queued messages."""
        super().close(self.zeromq.linger_s if linger_s is None else linger_s)


class Subscriber:
    """Connects a SUB socket, filters by topic prefix, returns decoded messages and counts seq gaps."""

    def __init__(
        self, endpoint: str, topics: Iterable[str] = ("",), *, curve: ClientKeys | None = None, hwm: int = 1000
    ):
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.rcvhwm = hwm
        self._socket.linger = 0
        try:
            if curve is not None:
                secure_client(self._socket, curve)
            for topic in topics:
                self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
            self._socket.connect(endpoint)
        except zmq.ZMQError as err:
            self.close()
            raise LrcnError(f"cannot connect {endpoint}: {err}") from None
        self.endpoint = endpoint
        self.received = 0
        self.missed: dict[str, int] = defaultdict(int)
        self._last_seq: dict[str, int] = {}
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)

    def receive(self, timeout_s: float) -> messages.Message | None:
        """The next message, or None after `timeout_s`; raises MessageError for a malformed one.
        A topic this reader does not know comes back too (`message.known` is False)."""
        if not self._poller.poll(max(0, int(timeout_s * 1000))):
            return None
        message = messages.decode(self._socket.recv_multipart())
        self.received += 1
        seq, last = message.payload.get("seq"), self._last_seq.get(message.topic)
        if not isinstance(seq, int) or isinstance(seq, bool):  # a newer topic without one
            return message
        if last is not None and seq > last + 1:
            self.missed[message.topic] += seq - last - 1
        self._last_seq[message.topic] = seq
        return message

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
            self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Proxy:
    """An XSUB/XPUB forwarder: publishers connect to `xsub_endpoint`, subscribers to `xpub_endpoint`.

    With `curve` (`keys.load_proxy_keys`), both sides are CURVE servers with the proxy's pair: the
    XSUB side admits the keys in `authorized_publishers/`, the XPUB side those in
    `authorized_clients/`; `reload_keys()` re-reads both lists and drops every connection of a
    side that lost a key, so a revoked client is out at once (the others reconnect in ~0.1 s).

    >>> with Proxy("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558"):   # doctest: +SKIP
    ...     time.sleep(60)
    """

    def __init__(self, xsub_endpoint: str, xpub_endpoint: str, *, curve: ServerKeys | None = None):
        self._context = zmq.Context()
        self._frontend = self._context.socket(zmq.XSUB)
        self._backend = self._context.socket(zmq.XPUB)
        self._control = self._context.socket(zmq.PAIR)
        self._stopper = self._context.socket(zmq.PAIR)
        self._gate: KeyGate | None = None
        self._watches: dict[str, HandshakeWatch] = {}
        control_endpoint = f"inproc://proxy-control-{id(self)}"
        sides = ((PUBLISHERS, self._frontend, xsub_endpoint), (SUBSCRIBERS, self._backend, xpub_endpoint))
        try:
            if curve is not None:
                self._gate = KeyGate(
                    self._context, {PUBLISHERS: curve.publishers_dir, SUBSCRIBERS: curve.authorized_dir}
                ).start()
            for domain, sock, endpoint in sides:
                sock.linger = 0
                if curve is not None:
                    secure_server(sock, curve, domain)
                    self._watches[domain] = HandshakeWatch(sock, f"proxy {domain} side", server=True)
                _bind(sock, endpoint)
            self._control.bind(control_endpoint)
            self._stopper.connect(control_endpoint)
        except LrcnError:
            self._close_sockets()
            raise
        self.xsub_endpoint = self._frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.xpub_endpoint = self._backend.getsockopt_string(zmq.LAST_ENDPOINT)
        self._thread = self._forwarder()

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._pause()
        self._close_sockets()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def handshake_failures(self) -> dict[str, int]:
        """{side: failed handshakes}: keys refused (ZAP) and clients without CURVE or with another key."""
        gate = self._gate  # there are watches only with CURVE, and so with a gate
        return (
            {}
            if gate is None
            else {domain: gate.denied[domain] + watch.protocol_failures() for domain, watch in self._watches.items()}
        )

    def authorized(self) -> dict[str, int]:
        """{side: how many keys it admits}; empty without CURVE."""
        return {} if self._gate is None else self._gate.counts()

    def reload_keys(self) -> dict[str, int]:
        """Re-read both authorized lists (LrcnError, and no change, if one has a bad file) and drop
        the connections of each side that lost a key. Returns {side: keys removed}. Call it from the
        thread that started the proxy."""
        if self._gate is None:
            raise LrcnError("this proxy has no CURVE keys to reload")
        removed = self._gate.reload()
        endpoints = {PUBLISHERS: (self._frontend, self.xsub_endpoint), SUBSCRIBERS: (self._backend, self.xpub_endpoint)}
        revoked = [endpoints[domain] for domain, n in removed.items() if n]
        if revoked:
            # ZeroMQ cannot close one peer's connection; unbinding closes all a side has (libzmq
            # owns accepted connections under their listener), and all but the revoked come back.
            self._pause()
            for sock, endpoint in revoked:
                sock.unbind(endpoint)
                _bind(sock, endpoint)
            self._thread = self._forwarder()
            self._thread.start()
        return removed

    def _forwarder(self) -> threading.Thread:
        return threading.Thread(target=self._run, name="zmq-proxy", daemon=True)

    def _pause(self) -> None:
        """Stop forwarding; the sockets are then the caller's."""
        if self._thread.is_alive():
            self._stopper.send(b"TERMINATE")
            self._thread.join(2.0)

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control)
        except zmq.ContextTerminated:
            pass

    def _close_sockets(self) -> None:
        for sock in (self._frontend, self._backend, self._control, self._stopper):
            sock.close(linger=0)
        for watch in self._watches.values():
            watch.stop()
        if self._gate is not None:
            self._gate.stop()
        self._context.term()


def _bind(sock: zmq.Socket, endpoint: str, retry_s: float = 2.0) -> None:
    """Bind, retrying briefly while a port just unbound is still being let go (libzmq closes a
    listener in its I/O thread, after unbind returns)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            sock.bind(endpoint)
            return
        except zmq.ZMQError as err:
            if err.errno != zmq.EADDRINUSE or time.monotonic() > deadline or endpoint.endswith(":*"):
                raise LrcnError(f"cannot bind {endpoint}: {err}") from None
            time.sleep(0.02)


def run_proxy(
    xsub_endpoint: str,
    xpub_endpoint: str,
    duration_s: float | None = None,
    ready=None,
    curve: ServerKeys | None = None,
    reload: threading.Event | None = None,
) -> None:
    """Forward from `xsub_endpoint` to `xpub_endpoint` until `duration_s` passes (or forever) or
    Ctrl-C; `ready(proxy)` is called once both sides are bound. With `curve`, each time `reload`
    is set (SIGHUP) the authorized keys are read again."""
    with Proxy(xsub_endpoint, xpub_endpoint, curve=curve) as proxy:
        if curve is not None:
            log.info("CURVE on both sides: %s", _sides(proxy.authorized(), "keys authorized"))
        if ready is not None:
            ready(proxy)
        try:
            deadline = None if duration_s is None else time.monotonic() + duration_s
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
                if reload is not None and reload.is_set():
                    reload.clear()
                    _reload(proxy)
        finally:
            if curve is not None:
                log.info("failed handshakes: %s", _sides(proxy.handshake_failures(), ""))


def _reload(proxy: Proxy) -> None:
    try:
        removed = proxy.reload_keys()
    except LrcnError as err:
        log.error("SIGHUP: keys not reloaded, the authorized lists stay as they were: %s", err)
        return
    log.info(
        "SIGHUP: keys reloaded: %s; %s",
        _sides(proxy.authorized(), "keys authorized"),
        "; ".join(f"{n} revoked on the {side} side, its connections dropped" for side, n in removed.items() if n)
        or "none revoked",
    )


def _sides(counts: dict[str, int], what: str) -> str:
    return ", ".join(f"{side} {n}{' ' + what if what else ''}" for side, n in counts.items())
