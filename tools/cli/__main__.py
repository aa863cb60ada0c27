"""`python -m lrcn.tools.cli`: the `lrcn` command."""
import sys

from lrcn.tools.cli import main

sys.exit(main())
