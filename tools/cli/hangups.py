"""SIGHUP queued from the first moment of `lrcn serve`.

`lrcn serve` reloads its deployment file on SIGHUP. Python's default action for SIGHUP ends the
process, and the bundle and runtime take seconds to load, so a SIGHUP sent while serve starts
(a `systemctl reload` right after `start`) would kill it. `queue()` is called before any heavy
import; the main loop takes the queued SIGHUP (`take()`) once it serves, and reloads then.
"""

from __future__ import annotations

import signal
import threading

pending = threading.Event()


def _on_hangup(_number, _frame) -> None:
    pending.set()


def queue() -> None:
    """From now on a SIGHUP sets `pending` instead of ending the process (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, _on_hangup)


def take() -> bool:
    """Whether a SIGHUP came since the last call."""
    if pending.is_set():
        pending.clear()
        return True
    return False
