"""The JSONL sink: every message as one line of a file, rotated by size.

    [[sink]]
    type = "jsonl"
    path = "/var/lib/lrcn/messages.jsonl"
    max_mb = 100          # rotate when the file would pass this size ...
    keep = 5              # ... keeping messages.jsonl.1 (newest) to .5 (oldest)
    kinds = ["pred", "status", "event"]   # the default; add "heartbeat" for those too

A line is the message's schema v1 payload with its topic first, `{"topic":"pred/door",...}`,
spliced from the encoded bytes rather than encoded again. The calling thread only appends the
line to a bounded backlog; a writer thread wakes every `WRITE_INTERVAL_S`, writes the backlog,
flushes and rotates. Waking it per message instead would cost a thread switch per line: more
than the line itself. A full backlog (a disk slower than the messages) drops the line and
counts it; a failed write (disk full, file removed) is counted, kept as `problem`, and the
writer carries on.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.sinks import Outgoing, Sink, check_keys, check_kinds, register
WRITE_INTERVAL_S = 0.2   # how long a line may wait in memory before it is written
OPTION_TYPES = {"path": str, "max_mb": (int, float), "keep": int, "kinds": list, "queue": int}


@register
class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, path: str | Path, *, max_mb: float = 100.0, keep: int = 5,
                 kinds: tuple[str, ...] = (messages.PRED, messages.STATUS, messages.EVENT), queue_size: int = 10_000):
        if not max_mb > 0 or keep < 0 or queue_size < 1:
            raise LrcnError(f"jsonl sink: max_mb must be > 0, keep >= 0 and queue >= 1, got {max_mb}, {keep}, {queue_size}")
        self.path = Path(path)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.keep = keep
        self.kinds = check_kinds(kinds, self.name)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        except OSError as err:
            raise LrcnError(f"jsonl sink: cannot write {self.path}: {err.strerror or err}") from None
        self._size = self._file.tell()
        self.queue_size = queue_size
        self._backlog: deque[bytes] = deque()
        self._closing = threading.Event()
        self.sent = self.dropped = self.failed = self.rotations = 0
        self.problem: str | None = None
        self._closed = False
        self._writer = threading.Thread(target=self._write_all, name=f"jsonl {self.path.name}", daemon=True)
        self._writer.start()

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> JsonlSink:
        check_keys(options, OPTION_TYPES, cls.name)
        if "path" not in options:
            raise LrcnError("jsonl sink: missing key 'path' (the file to write)")
        return cls(options["path"], max_mb=options.get("max_mb", 100.0), keep=options.get("keep", 5),
                   kinds=tuple(options.get("kinds", (messages.PRED, messages.STATUS, messages.EVENT))),
                   queue_size=options.get("queue", 10_000))

    def send(self, message: Outgoing) -> bool:
        if len(self._backlog) >= self.queue_size:
            self.dropped += 1
            return False
        self._backlog.append(b'{"topic":"' + message.frames[0] + b'",' + message.payload[1:] + b"\n")
        return True

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "failed": self.failed, "rotations": self.rotations,
                "queued": len(self._backlog)}

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
            while self._backlog:
                self._write(self._backlog.popleft())
            self._flush()
            if closing:
                break
        self._file.close()

    def _write(self, line: bytes) -> None:
        try:
            if self._file.closed:   # a rotation failed half-way: try again with a fresh file
                self._file = open(self.path, "ab")
                self._size = self._file.tell()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
            self.sent += 1
        except (OSError, ValueError) as err:
            self.failed += 1
            self.problem = f"cannot write {self.path}: {err.strerror or err}"

    def _flush(self) -> None:
        if self._file.closed:   # a failed rotation: the next line tries a fresh file
            return
        try:
            self._file.flush()
        except OSError as err:
            self.failed += 1
            self.problem = f"cannot write {self.path}: {err.strerror or err}"

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.<keep>, the oldest dropped; then a new, empty path."""
        self._file.close()
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")
        self._size = 0
        self.rotations += 1
