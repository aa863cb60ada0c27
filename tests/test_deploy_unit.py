"""docs/deploy/lrcn.service is a unit systemd accepts, and it runs the command this project installs."""
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "docs" / "deploy" / "lrcn.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt-get install systemd)")
def test_the_systemd_unit_verifies_without_a_complaint(tmp_path):
    lrcn = Path(sys.executable).with_name("lrcn")
    unit = tmp_path / "lrcn.service"
    unit.write_text(UNIT.read_text().replace("/opt/lrcn/venv/bin/lrcn", str(lrcn)))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_the_unit_runs_serve_with_a_config_and_reloads_with_sighup():
    lines = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#"))
    command = shlex.split(lines["ExecStart"])
    assert command[1:2] == ["serve"] and "--config" in command
    from lrcn.tools.commands import build_parser

    args = build_parser().parse_args(command[1:])   # every flag in the unit is one serve takes
    assert args.config == "/etc/lrcn/cameras.toml" and args.log_format == "json"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID" and lines["RestartPreventExitStatus"] == "2"
