"""Logging for the runtime: the standard library's `logging`, as text or one JSON object a line.

Every module logs to a child of the `lrcn` logger and names the stream it speaks of in
`extra={"stream": id}`, so a log shipper can filter by camera. Both formats pass what they write
through `stream.credentials.redact` (message, arguments, `extra=` fields and tracebacks), so a
camera's password never reaches a log line, whoever logged it:

>>> import io
>>> out = io.StringIO()
>>> configure_logging("info", "json", stream=out)
>>> logging.getLogger("lrcn.pipeline").info("connected", extra={"stream": "door"})
>>> record = json.loads(out.getvalue())
>>> record["level"], record["logger"], record["stream"], record["message"]
('info', 'lrcn.pipeline', 'door', 'connected')
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from lrcn.stream.credentials import redact, redact_value
from lrcn.stream.errors import LrcnError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Attributes every LogRecord has; anything else on a record came through `extra=` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _timestamp(created: float) -> str:
    """UTC, ISO 8601 with milliseconds: sorts as text and reads the same in every time zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`2026-11-30T12:00:00.123Z info    lrcn.pipeline [door] connected: ...`: for people; the
    message says it all, so of the `extra=` fields only the stream is shown."""

    def format(self, record: logging.LogRecord) -> str:
        stream = getattr(record, "stream", None)
        line = (
            f"{_timestamp(record.created)} {record.levelname.lower():<7} {record.name}"
            f"{f' [{stream}]' if stream else ''} {record.getMessage()}"
        )
        if record.exc_info:
            line += " | " + " ".join(self.formatException(record.exc_info).split())
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(redact_value(entry))


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the `lrcn` loggers to `stream` (stderr) at `level`, as `fmt`; replaces any earlier setup."""
    if level not in LEVELS:
        raise LrcnError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise LrcnError(f"log format must be text or json, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger("lrcn")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
