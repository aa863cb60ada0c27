"""`lrcn serve`: streams from flags and/or a deployment file, run by stream.pipeline until the
sources end, --duration passes, or SIGINT/SIGTERM; then the final stats.

Signals: SIGTERM and SIGINT stop the sources, drain what was captured, publish a final status
per stream and exit; SIGHUP re-reads the deployment file (--config) and applies it without a
restart (Pipeline.reconfigure); a file with a mistake is refused, with one log line, and the
running configuration stays. With --metrics (or `metrics =` in the file), one HTTP port serves
/metrics, /healthz, /readyz and a status page (stream.service).

Exit status: 0 when every stream ended or was stopped, 1 when any stream failed (gave up after
--max-attempts, or met a fault that retrying cannot fix), 2 for bad usage or configuration."""

from __future__ import annotations

import argparse

from lrcn.stream import settings as schema
from lrcn.tools.cli.args import add_head_arguments, add_setting, host_list, parse_crop, positive_float
from lrcn.tools.cli import hangups
from lrcn.tools.cli.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Each setting's flag is its deployment-file key with dashes; its help and default come from
    stream/settings.py. The older spellings still work (hidden)."""
    parser.add_argument("bundle")
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="camera index or /dev/videoN, video file, rtsp/http/tcp/udp/rtmp/srt URL, "
        "gst:PIPELINE, pattern:[FPS[:SECONDS]], or synth:[SECONDS[:SEED]]",
    )
    parser.add_argument(
        "--name", action="append", help=f"stream id of the next SOURCE, in order (repeatable; {schema.STREAM_ID_RULE})"
    )
    parser.add_argument(
        "--config",
        metavar="TOML",
        help="deployment file: [[stream]] tables and settings (docs/reference/settings.md lists them)",
    )
    add_head_arguments(parser)
    top = schema.Settings
    publish = parser.add_mutually_exclusive_group()
    add_setting(publish, top, "endpoint")
    add_setting(publish, top, "connect", metavar="ENDPOINT")
    parser.add_argument(
        "--mqtt",
        action="append",
        metavar="URL",
        help="also publish to an MQTT broker: mqtt[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX] "
        "(topics PREFIX/<stream>/pred|status|event; repeatable; [[sink]] tables set more)",
    )
    parser.add_argument(
        "--jsonl",
        action="append",
        metavar="PATH",
        help="also write every prediction, status and event to PATH, one JSON line each, "
        "rotated at 100 MB (repeatable)",
    )
    add_setting(parser, top, "curve_keys", metavar="DIR")
    add_setting(parser, top, "curve_client", metavar="NAME")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--pace",
        dest="pace",
        action="store_true",
        default=True,
        help="files: deliver frames at the file's rate, like a camera (default)",
    )
    pace.add_argument("--no-pace", dest="pace", action="store_false", help="files: as fast as they decode")
    parser.add_argument("--loop", action="store_true", help=schema.describe(schema.Stream, "loop"))
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    capture = parser.add_argument_group("capture")
    capture.add_argument("--crop", type=parse_crop, metavar="X,Y,W,H", help=schema.describe(schema.Stream, "crop"))
    add_setting(capture, top, "decoder", metavar="cpu|auto|NAME")
    add_setting(capture, top, "rtsp_transport", choices=("tcp", "udp"))
    add_setting(capture, top, "open_timeout_s", "--open-timeout", type=float, metavar="S")
    add_setting(capture, top, "read_timeout_s", "--read-timeout", type=float, metavar="S")
    add_setting(capture, top, "backoff_max_s", "--backoff-max", type=float, metavar="S")
    add_setting(capture, top, "max_attempts", type=int, metavar="N")
    events = parser.add_argument_group(
        "events", "turn each SOURCE's predictions into event/<stream> messages (any of these flags turns them on)"
    )
    add_setting(events, schema.Events, "min_score", type=float, metavar="S")
    add_setting(events, schema.Events, "min_duration_s", "--min-duration", type=float, metavar="S")
    add_setting(events, schema.Events, "cooldown_s", "--cooldown", type=float, metavar="S")
    add_setting(events, schema.Events, "classes", "--watch-classes", metavar="A,B")
    add_setting(events, schema.Events, "ignore", "--ignore-classes", metavar="A,B")
    add_setting(events, schema.Events, "update_s", "--event-updates", type=float, metavar="S")
    events.add_argument(
        "--record",
        metavar="DIR",
        help="write an MP4 per event to DIR/<stream>/, remuxed from the "
        "camera's own packets (PyAV sources): a `record` table's dir",
    )
    add_setting(events, schema.Record, "pre_s", "--pre-roll", type=float, metavar="S")
    add_setting(events, schema.Record, "post_s", "--post-roll", type=float, metavar="S")
    add_setting(events, schema.Record, "max_clip_s", type=float, metavar="S")
    add_setting(events, schema.Record, "max_gb", type=float, metavar="GB")
    add_setting(events, schema.Record, "retain_days", type=float, metavar="DAYS")
    add_setting(events, schema.Record, "min_free_gb", type=float, metavar="GB")
    add_setting(parser, schema.Stream, "novelty", metavar="off|THRESHOLD")
    add_setting(parser, schema.Stream, "idle_motion", type=float, metavar="PX")
    add_setting(parser, top, "top_k", type=int, metavar="K")
    add_setting(parser, top, "max_batch", type=int, metavar="N")
    add_setting(parser, top, "gather_ms", type=float, metavar="MS")
    add_setting(parser, top, "stats_interval_s", "--stats-interval", type=float, metavar="S")
    health = parser.add_argument_group("degraded", "when a connected stream counts as `degraded`")
    add_setting(health, top, "degraded_window_s", type=float, metavar="S")
    add_setting(health, top, "degraded_warmup_s", type=float, metavar="S")
    add_setting(health, top, "degraded_min_rate", type=float, metavar="FRACTION")
    add_setting(health, top, "degraded_recover_rate", type=float, metavar="FRACTION")
    add_setting(health, top, "degraded_max_resets", type=int, metavar="N")
    parser.add_argument("--stats-json", metavar="PATH", help="also write the final stats here")
    add_setting(parser, top, "metrics", metavar="HOST:PORT")
    add_setting(parser, top, "state_dir", metavar="DIR")
    add_setting(parser, top, "web_config", metavar="FILE")
    add_setting(parser, top, "allowed_hosts", type=host_list, metavar="H[,H]")


@command("serve", help="run a bundle on live sources and publish predictions over ZeroMQ", arguments=add_arguments)
def run(args) -> int:
    """Serve until done; the exit status (0, or 1 when a stream failed)."""
    hangups.queue()  # already done by tools/cli/__init__.py for `lrcn serve`; here for main(["serve", ...])
    # Imported here, not above: every `lrcn` command builds the whole command line, and the
    # runtime (PyAV, OpenCV, ZeroMQ, Prometheus) would cost each of them its start-up time.
    from lrcn.tools.cli.serving import serve

    return serve(args)
