"""Adding and removing streams over HTTP (stream.service routes POST and DELETE here, and only with
the web-config's basic-auth credentials):

    POST /api/streams        body: one [[stream]] table as JSON, the keys a deployment file takes,
                             checked by the same schema -> 201 {"added": [id], ...}
    DELETE /api/streams/ID   -> 200 {"removed": [ID], ...}; the stream's open event ends and its
                             final status is sent, as a reload that drops it

The change is the pipeline's `reconfigure`, as a SIGHUP reload makes it: the other streams go on
untouched. A later reload of the deployment file serves what the file says, so a stream added here
lasts until then. `${NAME}` is not expanded and `password_file` is refused: a request must not
make the recognizer read its environment or a file of its own into a URL it then connects to.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from lrcn.stream.deploy import stream_from_table
from lrcn.stream.errors import LrcnError
from lrcn.stream.event_api import Reply

REFUSED_KEYS = ("password_file",)


def answer(pipeline, method: str, path: str, content_type: str | None, body: bytes | None) -> Reply:
    if method == "POST" and path == "/api/streams":
        return _add(pipeline, content_type, body)
    if method == "DELETE" and (match := re.fullmatch(r"/api/streams/([^/]+)", path)):
        return _remove(pipeline, match.group(1))
    if method == "POST" and re.fullmatch(r"/api/streams/[^/]+", path) or method == "DELETE" and path == "/api/streams":
        return _error(
            HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: POST /api/streams adds, DELETE /api/streams/ID removes"
        )
    return _error(HTTPStatus.NOT_FOUND, f"no page {path} for {method}")


def _add(pipeline, content_type: str | None, body: bytes | None) -> Reply:
    # A JSON content type also keeps a browser's cross-site form (which cannot send one without
    # a preflight this port never allows) from adding a stream with a cached password.
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return _error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "the body must be a JSON object (Content-Type: application/json): one [[stream]] table",
        )
    if body is None:
        return _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is missing or too long")
    try:
        table = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return _error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {err}")
    if not isinstance(table, dict):
        return _error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object: one [[stream]] table")
    refused = [key for key in REFUSED_KEYS if key in table]
    if refused:
        return _error(HTTPStatus.BAD_REQUEST, f"{', '.join(refused)} cannot be set over HTTP; use the deployment file")
    try:
        config = stream_from_table(table)
        with pipeline.reconfigure_lock:
            running = dict(pipeline.configs)
            if config.id is not None and config.id in running:
                return _error(HTTPStatus.CONFLICT, f"a stream {config.id!r} is already served; DELETE it first")
            changed = pipeline.reconfigure([*running.values(), config])
    except LrcnError as err:
        return _error(HTTPStatus.BAD_REQUEST, str(err))
    return Reply(HTTPStatus.CREATED, changed)


def _remove(pipeline, stream: str) -> Reply:
    with pipeline.reconfigure_lock:
        running = dict(pipeline.configs)
        if stream not in running:
            return _error(HTTPStatus.NOT_FOUND, f"no stream {stream!r}")
        if len(running) == 1:
            return _error(HTTPStatus.CONFLICT, f"{stream!r} is the last stream; a recognizer serves at least one")
        try:
            changed = pipeline.reconfigure([config for name, config in running.items() if name != stream])
        except LrcnError as err:
            return _error(HTTPStatus.BAD_REQUEST, str(err))
    return Reply(HTTPStatus.OK, changed)


def _error(status: HTTPStatus, message: str) -> Reply:
    return Reply(status, {"error": " ".join(message.split())})
