"""`lrcn`: the command line's entry point (`lrcn = "lrcn.tools.cli:main"`, or `python -m lrcn.tools.cli`).

The commands and `main` live in tools/commands.py; nothing in the project imports this module.
`lrcn serve` takes SIGHUP as "reload" from here on, before the command line and the runtime
load (tools/hangups.py).
"""
import sys

from lrcn.tools import hangups

if sys.argv[1:2] == ["serve"]:
    hangups.queue()

from lrcn.tools.commands import main  # noqa: E402  (after the SIGHUP handler, on purpose)

if __name__ == "__main__":
    sys.exit(main())
