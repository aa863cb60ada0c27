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

from lrcn.tools.args import add_head_arguments, parse_crop, positive_float, positive_int
from lrcn.tools.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="camera index or /dev/videoN, video file, rtsp/http/tcp/udp/rtmp/srt URL, "
                             "gst:PIPELINE, pattern:[FPS[:SECONDS]], or synth:[SECONDS[:SEED]]")
    parser.add_argument("--name", action="append", help="stream id of the next SOURCE, in order (repeatable)")
    parser.add_argument("--config", metavar="TOML", help="deployment file: [[stream]] tables and settings")
    add_head_arguments(parser)
    publish = parser.add_mutually_exclusive_group()
    publish.add_argument("--endpoint", help="where to bind the publisher (default tcp://127.0.0.1:5556)")
    publish.add_argument("--connect", metavar="ENDPOINT",
                         help="connect the publisher to ENDPOINT instead of binding: an `lrcn proxy` --xsub "
                              "endpoint, so that many recognizers publish into one place")
    parser.add_argument("--mqtt", action="append", metavar="URL",
                        help="also publish to an MQTT broker: mqtt[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX] "
                             "(topics PREFIX/<stream>/pred|status|event; repeatable; [[sink]] tables set more)")
    parser.add_argument("--jsonl", action="append", metavar="PATH",
                        help="also write every prediction, status and event to PATH, one JSON line each, "
                             "rotated at 100 MB (repeatable)")
    parser.add_argument("--curve-keys", metavar="DIR", help="encrypt with DIR/server.key_secret and admit only the "
                                                            "clients in DIR/authorized_clients (`lrcn keys DIR`); "
                                                            "with --connect, be a CURVE client of a proxy: "
                                                            "DIR/server.key is the proxy's, DIR/<curve-client>.key_secret "
                                                            "ours (`lrcn keys DIR --publisher`)")
    parser.add_argument("--curve-client", metavar="NAME",
                        help="with --connect and --curve-keys: the pair in DIR to publish with (default publisher)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--pace", dest="pace", action="store_true", default=True,
                      help="files: deliver frames at the file's rate, like a camera (default)")
    pace.add_argument("--no-pace", dest="pace", action="store_false", help="files: as fast as they decode")
    parser.add_argument("--loop", action="store_true", help="files: start again at the end")
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    capture = parser.add_argument_group("capture")
    capture.add_argument("--crop", type=parse_crop, metavar="X,Y,W,H",
                         help="the region of each SOURCE the model watches, in source pixels, before scaling")
    capture.add_argument("--decoder", metavar="cpu|auto|NAME",
                         help="video decoder: cpu (default), auto (this platform's hardware decoder, else cpu), "
                              "or a hardware decoder `lrcn doctor` lists (cuda, vaapi, qsv, ...)")
    capture.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="RTSP transport (default tcp)")
    capture.add_argument("--open-timeout", type=positive_float, metavar="S", help="seconds to connect (default 8)")
    capture.add_argument("--read-timeout", type=positive_float, metavar="S",
                         help="seconds without a frame before a live source counts as lost (default 5)")
    capture.add_argument("--backoff-max", type=positive_float, metavar="S",
                         help="longest wait between reconnection attempts (default 10)")
    capture.add_argument("--max-attempts", type=positive_int, metavar="N",
                         help="give up on a live source after N failed connection attempts in a row "
                              "(default: never; a camera is retried until stopped)")
    events = parser.add_argument_group("events", "turn each SOURCE's predictions into event/<stream> messages "
                                                 "(any of these flags turns them on)")
    events.add_argument("--min-score", type=float, metavar="S",
                        help="an action counts at this score or more; below it the published label is `unknown`")
    events.add_argument("--min-duration", type=float, metavar="S", help="seconds an action must hold to start an event")
    events.add_argument("--cooldown", type=float, metavar="S", help="seconds before an ended action may start again")
    events.add_argument("--watch-classes", metavar="A,B", help="only these classes start events (default all)")
    events.add_argument("--ignore-classes", metavar="A,B", help="these classes never start events (a background)")
    events.add_argument("--event-updates", type=positive_float, metavar="S", help="an update every S s of an event")
    events.add_argument("--record", metavar="DIR", help="write an MP4 per event to DIR/<stream>/, remuxed from the "
                                                        "camera's own packets (PyAV sources), with 10 GB kept at most")
    events.add_argument("--pre-roll", type=float, default=5.0, metavar="S",
                        help="seconds a clip keeps before its event (default 5)")
    events.add_argument("--post-roll", type=float, default=5.0, metavar="S",
                        help="seconds a clip keeps after its event (default 5)")
    parser.add_argument("--novelty", metavar="off|THRESHOLD",
                        help="the open-set guard of each SOURCE: a window whose novelty score is over the threshold "
                             "is published as `unknown` (default: the bundle's novelty.npz threshold, if it has one)")
    parser.add_argument("--gather-ms", type=float, metavar="MS",
                        help="wait up to MS after a frame for other streams' frames, to batch them (default 0)")
    parser.add_argument("--stats-interval", type=positive_float, metavar="S", help="seconds between stats (default 5)")
    parser.add_argument("--stats-json", metavar="PATH", help="also write the final stats here")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus /metrics, /healthz, /readyz and a status page at / on this address "
                             "(PORT alone: loopback; default off)")
    parser.set_defaults(top_k=None, max_batch=None)   # deployment-file settings without a flag


@command("serve", help="run a bundle on live sources and publish predictions over ZeroMQ", arguments=add_arguments)
def run(args) -> int:
    """Serve until done; the exit status (0, or 1 when a stream failed)."""
    # Imported here, not above: every `lrcn` command builds the whole command line, and the
    # runtime (PyAV, OpenCV, ZeroMQ, Prometheus) would cost each of them its start-up time.
    from lrcn.tools.serving import serve

    return serve(args)
