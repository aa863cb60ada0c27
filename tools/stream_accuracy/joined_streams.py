"""The joined stream of `lrcn stream-accuracy`: held-out test videos ordered so the action
changes, re-encoded by ffmpeg to one size and rate and joined into one MJPEG .avi with its
per-frame labels beside it; and the clips of a scene where nothing happens (still frames, gray)."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import MJPEG, lavfi, run_ffmpeg, still_clip


def order_videos(videos: Sequence, class_names: Sequence[str], count: int | None, seed: int = 0) -> list:
    """Up to `count` videos in rounds of one per class (classes shuffled each round), never two of a
    class in a row; within a class, groups are taken in turn so a round spreads over groups."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for video in sorted(videos, key=lambda v: (v.label, v.group, str(v.path))):
        by_class.setdefault(video.label, []).append(video)
    for label, queue in by_class.items():  # round robin over groups: g01 c01, g02 c01, ..., g01 c02, ...
        per_group: dict[str, list] = {}
        for video in queue:
            per_group.setdefault(video.group, []).append(video)
        lanes = list(per_group.values())
        by_class[label] = [lane[i] for i in range(max(map(len, lanes))) for lane in lanes if i < len(lane)]
    if len(by_class) < 2:
        raise LrcnError(f"the test videos hold {len(by_class)} class(es); a stream whose action changes needs two")
    chosen: list = []
    limit = count if count is not None else len(videos)
    while len(chosen) < limit and any(by_class.values()):
        labels = [label for label, queue in by_class.items() if queue]
        rng.shuffle(labels)
        if chosen and labels[0] == chosen[-1].label:
            labels.append(labels.pop(0))
        for label in labels:
            if len(chosen) < limit and not (chosen and chosen[-1].label == label):
                chosen.append(by_class[label].pop(0))
    return chosen


def count_frames(video: Path) -> int:
    """Frames in a video by counting its packets (every MJPEG packet is a frame), without decoding."""
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            str(video),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        return int(done.stdout.strip().split(",")[0])
    except ValueError:
        raise LrcnError(f"ffprobe cannot count the frames of {video}: {done.stderr.strip()[-200:]}") from None


def frame_size(video: Path) -> tuple[int, int]:
    """(width, height) of a video's frames."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if min(size) <= 0:
        raise LrcnError(f"cannot read the frame size of {video}")
    return size


def join_videos(items: Sequence[tuple[Path, str]], out: Path, size: tuple[int, int], fps: float) -> tuple[Path, Path]:
    """Re-encode each (video, label) to one size and rate, join them into `out` (.avi, MJPEG), and
    write the per-frame labels beside it (models.synth's sidecar: fps, classes, segments, labels).
    Returns (video, sidecar)."""
    from lrcn.models.synth import sidecar_path

    out.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = out.parent / f"{out.stem}.parts"
    parts_dir.mkdir(exist_ok=True)
    segments, start, listing = [], 0, []
    for number, (video, label) in enumerate(items):
        part = parts_dir / f"{number:03d}.avi"
        run_ffmpeg(
            "-i",
            str(video),
            "-an",
            "-vf",
            f"fps={fps},scale={size[0]}:{size[1]}:flags=area",
            *MJPEG,
            str(part),
        )
        frames = count_frames(part)
        segments.append({"label": label, "start_frame": start, "end_frame": start + frames, "video": video.name})
        listing.append(f"file '{part.resolve()}'")
        start += frames
    (parts_dir / "list.txt").write_text("\n".join(listing) + "\n")
    run_ffmpeg("-f", "concat", "-safe", "0", "-i", str(parts_dir / "list.txt"), "-c", "copy", str(out))
    if count_frames(out) != start:
        raise LrcnError(f"joined {out} has {count_frames(out)} frames, its parts {start}")
    sidecar = sidecar_path(out)
    classes = sorted({s["label"] for s in segments})
    sidecar.write_text(
        json.dumps(
            {
                "fps": float(fps),
                "classes": classes,
                "segments": segments,
                "labels": [s["label"] for s in segments for _ in range(s["end_frame"] - s["start_frame"])],
            }
        )
    )
    return out, sidecar


def still_clips(parts: Sequence[Path], out_dir: Path, seconds: float, fps: float) -> list[Path]:
    """One still clip per part: its middle frame held for `seconds` (MJPEG, every frame the same)."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for number, part in enumerate(parts):
        capture = cv2.VideoCapture(str(part))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, max(0, count_frames(part) // 2))
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok:
            raise LrcnError(f"cannot read a frame of {part}")
        image = out_dir / f"still{number:02d}.png"
        cv2.imwrite(str(image), frame)
        clip = out_dir / f"still{number:02d}.avi"
        still_clip(image, clip, seconds, fps)
        clips.append(clip)
    return clips


def gray_clip(out_dir: Path, seconds: float, fps: float, size: tuple[int, int]) -> Path:
    """A uniform mid-gray clip: a scene with nothing in it at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / "gray.avi"
    run_ffmpeg(
        *lavfi(f"color=c=gray:s={size[0]}x{size[1]}:r={fps:g}:d={seconds:.3f}"),
        *MJPEG,
        str(clip),
    )
    return clip
