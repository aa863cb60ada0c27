"""Real servers on 127.0.0.1 for the source tests: ffmpeg (TCP MPEG-TS from lrcn.tools.evidence.ffmpeg_server,
HTTP MJPEG) and a GStreamer RTSP server, each started as a subprocess and always killed."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from lrcn.tools.evidence.ffmpeg_server import (  # noqa: F401 - the tests import them from here
    FFMPEG,
    ffmpeg_sending,
    ffmpeg_tcp_ts,
    free_port,
    is_listening,
    lavfi,
    mpeg_ts,
    run_ffmpeg,
    served,
    stop_process,
    wait_listening,
    wait_until,
)
from lrcn.stream.sources import SourceOptions

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


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


def ffmpeg_http_mjpeg(video: Path, port: int) -> list[str]:
    mjpeg = ["-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1"]
    return ffmpeg_sending(video, f"http://127.0.0.1:{port}/s.mjpg", mjpeg, loop=True)


def rtsp_server(video: Path, port: int, tcp_only: bool = False) -> list[str]:
    return [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), str(video), str(port), *(["tcp"] if tcp_only else [])]


def gstreamer_rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--check"], check=False, capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return (
            "GStreamer RTSP server not installed (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi "
            "gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav): "
            + (probe.stderr.strip().splitlines() or ["?"])[-1]
        )
    return None


class LoopbackServer:
    """A TCP server on 127.0.0.1 that hands each client, one at a time, to `handle` until `close()`."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            with client:
                self.handle(client)

    def handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.listener.close()


class BurstRelay(LoopbackServer):
    """A TCP relay on 127.0.0.1 that holds what the upstream server sends and releases it in
    bursts every `hold_s`, as a congested network or a camera's send buffer does: frames then
    arrive in bunches, each bunch within milliseconds. Stops by itself at `close()`."""

    def __init__(self, upstream_port: int, hold_s: float = 1.0):
        self.upstream_port, self.hold_s = upstream_port, hold_s
        self.bursts = 0
        super().__init__()

    def handle(self, client: socket.socket) -> None:
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5) as upstream:
            upstream.settimeout(0.05)
            held, release_at = bytearray(), time.monotonic() + self.hold_s
            while not self._closed.is_set():
                try:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    held += chunk
                except TimeoutError:
                    pass
                if time.monotonic() >= release_at and held:
                    client.sendall(held)
                    held.clear()
                    self.bursts += 1
                    release_at = time.monotonic() + self.hold_s


class DroppingServer(LoopbackServer):
    """A camera whose connection drops over and over: each client gets `payload` (an MPEG-TS
    file) at once, then the server hangs up after `hold_s`; the next connection gets the same."""

    def __init__(self, payload: bytes, hold_s: float = 1.0):
        self.payload, self.hold_s = payload, hold_s
        self.connections = 0
        super().__init__()

    def handle(self, client: socket.socket) -> None:
        self.connections += 1
        try:
            client.sendall(self.payload)
        except OSError:
            return
        self._closed.wait(self.hold_s)


def ts_clip(path: Path, seconds: float, fps: int = 25, *more: str) -> Path:
    """`seconds` of ffmpeg's test pattern as MPEG-TS (MPEG-2 video, 128x96); `more` output options."""
    run_ffmpeg(*lavfi(f"testsrc2=size=128x96:rate={fps}"), "-t", str(seconds), *mpeg_ts(gop=12), *more, str(path))
    return path


def ts_with_timestamp_break(path: Path, kind: str, seconds: float = 3.0, fps: int = 25) -> tuple[Path, int]:
    """An MPEG-TS file of two parts whose timestamps break between them: `reset` (the second part
    starts again from zero, as a camera that restarted its encoder) or `jump` (it starts 100 s
    later). Returns the file and the index of the second part's first frame."""
    parts = []
    for i, offset in enumerate((0, 0 if kind == "reset" else 100)):
        part = ts_clip(path.with_name(f"{path.stem}-part{i}.ts"), seconds, fps, "-output_ts_offset", str(offset))
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    return path, round(seconds * fps)


def states(events) -> list:
    """Status event states with consecutive repeats folded: [a, b, b, c] -> [a, b, c]."""
    folded = []
    for event in events:
        if not folded or folded[-1] != event.state:
            folded.append(event.state)
    return folded


def run_to_end(source, timeout_s: float = 20.0):
    """Start a source, wait for its thread to end, and return what its ring holds."""
    source.start()
    assert wait_until(lambda: not source.running, timeout_s)
    return source.ring.read_new()


def read_across_a_server_restart(source, server: list[str], port: int, frames: int, timeout_s: float = 15.0) -> None:
    """Serve, start `source` and let it read `frames` frames; kill the server until the source is
    reconnecting; serve again until it has reconnected once and read `frames` more; stop it while
    the server still streams."""
    try:
        with served(server, port):
            source.start()
            assert wait_until(lambda: source.frames >= frames, timeout_s), source.stats()
        assert wait_until(lambda: source.state == "reconnecting", 10), source.stats()
        before = source.frames
        with served(server, port):
            assert wait_until(lambda: source.reconnects == 1 and source.frames >= before + frames, timeout_s), (
                source.stats()
            )
            assert source.stop(timeout_s=10.0), "stopped while the server still streams"
    finally:
        source.stop()


LIVE = SourceOptions(
    backoff_initial_s=0.2, backoff_max_s=1.0, max_attempts=None, open_timeout_s=5.0, read_timeout_s=3.0
)
