"""The HTTP API of events and frames, answered on the service port (stream.service routes here):

    GET /api/events?stream=&label=&after=&before=&limit=   stored events, newest first
    GET /api/events/ID                                    one event
    GET /api/events/ID/snapshot.jpg[?frame=start][&label=1]  its best (or first) frame, label drawn on request
    GET /api/events/ID/clip.mp4                           its clip; HTTP Range (206), so a browser seeks
                                                          (an open range, `bytes=N-`, gets 8 MiB at most)
    GET /api/streams/ID/latest.jpg[?h=H]                  the stream's newest frame, full resolution or H high

`after` and `before` are Unix seconds or ISO 8601 times (UTC unless they say); `limit` 1 to 1000
(default 100). A bad parameter is a 400 with a one-line JSON error, an unknown id a 404. Files are
served only from the store's own record dir, by the relative path its row holds, never from a
path a request names. docs/reference/openapi.yaml describes it.

>>> parse_range("bytes=0-99", 1000), parse_range("bytes=900-", 1000), parse_range("bytes=-10", 1000)
((0, 99), (900, 999), (990, 999))
>>> parse_range("bytes=2000-", 1000) is UNSATISFIABLE, parse_range("items=1-2", 1000)
(True, None)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from lrcn.stream.event_store import DEFAULT_LIMIT, MAX_LIMIT, EventStore, StoredEvent, find, query_all
from lrcn.stream.events import EVENT_ID_PATTERN
from lrcn.stream.snapshots import decode_jpeg, draw_label, encode_jpeg, scale_to_height

UNSATISFIABLE = object()
MAX_HEIGHT = 4320
OPEN_RANGE_BYTES = 8 * 2**20  # an open-ended range ("bytes=0-", a <video>'s first ask) gets this much at most


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes | dict
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


class BadRequest(Exception):
    pass


def routes(path: str) -> bool:
    """Is `path` one of this module's?"""
    return (
        path == "/api/events"
        or path.startswith("/api/events/")
        or bool(re.fullmatch(r"/api/streams/[^/]+/latest\.jpg", path))
    )


def answer(pipeline, path: str, query: str, range_header: str | None = None) -> Reply:
    try:
        parameters = _parameters(query)
        if path == "/api/events":
            return _list(pipeline, parameters)
        if match := re.fullmatch(r"/api/streams/([^/]+)/latest\.jpg", path):
            return _latest(pipeline, match.group(1), parameters)
        match = re.fullmatch(r"/api/events/([^/]+)(/snapshot\.jpg|/clip\.mp4)?", path)
        if not match:
            return _error(HTTPStatus.NOT_FOUND, f"no page {path}")
        found = find(pipeline.event_stores, match.group(1)) if re.fullmatch(EVENT_ID_PATTERN, match.group(1)) else None
        if found is None:
            return _error(HTTPStatus.NOT_FOUND, f"no event {match.group(1)!r}")
        store, event = found
        if match.group(2) is None:
            _allow(parameters, ())
            return Reply(HTTPStatus.OK, describe(event))
        if match.group(2) == "/snapshot.jpg":
            return _snapshot(store, event, parameters)
        _allow(parameters, ())
        return _clip(store, event, range_header)
    except BadRequest as err:
        return _error(HTTPStatus.BAD_REQUEST, str(err))


def describe(event: StoredEvent) -> dict:
    """An event as the API shows it: its row, with the URLs of its media."""
    base = f"/api/events/{event.id}"
    return {
        **event.to_json(),
        "url": base,
        "snapshot_url": f"{base}/snapshot.jpg" if event.snapshot else None,
        "clip_url": f"{base}/clip.mp4" if event.clip else None,
    }


def parse_range(header: str, size: int):
    """A single `bytes=` range -> (first, last) inclusive; None to ignore the header (another unit,
    several ranges, malformed: RFC 9110 lets a server send the whole file); UNSATISFIABLE."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        length = int(last)
        return UNSATISFIABLE if length == 0 or size == 0 else (max(0, size - length), size - 1)
    first = int(first)
    last = size - 1 if last == "" else min(int(last), size - 1)
    if first >= size:
        return UNSATISFIABLE
    return None if last < first else (first, last)


def parse_time(name: str, text: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC if it has no offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be Unix seconds or an ISO 8601 time, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _parameters(query: str) -> dict[str, str]:
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=20)
    except ValueError:
        raise BadRequest(f"a malformed query string: {query[:80]!r}") from None
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise BadRequest(f"parameters given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in parsed.items()}


def _allow(parameters: dict, names: tuple[str, ...]) -> None:
    unknown = sorted(set(parameters) - set(names))
    if unknown:
        raise BadRequest(
            f"unknown parameters: {', '.join(unknown)}"
            + (f" (this path takes {', '.join(names)})" if names else " (this path takes none)")
        )


def _list(pipeline, parameters: dict) -> Reply:
    _allow(parameters, ("stream", "label", "after", "before", "limit"))
    filters = {name: parameters[name] or None for name in ("stream", "label") if name in parameters}
    for name in ("after", "before"):
        if parameters.get(name):
            filters[name] = parse_time(name, parameters[name])
    limit = DEFAULT_LIMIT
    if "limit" in parameters:
        if not re.fullmatch(r"\d{1,5}", parameters["limit"]) or not 1 <= int(parameters["limit"]) <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {parameters['limit']!r}")
        limit = int(parameters["limit"])
    events = [describe(event) for _, event in query_all(pipeline.event_stores, limit=limit, **filters)]
    return Reply(HTTPStatus.OK, {"events": events, "count": len(events), "limit": limit})


def _flag(parameters: dict, name: str) -> bool:
    value = parameters.get(name, "0")
    if value not in ("0", "1", "true", "false", ""):
        raise BadRequest(f"{name} must be 1 or 0, got {value!r}")
    return value in ("1", "true", "")


def _snapshot(store: EventStore, event: StoredEvent, parameters: dict) -> Reply:
    _allow(parameters, ("frame", "label"))
    frame = parameters.get("frame", "best")
    if frame not in ("best", "start"):
        raise BadRequest(f"frame must be best or start, got {frame!r}")
    path = _media_file(store, event.start_snapshot if frame == "start" else event.snapshot)
    if path is None:
        return _error(
            HTTPStatus.NOT_FOUND,
            f"event {event.id} has no {frame} snapshot (not recorded, not written yet, or deleted by retention)",
        )
    jpeg = path.read_bytes()
    if _flag(parameters, "label"):
        jpeg = encode_jpeg(draw_label(decode_jpeg(jpeg), f"{event.label} {event.peak_score:.2f}"))
    return Reply(HTTPStatus.OK, jpeg, "image/jpeg")


def _clip(store: EventStore, event: StoredEvent, range_header: str | None) -> Reply:
    path = _media_file(store, event.clip)
    if path is None:
        return _error(
            HTTPStatus.NOT_FOUND,
            f"event {event.id} has no clip (not recorded, not finished yet, or deleted by retention)",
        )
    size = path.stat().st_size
    wanted = parse_range(range_header, size) if range_header else None
    if wanted is UNSATISFIABLE:
        return Reply(
            HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
            {"error": f"the clip has {size} bytes"},
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        )
    with path.open("rb") as file:
        if wanted is None:
            return Reply(HTTPStatus.OK, file.read(), "video/mp4", {"Accept-Ranges": "bytes"})
        first, last = wanted
        # An open range: the client takes what comes and asks again.
        if range_header is not None and range_header.replace(" ", "").endswith("-"):
            last = min(last, first + OPEN_RANGE_BYTES - 1)
        file.seek(first)
        body = file.read(last - first + 1)
    return Reply(
        HTTPStatus.PARTIAL_CONTENT,
        body,
        "video/mp4",
        {"Accept-Ranges": "bytes", "Content-Range": f"bytes {first}-{last}/{size}"},
    )


def _media_file(store: EventStore, relative: str | None) -> Path | None:
    """A row's file, if it exists inside the store's dir (symbolic links resolved)."""
    path = store.media(relative)
    if path is None or store.dir is None or not path.is_file():
        return None
    root = os.path.realpath(store.dir)
    return path if os.path.commonpath([root, os.path.realpath(path)]) == root else None


def _latest(pipeline, stream: str, parameters: dict) -> Reply:
    _allow(parameters, ("h",))
    height = None
    if "h" in parameters:
        if not re.fullmatch(r"\d{1,4}", parameters["h"]) or not 1 <= int(parameters["h"]) <= MAX_HEIGHT:
            raise BadRequest(f"h must be a height in pixels from 1 to {MAX_HEIGHT}, got {parameters['h']!r}")
        height = int(parameters["h"])
    if stream not in pipeline.sources:
        return _error(HTTPStatus.NOT_FOUND, f"no stream {stream!r}")
    original = pipeline.latest_original(stream)
    image = original.rgb() if original is not None else pipeline.latest_image(stream)
    if image is None:
        return _error(HTTPStatus.NOT_FOUND, f"no frame from {stream!r} yet")
    if height is not None:
        image = scale_to_height(image, height)
    return Reply(HTTPStatus.OK, encode_jpeg(image), "image/jpeg")


def _error(status: HTTPStatus, message: str) -> Reply:
    return Reply(status, {"error": " ".join(message.split())})
