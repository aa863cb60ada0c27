"""Events: a stream's predictions turned into actions with a start and an end. Pure functions.

Per stream, `EventRules` say what counts: a label scored at least `min_score`, among `classes`
(all, if empty), not in `ignore` and not `unknown` (the open-set guard's verdict) or `idle` (nothing
moves: the stream's idle gate, or the model's own `idle` class), held for `min_duration_s` of stream time starts an event;
the first prediction that no longer shows it ends the event; the same label cannot start again
until `cooldown_s` after its end. `step` takes the stream's `EventState` and one prediction and
returns the new state and the action events to send: `ActionEvent` records (stream.message_schema)
with `type` "start", "update" (every `update_s`, if set) or "end". An event's `id` is the `event_id` of the prediction that opened it:
the shell draws one per prediction (`new_event_id`), so `step` stays pure; start, updates and end
carry the same id.

>>> rules = EventRules(min_score=0.6, min_duration_s=0.2)
>>> state, sent = EventState(), []
>>> for t, label, score in [(0.0, "wave", 0.9), (0.1, "wave", 0.8), (0.2, "wave", 0.7), (0.3, "walk", 0.9)]:
...     state, events = step(rules, state, Observation(label, score, t, frame=int(t * 10), event_id=f"e{t}"))
...     sent += events
>>> [(e.type, e.id, e.label, e.start_time) for e in sent]
[('start', 'e0.0', 'wave', 0.0), ('end', 'e0.0', 'wave', 0.0)]
>>> sent[1].duration_s, sent[1].peak_score, sent[1].mean_score
(0.2, 0.9, 0.8)
"""

from __future__ import annotations

import re  # noqa: F401 - new_event_id's doctest matches its pattern
import secrets
from dataclasses import dataclass, field, replace
from typing import Literal

from lrcn.stream.errors import LrcnError
from lrcn.stream.message_schema import ActionEvent

UNKNOWN = "unknown"
IDLE = "idle"
EVENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}\Z"  # safe in a URL path and a file name


def new_event_id(wall_time: float) -> str:
    """A fresh event id: the event's wall time in ms and 32 random bits, unique per recognizer
    across restarts without any state (stream ids may hold characters an id must not).

    >>> bool(re.match(EVENT_ID_PATTERN, new_event_id(1700000000.5))), new_event_id(1700000000.5)[:14]
    (True, '1700000000500-')
    """
    return f"{int(wall_time * 1000)}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class EventRules:
    min_score: float = 0.5
    min_duration_s: float = 0.0  # stream time a label must hold before its event starts
    cooldown_s: float = 0.0  # after an event ends, its label cannot start another this long
    classes: tuple[str, ...] = ()  # labels to watch; empty: all
    ignore: tuple[str, ...] = ()  # labels never to report (a background class)
    update_s: float | None = None  # send an update every this many seconds of an event; None: never

    def __post_init__(self):
        if not 0.0 <= self.min_score <= 1.0:
            raise LrcnError(f"min_score must be in [0, 1], got {self.min_score}")
        for name in ("min_duration_s", "cooldown_s"):
            if getattr(self, name) < 0:
                raise LrcnError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.update_s is not None and not self.update_s > 0:
            raise LrcnError(f"update_s must be positive, got {self.update_s}")
        overlap = set(self.classes) & set(self.ignore)
        if overlap:
            raise LrcnError(f"classes to watch and to ignore overlap: {', '.join(sorted(overlap))}")

    def watched(self, label: str, score: float) -> bool:
        return (
            label not in (UNKNOWN, IDLE)
            and score >= self.min_score
            and label not in self.ignore
            and (not self.classes or label in self.classes)
        )


@dataclass(frozen=True)
class Observation:
    """One prediction, as events see it."""

    label: str
    score: float
    time: float  # stream time of the window's last frame, seconds
    frame: int  # its frame index
    event_id: str = ""  # the id an event opened by this prediction gets (the shell draws it)


@dataclass(frozen=True)
class _Open:
    """A label being watched: a candidate until it has held long enough, then an event."""

    id: str
    label: str
    start_time: float
    start_frame: int
    last_time: float
    last_frame: int
    peak: float
    total: float
    count: int
    started: bool = False
    next_update: float | None = None


@dataclass(frozen=True)
class EventState:
    open: _Open | None = None
    cooldown_until: dict[str, float] = field(default_factory=dict)  # label -> stream time


def published_label(rules: EventRules | None, label: str, score: float, novel: bool = False, idle: bool = False) -> str:
    """The label to publish: `idle` for a window where nothing moves (the stream's idle gate),
    or that the model itself calls `idle` (a bundle trained with stills) at a score over the
    threshold, open-set guard or not: a still is no action, foreign or known; else `unknown`
    below the threshold, or for a window the open-set guard finds novel (stream.novelty); the
    probabilities stay as they are. None of the three starts or holds an event.

    >>> published_label(EventRules(min_score=0.6), "wave", 0.9), published_label(None, "wave", 0.9, novel=True)
    ('wave', 'unknown')
    >>> published_label(None, "wave", 0.9, novel=True, idle=True), published_label(None, "idle", 0.9, novel=True)
    ('idle', 'idle')
    >>> published_label(EventRules(min_score=0.6), "idle", 0.5)
    'unknown'
    """
    if idle:
        return IDLE
    if rules is not None and score < rules.min_score:
        return UNKNOWN
    return label if label == IDLE or not novel else UNKNOWN


def step(rules: EventRules, state: EventState, seen: Observation) -> tuple[EventState, list[ActionEvent]]:
    events: list[ActionEvent] = []
    current = state.open
    holds = rules.watched(seen.label, seen.score)
    if current is not None and holds and seen.label == current.label:
        current = replace(
            current,
            last_time=seen.time,
            last_frame=seen.frame,
            peak=max(current.peak, seen.score),
            total=current.total + seen.score,
            count=current.count + 1,
        )
        if not current.started and seen.time - current.start_time >= rules.min_duration_s:
            current = replace(current, started=True, next_update=_next_update(rules, seen.time))
            events.append(_start(current, seen.score))
        elif current.started and current.next_update is not None and seen.time >= current.next_update:
            events.append(_summary(current, "update", score=seen.score))
            current = replace(current, next_update=_next_update(rules, seen.time))
        return replace(state, open=current), events
    cooldown = dict(state.cooldown_until)
    if current is not None and current.started:
        events.append(_summary(current, "end"))
        if rules.cooldown_s:
            cooldown[current.label] = current.last_time + rules.cooldown_s
    opened = None
    if holds and seen.time >= cooldown.get(seen.label, float("-inf")):
        opened = _Open(
            seen.event_id, seen.label, seen.time, seen.frame, seen.time, seen.frame, seen.score, seen.score, 1
        )
        if rules.min_duration_s == 0:
            opened = replace(opened, started=True, next_update=_next_update(rules, seen.time))
            events.append(_start(opened, seen.score))
    return EventState(opened, cooldown), events


def finish(state: EventState) -> tuple[EventState, list[ActionEvent]]:
    """End the open event (the stream stopped, or has a gap); its end is the last frame seen."""
    current = state.open
    if current is None or not current.started:
        return replace(state, open=None), []
    return replace(state, open=None), [_summary(current, "end")]


def _next_update(rules: EventRules, now: float) -> float | None:
    return None if rules.update_s is None else now + rules.update_s


def _start(event: _Open, score: float) -> ActionEvent:
    """`score`: of the prediction that started it."""
    return ActionEvent(
        type="start",
        id=event.id,
        label=event.label,
        start_frame=event.start_frame,
        start_time=event.start_time,
        score=score,
    )


def _summary(event: _Open, kind: Literal["update", "end"], score: float | None = None) -> ActionEvent:
    return ActionEvent(
        type=kind,
        id=event.id,
        label=event.label,
        start_frame=event.start_frame,
        start_time=event.start_time,
        score=score,
        end_frame=event.last_frame,
        end_time=event.last_time,
        duration_s=round(event.last_time - event.start_time, 6),
        peak_score=event.peak,
        mean_score=round(event.total / event.count, 6),
    )
