"""The event rules on prediction sequences: start after min_duration, end at the first window that
no longer shows the action, cooldown, watched and ignored classes, updates, the unknown label."""

import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.events import UNKNOWN, EventRules, EventState, Observation, finish, published_label, step


def run(rules, sequence, period_s=0.1):
    """Events from (label, score) pairs one period apart, then the stream's end."""
    state, sent = EventState(), []
    for n, (label, score) in enumerate(sequence):
        state, events = step(rules, state, Observation(label, score, round(n * period_s, 6), frame=n))
        sent += events
    state, events = finish(state)
    return sent + events


def segments(*parts):
    return [(label, score) for label, score, count in parts for _ in range(count)]


def test_each_segment_of_known_actions_gives_one_event_with_its_bounds():
    sequence = segments(("wave", 0.9, 10), ("walk", 0.8, 20), ("wave", 0.7, 5))
    events = run(EventRules(min_score=0.6, min_duration_s=0.3), sequence)
    assert [(e.type, e.label) for e in events] == [
        ("start", "wave"),
        ("end", "wave"),
        ("start", "walk"),
        ("end", "walk"),
        ("start", "wave"),
        ("end", "wave"),
    ]
    ends = [e for e in events if e.type == "end"]
    assert [(e.start_frame, e.end_frame) for e in ends] == [(0, 9), (10, 29), (30, 34)]
    assert ends[1].duration_s == pytest.approx(1.9) and ends[1].peak_score == 0.8
    assert ends[2].mean_score == pytest.approx(0.7)


def test_a_blip_shorter_than_min_duration_and_low_scores_give_no_event():
    sequence = segments(("still", 0.3, 30), ("wave", 0.9, 2), ("still", 0.4, 30))
    assert run(EventRules(min_score=0.6, min_duration_s=0.5), sequence) == []
    assert run(EventRules(min_score=0.95), segments(("wave", 0.9, 50))) == [], "a static scene below min_score"


def test_ignored_and_unwatched_classes_never_start_events():
    sequence = segments(("background", 0.99, 10), ("walk", 0.9, 10), ("wave", 0.9, 10))
    assert {e.label for e in run(EventRules(ignore=("background",)), sequence)} == {"walk", "wave"}
    assert {e.label for e in run(EventRules(classes=("wave",)), sequence)} == {"wave"}


def test_cooldown_keeps_a_flickering_action_to_one_event():
    sequence = segments(("wave", 0.9, 5), ("still", 0.2, 2), ("wave", 0.9, 5), ("still", 0.2, 20), ("wave", 0.9, 5))
    starts = lambda rules: [e.start_frame for e in run(rules, sequence) if e.type == "start"]  # noqa: E731
    assert starts(EventRules()) == [0, 7, 32]
    assert starts(EventRules(cooldown_s=1.0)) == [0, 32], "the return after 0.3 s is inside the cooldown"


def test_updates_come_every_update_s_while_the_event_lasts():
    events = run(EventRules(update_s=1.0), segments(("wave", 0.9, 35)))
    assert [e.type for e in events] == ["start", "update", "update", "update", "end"]


def test_below_min_score_the_published_label_is_unknown():
    rules = EventRules(min_score=0.6)
    assert published_label(rules, "wave", 0.59) == UNKNOWN and published_label(rules, "wave", 0.6) == "wave"
    assert published_label(None, "wave", 0.01) == "wave", "no rules: the label as the model gives it"


@pytest.mark.parametrize(
    "kwargs, complaint",
    [
        ({"min_score": 1.5}, "min_score"),
        ({"min_duration_s": -1}, "min_duration_s"),
        ({"update_s": 0}, "update_s"),
        ({"classes": ("wave",), "ignore": ("wave",)}, "overlap"),
    ],
)
def test_bad_rules_are_one_line_errors(kwargs, complaint):
    with pytest.raises(LrcnError, match=complaint):
        EventRules(**kwargs)
