"""docs/deploy/lrcn.service is a unit systemd accepts, it runs the command this project installs,
and the paths the docs tell it to write are writable under its sandbox."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "docs" / "deploy" / "lrcn.service"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt-get install systemd)"
)


def settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit: key -> its values, in order."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@needs_systemd
def test_the_systemd_unit_verifies_without_a_complaint(tmp_path):
    lrcn = Path(sys.executable).with_name("lrcn")
    unit = tmp_path / "lrcn.service"
    unit.write_text(UNIT.read_text().replace("/opt/lrcn/venv/bin/lrcn", str(lrcn)))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_the_unit_runs_serve_with_a_config_and_reloads_with_sighup():
    lines = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    command = shlex.split(lines["ExecStart"])
    assert command[1:2] == ["serve"] and "--config" in command
    from lrcn.tools.cli.commands import build_parser

    args = build_parser().parse_args(command[1:])  # every flag in the unit is one serve takes
    assert args.config == "/etc/lrcn/cameras.toml" and args.log_format == "json"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID" and lines["RestartPreventExitStatus"] == "2"


def writable_paths() -> list[str]:
    """What ProtectSystem=strict leaves writable: StateDirectory= (under /var/lib) and ReadWritePaths=
    (a leading "-" only says a missing path is no error)."""
    unit = settings()
    assert unit["ProtectSystem"] == ["strict"]
    states = [f"/var/lib/{name}" for value in unit.get("StateDirectory", []) for name in value.split()]
    return states + [path.lstrip("-") for value in unit.get("ReadWritePaths", []) for path in value.split()]


def test_every_path_the_docs_write_is_writable_under_the_units_sandbox():
    unit = settings()
    assert unit["StateDirectory"] == ["lrcn"] and "/var/lib/lrcn" in writable_paths()
    assert unit["LimitNOFILE"] == ["65536"]
    documented = set()
    for page in [*ROOT.glob("docs/**/*.md"), ROOT / "stream" / "deploy.py"]:
        documented |= {path.rstrip(".") for path in re.findall(r"/var/(?:lib|log)/\w[\w./-]*", page.read_text())}
    assert "/var/lib/lrcn/clips" in documented and "/var/lib/lrcn/messages.jsonl" in documented
    for path in documented:
        assert any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable_paths()), path


@needs_systemd
def test_the_exposure_in_the_deployment_guide_is_what_systemd_analyze_security_says():
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in run.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {run.stderr.strip()}")
    score = re.search(r"Overall exposure level for lrcn.service: ([0-9.]+)", run.stdout)
    assert score, run.stdout[-500:] + run.stderr
    service_md = (ROOT / "docs" / "guide" / "deployment.md").read_text()
    assert f"exposure {score.group(1)}" in service_md, (
        f"docs/guide/deployment.md should report exposure {score.group(1)}"
    )
