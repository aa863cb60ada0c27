"""The decoded-frame cache for training, with clip sampling, augmentation and sharding: NumPy and OpenCV, no
TensorFlow."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.stream.flow import DEFAULT_METHOD, video_motion
from lrcn.stream.video import DECODE_VERSION, read_frames, read_segments

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "lrcn-stream"


def cache_key(path: Path, *parts) -> str:
    """Changes when the file changes (size, mtime) or when any of `parts` does."""
    stat = path.stat()
    text = "|".join(map(str, (path.resolve(), stat.st_size, stat.st_mtime_ns, *parts)))
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def save_npy(file: Path, array: np.ndarray) -> None:
    """Write then rename, so an interrupted run never leaves a half-written cache entry (and
    workers sharing a cache folder never write into each other's temporary file)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_suffix(f".{os.getpid()}.partial.npy")
    np.save(temporary, array)
    temporary.replace(file)


class FrameCache:
    """Frames of each video on the model's grid and size, decoded once and kept as .npy files.

    >>> cache = FrameCache("/tmp/frames", size=(112, 112), fps=10)   # doctest: +SKIP
    >>> cache.frames("clip.avi").shape                               # doctest: +SKIP
    (52, 112, 112, 3)
    """

    def __init__(self, directory: str | Path | None, size: tuple[int, int], fps: float):
        self.directory = Path(directory) if directory else None
        self.size, self.fps = tuple(size), fps

    def frames(self, video_path: str | Path) -> np.ndarray:
        path = Path(video_path)
        if self.directory is None:
            return read_frames(path, self.size, self.fps)
        if not path.is_file():
            raise LrcnError(f"video not found: {path}")
        file = self.directory / f"{cache_key(path, self.size, self.fps, DECODE_VERSION)}.npy"
        if file.exists():
            return np.load(file)
        frames = read_frames(path, self.size, self.fps)
        save_npy(file, frames)
        return frames

    def motion(self, video_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """The flow fields [N, H, W, 2] uint8 and motion levels [N] (NaN at a segment start) of
        `frames(video_path)`, as a live stream of the file computes them (stream.flow), kept like frames."""
        path = Path(video_path)
        if self.directory is None:
            return video_motion(*read_segments(path, self.size, self.fps))
        if not path.is_file():
            raise LrcnError(f"video not found: {path}")
        key = cache_key(path, self.size, self.fps, DECODE_VERSION, DEFAULT_METHOD)
        fields_file, levels_file = self.directory / f"{key}.flow.npy", self.directory / f"{key}.motion.npy"
        if fields_file.exists() and levels_file.exists():
            return np.load(fields_file), np.load(levels_file)
        fields, levels = video_motion(*read_segments(path, self.size, self.fps))
        save_npy(fields_file, fields)
        save_npy(levels_file, levels)
        return fields, levels


class Shard(Protocol):
    """This process's place among the workers that share out the videos (lrcn.models.distribute)."""

    worker: int
    workers: int

    def gather(self, item) -> list:
        """Every worker's item, in worker order (a collective: all workers call it alike)."""


class OneWorker:
    worker, workers = 0, 1

    @staticmethod
    def gather(item) -> list:
        return [item]


def map_sharded(
    items: Sequence, compute: Callable, shard: Shard = OneWorker(), progress: bool = False, desc: str = ""
) -> dict[int, np.ndarray]:
    """{index: compute(items[index])} for every item, each worker computing items i where
    i % workers == worker, then exchanging results a round at a time (one item per worker per
    round, so no message holds more than one video). `compute` returning None leaves an item out.

    >>> map_sharded(["a", "bb", "ccc"], lambda s: np.array(len(s)))
    {0: array(1), 1: array(2), 2: array(3)}
    """
    from tqdm import tqdm

    results = {}
    for start in tqdm(range(0, len(items), shard.workers), desc=desc, unit="round", leave=False, disable=not progress):
        mine = start + shard.worker
        shares = shard.gather(compute(items[mine]) if mine < len(items) else None)
        for offset, value in enumerate(shares):
            if value is not None and start + offset < len(items):
                results[start + offset] = value
    return results


def load_videos(
    paths: Iterable[Path], cache: FrameCache, progress: bool = True, shard: Shard = OneWorker()
) -> dict[Path, np.ndarray]:
    """Decode (or load) every video, each worker its share; a video that cannot be read is logged
    (by the worker that tried it) and skipped."""
    paths = list(paths)

    def decode(path):
        try:
            return cache.frames(path)
        except LrcnError as err:
            log.warning("skipping %s", err)
            return None

    frames = map_sharded(paths, decode, shard, progress, "decoding")
    return {paths[i]: frames[i] for i in sorted(frames)}


def clip_indices(n_frames: int, clip_length: int, start: int) -> np.ndarray:
    """Frame indices of the clip starting at `start`; short videos repeat their last frame."""
    return np.minimum(np.arange(start, start + clip_length), n_frames - 1)


def random_start(n_frames: int, clip_length: int, rng: np.random.Generator) -> int:
    return int(rng.integers(0, max(1, n_frames - clip_length + 1)))


def window_starts(n_frames: int, clip_length: int, stride: int) -> list[int]:
    """Starts of clips covering a whole video, the last one flush with its end.

    >>> window_starts(40, 16, 8)
    [0, 8, 16, 24]
    >>> window_starts(10, 16, 8)
    [0]
    """
    last = max(0, n_frames - clip_length)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def video_windows(features: np.ndarray, clip_length: int, stride: int) -> np.ndarray:
    """Every window of a video's per-frame rows, [windows, clip_length, ...], as evaluation scores them."""
    starts = window_starts(len(features), clip_length, stride)
    return np.stack([features[clip_indices(len(features), clip_length, s)] for s in starts])


def augment_clip(clip: np.ndarray, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """One random crop (80-100% of the side, resized back), optional mirror and brightness/contrast
    change, the same for every frame of the clip so motion stays intact."""
    n, height, width, _ = clip.shape
    scale = rng.uniform(0.8, 1.0)
    crop_h, crop_w = max(8, int(height * scale)), max(8, int(width * scale * rng.uniform(0.9, 1.1)))
    crop_w = min(crop_w, width)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    out = np.empty_like(clip)
    for i in range(n):
        out[i] = cv2.resize(
            clip[i, top : top + crop_h, left : left + crop_w], (width, height), interpolation=cv2.INTER_LINEAR
        )
    if flip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
    return np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def preprocess(frames: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """uint8 RGB -> the float input the network was trained on."""
    return frames.astype(np.float32) * np.float32(scale) + np.float32(offset)
