"""`lrcn`: the command line's entry point (`lrcn = "lrcn.tools.cli:main"`, or `python -m lrcn.tools.cli`).

The commands and `main` live in tools/commands.py; nothing in the project imports this module.
"""
import sys

from lrcn.tools.commands import main

if __name__ == "__main__":
    sys.exit(main())
