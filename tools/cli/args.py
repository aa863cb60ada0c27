"""What the commands share: argument types, the head flags, the TensorFlow check, the split flags,
a result's printout. A library for the command modules (tools/cli/commands.py), so that none of them
imports another to borrow its flags."""

from __future__ import annotations

import argparse

from lrcn.stream import settings as schema
from lrcn.stream.encoders import backend_names
from lrcn.stream.errors import LrcnError


def require_tensorflow() -> None:
    """Import TensorFlow once, for the commands that train or evaluate.

    Its C++ log lines are hidden unless --verbose (see tools/cli/quiet.py); a missing TensorFlow
    becomes a one-line error.
    """
    from lrcn.tools.cli.quiet import import_tensorflow

    try:
        import_tensorflow()
    except ImportError:
        raise LrcnError("this command needs TensorFlow: pip install 'lrcn-stream[train]'") from None


def parse_size(text: str) -> tuple[int, int]:
    """'112' -> (112, 112); '120x160' -> (120, 160) as height x width."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with sides >= 32, got {text!r}")
    return parts[0], parts[1]


def parse_crop(text: str) -> tuple[int, int, int, int]:
    try:
        crop = tuple(int(part) for part in text.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4 or min(crop[:2]) < 0 or min(crop[2:]) < 1:
        raise argparse.ArgumentTypeError(f"crop must be X,Y,W,H in whole source pixels (W, H >= 1), got {text!r}")
    return crop


def parse_l2(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if any(not 0 <= value < 10 for value in values):
        raise argparse.ArgumentTypeError(f"L2 penalties must be in [0, 10), got {text!r}")
    return tuple(dict.fromkeys(values))  # a value given twice is trained once


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_setting(group, section: type, name: str, *aliases: str, help: str | None = None, **kwargs) -> None:
    """The flag of setting `name` of a stream/settings.py section: `--` and its name with dashes,
    dest `name`, help and default from the schema (the default shown, the value None until given,
    so a deployment file's value can win over the default). `aliases`: older spellings, hidden."""
    default = schema.default(section, name)
    shown = "" if default in (None, [], "") or not isinstance(default, (int, float, str)) else f" (default {default})"
    group.add_argument(schema.flag(name), dest=name, help=(help or schema.describe(section, name)) + shown, **kwargs)
    for alias in aliases:
        group.add_argument(alias, dest=name, help=argparse.SUPPRESS, **kwargs)


def host_list(text: str) -> list[str]:
    """'a.lan, b.lan' -> ['a.lan', 'b.lan']: the --allowed-hosts flag, a list as the file's key is."""
    hosts = [host.strip() for host in text.split(",") if host.strip()]
    if not hosts:
        raise argparse.ArgumentTypeError(f"expected host names separated by commas, got {text!r}")
    return hosts


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    """How a stream is sampled and windowed, and its label smoothed (serve and annotate)."""
    head = parser.add_argument_group("head")
    stream = schema.Stream
    add_setting(head, stream, "fps", type=positive_float)
    add_setting(head, stream, "mode", choices=("exact", "continuous"), default=schema.default(stream, "mode"))
    add_setting(head, stream, "hop", type=positive_int, default=schema.default(stream, "hop"))
    add_setting(head, stream, "reset_every", type=positive_int, metavar="N")
    add_setting(head, stream, "smooth", metavar="ema:ALPHA|hysteresis:M[:MARGIN]")
    add_setting(head, schema.Settings, "backend", choices=backend_names())
    add_setting(head, schema.Settings, "threads", type=positive_int)


def choose_split(dataset, args):
    """(train videos, test videos) from the split flags; no flag: all videos train."""
    from lrcn.models.data import official_split, split_by_groups

    if getattr(args, "split_lists", None):
        return official_split(dataset, *args.split_lists)
    if getattr(args, "test_groups", None):
        groups = [g.strip() for g in args.test_groups.split(",") if g.strip()]
        unknown = sorted(set(groups) - {v.group for v in dataset.videos})
        if unknown:
            raise LrcnError(f"--test-groups: no videos in group(s) {', '.join(unknown)}")
        return split_by_groups(list(dataset.videos), groups)
    return list(dataset.videos), []


def print_result(result: dict) -> None:
    print(
        f"video accuracy {result['video_correct']}/{result['videos']} = {result['video_accuracy']:.3f}, "
        f"clip accuracy {result['clip_accuracy']:.3f} over {result['clips']} clips"
    )
    for name, row in result["per_class"].items():
        fmt = lambda v: "  -  " if v is None else f"{v:.3f}"
        print(f"  {name:<28} precision {fmt(row['precision'])}  recall {fmt(row['recall'])}  n={row['support']}")
