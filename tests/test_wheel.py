"""The installed package is `lrcn` and nothing else: the wheel built from this tree, installed
into a fresh venv, gives `import lrcn.stream`, `lrcn.Recognizer` and the `lrcn` command, while `import tools.cli`,
`import models.train` and `import stream.pipeline` fail there (names that common collide with
other packages: tf2onnx already installs a top-level `tools`). Built offline with this venv's setuptools; the fresh venv borrows this venv's
third-party packages through a .pth line, never its editable install of this tree."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*command, cwd):
    # Without PYTHONPATH: a path that maps `lrcn` to a checkout would hide the wheel's copy.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("package", "stream", "models", "tools"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        work / "dist",
        source,
        cwd=work,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("lrcn_stream-*.whl")
    venv = work / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=work
    )
    assert done.returncode == 0, done.stderr
    return venv


def test_the_wheel_holds_one_top_level_package(installed):
    (wheel,) = (installed.parent / "dist").glob("*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top == {"lrcn", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, top
    assert "lrcn/stream/status_page.html" in zipfile.ZipFile(wheel).namelist(), "package data travels"


def test_installed_lrcn_imports_and_the_common_names_do_not(installed, tmp_path):
    python = installed / "bin" / "python"
    found = run(
        python, "-c", "import lrcn.stream.pipeline, lrcn.tools.cli; print(lrcn.stream.pipeline.__file__)", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed), "the wheel's copy, not the checkout"
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).stdout.strip()
    )
    assert sorted(p.name for p in site.iterdir() if p.name in ("tools", "models", "stream")) == []
    # tf2onnx itself installs a top-level `tools` (its scripts), the very collision this avoids;
    # so the check is that none of these names leads to this project's modules.
    for module in ("tools.cli", "models.train", "stream.pipeline"):
        missing = run(python, "-c", f"import {module}", cwd=tmp_path)
        assert missing.returncode == 1 and "ModuleNotFoundError" in missing.stderr, (module, missing.stderr)


def test_the_python_api_is_the_package_root_and_imports_lazily(installed, tmp_path):
    code = (
        "import sys, lrcn; lazy = [m for m in sys.modules if m.startswith('lrcn.')]; "
        "print(lazy, lrcn.Recognizer.__module__, lrcn.__file__)"
    )
    found = run(installed / "bin" / "python", "-c", code, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    lazy, module, root = found.stdout.split()
    assert lazy == "[]" and module == "lrcn.stream.recognizer"
    assert Path(root).is_relative_to(installed) and Path(root).parent.name == "lrcn"


def test_the_lrcn_command_runs_from_the_wheel(installed, tmp_path):
    helped = run(installed / "bin" / "lrcn", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "train" in helped.stdout


def test_the_wheel_holds_the_tools_by_role_and_no_shell_script(installed):
    (wheel,) = (installed.parent / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "cli/__init__.py",
        "cli/__main__.py",
        "cli/serve.py",
        "stream_accuracy/__init__.py",
        "stream_accuracy/streaming_accuracy.py",
        "evidence/__init__.py",
        "evidence/bench.py",
        "evidence/harness/__init__.py",
        "evidence/harness/servers.py",
    ):
        assert f"lrcn/tools/{module}" in names, module
    assert [name for name in names if name.endswith(".sh")] == [], "reproduce_results.sh is checkout-only"


def test_the_docs_generators_from_the_wheel_refuse_outside_a_checkout(installed, tmp_path):
    """report and schemas write into the checkout found from the current directory, never beside their own file."""
    for module in ("report", "schemas"):
        refused = run(installed / "bin" / "python", "-m", f"lrcn.tools.evidence.{module}", "--check", cwd=tmp_path)
        assert refused.returncode == 2 and "no lrcn-stream checkout" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    checked = run(installed / "bin" / "python", "-m", "lrcn.tools.evidence.schemas", "--check", cwd=ROOT / "docs")
    assert checked.returncode == 0, checked.stderr
