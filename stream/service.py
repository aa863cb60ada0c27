"""The service surface of a running pipeline: one opt-in HTTP port for the ops stack and for people.

    GET /metrics        Prometheus text format (stream.metrics)
    GET /healthz        200 while the inference loop has turned within 2 s, else 503
    GET /readyz         200 when every live stream is connected and every file stream is
                        connected or ended normally, else 503 with the streams that are not
    GET /               the status page: a tile per stream, and event review (stream/status_page.html)
    GET /api/streams    what the page shows, as JSON
    GET /frame/ID.jpg   the stream's newest sampled frame
    GET /api/events...  stored events, their snapshots and clips, a stream's latest frame (stream.event_api)
    POST /api/streams, DELETE /api/streams/ID   add or remove a stream (stream.stream_api; needs a password)

>>> service = ServiceServer(pipeline, "127.0.0.1:9108").start()                   # doctest: +SKIP
>>> urllib.request.urlopen(service.url + "/healthz").status                      # doctest: +SKIP
200

The server runs in its own threads (stream.httpd: one for every connection's I/O, a fixed pool
for answers) and only reads the pipeline (stats, histograms, the newest frame); a scrape never
waits for the inference thread, so /healthz can say it is stuck. Every path answers only a known
Host and, with a web-config file (stream.webconfig), only over TLS and with a password.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Sequence
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from prometheus_client.exposition import choose_encoder

from lrcn.stream import event_api, stream_api
from lrcn.stream.credentials import redact
from lrcn.stream.errors import LrcnError
from lrcn.stream.httpd import MAX_BODY_BYTES, HttpServer, parse_address  # noqa: F401 - parse_address: its old home
from lrcn.stream.metrics import pipeline_registry
from lrcn.stream.snapshots import encode_jpeg
from lrcn.stream.stats import plain
from lrcn.stream.webconfig import BasicAuth, WebConfig, load_web_config

log = logging.getLogger("lrcn.service")
STATUS_PAGE = Path(__file__).with_name("status_page.html")
HEALTH_MAX_AGE_S = 2.0


class _Request(BaseHTTPRequestHandler):
    """One request: its head in, its whole answer out (`answer`), for stream.httpd's workers."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus scrapes
    default_request_version = "HTTP/1.0"  # an unparsable request line still gets a status line
    server_version = "lrcn"

    def __init__(self, head: bytes, client_address: tuple, service: ServiceServer):  # not super's: no socket here
        self.client_address, self.service = client_address, service
        self.rfile, self.wfile = io.BytesIO(head), io.BytesIO()
        self.close_connection = True
        self.headers = HTTPMessage()  # none until the head parses
        self.handle_one_request()
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # its body is not read, so the connection cannot carry another request
        self.answer = self.wfile.getvalue()

    def version_string(self) -> str:
        return self.server_version  # no Python version: it only helps an attacker

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server interface
        self.do_GET()

    def _admitted(self) -> bool:
        service = self.service
        if not service.host_allowed(self.headers.get("Host"), self.request_version):
            self._json(HTTPStatus.FORBIDDEN, {"error": "this Host is not served here (see allowed_hosts)"})
            return False
        if service.auth is not None and not service.auth.check(self.headers.get("Authorization")):
            self._json(
                HTTPStatus.UNAUTHORIZED,
                {"error": "user and password needed"},
                {"WWW-Authenticate": 'Basic realm="lrcn", charset="UTF-8"'},
            )
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        if self._admitted():
            self._answer(self._route)

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        if self._admitted():
            self._answer(self._write)

    do_DELETE = do_POST  # noqa: N815 - the http.server interface

    def _write(self, path: str) -> None:
        """POST and DELETE: only with the web-config's credentials, which `_admitted` checked."""
        if self.service.auth is None:
            self._json(
                HTTPStatus.FORBIDDEN, {"error": "changes need a password: serve with --web-config (basic_auth_users)"}
            )
            return
        length = self.headers.get("Content-Length", "0").strip() or "0"
        body = self.rfile.read(int(length)) if length.isdigit() and int(length) <= MAX_BODY_BYTES else None
        self._send(stream_api.answer(self.service.pipeline, self.command, path, self.headers.get("Content-Type"), body))

    def _answer(self, route) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            route(path)
        except Exception as err:  # noqa: BLE001 - one bad request must not cost the scraper its connection
            log.exception("%s failed", path)
            self.wfile = io.BytesIO()
            self._headers_buffer: list[bytes] = []
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": redact(f"{type(err).__name__}: {err}")})

    def _route(self, path: str) -> None:
        service = self.service
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(HTTPStatus.OK, encoder(service.registry), content_type)
        elif path == "/healthz":
            alive, why = service.pipeline.health(HEALTH_MAX_AGE_S)
            self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": alive, "why": why})
        elif path == "/readyz":
            not_ready = service.pipeline.readiness()
            self._json(
                HTTPStatus.SERVICE_UNAVAILABLE if not_ready else HTTPStatus.OK,
                {"ready": not not_ready, "not_ready": not_ready},
            )
        elif path in ("/", "/index.html"):
            self._reply(HTTPStatus.OK, STATUS_PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/api/streams":
            self._json(HTTPStatus.OK, service.overview())
        elif event_api.routes(path):
            self._send(event_api.answer(service.pipeline, path, urlsplit(self.path).query, self.headers.get("Range")))
        elif match := re.fullmatch(r"/frame/(.+)\.jpg", path):
            image = service.pipeline.latest_image(match.group(1))
            if image is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no frame from {match.group(1)!r} yet"})
            else:
                # quality 95: OpenCV's default, what this page always served
                self._reply(HTTPStatus.OK, encode_jpeg(image, quality=95), "image/jpeg")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def _send(self, reply: event_api.Reply) -> None:
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self._reply(reply.status, body, reply.content_type, reply.headers)

    def _json(self, status: HTTPStatus, body: dict, headers: dict | None = None) -> None:
        self._reply(status, json.dumps(body).encode(), "application/json", headers)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def end_headers(self) -> None:
        for name, value in self.service.extra_headers.items():
            self.send_header(name, value)
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")  # else an HTTP/1.0 client waits for the close
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server interface
        log.debug("%s %s", self.client_address[0], format % args)


def answer_too_long(service: ServiceServer) -> bytes:
    body = b'{"error": "request head over 64 KiB"}'
    headers = "".join(f"{name}: {value}\r\n" for name, value in service.extra_headers.items())
    return (
        f"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: lrcn\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    ).encode() + body


def split_host(header: str) -> str:
    """The host of a Host header, without port, brackets or a final dot, in lower case.

    >>> split_host("Example.COM.:9108"), split_host("[::1]:80"), split_host("127.0.0.1")
    ('example.com', '::1', '127.0.0.1')
    """
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    host, colon, port = header.rpartition(":")
    return (host if colon and port.isdigit() else header).rstrip(".")


def host_name(text: str) -> str:
    """A configured host name or address as split_host gives it from a Host header.

    >>> host_name("Cam.Example."), host_name("cam.example:9108"), host_name("::1"), host_name("[::1]")
    ('cam.example', 'cam.example', '::1', '::1')
    """
    bare = text.strip().strip("[]")
    return bare.lower() if is_ip(bare) else split_host(text)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    return host.lower() == "localhost" or (is_ip(host) and ipaddress.ip_address(host).is_loopback)


def default_allowed_hosts(bound_host: str) -> frozenset[str]:
    """The names a browser may call this port by: localhost, the bound name and the machine's own
    names (any IP address is allowed besides; see ServiceServer)."""
    names = {"localhost", bound_host, socket.gethostname()}
    return frozenset(host_name(n) for n in names if n)


@functools.lru_cache(maxsize=1)
def fully_qualified_name() -> str:
    """This machine's FQDN, looked up once, at the first Host that needs it: the look-up asks DNS,
    which on a box without it can take seconds that start-up should not wait for."""
    return split_host(socket.getfqdn())


class ServiceServer:
    """Serves one pipeline's metrics, health and status page on `address` until `stop()`.

    web_config: an exporter-toolkit web-config file (stream.webconfig): TLS and basic auth.
    allowed_hosts: the Host names answered (DNS rebinding gets 403); None: localhost, the bound
    address and this machine's names, and any IP address (a rebinding attack needs a name);
    ["*"]: any. timeouts and workers: stream.httpd.HttpServer's.
    """

    def __init__(
        self,
        pipeline,
        address: str,
        web_config: str | Path | None = None,
        allowed_hosts: Sequence[str] | None = None,
        **server_options,
    ):
        self.pipeline = pipeline
        self.registry = pipeline_registry(pipeline)
        web = load_web_config(web_config) if web_config else WebConfig()
        self.auth = BasicAuth(web.users) if web.users else None
        self.extra_headers = web.headers
        host, port = parse_address(address)
        tls = web.tls.context() if web.tls else None
        try:
            self._server = HttpServer((host, port), self._respond, tls=tls, **server_options)
        except OSError as err:
            raise LrcnError(f"cannot serve metrics on {address}: {err.strerror or err}") from None
        bound_host, bound_port = self._server.address
        if allowed_hosts is None:
            self._names, self._default_hosts = default_allowed_hosts(bound_host), True
        else:
            self._names = frozenset(host_name(h) for h in allowed_hosts)
            self._default_hosts = False
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        if not is_loopback(host) and self.auth is None:
            log.warning(
                "the HTTP port %s is open to the network without a password: anyone who reaches it sees "
                "the live frames, the stream list and the model; lock it with --web-config "
                "(basic_auth_users, tls_server_config)",
                self.url,
                extra={"url": self.url},
            )
        elif not is_loopback(host) and tls is None:
            log.warning(
                "the HTTP port %s asks for a password over plain HTTP: add tls_server_config to the "
                "web config so it does not cross the network in clear",
                self.url,
                extra={"url": self.url},
            )

    def host_allowed(self, header: str | None, version: str) -> bool:
        if header is None:
            return version == "HTTP/1.0"  # HTTP/1.1 requires Host; a browser always sends it
        host = split_host(header)
        return (
            "*" in self._names
            or host in self._names
            or self._default_hosts
            and (is_ip(host) or host == fully_qualified_name())
        )

    def _respond(self, head: bytes | None, peer: tuple) -> tuple[bytes, bool]:
        if head is None:
            return answer_too_long(self), True
        request = _Request(head, peer, self)
        return request.answer, request.close_connection

    def start(self) -> ServiceServer:
        self._server.start()
        log.info("metrics, health and status page on %s", self.url, extra={"url": self.url})
        return self

    def stop(self) -> None:
        self._server.stop()

    def overview(self) -> dict:
        spec = self.pipeline.bundle.meta.spec
        return {
            "model": {
                "classes": list(spec.classes),
                "input_size": list(spec.input_size),
                "clip_length": spec.clip_length,
                "fps": spec.fps,
                "backend": self.pipeline.options.backend,
            },
            "endpoint": self.pipeline.endpoint,
            "streams": plain(self.pipeline.overview()),
        }

    def __enter__(self) -> ServiceServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
