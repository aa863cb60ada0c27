"""`lrcn watch`: subscribe to a publisher (or proxy) and show every stream's latest state.

On a terminal the table is redrawn in place; otherwise each message is printed as one plain
line, which suits logs and pipes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from lrcn.stream.keys import load_client_keys
from lrcn.stream.messages import EVENT, HEARTBEAT, PRED, STATUS, Message, MessageError
from lrcn.stream.publisher import Subscriber
from lrcn.tools.cli.args import positive_float, positive_int
from lrcn.tools.cli.commands import command

REDRAW_S = 0.25


@dataclass
class StreamRow:
    label: str = "-"
    score: float | None = None
    latency_ms: float | None = None
    predictions: int = 0
    missed: int = 0  # seq gaps seen here: messages shed between publisher and us
    dropped: int | None = None  # frames the pipeline dropped, as its last status reported
    state: str = "-"
    reason: str = ""
    last_seen: float = 0.0  # time.monotonic() here


def apply(rows: dict[str, StreamRow], message: Message, missed: int, now: float) -> None:
    """Fold one message into the table; `missed` is the subscriber's gap count for its topic."""
    if message.kind not in (PRED, STATUS):  # a heartbeat, an event, or a newer publisher's topic
        return
    row = rows.setdefault(message.stream, StreamRow())
    payload = message.payload
    row.last_seen = now
    if message.kind == PRED:
        row.label, row.score, row.latency_ms = payload["label"], payload["score"], payload["latency_ms"]
        row.predictions += 1
        row.missed = missed
    elif message.kind == STATUS:
        row.state, row.reason = payload["state"], payload["reason"]
        dropped = payload["stats"].get("dropped")
        if isinstance(dropped, int):
            row.dropped = dropped


def render_table(
    rows: dict[str, StreamRow], now: float, heartbeat_age_s: float | None = None, width: int | None = None
) -> list[str]:
    """The table as lines, streams sorted by name, each cut to `width` characters (None: not cut)."""
    # Narrow columns, the state early and its reason last: at 80 columns every number and the state show.
    header = (
        f"{'stream':<12} {'state':<12} {'label':<12} {'score':>5} {'latency':>7} {'preds':>6} {'gaps':>4} "
        f"{'drops':>5} {'seen':>5}  reason"
    )
    lines = [header]
    for name in sorted(rows):
        row = rows[name]
        score = "-" if row.score is None else f"{row.score:.2f}"
        latency = "-" if row.latency_ms is None else f"{row.latency_ms:.1f}ms"
        dropped = "-" if row.dropped is None else str(row.dropped)
        lines.append(
            f"{name[:12]:<12} {row.state[:12]:<12} {row.label[:12]:<12} {score:>5} {latency:>7} "
            f"{row.predictions:>6} {row.missed:>4} {dropped:>5} {now - row.last_seen:>4.1f}s  {row.reason}"
        )
    if heartbeat_age_s is not None:
        lines.append(f"last heartbeat {heartbeat_age_s:.1f} s ago")
    return lines if width is None else [line[:width] for line in lines]


def terminal_width(out: TextIO) -> int:
    """`out`'s width in columns now, 80 when it has none (not a terminal, or no fileno)."""
    try:
        return os.get_terminal_size(out.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def message_line(message: Message) -> str:
    """One plain line per message, for output that is not a terminal."""
    p = message.payload
    if message.kind == PRED:
        return (
            f"pred {message.stream} seq={p['seq']} frame={p['frame_index']} label={p['label']} "
            f"score={p['score']:.3f} latency_ms={p['latency_ms']:.1f}"
        )
    if message.kind == STATUS:
        reason = f" reason={p['reason']}" if p["reason"] else ""
        return f"status {message.stream} seq={p['seq']} state={p['state']}{reason}"
    if message.kind == HEARTBEAT:
        return f"heartbeat seq={p['seq']} node={p.get('node', '')} streams={','.join(p['streams'])}"
    if message.kind == EVENT:
        return (
            f"event {message.stream} seq={p['seq']} {p['type']} label={p['label']} start_frame={p['start_frame']}"
            + (f" end_frame={p['end_frame']} duration_s={p['duration_s']:.2f}" if "end_frame" in p else "")
        )
    return f"{message.kind} {message.stream or '-'} seq={p.get('seq', '-')} (not known to this reader)"


def watch(
    endpoint: str,
    topics=("",),
    count: int | None = None,
    duration_s: float | None = None,
    curve=None,
    out: TextIO | None = None,
    interactive: bool | None = None,
) -> int:
    """Receive until `count` messages or `duration_s` seconds; return the number received."""
    out = out or sys.stdout
    interactive = out.isatty() if interactive is None else interactive
    rows: dict[str, StreamRow] = {}
    received, malformed, drawn_lines = 0, 0, 0
    last_heartbeat, next_draw = None, 0.0
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with Subscriber(endpoint, topics, curve=curve) as subscriber:
        while count is None or received < count:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = REDRAW_S if deadline is None else min(REDRAW_S, deadline - now)
            try:
                message = subscriber.receive(timeout_s=wait)
            except MessageError as err:
                malformed += 1
                print(f"lrcn: skipped a malformed message: {err}", file=sys.stderr)
                continue
            now = time.monotonic()
            if message is not None:
                received += 1
                if message.kind == HEARTBEAT:
                    last_heartbeat = now
                apply(rows, message, subscriber.missed[message.topic], now)
                if not interactive:
                    print(message_line(message), file=out, flush=True)
            if interactive and (now >= next_draw or (count is not None and received >= count)):
                # Read each time, as the window may have been resized. A line wider than the terminal
                # would wrap onto more screen lines than the cursor-up below counts, so each is cut.
                lines = render_table(
                    rows, now, None if last_heartbeat is None else now - last_heartbeat, width=terminal_width(out)
                )
                # Move up over the previous table and clear to the end of the screen.
                prefix = f"\x1b[{drawn_lines}F\x1b[J" if drawn_lines else ""
                out.write(prefix + "\n".join(lines) + "\n")
                out.flush()
                drawn_lines, next_draw = len(lines), now + REDRAW_S
        missed = sum(subscriber.missed.values())
    print(
        f"lrcn: watched {received} messages from {endpoint}, {missed} missed (seq gaps), {malformed} malformed",
        file=sys.stderr,
    )
    return received


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", help="publisher or proxy endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--topic", action="append", help="topic prefix to receive, repeatable (default: all)")
    parser.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    parser.add_argument("--curve-keys", metavar="DIR", help="key folder from `lrcn keys` (CURVE publisher)")
    parser.add_argument("--client", default="client", help="client pair in --curve-keys (default client)")


@command("watch", help="subscribe and show each stream's label, score, latency and status", arguments=add_arguments)
def run(args) -> None:
    curve = load_client_keys(args.curve_keys, args.client) if args.curve_keys else None
    watch(args.endpoint, topics=args.topic or [""], count=args.count, duration_s=args.duration, curve=curve)
