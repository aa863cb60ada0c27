"""The ZeroMQ sink: a PUB socket that binds (subscribers connect to it) or connects (to an
`lrcn proxy`'s XSUB side). It never blocks: it sends with NOBLOCK behind a high-water mark and
counts what the socket refused as `shed`; a send that fails otherwise (the socket or its context
closed) is counted in `failed`. A PUB socket also drops a slow subscriber's messages
at that subscriber's high-water mark without telling the sender; those show as `seq` gaps at
the subscriber (`stream.publisher.Subscriber.missed`)."""
from __future__ import annotations

from collections.abc import Mapping

import zmq
from zmq.auth.thread import ThreadAuthenticator

from lrcn.stream.errors import LrcnError
from lrcn.stream.keys import ServerKeys, load_server_keys
from lrcn.stream.sinks import Outgoing, Sink, check_keys, register

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
_FIRST_FRAME = int(zmq.NOBLOCK | zmq.SNDMORE)  # combined once: an enum flag `|` per message costs more than the send
OPTION_TYPES = {"endpoint": str, "connect": bool, "hwm": int, "curve_keys": str}


def start_authenticator(context: zmq.Context, keys: ServerKeys) -> ThreadAuthenticator:
    """Admit CURVE clients whose public key is in `keys.authorized_dir`, on any address."""
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(keys.authorized_dir))
    return authenticator


@register
class ZeroMqSink(Sink):
    name = "zeromq"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, bind: bool = True, hwm: int = 1000,
                 linger_s: float = 1.0, curve: ServerKeys | None = None):
        self._context = zmq.Context()
        self._authenticator = None
        self._socket = self._context.socket(zmq.PUB)
        self._socket.sndhwm = hwm
        self._socket.linger = int(linger_s * 1000)
        self.linger_s = linger_s
        self._closed = False
        try:
            if curve is not None:
                self._authenticator = start_authenticator(self._context, curve)
                self._socket.curve_secretkey = curve.secret
                self._socket.curve_publickey = curve.public
                self._socket.curve_server = True
            if bind:
                self._socket.bind(endpoint)
            else:
                self._socket.connect(endpoint)
        except zmq.ZMQError as err:
            self.close(0)
            raise LrcnError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {err}") from None
        self.bind = bind
        self.endpoint = self._socket.last_endpoint.decode() if bind else endpoint
        self.sent = self.shed = self.failed = 0
        self.problem = ""

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> ZeroMqSink:
        check_keys(options, OPTION_TYPES, cls.name)
        keys = options.get("curve_keys")
        return cls(options.get("endpoint", DEFAULT_ENDPOINT), bind=not options.get("connect", False),
                   hwm=options.get("hwm", 1000), curve=load_server_keys(keys) if keys else None)

    def send(self, message: Outgoing) -> bool:
        try:
            # Two plain sends are a quarter of send_multipart's cost, which checks and wraps each frame.
            # A PUB socket queues the whole message or nothing, so Again can only come from the first.
            self._socket.send(message.frames[0], _FIRST_FRAME)
            self._socket.send(message.frames[1], zmq.NOBLOCK)
        except zmq.Again:
            self.shed += 1
            return False
        except zmq.ZMQError as err:   # a closed socket or context: counted, never raised at the caller
            self.failed += 1
            self.problem = f"cannot send on {self.endpoint}: {err}"
            return False
        self.sent += 1
        return True

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.shed, "shed": self.shed, "failed": self.failed,
                "problem": self.problem}

    def describe(self) -> str:
        return f"zeromq {'on' if self.bind else 'into'} {self.endpoint}"

    def close(self, timeout_s: float | None = None) -> None:
        """Close the socket, waiting up to `timeout_s` (default: the constructor's linger) to flush."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=None if timeout_s is None else int(timeout_s * 1000))
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()
