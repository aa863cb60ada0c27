"""Every setting of `lrcn serve`, declared once: its name, type, range, default and help.

One msgspec Struct per section of the deployment file (the top level, `[[stream]]`, its `events`
and `record` tables); `[[sink]]` tables are checked by their sink type (stream.sinks). The same
name is the file key, the field and, with dashes, the `lrcn serve` flag (tools/cli/serve.py builds
its flags' help and defaults from here), and docs/reference/settings.md is generated from here.

msgspec rather than pydantic: `lrcn serve --help` builds its flags from this module, and
`import msgspec` costs 11-17 ms (measured, `python -X importtime`); it has strict types,
forbidden unknown keys and ranges beside the type.

>>> check_stream_id("door-2")
'door-2'
>>> check_stream_id("door/2")
Traceback (most recent call last):
...
lrcn.stream.errors.LrcnError: stream id must be letters, digits, _ and -, 1 to 64 characters, got 'door/2'
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin
from urllib.parse import quote, urlsplit

import msgspec
from msgspec import Meta, Struct

from lrcn.stream.errors import LrcnError

# One rule for every stream id, from a file, a flag or derived from a source: an id names a
# folder (clips) and a topic segment, so nothing that could climb, split or collide.
STREAM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
STREAM_ID_RULE = "letters, digits, _ and -, 1 to 64 characters"
HOUR, DAY = 3600.0, 86400.0

StreamId = Annotated[str, Meta(pattern=STREAM_ID_PATTERN)]
# A place in a deployment file: its keys and list indexes, ("stream", 0, "events", "min_score").
KeyPath = tuple[str | int, ...]

Seconds = Annotated[float, Meta(ge=0, le=DAY)]  # finite: le bounds refuse inf, and NaN fails every bound
PositiveSeconds = Annotated[float, Meta(gt=0, le=DAY)]


def _help(text: str) -> Meta:
    return Meta(description=text)


# Each section says frozen=True again, though msgspec inherits it: type checkers read a subclass
# without it as mutable (PEP 681), and so as a frozen class's invalid subclass.
class _Section(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


Section = TypeVar("Section", bound=_Section)


class Events(_Section, frozen=True):
    """A stream's `events = { ... }`: when its predictions start, update and end events."""

    min_score: Annotated[
        Annotated[float, Meta(ge=0, le=1)],
        _help("an action counts at this score or more; below it the published label is `unknown`"),
    ] = 0.5
    min_duration_s: Annotated[Seconds, _help("seconds an action must hold to start an event")] = 0.0
    cooldown_s: Annotated[Seconds, _help("seconds before an ended action may start again")] = 0.0
    classes: Annotated[list[str], _help("only these classes start events (default: all)")] = []
    ignore: Annotated[list[str], _help("these classes never start events (a background)")] = []
    update_s: Annotated[PositiveSeconds | None, _help("an update every S seconds of an event (default: none)")] = None


class Record(_Section, frozen=True):
    """A stream's `record = { ... }`: an MP4 per event, remuxed from the camera's own packets."""

    dir: Annotated[str, Meta(min_length=1), _help("clips go to DIR/<stream>/")]
    pre_s: Annotated[Seconds, _help("seconds a clip keeps before its event")] = 5.0
    post_s: Annotated[Seconds, _help("seconds a clip keeps after its event")] = 5.0
    max_clip_s: Annotated[
        Annotated[float, Meta(gt=0, le=HOUR)],
        _help(
            "longest clip, pre- and post-roll included: an event that lasts longer has a clip of its first max_clip_s"
        ),
    ] = 120.0
    max_gb: Annotated[Annotated[float, Meta(gt=0, le=1e6)], _help("GB of clips kept at most")] = 10.0
    retain_days: Annotated[
        Annotated[float, Meta(gt=0, le=36500)] | None,
        _help("clips older than this are deleted (default: kept while space allows)"),
    ] = None
    min_free_gb: Annotated[
        Annotated[float, Meta(ge=0, le=1e6)],
        _help("GB kept free on the record dir's filesystem, deleting the oldest clips"),
    ] = 1.0


class Stream(_Section, frozen=True):
    """A `[[stream]]`: one source and how it is sampled, windowed, smoothed and recorded."""

    source: Annotated[
        str,
        Meta(min_length=1),
        _help(
            "camera index or /dev/videoN, video file, rtsp/http/tcp/udp/rtmp/srt URL, gst:PIPELINE, "
            "pattern:[FPS[:SECONDS]] or synth:[SECONDS[:SEED]]"
        ),
    ]
    id: Annotated[
        StreamId | None,
        _help(f"the stream's name in topics and folders: {STREAM_ID_RULE} (default: derived from the source)"),
    ] = None
    password_file: Annotated[
        str | None, _help("a file whose content (stripped) is the source URL's password; the user stays in source")
    ] = None
    fps: Annotated[Annotated[float, Meta(gt=0, le=1000)] | None, _help("sampling rate (default: the model's)")] = None
    crop: Annotated[
        tuple[
            Annotated[int, Meta(ge=0)],
            Annotated[int, Meta(ge=0)],
            Annotated[int, Meta(ge=1)],
            Annotated[int, Meta(ge=1)],
        ]
        | None,
        _help("x, y, width, height in source pixels: the region the model watches, before scaling"),
    ] = None
    decoder: Annotated[
        str | None,
        _help("video decoder: cpu, auto, or a hardware decoder `lrcn doctor` lists (default: the top-level decoder)"),
    ] = None
    mode: Annotated[
        Literal["exact", "continuous"],
        _help(
            "exact: every prediction is the model on one T-frame window; continuous: one LSTM state, reset at gaps "
            "and every reset_every frames"
        ),
    ] = "exact"
    hop: Annotated[
        Annotated[int, Meta(ge=1, le=10_000)],
        _help("frames between window starts (exact) or between predictions (continuous)"),
    ] = 1
    reset_every: Annotated[
        Annotated[int, Meta(ge=1, le=1_000_000)] | None, _help("continuous: restart the state every N frames")
    ] = None
    smooth: Annotated[
        str | None, _help("smooth the published label: ema:ALPHA or hysteresis:M[:MARGIN] (probabilities stay raw)")
    ] = None
    backend: Annotated[str | None, _help("encoder backend (default: the top-level backend)")] = None
    pace: Annotated[bool, _help("files: deliver frames at the file's rate, like a camera")] = True
    loop: Annotated[bool, _help("files: start again at the end")] = False
    events: Annotated[Events | None, _help("turn predictions into event/<stream> messages")] = None
    record: Annotated[Record | None, _help("write an MP4 per event (needs events)")] = None
    novelty: Annotated[
        str | float | None,
        _help('the open-set guard: "off" or a threshold (default: the bundle\'s novelty.npz threshold)'),
    ] = None
    idle_motion: Annotated[
        Annotated[float, Meta(ge=0, le=100)],
        _help(
            "publish `idle`, which starts no event, for a window whose motion (the lower quartile of its frames' mean "
            "optical flow, pixels at the model's input size) is below this; 0: off, and no flow is computed"
        ),
    ] = 0.005


class HomeAssistant(_Section, frozen=True):
    """An MQTT sink's `homeassistant = { ... }` (or `true` for the defaults): Home Assistant MQTT discovery."""

    discovery_prefix: Annotated[
        str,
        Meta(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\Z"),
        _help("the topic prefix Home Assistant reads discovery configs from"),
    ] = "homeassistant"
    node_id: Annotated[
        Annotated[str, Meta(pattern=STREAM_ID_PATTERN)] | None,
        _help("this recognizer's id in discovery topics and its device (default: the host name, sanitised)"),
    ] = None


class Settings(_Section, frozen=True):
    """The top level of a deployment file: the recognizer's settings, its streams and sinks."""

    endpoint: Annotated[str | None, _help("where to bind the ZeroMQ publisher (default tcp://127.0.0.1:5556)")] = None
    connect: Annotated[
        str | None, _help("connect the publisher to an `lrcn proxy` --xsub endpoint instead of binding")
    ] = None
    metrics: Annotated[
        str | None,
        _help("HOST:PORT (PORT alone: loopback) of /metrics, /healthz, /readyz and the status page (default off)"),
    ] = None
    state_dir: Annotated[
        str | None,
        _help(
            "where the events of streams that record nothing are stored (DIR/lrcn.sqlite; a recording stream's events "
            "go to its record dir's lrcn.sqlite); default: in memory, gone when the recognizer stops"
        ),
    ] = None
    web_config: Annotated[
        str | None,
        _help(
            "lock the metrics port: TLS and basic auth from a Prometheus exporter-toolkit web-config "
            "file (tls_server_config, basic_auth_users; docs/guide/deployment.md)"
        ),
    ] = None
    allowed_hosts: Annotated[
        list[str] | None,
        _help(
            "the Host names the metrics port answers, against DNS rebinding (default: localhost, "
            "the bound address, this machine's names and any IP address; * for any)"
        ),
    ] = None
    curve_keys: Annotated[
        str | None,
        _help(
            "CURVE keys DIR (`lrcn keys DIR`): encrypt and admit only the subscribers in DIR/authorized_clients; "
            "with `connect`, be a CURVE client of an `lrcn proxy`: DIR holds the proxy's server.key and "
            "our pair (`lrcn keys DIR --publisher`)"
        ),
    ] = None
    curve_client: Annotated[
        Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+\Z")],
        _help("with `connect` and `curve_keys`: the pair in DIR to publish with"),
    ] = "publisher"
    backend: Annotated[str, _help("encoder backend")] = "onnxruntime"
    threads: Annotated[Annotated[int, Meta(ge=1, le=1024)] | None, _help("encoder threads (default: one per core)")] = (
        None
    )
    top_k: Annotated[
        Annotated[int, Meta(ge=1, le=1000)],
        _help("classes in each prediction's top list (at most the model's classes)"),
    ] = 3
    max_batch: Annotated[Annotated[int, Meta(ge=1, le=1024)], _help("largest encoder call, in frames")] = 16
    gather_ms: Annotated[
        Annotated[float, Meta(ge=0, le=1000)],
        _help("wait up to MS after a frame for other streams' frames, to batch them"),
    ] = 0.0
    stats_interval_s: Annotated[Annotated[float, Meta(gt=0, le=HOUR)], _help("seconds between stats")] = 5.0
    decoder: Annotated[str, _help("video decoder of every stream: cpu, auto, or a hardware decoder")] = "cpu"
    rtsp_transport: Annotated[Literal["tcp", "udp"], _help("RTSP transport")] = "tcp"
    open_timeout_s: Annotated[Annotated[float, Meta(gt=0, le=HOUR)], _help("seconds to connect")] = 8.0
    read_timeout_s: Annotated[
        Annotated[float, Meta(gt=0, le=HOUR)], _help("seconds without a frame before a live source counts as lost")
    ] = 5.0
    backoff_max_s: Annotated[
        Annotated[float, Meta(ge=0.5, le=HOUR)], _help("longest wait between reconnection attempts")
    ] = 10.0
    max_attempts: Annotated[
        Annotated[int, Meta(ge=1, le=1_000_000)] | None,
        _help("give up on a live source after N failed connection attempts in a row (default: never)"),
    ] = None
    degraded_window_s: Annotated[
        Annotated[float, Meta(gt=0, le=HOUR)],
        _help(
            "a connected stream's predictions and head resets are counted over the last S seconds to judge it "
            "`degraded`"
        ),
    ] = 60.0
    degraded_warmup_s: Annotated[
        Seconds, _help("after connecting, a stream's prediction rate is not judged for S seconds")
    ] = 30.0
    degraded_min_rate: Annotated[
        Annotated[float, Meta(ge=0, le=1)],
        _help(
            "`degraded` under this fraction of the predictions the stream's fps and hop ask for (fps / hop) (0: never for the rate)"
        ),
    ] = 0.5
    degraded_recover_rate: Annotated[
        Annotated[float, Meta(ge=0, le=1)],
        _help(
            "a degraded stream is `connected` again at this fraction (>= degraded_min_rate: no flapping at the bound)"
        ),
    ] = 0.6
    degraded_max_resets: Annotated[
        Annotated[int, Meta(ge=1, le=1_000_000)],
        _help("`degraded` at this many head state resets within the window: a live source that resets in a loop"),
    ] = 5
    stream: Annotated[list[Stream], _help("[[stream]] tables")] = []
    sink: Annotated[list[dict[str, Any]], _help("[[sink]] tables: more sinks beside ZeroMQ (mqtt, jsonl, zeromq)")] = []


SECTIONS: dict[str, type[_Section]] = {
    "": Settings,
    "stream": Stream,
    "events": Events,
    "record": Record,
    "homeassistant": HomeAssistant,
}
# The top-level settings that are every stream's capture defaults (SourceOptions' fields).
SOURCE_SETTINGS = ("decoder", "rtsp_transport", "open_timeout_s", "read_timeout_s", "backoff_max_s", "max_attempts")
# The top-level settings of the degraded check (stream.degraded.DegradedRules' fields, without the prefix).
DEGRADED_SETTINGS = (
    "degraded_window_s",
    "degraded_warmup_s",
    "degraded_min_rate",
    "degraded_recover_rate",
    "degraded_max_resets",
)
TABLES = ("stream", "sink")


def default(section: type[_Section], name: str) -> Any:
    """The schema's default of a setting (the one place defaults live)."""
    return next(f for f in msgspec.structs.fields(section) if f.name == name).default


def describe(section: type[_Section], name: str) -> str:
    """A setting's help text."""
    return str(properties(section)[name].get("description", ""))


@functools.cache
def properties(section: type[_Section]) -> dict[str, dict[str, Any]]:
    """{setting: its JSON schema} of a section (type, range, default, description)."""
    found: dict[str, dict[str, Any]] = msgspec.json.schema(section)["$defs"][section.__name__]["properties"]
    return found


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---------------------------------------------------------------- stream ids


def check_stream_id(text: str) -> str:
    """`text` if it is a valid stream id, else LrcnError with one line."""
    if not isinstance(text, str) or not re.search(STREAM_ID_PATTERN, text):
        raise LrcnError(f"stream id must be {STREAM_ID_RULE}, got {text!r}")
    return text


def check_distinct_ids(ids: Iterable[str]) -> None:
    """Ids that would share a folder or a topic on a case-insensitive filesystem or broker are refused.

    >>> check_distinct_ids(["cam", "door", "cam"])
    Traceback (most recent call last):
    ...
    lrcn.stream.errors.LrcnError: stream id 'cam' is given twice
    """
    seen: dict[str, str] = {}
    for name in ids:
        other = seen.get(name.casefold())
        if other is not None:
            same = "twice" if other == name else f"as {other!r} (ids differing only in case share a folder)"
            raise LrcnError(f"stream id {name!r} is given {same}")
        seen[name.casefold()] = name


# ---------------------------------------------------------------- secrets from outside the file

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_environment(value: Any, environ: Mapping[str, str] = os.environ, path: KeyPath = ()) -> Any:
    """`value` with every `${NAME}` in its strings replaced by the environment variable NAME.
    An unset variable is an _AtPath error at its key; the message names the variable, no value.

    >>> expand_environment({"url": "rtsp://u:${PW}@h/x"}, {"PW": "s3cret"})
    {'url': 'rtsp://u:s3cret@h/x'}
    """
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            if match[1] not in environ:
                raise _AtPath(f"environment variable {match[1]} is not set", path)
            return environ[match[1]]

        return ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, dict):
        return {k: expand_environment(v, environ, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_environment(v, environ, (*path, i)) for i, v in enumerate(value)]
    return value


def with_password(source: str, password_file: str) -> str:
    """`source` with its password read from `password_file` (stripped); the user stays in `source`.
    Errors name the file, never its content or the URL's credentials."""
    parts = urlsplit(source)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if "://" not in source or not at or not userinfo.partition(":")[0]:
        raise LrcnError("password_file needs a URL source with a user: SCHEME://USER@HOST/...")
    if ":" in userinfo:
        raise LrcnError("password_file is set but source already has a password: keep one")
    try:
        password = open(password_file, encoding="utf-8").read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise LrcnError(f"cannot read password_file {password_file}: {getattr(err, 'strerror', None) or err}") from None
    if not password:
        raise LrcnError(f"password_file {password_file} is empty")
    return parts._replace(netloc=f"{userinfo}:{quote(password, safe='')}@{hostport}").geturl()


# ---------------------------------------------------------------- validation with a one-line error


class _AtPath(Exception):
    """A problem at a place in the file: the message and the path of keys and list indexes."""

    def __init__(self, message: str, path: KeyPath):
        super().__init__(message)
        self.message, self.path = message, path


PATH_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")
TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "unset",
}
CROP_RULE = "crop must be [x, y, width, height] in whole source pixels, x, y >= 0 and width, height >= 1"


def parse_path(text: str) -> KeyPath:
    """'$.stream[0].hop' -> ('stream', 0, 'hop')."""
    return tuple(m[1] if m[1] is not None else int(m[2]) for m in PATH_PART.finditer(text))


def where(path: KeyPath) -> str:
    """(stream, 0, events, min_score) -> ' in the events of [[stream]] #1'."""
    if len(path) >= 2 and path[0] in TABLES and isinstance(path[1], int):
        table = f"[[{path[0]}]] #{path[1] + 1}"
        inner = [p for p in path[2:-1] if isinstance(p, str)]
        return f" in the {inner[0]} of {table}" if inner else f" in {table}"
    return ""


def value_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _explain(err: msgspec.ValidationError, raw: dict[str, Any]) -> _AtPath:
    """msgspec's message as one line in the file's words: key, section, what it must be, what it is."""
    text = str(err)
    message, _, at = text.partition(" - at `")
    path = parse_path(at.rstrip("`")) if at else ()
    if unknown := re.match(r"Object contains unknown field `(.*)`", message):
        section = _section_of(path)
        known = ", ".join(f.name for f in msgspec.structs.fields(section)) if section else ""
        return _AtPath(
            f"unknown key {unknown[1]!r}{where((*path, unknown[1]))}{f' (known: {known})' if known else ''}",
            (*path, unknown[1]),
        )
    if missing := re.match(r"Object missing required field `(.*)`", message):
        return _AtPath(f"missing key {missing[1]!r}{where((*path, missing[1]))}", path)
    key_path = tuple(p for p in path if isinstance(p, str))
    key = key_path[-1] if key_path else "the file"
    if key == "crop":
        return _AtPath(f"{CROP_RULE}, got {value_at(raw, path[: path.index('crop') + 1])!r}{where(path)}", path)
    if key == "id":
        return _AtPath(f"stream id must be {STREAM_ID_RULE}, got {value_at(raw, path)!r}{where(path)}", path)
    expected = re.match(r"Expected `([^`]*)`(.*?)(?:, got `(.*)`)?$", message)
    if expected:
        kinds = " or ".join(TYPE_WORDS.get(k.strip(), k.strip()) for k in expected[1].split("|") if k.strip() != "null")
        must = f"{kinds}{expected[2]}"
    elif message.startswith("Invalid enum value"):
        must = " or ".join(repr(v) for v in _choices(path))
    else:
        must = message
    shown = f", got {value_at(raw, path)!r}" if value_at(raw, path) is not None else ""
    return _AtPath(f"{key!r}{where(path)} must be {must}{shown}", path)


def _section_of(path: KeyPath) -> type[_Section] | None:
    names = [p for p in path if isinstance(p, str)]
    return SECTIONS.get(names[-1] if names else "") if names != ["sink"] else None


def _choices(path: KeyPath) -> tuple[str, ...]:
    """The values a Literal setting allows."""
    section = _section_of(path[:-1]) or Settings
    field = next((f for f in msgspec.structs.fields(section) if f.name == path[-1]), None)
    kinds = [field.type] if field else []
    while kinds:
        kind = kinds.pop()
        if get_origin(kind) is Literal:
            return get_args(kind)
        kinds += get_args(kind)
    return ()


def convert(data: dict[str, Any], section: type[Section], environ: Mapping[str, str] | None = os.environ) -> Section:
    """`data` (a parsed TOML file, or flags as a dict) as typed settings of `section` (Settings: the
    whole file), `${NAME}` expanded from `environ` (None: not expanded); _AtPath for the first mistake."""
    if not isinstance(data, dict):
        raise _AtPath("must be a table", ())
    expanded = data if environ is None else expand_environment(data, environ)
    try:
        return msgspec.convert(expanded, section)
    except msgspec.ValidationError as err:
        raise _explain(err, data) from None  # `data`, not `expanded`: an error never shows a secret


def check_values(values: dict[str, Any], section: type[_Section] = Settings, name: Callable[[str], str] = flag) -> None:
    """Validate flags (a dict of the given ones) by the schema; LrcnError naming the flag."""
    required = {f.name: "-" for f in msgspec.structs.fields(section) if f.required}  # source, dir: strings
    try:
        convert({**required, **values}, section, environ=None)
    except _AtPath as err:
        key = next((p for p in err.path if isinstance(p, str)), "")
        message = err.message.removeprefix(repr(key)).lstrip()
        raise LrcnError(f"{name(key)} {message}" if key else message) from None


# ---------------------------------------------------------------- the reference page (docs/reference/settings.md)


def _kind_and_range(spec: dict[str, Any]) -> tuple[str, str]:
    """('number', '> 0, <= 3600') of a setting's JSON schema; null in a union is 'optional'."""
    options = spec.get("anyOf", [spec])
    kinds, ranges = [], []
    for option in options:
        if option.get("type") == "null":
            continue
        if "$ref" in option:
            kinds.append("table")
        elif "enum" in option:
            kinds.append("string")
            ranges.append(" or ".join(f"`{v}`" for v in option["enum"]))
        elif option.get("type") == "array":
            items = option.get("items") or {}
            fixed = option.get("prefixItems")
            ranges += ["x, y >= 0; width, height >= 1"] if fixed else []
            element = "table" if items.get("type") in (None, "object") else items["type"]
            kinds.append(f"list of {len(fixed)} integers" if fixed else f"list of {element}s")
        else:
            kinds.append(option.get("type", "any"))
        bounds = [
            f"{word} {_number(option[key])}"
            for key, word in (
                ("exclusiveMinimum", ">"),
                ("minimum", ">="),
                ("exclusiveMaximum", "<"),
                ("maximum", "<="),
            )
            if key in option
        ]
        if "pattern" in option:
            bounds.append(STREAM_ID_RULE if option["pattern"] == STREAM_ID_PATTERN else f"`{option['pattern']}`")
        if option.get("minLength"):
            bounds.append("not empty")
        ranges += [", ".join(bounds)] if bounds else []
    optional = len(options) > len(kinds)
    return " or ".join(kinds) + (" (optional)" if optional else ""), "; ".join(ranges)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def reference_rows(section: type[_Section], flag_of: Callable[[str], str | None]) -> list[list[str]]:
    """One row per setting of `section`: name, its `lrcn serve` flag (`flag_of`), type, range, default, help."""
    required = {f.name for f in msgspec.structs.fields(section) if f.required}
    rows = []
    for name, spec in properties(section).items():
        kind, bounds = _kind_and_range(spec)
        value = (
            "required"
            if name in required
            else "-"
            if spec.get("default") in (None, [])
            else f"`{json.dumps(spec['default'])}`"
        )
        rows.append(
            [
                f"`{name}`",
                f"`{flag_of(name)}`" if flag_of(name) else "-",
                kind,
                bounds or "-",
                value,
                spec.get("description", "").replace("|", "\\|"),
            ]
        )
    return rows
