"""`lrcn synth` through the real command line, without TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
from tests.cli import lrcn

ROOT = Path(__file__).resolve().parents[1]


def test_synth_writes_a_dataset_and_a_continuous_stream_without_tensorflow(tmp_path):
    run = lrcn("synth", tmp_path / "data", "--videos-per-class", "2", "--frames", "12", "--groups", "2")
    assert run.returncode == 0, run.stderr
    videos = sorted((tmp_path / "data").glob("*/*.avi"))
    assert len(videos) == 14 and {v.parent.name for v in videos} >= {"still", "move_left", "grow"}
    run = lrcn("synth", tmp_path / "live.avi", "--continuous", "12", "--seed", "3")
    assert run.returncode == 0, run.stderr
    labels = json.loads((tmp_path / "live.labels.json").read_text())
    capture = cv2.VideoCapture(str(tmp_path / "live.avi"))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert frames == len(labels["labels"]) == 12 * 25
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lrcn.tools.cli, lrcn.models.synth, lrcn.models.data, "
            "lrcn.stream.bundle, lrcn.stream.video; print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert probe.stdout.strip() == "False", probe.stderr


def test_synth_into_an_unwritable_place_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = lrcn("synth", blocker / "data", "--videos-per-class", "1", "--frames", "4")
    assert run.returncode == 2
    assert run.stderr.startswith("lrcn: error:") and len(run.stderr.strip().splitlines()) == 1, run.stderr
