"""Hide libraries' noise (TensorFlow's C++ log lines, Python warnings) unless --verbose.

TensorFlow 2.21 logs from C++ through absl, straight to file descriptor 2, so neither Python's
`sys.stderr` nor its `logging` sees those lines. `TF_CPP_MIN_LOG_LEVEL=3` (read when TensorFlow
loads) silences most of them, but not all: the lines written while its shared libraries load,
before absl's logging is initialised, ignore it:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796041853.590902   13260 port.cc:153] oneDNN custom operations are on. ...

and later C++ code (grappler's `devices.cc`, `single_machine.cc`, XLA and CUDA on a GPU) may
log the same way. So, for the commands that import TensorFlow, fd 2 is routed through a pipe
that a daemon thread reads: it drops the lines that have a C++ log prefix and copies every
other byte, in order, to the real stderr. At exit the real stderr is put back and the thread
drained, so none of our own lines (`lrcn: ...`, progress, `lrcn: error: ...`) is lost.

Python's side: warnings are ignored, and the `tensorflow` and `absl` loggers (retracing
notes, Keras saving notes) only let errors through.
"""

from __future__ import annotations

import atexit
import os
import re
import stat
import sys
import threading
import warnings

# A whole line that TensorFlow, XLA or absl wrote from C++. F (fatal) lines are kept: they say why
# the process is about to abort.
NATIVE_LINE = re.compile(
    rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # absl: I0000 00:00:1796041853.590902  13260 port.cc:153] ...
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "  # TensorFlow < 2.16: 2024-05-01 12:00:00.123456: I ...
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow"  # cpu_feature_guard's second line
)
# The start of a line that may still turn out to be one: held back until its end arrives.
NATIVE_START = re.compile(rb"[IWE]\d|\d{4}-\d\d-\d\d |WARNING: All log|To enable the")

_quiet = False
_filtering = False


def quiet_libraries(verbose: bool = False) -> None:
    """Called by `lrcn` before any command runs: settings that must precede TensorFlow's import."""
    global _quiet
    if verbose:
        return
    _quiet = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # not setdefault: without --verbose a command is quiet
    warnings.simplefilter("ignore")


def import_tensorflow():
    """Import TensorFlow (ImportError if it is missing) with its noise hidden unless --verbose."""
    if _quiet:
        filter_native_stderr()
    import tensorflow

    if _quiet:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
        tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def filter_native_stderr() -> None:
    """Route fd 2 through `_pump`, which drops C++ log lines; once per process."""
    global _filtering
    if _filtering or sys.stderr is None:  # None: started without fd 2, which an open file may hold by now
        return
    sys.stderr.flush()
    try:
        real = os.dup(2)
    except OSError:
        return
    read, write = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)  # room for bursts while the GIL is held
    except (ImportError, OSError):
        pass
    os.dup2(write, 2)
    os.close(write)
    pipe = os.fstat(2).st_ino
    thread = threading.Thread(target=_pump, args=(read, real), name="lrcn-stderr-filter", daemon=True)
    thread.start()
    atexit.register(_restore, real, pipe, thread)
    _filtering = True


def _pump(read: int, real: int) -> None:
    """Copy the pipe to the real stderr, less the C++ log lines, until every writer has closed it."""
    held = b""  # the start of a line that may be a C++ log line
    passing = False  # the current line is ours and its start has already been written
    while chunk := os.read(read, 1 << 16):
        *lines, tail = (held + chunk).split(b"\n")
        out = []
        for line in lines:
            if passing or not NATIVE_LINE.match(line):
                out.append(line + b"\n")
            passing = False
        held = b""
        if tail:
            if passing or not NATIVE_START.match(tail):  # a progress bar, a prompt: no need to wait
                out.append(tail)
                passing = True
            else:
                held = tail
        _write(real, b"".join(out))
    _write(real, held)
    os.close(read)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the real stderr is gone (closed, a broken pipe): keep draining regardless
        pass


def _restore(real: int, pipe: int, thread: threading.Thread) -> None:
    """At exit: the real stderr back on fd 2, and everything already in the pipe written to it."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # replaced, closed or gone
        pass
    try:
        ours = os.fstat(2)
        if stat.S_ISFIFO(ours.st_mode) and ours.st_ino == pipe:  # not replaced since (a test's capture)
            os.dup2(real, 2)  # closes the pipe's last write end here: the thread reads to its end
    except OSError:
        pass
    thread.join(timeout=2)  # a child process still holding the pipe must not hold up the exit
