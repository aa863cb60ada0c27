"""`lrcn keys DIR`: CURVE key pairs for an encrypted publisher (`lrcn serve --curve-keys DIR`)."""
from __future__ import annotations

import argparse

from lrcn.tools.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir")
    parser.add_argument("--client", default="client", help="name of the client pair (default client)")


@command("keys", help="CURVE key pairs: a server pair (if absent) and an authorized client pair",
         arguments=add_arguments)
def run(args) -> None:
    from lrcn.stream.keys import make_keys   # here: ZeroMQ need not load for every command line

    for path in make_keys(args.dir, client=args.client):
        print(path)
