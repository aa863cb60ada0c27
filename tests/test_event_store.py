"""Events, their store, snapshots and clips, and the HTTP API over them, on one real run: the seed
bundle serves an H.264 file (320x240, 1 s GOP) whose test-pattern stretches are events close enough
that each one's post-roll overlaps the next one's pre-roll, the last longer than `max_clip_s`. The
messages come from the JSONL sink; the store is read back from SQLite; clips are played with
PyAV; the API is asked over real HTTP."""

import http.client
import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from lrcn.stream.recording import RecordRules
from lrcn.stream.errors import LrcnError
from lrcn.stream.event_store import EventStore
from lrcn.stream.events import EventRules
from lrcn.stream.media_index import INDEX_NAME, SCHEMA_VERSION, MediaIndex
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.service import ServiceServer
from lrcn.stream.snapshots import Original, decode_jpeg
from tests.media import HEIGHT, WIDTH

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
]

MAX_CLIP_S = 5.0
GOP_S = 1.0


@pytest.fixture(scope="module")
def served_run(exported_seed, patterned, tmp_path_factory):
    """The run, finished; its pipeline still answers the HTTP API (stores open) until the end."""
    bundle, _, _ = exported_seed
    root = tmp_path_factory.mktemp("run")
    jsonl = root / "messages.jsonl"
    rules = EventRules(min_score=0.0, min_duration_s=0.5, classes=("wave_one_hand",))
    record = RecordRules(root / "clips", pre_s=1, post_s=2, max_clip_s=MAX_CLIP_S)
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(patterned), id="cam", events=rules, record=record)],
        PipelineOptions(
            endpoint="tcp://127.0.0.1:0", stats_interval_s=0.5, sinks=({"type": "jsonl", "path": str(jsonl)},)
        ),
    )
    pipeline.start()
    assert pipeline.wait(90)
    stats = pipeline.stop()
    messages = [json.loads(line) for line in jsonl.read_text().splitlines()]
    events = [m for m in messages if m["topic"] == "event/cam"]
    service = ServiceServer(pipeline, "127.0.0.1:0").start()
    try:
        yield pipeline, events, record.dir, stats, service.url
    finally:
        service.stop()
        pipeline.close_stores()


def ends(events):
    return [e for e in events if e["type"] == "end"]


def test_the_run_has_overlapping_events_each_with_an_id(served_run):
    _, events, _, _, _ = served_run
    assert [e["type"] for e in events] == ["start", "end"] * 3, [(e["type"], e["start_time"]) for e in events]
    assert [e["id"] for e in events if e["type"] == "start"] == [e["id"] for e in ends(events)]
    assert len({e["id"] for e in events}) == 3
    first, second, third = ends(events)
    assert first["end_time"] + 2 > second["start_time"] - 1, "post-roll and the next pre-roll overlap"
    assert third["duration_s"] > MAX_CLIP_S


def test_stored_rows_equal_the_published_events(served_run):
    _, events, clips, _, _ = served_run
    with sqlite3.connect(clips / INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        rows = db.execute(
            "SELECT id, stream, label, peak_score, start_frame, stream_start, end_frame, stream_end, "
            "clip, snapshot, start_snapshot, start_time, end_time FROM events ORDER BY start_time"
        ).fetchall()
    starts = {e["id"]: e for e in events if e["type"] == "start"}
    published = [
        (
            e["id"],
            "cam",
            e["label"],
            e["peak_score"],
            e["start_frame"],
            e["start_time"],
            e["end_frame"],
            e["end_time"],
            Path(e["clip"]).relative_to(clips).as_posix(),
            Path(e["snapshot"]).relative_to(clips).as_posix(),
            Path(starts[e["id"]]["snapshot"]).relative_to(clips).as_posix(),
        )
        for e in ends(events)
    ]
    assert [row[:11] for row in rows] == published
    for row in rows:
        start, end = row[11], row[12]
        assert abs(start - starts[row[0]]["time"]) < 1.0 and start < end, "wall times of start and end"


def test_clips_are_the_events_one_to_one_play_and_are_capped(served_run):
    _, events, clips, stats, _ = served_run
    files = sorted((clips / "cam").glob("*.mp4"))
    assert [f.name for f in files] == sorted(f"{e['id']}.mp4" for e in ends(events))
    assert stats.streams["cam"].clips.clips == 3 and stats.streams["cam"].clips.failed == 0
    for end in ends(events):
        with av.open(end["clip"]) as container:
            frames = list(container.decode(video=0))
        seconds = len(frames) / 25
        assert frames[0].key_frame and (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)
        assert seconds <= MAX_CLIP_S + 0.2, (end["id"], seconds)
        expected = min(MAX_CLIP_S, 1 + end["duration_s"] + 2)
        assert abs(seconds - expected) <= GOP_S + 0.2, (end["id"], seconds, expected)


def test_snapshots_are_full_resolution_jpegs_listed_for_retention(served_run):
    _, events, clips, _, _ = served_run
    listed = {entry.path: entry for entry in MediaIndex(clips).entries()}
    for event in events:
        path = Path(event["snapshot"])
        image = decode_jpeg(path.read_bytes())
        assert image.shape == (HEIGHT, WIDTH, 3), "the source's resolution, not the model's 64x64"
        assert image.mean() > 40, "a frame of the pattern, not the black between"
        entry = listed[path.relative_to(clips).as_posix()]
        assert entry.kind == "snapshot" and entry.finished and entry.bytes == path.stat().st_size


def test_an_original_is_cropped_like_the_model_input(patterned):
    with av.open(str(patterned)) as container:
        container.seek(3 * 1_000_000)  # into the pattern
        frame = next(container.decode(video=0))
        full = frame.to_ndarray(format="rgb24")
    cropped = Original(frame, (16, 8, 200, 100)).rgb()
    assert cropped.shape == (100, 200, 3) and np.array_equal(cropped, full[8:108, 16:216])


def test_a_version_1_index_gains_the_events_table_and_keeps_its_rows(tmp_path):
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        db.executescript(
            "CREATE TABLE media (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,"
            " kind TEXT NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, start_time REAL NOT NULL, "
            "finished INTEGER NOT NULL DEFAULT 0, run TEXT NOT NULL);"
            "INSERT INTO media (path, stream, kind, bytes, start_time, finished, run) "
            "VALUES ('cam/a.mp4', 'cam', 'clip', 10, 1.0, 1, 'old'); PRAGMA user_version = 1;"
        )
    store = EventStore(tmp_path)
    assert [e.path for e in store.index.entries()] == ["cam/a.mp4"] and store.query() == []
    store.close()
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'events_by_stream_start'").fetchone()
        db.execute("PRAGMA user_version = 3")
    with pytest.raises(LrcnError, match="newer lrcn"):
        EventStore(tmp_path)


def test_without_record_events_go_to_the_state_dir(exported_seed, patterned, tmp_path):
    bundle, _, _ = exported_seed
    rules = EventRules(min_score=0.0, min_duration_s=0.5, classes=("wave_one_hand",))
    jsonl = tmp_path / "m.jsonl"
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(patterned), id="cam", events=rules, pace=False)],
        PipelineOptions(
            endpoint="tcp://127.0.0.1:0",
            state_dir=str(tmp_path / "state"),
            sinks=({"type": "jsonl", "path": str(jsonl)},),
        ),
    )
    handed = []  # what an MQTT sink's publish_snapshot would get
    pipeline.snapshots.on_jpeg = lambda stream, kind, jpeg: handed.append((stream, kind, decode_jpeg(jpeg).shape))
    pipeline.run(duration_s=60)
    pipeline.close_stores()
    ended = [json.loads(line) for line in jsonl.read_text().splitlines() if '"event/cam"' in line and '"end"' in line]
    store = EventStore(tmp_path / "state")
    rows = store.query()
    assert sorted(r.id for r in rows) == sorted(e["id"] for e in ended) and len(rows) == 3
    assert all(r.clip is None and r.snapshot is None and r.end_time is not None for r in rows)
    assert not list((tmp_path / "state").glob("*/*.jpg")), "no media without record"
    assert handed == [("cam", kind, (HEIGHT, WIDTH, 3)) for _ in rows for kind in ("start", "best")], (
        "snapshots are still handed over, at the source's resolution"
    )


# -- the HTTP API ----------------------------------------------------------------------------


def get(url: str, headers: dict | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_api_lists_and_filters_events(served_run):
    _, events, _, _, url = served_run
    status, headers, body = get(f"{url}/api/events")
    listed = json.loads(body)["events"]
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert [e["id"] for e in listed] == [e["id"] for e in reversed(ends(events))], "newest first"
    middle = listed[1]
    assert [e["id"] for e in json.loads(get(f"{url}/api/events?limit=1")[2])["events"]] == [listed[0]["id"]]
    after = json.loads(get(f"{url}/api/events?after={middle['start_time']}")[2])["events"]
    before = json.loads(get(f"{url}/api/events?before={middle['start_time']}")[2])["events"]
    assert [e["id"] for e in after] == [listed[0]["id"], middle["id"]] and [e["id"] for e in before] == [
        listed[2]["id"]
    ]
    assert json.loads(get(f"{url}/api/events?stream=cam&label=wave_one_hand")[2])["count"] == 3
    assert json.loads(get(f"{url}/api/events?stream=door")[2])["events"] == []
    assert json.loads(get(f"{url}/api/events?label=bend")[2])["events"] == []
    iso = "1970-01-02T00:00:00Z"
    assert json.loads(get(f"{url}/api/events?before={iso}")[2])["events"] == []
    status, _, body = get(f"{url}/api/events/{middle['id']}")
    assert status == 200 and json.loads(body) == middle and middle["clip_url"].endswith("/clip.mp4")


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=many", "after=yesterday", "colour=red", "limit=1&limit=2", "before=2026-13-40"]
)
def test_bad_parameters_are_a_400_with_one_line(served_run, query):
    _, _, _, _, url = served_run
    status, headers, body = get(f"{url}/api/events?{query}")
    error = json.loads(body)["error"]
    assert status == 400 and headers["Content-Type"] == "application/json" and error and "\n" not in error


def test_unknown_ids_and_paths_outside_are_404(served_run):
    pipeline, _, _, _, url = served_run
    for path in (
        "/api/events/0-00000000",
        "/api/events/0-00000000/clip.mp4",
        "/api/events/..%2F..%2Fetc",
        "/api/events/%2e%2e/snapshot.jpg",
        "/api/streams/nosuch/latest.jpg",
    ):
        status, _, body = get(url + path)
        assert status == 404 and "error" in json.loads(body), path
    # A row edited to point outside the record dir is never served.
    store = pipeline.event_stores[0]
    event = store.query(limit=1)[0]
    store.update(event.id, snapshot="../../../etc/passwd")
    try:
        assert get(f"{url}/api/events/{event.id}/snapshot.jpg")[0] == 404
    finally:
        store.update(event.id, snapshot=event.snapshot)


def test_snapshots_and_latest_frames_over_http(served_run):
    _, events, _, _, url = served_run
    end = ends(events)[0]
    status, headers, body = get(f"{url}/api/events/{end['id']}/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body == Path(end["snapshot"]).read_bytes()
    start = next(e for e in events if e["type"] == "start" and e["id"] == end["id"])
    assert get(f"{url}/api/events/{end['id']}/snapshot.jpg?frame=start")[2] == Path(start["snapshot"]).read_bytes()
    labelled = decode_jpeg(get(f"{url}/api/events/{end['id']}/snapshot.jpg?label=1")[2])
    assert labelled.shape == (HEIGHT, WIDTH, 3) and labelled[2:20, 2:40].mean() < decode_jpeg(body)[2:20, 2:40].mean()
    status, _, body = get(f"{url}/api/streams/cam/latest.jpg")
    assert status == 200 and decode_jpeg(body).shape == (HEIGHT, WIDTH, 3)
    assert decode_jpeg(get(f"{url}/api/streams/cam/latest.jpg?h=120")[2]).shape == (120, 160, 3)
    assert get(f"{url}/api/streams/cam/latest.jpg?h=0")[0] == 400


def test_a_clip_is_served_whole_and_by_range_so_a_browser_seeks(served_run, monkeypatch):
    from lrcn.stream import event_api

    _, events, _, _, url = served_run
    end = ends(events)[1]
    data = Path(end["clip"]).read_bytes()
    status, headers, body = get(f"{url}/api/events/{end['id']}/clip.mp4")
    assert (
        status == 200
        and body == data
        and headers["Accept-Ranges"] == "bytes"
        and headers["Content-Type"] == "video/mp4"
    )
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for header, first, last in (
            ("bytes=0-99", 0, 99),
            (f"bytes={len(data) - 50}-", len(data) - 50, len(data) - 1),
            ("bytes=-10", len(data) - 10, len(data) - 1),
        ):
            connection.request("GET", f"/api/events/{end['id']}/clip.mp4", headers={"Range": header})
            response = connection.getresponse()
            assert response.status == 206 and response.read() == data[first : last + 1]  # one keep-alive connection
            assert response.getheader("Content-Range") == f"bytes {first}-{last}/{len(data)}"
        monkeypatch.setattr(event_api, "OPEN_RANGE_BYTES", 1000)  # a long clip's open range is served in parts
        connection.request("GET", f"/api/events/{end['id']}/clip.mp4", headers={"Range": "bytes=100-"})
        response = connection.getresponse()
        assert response.status == 206 and response.read() == data[100:1100]
        assert response.getheader("Content-Range") == f"bytes 100-1099/{len(data)}"
        connection.request("GET", f"/api/events/{end['id']}/clip.mp4", headers={"Range": f"bytes={len(data)}-"})
        response = connection.getresponse()
        response.read()
        assert response.status == 416 and response.getheader("Content-Range") == f"bytes */{len(data)}"
    finally:
        connection.close()


def test_an_in_memory_store_keeps_only_the_newest_events(monkeypatch):
    from lrcn.stream import event_store
    from lrcn.stream.event_store import StoredEvent

    monkeypatch.setattr(event_store, "MEMORY_ROWS", 1500)
    store = EventStore(None)
    for n in range(3000):
        store.insert(StoredEvent(f"{n}-a", "cam", "wave", float(n), None, 0.5, None, None, None, n, 0.0, None, None))
    assert store.index.query("SELECT count(*), min(start_time) FROM events") == [(1500, 1500.0)]
    assert store.query(limit=1)[0].id == "2999-a" and store.get("1499-a") is None


def test_lrcn_serve_flags_store_cap_and_serve_events_over_its_port(exported_seed, patterned, tmp_path):
    """The CLI end to end: --record, --max-clip-s and --metrics; the API asked while it serves."""
    from tests.live_servers import free_port, wait_until
    from tests.cli import serve_events

    bundle, _, _ = exported_seed
    port = free_port()
    seen = {}

    def ask(process):
        jsonl = tmp_path / "messages.jsonl"
        wait_until(lambda: process.poll() is not None or jsonl.is_file() and '"type":"end"' in jsonl.read_text(), 60)
        status, _, body = get(f"http://127.0.0.1:{port}/api/events")
        seen["list"] = (status, json.loads(body))
        event = seen["list"][1]["events"][0]
        seen["range"] = get(f"http://127.0.0.1:{port}{event['clip_url']}", {"Range": "bytes=0-9"})

    messages, err = serve_events(
        bundle,
        patterned,
        tmp_path,
        "--record",
        tmp_path / "clips",
        "--max-clip-s",
        "3",
        "--metrics",
        f"127.0.0.1:{port}",
        during=ask,
    )
    ended = [m for m in messages if m["topic"] == "event/cam" and m["type"] == "end"]
    status, listed = seen["list"]
    assert status == 200 and listed["events"][0]["id"] == ended[0]["id"] and listed["events"][0]["end_time"], err
    status, headers, body = seen["range"]
    assert status == 206 and body == Path(ended[0]["clip"]).read_bytes()[:10] and body[4:8] == b"ftyp"
    for end in ended:
        with av.open(end["clip"]) as container:
            assert len(list(container.decode(video=0))) / 25 <= 3.2, "capped by --max-clip-s"


def test_a_file_retention_deletes_is_no_longer_named_by_its_event(tmp_path):
    """The event row stays (what happened is history); its clip or snapshot column is cleared with the file's row."""
    from lrcn.stream.event_store import StoredEvent

    store = EventStore(tmp_path)
    rows = {
        path: store.index.begin(path, "cam", kind, 1.0, "run")
        for path, kind in (
            ("cam/e1.mp4", "clip"),
            ("cam/e1.jpg", "snapshot"),
            ("cam/e1-start.jpg", "snapshot"),
            ("cam/e2.mp4", "clip"),
        )
    }
    for row in rows.values():
        store.index.finish(row, 10)
    for event_id, clip in (("e1", "cam/e1.mp4"), ("e2", "cam/e2.mp4")):
        store.insert(
            StoredEvent(
                event_id,
                "cam",
                "wave",
                1.0,
                2.0,
                0.9,
                clip,
                f"cam/{event_id}.jpg",
                f"cam/{event_id}-start.jpg",
                10,
                1.0,
                20,
                2.0,
            )
        )
    store.index.forget(rows["cam/e1.mp4"])
    store.index.forget(rows["cam/e1-start.jpg"])
    first, second = store.get("e1"), store.get("e2")
    assert (first.clip, first.snapshot, first.start_snapshot) == (None, "cam/e1.jpg", None)
    assert (second.clip, second.snapshot) == ("cam/e2.mp4", "cam/e2.jpg")
    assert sorted(e.path for e in store.index.entries()) == ["cam/e1.jpg", "cam/e2.mp4"]
    store.close()


def test_metrics_count_events_by_label_clips_and_snapshots(served_run):
    """The scrape after the run: events by label as published, clips and snapshots as on disk, and
    no open event (the run ended them all)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, events, clips, _, url = served_run
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        body = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    starts = [e for e in events if e["type"] == "start"]
    by_label = {}
    for e in starts:
        by_label[e["label"]] = by_label.get(e["label"], 0) + 1
    assert (
        by_label
        and {label: samples[("lrcn_events_total", (("label", label), ("stream", "cam")))] for label in by_label}
        == by_label
    )
    assert samples[("lrcn_clips_written_total", (("stream", "cam"),))] == len(list((clips / "cam").glob("*.mp4"))) == 3
    assert samples[("lrcn_snapshots_written_total", (("stream", "cam"),))] == len(list((clips / "cam").glob("*.jpg")))
    activity = {dict(labels)["label"]: v for (name, labels), v in samples.items() if name == "lrcn_stream_activity"}
    assert "wave_one_hand" in activity and set(activity.values()) == {0.0}, activity
