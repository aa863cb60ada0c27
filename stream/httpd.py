"""A small HTTP/1.1 server that an idle or hostile client cannot wear down.

One thread owns the listening socket and every connection: it accepts, completes TLS handshakes
and reads request heads without blocking (a selector), and closes a connection that stays idle
for `idle_timeout_s` or takes longer than `header_timeout_s` to send a head. Only a complete head
goes to the fixed pool of worker threads, which build the answer (`respond`) and write it, so
hundreds of idle or slow connections hold a descriptor each, never a thread, and the endpoints
keep answering. At the connection limit or at the descriptor limit (EMFILE) the connection that
has waited longest for its client is closed to make room (idle ones first); with none to close
(every one is being answered), accepting pauses, backing off up to 1 s, instead of spinning on a
listener that stays readable.

    respond(head: bytes | None, peer) -> (answer bytes, close the connection?)
        head: the request line and headers up to the blank line and, for a POST, the body its
        Content-Length announces (up to MAX_BODY_BYTES; a longer body is not read, and its request
        goes on without it); None when the head was too long.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import queue
import re
import resource
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from lrcn.stream.errors import LrcnError

log = logging.getLogger("lrcn.service")
BACKLOG = 128
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024  # a request body (a stream table): read whole before the request is answered
BODY_METHODS = (b"POST ",)  # the only requests whose body is read (other bodies are not waited for)
CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$")
ACCEPTS_PER_TURN = 64
OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
CLIENT_GAVE_UP = {errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT}
HEAD_END = re.compile(rb"\r?\n\r?\n")
Respond = Callable[[bytes | None, tuple], tuple[bytes, bool]]


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    peer: tuple
    deadline: float
    handshaking: bool = False
    buffer: bytearray = field(default_factory=bytearray)
    head_end: int | None = None  # where the buffered head ends, once found (its body may still be coming)
    registered: bool = False  # in the selector (else a worker has it)
    closed: bool = False

    @property
    def idle(self) -> bool:
        return not self.handshaking and not self.buffer


def default_max_connections() -> int:
    """Half the process's descriptor limit (the rest is for cameras, clips, sinks), 8 to 1000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(1000, (soft if soft != resource.RLIM_INFINITY else 2000) // 2))


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' (loopback) -> (host, port).

    >>> parse_address("9108"), parse_address(":9108"), parse_address("0.0.0.0:9108"), parse_address("[::1]:0")
    (('127.0.0.1', 9108), ('127.0.0.1', 9108), ('0.0.0.0', 9108), ('::1', 0))
    """
    match = re.fullmatch(r"(?:(\[[0-9A-Fa-f:.]+\]|[^:\[\]]*):)?(\d{1,5})", text.strip())
    if not match or int(match.group(2)) > 65535:
        raise LrcnError(f"metrics address must be HOST:PORT, :PORT or PORT, got {text!r}")
    host = (match.group(1) or "").strip("[]") or "127.0.0.1"
    return host, int(match.group(2))


class HttpServer:
    def __init__(
        self,
        address: tuple[str, int],
        respond: Respond,
        *,
        tls: ssl.SSLContext | None = None,
        workers: int = 8,
        idle_timeout_s: float = 75.0,
        header_timeout_s: float = 10.0,
        write_timeout_s: float = 10.0,
        max_connections: int | None = None,
    ):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.create_server(address, family=family, backlog=BACKLOG)
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._respond, self._tls = respond, tls
        self.idle_timeout_s, self.header_timeout_s = idle_timeout_s, header_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections or default_max_connections()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._connections: set[Connection] = set()
        self._returned: collections.deque[Connection] = collections.deque()
        self._work: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._closed = False
        self._accepting, self._resume_at, self._backoff_s, self._warned_at = True, 0.0, 0.0, -1e9
        self._threads = [threading.Thread(target=self._loop, name="service-http", daemon=True)] + [
            threading.Thread(target=self._worker, name=f"service-http-{i}", daemon=True) for i in range(workers)
        ]

    def start(self) -> HttpServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        for _ in self._threads[1:]:
            self._work.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        if not self._threads[0].is_alive():  # never started (else the loop closed them on its way out)
            self._close_all()

    # The selector thread: everything below until _worker runs only there.

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._wait_s()):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._take_returned()
                    elif not key.data.closed:
                        self._on_ready(key.data)
                self._expire()
        except Exception:  # noqa: BLE001 - the port must say why it died
            log.exception("the HTTP port stopped")
        finally:
            self._close_all()

    def _wait_s(self) -> float:
        now, soonest = time.monotonic(), 1.0
        if not self._accepting:
            soonest = min(soonest, self._resume_at - now)
        for conn in self._connections:
            if conn.registered:  # a worker's connection has no deadline here
                soonest = min(soonest, conn.deadline - now)
        return max(0.0, soonest)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            if len(self._connections) >= self.max_connections and not self._evict_waiting():
                self._pause_accepting()
                return
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in OUT_OF_DESCRIPTORS:
                    self._warn(
                        f"out of file descriptors ({os.strerror(err.errno)}): closing idle connections "
                        f"and pausing new ones"
                    )
                    if not self._evict_waiting():
                        self._pause_accepting()
                    return
                if err.errno in CLIENT_GAVE_UP:
                    continue
                self._warn(f"accept failed: {os.strerror(err.errno or 0)}; pausing new connections")
                self._pause_accepting()
                return
            self._backoff_s = 0.0
            self._add(sock, peer)

    def _add(self, sock: socket.socket, peer: tuple) -> None:
        now = time.monotonic()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:
            sock.close()
            return
        conn = Connection(
            sock,
            peer,
            deadline=now + (self.header_timeout_s if self._tls else self.idle_timeout_s),
            handshaking=self._tls is not None,
        )
        self._connections.add(conn)
        self._selector.register(sock, selectors.EVENT_READ, conn)
        conn.registered = True

    def _on_ready(self, conn: Connection) -> None:
        if conn.handshaking and isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock.do_handshake()
            except ssl.SSLWantReadError:
                self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
                return
            except ssl.SSLWantWriteError:
                self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
                return
            except (OSError, ValueError) as err:  # plain HTTP, a client that distrusts us, a scanner
                log.debug("TLS handshake with %s failed: %s", conn.peer, err)
                self._close(conn)
                return
            conn.handshaking = False
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            conn.deadline = time.monotonic() + self.idle_timeout_s
        self._read(conn)

    def _read(self, conn: Connection) -> None:
        # The end of the head is looked for in the new bytes only (and the 3 before them), so a
        # client that sends its head a byte at a time costs linear time, not quadratic.
        search_from = max(0, len(conn.buffer) - 3)
        while True:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            if not conn.buffer:
                conn.deadline = time.monotonic() + self.header_timeout_s
            conn.buffer += data
            if (
                conn.head_end is not None
                or HEAD_END.search(conn.buffer, search_from)
                or len(conn.buffer) > MAX_HEAD_BYTES
            ):
                break
        self._dispatch_if_complete(conn, search_from)

    def _dispatch_if_complete(self, conn: Connection, search_from: int = 0) -> bool:
        if conn.head_end is None:
            end = HEAD_END.search(conn.buffer, search_from)
            if end is None and len(conn.buffer) <= MAX_HEAD_BYTES:
                return False
            conn.head_end = None if end is None or end.end() > MAX_HEAD_BYTES else end.end()
        head_end = conn.head_end
        if head_end is not None and conn.buffer.startswith(BODY_METHODS):
            declared = CONTENT_LENGTH.search(conn.buffer, 0, head_end)
            length = int(declared.group(1)) if declared else 0
            if 0 < length <= MAX_BODY_BYTES and len(conn.buffer) < head_end + length:
                return False  # the body is on its way (within header_timeout_s)
            if length <= MAX_BODY_BYTES:
                head_end += length
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = False
        conn.head_end = None
        if head_end is None:
            head, conn.buffer = None, bytearray()
        else:
            head, conn.buffer = bytes(conn.buffer[:head_end]), conn.buffer[head_end:]
        self._work.put((conn, head))
        return True

    def _take_returned(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._returned:
            conn = self._returned.popleft()
            if conn.closed:
                self._connections.discard(conn)
                continue
            now = time.monotonic()
            conn.deadline = now + (self.header_timeout_s if conn.buffer else self.idle_timeout_s)
            if self._dispatch_if_complete(conn):
                continue
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            conn.registered = True
            if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                self._read(conn)  # bytes TLS already decrypted never make the socket readable again

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._connections if c.deadline <= now and c.registered]:
            self._close(conn)
        if not self._accepting and now >= self._resume_at and not self._stopping.is_set():
            self._accepting = True
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")

    def _evict_waiting(self) -> bool:
        """Close the connection that has waited longest for its client: an idle one if any, else
        one still sending its head (a well-behaved client sends it in one round trip)."""
        waiting = [c for c in self._connections if c.registered]
        if not waiting:
            return False
        self._close(min(waiting, key=lambda c: (not c.idle, c.deadline)))
        return True

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self._selector.unregister(self._listener)
        self._backoff_s = min(1.0, max(0.05, self._backoff_s * 2))
        self._resume_at = time.monotonic() + self._backoff_s

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("HTTP port: %s", message)

    def _close(self, conn: Connection) -> None:
        self._connections.discard(conn)
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = False
        conn.closed = True
        conn.sock.close()

    def _close_all(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._connections):
            if conn.registered:  # the others are a worker's, which closes them
                self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or stopped

    # Worker threads.

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            conn, head = item
            close = True
            try:
                answer, close = self._respond(head, conn.peer)
                conn.sock.settimeout(self.write_timeout_s)
                conn.sock.sendall(answer)
                conn.sock.setblocking(False)
            except OSError as err:  # the client went away, or did not read its answer in time
                log.debug("answer to %s not sent: %s", conn.peer, err)
                close = True
            except Exception:  # noqa: BLE001 - one bad request must not cost a worker
                log.exception("answering %s failed", conn.peer)
                close = True
            if close or self._stopping.is_set():
                self._shut(conn)
            self._returned.append(conn)
            self._wake()

    @staticmethod
    def _shut(conn: Connection) -> None:
        conn.closed = True
        try:  # FIN first: a close with unread bytes would reset, and the client could lose the answer
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.sock.close()
