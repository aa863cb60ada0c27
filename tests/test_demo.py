"""`lrcn demo --quick`: every stage of the README's first command, end to end, on a real socket."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_demo_trains_exports_serves_and_scores(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.cli", "demo", "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=540,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["test"]["videos"] == 21
    for name in ("encoder.onnx", "head.npz", "meta.json"):
        assert (tmp_path / "bundle" / name).is_file(), name
    streaming = summary["streaming"]
    # 8 s at 25 fps sampled at 10 fps: 80 frames, a prediction for each from the 8th on.
    assert 65 <= streaming["predictions"] <= 74, streaming
    assert 0.0 <= streaming["accuracy"] <= 1.0 and streaming["latency_ms_p99"] < 1000
    lines = [line for line in run.stdout.splitlines() if line.startswith("  frame ")]
    assert lines and all("truth" in line and "published" in line and "latency" in line for line in lines)
    assert "streaming accuracy" in run.stdout
