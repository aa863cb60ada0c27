"""`python -m lrcn.tools.cli`: the `lrcn` command."""

import sys

from lrcn.tools.cli import main

if __name__ == "__main__":  # a module walk (the doctest search) imports this without running it
    sys.exit(main())
