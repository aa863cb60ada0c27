"""Write the JSON Schema of every message kind to docs/schemas/<kind>.schema.json, from
stream.message_schema (`python -m lrcn.tools.evidence.schemas`; `--check` exits 1 if the files differ)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lrcn.stream.message_schema import KINDS, json_schema
from lrcn.tools.evidence.checkout import find_checkout


def rendered() -> dict[str, str]:
    """{file name: its text} for every kind."""
    return {f"{kind}.schema.json": json.dumps(json_schema(kind), indent=2) + "\n" for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the schemas are (default: docs/schemas of the checkout holding the current directory)",
    )
    args = parser.parse_args(argv)
    if args.dir is None:
        root = find_checkout()
        if root is None:
            parser.error("no lrcn-stream checkout at or above the current directory: run it in one, or give --dir")
        args.dir = root / "docs" / "schemas"
    stale = []
    for name, text in rendered().items():
        path = args.dir / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            args.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python -m lrcn.tools.evidence.schemas): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
