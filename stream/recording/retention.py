"""Retention: one store per record dir, shared by every stream recording there, keeps the files
its media index lists (stream.media_index) within the strictest of their limits, deleting the
oldest first, on a thread of its own. Recorders only tell it what they wrote (`clip_written`,
`wake`); nothing else deletes, and no one walks the record dir.

It looks at nothing but the index: a file the index does not name (someone else's footage, a
`.part` another program writes) is never walked, opened or removed. Each pass:

- drops the rows of finished files that have vanished (deleted by hand);
- cleans up after an earlier run that crashed mid-clip: a row still in progress that another
  run opened, whose `<path>.part` nobody has written to for `STALE_PART_S`, loses its part file
  and its row; a row whose file was renamed into place but not marked finished is marked so;
- deletes by `select_for_deletion`: what is older than `retain_days`, then the oldest while the
  indexed files exceed `max_gb` or the filesystem has less than `min_free_gb` free.

Passes run every `INTERVAL_S`, at once when a clip fails for lack of space (that pass also frees
two clips' worth beyond what is free, so a full disk clears itself even with `min_free_gb = 0`),
and when a finished clip takes the index past `max_gb`. Recorders sharing a dir share its
retention, with the strictest of their limits. Every deletion is an info line, every failure a
warning, and a limit that cannot be met a warning and a status reason (`clip retention: ...`)
when it starts to be broken.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable

from lrcn.stream.media_index import RUN, Entry, Limits, MediaIndex, select_for_deletion

INTERVAL_S = 30.0
STALE_PART_S = 60.0  # a part file of another run untouched this long is a crash's leftover
GB = 10**9

log = logging.getLogger("lrcn.retention")
_registry_lock = threading.Lock()
_by_dir: dict[Path, Retention] = {}


def attach(rules, stream: str, report: Callable[[str], None]) -> tuple[Retention, object]:
    """The retention of `rules.dir` (started on first use) with this recorder's limits added;
    `report(line)` receives the problems of its stream. Returns (retention, token for detach)."""
    key = Path(os.path.realpath(rules.dir))
    with _registry_lock:
        retention = _by_dir.get(key)
        if retention is None:
            retention = _by_dir[key] = Retention(rules.dir)
        token = retention._add(rules, stream, report)
    return retention, token


def out_of_space(err: BaseException) -> bool:
    """Did this failure come from a full disk (or quota)?"""
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err)


class Retention:
    def __init__(self, record_dir: Path, interval_s: float | None = None):
        self.dir = Path(record_dir)
        self.index = MediaIndex(self.dir)
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self._lock = threading.Lock()
        self._users: dict[object, tuple] = {}  # token -> (rules, stream, report)
        self._deleted: Counter[str] = Counter()  # per stream
        self._indexed_bytes = 0  # of finished files, as of the last pass
        self._broken = (False, False)  # (max_gb, min_free_gb) unmet at the last pass
        self._failure: str | None = None  # why the last pass failed
        self._wake, self._short, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"retention-{self.dir.name}", daemon=True)
        self._thread.start()

    # -- recorders (any thread) --------------------------------------------------------------

    def _add(self, rules, stream: str, report) -> object:
        token = object()
        with self._lock:
            self._users[token] = (rules, stream, report)
        self._wake.set()
        return token

    def detach(self, token: object) -> None:
        """A recorder is done; the last one out stops the thread and closes the index."""
        with _registry_lock:
            with self._lock:
                self._users.pop(token, None)
                last = not self._users
            if last and _by_dir.get(Path(os.path.realpath(self.dir))) is self:
                del _by_dir[Path(os.path.realpath(self.dir))]
        if last:
            self._stop.set()
            self._wake.set()
            if threading.current_thread() is not self._thread:
                self._thread.join(10)
            self.index.close()

    def wake(self, short_of_space: bool = False) -> None:
        if short_of_space:
            self._short.set()
        self._wake.set()

    def clip_written(self, size: int) -> None:
        """A clip was finished: a pass now if it takes the index past max_gb (else the timer's)."""
        with self._lock:
            self._indexed_bytes += size
            over = self._users and self._indexed_bytes > self.limits().max_bytes
        if over:
            self._wake.set()

    def deleted(self, stream: str) -> int:
        with self._lock:
            return self._deleted[stream]

    def limits(self) -> Limits:
        """The strictest of the attached recorders' limits."""
        rules = [user[0] for user in self._users.values()]
        days = [r.retain_days for r in rules if r.retain_days is not None]
        return Limits(
            max_bytes=min(r.max_bytes for r in rules),
            min_free_bytes=max(r.min_free_bytes for r in rules),
            retain_days=min(days) if days else None,
        )

    # -- the thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            short = self._short.is_set()
            self._short.clear()
            try:
                self.run_once(short_of_space=short)
                failure = None
            except Exception as err:  # noqa: BLE001 - a failed pass (a dir gone, a locked index) is retried
                failure = f"clip retention of {self.dir}: a pass failed: {type(err).__name__}: {err}"
                if failure != self._failure:  # once, not every pass
                    log.warning("%s", failure)
                    self._report(failure)
            self._failure = failure
            self._wake.wait(self.interval_s)

    def run_once(self, short_of_space: bool = False) -> list[tuple[Entry, str]]:
        """One pass (see the module docstring); the entries it deleted and why."""
        with self._lock:
            if not self._users:
                return []
            limits = self.limits()
        finished = self._tidy(self.index.entries())
        free = shutil.disk_usage(self.dir).free
        configured = limits
        if short_of_space and finished:
            # The limit was not enough to keep a clip from failing: make room for the next two
            # (the next may be longer than any yet, and the index needs a little room too).
            wanted = free + 2 * max(entry.bytes for entry in finished)
            limits = replace(limits, min_free_bytes=max(limits.min_free_bytes, wanted))
        plan = select_for_deletion(finished, limits, time.time(), free)
        gone = set()
        for entry, why in plan.delete:
            if self._delete(entry, why):
                gone.add(entry.id)
        left = [entry for entry in finished if entry.id not in gone]
        with self._lock:
            self._indexed_bytes = sum(entry.bytes for entry in left)
        self._check_limits(left, configured, shutil.disk_usage(self.dir).free)
        return [(entry, why) for entry, why in plan.delete if entry.id in gone]

    def _tidy(self, entries: list[Entry]) -> list[Entry]:
        """Drop rows whose files vanished, clean up crashed runs' rows; the finished entries left."""
        finished = []
        for entry in entries:
            try:
                path = self.index.absolute(entry)
            except ValueError as err:
                log.warning("retention of %s: %s: left alone", self.dir, err)
                continue
            if entry.finished:
                if os.path.lexists(path):
                    finished.append(entry)
                else:
                    self._forget(entry)
                    log.info(
                        "%s is gone (removed by hand?): dropped from the index",
                        entry.path,
                        extra={"stream": entry.stream},
                    )
            else:
                self._unfinished(entry, path)
        return finished

    def _unfinished(self, entry: Entry, path: Path) -> None:
        part = path.with_name(path.name + ".part")
        if os.path.lexists(path) and not os.path.lexists(part):
            # Renamed into place, but the row was not updated (a crash, or an index write that failed).
            with contextlib.suppress(sqlite3.Error):
                self.index.finish(entry.id, path.lstat().st_size)
            return
        if entry.run == RUN:
            return  # being written by this process
        try:
            if time.time() - part.stat().st_mtime <= STALE_PART_S:
                return  # another process may still be writing it
            part.unlink()
            log.info("removed %s.part, left unfinished by an earlier run", entry.path, extra={"stream": entry.stream})
        except FileNotFoundError:
            pass  # it crashed before the file was made
        except OSError as err:
            log.warning(
                "cannot remove %s.part, left unfinished by an earlier run: %s",
                entry.path,
                err.strerror or err,
                extra={"stream": entry.stream},
            )
            return
        self._forget(entry)

    def _forget(self, entry: Entry) -> None:
        # On a full disk the index may not take the change; the file's absence says it next pass.
        with contextlib.suppress(sqlite3.Error):
            self.index.forget(entry.id)

    def _delete(self, entry: Entry, why: str) -> bool:
        path = self.index.absolute(entry)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            line = f"clip retention: cannot delete {entry.path}: {err.strerror or err}"
            log.warning("%s", line, extra={"stream": entry.stream})
            self._report(line, stream=entry.stream)
            return False
        else:
            log.info(
                "deleted %s (%.1f MB, %s)",
                entry.path,
                entry.bytes / 1e6,
                why,
                extra={"stream": entry.stream, "reason": why},
            )
            with self._lock:
                self._deleted[entry.stream] += 1
        self._forget(entry)
        return True

    def _check_limits(self, left: list[Entry], limits: Limits, free: int) -> None:
        total = sum(entry.bytes for entry in left)
        broken, names = [], (total > limits.max_bytes, free < limits.min_free_bytes)
        if total > limits.max_bytes:
            what = f"the newest clip {left[-1].path} alone" if len(left) == 1 else f"{self.dir} still"
            broken.append(f"{what} holds {total / GB:.3g} GB of clips, over max_gb = {limits.max_bytes / GB:g}")
        if free < limits.min_free_bytes:
            broken.append(
                f"{free / GB:.3g} GB free on {self.dir}, under min_free_gb = {limits.min_free_bytes / GB:g}, "
                f"with no clip of ours left to delete but the newest"
            )
        if names == self._broken:  # said once when it starts, not on every pass
            return
        if broken:
            line = f"clip retention: {'; '.join(broken)}"
            log.warning("%s", line)
            self._report(line)
        elif any(self._broken):
            log.info("clip retention: %s is within its limits again", self.dir)
        self._broken = names

    def _report(self, line: str, stream: str | None = None) -> None:
        with self._lock:
            reports = [report for _, name, report in self._users.values() if stream is None or name == stream]
        for report in reports:
            report(line)
