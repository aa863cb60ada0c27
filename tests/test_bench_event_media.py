"""`python -m lrcn.tools.evidence.bench_event_media`, run short: a 20 s H.264 stream (black and ffmpeg's test
pattern in turn, which the seed bundle tells apart) served paced through `lrcn serve --record`,
then its checks: clips = events, clips play and stay within their span and max_clip_s, snapshots
at the source's resolution, stored rows = published events. Real parts: ffmpeg, the exported
seed bundle, serve as a subprocess, SQLite, PyAV and OpenCV. Then the same checks are shown to
fail on a record dir with a clip gone and a stray snapshot."""

from __future__ import annotations

import json
import shutil

import pytest
from lrcn.tools.evidence import bench_event_media as bench


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.heavy  # a 20 s paced serve: the evidence tool's own check (clips = events is CI's in test_event_store)
@pytest.mark.timeout(300)
def test_a_short_paced_run_has_one_clip_and_two_snapshots_per_event_and_rows_equal_to_its_messages(
    exported_seed, tmp_path, capsys
):
    bundle, _, _ = exported_seed
    work, out = tmp_path / "work", tmp_path / "event_media.json"
    # 3 s black, 3 s pattern: events of about 3 s whose 2 s pre- and post-rolls overlap, and whose
    # spans (7 s) are longer than max_clip_s (6 s), so clips share packets and the cap is exercised.
    code = bench.main(
        [
            "--source",
            "pattern",
            "--bundle",
            str(bundle),
            "--duration",
            "20",
            "--pre-s",
            "2",
            "--post-s",
            "2",
            "--max-clip-s",
            "6",
            "--min-score",
            "0",
            "--min-duration-s",
            "0.5",
            "--work",
            str(work),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 0 and report["all_pass"], printed
    assert set(report["checks"]) == {
        "serve_exit_0",
        "event_ids",
        "clips_equal_events",
        "clips_play_and_span_their_event",
        "clips_within_max_clip_s",
        "snapshots_at_source_resolution",
        "stored_rows_equal_published_events",
        "media_index_lists_exactly_them",
    }
    assert "FAIL" not in printed and printed.count("PASS") == len(report["checks"])
    assert (
        report["source"]["width"] == 160 and report["source"]["height"] == 120 and report["source"]["codec"] == "h264"
    )
    assert 19 <= report["serve"]["wall_s"] <= 120, "paced: a 20 s file takes at least 20 s"
    assert report["events"] >= 3 and report["clips_on_disk"] == report["events"] == report["stored_rows"]
    assert report["snapshots"] == 2 * report["events"]
    assert report["clips_capped"] >= 1 and report["events_sharing_packets_with_the_next"] >= 1
    assert report["clip_s_max"] <= 6 and report["clip_s_over_max_clip_s_max"] == 0
    assert report["cpu_per_stream_s"] > 0 and report["predictions"] > 100

    # The checks can fail: a clip gone and a snapshot of no event are both found.
    events = bench.events_by_id([json.loads(line) for line in (work / "messages.jsonl").read_text().splitlines()])
    record = work / "record"
    gone = min((record / "cam").glob("*.mp4"))
    gone.unlink()
    shutil.copy(next((record / "cam").glob("*.jpg")), record / "cam" / "stray.jpg")
    assert not bench.check_clips(events, record)["ok"]
    snapshots, _ = bench.check_snapshots(events, record, 160, 120)
    assert not snapshots["ok"] and "without an event: 1" in snapshots["detail"]
    wrong_size, _ = bench.check_snapshots(events, record, 64, 64)
    assert not wrong_size["ok"]


def test_an_unknown_source_is_a_one_line_error_and_exit_2(tmp_path, capsys):
    assert bench.main(["--source", str(tmp_path / "nope.mp4"), "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_event_media: --source") and len(err.splitlines()) == 1
