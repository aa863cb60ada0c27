"""Find labelled videos in root/<class>/<video> folders and split them without leaking groups.

A *group* is whatever ties clips together beyond their label: the same actor, room and camera
(a UCF101 group, a Weizmann subject, a PS7 person). A clip's group is read from its file name
with a regex; train and test never share a group. Nothing here opens a video or needs TensorFlow.

>>> dataset = discover("../shared/data/weizmann4")          # doctest: +SKIP
>>> describe(dataset)                                        # doctest: +SKIP
'36 videos, 4 classes (bend, jumping_jack, wave_one_hand, wave_two_hands), 9 groups'
>>> folds = leave_one_group_out(list(dataset.videos))       # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable

from lrcn.stream.errors import LrcnError
from lrcn.stream.video import VIDEO_EXTENSIONS

# Dict order is the auto-detection order: most specific first, so no preset claims another's names
# (`_g(\d+)_` never matches `s0_bend.avi` or `PS7A1P1T1.avi`; `s(\d+)_` is case-sensitive, so not `PS7`).
GROUP_PATTERNS = {"ucf101": r"_g(\d+)_", "weizmann": r"s(\d+)_", "ps7": r"P(\d)"}


@dataclass(frozen=True)
class Video:
    path: Path
    label: int  # index into Dataset.classes
    group: str  # the captured group id as a string, e.g. "03"


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]  # sorted folder names that contain at least one video
    videos: tuple[Video, ...]  # sorted by path
    group_pattern: str | None  # the regex the groups came from; None: each video is its own group


@dataclass(frozen=True)
class Fold:
    name: str  # e.g. "group=03"
    train: tuple[Video, ...]
    test: tuple[Video, ...]


def has_video_name(path: Path) -> bool:
    """A visible file name with a video extension, in any case.

    >>> has_video_name(Path("a/B.AVI")), has_video_name(Path("a/._b.avi")), has_video_name(Path("a/notes.txt"))
    (True, False, False)
    """
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def is_video(path: Path) -> bool:
    return has_video_name(path) and path.is_file()


def compile_pattern(pattern: str) -> re.Pattern:
    """A preset name or a regex with exactly one capture group, compiled.

    >>> compile_pattern("ucf101").pattern
    '_g(\\\\d+)_'
    """
    source = GROUP_PATTERNS.get(pattern, pattern)
    try:
        compiled = re.compile(source)
    except re.error as err:
        raise LrcnError(f"group pattern {source!r} is not a valid regex: {err}") from None
    if compiled.groups != 1:
        raise LrcnError(
            f"group pattern {source!r} needs exactly one capture group, has {compiled.groups} "
            f"(presets: {', '.join(GROUP_PATTERNS)})"
        )
    return compiled


def group_of(name: str, pattern: re.Pattern) -> str | None:
    """The first capture of `pattern` in a file name, or None when it does not match (or captures nothing).

    >>> group_of("v_Archery_g03_c01.avi", compile_pattern("ucf101")), group_of("x.avi", compile_pattern("ps7"))
    ('03', None)
    """
    match = pattern.search(name)
    return (match.group(1) or None) if match else None


def group_sort_key(group: str):
    """Numeric groups in numeric order ("2" before "10"), then the rest alphabetically."""
    return (0, int(group), group) if group.isdigit() else (1, 0, group)


def list_videos(root: Path) -> dict[str, list[Path]]:
    """{class folder name: sorted video paths} for every visible class folder that holds a video."""
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        found = {folder.name: sorted(p for p in folder.iterdir() if is_video(p)) for folder in folders}
    except OSError as err:
        raise LrcnError(f"cannot read {root}: {err.strerror or err}") from None
    return {name: paths for name, paths in found.items() if paths}


def discover(root, group_pattern: str | None = None) -> Dataset:
    """Every video under root/<class>/, labelled by folder and grouped by `group_pattern`.

    group_pattern: a preset name (see GROUP_PATTERNS), a regex with one capture group, or None to
    use the first preset that matches every file name, else make each video its own group (its stem).

    >>> discover("../shared/data/ucf101_9").group_pattern   # doctest: +SKIP
    '_g(\\\\d+)_'
    """
    root = Path(root)
    if not root.exists():
        raise LrcnError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise LrcnError(f"data folder {root} is not a directory")
    by_class = list_videos(root)
    if not by_class:
        loose = sum(1 for p in root.iterdir() if is_video(p))
        hint = f" (found {loose} video(s) directly in {root}: put each class in its own folder)" if loose else ""
        extensions = "|".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
        raise LrcnError(f"no videos found under {root}: expected {root}/<class>/<video>.{extensions}{hint}")
    classes = tuple(sorted(by_class))
    paths = [(path, classes.index(name)) for name, class_paths in by_class.items() for path in class_paths]

    if group_pattern is None:
        candidates = [compile_pattern(p) for p in GROUP_PATTERNS.values()]
        pattern = next((c for c in candidates if all(group_of(p.name, c) for p, _ in paths)), None)
    else:
        pattern = compile_pattern(group_pattern)
        misses = [p for p, _ in paths if group_of(p.name, pattern) is None]
        if misses:
            raise LrcnError(
                f"group pattern {pattern.pattern!r} does not match {misses[0].relative_to(root)} "
                f"({len(misses)} of {len(paths)} file names do not match)"
            )
    videos = tuple(
        sorted(
            (Video(path, label, group_of(path.name, pattern) if pattern else path.stem) for path, label in paths),
            key=lambda v: v.path,
        )
    )
    return Dataset(root, classes, videos, pattern.pattern if pattern else None)


def groups_of(videos: Iterable[Video]) -> list[str]:
    """The distinct groups, in group order.

    >>> groups_of([Video(Path("a"), 0, "10"), Video(Path("b"), 0, "2"), Video(Path("c"), 1, "2")])
    ['2', '10']
    """
    return sorted({v.group for v in videos}, key=group_sort_key)


def read_class_index(path: Path) -> dict[int, str]:
    """UCF101's classInd.txt: lines "1 ApplyEyeMakeup" -> {1: "ApplyEyeMakeup"}."""
    index: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise LrcnError(f"{path}:{lineno}: expected '<index> <class>', got {line.strip()!r}")
        index[int(parts[0])] = parts[1]
    return index


def read_split_list(dataset: Dataset, list_path) -> list[Video]:
    """The dataset's videos named in a UCF101-style list ("Class/v_Class_g08_c01.avi [label]" per line).

    A label is a 1-based class index: into classInd.txt beside the list when there is one,
    else into dataset.classes. It must agree with the class folder in the path.

    >>> read_split_list(dataset, "../shared/data/ucf101_9/splits/testlist01.txt")   # doctest: +SKIP
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise LrcnError(f"split list {list_path} does not exist")
    class_ind = list_path.parent / "classInd.txt"
    names_by_index = (
        read_class_index(class_ind) if class_ind.is_file() else {i: name for i, name in enumerate(dataset.classes, 1)}
    )
    by_relpath = {v.path.relative_to(dataset.root).as_posix(): v for v in dataset.videos}
    seen: dict[str, int] = {}
    videos = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        where = f"{list_path}:{lineno}"
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        relpath, label = (parts[0], int(parts[1])) if len(parts) == 2 and parts[1].isdigit() else (line, None)
        relpath = relpath.replace("\\", "/")
        if relpath.count("/") != 1:
            raise LrcnError(f"{where}: expected 'Class/video' (optionally followed by a class index), got {line!r}")
        class_name = relpath.split("/")[0]
        if class_name not in dataset.classes:
            raise LrcnError(f"{where}: unknown class {class_name!r} (known: {', '.join(dataset.classes)})")
        if relpath not in by_relpath:
            raise LrcnError(f"{where}: {relpath} is not a video in {dataset.root}")
        if label is not None and names_by_index.get(label) != class_name:
            source = class_ind if class_ind.is_file() else "the sorted class folders"
            raise LrcnError(
                f"{where}: label {label} is {names_by_index.get(label, 'no class')!r} in {source}, "
                f"but the video is in {class_name!r}"
            )
        if relpath in seen:
            raise LrcnError(f"{where}: {relpath} is already listed on line {seen[relpath]}")
        seen[relpath] = lineno
        videos.append(by_relpath[relpath])
    if not videos:
        raise LrcnError(f"split list {list_path} lists no videos")
    return videos


def official_split(dataset: Dataset, train_list, test_list) -> tuple[list[Video], list[Video]]:
    """(train, test) from a pair of UCF101-style lists, checked to share no video and no group.

    >>> splits = Path("../shared/data/ucf101_9/splits")                                             # doctest: +SKIP
    >>> train, test = official_split(dataset, splits / "trainlist01.txt", splits / "testlist01.txt")  # doctest: +SKIP
    """
    train, test = read_split_list(dataset, train_list), read_split_list(dataset, test_list)
    both = sorted(set(v.path for v in train) & set(v.path for v in test))
    if both:
        raise LrcnError(
            f"{len(both)} video(s) are in both {train_list} and {test_list}, e.g. {both[0].relative_to(dataset.root)}"
        )
    shared = sorted(set(groups_of(train)) & set(groups_of(test)), key=group_sort_key)
    if shared:
        raise LrcnError(
            f"{train_list} and {test_list} share group(s) {', '.join(shared)}: a group must not straddle train and test"
        )
    return train, test


def split_by_groups(videos: Iterable[Video], test_groups) -> tuple[list[Video], list[Video]]:
    """(train, test): the videos of `test_groups` are test, all others train.

    >>> v = [Video(Path("a"), 0, "01"), Video(Path("b"), 0, "02")]
    >>> split_by_groups(v, ["02"]) == ([v[0]], [v[1]])
    True
    """
    videos = list(videos)
    wanted = {test_groups} if isinstance(test_groups, str) else {str(g) for g in test_groups}
    unknown = sorted(wanted - set(groups_of(videos)), key=group_sort_key)
    if unknown:
        raise LrcnError(f"no videos in group(s) {', '.join(unknown)} (groups: {', '.join(groups_of(videos))})")
    return [v for v in videos if v.group not in wanted], [v for v in videos if v.group in wanted]


def leave_one_group_out(videos: Iterable[Video]) -> list[Fold]:
    """One fold per group, in group order: that group is the test set, all the others train.

    >>> [f.name for f in leave_one_group_out([Video(Path("a"), 0, "1"), Video(Path("b"), 0, "2")])]
    ['group=1', 'group=2']
    """
    videos = list(videos)
    groups = groups_of(videos)
    if len(groups) < 2:
        raise LrcnError(f"leave-one-group-out needs at least 2 groups, found {len(groups)}")
    folds = []
    for group in groups:
        train, test = split_by_groups(videos, [group])
        folds.append(Fold(f"group={group}", tuple(train), tuple(test)))
    return folds


def pick_validation_groups(videos: list[Video], count: int, rng: random.Random) -> set[str]:
    """`count` groups for validation, in seeded random order but preferring, first, groups that bring a
    class validation still lacks and, second, groups whose loss leaves training with every class."""
    classes_in = defaultdict(set)
    for v in videos:
        classes_in[v.group].add(v.label)
    train_groups_with = Counter(label for labels in classes_in.values() for label in labels)
    order = groups_of(videos)
    rng.shuffle(order)
    covered: set[int] = set()
    chosen: list[str] = []

    def score(group):
        orphaned = sum(1 for label in classes_in[group] if train_groups_with[label] == 1)
        return len(classes_in[group] - covered), -orphaned

    for _ in range(count):
        best = max((g for g in order if g not in chosen), key=score)  # max keeps the first of equals
        chosen.append(best)
        covered |= classes_in[best]
        train_groups_with.subtract(classes_in[best])
    return set(chosen)


def stratified_split(videos: list[Video], fraction: float, rng: random.Random) -> set[Path]:
    """Validation paths: about `fraction` of each class, at least one where a class has two or more."""
    by_class = defaultdict(list)
    for v in videos:
        by_class[v.label].append(v.path)
    picked: set[Path] = set()
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng.shuffle(paths)
        n = min(max(math.floor(fraction * len(paths) + 0.5), 1), len(paths) - 1)
        picked.update(paths[:n])
    return picked


def group_holdout(videos: Iterable[Video], fraction: float, seed: int) -> tuple[list[Video], list[Video]]:
    """(train, validation), group-disjoint, for early stopping and tuning on training data only.

    About `fraction` of the groups (at least one each side) go to validation, chosen so every
    class appears in validation where possible. With a single group there is nothing to hold out
    by group, so each class's videos are split instead. Deterministic for a given seed.

    >>> v = [Video(Path(f"{g}{c}"), c, g) for g in "abcde" for c in (0, 1)]
    >>> train, val = group_holdout(v, 0.2, seed=0)
    >>> len(train), len(val), len({x.group for x in val})
    (8, 2, 1)
    """
    videos = list(videos)
    if not 0 < fraction < 1:
        raise LrcnError(f"validation fraction must be between 0 and 1, got {fraction}")
    if not videos:
        raise LrcnError("no videos to split into training and validation")
    rng = random.Random(seed)
    groups = groups_of(videos)
    if len(groups) == 1:
        val_paths = stratified_split(videos, fraction, rng)
        return [v for v in videos if v.path not in val_paths], [v for v in videos if v.path in val_paths]
    count = min(max(math.floor(fraction * len(groups) + 0.5), 1), len(groups) - 1)
    val_groups = pick_validation_groups(videos, count, rng)
    return [v for v in videos if v.group not in val_groups], [v for v in videos if v.group in val_groups]


def describe(dataset: Dataset) -> str:
    """One line for people: "36 videos, 4 classes (bend, ...), 9 groups"."""
    text = (
        f"{len(dataset.videos)} videos, {len(dataset.classes)} classes ({', '.join(dataset.classes)}), "
        f"{len(groups_of(dataset.videos))} groups"
    )
    return text if dataset.group_pattern else text + " (no group pattern matched: one group per file name)"
