"""The checkout a docs generator works on: the nearest folder at or above the current directory
whose pyproject.toml names this project. Found from where the command runs, not from the module's
own file, so an installed copy (the wheel) writes into the checkout it is run in, or refuses."""

from __future__ import annotations

from pathlib import Path

PROJECT_LINE = 'name = "lrcn-stream"'


def find_checkout(start: Path | None = None) -> Path | None:
    """The checkout holding `start` (default: the current directory), or None when there is none.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     root = Path(folder)
    ...     _ = (root / "pyproject.toml").write_text('[project]\\nname = "lrcn-stream"\\n')
    ...     (root / "docs" / "schemas").mkdir(parents=True)
    ...     find_checkout(root / "docs" / "schemas") == root.resolve()
    True
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and PROJECT_LINE in project.read_text(encoding="utf-8").splitlines():
            return folder
    return None


def checkout_or_here() -> Path:
    """The checkout holding the current directory, else the current directory itself: where an
    evidence run runs `lrcn serve`, and the folder ../shared (the real data) lies beside."""
    return find_checkout() or Path.cwd().resolve()
