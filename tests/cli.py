"""Running `lrcn ...` as a user does, in a subprocess of this Python: the one way the tests start
the command, to the end (`lrcn`) or in the background (`start_lrcn`), and stop it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.paths import ROOT


def command(*args, module: str = "lrcn.tools.cli") -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def lrcn(
    *args, module: str = "lrcn.tools.cli", cwd: Path | None = None, env: dict | None = None, timeout: float = 300, **run
) -> subprocess.CompletedProcess:
    """`lrcn ARGS...` run to its end; its exit status and text output."""
    return subprocess.run(
        command(*args, module=module),
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=timeout,
        check=False,
        **run,
    )


def start_lrcn(*args, **popen) -> subprocess.Popen:
    """`lrcn ARGS...` started, its stdout and stderr piped as text (popen: more Popen arguments)."""
    return subprocess.Popen(
        command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM (as systemd and Ctrl-C stop it), then its (stdout, stderr); killed if it outlives 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM a process started in its own session and its whole group, SIGKILL what lingers
    (Chromium's helpers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def stderr_until(process: subprocess.Popen, text: str, timeout_s: float = 30.0) -> str:
    """Read a started process's stderr until it holds `text` (a log line saying something has
    happened), or `timeout_s` passes: what was read, which `communicate` will not return again."""
    fd, read, deadline = process.stderr.fileno(), b"", time.monotonic() + timeout_s
    while text.encode() not in read:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        read += chunk
    return read.decode(errors="replace")


def metrics_url(process: subprocess.Popen) -> str:
    """The metrics URL from serve's first line of output."""
    line = process.stdout.readline()
    assert "metrics on " in line, line + (process.stderr.read() if process.poll() is not None else "")
    return line.split("metrics on ", 1)[1].split("/metrics", 1)[0]


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 and one `lrcn: error:` line holding every word, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lrcn: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def cam_serve(bundle, source) -> tuple:
    """The first arguments of `lrcn serve` on one stream, named `cam`, from `source`."""
    return ("serve", bundle, source, "--name", "cam")


def serve_events(bundle, video, tmp_path, *extra, during=None) -> tuple[list[dict], str]:
    """Run `lrcn serve` on the file to its end; (every JSONL message, stderr). `during(process)`
    runs in a thread while it serves."""
    jsonl = tmp_path / "messages.jsonl"
    process = start_lrcn(
        *cam_serve(bundle, video),
        "--endpoint",
        "tcp://127.0.0.1:0",
        "--jsonl",
        jsonl,
        "--watch-classes",
        "wave_one_hand",
        "--min-score",
        "0",
        "--min-duration",
        "0.5",
        "--stats-interval",
        "0.5",
        *extra,
    )
    helper = threading.Thread(target=during, args=(process,), daemon=True) if during else None
    if helper:
        helper.start()
    _, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    return [json.loads(line) for line in jsonl.read_text().splitlines()], err


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
