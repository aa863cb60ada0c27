"""The processes an evidence run stands up and always takes down: ffmpeg serving a video as a
live TCP MPEG-TS stream (`StreamServer`, restartable on its port), N RTSP H.264 cameras from one
file (`rtsp_cameras`, tools/evidence/rtsp_h264_server.py), and `lrcn serve` itself (`serve_command`,
`start_serve`); the video they play by default; and a plain HTTP GET for the metrics port."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.checkout import checkout_or_here
from lrcn.tools.evidence.ffmpeg_server import ffmpeg_tcp_ts, free_port, is_listening, served, stop_process

REPO = checkout_or_here()
RTSP_SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "rtsp_h264_server.py"  # installed beside this folder
# A real 25 fps 320x240 MPEG-4 video, when ../shared has the data.
SHARED_VIDEO = REPO.parent / "shared" / "data" / "ucf101_9" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi"
VIDEO_RATE = 25.0


def default_video(folder: Path) -> Path:
    """SHARED_VIDEO when ../shared has it, else a 25 fps 320x240 one written into `folder` once."""
    if SHARED_VIDEO.is_file():
        return SHARED_VIDEO
    import cv2

    from lrcn.stream.sources import pattern_frames

    path = Path(folder) / "bench-video.avi"
    if not path.is_file():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), VIDEO_RATE, (320, 240))
        for frame in pattern_frames((240, 320), 150):
            writer.write(frame[..., ::-1])
        writer.release()
    return path


def checked_inputs(bundle: str | Path, out: str | Path, video: str | Path | None) -> tuple[Path, Path, Path]:
    """(bundle, out folder, video to serve), checked: a bundle folder, the out folder made, the
    video there (default_video without one)."""
    bundle, out = Path(bundle), Path(out)
    if not (bundle / "meta.json").is_file():
        raise LrcnError(f"not a bundle: {bundle}")
    out.mkdir(parents=True, exist_ok=True)
    video = Path(video) if video else default_video(out)
    if not video.is_file():
        raise LrcnError(f"video not found: {video}")
    return bundle, out, video


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(HTTP status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


# -- lrcn serve --------------------------------------------------------------------------------


def serve_command(
    bundle: str | Path, *args: str, python: str = sys.executable, cli: str = "lrcn.tools.cli"
) -> list[str]:
    """`PYTHON -m CLI serve BUNDLE ARGS...`: the runtime as deployed, in a process of its own."""
    return [python, "-m", cli, "serve", str(bundle), *map(str, args)]


def start_serve(
    bundle: Path,
    urls: list[str],
    names: list[str],
    endpoint: str,
    duration_s: float,
    stats_path: Path,
    extra: list[str] = (),
) -> subprocess.Popen:
    """`lrcn serve` of the named streams for `duration_s`, stats every 2 s and at the end into
    `stats_path`, its log beside it (.stderr)."""
    command = serve_command(
        bundle,
        *urls,
        *[arg for name in names for arg in ("--name", name)],
        "--endpoint",
        endpoint,
        "--read-timeout-s",
        "3",
        "--stats-interval-s",
        "2",
        "--duration",
        str(duration_s),
        "--stats-json",
        str(stats_path),
        *extra,
    )
    return subprocess.Popen(
        command,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(stats_path.with_suffix(".stderr"), "w"),
    )


def terminate(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then kill if it has not exited within `grace_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def tear_down(serve: subprocess.Popen | None, servers: list, recorder) -> None:
    """Whatever happened: kill a serve that is still up, every stream server, and the subscriber."""
    if serve is not None and serve.poll() is None:
        serve.kill()
        serve.wait(10)
    for server in servers:
        server.kill()
    recorder.close()


# -- stream servers ----------------------------------------------------------------------------


class StreamServer:
    """One ffmpeg TCP MPEG-TS server on a fixed port, which can be killed and started again."""

    def __init__(self, video: Path, port: int | None = None):
        self.video, self.port = video, port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 15.0) -> None:
        self.process = subprocess.Popen(
            ffmpeg_tcp_ts(self.video, self.port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LrcnError(f"ffmpeg did not listen on {self.port} (exit {self.process.poll()})")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def rtsp_server_missing() -> str | None:
    """Why the RTSP camera server cannot run here, or None when it can."""
    probe = subprocess.run(
        [sys.executable, str(RTSP_SERVER_SCRIPT), "--check"], capture_output=True, text=True, check=False, timeout=60
    )
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]


@contextlib.contextmanager
def rtsp_cameras(video: Path, count: int):
    """(urls, server process) of `count` RTSP cameras serving `video` (H.264 MP4, not re-encoded),
    one server process, killed when the block ends."""
    port = free_port()
    with served([sys.executable, str(RTSP_SERVER_SCRIPT), str(video.resolve()), str(port), str(count)], port) as server:
        yield [f"rtsp://127.0.0.1:{port}/cam{i}" for i in range(count)], server
