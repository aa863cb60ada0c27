"""The `lrcn` command line (`lrcn = "lrcn.tools.cli:main"`, or `python -m lrcn.tools.cli`): the
command registry and `main` (commands.py), the arguments the commands share (args.py), and one
module per command (serve, train, export, ...), each imported only when its command runs.

This package imports nothing on its own, so a command's module costs only what it imports.
`lrcn serve` takes SIGHUP as "reload" from the moment `main` is called, before the command line
and the runtime load (hangups.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable


def main(argv: Iterable[str] | None = None) -> int:
    """Run the `lrcn` command `argv` (default: sys.argv) names; its exit status."""
    from lrcn.tools.cli import hangups

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        hangups.queue()
    from lrcn.tools.cli.commands import main as run_command

    return run_command(argv)
