"""Whether a connected stream is degraded: it delivers, but far fewer predictions than the
stream's sampling rate and hop ask for, or its head state resets in a loop (a relay that
stutters stays "connected" while nothing useful comes out of it).

Pure: the pipeline keeps a short history of each stream's counters and asks `assess` once a
second; a stream is degraded while it says so.

>>> rules = DegradedRules(window_s=10, warmup_s=5)
>>> history = [Sample(t, predictions=2 * t, resets=0) for t in range(0, 20)]   # 2/s
>>> assess(rules, history, connected_since=0.0, expected=10.0, now=19.0, degraded=False)
'2.0 predictions/s over 10 s, under 5.0 (of the 10/s its sampling rate and hop ask for)'
>>> assess(rules, history, connected_since=0.0, expected=4.0, now=19.0, degraded=False) is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lrcn.stream.errors import LrcnError
from lrcn.stream.settings import DEGRADED_SETTINGS, Settings, default


@dataclass(frozen=True)
class DegradedRules:
    """The thresholds: the top-level `degraded_*` settings of stream/settings.py, where they are
    explained and their defaults and ranges live."""

    window_s: float = default(Settings, "degraded_window_s")  # rates and resets are counted over this much
    warmup_s: float = default(Settings, "degraded_warmup_s")  # after connecting, the rate is not judged yet
    min_rate: float = default(Settings, "degraded_min_rate")  # degraded under this fraction of the expected rate ...
    recover_rate: float = default(Settings, "degraded_recover_rate")  # ... itself again at this one (no flapping)
    max_resets: int = default(Settings, "degraded_max_resets")  # head state resets within the window: a loop

    def __post_init__(self):
        if self.recover_rate < self.min_rate:
            raise LrcnError(
                f"degraded_recover_rate ({self.recover_rate:g}) must be at least degraded_min_rate "
                f"({self.min_rate:g}), or a stream at the bound flaps"
            )

    @classmethod
    def from_settings(cls, value: Callable[[str], Any]) -> DegradedRules:
        """The rules from `value(setting name)` of each DEGRADED_SETTINGS (a flag, the file or the default)."""
        return cls(**{name.removeprefix("degraded_"): value(name) for name in DEGRADED_SETTINGS})


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds
    predictions: int
    resets: int


def assess(
    rules: DegradedRules,
    history: Sequence[Sample],
    connected_since: float | None,
    expected: float,
    now: float,
    degraded: bool,
) -> str | None:
    """Why the stream is degraded now (one line), or None. `history`: oldest first, at least
    the last `window_s` of samples; `connected_since`: None while not connected; `expected`: the
    predictions per second the stream's sampling rate and hop ask for; `degraded`: what the last
    call said (recovery needs `recover_rate`)."""
    if connected_since is None or not history:
        return None
    recent = [s for s in history if s.t >= now - rules.window_s]
    if not recent:
        return None
    newest = recent[-1]
    before = [s for s in history if s.t <= now - rules.window_s]
    base = before[-1] if before else recent[0]
    resets = newest.resets - base.resets
    if resets >= rules.max_resets:
        return f"{resets} state resets in the last {rules.window_s:g} s"
    judged = [s for s in history if connected_since + rules.warmup_s <= s.t <= now - rules.window_s]
    if not judged:
        return None  # warming up, or not yet a window's worth of samples since
    rate = (newest.predictions - judged[-1].predictions) / max(1e-9, newest.t - judged[-1].t)
    bound = (rules.recover_rate if degraded else rules.min_rate) * expected
    if rate < bound:
        return (
            f"{rate:.1f} predictions/s over {newest.t - judged[-1].t:.0f} s, under {bound:.1f} "
            f"(of the {expected:g}/s its sampling rate and hop ask for)"
        )
    return None
