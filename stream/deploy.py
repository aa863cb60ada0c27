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

Any mistake (bad TOML, an unknown key, a value of the wrong type) is one LrcnError line that
names the file and, where it can be found, the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

from lrcn.stream.clips import RecordRules, check_record_dir
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from lrcn.stream.novelty import parse_novelty
from lrcn.stream.pipeline import StreamConfig
from lrcn.stream.service import parse_address
from lrcn.stream.sinks import sink_types
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.sources import SourceOptions, check_options
from lrcn.stream.sources.pyav import check_decoder
from lrcn.stream.windows import WindowConfig

_NUMBER = (int, float)
# Expected type of each key; the stream keys are StreamConfig's fields.
SETTING_TYPES = {"endpoint": str, "connect": str, "metrics": str, "backend": str, "threads": int, "curve_keys": str, "curve_client": str,
                 "top_k": int,
                 "stats_interval_s": _NUMBER, "max_batch": int, "gather_ms": _NUMBER, "decoder": str,
                 "rtsp_transport": str, "open_timeout_s": _NUMBER, "read_timeout_s": _NUMBER,
                 "backoff_max_s": _NUMBER, "max_attempts": int}
STREAM_TYPES = {"source": str, "id": str, "fps": _NUMBER, "crop": list, "decoder": str, "mode": str, "hop": int,
                "reset_every": int, "smooth": str, "backend": str, "pace": bool, "loop": bool, "events": dict,
                "record": dict, "novelty": (str, int, float)}
# A stream's `events = { ... }` table: EventRules' fields.
EVENT_TYPES = {"min_score": _NUMBER, "min_duration_s": _NUMBER, "cooldown_s": _NUMBER, "classes": list, "ignore": list,
               "update_s": _NUMBER}
assert set(EVENT_TYPES) == {f.name for f in fields(EventRules)}
# A stream's `record = { ... }` table: RecordRules' fields.
RECORD_TYPES = {"dir": str, "pre_s": _NUMBER, "post_s": _NUMBER, "max_gb": _NUMBER}
assert set(RECORD_TYPES) == {f.name for f in fields(RecordRules)}
# The settings that are capture settings for every stream (SourceOptions' fields).
SOURCE_SETTINGS = ("decoder", "rtsp_transport", "open_timeout_s", "read_timeout_s", "backoff_max_s", "max_attempts")
assert set(STREAM_TYPES) == {f.name for f in fields(StreamConfig)}


@dataclass(frozen=True)
class Deployment:
    path: Path
    settings: dict          # top-level keys of SETTING_TYPES that the file sets
    streams: list[StreamConfig]


def load_deployment(path: str | Path) -> Deployment:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise LrcnError("reading a deployment file needs Python 3.11+ or `pip install tomli`") from None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LrcnError(f"cannot read deployment file {path}: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LrcnError(f"{path}: not valid TOML: {err}") from None
    return parse_deployment(data, path, text)


def parse_deployment(data: dict, path: Path, text: str = "") -> Deployment:
    def fail(message: str, key: str | None = None, table: int | None = None, kind: str = "stream") -> LrcnError:
        line = _line_of(text, key, table, kind) if key else None
        return LrcnError(f"{path}{f':{line}' if line else ''}: {message}")

    settings = {k: v for k, v in data.items() if k not in ("stream", "sink")}
    _check(settings, SETTING_TYPES, "", fail)
    sinks = data.get("sink", [])
    if not isinstance(sinks, list) or not all(isinstance(t, dict) for t in sinks):
        raise fail("'sink' must be [[sink]] tables", "sink")
    for number, table in enumerate(sinks):
        if table.get("type") not in sink_types():
            raise fail(f"[[sink]] #{number + 1}: unknown sink type {table.get('type')!r} "
                       f"(known: {', '.join(sink_types())})", "type", number, "sink")
    if sinks:
        settings["sinks"] = sinks
    if "metrics" in settings:
        try:
            parse_address(settings["metrics"])
        except LrcnError as err:
            raise fail(str(err), "metrics") from None
    for key in SOURCE_SETTINGS:
        if key in settings:
            try:
                check_options(SourceOptions(**{key: settings[key]}))
                if key == "decoder":
                    check_decoder(settings[key])
            except LrcnError as err:
                raise fail(str(err), key) from None
    tables = data.get("stream", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise fail("'stream' must be [[stream]] tables", "stream")
    streams = []
    for number, table in enumerate(tables):
        where = f" in [[stream]] #{number + 1}"
        _check(table, STREAM_TYPES, where, lambda m, k=None, n=number: fail(m, k, n))
        if "source" not in table:
            raise fail(f"missing key 'source'{where}")
        config = StreamConfig(**{**table, "crop": tuple(table["crop"]) if "crop" in table else None,
                                 "events": _event_rules(table.get("events"), number, lambda m: fail(m, "events", number)),
                                 "record": _record_rules(table.get("record"), number, lambda m: fail(m, "record", number))})
        checks = {None: lambda: WindowConfig(config.mode, config.hop, config.reset_every),
                  "smooth": lambda: parse_smoothing(config.smooth),
                  "fps": lambda: check_options(SourceOptions(fps=config.fps)),
                  "crop": lambda: check_options(SourceOptions(crop=config.crop)),
                  "decoder": lambda: config.decoder is None or check_decoder(config.decoder),
                  "novelty": lambda: parse_novelty(config.novelty)}
        for key, check in checks.items():
            try:
                check()
            except LrcnError as err:
                raise fail(f"{err}{where}", key, number) from None
        streams.append(config)
    if not streams:
        raise fail("no [[stream]] tables: nothing to serve")
    return Deployment(path, settings, streams)


def _event_rules(table: dict | None, number: int, fail) -> EventRules | None:
    """A [[stream]]'s `events` table as EventRules; `fail(message)` makes the error to raise."""
    if table is None:
        return None
    where = f" in the events of [[stream]] #{number + 1}"
    _check(table, EVENT_TYPES, where, lambda message, key=None: fail(message))
    for key in ("classes", "ignore"):
        if not all(isinstance(name, str) for name in table.get(key, [])):
            raise fail(f"events {key} must be a list of class names{where}")
    try:
        return EventRules(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})
    except LrcnError as err:
        raise fail(f"events: {err}{where}") from None


def _record_rules(table: dict | None, number: int, fail) -> RecordRules | None:
    """A [[stream]]'s `record` table as RecordRules, its dir made and checked writable."""
    if table is None:
        return None
    where = f" in the record of [[stream]] #{number + 1}"
    _check(table, RECORD_TYPES, where, lambda message, key=None: fail(message))
    if "dir" not in table:
        raise fail(f"missing key 'dir' (where clips go){where}")
    try:
        rules = RecordRules(**table)
        check_record_dir(rules.dir)
    except LrcnError as err:
        raise fail(f"record: {err}{where}") from None
    return rules


def _check(table: dict, types: dict, where: str, fail) -> None:
    for key, value in table.items():
        if key not in types:
            raise fail(f"unknown key {key!r}{where} (known: {', '.join(types)})", key)
        expected = types[key]
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            name = {str: "a string", int: "an integer", bool: "true or false",
                    STREAM_TYPES["novelty"]: '"off" or a number'}.get(expected, "a number")
            raise fail(f"{key!r}{where} must be {name}, got {value!r}", key)


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
