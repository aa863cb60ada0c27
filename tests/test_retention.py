"""Retention owns its files: clips recorded from real H.264 into record dirs that also hold other
people's footage, on the disk and on small tmpfs mounts (full ones included); the media index
is a real SQLite file. Every foreign file survives; the recorder's own oldest clips go first."""

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lrcn.stream.recording import retention
from lrcn.stream.recording import ClipRecorder, RecordRules
from lrcn.stream.errors import LrcnError
from lrcn.stream.media_index import DAY_S, INDEX_NAME, SCHEMA_VERSION, Entry, Limits, MediaIndex, select_for_deletion
from tests.live_servers import FFMPEG, wait_until
from tests.media import Demux, one_line, record_one

pytestmark = [pytest.mark.timeout(90)]
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")
KB = 1000


# -- the pure rule -------------------------------------------------------------------------------


def clip(name: str, size: int, start: float, finished: bool = True) -> Entry:
    return Entry(f"cam/{name}.mp4", "cam", "clip", size, start, finished, id=int(start))


def deleted(plan) -> list[tuple[str, str]]:
    return [(Path(entry.path).stem, why) for entry, why in plan.delete]


def test_selection_goes_oldest_first_by_start_time_whatever_the_order_given():
    rows = [clip("c", 100, 30), clip("a", 100, 10), clip("d", 100, 40), clip("b", 100, 20)]
    plan = select_for_deletion(rows, Limits(max_bytes=250), now=50, free_bytes=10**9)
    assert deleted(plan) == [("a", "max_gb"), ("b", "max_gb")] and plan.unmet == ()


def test_selection_frees_space_counting_each_deletion_as_freed():
    rows = [clip(name, 100, start) for name, start in (("a", 1), ("b", 2), ("c", 3), ("d", 4))]
    plan = select_for_deletion(rows, Limits(max_bytes=10**9, min_free_bytes=250), now=5, free_bytes=60)
    assert deleted(plan) == [("a", "min_free_gb"), ("b", "min_free_gb")] and plan.unmet == ()
    assert select_for_deletion(rows, Limits(max_bytes=10**9, min_free_bytes=60), now=5, free_bytes=60).delete == ()


def test_selection_by_age_takes_even_the_newest_and_nothing_younger():
    week = 7 * DAY_S
    rows = [clip("a", 1, 0), clip("b", 1, DAY_S), clip("c", 1, 20 * DAY_S)]
    plan = select_for_deletion(rows, Limits(max_bytes=10**9, retain_days=7), now=20 * DAY_S + 1, free_bytes=10**9)
    assert deleted(plan) == [("a", "retain_days"), ("b", "retain_days")]
    everything_old = select_for_deletion(
        rows, Limits(max_bytes=10**9, retain_days=7), now=30 * DAY_S + week, free_bytes=10**9
    )
    assert [why for _, why in everything_old.delete] == ["retain_days"] * 3


def test_selection_keeps_the_newest_under_size_and_space_limits_and_says_what_is_unmet():
    rows = [clip("a", 100, 1), clip("b", 500, 2)]
    plan = select_for_deletion(rows, Limits(max_bytes=200, min_free_bytes=1000), now=3, free_bytes=0)
    assert deleted(plan) == [("a", "max_gb")] and plan.unmet == ("max_gb", "min_free_gb")
    assert select_for_deletion([], Limits(max_bytes=1, min_free_bytes=10), now=0, free_bytes=0).unmet == (
        "min_free_gb",
    )


def test_selection_never_picks_a_file_still_being_written():
    rows = [clip("writing", 10**6, 1, finished=False), clip("a", 100, 2), clip("b", 100, 3)]
    plan = select_for_deletion(rows, Limits(max_bytes=0), now=4, free_bytes=0)
    assert deleted(plan) == [("a", "max_gb")]


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_gb", float("inf")),
        ("max_gb", float("nan")),
        ("max_gb", -1),
        ("max_gb", 0),
        ("retain_days", float("inf")),
        ("retain_days", -1),
        ("retain_days", 0),
        ("min_free_gb", float("inf")),
        ("min_free_gb", -0.5),
        ("min_free_gb", float("nan")),
        ("pre_s", float("inf")),
        ("min_free_gb", True),
    ],
)
def test_non_finite_or_negative_limits_are_one_line_errors(tmp_path, field, value):
    with pytest.raises(LrcnError, match=field) as err:
        RecordRules(tmp_path, **{field: value})
    assert "\n" not in str(err.value)


def test_limits_that_may_be_zero_or_unset_are_accepted(tmp_path):
    rules = RecordRules(tmp_path, min_free_gb=0, retain_days=None, max_gb=0.5)
    assert (rules.min_free_bytes, rules.max_bytes, rules.retain_days) == (0, 500_000_000, None)
    assert RecordRules(tmp_path).min_free_gb == 1.0


def test_an_index_written_by_a_newer_version_is_refused_not_rewritten(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / INDEX_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LrcnError, match="newer lrcn"):
        MediaIndex(tmp_path)
    (tmp_path / "fresh").mkdir()
    index = MediaIndex(tmp_path / "fresh")
    assert index.path.name == INDEX_NAME and index.entries() == []
    row = index.begin("cam/x.mp4", "cam", "clip", 5.0, "run")
    assert index.entries() == [Entry("cam/x.mp4", "cam", "clip", 0, 5.0, False, "run", row)]
    with pytest.raises(ValueError, match="not a path inside"):
        index.absolute(Entry("../../etc/passwd", "cam", "clip", 1, 0.0))
    index.close()


# -- real files --------------------------------------------------------------------------------

FOREIGN_AGES_S = (0, 30, 120, 3600, 30 * DAY_S, 400 * DAY_S)  # now, a part being written, ..., last year


def foreign_files(folders: list[Path]) -> dict[Path, tuple[int, float]]:
    """A `.mp4` and a `.mp4.part` of every age in each folder: path -> (size, mtime)."""
    made = {}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for age in FOREIGN_AGES_S:
            for suffix in (".mp4", ".mp4.part"):
                path = folder / f"someone-else-{int(age)}{suffix}"
                path.write_bytes(os.urandom(20 * KB))
                mtime = time.time() - age
                os.utime(path, (mtime, mtime))
                made[path] = (20 * KB, mtime)
    return made


def untouched(files: dict[Path, tuple[int, float]]) -> list[Path]:
    """The files that are not as they were made."""
    return [
        p
        for p, (size, mtime) in files.items()
        if not p.is_file() or p.stat().st_size != size or abs(p.stat().st_mtime - mtime) > 1e-3
    ]


@needs_ffmpeg
def test_a_tiny_quota_over_many_events_deletes_only_own_clips_oldest_first(h264, tmp_path):
    record = tmp_path / "videos"
    # Foreign footage in the record dir itself, in the folder this stream's clips go to, and beside.
    foreign = foreign_files([record, record / "cam", record / "holiday" / "2025"])
    clip_bytes = 4 * h264.stat().st_size / 20
    rules = RecordRules(record, pre_s=1, post_s=1, max_gb=2.5 * clip_bytes / 1e9, min_free_gb=0)
    recorder = ClipRecorder(rules, "cam")
    feeding = Demux(h264, recorder)
    own = [record_one(recorder, feeding, start) for start in (2.0, 5.0, 8.0, 11.0, 14.0, 17.0)]
    feeding.close()
    assert wait_until(lambda: sum(p.exists() for p in own) <= 3, 10), [p.exists() for p in own]
    recorder.retention.run_once()
    assert recorder.close()
    assert untouched(foreign) == [], "every foreign file is there, as it was"
    kept = [p.exists() for p in own]
    assert kept[-1] and kept == sorted(kept), f"the oldest went first: {kept}"
    assert recorder.stats().deleted == kept.count(False) >= 3
    assert sum(p.stat().st_size for p, k in zip(own, kept) if k) <= rules.max_bytes
    listed = {entry.path for entry in MediaIndex(record).entries()}
    assert listed == {p.relative_to(record).as_posix() for p, k in zip(own, kept) if k}


@needs_ffmpeg
def test_age_retention_deletes_back_dated_clips_only(h264, tmp_path):
    record = tmp_path / "clips"
    foreign = foreign_files([record / "cam"])
    recorder = ClipRecorder(RecordRules(record, pre_s=1, post_s=1, retain_days=7, min_free_gb=0), "cam")
    feeding = Demux(h264, recorder)
    own = [record_one(recorder, feeding, start) for start in (2.0, 6.0, 10.0)]
    index = recorder.retention.index
    rows = {entry.path: entry.id for entry in index.entries()}
    for path, days_ago in zip(own[:2], (30, 8)):
        index.set_start_time(rows[path.relative_to(record).as_posix()], time.time() - days_ago * DAY_S)
    gone = recorder.retention.run_once()
    feeding.close()
    assert recorder.close()
    assert sorted(Path(entry.path).name for entry, why in gone if why == "retain_days") == sorted(
        p.name for p in own[:2]
    )
    assert [p.exists() for p in own] == [False, False, True] and untouched(foreign) == []


@needs_ffmpeg
def test_files_of_an_earlier_run_are_tidied_and_foreign_parts_left_alone(h264, tmp_path):
    record = tmp_path / "clips"
    (record / "cam").mkdir(parents=True)
    foreign = foreign_files([record / "cam"])
    index = MediaIndex(record)
    crashed = record / "cam" / "cam-crashed.mp4"
    (record / "cam" / "cam-crashed.mp4.part").write_bytes(b"half a clip")
    os.utime(record / "cam" / "cam-crashed.mp4.part", (time.time() - 600, time.time() - 600))
    writing = record / "cam" / "cam-another-process.mp4"
    (record / "cam" / "cam-another-process.mp4.part").write_bytes(b"being written")
    renamed = record / "cam" / "cam-renamed-then-crashed.mp4"
    renamed.write_bytes(b"a whole clip")
    for path in (crashed, writing, renamed):
        index.begin(path.relative_to(record).as_posix(), "cam", "clip", time.time() - 60, "an-earlier-run")
    index.close()
    recorder = ClipRecorder(RecordRules(record, min_free_gb=0), "cam")
    assert wait_until(lambda: not (record / "cam" / "cam-crashed.mp4.part").exists(), 10)
    recorder.retention.run_once()
    entries = {Path(e.path).name: e for e in recorder.retention.index.entries()}
    assert set(entries) == {writing.name, renamed.name}, "the crashed clip's part file and row are gone"
    assert entries[renamed.name].finished and entries[renamed.name].bytes == len(b"a whole clip")
    assert not entries[writing.name].finished and writing.with_name(writing.name + ".part").exists()
    renamed.unlink()  # removed by hand: dropped from the index
    recorder.retention.run_once()
    assert {Path(e.path).name for e in recorder.retention.index.entries()} == {writing.name}
    assert recorder.close()
    assert untouched(foreign) == []


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs: call with its size in KB; unmounted at the end."""
    mounted = []

    def mount(size_kb: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)], capture_output=True, text=True
        )
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip() or run.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@needs_ffmpeg
def test_free_space_retention_on_a_small_filesystem_frees_space(h264, tmp_path, tmpfs):
    record = tmpfs(2000)
    foreign = foreign_files([record])  # 240 KB of someone else's
    min_free_gb = (free_bytes(record) - 500 * KB) / 1e9  # about three clips may be kept
    recorder = ClipRecorder(RecordRules(record, pre_s=1, post_s=1, min_free_gb=min_free_gb), "cam")
    feeding = Demux(h264, recorder)
    own = [record_one(recorder, feeding, start) for start in (2.0, 5.0, 8.0, 11.0, 14.0, 17.0)]
    feeding.close()
    recorder.retention.run_once()
    assert recorder.close()
    kept = [p.exists() for p in own]
    assert kept[-1] and kept == sorted(kept) and not kept[0], kept
    assert free_bytes(record) >= min_free_gb * 1e9 or kept.count(True) == 1
    assert untouched(foreign) == []


@needs_ffmpeg
def test_a_full_disk_clears_itself_once_own_clips_can_go(h264, tmp_path, tmpfs, monkeypatch, caplog):
    monkeypatch.setattr(retention, "INTERVAL_S", 3600.0)  # only the failed clip may wake retention
    caplog.set_level(logging.INFO, logger="lrcn")
    record = tmpfs(1500)
    recorder = ClipRecorder(RecordRules(record, pre_s=1, post_s=1, min_free_gb=0), "cam")
    feeding = Demux(h264, recorder)
    own = [record_one(recorder, feeding, start) for start in (2.0, 5.0, 8.0)]
    assert recorder.stats().clips == 3
    filler = record / "someone-elses-footage.mp4"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk to ENOSPC
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == 28
    finally:
        os.close(fd)
    assert free_bytes(record) == 0
    filler_size = filler.stat().st_size
    failed = record_one(recorder, feeding, 11.0)
    problem = recorder.take_problem()
    assert recorder.stats().failed == 1 and one_line(problem), problem
    assert "No space left" in problem or "media index" in problem and "disk is full" in problem, problem
    assert not failed.exists()
    assert wait_until(lambda: recorder.stats().deleted >= 1, 10), "the failure woke retention"
    assert not own[0].exists() and own[-1].exists()
    again = record_one(recorder, feeding, 15.0)
    feeding.close()
    assert recorder.close()
    assert again.exists() and recorder.stats().clips == 4, (recorder.stats(), recorder.problem)
    assert filler.stat().st_size == filler_size
    assert any("deleted cam/" in r.getMessage() for r in caplog.records)


@needs_ffmpeg
def test_a_clip_named_as_a_file_already_there_is_not_written_over_it(h264, tmp_path):
    record = tmp_path / "clips"
    theirs = {record / "cam" / f"1700000000000-00000000{suffix}": b"theirs" for suffix in (".mp4", ".mp4.part")}
    for path, data in theirs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    recorder = ClipRecorder(RecordRules(record, pre_s=1, post_s=1, min_free_gb=0), "cam")
    feeding = Demux(h264, recorder)
    path = record_one(recorder, feeding, 2.0, event_id="1700000000000-00000000")
    feeding.close()
    assert recorder.close()
    problem = recorder.take_problem()
    assert path in theirs and one_line(problem) and "already there" in problem, problem
    assert all(p.read_bytes() == data for p, data in theirs.items())
    assert MediaIndex(record).entries() == []


def test_one_store_per_record_dir_owns_retention_for_every_stream_there(tmp_path):
    """However the dir is spelled, its streams share one store (one index, one thread) with the
    strictest of their limits; it stops with the last recorder."""
    record = tmp_path / "clips"
    a = ClipRecorder(RecordRules(record, max_gb=5, min_free_gb=0, retain_days=None), "a")
    b = ClipRecorder(RecordRules(tmp_path / "x" / ".." / "clips", max_gb=2, min_free_gb=1, retain_days=9), "b")
    other = ClipRecorder(RecordRules(tmp_path / "elsewhere", max_gb=1), "a")
    try:
        assert a.retention is b.retention and a.retention is not other.retention
        assert a.retention.limits() == Limits(max_bytes=2 * 10**9, min_free_bytes=10**9, retain_days=9)
        assert a.close()
        assert a.retention._thread.is_alive(), "b still records there"
        assert b.retention.limits().max_bytes == 2 * 10**9
    finally:
        assert b.close() and other.close()
    assert not a.retention._thread.is_alive()
    c = ClipRecorder(RecordRules(record, min_free_gb=0), "c")
    assert c.retention is not a.retention, "a later recorder starts a fresh one"
    assert c.close()
