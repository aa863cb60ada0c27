"""The service surface of a running pipeline: one opt-in HTTP port for the ops stack and for people.

    GET /metrics        Prometheus text format (stream.metrics)
    GET /healthz        200 while the inference loop has turned within 2 s, else 503
    GET /readyz         200 when every live stream is connected and every file stream is
                        connected or ended normally, else 503 with the streams that are not
    GET /               the status page: a tile per stream (stream/status_page.html)
    GET /api/streams    what the page shows, as JSON
    GET /frame/ID.jpg   the stream's newest sampled frame

>>> service = ServiceServer(pipeline, "127.0.0.1:9108").start()                   # doctest: +SKIP
>>> urllib.request.urlopen(service.url + "/healthz").status                      # doctest: +SKIP
200

The server runs in its own threads and only reads the pipeline (stats, histograms, the newest
frame); a scrape never waits for the inference thread, so /healthz can say it is stuck.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
from prometheus_client.exposition import choose_encoder

from lrcn.stream.errors import LrcnError
from lrcn.stream.metrics import pipeline_registry

log = logging.getLogger("lrcn.service")
STATUS_PAGE = Path(__file__).with_name("status_page.html")
HEALTH_MAX_AGE_S = 2.0


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler, service: ServiceServer):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"      # keep-alive, as Prometheus scrapes
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        service = self.server.service
        path = unquote(urlsplit(self.path).path)
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(HTTPStatus.OK, encoder(service.registry), content_type)
            elif path == "/healthz":
                alive, why = service.pipeline.health(HEALTH_MAX_AGE_S)
                self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, {"alive": alive, "why": why})
            elif path == "/readyz":
                not_ready = service.pipeline.readiness()
                self._json(HTTPStatus.SERVICE_UNAVAILABLE if not_ready else HTTPStatus.OK,
                           {"ready": not not_ready, "not_ready": not_ready})
            elif path in ("/", "/index.html"):
                self._reply(HTTPStatus.OK, STATUS_PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/streams":
                self._json(HTTPStatus.OK, service.overview())
            elif match := re.fullmatch(r"/frame/(.+)\.jpg", path):
                image = service.pipeline.latest_image(match.group(1))
                if image is None:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no frame from {match.group(1)!r} yet"})
                else:
                    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    if not ok:
                        raise RuntimeError(f"cannot encode the frame of {match.group(1)!r} as JPEG")
                    self._reply(HTTPStatus.OK, jpeg.tobytes(), "image/jpeg")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as err:  # noqa: BLE001 - one bad request must not cost the scraper its connection
            log.exception("%s failed", path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(err).__name__}: {err}"})

    def _json(self, status: HTTPStatus, body: dict) -> None:
        self._reply(status, json.dumps(body).encode(), "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server interface
        log.debug("%s %s", self.address_string(), format % args)


class ServiceServer:
    """Serves one pipeline's metrics, health and status page on `address` until `stop()`."""

    def __init__(self, pipeline, address: str):
        self.pipeline = pipeline
        self.registry = pipeline_registry(pipeline)
        host, port = parse_address(address)
        try:
            self._server = _Server((host, port), _Handler, self)
        except OSError as err:
            raise LrcnError(f"cannot serve metrics on {address}: {err.strerror or err}") from None
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="service-http", daemon=True)

    def start(self) -> ServiceServer:
        self._thread.start()
        log.info("metrics, health and status page on %s", self.url, extra={"url": self.url})
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def overview(self) -> dict:
        spec = self.pipeline.bundle.meta.spec
        return {"model": {"classes": list(spec.classes), "input_size": list(spec.input_size),
                          "clip_length": spec.clip_length, "fps": spec.fps, "backend": self.pipeline.options.backend},
                "endpoint": self.pipeline.endpoint, "streams": self.pipeline.overview()}

    def __enter__(self) -> ServiceServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
