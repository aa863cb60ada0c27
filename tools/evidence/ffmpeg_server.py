"""ffmpeg serving a video file live on 127.0.0.1, as a camera would (TCP MPEG-TS), started as a
subprocess and always killed; and ffmpeg making the videos the tools and tests play (`run_ffmpeg`,
`pattern_video`, `still_clip`). Used by the streaming-accuracy tool, the benches and the tests.

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
from collections.abc import Sequence
from pathlib import Path

from lrcn.stream.errors import LrcnError

FFMPEG = shutil.which("ffmpeg")

# Output options the tools and tests encode with: H.264 any player reads, and MJPEG at near-lossless
# quality (every frame a picture of its own, so a still frame stays the same frame after frame).
H264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
MJPEG = ("-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p")


def run_ffmpeg(*args: str, timeout_s: float = 300) -> str:
    """`ffmpeg -nostdin -loglevel error -y ARGS...` to its end; its stdout. A failure is a one-line LrcnError."""
    if FFMPEG is None:
        raise LrcnError("ffmpeg not found (apt-get install ffmpeg)")
    done = subprocess.run(
        [FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise LrcnError(f"ffmpeg failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


def still_clip(image: Path, clip: Path, seconds: float, fps: float) -> Path:
    """`image` held for `seconds` at `fps` as an MJPEG clip: every frame the same picture."""
    run_ffmpeg("-loop", "1", "-framerate", f"{fps:g}", "-i", str(image), "-t", f"{seconds:.3f}", *MJPEG, str(clip))
    return clip


def lavfi(*sources: str) -> list[str]:
    """ffmpeg's input options for generated sources (`testsrc2=s=64x64:r=25:d=4`, ...), an input each."""
    return [option for source in sources for option in ("-f", "lavfi", "-i", source)]


def pattern_video(path: Path, segments: Sequence[tuple[str, float]], size: str, *encoding: str) -> Path:
    """H.264 at `size` (WxH) and 25 fps of ffmpeg's generated pictures in turn, each a (`pattern` (its
    test pattern, testsrc2) or `black`, seconds); `encoding`: more output options (a GOP)."""
    sources = {"pattern": "testsrc2=", "black": "color=black:"}
    inputs = lavfi(*(f"{sources[kind]}s={size}:r=25:d={seconds}" for kind, seconds in segments))
    chain = "".join(f"[{i}]" for i in range(len(segments))) + f"concat=n={len(segments)}:v=1[v]"
    joining = ["-filter_complex", chain, "-map", "[v]"] if len(segments) > 1 else []
    run_ffmpeg(*inputs, *joining, *H264, *encoding, str(path))
    return path


def keyframe_every(frames: int, exactly: bool = True) -> list[str]:
    """A GOP of `frames`; `exactly`: no shorter GOP either, not even at a scene cut."""
    fixed = ["-keyint_min", str(frames), "-sc_threshold", "0"] if exactly else []
    return ["-g", str(frames), *fixed]


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
    return ffmpeg_sending(video, f"tcp://127.0.0.1:{port}?listen=1", mpeg_ts(codec, gop), loop=loop)


def mpeg_ts(codec: str = "mpeg2video", gop: int = 10) -> list[str]:
    """Output options for MPEG-TS as the test cameras send it."""
    return ["-c:v", codec, "-q:v", "5", "-g", str(gop), "-f", "mpegts"]


def ffmpeg_sending(video: Path, url: str, output: Sequence[str], loop: bool = False) -> list[str]:
    """The command that sends `video` in real time (-re) to `url` with the `output` options."""
    looping = ["-stream_loop", "-1"] if loop else []
    return [FFMPEG or "ffmpeg", "-nostdin", "-loglevel", "error", "-re", *looping, "-i", str(video), *output, url]
