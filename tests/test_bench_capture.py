"""lrcn bench capture, run --quick on small generated clips: it runs to the end and reports every
path, source, ratio and target verdict it promises. How fast capture is, is measured by running
the benchmark (docs/results/capture.json), not asserted here."""

from __future__ import annotations

import json

import pytest

from lrcn.tools.evidence.bench_capture import PATHS, SOURCES
from lrcn.tools.cli.commands import main as lrcn
from lrcn.tools.evidence.ffmpeg_server import FFMPEG


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")
@pytest.mark.slow  # about 10 s of CPU on 2 cores: encoding six clips, then reading them 18 times
@pytest.mark.timeout(120)
def test_quick_capture_bench_reports_every_path_source_ratio_and_target(tmp_path, capsys):
    out = tmp_path / "capture"
    assert lrcn(["bench", "capture", "--quick", "--out", str(out), "--cache", str(tmp_path / "sources")]) == 0
    result = json.loads((out / "capture.json").read_text())
    assert set(result["sources"]) == {spec.id for spec in SOURCES}
    measured = {sid: info for sid, info in result["sources"].items() if "skipped" not in info}
    assert {"720p30-h264-ippp", "1080p30-h264-ippp", "1080p30-h264-bf2"} <= set(measured)
    for _sid, info in measured.items():
        assert set(info["paths"]) == set(PATHS)
        for figures in info["paths"].values():
            assert figures["frames"] > 0
            assert figures["cpu_ms_per_frame"]["median"] > 0 and figures["cpu_ms_per_camera_s"]["median"] > 0
        assert info["paths"]["a"]["converted"] == info["paths"]["a"]["frames"]
        assert 0 < info["paths"]["b"]["converted"] < info["paths"]["b"]["frames"]  # only the 10 fps grid
        assert info["paths"]["c"]["converted"] == 0
        assert info["ratios"]["b_over_c"] > 0 and info["ratios"]["a_over_b"] > 0
        assert info["ratios"]["b_over_c_same_run"] > 1, "(b) timed its own conversion inside the run"
    for _sid, info in result["sources"].items():
        if "skipped" in info:
            assert info["skipped"]  # a reason, e.g. no libx265
    verdicts = {(check["target"], check["source"]): check["verdict"] for check in result["targets"]}
    assert len(verdicts) == 2 * len(SOURCES) + sum(spec.a_over_b_target for spec in SOURCES)  # (b)/(c) two ways
    assert all(verdicts[check] in ("PASS", "MISS") for check in verdicts if check[1] in measured)
    assert result["machine"]["cpu"] and result["machine"]["pyav"] and result["load_before"]
    assert (out / "capture.png").is_file()
    printed = capsys.readouterr().out
    assert "(b)/(c)" in printed and ("PASS" in printed or "MISS" in printed)


def test_bench_capture_bad_arguments_are_a_one_line_error_and_exit_2(tmp_path, capsys):
    assert lrcn(["bench", "capture", "--repeats", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrcn: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bench_without_capture_still_takes_a_bundle(tmp_path, capsys):
    assert lrcn(["bench", str(tmp_path / "nope")]) == 2  # the old form: a missing bundle, not the capture bench
    assert "model bundle not found" in capsys.readouterr().err
