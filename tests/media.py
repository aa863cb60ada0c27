"""Reading back what the recorder wrote: demuxed packets, played clips."""

from pathlib import Path

import av
import cv2
from lrcn.stream.recording import ClipRecorder
from lrcn.tools.evidence.ffmpeg_server import still_clip

from tests.live_servers import wait_until


FPS = 25  # the recorder tests' H.264 file (the `h264` fixture)
# The event-store tests' file (the `patterned` fixture), WIDTH x HEIGHT: ("black" | "pattern", seconds):
# three events, the third 7 s long.
WIDTH, HEIGHT = 320, 240
SEGMENTS = [
    ("black", 2),
    ("pattern", 2.5),
    ("black", 1.5),
    ("pattern", 2.5),
    ("black", 1.5),
    ("pattern", 7),
    ("black", 2),
]


class Demux:
    """A real demux of a file fed to a recorder in this thread, as far as asked."""

    def __init__(self, path: Path, recorder: ClipRecorder):
        self.container = av.open(str(path))
        self.video_stream = self.container.streams.video[0]
        self.packets = (p for p in self.container.demux(self.video_stream) if p.size)
        self.recorder = recorder
        self.t = None
        recorder.connected(self.video_stream)

    def to(self, t: float | None = None) -> None:
        """Feed packets until one at stream time >= t has been fed (all of them if t is None)."""
        for packet in self.packets:
            self.recorder.feed(packet)
            self.t = float(packet.pts * self.video_stream.time_base)
            if t is not None and self.t >= t:
                return

    def close(self) -> None:
        self.recorder.disconnected()
        self.container.close()


def finished(recorder: ClipRecorder, clips: int, timeout_s: float = 15.0) -> bool:
    return wait_until(lambda: recorder.stats().clips + recorder.stats().failed >= clips, timeout_s)


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in text


def record_one(
    recorder: ClipRecorder, feeding: Demux, start: float, seconds: float = 1.0, event_id: str | None = None
) -> Path:
    """One event from `start` for `seconds`, fed until its clip is written; the clip's path."""
    done = recorder.stats().clips + recorder.stats().failed
    feeding.to(start)
    path = Path(recorder.start(start, "run", event_id))
    feeding.to(start + seconds)
    recorder.end(start + seconds)
    feeding.to(start + seconds + recorder.rules.post_s + 0.5)
    assert finished(recorder, done + 1)
    return path


def still_video(tmp_path, seconds: float = 4.0):
    """WEIZMANN_VIDEO's middle frame held still (`ffmpeg -loop 1`, MJPEG: every frame the same)."""
    from tests.bundles import real_video  # here: conftest imports this module before tests.bundles, a plugin

    video = real_video(tmp_path)
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) // 2)
    ok, frame = capture.read()
    capture.release()
    assert ok
    cv2.imwrite(str(tmp_path / "still.png"), frame)
    still = still_clip(tmp_path / "still.png", tmp_path / "still.avi", seconds, 25)
    return still
