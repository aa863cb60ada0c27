"""ZeroMQ transport for schema v1 messages: Publisher (PUB), Subscriber (SUB) and an XSUB/XPUB Proxy.

The publisher never blocks the pipeline: it sends with NOBLOCK behind a high-water mark
(`stream.sinks.zeromq`). A PUB socket drops a slow subscriber's messages at that subscriber's
high-water mark without telling the sender, so those losses show up where they can be seen: as
`seq` gaps at the subscriber (`Subscriber.missed`). `Publisher.shed` counts what the socket itself
refused (zmq.Again).

>>> publisher = Publisher("tcp://127.0.0.1:5556")                             # doctest: +SKIP
>>> publisher.publish_prediction("cam0", frame_index=41, window=(26, 41), label="wave", score=0.9,
...                              top_k=[("wave", 0.9)], captured_at=time.monotonic())  # doctest: +SKIP
>>> Subscriber("tcp://127.0.0.1:5556", topics=["pred/"]).receive(timeout_s=1.0)  # doctest: +SKIP
Message(topic='pred/cam0', kind='pred', stream='cam0', payload={...})
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable

import zmq

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.keys import ClientKeys, ServerKeys
from lrcn.stream.outbox import Outbox
from lrcn.stream.sinks.zeromq import DEFAULT_ENDPOINT, ZeroMqSink


class Publisher(Outbox):
    """An outbox with one ZeroMQ sink that binds (or, for a proxy's XSUB side, connects) a PUB socket.

    Safe to call from several threads: sends are serialised by a lock held only for the send.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, bind: bool = True, hwm: int = 1000,
                 linger_s: float = 1.0, curve: ServerKeys | None = None, node: str | None = None):
        self.zeromq = ZeroMqSink(endpoint, bind=bind, hwm=hwm, linger_s=linger_s, curve=curve)
        super().__init__([self.zeromq], node)
        self.endpoint = self.zeromq.endpoint

    @property
    def sent(self) -> int:
        return self.zeromq.sent

    @property
    def shed(self) -> int:
        return self.zeromq.shed

    def stats(self) -> dict:
        return {"sent": self.sent, "shed": self.shed}

    def close(self, linger_s: float | None = None) -> None:
        """Close the socket, waiting up to `linger_s` (default: the constructor's) to flush queued messages."""
        super().close(self.zeromq.linger_s if linger_s is None else linger_s)


class Subscriber:
    """Connects a SUB socket, filters by topic prefix, returns decoded messages and counts seq gaps."""

    def __init__(self, endpoint: str, topics: Iterable[str] = ("",), *, curve: ClientKeys | None = None,
                 hwm: int = 1000):
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.rcvhwm = hwm
        self._socket.linger = 0
        try:
            if curve is not None:
                self._socket.curve_secretkey = curve.secret
                self._socket.curve_publickey = curve.public
                self._socket.curve_serverkey = curve.server_public
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
        if not isinstance(seq, int) or isinstance(seq, bool):   # a newer topic without one
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

    >>> with Proxy("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558"):   # doctest: +SKIP
    ...     time.sleep(60)
    """

    def __init__(self, xsub_endpoint: str, xpub_endpoint: str):
        self._context = zmq.Context()
        self._frontend = self._context.socket(zmq.XSUB)
        self._backend = self._context.socket(zmq.XPUB)
        self._control = self._context.socket(zmq.PAIR)
        self._stopper = self._context.socket(zmq.PAIR)
        control_endpoint = f"inproc://proxy-control-{id(self)}"
        try:
            for sock, endpoint in ((self._frontend, xsub_endpoint), (self._backend, xpub_endpoint)):
                sock.linger = 0
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as err:
                    raise LrcnError(f"cannot bind {endpoint}: {err}") from None
            self._control.bind(control_endpoint)
            self._stopper.connect(control_endpoint)
        except LrcnError:
            self._close_sockets()
            raise
        self.xsub_endpoint = self._frontend.last_endpoint.decode()
        self.xpub_endpoint = self._backend.last_endpoint.decode()
        self._thread = threading.Thread(target=self._run, name="zmq-proxy", daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stopper.send(b"TERMINATE")
            self._thread.join(2.0)
        self._close_sockets()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control)
        except zmq.ContextTerminated:
            pass

    def _close_sockets(self) -> None:
        for sock in (self._frontend, self._backend, self._control, self._stopper):
            sock.close(linger=0)
        self._context.term()


def run_proxy(xsub_endpoint: str, xpub_endpoint: str, duration_s: float | None = None,
              ready=None) -> None:
    """Forward from `xsub_endpoint` to `xpub_endpoint` until `duration_s` passes (or forever) or
    Ctrl-C; `ready(proxy)` is called once both sides are bound."""
    with Proxy(xsub_endpoint, xpub_endpoint) as proxy:
        if ready is not None:
            ready(proxy)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
