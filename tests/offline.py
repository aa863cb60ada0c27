"""The offline oracle: the runtime bundle on every window of a file's sampled frames."""

import numpy as np
from lrcn.stream.ring import Frame
from lrcn.stream.sampling import Sampler
from lrcn.stream.sources import SourceOptions, timeline
from lrcn.stream.sources.pyav import PyavCapture


def file_frames(video, size, fps) -> list[Frame]:
    """A file's frames on the model's grid, indexed and stamped as a capture thread writes them."""
    capture = PyavCapture(str(video), size, SourceOptions(fps=fps))
    try:
        return [
            Frame(capture.to_rgb(frame), n, captured_at=100.0 + t, pts=t)
            for n, (t, _, frame) in enumerate(timeline(capture, False, Sampler(fps, capture.fps)))
            if frame is not None
        ]
    finally:
        capture.close()


def offline(bundle, frames: list[Frame], hop: int = 1) -> dict[tuple[int, int], np.ndarray]:
    """The offline model on every window of a stream's sampled frames: {(first, last) frame index: probabilities}."""
    T = bundle.meta.spec.clip_length
    return {
        (frames[s].index, frames[s + T - 1].index): bundle.clip_probabilities(
            np.stack([f.image for f in frames[s : s + T]])
        )
        for s in range(0, len(frames) - T + 1, hop)
    }


def offline_windows(bundle, video, hop: int = 1) -> dict:
    """{(first, last) source frame index: probabilities} of the offline model on the file's sampled frames."""
    spec = bundle.meta.spec
    return offline(bundle, file_frames(video, spec.input_size, spec.fps), hop)
