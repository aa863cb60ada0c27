"""lrcn bench, soak and faults, each run short on the small exported test bundle with real
sockets, real ffmpeg servers and real models. They check that the tools run to the end and
report what they promise; the figures themselves are measured by running the tools (docs/)."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.sources import SourceState, open_source, parse_pattern
from lrcn.tools.cli.commands import main as lrcn
from lrcn.tools.evidence.ffmpeg_server import FFMPEG

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def test_a_pattern_source_is_a_paced_in_memory_stream_that_ends_after_its_seconds():
    events = []
    source = open_source("pattern:50:0.4", (32, 48), on_status=events.append)
    deadline = time.monotonic() + 5
    while source.running and time.monotonic() < deadline:
        time.sleep(0.02)
    frames = source.ring.read_new()
    assert [e.state for e in events] == [SourceState.CONNECTING, SourceState.CONNECTED, SourceState.ENDED]
    assert 15 <= len(frames) <= 21 and frames[0].image.shape == (32, 48, 3)
    assert [f.index for f in frames] == list(range(len(frames)))
    # Paced at 50 fps, not a burst: no frame arrives before its slot on the 20 ms schedule (one
    # delayed by a loaded machine may be followed by a shorter gap as the schedule catches up).
    since_first = [f.captured_at - frames[0].captured_at for f in frames]
    assert all(elapsed >= 0.02 * i - 0.005 for i, elapsed in enumerate(since_first)), since_first


@pytest.mark.parametrize("uri", ["pattern:abc", "pattern:0", "pattern:25:-1", "pattern:1:2:3"])
def test_a_malformed_pattern_source_is_a_one_line_error(uri):
    with pytest.raises(LrcnError, match="pattern:"):
        parse_pattern(uri)


@pytest.mark.parametrize("command", ["bench", "soak", "faults"])
def test_a_missing_bundle_is_a_one_line_error_and_exit_2(command, tmp_path, capsys):
    assert lrcn([command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrcn: error:") and len(err.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_runs_every_section_and_writes_json_and_plots(keras_seed, tmp_path, capsys):
    bundle = keras_seed  # the bench times Keras's start-up and the naive model.onnx too
    out = tmp_path / "bench"
    assert (
        lrcn(
            [
                "bench",
                str(bundle),
                "--out",
                str(out),
                "--quick",
                "--seconds",
                "1",
                "--latency-seconds",
                "2",
                "--max-streams",
                "2",
            ]
        )
        == 0
    )
    result = json.loads((out / "bench.json").read_text())
    cost = result["cost"]
    assert cost["exact"]["predictions"] > 0 and cost["naive_over_exact"] > 1  # the naive window costs more
    assert result["latency"]["capture_to_publish_ms"]["count"] > 10
    assert result["latency"]["dropped"] == 0
    for kind in ("capacity_memory", "capacity_file"):
        assert result[kind]["runs"] and result[kind]["max_streams"] >= 1
    assert result["throughput"]["encoder"]["best_frames_per_s"] > 0 and result["aggregate"]["fraction"] > 0
    for kind in ("runtime", "keras"):
        assert result["startup"][kind]["first_prediction_s"] > 0 and result["startup"][kind]["rss_mb"] > 0
    assert set(result["targets"]) and (out / "latency.png").is_file() and (out / "capacity.png").is_file()
    assert "naive" in capsys.readouterr().out


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_faults_short_run_recovers_from_every_kill_a_stall_and_a_corrupt_file(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    out = tmp_path / "faults"
    assert (
        lrcn(
            [
                "faults",
                str(bundle),
                "--streams",
                "2",
                "--kills",
                "2",
                "--stall",
                "3",
                "--down",
                "0.5",
                "--timeout",
                "150",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "faults.json").read_text())
    assert len(result["cycles"]) == 4 and all(c["resumed"] and c["gap_event"] for c in result["cycles"])
    assert result["serve_exit"] == 0 and result["stalled_subscriber"]["received_after"] > 0
    assert result["predictions"]["corrupt"] > 0


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_short_run_samples_memory_threads_drops_and_latency(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    out = tmp_path / "soak"
    assert (
        lrcn(
            [
                "soak",
                str(bundle),
                "--duration",
                "24",
                "--interval",
                "3",
                "--max-rss-growth-mb",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "soak.json").read_text())
    assert result["serve_exit"] == 0 and len(result["samples"]) >= 6
    assert all(s["threads"] > 0 and s["rss_mb"] > 0 for s in result["samples"])
    assert result["dropped"] == 0 and set(result["predictions"]) == {f"cam{i}" for i in range(4)}
    assert (out / "soak.png").is_file() or importlib.util.find_spec("matplotlib") is None, "the plot, with matplotlib"
