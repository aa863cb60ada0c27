"""`lrcn proxy`: a ZeroMQ XSUB/XPUB forwarder that many recognizers publish into and many subscribers read.

With --curve-keys DIR both sides are CURVE servers with DIR/server.key_secret: publishers
(`lrcn serve --connect ... --curve-keys`) must hold a key in DIR/authorized_publishers, subscribers
one in DIR/authorized_clients. SIGHUP re-reads both lists (a deleted key is refused from then on,
and its connection dropped); refused and failed handshakes are logged at warning."""

from __future__ import annotations

import argparse
import signal
import threading

from lrcn.tools.cli.args import positive_float
from lrcn.tools.cli.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--xsub", required=True, help="endpoint publishers connect to, e.g. tcp://127.0.0.1:5557")
    parser.add_argument("--xpub", required=True, help="endpoint subscribers connect to, e.g. tcp://127.0.0.1:5558")
    parser.add_argument(
        "--curve-keys",
        metavar="DIR",
        help="encrypt both sides with DIR/server.key_secret; admit publishers in "
        "DIR/authorized_publishers and subscribers in DIR/authorized_clients (`lrcn keys`)",
    )
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds (default: Ctrl-C)")


def announce(proxy) -> None:
    print(f"proxy: publishers -> {proxy.xsub_endpoint}, subscribers -> {proxy.xpub_endpoint}", flush=True)


@command("proxy", help="ZeroMQ XSUB/XPUB forwarder: many publishers in, many subscribers out", arguments=add_arguments)
def run(args) -> None:
    # here: ZeroMQ need not load for every command line
    from lrcn.stream.keys import load_proxy_keys
    from lrcn.stream.publisher import run_proxy

    curve = load_proxy_keys(args.curve_keys) if args.curve_keys else None
    reload = threading.Event()
    previous = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        run_proxy(args.xsub, args.xpub, duration_s=args.duration, ready=announce, curve=curve, reload=reload)
    finally:
        signal.signal(signal.SIGHUP, previous)
