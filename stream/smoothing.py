"""Smoothing of the published label: what a viewer sees, never the raw probabilities.

EMA averages probabilities over predictions; hysteresis keeps the current label until another
class wins M predictions in a row (each by at least `margin` over the held label).
Both are pure: `smooth(config, state, probabilities) -> (state, label index, score)`.

>>> config = parse_smoothing("hysteresis:2")
>>> state = SmootherState()
>>> for p in ([0.9, 0.1], [0.2, 0.8], [0.3, 0.7]):
...     state, label, score = smooth(config, state, np.array(p))
...     print(label, score)
0 0.9
0 0.2
1 0.7
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrcn.stream.errors import LrcnError

EMA, HYSTERESIS = "ema", "hysteresis"


@dataclass(frozen=True)
class Smoothing:
    kind: str  # EMA or HYSTERESIS
    alpha: float = 0.5  # EMA: weight of the newest prediction
    consecutive: int = 3  # hysteresis: wins in a row needed to switch
    margin: float = 0.0  # hysteresis: a win must beat the held label by this much


@dataclass(frozen=True)
class SmootherState:
    average: np.ndarray | None = None  # EMA of the probabilities
    label: int | None = None  # hysteresis: the label published
    candidate: int | None = None  # hysteresis: the class trying to take over
    streak: int = 0  # hysteresis: its wins in a row


def parse_smoothing(text: str | None) -> Smoothing | None:
    """'ema:ALPHA', 'hysteresis:M' or 'hysteresis:M:MARGIN'; None or 'none' for no smoothing.

    >>> parse_smoothing("ema:0.3"), parse_smoothing("none")
    (Smoothing(kind='ema', alpha=0.3, consecutive=3, margin=0.0), None)
    """
    if text is None or text.strip().lower() in ("", "none"):
        return None
    kind, _, rest = text.strip().lower().partition(":")
    values = rest.split(":") if rest else []
    try:
        if kind == EMA and len(values) == 1 and 0 < float(values[0]) <= 1:
            return Smoothing(EMA, alpha=float(values[0]))
        if kind == HYSTERESIS and len(values) in (1, 2) and int(values[0]) >= 1:
            margin = float(values[1]) if len(values) == 2 else 0.0
            if 0 <= margin < 1:
                return Smoothing(HYSTERESIS, consecutive=int(values[0]), margin=margin)
    except ValueError:
        pass
    raise LrcnError(
        f"smoothing must be ema:ALPHA (0 < ALPHA <= 1), hysteresis:M or hysteresis:M:MARGIN "
        f"(M >= 1, 0 <= MARGIN < 1), or none; got {text!r}"
    )


def smooth(
    config: Smoothing | None, state: SmootherState, probabilities: np.ndarray
) -> tuple[SmootherState, int, float]:
    """The label (class index) and score to publish for these raw probabilities."""
    if config is None:
        best = int(np.argmax(probabilities))
        return state, best, float(probabilities[best])
    if config.kind == EMA:
        average = (
            probabilities
            if state.average is None
            else config.alpha * probabilities + (1 - config.alpha) * state.average
        )
        best = int(np.argmax(average))
        return SmootherState(average=average), best, float(average[best])
    winner = int(np.argmax(probabilities))
    held = state.label
    if held is None or winner == held:
        held = winner
        return SmootherState(label=held), held, float(probabilities[held])
    beats = probabilities[winner] - probabilities[held] >= config.margin
    streak = (state.streak + 1 if winner == state.candidate else 1) if beats else 0
    if streak >= config.consecutive:
        return SmootherState(label=winner), winner, float(probabilities[winner])
    return (
        SmootherState(label=held, candidate=winner if beats else None, streak=streak),
        held,
        float(probabilities[held]),
    )
