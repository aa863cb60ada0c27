"""Who gets in, and who could not: a ZAP handler for CURVE servers and a watch on a socket's handshakes.

`KeyGate` answers libzmq's ZAP requests (RFC 27) for every CURVE server socket of one context:
a client key is admitted if it is in the authorized list of the socket's `zap_domain`. The lists
are re-read by `reload()` (SIGHUP), so a key removed from its folder is refused at its next
handshake. Every refusal is counted and logged at warning, at most once per `warn_every_s`.

`HandshakeWatch` reads a socket's monitor events (`zmq_socket_monitor`): on a connecting socket
it says whether a peer has completed a handshake (`up`) and why not (`reason`); on a CURVE server
it counts the handshakes that failed before any key could be checked (a client without CURVE, or
with the wrong server key), which ZAP never sees.

>>> gate = KeyGate(context, {"subscribers": Path("keys/authorized_clients")}).start()   # doctest: +SKIP
>>> secure_server(socket, keys, domain="subscribers"); socket.bind(endpoint)          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from lrcn.stream.keys import ClientKeys, ServerKeys, read_authorized

log = logging.getLogger("lrcn.curve")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27: libzmq asks whoever binds it
_POLL_MS = 200
# Monitor events and what they mean for the watched socket.
_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake refused: this key is not authorized by the server",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed: the server does not speak CURVE, or not with this key",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed: no CURVE here, or a wrong server key",
}
_SERVER_FAILED = "a client failed the handshake: no CURVE, or another server's key"
_DOWN = {
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_CLOSED: "closed",
    zmq.EVENT_CONNECT_RETRIED: "reconnecting",
    zmq.EVENT_CONNECT_DELAYED: "connecting",
}


class RateLimit:
    """`due()` is True at most once per `every_s`; the first call is due unless `first_due` is
    False (then not before `every_s` from now: a grace for what start-up sets right)."""

    def __init__(self, every_s: float, first_due: bool = True):
        self.every_s = every_s
        self._last: float | None = None if first_due else time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True


def secure_server(socket: zmq.Socket, keys: ServerKeys, domain: str) -> None:
    """Make `socket` a CURVE server whose clients a KeyGate checks in `domain`; with no gate
    running, libzmq refuses every client (ZAP enforced) rather than admitting any key."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True
    socket.zap_domain = domain.encode()
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def secure_client(socket: zmq.Socket, keys: ClientKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public


class KeyGate:
    """A ZAP handler thread admitting, per ZAP domain, the keys in one folder of public keys."""

    def __init__(self, context: zmq.Context, folders: dict[str, Path], warn_every_s: float = 10.0):
        self.folders = dict(folders)
        self._authorized = {domain: read_authorized(folder) for domain, folder in self.folders.items()}
        self.denied: Counter[str] = Counter()  # refusals per domain
        self._warn = RateLimit(warn_every_s)
        self._socket = context.socket(zmq.REP)
        self._socket.linger = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)

    def start(self) -> KeyGate:
        """Answer ZAP requests from now on: start it before a secured socket binds."""
        self._socket.bind(ZAP_ENDPOINT)
        self._thread.start()
        return self

    def reload(self) -> dict[str, int]:
        """Re-read every folder; all or nothing (LrcnError names a bad file, the old lists stay).
        Returns {domain: keys removed}."""
        fresh = {domain: read_authorized(folder) for domain, folder in self.folders.items()}
        removed = {domain: len(self._authorized[domain] - keys) for domain, keys in fresh.items()}
        self._authorized = fresh  # one assignment: the ZAP thread sees the old lists or the new
        return removed

    def counts(self) -> dict[str, int]:
        return {domain: len(keys) for domain, keys in self._authorized.items()}

    def stop(self) -> None:
        """Stop answering; call it after the secured sockets are closed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._socket.close(linger=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(_POLL_MS):
                continue
            request = self._socket.recv_multipart()
            self._socket.send_multipart(self._answer(request))
        self._socket.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", request[1] if len(request) > 1 else b"", b"400", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        name = domain.decode(errors="replace")
        key = z85.encode(credentials[0]) if mechanism == b"CURVE" and len(credentials) == 1 else None
        if key is not None and key in self._authorized.get(name, ()):
            return [version, request_id, b"200", b"OK", key, b""]
        self.denied[name] += 1
        if self._warn.due():
            peer = address.decode(errors="replace")
            log.warning(
                "refused a %s handshake from %s: %s (%d refused in %s so far)",
                mechanism.decode(errors="replace"),
                peer,
                f"key {key.decode()} is not in {self.folders.get(name)}" if key else "not CURVE",
                self.denied[name],
                name or "the default domain",
                extra={"zap_domain": name, "peer": peer},
            )
        return [version, request_id, b"400", b"key not authorized", b"", b""]


class HandshakeWatch:
    """Follows one socket's monitor events in a thread. `up`: a peer has completed a handshake and
    not gone since (meant for a socket that connects to one endpoint); `failures`: handshakes that
    failed, by kind (on a CURVE server, `auth` ones are the KeyGate's refusals, counted there too)."""

    def __init__(self, socket: zmq.Socket, label: str, *, server: bool = False, warn_every_s: float = 10.0):
        self.label, self.server = label, server
        self.up = False
        self.reason = "connecting"
        self.failures: Counter[str] = Counter()
        self._warn = RateLimit(warn_every_s)
        self._monitor = socket.get_monitor_socket(zmq.EVENT_ALL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"monitor {label}", daemon=True)
        self._thread.start()

    def protocol_failures(self) -> int:
        """Failed handshakes that were not a refused key: what a server's ZAP handler never saw."""
        return sum(n for kind, n in self.failures.items() if kind != "auth")

    def stop(self) -> None:
        """Stop watching; call it after the watched socket is closed, before its context ends."""
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._monitor.poll(_POLL_MS):
                    self._on(parse_monitor_message(self._monitor.recv_multipart()))
        finally:
            self._monitor.close(linger=0)

    def _on(self, event: Mapping[str, Any]) -> None:
        kind = event["event"]
        endpoint = event["endpoint"].decode(errors="replace")
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.up, self.reason = True, ""
            log.log(
                logging.DEBUG if self.server else logging.INFO, "%s: handshake with %s succeeded", self.label, endpoint
            )
        elif kind in _FAILED:
            refused = kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            self.failures["auth" if refused else "protocol"] += 1
            if self.server:
                if not refused and self._warn.due():  # a refused key: the KeyGate logs it, with the key
                    log.warning(
                        "%s: %s, at %s (%d so far)", self.label, _SERVER_FAILED, endpoint, self.protocol_failures()
                    )
                return
            self.up, self.reason = False, _FAILED[kind]
            if self._warn.due():
                log.warning(
                    "%s: %s, at %s (%d failed handshakes so far)",
                    self.label,
                    self.reason,
                    endpoint,
                    sum(self.failures.values()),
                )
        elif kind == zmq.EVENT_CONNECTED:
            self.reason = "connected, handshaking"
        elif kind in _DOWN:
            self.up = False
            if self.reason not in _FAILED.values():  # keep the telling reason, not the retry after it
                self.reason = _DOWN[kind]
