"""Real servers on 127.0.0.1 for the source tests: ffmpeg (TCP MPEG-TS from tools.ffmpeg_server,
HTTP MJPEG) and a GStreamer RTSP server, each started as a subprocess and always killed."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from tools.ffmpeg_server import (  # noqa: F401 - the tests import them from here
    FFMPEG,
    ffmpeg_tcp_ts,
    free_port,
    is_listening,
    served,
    stop_process,
    wait_listening,
    wait_until,
)

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



