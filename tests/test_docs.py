"""Every relative link in README.md, ARCHITECTURE.md and docs/**/*.md points at a file that exists, and every
#anchor at a heading of the page it names (GitHub's heading ids)."""

import re

import pytest

from tests.doc_links import broken, slug
from tests.paths import ROOT

PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_heading_ids_follow_github():
    assert (
        slug("Capture at HD: PyAV, only the sampled frames converted (issue 13)")
        == "capture-at-hd-pyav-only-the-sampled-frames-converted-issue-13"
    )
    assert slug("Fault injection (`lrcn faults`)") == "fault-injection-lrcn-faults"
    assert slug("Stepping every stream's head at once") == "stepping-every-streams-head-at-once"


def test_the_pages_are_there():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {
        "README.md",
        "ARCHITECTURE.md",
        "docs/guide/quickstart.md",
        "docs/guide/training.md",
        "docs/guide/export.md",
        "docs/guide/serving.md",
        "docs/guide/integrations.md",
        "docs/guide/python-api.md",
        "docs/guide/deployment.md",
        "docs/reference/settings.md",
        "docs/reference/cli.md",
        "docs/reference/messages.md",
        "docs/reference/metrics.md",
        "docs/evidence/results.md",
        "docs/evidence/performance.md",
        "docs/evidence/reliability.md",
    } <= names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    assert broken(page) == []


def test_the_checker_finds_a_broken_link_and_a_broken_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n\n## Two (words)\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#two-words) [self](#local) [gone](missing.md) [bad](a.md#three)\n"
        "`[in code](nowhere.md)`\n\n```\n[fenced](nowhere.md)\n```\n\n## Local\n"
    )
    assert broken(page, root=tmp_path.resolve()) == [
        "missing.md: no missing.md",
        "a.md#three: no heading #three in a.md",
    ]


def test_the_front_page_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_user_facing_pages_name_no_issue_numbers():
    user_facing = [p for p in PAGES if "evidence" not in p.relative_to(ROOT).parts]
    assert len(user_facing) >= 12
    assert [
        str(p.relative_to(ROOT)) for p in user_facing if re.search(r"\bissues? \d+|#[\w-]*issue-\d+", p.read_text())
    ] == []
