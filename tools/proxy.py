"""`lrcn proxy`: a ZeroMQ XSUB/XPUB forwarder that many recognizers publish into and many subscribers read."""
from __future__ import annotations

import argparse

from lrcn.tools.args import positive_float
from lrcn.tools.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--xsub", required=True, help="endpoint publishers connect to, e.g. tcp://127.0.0.1:5557")
    parser.add_argument("--xpub", required=True, help="endpoint subscribers connect to, e.g. tcp://127.0.0.1:5558")
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds (default: Ctrl-C)")


def announce(proxy) -> None:
    print(f"proxy: publishers -> {proxy.xsub_endpoint}, subscribers -> {proxy.xpub_endpoint}", flush=True)


@command("proxy", help="ZeroMQ XSUB/XPUB forwarder: many publishers in, many subscribers out",
         arguments=add_arguments)
def run(args) -> None:
    from lrcn.stream.publisher import run_proxy   # here: ZeroMQ need not load for every command line

    run_proxy(args.xsub, args.xpub, duration_s=args.duration, ready=announce)
