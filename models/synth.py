"""Synthetic action videos in which one frame says nothing about the class; only motion does.

Every clip shows one bright solid shape over a dark, static, random textured background.
Each clip draws a path for the shape's horizontal position, vertical position and size, and
the class decides which of them is traversed over time and in which direction; a parameter
that does not move rests at a uniformly drawn point of its own path. So the visible state of
any one frame has the same distribution in every class, and the classes differ only in how
it changes:

- still: nothing moves;
- move_left / move_right: the horizontal path, one way or the other;
- move_up / move_down: the vertical path, one way or the other (the frame wraps around both
  ways, so positions are uniform whatever the direction);
- grow / shrink: the size path (logarithmic), up or down.

Per-frame jitter and pixel noise apply to every class alike. Colours are random, but the
shape is always brighter than its background: with both polarities, a small CNN trained from
scratch for minutes does not find the shape at all (measured: chance accuracy after 12
epochs of fresh clips, against 99% with a bright shape). Turning clockwise or anticlockwise
was a pair of classes too; a small CNN did not separate them in minutes, so they gave way to
vertical motion.

>>> frames = render_clip("move_up", n_frames=48, size=64, rng=np.random.default_rng(0))
>>> frames.shape, frames.dtype
((48, 64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lrcn.stream.errors import LrcnError

CLASSES: tuple[str, ...] = ("still", "move_left", "move_right", "move_up", "move_down", "grow", "shrink")

# Which path each class traverses, and which way; None: nothing moves but the jitter.
MOTION: dict[str, tuple[str, int] | None] = {
    "still": None,
    "move_left": ("x", -1),
    "move_right": ("x", +1),
    "move_up": ("y", -1),
    "move_down": ("y", +1),
    "grow": ("log_radius", +1),
    "shrink": ("log_radius", -1),
}

# Speeds per second; lengths are for a 64-pixel frame and scale with the size. At 25 fps
# sampled at 10 fps a shift is 3-6 px per sampled frame: plain enough for a small CNN
# trained from scratch in minutes.
SHIFT_PX_PER_S = (30.0, 60.0)
GROW_LOG_PER_S = (0.6, 1.0)
RADIUS_FRACTION = (0.10, 0.30)
JITTER_PX, JITTER_DEG, JITTER_LOG = 0.25, 0.4, 0.01
NOISE_SIGMA = (1.5, 5.0)
# The background's colours stay below BACKGROUND_MAX and the shape's mean channel above
# SHAPE_MIN_MEAN; the shape is also at least MIN_CONTRAST (RGB distance) from the
# background's gradient, so texture and noise stay well inside the margin.
BACKGROUND_MAX = 100.0
SHAPE_MIN_MEAN = 160.0
MIN_CONTRAST = 130.0


@dataclass(frozen=True)
class Path1D:
    """One parameter's path: value(u) = centre + extent * u for u in [-1/2, 1/2].

    `rest` is the u the parameter keeps in a clip where it does not move.
    """

    centre: float
    extent: float
    rest: float

    def values(self, n_frames: int, direction: int) -> np.ndarray:
        """direction +1/-1: traverse the path up/down; 0: stay at `rest`.

        >>> Path1D(10.0, 4.0, 0.25).values(3, -1).tolist(), Path1D(10.0, 4.0, 0.25).values(2, 0).tolist()
        ([12.0, 10.0, 8.0], [11.0, 11.0])
        """
        u = np.linspace(-0.5, 0.5, n_frames) * direction if direction else np.full(n_frames, self.rest)
        return self.centre + self.extent * u


@dataclass(frozen=True)
class Scene:
    """Everything a clip shows except which parameter moves: the same scene renders as any class."""

    size: int
    n_frames: int
    background: np.ndarray  # [size, size, 3] float32 RGB, static
    colour: np.ndarray  # (3,) float32 RGB
    outline: np.ndarray  # [V, 2] unit polygon, centroid at 0, farthest vertex at distance 1
    x: Path1D  # pixels, wraps around the frame's width
    y: Path1D  # pixels, wraps around the frame's height
    angle: float  # radians, clockwise on screen; the shape does not turn
    log_radius: Path1D  # log pixels
    jitter: np.ndarray  # [n_frames, 4] added to (x, y, angle, log_radius)
    noise_sigma: float


def _normalised(points) -> np.ndarray:
    """A polygon moved so its area centroid is at 0 and scaled so its farthest vertex is at 1."""
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    centroid = np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)
    points = points - centroid
    return points / np.linalg.norm(points, axis=1).max()


def _notched_ellipse() -> np.ndarray:
    angles = np.radians(np.arange(35, 326, 10))
    return np.concatenate([[[0.1, 0.0]], np.stack([np.cos(angles), 0.7 * np.sin(angles)], axis=1)])


SHAPES: dict[str, np.ndarray] = {
    "triangle": _normalised([(0.0, -1.0), (0.55, 0.7), (-0.55, 0.7)]),
    "arrow": _normalised([(1.0, 0.0), (0.2, 0.6), (0.2, 0.25), (-0.9, 0.25), (-0.9, -0.25), (0.2, -0.25), (0.2, -0.6)]),
    "ell": _normalised([(-1.0, -1.0), (0.0, -1.0), (0.0, 0.5), (0.8, 0.5), (0.8, 1.0), (-1.0, 1.0)]),
    "notched_ellipse": _normalised(_notched_ellipse()),
}


def draw_background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark random colour gradient with blotchy texture and grain; returns (image, gradient end colours).

    >>> image, ends = draw_background(32, np.random.default_rng(0))
    >>> image.shape, ends.shape
    ((32, 32, 3), (2, 3))
    """
    ends = rng.uniform(0, BACKGROUND_MAX, (2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    grid = (np.arange(size) + 0.5) / size - 0.5
    ramp = np.cos(direction) * grid[None, :] + np.sin(direction) * grid[:, None]
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-9)
    image = ends[0] + (ends[1] - ends[0]) * ramp[..., None]  # within BACKGROUND_MAX but for the texture
    cells = int(rng.integers(3, 9))
    blotches = cv2.resize(
        rng.standard_normal((cells, cells, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    image = image + blotches * rng.uniform(4, 12) + rng.standard_normal((size, size, 3)) * rng.uniform(0, 4)
    return np.clip(image, 0, 255).astype(np.float32), ends


def distance_to_segment(points: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """RGB distance of each point to the line segment between the two colours `ends`.

    >>> distance_to_segment(np.array([[0.0, 10.0, 0.0]]), np.array([[0.0, 0, 0], [100.0, 0, 0]])).tolist()
    [10.0]
    """
    start, span = ends[0], ends[1] - ends[0]
    t = np.clip((points - start) @ span / max(span @ span, 1e-9), 0, 1)
    return np.linalg.norm(points - (start + t[:, None] * span), axis=1)


def pick_colour(ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random bright colour at least MIN_CONTRAST from the background's gradient (the farthest found if none is)."""
    candidates = rng.uniform(0, 255, (64, 3))
    distances = distance_to_segment(candidates, ends)
    good = np.flatnonzero((distances >= MIN_CONTRAST) & (candidates.mean(axis=1) >= SHAPE_MIN_MEAN))
    if good.size:
        return candidates[good[0]].astype(np.float32)
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.float64)
    pool = np.concatenate([candidates, corners])
    return pool[np.argmax(distance_to_segment(pool, ends))].astype(np.float32)


def _rest(n_frames: int, rng: np.random.Generator) -> float:
    # A frame index drawn uniformly: a resting parameter takes exactly the values a moving one
    # passes through, frame for frame.
    return float(rng.integers(n_frames)) / max(n_frames - 1, 1) - 0.5


def draw_scene(n_frames: int, size: int, rng: np.random.Generator, fps: float = 25.0) -> Scene:
    """Draw a clip's shape, colours, background, paths and jitter; independent of the class.

    >>> scene = draw_scene(48, 64, np.random.default_rng(0))
    >>> scene.background.shape, scene.jitter.shape
    ((64, 64, 3), (48, 4))
    """
    if n_frames < 1 or size < 8:
        raise LrcnError(f"a synthetic clip needs at least 1 frame of at least 8x8 pixels, got {n_frames} of {size}")
    duration = (n_frames - 1) / fps
    unit = size / 64
    background, ends = draw_background(size, rng)
    colour = pick_colour(ends, rng)
    base = SHAPES[list(SHAPES)[int(rng.integers(len(SHAPES)))]]
    stretch = rng.uniform(0.75, 1.3)
    outline = _normalised(base * [stretch, 1 / stretch])

    x, y = (
        Path1D(rng.uniform(0, size), rng.uniform(*SHIFT_PX_PER_S) * unit * duration, _rest(n_frames, rng))
        for _ in range(2)
    )
    angle = float(rng.uniform(0, 2 * np.pi))
    low, high = np.log(np.array(RADIUS_FRACTION) * size)
    # Long clips grow more slowly rather than leave the size range, which both directions share.
    extent = min(rng.uniform(*GROW_LOG_PER_S) * duration, high - low)
    log_radius = Path1D(rng.uniform(low + extent / 2, high - extent / 2), extent, _rest(n_frames, rng))

    jitter = rng.standard_normal((n_frames, 4)) * [
        JITTER_PX * unit,
        JITTER_PX * unit,
        np.radians(JITTER_DEG),
        JITTER_LOG,
    ]
    return Scene(
        size, n_frames, background, colour, outline, x, y, angle, log_radius, jitter, float(rng.uniform(*NOISE_SIGMA))
    )


def poses(scene: Scene, action: str) -> np.ndarray:
    """The shape's (x, y, angle, radius) in every frame of `scene` shown as `action`, [n_frames, 4].

    >>> poses(draw_scene(10, 64, np.random.default_rng(0)), "grow").shape
    (10, 4)
    """
    if action not in MOTION:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(CLASSES)}")
    moving, direction = MOTION[action] or (None, 0)
    n = scene.n_frames

    def values(name: str) -> np.ndarray:
        return getattr(scene, name).values(n, direction if name == moving else 0)

    state = np.stack([values("x"), values("y"), np.full(n, scene.angle), values("log_radius")], axis=1)
    state = state + scene.jitter
    state[:, :2] %= scene.size
    state[:, 3] = np.exp(state[:, 3])
    return state


def polygons(outline: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Vertices of the outline at each pose, [n_frames, V, 2] in pixels (x right, y down).

    A growing angle turns the shape clockwise on screen, since y points down.

    >>> polygons(np.array([[1.0, 0.0]]), np.array([[10.0, 10.0, np.pi / 2, 2.0]])).round(6).tolist()
    [[[10.0, 12.0]]]
    """
    x, y, angle, radius = state.T
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    px, py = outline[None, :, 0], outline[None, :, 1]
    turned = np.stack([cos * px - sin * py, sin * px + cos * py], axis=-1)
    return turned * radius[:, None, None] + np.stack([x, y], axis=1)[:, None, :]


def coverage(vertices: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased coverage of each frame's polygon, wrapped around both ways, [n, size, size] in [0, 1]."""
    shift = 4  # sub-pixel vertex positions, so slow motion is smooth rather than stepped
    masks = np.zeros((len(vertices), size, size), dtype=np.uint8)
    for mask, polygon in zip(masks, vertices):
        copies = [
            np.round((polygon + [dx, dy]) * (1 << shift)).astype(np.int32)
            for dx in (-size, 0, size)
            for dy in (-size, 0, size)
        ]
        cv2.fillPoly(mask, copies, 255, lineType=cv2.LINE_AA, shift=shift)
    return masks.astype(np.float32) / 255


def render(scene: Scene, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames of `scene` with the shape at `state` (from `poses`), plus pixel noise, [n, size, size, 3] uint8 RGB."""
    alpha = coverage(polygons(scene.outline, state), scene.size)[..., None]
    frames = scene.background * (1 - alpha) + scene.colour * alpha
    frames += rng.standard_normal(frames.shape, dtype=np.float32) * scene.noise_sigma
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_clip(action: str, n_frames: int, size: int, rng: np.random.Generator, *, fps: float = 25.0) -> np.ndarray:
    """A fresh random clip of `action`, [n_frames, size, size, 3] uint8 RGB; speeds are per second at `fps`.

    >>> render_clip("grow", 16, 32, np.random.default_rng(1)).shape
    (16, 32, 32, 3)
    """
    if action not in MOTION:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(CLASSES)}")
    scene = draw_scene(n_frames, size, rng, fps=fps)
    return render(scene, poses(scene, action), rng)


def open_writer(path: Path, fps: float, size: int) -> cv2.VideoWriter:
    """An MJPG .avi writer for square RGB frames; raises LrcnError if OpenCV cannot open it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise LrcnError(f"cannot write video: {path} (OpenCV could not open an MJPG writer for it)")
    return writer


def write_frames(writer: cv2.VideoWriter, frames: np.ndarray) -> None:
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def write_dataset(
    root,
    videos_per_class: int = 24,
    n_frames: int = 48,
    size: int = 64,
    fps: float = 25.0,
    seed: int = 0,
    groups: int = 4,
) -> list[Path]:
    """Write root/<class>/v_<class>_g<GG>_c<CC>.avi for every class; videos go round-robin over the groups.

    Each video has its own generator seeded by (seed, class, index), so a file does not depend
    on how many others are written.

    >>> paths = write_dataset("/tmp/synth", videos_per_class=8, groups=4)   # doctest: +SKIP
    >>> paths[0].relative_to("/tmp/synth").as_posix()                         # doctest: +SKIP
    'still/v_still_g01_c01.avi'
    """
    if videos_per_class < 1 or groups < 1 or n_frames < 1 or fps <= 0:
        raise LrcnError(
            f"need videos_per_class, groups, frames >= 1 and fps > 0; got {videos_per_class}, "
            f"{groups}, {n_frames}, {fps}"
        )
    root = Path(root)
    paths = []
    for label_index, label in enumerate(CLASSES):
        for index in range(videos_per_class):
            group, clip = index % groups + 1, index // groups + 1
            path = root / label / f"v_{label}_g{group:02d}_c{clip:02d}.avi"
            rng = np.random.default_rng([seed, label_index, index])
            writer = open_writer(path, fps, size)
            try:
                write_frames(writer, render_clip(label, n_frames, size, rng, fps=fps))
            finally:
                writer.release()
            paths.append(path)
    return paths


def segment_lengths(total: int, shortest: int, longest: int, rng: np.random.Generator) -> list[int]:
    """Random lengths in [shortest, longest] summing to `total`; a short remainder joins the last segment.

    >>> sum(segment_lengths(1000, 75, 150, np.random.default_rng(0)))
    1000
    """
    lengths: list[int] = []
    while sum(lengths) < total:
        lengths.append(int(rng.integers(shortest, longest + 1)))
    lengths[-1] -= sum(lengths) - total
    if len(lengths) > 1 and lengths[-1] < shortest:
        joint = lengths.pop() + lengths.pop()
        lengths += [joint // 2, joint - joint // 2] if joint > longest else [joint]
    return lengths


def segment_labels(count: int, rng: np.random.Generator) -> list[str]:
    """`count` class names, neighbours always different, every class once in each run of len(CLASSES).

    >>> labels = segment_labels(20, np.random.default_rng(0))
    >>> all(a != b for a, b in zip(labels, labels[1:])), set(labels) == set(CLASSES)
    (True, True)
    """
    labels: list[str] = []
    while len(labels) < count:
        order = [CLASSES[i] for i in rng.permutation(len(CLASSES))]
        if labels and order[0] == labels[-1]:
            order.append(order.pop(0))
        labels += order
    return labels[:count]


def sidecar_path(video_path) -> Path:
    """The sidecar of a continuous video: demo.avi -> demo.labels.json."""
    return Path(video_path).with_suffix(".labels.json")


def write_continuous(
    path,
    duration_s: float = 60.0,
    size: int = 64,
    fps: float = 25.0,
    seed: int = 0,
    min_segment_s: float = 3.0,
    max_segment_s: float = 6.0,
) -> tuple[Path, Path]:
    """One long video whose action changes every few seconds, and its per-frame labels as JSON.

    Each segment is a fresh scene; consecutive segments differ in class.

    >>> video, labels = write_continuous("/tmp/stream.avi", duration_s=60)   # doctest: +SKIP
    >>> read_labels(labels)["segments"][0]                                   # doctest: +SKIP
    {'label': 'grow', 'start_frame': 0, 'end_frame': 112}
    """
    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise LrcnError(f"a continuous synthetic video is written as .avi, got: {path}")
    if duration_s <= 0 or fps <= 0 or not 0 < min_segment_s <= max_segment_s:
        raise LrcnError(
            f"need duration > 0, fps > 0 and 0 < min segment <= max segment; got {duration_s}, {fps}, "
            f"{min_segment_s}, {max_segment_s}"
        )
    rng = np.random.default_rng(seed)
    total = max(1, round(duration_s * fps))
    shortest = max(1, round(min_segment_s * fps))
    lengths = segment_lengths(total, shortest, max(shortest, round(max_segment_s * fps)), rng)
    names = segment_labels(len(lengths), rng)
    segments, start = [], 0
    writer = open_writer(path, fps, size)
    try:
        for name, length in zip(names, lengths):
            write_frames(writer, render_clip(name, length, size, rng, fps=fps))
            segments.append({"label": name, "start_frame": start, "end_frame": start + length})
            start += length
    finally:
        writer.release()
    sidecar = sidecar_path(path)
    record = {
        "fps": float(fps),
        "classes": list(CLASSES),
        "segments": segments,
        "labels": [s["label"] for s in segments for _ in range(s["end_frame"] - s["start_frame"])],
    }
    sidecar.write_text(json.dumps(record))
    return path, sidecar


def read_labels(labels_path) -> dict:
    """The sidecar JSON of `write_continuous`: fps, classes, segments and per-frame labels.

    >>> read_labels("/tmp/stream.labels.json")["fps"]   # doctest: +SKIP
    25.0
    """
    path = Path(labels_path)
    if not path.is_file():
        raise LrcnError(f"labels file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LrcnError(f"labels file is not valid JSON: {path} ({error.msg})") from None
