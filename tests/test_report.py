"""`python -m lrcn.tools.evidence.report`: the committed tables equal what their JSON gives, and a changed
JSON value changes its table (on a copy of the docs)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrcn.tools.evidence import report
from tests.cli import lrcn

ROOT = Path(__file__).resolve().parents[1]


def copy_docs(tmp_path: Path) -> Path:
    """README.md, docs/**/*.md and docs/results/*.json under tmp_path, laid out as in the checkout."""
    (tmp_path / "docs" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    for page in (ROOT / "docs").rglob("*.md"):
        (tmp_path / page.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, tmp_path / page.relative_to(ROOT))
    for result in (ROOT / "docs" / "results").glob("*.json"):
        shutil.copy(result, tmp_path / "docs" / "results" / result.name)
    return tmp_path


def marked_names(root: Path) -> set[str]:
    return {m["name"] for page in report.documents(root) for m in report.MARKED.finditer(page.read_text())}


def test_the_committed_docs_equal_what_their_json_gives():
    check = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.evidence.report", "--check", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, f"run `python -m lrcn.tools.evidence.report`:\n{check.stderr}"


def test_every_marker_names_a_registered_table_and_every_table_is_placed():
    assert marked_names(ROOT) == set(report.TABLES)


def test_a_changed_json_value_changes_its_table_and_check_names_it(tmp_path, capsys):
    root = copy_docs(tmp_path)
    path = root / "docs" / "results" / "sink_cost.json"
    result = json.loads(path.read_text())
    committed = result["sets"]["zeromq+jsonl"]["extra_us_per_message"]
    result["sets"]["zeromq+jsonl"]["extra_us_per_message"] = 999.4
    path.write_text(json.dumps(result))

    assert report.main(["--check", "--root", str(root)]) == 1
    assert capsys.readouterr().err.splitlines() == ["docs/evidence/performance.md: sink-cost differs from its JSON"]
    before = (root / "docs" / "evidence" / "performance.md").read_text()

    assert report.main(["--root", str(root)]) == 0
    after = (root / "docs" / "evidence" / "performance.md").read_text()
    assert "| JSONL | 999 us |" in after and f"| JSONL | {committed:.0f} us |" in before
    assert report.main(["--check", "--root", str(root)]) == 0
    assert (root / "README.md").read_text() == (ROOT / "README.md").read_text()


def test_one_file_feeds_every_table_that_reads_it(tmp_path, capsys):
    root = copy_docs(tmp_path)
    path = root / "docs" / "results" / "events_ucf101_9.json"
    result = json.loads(path.read_text())
    result["modes"]["exact-hop1"]["accuracy"] = 0.123
    result["modes"]["exact-hop1"]["events"]["precision"] = 0.5
    path.write_text(json.dumps(result))
    assert report.main(["--check", "--root", str(root)]) == 1
    named = set(capsys.readouterr().err.splitlines())
    assert named == {
        "README.md: headline differs from its JSON",
        "docs/evidence/results.md: stream-accuracy-ucf101_9 differs from its JSON",
        "docs/evidence/results.md: events-ucf101_9 differs from its JSON",
    }


def test_a_table_without_its_json_names_the_command_that_writes_it(tmp_path):
    rendered = report.render("bench-targets", tmp_path)
    assert rendered.startswith("*Not generated yet: no `docs/results/bench.json`.")
    assert report.TABLES["bench-targets"].command in rendered


def test_a_table_renders_from_real_json():
    sinks = report.render("sink-cost", ROOT / "docs" / "results")
    header, rule, *rows = sinks.splitlines()
    assert header.startswith("| sink |") and set(rule) <= set("|- ")
    assert len(rows) == len(json.loads((ROOT / "docs/results/sink_cost.json").read_text())["sets"])


def test_an_unknown_marker_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="no-such-table"):
        report.rewrite("<!-- report:no-such-table -->\n<!-- /report -->\n", tmp_path)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        report.table("sink-cost", "sink_cost.json", "cmd")(lambda run: "")


def test_text_outside_the_markers_is_kept(tmp_path):
    text = "before\n<!-- report:sink-cost -->\nold\n<!-- /report -->\nafter\n"
    new, changed = report.rewrite(text, ROOT / "docs" / "results")
    assert changed == ["sink-cost"]
    assert new.startswith("before\n<!-- report:sink-cost -->\n| sink |")
    assert new.endswith("\n<!-- /report -->\nafter\n")
    assert re.search(r"\| JSONL \| \d+ us \|", new)


def bench_runs() -> tuple[dict, dict]:
    results = ROOT / "docs" / "results"
    return tuple(json.loads((results / name).read_text()) for name in ("bench.json", "bench_continuous.json"))


def test_the_bench_machine_table_names_the_machine_and_the_load_of_each_run():
    text = report.render("bench-machine", ROOT / "docs" / "results")
    for run in bench_runs():
        row = (
            f"| {run['machine']['cpu']} | {run['machine']['cores']} | {report.load(run['load_before'])} | "
            f"{report.load(run['load_after'])} |"
        )
        assert row in text
        assert f"ONNX Runtime {run['machine']['onnxruntime']}" in text


def test_the_capacity_note_on_in_memory_sources_appears_only_when_they_held_fewer_streams():
    _, continuous = bench_runs()
    memory = continuous["capacity_memory"]
    failing = next(r for r in memory["runs"] if r["streams"] == memory["first_failing"])

    fewer = json.loads(json.dumps(continuous))
    fewer["capacity_file"]["max_streams"] = memory["max_streams"] + 1
    note = report.fewer_in_memory(fewer, "continuous")
    assert note.startswith(
        f"In continuous mode, in-memory sources held fewer streams than video files "
        f"({memory['max_streams']} against {memory['max_streams'] + 1})"
    )
    assert f"its {failing['streams']}-stream run failed on p99 alone ({failing['p99_ms']:.0f} ms" in note

    as_many = json.loads(json.dumps(continuous))
    as_many["capacity_file"]["max_streams"] = memory["max_streams"]
    assert report.fewer_in_memory(as_many, "continuous") == ""


def test_a_changed_command_line_or_metric_makes_check_name_its_reference_page(tmp_path, capsys):
    root = copy_docs(tmp_path)
    for page, row in (("cli.md", "| `--cooldown` |"), ("metrics.md", "| `lrcn_reconnects_total` |")):
        path = root / "docs" / "reference" / page
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if row not in line))
    assert report.main(["--check", "--root", str(root)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "docs/reference/cli.md: cli differs from its JSON",
        "docs/reference/metrics.md: metrics differs from its JSON",
    ]


def test_the_cli_reference_lists_every_flag_that_lrcn_serve_help_prints():
    shown = lrcn("serve", "--help")
    assert shown.returncode == 0, shown.stderr
    columns = re.findall(r"^ {2}(-.*?)(?: {2,}|$)", shown.stdout, re.M)  # the options' column of the help
    flags = {flag for column in columns for flag in re.findall(r"--[a-z][a-z0-9-]*", column)} - {"--help"}
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    serve = page[page.index("## `lrcn serve`") : page.index("## `lrcn annotate`")]
    assert len(flags) > 30 and not {f for f in flags if f"`{f}" not in serve}


def test_the_metrics_reference_names_every_metric_the_dashboard_and_alerts_query():
    page = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    listed = set(re.findall(r"`(lrcn_\w+)`", page))
    deploy = ROOT / "docs" / "deploy"
    queried = set(
        re.findall(
            r"\blrcn_[a-z_]+", (deploy / "grafana-dashboard.json").read_text() + (deploy / "alerts.yml").read_text()
        )
    )
    queried = {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried}
    assert len(queried) > 5 and queried <= listed, queried - listed
