"""Real servers on 127.0.0.1 for the source tests: ffmpeg (TCP MPEG-TS, HTTP MJPEG) and a
GStreamer RTSP server, each started as a subprocess and always killed."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

FFMPEG = shutil.which("ffmpeg")
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_video(path: Path, n_frames: int, fps: float = 25.0, size=(96, 128), fourcc: str = "MJPG") -> Path:
    """Frames whose red level encodes the frame number (BGR written, so RGB reads see it in channel 0)."""
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n_frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 2] = 40 + (i * 7) % 200
        cv2.rectangle(frame, (4 + i % 50, 10), (24 + i % 50, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


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


def ffmpeg_tcp_ts(video: Path, port: int) -> list[str]:
    return [FFMPEG, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
            "-c:v", "mpeg2video", "-q:v", "5", "-g", "10", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"]


def ffmpeg_http_mjpeg(video: Path, port: int) -> list[str]:
    return [FFMPEG, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
            "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/s.mjpg"]


def rtsp_server(video: Path, port: int) -> list[str]:
    return [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), str(video), str(port)]


def gstreamer_rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run([SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--check"], check=False, capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return ("GStreamer RTSP server not installed (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi "
                "gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav): "
                + (probe.stderr.strip().splitlines() or ["?"])[-1])
    return None


def wait_until(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()

