"""The docs link checker: a page's relative links and #anchors (GitHub's heading ids) that point
nowhere. Used by test_docs.py and by the tests of pages outside the docs pages."""

import re
from pathlib import Path

from tests.paths import ROOT

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's id for a heading: markup dropped, lower case, punctuation gone, spaces to hyphens.

    >>> slug("Capture at HD: PyAV, only the sampled frames converted (issue 13)")
    'capture-at-hd-pyav-only-the-sampled-frames-converted-issue-13'
    >>> slug("Fault injection (`lrcn faults`)")
    'fault-injection-lrcn-faults'
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading id of ``page``, numbered as GitHub numbers repeats (-1, -2, ...)."""
    seen: dict[str, int] = {}
    ids = set()
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not fenced:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def links(page: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(page.read_text()) for m in LINK.finditer(line)]


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` that point nowhere, each with the reason (paths shown from ``root``)."""
    problems = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto: ...
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(
                f"{target}: no {destination.relative_to(root) if root in destination.parents else destination}"
            )
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading #{anchor} in {destination.relative_to(root)}")
    return problems
