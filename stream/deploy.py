"""A deployment file: the streams one recognizer serves, and its settings, in TOML.

    endpoint = "tcp://0.0.0.0:5556"      # optional settings, each also a `lrcn serve` flag
                                         # (or connect = "tcp://proxy:5557": publish into an lrcn proxy)
    metrics = "127.0.0.1:9108"           # Prometheus /metrics, /healthz, /readyz and the status page
    backend = "onnxruntime-int8"
    decoder = "auto"                     # every stream's default; a stream may set its own
    backoff_max_s = 30

    [[stream]]
    id = "door"
    source = "rtsp://10.0.0.5:8554/live"
    crop = [640, 0, 1280, 1080]          # x, y, width, height in source pixels
    mode = "exact"
    hop = 4
    smooth = "hysteresis:3"
    events = { min_score = 0.6, min_duration_s = 1.0, cooldown_s = 5, ignore = ["background"] }
    record = { dir = "/var/lib/lrcn/clips", pre_s = 5, post_s = 5, max_gb = 20 }   # an MP4 per event
    novelty = "off"                      # the open-set guard: "off", a threshold, or (unset) the bundle's

    [[stream]]
    source = "replay.mp4"
    loop = true

    [[sink]]                             # more sinks beside ZeroMQ (stream.sinks): mqtt, jsonl, zeromq
    type = "mqtt"
    url = "mqtt://broker.lan:1883/lrcn"

Every key, its type, range and default is declared once, in stream/settings.py (docs/reference/settings.md
lists them). Any string may use `${NAME}`, the environment variable NAME; a [[stream]]'s
`password_file` gives its source URL's password. Any mistake (bad TOML, an unknown key, a value
of the wrong type or out of range, an unset variable, a bad or repeated stream id) is one LrcnError
line that names the file and, where it can be found, the line; nothing of the file is applied.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lrcn.stream import settings as schema
from lrcn.stream.recording import RecordRules, check_record_dir
from lrcn.stream.encoders import BACKENDS
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from lrcn.stream.novelty import parse_novelty
from lrcn.stream.pipeline import StreamConfig
from lrcn.stream.httpd import parse_address
from lrcn.stream.sinks import sink_types
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.sources import SourceOptions, check_options
from lrcn.stream.sources.pyav import check_decoder
from lrcn.stream.windows import WindowConfig

SOURCE_SETTINGS = schema.SOURCE_SETTINGS
# The schema's [[stream]] keys are StreamConfig's fields, and password_file, which folds into source.
assert {f.name for f in fields(StreamConfig)} == set(schema.Stream.__struct_fields__) - {"password_file"}
assert {f.name for f in fields(EventRules)} == set(schema.Events.__struct_fields__)
assert {f.name for f in fields(RecordRules)} == set(schema.Record.__struct_fields__)


@dataclass(frozen=True)
class Deployment:
    path: Path
    settings: dict  # the top-level settings the file sets (typed), and "sinks"
    streams: list[StreamConfig]


def load_deployment(path: str | Path) -> Deployment:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise LrcnError("reading a deployment file needs Python 3.11+ or `pip install tomli`") from None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark some editors write is not TOML
    except (OSError, UnicodeDecodeError) as err:
        raise LrcnError(f"cannot read deployment file {path}: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LrcnError(f"{path}: not valid TOML: {err}") from None
    return parse_deployment(data, path, text)


def parse_deployment(data: dict, path: Path, text: str = "") -> Deployment:
    def fail(message: str, at: tuple = ()) -> LrcnError:
        line = _line_at(text, at) if at else None
        return LrcnError(f"{path}{f':{line}' if line else ''}: {message}")

    try:
        typed = schema.convert(data, schema.Settings)
    except schema._AtPath as err:
        raise fail(err.message, err.path) from None
    settings = {key: getattr(typed, key) for key in data if key not in schema.TABLES}
    _check_settings(typed, settings, fail)
    if typed.sink:
        settings["sinks"] = typed.sink
    streams = [_stream_config(table, number, fail) for number, table in enumerate(typed.stream)]
    if not streams:
        raise fail("no [[stream]] tables: nothing to serve")
    try:
        schema.check_distinct_ids(s.id for s in streams if s.id is not None)
    except LrcnError as err:
        quoted = re.search(r"'(.*?)'", str(err))
        assert quoted is not None, "check_distinct_ids quotes the id it refuses"
        repeated = quoted[1]
        number = max(n for n, s in enumerate(streams) if s.id == repeated)
        raise fail(str(err), ("stream", number, "id")) from None
    return Deployment(path, settings, streams)


def _check_settings(typed: schema.Settings, settings: dict[str, Any], fail) -> None:
    """The top-level checks that need more than the schema: sink types, addresses, registries."""
    for number, table in enumerate(typed.sink):
        if table.get("type") not in sink_types():
            raise fail(
                f"[[sink]] #{number + 1}: unknown sink type {table.get('type')!r} (known: {', '.join(sink_types())})",
                ("sink", number, "type"),
            )

    def check(key: str) -> None:
        if key == "metrics":
            parse_address(settings[key])
        elif key == "backend":
            BACKENDS.get(settings[key])
        else:
            check_options(SourceOptions(**{key: settings[key]}))
            if key == "decoder":
                check_decoder(settings[key])

    for key in ("metrics", "backend", *SOURCE_SETTINGS):
        if settings.get(key) is not None:
            try:
                check(key)
            except LrcnError as err:
                raise fail(str(err), (key,)) from None


def stream_from_table(data: dict, environ=None) -> StreamConfig:
    """One [[stream]] table (a dict, as TOML or JSON gives it) as a StreamConfig, checked exactly as
    in a deployment file (`${NAME}` expanded from `environ` only if given); LrcnError, one line."""

    def fail(message: str, at: tuple = ()) -> LrcnError:
        return LrcnError(message)

    try:
        typed = schema.convert(data, schema.Stream, environ=environ)
    except schema._AtPath as err:
        raise fail(err.message) from None
    return _stream_config(typed, 0, fail)


def _stream_config(table: schema.Stream, number: int, fail) -> StreamConfig:
    """A typed [[stream]] as a StreamConfig, after the checks that need more than the schema."""
    where = f" in [[stream]] #{number + 1}"
    at = lambda key=None: ("stream", number) + ((key,) if key else ())  # noqa: E731
    source = table.source
    if table.password_file is not None:
        try:
            source = schema.with_password(source, table.password_file)
        except LrcnError as err:
            raise fail(f"{err}{where}", at("password_file")) from None
    events = None if table.events is None else EventRules(**_values(table.events, EventRules))
    record = None if table.record is None else RecordRules(**_values(table.record, RecordRules))
    config = StreamConfig(
        source=source,
        **{
            name: getattr(table, name)
            for name in table.__struct_fields__
            if name not in ("source", "password_file", "events", "record")
        },
        events=events,
        record=record,
    )
    checks = {
        None: lambda: WindowConfig(config.mode, config.hop, config.reset_every),
        "smooth": lambda: parse_smoothing(config.smooth),
        "decoder": lambda: None if config.decoder is None else check_decoder(config.decoder),
        "backend": lambda: None if config.backend is None else BACKENDS.get(config.backend),
        "novelty": lambda: parse_novelty(config.novelty),
        "record": lambda: record is None or check_record_dir(record.dir),
    }
    for key, check in checks.items():
        try:
            check()
        except LrcnError as err:
            raise fail(f"{'record: ' if key == 'record' else ''}{err}{where}", at(key)) from None
    return config


def _values(section: schema.Events | schema.Record, rules: type) -> dict[str, Any]:
    """The fields of a typed section that a rules dataclass takes, lists as tuples."""
    return {f.name: tuple(v) if isinstance(v := getattr(section, f.name), list) else v for f in fields(rules)}


def _line_at(text: str, path: tuple) -> int | None:
    """1-based line of the key at `path` (("metrics",), ("stream", 0, "hop"), ("stream", 0)): the
    key's own line, else its table's."""
    if path[0] in schema.TABLES and len(path) > 1 and isinstance(path[1], int):
        keys = [p for p in path[2:] if isinstance(p, str)]
        for key in keys[::-1]:
            if (line := _line_of(text, key, path[1], path[0])) is not None:
                return line
        return _header_line(text, path[0], path[1])
    return _line_of(text, str(path[0]), None)


def _header_line(text: str, kind: str, table: int) -> int | None:
    headers = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith(f"[[{kind}]]")]
    return headers[table] if table < len(headers) else None


def _line_of(text: str, key: str, table: int | None, kind: str = "stream") -> int | None:
    """1-based line of `key = ...` at the top level (table None) or in the table-th [[kind]]."""
    header = f"[[{kind}]]"
    section, seen_tables = -1, -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            seen_tables += stripped.startswith(header)
            section = seen_tables if stripped.startswith(header) else -2
            continue
        if (section == -1 if table is None else section == table) and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None
