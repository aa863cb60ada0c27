"""Without --verbose, `lrcn` commands print no TensorFlow/absl C++ log line and no Python warning;
with it they do. Real runs of the real command line: tiny synthetic data, one epoch."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli import lrcn

ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21 writes from C++: `I0000 00:00:1796041853.590902   13260 port.cc:153] ...`
NATIVE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] |absl::InitializeLog|oneDNN")
TRAIN = [
    "--epochs",
    "1",
    "--size",
    "64",
    "--clip-length",
    "8",
    "--backbone",
    "small",
    "--lstm-units",
    "16",
    "--clips-per-video",
    "1",
    "--no-refit",
    "--no-cache",
    "--quiet",
]


def user_env(tf_level: str | None) -> dict:
    """The environment with TF_CPP_MIN_LOG_LEVEL as a user might have it (None: unset, TensorFlow's default)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return env if tf_level is None else {**env, "TF_CPP_MIN_LOG_LEVEL": tf_level}


def noise(run) -> list[str]:
    return [line for line in (run.stdout + run.stderr).splitlines() if "I0000" in line or NATIVE.search(line)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(bundle, run): `lrcn train` without --verbose, though the user's environment asks TensorFlow for
    every C++ line (TF_CPP_MIN_LOG_LEVEL=0)."""
    pytest.importorskip("tensorflow")
    from lrcn.models import synth

    base = tmp_path_factory.mktemp("quiet")
    synth.write_dataset(base / "data", videos_per_class=3, n_frames=24, size=64, groups=3)
    run = lrcn("train", base / "data", "--out", base / "bundle", *TRAIN, env=user_env("0"))
    assert run.returncode == 0, run.stderr
    return base / "bundle", run


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_prints_no_native_log_line_without_verbose(trained):
    bundle, run = trained
    assert noise(run) == [], run.stderr
    assert f"bundle written to {bundle}" in run.stdout
    assert run.stderr.startswith("lrcn: 21 videos, 7 classes"), run.stderr
    assert all(line.startswith("lrcn: ") for line in run.stderr.splitlines()), run.stderr  # nor any warning


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_export_prints_no_native_log_line_without_verbose(trained):
    bundle, _ = trained
    run = lrcn("export", bundle, env=user_env("0"))
    assert run.returncode == 0, run.stderr
    assert noise(run) == [], run.stdout + run.stderr
    assert run.stdout.startswith(f"exported {bundle}: checked on"), run.stdout
    assert all(line.startswith("lrcn: ") for line in run.stderr.splitlines()), run.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_verbose_export_shows_tensorflow_lines(trained, tmp_path):
    bundle = shutil.copytree(trained[0], tmp_path / "bundle")
    run = lrcn("export", bundle, "--verbose", env=user_env(None))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"exported {bundle}: checked on"), run.stdout
    assert noise(run), "TensorFlow 2.21 logs at import and in grappler: --verbose must let it through\n" + run.stderr


FILTER_SCRIPT = r"""
import os, sys
from lrcn.tools.cli.quiet import filter_native_stderr, quiet_libraries

quiet_libraries()
filter_native_stderr()
print("lrcn: before", file=sys.stderr, flush=True)
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1796041853.590902   13260 port.cc:153] oneDNN custom operations are on.\n")
os.write(2, b"\rprogress 1/2")
os.write(2, b"\rprogress 2/2\n")
os.write(2, b"W0000 00:00:1796041853.5909")
os.write(2, b"02   13260 split.cc:1] a line in two writes\n")
os.write(2, b"E0000 00:00:1796041853.590902   13260 cuda_dnn.cc:8310] Unable to register\nlrcn: after\n")
os.write(2, b"2024-05-01 12:00:00.123456: I tensorflow/core/util/port.cc:113] old format\n")
os.write(2, b"F0000 00:00:1796041853.590902   13260 fatal.cc:1] Check failed: kept\n")
raise SystemExit("lrcn: error: last words")
"""


@pytest.mark.timeout(60)
def test_the_filter_drops_cpp_lines_and_keeps_every_other_byte_in_order():
    run = subprocess.run([sys.executable, "-c", FILTER_SCRIPT], capture_output=True, cwd=ROOT, timeout=60)
    assert run.returncode == 1, run.stderr
    assert run.stderr == (
        b"lrcn: before\n\rprogress 1/2\rprogress 2/2\nlrcn: after\n"
        b"F0000 00:00:1796041853.590902   13260 fatal.cc:1] Check failed: kept\n"
        b"lrcn: error: last words\n"
    )
