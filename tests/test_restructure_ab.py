"""python -m lrcn.tools.evidence.restructure_ab on real revisions of this repository: each exported
with git archive, imported as lrcn without installing, and benched by its own code in a subprocess."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import pytest

from lrcn.tools.evidence import restructure_ab
from tests.cli import lrcn
from tests.paths import ROOT

TOOL = "lrcn.tools.evidence.restructure_ab"
FLAT_TOOLS = "3b863ed"  # the last layout with lrcn.tools.bench, before tools were grouped by role


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


@pytest.fixture
def history():
    if not (ROOT / ".git").exists() or git("rev-parse", "HEAD").returncode != 0:
        pytest.skip("no git history here: the tool exports revisions with git archive")


@pytest.mark.slow  # two lrcn bench runs in subprocesses (about 14 s) after keras_seed's build
def test_both_revisions_are_benched_in_turn_and_the_ratios_come_from_their_figures(history, keras_seed, tmp_path):
    out = tmp_path / "ab.json"
    done = lrcn(
        *("--before", "HEAD", "--after-here", "--rounds", "1", "--latency-seconds", "1"),
        *("--bundle", keras_seed, "--out", out),
        module=TOOL,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    head = git("rev-parse", "HEAD").stdout.strip()
    assert result["before"]["commit"] == result["after"]["commit"] == head
    assert result["after"]["uncommitted_changes"] == bool(git("status", "--porcelain").stdout.strip())
    assert result["before"]["bench_module"] == result["after"]["bench_module"] == "lrcn.tools.evidence.bench"
    assert [run["side"] for run in result["runs"]] == ["before", "after"]
    for run in result["runs"]:
        figures = run["figures"]
        assert set(figures) == set(restructure_ab.METRICS)  # the checked-in bundle has its INT8 encoder: batch 16 too
        assert all(value > 0 for value in figures.values())
        # one bench.json's figures: the Pipeline's CPU over the bare encoder + exact head it reports
        bare = figures["encoder_b1_cpu_ms"] + figures["head_exact_cpu_ms"]
        assert figures["pipeline_over_bare"] == pytest.approx(figures["pipeline_cpu_ms"] / bare, rel=2e-3)
        assert len(run["load_before"]) == len(run["load_after"]) == 3
    for name, metric in result["metrics"].items():
        before, after = (
            [run["figures"][name] for run in result["runs"] if run["side"] == s] for s in ("before", "after")
        )
        assert (metric["before"], metric["after"]) == (before, after)
        ratio = statistics.median(after) / statistics.median(before)
        assert metric["after_over_before"] == pytest.approx(ratio, abs=1e-3)
        assert metric["paired_after_over_before"] == pytest.approx(after[0] / before[0], abs=1e-3)  # one round
    printed = done.stdout.splitlines()
    assert all(any(line.startswith(f"| {m['label']} |") for line in printed) for m in result["metrics"].values())


def test_the_code_before_tools_were_grouped_runs_its_flat_bench_from_its_own_export(history):
    if git("cat-file", "-e", f"{FLAT_TOOLS}^{{commit}}").returncode != 0:
        pytest.skip(f"{FLAT_TOOLS} is not in this clone (a shallow one)")
    with tempfile.TemporaryDirectory() as folder:
        side = restructure_ab.prepare("before", ROOT, FLAT_TOOLS, Path(folder))
        assert side.revision.bench_module == "lrcn.tools.bench"
        assert (side.root / "tools" / "bench.py").is_file() and not (side.root / "tools" / "evidence").exists()
        assert side.revision.commit.startswith(FLAT_TOOLS) and not side.revision.uncommitted_changes


def test_a_revision_git_does_not_know_is_a_one_line_error(history, tmp_path):
    out = tmp_path / "ab.json"
    done = lrcn("--before", "no-such-revision", "--after-here", "--out", out, module=TOOL)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m {TOOL}: error: no revision 'no-such-revision' in {ROOT} (a shallow clone? `git fetch --unshallow`)"
    ]
    assert not out.exists()
