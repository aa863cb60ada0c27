"""A stream's `record` settings as the recorder takes them, and the checks on its record dir."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.stream.settings import Record, check_values, default

GB = 10**9


@dataclass(frozen=True)
class RecordRules:
    """Where a stream's clips go and how much of them to keep: `max_gb` of clips in `dir`,
    none older than `retain_days` (None: no age limit), and at least `min_free_gb` left free on
    `dir`'s filesystem (retention deletes the oldest clips to keep it so)."""

    # Defaults and ranges are the settings schema's `record` table (stream.settings), declared there once.
    dir: Path
    pre_s: float = default(Record, "pre_s")
    post_s: float = default(Record, "post_s")
    max_clip_s: float = default(Record, "max_clip_s")
    max_gb: float = default(Record, "max_gb")
    retain_days: float | None = default(Record, "retain_days")
    min_free_gb: float = default(Record, "min_free_gb")

    def __post_init__(self):
        object.__setattr__(self, "dir", Path(self.dir))
        check_values(
            {
                name: getattr(self, name)
                for name in ("pre_s", "post_s", "max_clip_s", "max_gb", "retain_days", "min_free_gb")
                if getattr(self, name) is not None
            },
            Record,
            name=lambda key: f"record {key}",
        )

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * GB)

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_gb * GB)


def check_record_dir(path: str | os.PathLike) -> Path:
    """Create the record dir if needed and prove it writable; raise LrcnError with one line if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LrcnError(f"record dir {path} cannot be created: {reason(err)}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise LrcnError(f"record dir {path} is not writable: {reason(err)}") from None
    return path


def safe_label(label: str) -> str:
    """A label as it may appear in a file name.

    >>> safe_label("pick up/put down"), safe_label("..")
    ('pick-up-put-down', 'event')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.")[:64] or "event"


def reason(err: BaseException) -> str:
    """A failure as one line (an OSError with its file name)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    filename = getattr(err, "filename", None)
    if filename and getattr(err, "strerror", None):
        text = f"{text}: {filename}"
    return " ".join(str(text).split())
