"""The JSONL sink: every message as one line of a file, rotated by size.

    [[sink]]
    type = "jsonl"
    path = "/var/lib/lrcn/messages.jsonl"
    max_mb = 100          # rotate when the file would pass this size ...
    keep = 5              # ... keeping messages.jsonl.1 (newest) to .5 (oldest)
    kinds = ["pred", "status", "event"]   # the default; add "heartbeat" for those too

A line is the message's schema v1 payload with its topic first, `{"topic":"pred/door",...}`,
spliced from the encoded bytes rather than encoded again. The calling thread only appends the
line to a bounded backlog; a writer thread wakes every `WRITE_INTERVAL_S`, writes the backlog in
one system call, and rotates. Waking it per message instead would cost a thread switch per line:
more than the line itself. A full backlog (a disk slower than the messages) drops the line and
counts it in `dropped`.

Whole lines or nothing: a write that fails part-way (a full disk) is cut back to the end of the
last line that was written whole, so a reader never meets half a line; each line lost that way is
counted in `failed` (never in `sent`), its reason kept in `problem`, and the writer carries on:
once there is room again, lines are written again.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import SinkStats
from lrcn.stream.sinks import OptionTypes, Outgoing, Sink, check_keys, check_kinds, register

WRITE_INTERVAL_S = 0.2  # how long a line may wait in memory before it is written
OPTION_TYPES: OptionTypes = {"path": str, "max_mb": (int, float), "keep": int, "kinds": list, "queue": int}


@register
class JsonlSink(Sink):
    name = "jsonl"

    def __init__(
        self,
        path: str | Path,
        *,
        max_mb: float = 100.0,
        keep: int = 5,
        kinds: tuple[str, ...] = (messages.PRED, messages.STATUS, messages.EVENT),
        queue_size: int = 10_000,
    ):
        if not max_mb > 0 or keep < 0 or queue_size < 1:
            raise LrcnError(
                f"jsonl sink: max_mb must be > 0, keep >= 0 and queue >= 1, got {max_mb}, {keep}, {queue_size}"
            )
        self.path = Path(path)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.keep = keep
        self.kinds = check_kinds(kinds, self.name)
        self._fd = -1
        self._size = 0  # bytes in the current file, as this sink wrote or found them
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
            if self._size and os.pread(self._fd, 1, self._size - 1) != b"\n":  # cut short by a crash
                self._size += os.write(self._fd, b"\n")
        except OSError as err:
            if self._fd >= 0:
                os.close(self._fd)
            raise LrcnError(f"jsonl sink: cannot write {self.path}: {err.strerror or err}") from None
        self.queue_size = queue_size
        self._backlog: deque[bytes] = deque()
        self._closing = threading.Event()
        self.sent = self.dropped = self.failed = self.rotations = 0
        self.problem = ""  # why the latest write failed
        self._closed = False
        self._writer = threading.Thread(target=self._write_all, name=f"jsonl {self.path.name}", daemon=True)
        self._writer.start()

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> JsonlSink:
        check_keys(options, OPTION_TYPES, cls.name)
        if "path" not in options:
            raise LrcnError("jsonl sink: missing key 'path' (the file to write)")
        return cls(
            options["path"],
            max_mb=options.get("max_mb", 100.0),
            keep=options.get("keep", 5),
            kinds=tuple(options.get("kinds", (messages.PRED, messages.STATUS, messages.EVENT))),
            queue_size=options.get("queue", 10_000),
        )

    def send(self, message: Outgoing) -> bool:
        if len(self._backlog) >= self.queue_size:
            self.dropped += 1
            return False
        self._backlog.append(b'{"topic":"' + message.frames[0] + b'",' + message.payload[1:] + b"\n")
        return True

    def stats(self) -> SinkStats:
        return SinkStats(
            sent=self.sent,
            dropped=self.dropped,
            failed=self.failed,
            rotations=self.rotations,
            queued=len(self._backlog),
            problem=self.problem,
        )

    def describe(self) -> str:
        return f"jsonl {self.path}"

    def close(self, timeout_s: float = 1.0) -> None:
        """Write what is queued (for up to `timeout_s`), then close the file."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._writer.join(timeout_s)

    def _write_all(self) -> None:
        while True:
            closing = self._closing.wait(WRITE_INTERVAL_S)
            lines = []
            while self._backlog:
                lines.append(self._backlog.popleft())
            if lines:
                self._write_lines(lines)
            if closing:
                break
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write `lines`, rotating before a line that would pass `max_bytes`."""
        batch: list[bytes] = []
        size = self._size
        for line in lines:
            if size and size + len(line) > self.max_bytes:
                self._write_batch(batch)
                batch = []
                self._rotate()
                size = self._size
            batch.append(line)
            size += len(line)
        self._write_batch(batch)

    def _write_batch(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        written, start = 0, self._size
        try:
            if self._fd < 0:  # a rotation failed half-way: try a fresh file
                self._open()
            start = os.lseek(self._fd, 0, os.SEEK_END)  # the file may have been cut or rotated from outside
            with memoryview(data) as view:
                while written < len(data):
                    written += os.write(self._fd, view[written:])
        except OSError as err:
            whole, kept = _whole_lines(lines, written)
            if kept < written:
                self._cut(start + kept)
            self._size = start + kept if self._fd >= 0 else 0
            self.sent += whole
            self._fail(len(lines) - whole, err)
            return
        self._size = start + written
        self.sent += len(lines)

    def _cut(self, length: int) -> None:
        """Truncate the file back to `length`, the end of its last whole line."""
        try:
            os.ftruncate(self._fd, length)
        except OSError as err:  # the next write starts on a line of its own, at least
            self._fail(0, err)
            with contextlib.suppress(OSError):
                os.write(self._fd, b"\n")

    def _fail(self, lines: int, err: OSError) -> None:
        self.failed += lines
        self.problem = f"cannot write {self.path}: {err.strerror or err}"

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.<keep>, the oldest dropped; then a new, empty path."""
        try:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
            for n in range(self.keep, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
                if newer.exists():
                    os.replace(newer, older)
            if self.keep == 0:
                self.path.unlink(missing_ok=True)
            self._open()
        except OSError as err:
            self._fail(0, err)
            return
        self.rotations += 1


def _whole_lines(lines: list[bytes], written: int) -> tuple[int, int]:
    """(how many of `lines` the first `written` bytes hold whole, and their length in bytes).

    >>> _whole_lines([b"ab\\n", b"cde\\n", b"f\\n"], 6)
    (1, 3)
    """
    whole = length = 0
    for line in lines:
        if length + len(line) > written:
            break
        whole, length = whole + 1, length + len(line)
    return whole, length
