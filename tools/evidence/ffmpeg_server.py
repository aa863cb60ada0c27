"""ffmpeg serving a video file live on 127.0.0.1, as a camera would (TCP MPEG-TS), started as a
subprocess and always killed. Used by the streaming-accuracy tool and the source tests.

>>> port = free_port()                                                      # doctest: +SKIP
>>> with served(ffmpeg_tcp_ts(Path("walk.avi"), port, loop=False), port):   # doctest: +SKIP
...     capture = cv2.VideoCapture(f"tcp://127.0.0.1:{port}")
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_listening(port: int) -> bool:
    """Whether something listens on the TCP port, or has already taken a client on it, read from
    /proc so no connection is made (ffmpeg's `listen=1` servers take exactly one client and stop
    listening once a reconnecting client got there first)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in lines.readlines()[1:]:
                local_address, state = line.split()[1], line.split()[3]
                if local_address.endswith(f":{port:04X}") and state in ("0A", "01"):  # LISTEN, ESTABLISHED
                    return True
    return False


def wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_listening(port):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on {port} after {timeout_s} s")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@contextlib.contextmanager
def served(command: list[str], port: int):
    """Run a server command until the block ends; waits until it listens on `port`."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            try:
                wait_listening(port, process)
            except RuntimeError as err:
                log.seek(0)
                raise RuntimeError(f"{err}; {command[0]} said: {log.read()[-2000:]}") from None
            yield process
        finally:
            stop_process(process)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def ffmpeg_tcp_ts(video: Path, port: int, loop: bool = True, codec: str = "mpeg2video", gop: int = 10) -> list[str]:
    """Serve `video` in real time (-re) as MPEG-TS to the first client of tcp://127.0.0.1:PORT;
    ffmpeg waits for that client before it reads the first frame, so the client sees frame 0 first.
    MPEG-2 knows only the broadcast frame rates: a slower camera needs `codec="mpeg4"`."""
    looping = ["-stream_loop", "-1"] if loop else []
    return [
        FFMPEG,
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        *looping,
        "-i",
        str(video),
        "-c:v",
        codec,
        "-q:v",
        "5",
        "-g",
        str(gop),
        "-f",
        "mpegts",
        f"tcp://127.0.0.1:{port}?listen=1",
    ]
