"""A copy of a video with the streaming prediction drawn on every frame (`lrcn annotate`, whose
command and arguments are in tools/cli/annotate.py).

The frames go through the same capture, sampling grid, flow (for a bundle that sees motion),
scheduler and window code as `lrcn serve` (encoded once per modality, exact windows by
default), read as fast as they decode.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import UNKNOWN
from lrcn.stream.flow import MotionTracker
from lrcn.stream.novelty import stream_threshold
from lrcn.stream.ring import Frame
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sampling import Sampler
from lrcn.stream.scheduler import Prediction, Scheduler, StreamPlan
from lrcn.stream.smoothing import parse_smoothing
from lrcn.stream.sources import CaptureError, SourceOptions, check_source, stamped
from lrcn.stream.sources.pyav import PyavCapture
from lrcn.stream.windows import EXACT, WindowConfig

CHUNK = 16  # frames read per scheduler call: batches the encoder without holding the video in memory
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "VP80"}


def draw_prediction(frame_bgr: np.ndarray, prediction: Prediction | None) -> None:
    """The label and score in a dark box at the top left, in place."""
    text = "..." if prediction is None else f"{prediction.label} {prediction.score:.2f}"
    scale = max(0.35, frame_bgr.shape[0] / 480)
    thickness = max(1, round(scale * 1.5))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if width > frame_bgr.shape[1] - 8:  # a small video: shrink the text to fit its width
        scale *= (frame_bgr.shape[1] - 8) / width
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(frame_bgr, (0, 0), (width + 8, height + baseline + 8), (0, 0, 0), -1)
    cv2.putText(
        frame_bgr, text, (4, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise LrcnError(f"output must end in one of {', '.join(FOURCC)}, got {path}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise LrcnError(f"cannot write video: {path}")
    return writer


def annotate(
    bundle_dir,
    video,
    out,
    *,
    mode: str = EXACT,
    hop: int = 1,
    reset_every: int | None = None,
    smooth: str | None = None,
    fps: float | None = None,
    backend: str = "onnxruntime",
    threads: int | None = None,
    novelty: str | float | None = None,
) -> dict:
    """Write `out`; return {"frames", "predictions", "unknown", "guarded", "out"}. With the bundle's
    open-set guard (or a `novelty` threshold; "off" for none), a window scored over the threshold
    is drawn as `unknown`, as `lrcn serve` publishes it."""
    bundle = load_runtime_bundle(bundle_dir, backend, threads=threads)
    spec = bundle.meta.spec
    threshold = stream_threshold(novelty, bundle.novelty, "video")
    options = SourceOptions(fps=fps or spec.fps, pace=False)
    check_source(str(video), spec.input_size, options)
    plan = StreamPlan("video", WindowConfig(mode, hop, reset_every), parse_smoothing(smooth))
    scheduler = Scheduler(
        bundle.head, spec.clip_length, bundle.encoder, [plan], novelty=bundle.novelty if threshold is not None else None
    )
    motion = MotionTracker() if bundle.needs_flow else None
    capture = PyavCapture(str(video), spec.input_size, options)
    out = Path(out)
    writer = None
    current, index, predictions, unknown = None, 0, 0, 0
    try:
        decoded, sampler = stamped(capture, live=False), Sampler(options.fps, capture.fps)
        segment = 0
        while True:
            chunk, sampled = [], []
            for t, frame in decoded:
                keep, jumped = sampler.offer(t) if t is not None else (False, False)
                segment += jumped
                if keep:
                    image = capture.to_rgb(frame)
                    flow, level = motion.step(image, segment) if motion is not None else (None, None)
                    sampled.append(Frame(image, index + len(chunk), t, segment, pts=t, flow=flow, motion=level))
                chunk.append(frame.to_ndarray(format="bgr24"))
                if len(chunk) == CHUNK:
                    break
            if not chunk:
                break
            if writer is None:
                writer = open_writer(out, capture.fps or 25.0, (chunk[0].shape[1], chunk[0].shape[0]))
            pending = [guarded(p, threshold) for p in scheduler.process({plan.id: sampled}).predictions]
            predictions += len(pending)
            unknown += sum(p.label == UNKNOWN for p in pending)
            for i, bgr in enumerate(chunk):
                while pending and pending[0].frame_index <= index + i:
                    current = pending.pop(0)
                draw_prediction(bgr, current)
                writer.write(bgr)
            index += len(chunk)
    except CaptureError as err:  # a file that breaks part way: what was decoded before the break is written
        if err.fatal:
            raise LrcnError(f"{video}: {err.reason}") from None
    finally:
        capture.close()
        if writer is not None:
            writer.release()
    return {
        "frames": index,
        "predictions": predictions,
        "unknown": unknown,
        "guarded": threshold is not None,
        "out": str(out),
    }


def guarded(prediction: Prediction, threshold: float | None) -> Prediction:
    """The prediction as drawn: labelled `unknown` when its window's novelty is over the threshold."""
    if threshold is None or prediction.novelty is None or prediction.novelty <= threshold:
        return prediction
    return replace(prediction, label=UNKNOWN)
