"""`lrcn keys DIR`: CURVE key pairs for an encrypted publisher (`lrcn serve --curve-keys DIR`) or
proxy (`lrcn proxy --curve-keys DIR`): a subscriber's pair (--client) or a publisher's (--publisher)."""

from __future__ import annotations

import argparse

from lrcn.tools.cli.commands import command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir")
    role = parser.add_mutually_exclusive_group()
    role.add_argument(
        "--client",
        default="client",
        help="name of a subscriber's pair, authorized in DIR/authorized_clients (default client)",
    )
    role.add_argument(
        "--publisher",
        nargs="?",
        const="publisher",
        metavar="NAME",
        help="make a publisher's pair instead (default name publisher), authorized in "
        "DIR/authorized_publishers: what `lrcn serve --connect` presents to a CURVE proxy",
    )


@command(
    "keys",
    help="CURVE key pairs: a server pair (if absent) and an authorized client (or publisher) pair",
    arguments=add_arguments,
)
def run(args) -> None:
    from lrcn.stream.keys import make_keys  # here: ZeroMQ need not load for every command line

    if args.publisher:
        written = make_keys(args.dir, client=args.publisher, role="publisher")
    else:
        written = make_keys(args.dir, client=args.client)
    for path in written:
        print(path)
