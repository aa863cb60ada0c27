"""Finding labelled videos and splitting them by group: fake trees in tmp_path, and the real data when present."""

from pathlib import Path

import pytest

from lrcn.models.data import (
    GROUP_PATTERNS,
    Video,
    describe,
    discover,
    group_holdout,
    groups_of,
    leave_one_group_out,
    official_split,
    read_split_list,
    split_by_groups,
)
from lrcn.stream.errors import LrcnError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")


def make_tree(root: Path, files: dict[str, list[str]]) -> Path:
    """root/<class>/<name> as empty files: discovery must never open a video."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).touch()
    return root


def ucf_tree(root: Path, classes=("Archery", "Basketball", "BabyCrawling"), groups=5, clips=2) -> Path:
    return make_tree(
        root,
        {
            c: [f"v_{c}_g{g:02d}_c{k:02d}.avi" for g in range(1, groups + 1) for k in range(1, clips + 1)]
            for c in classes
        },
    )


def one_line_error(func, *args, match: str = "", **kwargs) -> str:
    with pytest.raises(LrcnError, match=match) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def assert_group_disjoint(train, test):
    assert not {v.group for v in train} & {v.group for v in test}
    assert not {v.path for v in train} & {v.path for v in test}


# discovery ------------------------------------------------------------------------------------------


def test_discover_labels_sorted_classes_and_ignores_what_is_not_a_video(tmp_path):
    make_tree(
        tmp_path,
        {
            "wave": ["s1_wave.avi", "s0_wave.MP4", "notes.txt", "._s0_wave.avi"],
            "bend": ["s1_bend.mkv", "s0_bend.webm"],
            "splits": ["trainlist01.txt"],
            "empty": [],
            ".hidden": ["s0_x.avi"],
        },
    )
    (tmp_path / "wave" / "nested").mkdir()
    (tmp_path / "wave" / "nested" / "s9_deep.avi").touch()
    (tmp_path / "bend" / "folder.avi").mkdir()
    (tmp_path / "README.md").touch()
    dataset = discover(tmp_path)
    assert dataset.root == tmp_path
    assert dataset.classes == ("bend", "wave")
    assert [v.path.relative_to(tmp_path).as_posix() for v in dataset.videos] == [
        "bend/s0_bend.webm",
        "bend/s1_bend.mkv",
        "wave/s0_wave.MP4",
        "wave/s1_wave.avi",
    ]
    assert [v.label for v in dataset.videos] == [0, 0, 1, 1]
    assert [v.group for v in dataset.videos] == ["0", "1", "0", "1"]
    assert dataset.group_pattern == GROUP_PATTERNS["weizmann"]


@pytest.mark.parametrize(
    "preset, names, groups",
    [
        ("ucf101", ["v_Archery_g01_c01.avi", "v_Archery_g12_c02.avi"], ["01", "12"]),
        ("weizmann", ["s0_bend.avi", "s13_bend.avi"], ["0", "13"]),
        ("ps7", ["PS7A1P1T1.avi", "PS7A1P3T2.avi"], ["1", "3"]),
    ],
)
def test_auto_detection_picks_the_preset_that_fits_every_name(tmp_path, preset, names, groups):
    dataset = discover(make_tree(tmp_path, {"a": names}))
    assert dataset.group_pattern == GROUP_PATTERNS[preset]
    assert [v.group for v in dataset.videos] == groups
    assert discover(tmp_path, preset) == dataset


def test_auto_detection_needs_every_name_to_match_else_one_group_per_video(tmp_path):
    make_tree(tmp_path, {"a": ["v_A_g01_c01.avi", "clip.avi"], "b": ["s0_b.mov"]})
    dataset = discover(tmp_path)
    assert dataset.group_pattern is None
    assert sorted(v.group for v in dataset.videos) == ["clip", "s0_b", "v_A_g01_c01"]
    assert "3 groups" in describe(dataset)


def test_explicit_regex_and_its_errors(tmp_path):
    make_tree(tmp_path, {"a": ["cam1-take01.avi", "cam2-take02.avi"], "b": ["cam1-take03.avi", "other.avi"]})
    message = one_line_error(discover, tmp_path, r"cam(\d)-", match="does not match")
    assert "other.avi" in message and "1 of 4" in message
    (tmp_path / "b" / "other.avi").unlink()
    assert [v.group for v in discover(tmp_path, r"cam(\d)-").videos] == ["1", "2", "1"]
    one_line_error(discover, tmp_path, r"cam(\d", match="not a valid regex")
    one_line_error(discover, tmp_path, r"cam\d", match="one capture group")
    one_line_error(discover, tmp_path, "ucf101", match="does not match")


def test_discover_errors_are_one_line(tmp_path):
    message = one_line_error(discover, tmp_path / "missing", match="does not exist")
    assert str(tmp_path / "missing") in message
    (tmp_path / "file.avi").touch()
    one_line_error(discover, tmp_path / "file.avi", match="not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    message = one_line_error(discover, empty, match="no videos found under")
    assert "<class>/<video>.avi|mp4" in message
    make_tree(empty, {"a": ["notes.txt"], "b": []})
    one_line_error(discover, empty, match="no videos found under")
    (empty / "loose.avi").touch()
    one_line_error(discover, empty, match="directly in")


def test_describe(tmp_path):
    dataset = discover(ucf_tree(tmp_path, groups=3))
    assert describe(dataset) == "18 videos, 3 classes (Archery, BabyCrawling, Basketball), 3 groups"


# split lists ----------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_split_list_with_and_without_labels(tmp_path):
    dataset = discover(ucf_tree(tmp_path / "data"))  # classes sorted: Archery 1, BabyCrawling 2, Basketball 3
    train = write(
        tmp_path / "lists/train.txt",
        "Archery/v_Archery_g03_c01.avi 1\r\n\r\nBasketball\\v_Basketball_g03_c02.avi 3\n  \n",
    )
    test = write(tmp_path / "lists/test.txt", "BabyCrawling/v_BabyCrawling_g01_c01.avi\n")
    videos = read_split_list(dataset, train)
    assert [v.path.name for v in videos] == ["v_Archery_g03_c01.avi", "v_Basketball_g03_c02.avi"]
    assert [dataset.classes[v.label] for v in videos] == ["Archery", "Basketball"]
    assert all(v in dataset.videos for v in videos)
    assert [v.group for v in read_split_list(dataset, test)] == ["01"]


def test_label_index_comes_from_class_ind_beside_the_list(tmp_path):
    dataset = discover(ucf_tree(tmp_path / "data"))
    write(tmp_path / "lists/classInd.txt", "1 Archery\n2 Basketball\n3 BabyCrawling\n")
    good = write(tmp_path / "lists/good.txt", "Basketball/v_Basketball_g01_c01.avi 2\n")
    assert len(read_split_list(dataset, good)) == 1
    bad = write(tmp_path / "lists/bad.txt", "\nBasketball/v_Basketball_g01_c01.avi 3\n")
    message = one_line_error(read_split_list, dataset, bad, match="bad.txt:2: label 3")
    assert "BabyCrawling" in message and "Basketball" in message


def test_split_list_errors_name_file_and_line(tmp_path):
    dataset = discover(ucf_tree(tmp_path / "data"))
    unknown = write(tmp_path / "unknown.txt", "Archery/v_Archery_g01_c01.avi 1\n\nYoYo/v_YoYo_g01_c01.avi 4\n")
    message = one_line_error(read_split_list, dataset, unknown, match="unknown class 'YoYo'")
    assert message.startswith(f"{unknown}:3: ") and "known: Archery, BabyCrawling, Basketball" in message
    absent = write(tmp_path / "absent.txt", "Archery/v_Archery_g99_c01.avi\n")
    one_line_error(read_split_list, dataset, absent, match="absent.txt:1: .*not a video")
    wrong = write(tmp_path / "wrong.txt", "Archery/v_Archery_g01_c01.avi 2\n")
    one_line_error(read_split_list, dataset, wrong, match="wrong.txt:1: label 2")
    twice = write(tmp_path / "twice.txt", "Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    one_line_error(read_split_list, dataset, twice, match="twice.txt:2: .*already listed on line 1")
    flat = write(tmp_path / "flat.txt", "v_Archery_g01_c01.avi\n")
    one_line_error(read_split_list, dataset, flat, match="flat.txt:1: expected 'Class/video'")
    one_line_error(read_split_list, dataset, write(tmp_path / "blank.txt", "\n\n"), match="lists no videos")
    one_line_error(read_split_list, dataset, tmp_path / "nope.txt", match="does not exist")


def test_official_split_refuses_overlap_and_shared_groups(tmp_path):
    dataset = discover(ucf_tree(tmp_path / "data"))
    train = write(tmp_path / "train.txt", "Archery/v_Archery_g02_c01.avi\nArchery/v_Archery_g03_c01.avi\n")
    test = write(tmp_path / "test.txt", "Archery/v_Archery_g01_c01.avi\n")
    assert [len(part) for part in official_split(dataset, train, test)] == [2, 1]
    same_group = write(tmp_path / "same_group.txt", "Archery/v_Archery_g03_c02.avi\n")
    one_line_error(official_split, dataset, train, same_group, match="share group.*03")
    overlap = write(tmp_path / "overlap.txt", "Archery/v_Archery_g02_c01.avi\n")
    one_line_error(official_split, dataset, train, overlap, match="in both")


# group splits ---------------------------------------------------------------------------------------


def test_split_by_groups(tmp_path):
    videos = list(discover(ucf_tree(tmp_path, groups=4)).videos)
    train, test = split_by_groups(videos, ["02", "04"])
    assert groups_of(test) == ["02", "04"] and groups_of(train) == ["01", "03"]
    assert sorted(train + test, key=lambda v: v.path) == videos
    assert split_by_groups(videos, "02")[1] == split_by_groups(videos, ["02"])[1]
    one_line_error(split_by_groups, videos, ["09"], match="no videos in group.*09")


def check_folds(videos, folds):
    assert [f.name for f in folds] == [f"group={g}" for g in groups_of(videos)]
    for fold in folds:
        assert_group_disjoint(fold.train, fold.test)
        assert len({v.group for v in fold.test}) == 1
        assert len(fold.train) + len(fold.test) == len(videos)
    tested = [v for f in folds for v in f.test]
    assert sorted(tested, key=lambda v: v.path) == sorted(videos, key=lambda v: v.path)


def test_leave_one_group_out(tmp_path):
    videos = list(discover(ucf_tree(tmp_path, groups=4)).videos)
    check_folds(videos, leave_one_group_out(videos))
    numeric = [Video(Path(f"{g}.avi"), 0, g) for g in ("10", "2", "1")]
    assert [f.name for f in leave_one_group_out(numeric)] == ["group=1", "group=2", "group=10"]
    one_line_error(leave_one_group_out, videos[:2], match="at least 2 groups")


def test_group_holdout_is_group_disjoint_deterministic_and_covers_classes(tmp_path):
    videos = list(discover(ucf_tree(tmp_path, groups=10)).videos)
    train, val = group_holdout(videos, 0.2, seed=3)
    assert_group_disjoint(train, val)
    assert len(groups_of(val)) == 2 and len(train) + len(val) == len(videos)
    assert group_holdout(videos, 0.2, seed=3) == (train, val)
    assert len({tuple(groups_of(group_holdout(videos, 0.2, seed)[1])) for seed in range(10)}) > 1
    two = [v for v in videos if v.group in ("01", "02")]
    assert [len(groups_of(part)) for part in group_holdout(two, 0.01, 0)] == [1, 1]
    assert [len(groups_of(part)) for part in group_holdout(two, 0.99, 0)] == [1, 1]
    one_line_error(group_holdout, videos, 1.0, 0, match="fraction")
    one_line_error(group_holdout, [], 0.2, 0, match="no videos")


def test_group_holdout_prefers_groups_that_bring_every_class_to_validation():
    # Groups 1-6 hold only class 0; groups 7 and 8 hold both classes. A random pick of 2 of 8 groups
    # would often leave class 1 out of validation; the holdout must not.
    videos = [Video(Path(f"g{g}_c{c}.avi"), c, str(g)) for g in range(1, 9) for c in ((0, 1) if g > 6 else (0,))]
    for seed in range(20):
        train, val = group_holdout(videos, 0.25, seed)
        assert_group_disjoint(train, val)
        assert {v.label for v in val} == {0, 1} and {v.label for v in train} == {0, 1}


def test_group_holdout_with_one_group_splits_each_class():
    videos = [Video(Path(f"{c}_{i}.avi"), c, "only") for c in range(3) for i in range(10)]
    train, val = group_holdout(videos, 0.2, seed=0)
    assert sorted(v.label for v in val) == [0, 0, 1, 1, 2, 2]
    assert not {v.path for v in train} & {v.path for v in val} and len(train) == 24
    assert group_holdout(videos, 0.2, seed=0) == (train, val)


# the real data in ../shared/data ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, videos, classes, groups, preset",
    [
        ("weizmann4", 36, 4, 9, "weizmann"),
        ("ps7", 27, 3, 3, "ps7"),
        ("ucf101_9", 450, 9, 25, "ucf101"),
    ],
)
@pytest.mark.shared
@needs_shared
def test_real_datasets_are_discovered_with_their_groups(name, videos, classes, groups, preset):
    dataset = discover(SHARED / name)
    assert (len(dataset.videos), len(dataset.classes), len(groups_of(dataset.videos))) == (videos, classes, groups)
    assert dataset.group_pattern == GROUP_PATTERNS[preset]
    assert "splits" not in dataset.classes
    assert describe(dataset).startswith(f"{videos} videos, {classes} classes (")
    per_class = {c: sum(v.label == i for v in dataset.videos) for i, c in enumerate(dataset.classes)}
    assert set(per_class.values()) == {videos // classes}


@pytest.mark.shared
@needs_shared
def test_real_ucf101_official_split():
    dataset = discover(SHARED / "ucf101_9")
    splits = SHARED / "ucf101_9" / "splits"
    train, test = official_split(dataset, splits / "trainlist01.txt", splits / "testlist01.txt")
    assert (len(train), len(test)) == (324, 126)
    assert groups_of(test) == [f"{g:02d}" for g in range(1, 8)]
    assert groups_of(train) == [f"{g:02d}" for g in range(8, 26)]
    assert_group_disjoint(train, test)
    by_groups = split_by_groups(dataset.videos, groups_of(test))
    assert (set(train), set(test)) == (set(by_groups[0]), set(by_groups[1]))
    fit, val = group_holdout(train, 0.2, seed=0)
    assert_group_disjoint(fit, val)
    assert not set(groups_of(val)) & set(groups_of(test))
    assert {v.label for v in val} == set(range(9))


@pytest.mark.shared
@needs_shared
@pytest.mark.parametrize("name", ["weizmann4", "ps7", "ucf101_9"])
def test_real_leave_one_group_out_and_holdout(name):
    videos = list(discover(SHARED / name).videos)
    folds = leave_one_group_out(videos)
    check_folds(videos, folds)
    for fold in folds:
        fit, val = group_holdout(fold.train, 0.2, seed=0)
        assert_group_disjoint(fit, val)
        assert fit and val and not set(groups_of(val)) & {v.group for v in fold.test}
        assert group_holdout(fold.train, 0.2, seed=0) == (fit, val)
