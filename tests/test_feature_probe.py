import numpy as np

from lrcn.tools.evidence.feature_probe import probe


def test_pooled_change_finds_a_brief_action_that_the_mean_dilutes():
    """Mostly rest with a short class-specific burst, each group offset by its own appearance: the
    change from the first frames, max-pooled, separates held-out groups; the mean does not."""
    rng = np.random.default_rng(0)
    views, labels, groups = [], [], []
    for group in "abc":
        person = rng.normal(0, 1, 4)  # each group's own appearance, larger than the burst's share of the mean
        for label in range(2):
            for _ in range(4):
                frames = person + rng.normal(0, 0.1, (40, 4))
                start = rng.integers(5, 30)
                frames[start : start + 3, label] += 6.0
                views.append((frames, frames))
                labels.append(label)
                groups.append(group)
    result = probe(views, np.array(labels), groups, classes=2, l2=1e-1)
    assert sum(result["change_max"].values()) == 24
    assert sum(result["mean"].values()) <= 16
