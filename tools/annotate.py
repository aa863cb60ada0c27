"""`lrcn annotate`: a copy of a video with the streaming prediction drawn on every frame.

The frames go through the same scheduler and window code as `lrcn serve` (sampled on the
file's timeline, encoded once, exact windows by default), read as fast as they decode.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stream.errors import LrcnError
from stream.ring import Frame
from stream.runtime_bundle import load_runtime_bundle
from stream.scheduler import Prediction, Scheduler, StreamPlan
from stream.smoothing import parse_smoothing
from stream.sources import probe_file
from stream.video import resize_rgb, video_fps
from stream.windows import EXACT, WindowConfig

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
    cv2.putText(frame_bgr, text, (4, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise LrcnError(f"output must end in one of {', '.join(FOURCC)}, got {path}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise LrcnError(f"cannot write video: {path}")
    return writer


def annotate(bundle_dir, video, out, *, mode: str = EXACT, hop: int = 1, reset_every: int | None = None,
             smooth: str | None = None, fps: float | None = None, backend: str = "onnxruntime",
             threads: int | None = None) -> dict:
    """Write `out`; return {"frames", "predictions", "out"}."""
    bundle = load_runtime_bundle(bundle_dir, backend, threads=threads)
    spec = bundle.meta.spec
    probe_file(str(video))
    plan = StreamPlan("video", fps or spec.fps, WindowConfig(mode, hop, reset_every), parse_smoothing(smooth))
    scheduler = Scheduler(bundle.head, spec.clip_length, bundle.encoder, [plan])
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    file_fps = video_fps(capture)
    scheduler.set_media_fps(plan.id, file_fps)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    out = Path(out)
    writer = open_writer(out, file_fps, size)
    current, index, predictions = None, 0, 0
    try:
        while True:
            chunk = []
            while len(chunk) < CHUNK and (read := capture.read())[0]:
                chunk.append(read[1])
            if not chunk:
                break
            frames = [Frame(resize_rgb(bgr, spec.input_size), index + i, (index + i) / file_fps)
                      for i, bgr in enumerate(chunk)]
            pending = scheduler.process({plan.id: frames}).predictions
            predictions += len(pending)
            for i, bgr in enumerate(chunk):
                while pending and pending[0].frame_index <= index + i:
                    current = pending.pop(0)
                draw_prediction(bgr, current)
                writer.write(bgr)
            index += len(chunk)
    finally:
        capture.release()
        writer.release()
    return {"frames": index, "predictions": predictions, "out": str(out)}
