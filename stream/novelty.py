"""The open-set guard: how far a window's features are from everything the model was trained on.

A softmax always names one of its classes, however foreign the scene. The novelty score of a
window compares its mean-pooled encoder features (the mean over its frames of what the
bundle's encoder gives per frame) with the training windows'. Three methods (METHODS):

- `knn`: the cosine distance to the k-th nearest training window after centring on the
  training mean (Sun et al., ICML 2022). No assumption on how features are distributed; on
  UCF101 footage, whose classes spread far, it separates foreign scenes much better than:
- `mahalanobis`: the distance to the nearest class mean under one shared, Ledoit-Wolf-shrunk
  covariance (Lee et al., NeurIPS 2018), which is the better one on a small, uniform set
  (weizmann4), where knn's threshold comes out loose.
- `combined` (the default): the larger of the two, each on the scale of its own validation
  scores, so that a window far from the training windows by either measure is foreign.

The threshold is a quantile of the scores of held-out validation windows: the share `target`
of those are over it. Everything is fitted from the bundle's own runtime encoder, so any
exported bundle can be guarded (`lrcn novelty fit`); the fit lives in the bundle as
novelty.npz. A bundle without one has no guard.

>>> rng = np.random.default_rng(0)
>>> a, b, foreign = np.eye(8)[0] * 4, np.eye(8)[1] * 4, np.eye(8)[6] * 4
>>> windows = np.concatenate([rng.normal(0, 1, (200, 8)) + a, rng.normal(0, 1, (200, 8)) + b])
>>> model = fit_novelty(windows, np.repeat([0, 1], 200), ("a", "b"), clip_length=16)
>>> validation = rng.normal(0, 1, (500, 8)) + a
>>> model = model.calibrated(model.part_scores(validation), target=0.05)
>>> model = with_threshold(model, model.score(validation), target=0.05)
>>> bool(model.score(a[None])[0] < model.threshold < model.score(foreign[None])[0])
True
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lrcn.stream.errors import LrcnError

NOVELTY_FILE = "novelty.npz"
OFF = "off"
DEFAULT_TARGET = 0.05  # share of held-out in-distribution windows over the threshold
Arrays = dict[str, np.ndarray]  # a method's fitted arrays, by name


@dataclass(frozen=True)
class NoveltyModel:
    """A fitted novelty method: its arrays, and the threshold over which a window is `unknown`."""

    method: str  # a key of METHODS
    classes: tuple[str, ...]
    arrays: Arrays  # the method's fitted arrays, as novelty.npz stores them
    clip_length: int  # the frames a window's mean is over
    threshold: float | None = None  # a window scoring over it is `unknown`; None: not chosen yet
    target: float | None = None  # the share of validation windows over the threshold it was chosen for

    @property
    def feature_size(self) -> int:
        return METHODS[self.method].feature_size(self.arrays)

    def score(self, window_features: np.ndarray) -> np.ndarray:
        """[N, F] mean window features -> [N] novelty scores (higher: less like the training windows)."""
        return self.combine(self.part_scores(window_features))

    def part_scores(self, window_features: np.ndarray) -> np.ndarray:
        """[N, F] -> [N, P]: the raw score of each of the method's P parts (one for a plain method)."""
        return METHODS[self.method].part_scores(self.arrays, np.asarray(window_features, np.float32))

    def combine(self, part_scores: np.ndarray) -> np.ndarray:
        """[N, P] part scores -> [N] novelty scores."""
        return METHODS[self.method].combine(self.arrays, np.asarray(part_scores, np.float64))

    def calibrated(self, validation_part_scores: np.ndarray, target: float) -> NoveltyModel:
        """The model with its parts put on one scale by their scores on validation windows."""
        check_target(target)
        arrays = METHODS[self.method].calibrate(self.arrays, np.asarray(validation_part_scores, np.float64), target)
        return replace(self, arrays=arrays)

    def summary(self) -> dict[str, Any]:
        """What meta.json records about the guard."""
        details = METHODS[self.method].describe(self.arrays)
        return {
            "file": NOVELTY_FILE,
            "method": self.method,
            "threshold": _rounded(self.threshold),
            "target": self.target,
            "clip_length": self.clip_length,
            **details,
        }


class NoveltyMethod(Protocol):
    """What METHODS holds: a class whose static and class methods fit and use its arrays."""

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int) -> Arrays: ...

    def part_scores(self, arrays: Arrays, x: np.ndarray) -> np.ndarray: ...

    def combine(self, arrays: Arrays, part_scores: np.ndarray) -> np.ndarray: ...

    def calibrate(self, arrays: Arrays, validation_part_scores: np.ndarray, target: float) -> Arrays: ...

    def feature_size(self, arrays: Arrays) -> int: ...

    def describe(self, arrays: Arrays) -> dict[str, Any]: ...


class Method:
    """Every method gives fit, feature_size and describe. A plain method is one part and gives
    score, which these defaults make its only part; a method of several parts (Combined) gives
    its own part_scores, combine and calibrate instead."""

    @staticmethod
    def score(arrays: Arrays, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a plain method gives its score")

    @classmethod
    def part_scores(cls, arrays: Arrays, x: np.ndarray) -> np.ndarray:
        return cls.score(arrays, x)[:, None]

    @staticmethod
    def combine(arrays: Arrays, part_scores: np.ndarray) -> np.ndarray:
        return part_scores[:, 0]

    @staticmethod
    def calibrate(arrays: Arrays, validation_part_scores: np.ndarray, target: float) -> Arrays:
        return arrays


class NearestNeighbours(Method):
    """Cosine distance to the k-th nearest training window, after centring on the training mean
    (Sun, Ming, Zhu, Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022:
    normalised features, k-th neighbour distance, no assumption on their distribution). The
    bank holds every training window given (float16 in the file)."""

    k = 5

    @staticmethod
    def fit(x: np.ndarray, labels: np.ndarray, classes: int) -> Arrays:
        center = x.mean(0)
        return {
            "center": center.astype(np.float32),
            "bank": _unit(x - center).astype(np.float32),
            "k": np.array(min(NearestNeighbours.k, len(x))),
        }

    @staticmethod
    def score(arrays: Arrays, x: np.ndarray) -> np.ndarray:
        bank, k = arrays["bank"], int(arrays["k"])
        queries, scores = _unit(x - arrays["center"]), []
        for start in range(0, len(queries), 1024):
            similarity = queries[start : start + 1024] @ bank.T
            kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1]
            scores.append(1.0 - kth)
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    @staticmethod
    def feature_size(arrays: Arrays) -> int:
        return arrays["center"].shape[0]

    @staticmethod
    def describe(arrays: Arrays) -> dict[str, Any]:
        return {"k": int(arrays["k"]), "bank_windows": int(arrays["bank"].shape[0])}


class Mahalanobis(Method):
    """Mahalanobis distance to the nearest class mean with one covariance shared by all classes
    (Lee, Lee, Lee, Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
    and Adversarial Attacks", NeurIPS 2018), shrunk towards a scaled identity by the Ledoit-Wolf
    rule (J. Multivariate Analysis 2004). Stored as whitened class means and the whitening W
    (W W' = S^-1): score(x) = min_c |x W - means_c|."""

    @staticmethod
    def fit(x: np.ndarray, labels: np.ndarray, classes: int) -> Arrays:
        x = np.asarray(x, np.float64)
        means = np.stack([x[labels == c].mean(0) for c in range(classes)])
        covariance, shrinkage = ledoit_wolf(x - means[labels])
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        whitening = eigenvectors / np.sqrt(np.maximum(eigenvalues, 1e-12 * eigenvalues.max()))
        return {
            "means": (means @ whitening).astype(np.float32),
            "whitening": whitening.astype(np.float32),
            "shrinkage": np.array(shrinkage),
        }

    @staticmethod
    def score(arrays: Arrays, x: np.ndarray) -> np.ndarray:
        z = (x @ arrays["whitening"]).astype(np.float64)
        means = arrays["means"].astype(np.float64)
        squared = (z * z).sum(1)[:, None] - 2 * z @ means.T + (means * means).sum(1)[None]
        return np.sqrt(np.maximum(squared.min(1), 0.0))

    @staticmethod
    def feature_size(arrays: Arrays) -> int:
        return arrays["whitening"].shape[0]

    @staticmethod
    def describe(arrays: Arrays) -> dict[str, Any]:
        return {"shrinkage": round(float(arrays["shrinkage"]), 6)}


class Combined:
    """The larger of the knn and Mahalanobis scores, each first put on one scale by its own scores
    on validation windows: their median maps to 0 and the quantile that the share `target` of them
    exceed maps to 1. The two fail on different training sets (results.md, Open set): Mahalanobis
    where the classes spread far (UCF101), knn's threshold where there are few groups to validate
    on (weizmann4's six subjects); a window far from the training windows by either measure is
    foreign. Until calibrated, both scales are 1."""

    PARTS: dict[str, type[NearestNeighbours] | type[Mahalanobis]] = {
        "knn": NearestNeighbours,
        "mahalanobis": Mahalanobis,
    }

    @staticmethod
    def fit(x: np.ndarray, labels: np.ndarray, classes: int) -> Arrays:
        arrays = {
            f"{name}__{key}": value
            for name, part in Combined.PARTS.items()
            for key, value in part.fit(x, labels, classes).items()
        }
        return {**arrays, "offset": np.zeros(len(Combined.PARTS)), "scale": np.ones(len(Combined.PARTS))}

    @staticmethod
    def part_scores(arrays: Arrays, x: np.ndarray) -> np.ndarray:
        return np.stack([part.score(Combined._part(arrays, name), x) for name, part in Combined.PARTS.items()], axis=1)

    @staticmethod
    def combine(arrays: Arrays, part_scores: np.ndarray) -> np.ndarray:
        return ((part_scores - arrays["offset"]) / arrays["scale"]).max(axis=1)

    @staticmethod
    def calibrate(arrays: Arrays, validation_part_scores: np.ndarray, target: float) -> Arrays:
        median = np.median(validation_part_scores, axis=0)
        high = np.quantile(validation_part_scores, 1 - target, axis=0)
        return {**arrays, "offset": median, "scale": np.maximum(high - median, 1e-12)}

    @staticmethod
    def feature_size(arrays: Arrays) -> int:
        return NearestNeighbours.feature_size(Combined._part(arrays, "knn"))

    @staticmethod
    def describe(arrays: Arrays) -> dict[str, Any]:
        return {
            **{name: part.describe(Combined._part(arrays, name)) for name, part in Combined.PARTS.items()},
            "offset": [round(float(v), 6) for v in arrays["offset"]],
            "scale": [round(float(v), 6) for v in arrays["scale"]],
        }

    @staticmethod
    def _part(arrays: Arrays, name: str) -> Arrays:
        prefix = f"{name}__"
        return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}


METHODS: dict[str, NoveltyMethod] = {"knn": NearestNeighbours, "mahalanobis": Mahalanobis, "combined": Combined}
DEFAULT_METHOD = "combined"
HALF_IN_FILE = ("bank",)  # arrays stored in float16: the knn bank is the bulk of the file


def window_means(features: np.ndarray, clip_length: int, hop: int = 1) -> np.ndarray:
    """The mean of every `clip_length`-frame window of one video's [N, F] frame features, windows
    `hop` frames apart: [W, F] (none when N < clip_length).

    >>> window_means(np.arange(5.0)[:, None], clip_length=2, hop=2)[:, 0].tolist()
    [0.5, 2.5]
    """
    features = np.asarray(features, np.float64)
    if len(features) < clip_length:
        return np.zeros((0, features.shape[1]), np.float32)
    sums = np.concatenate([np.zeros((1, features.shape[1])), np.cumsum(features, axis=0)])
    starts = np.arange(0, len(features) - clip_length + 1, hop)
    return ((sums[starts + clip_length] - sums[starts]) / clip_length).astype(np.float32)


def ledoit_wolf(residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage) of centred rows [N, F], as sklearn's `ledoit_wolf`."""
    x = np.asarray(residuals, np.float64)
    n, p = x.shape
    covariance = x.T @ x / n
    mu = np.trace(covariance) / p
    # sum((x*x)' (x*x)) is the sum over rows of |row|^4: O(n p), not O(n p^2).
    beta = (((x * x).sum(1) ** 2).sum() / n - (covariance**2).sum()) / (p * n)
    delta = ((covariance - mu * np.eye(p)) ** 2).sum() / p
    shrinkage = 0.0 if delta == 0 else float(min(beta, delta) / delta)
    return (1 - shrinkage) * covariance + shrinkage * mu * np.eye(p), shrinkage


def fit_novelty(
    window_features: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    clip_length: int,
    method: str = DEFAULT_METHOD,
) -> NoveltyModel:
    """A method fitted on training windows [N, F] with class indices [N]."""
    x, labels = np.asarray(window_features, np.float32), np.asarray(labels)
    missing = [name for c, name in enumerate(classes) if not (labels == c).any()]
    if missing:
        raise LrcnError(f"novelty: no training window of class(es) {', '.join(missing)}")
    if method not in METHODS:
        raise LrcnError(f"unknown novelty method {method!r}: one of {', '.join(METHODS)}")
    return NoveltyModel(method, tuple(classes), METHODS[method].fit(x, labels, len(classes)), int(clip_length))


def with_threshold(model: NoveltyModel, validation_scores: np.ndarray, target: float = DEFAULT_TARGET) -> NoveltyModel:
    """The model with the threshold over which the share `target` of validation scores lie."""
    scores = np.asarray(validation_scores, np.float64)
    check_target(target)
    if len(scores) == 0:
        raise LrcnError("novelty: no validation window to choose a threshold on")
    return replace(model, threshold=float(np.quantile(scores, 1 - target, method="higher")), target=target)


def check_target(target: float) -> None:
    if not 0 < target < 1:
        raise LrcnError(f"novelty target must be between 0 and 1, got {target}")


def save_novelty(model: NoveltyModel, bundle_dir: str | Path) -> Path:
    path = Path(bundle_dir) / NOVELTY_FILE
    fields: dict[str, np.ndarray] = {
        "method": np.array(model.method),
        "classes": np.array(model.classes),
        "clip_length": np.array(model.clip_length),
        "threshold": np.array(np.nan if model.threshold is None else model.threshold),
        "target": np.array(np.nan if model.target is None else model.target),
    }
    arrays: dict[str, Any] = {
        **fields,
        **{
            f"array_{name}": array.astype(np.float16) if name.split("__")[-1] in HALF_IN_FILE else array
            for name, array in model.arrays.items()
        },
    }
    np.savez(path, **arrays)
    return path


def load_novelty(bundle_dir: str | Path) -> NoveltyModel | None:
    """The bundle's novelty.npz, None when it has none; a damaged one is one LrcnError line."""
    path = Path(bundle_dir) / NOVELTY_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            method = str(data["method"])
            model = NoveltyModel(
                method,
                tuple(str(c) for c in data["classes"]),
                {name[len("array_") :]: _in_memory(data[name]) for name in data.files if name.startswith("array_")},
                int(data["clip_length"]),
                _optional(data["threshold"]),
                _optional(data["target"]),
            )
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as err:
        raise LrcnError(f"{path}: not a novelty file ({type(err).__name__}: {err})") from None
    if method not in METHODS:
        raise LrcnError(f"{path}: novelty method {method!r}, this lrcn-stream knows {', '.join(METHODS)}")
    try:
        model.score(np.zeros((1, model.feature_size), np.float32))
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise LrcnError(
            f"{path}: arrays missing or of the wrong shape for {method} ({type(err).__name__}: {err})"
        ) from None
    return model


def check_novelty(model: NoveltyModel, classes: tuple[str, ...], feature_size: int, path: Path) -> None:
    """The guard must belong to the bundle: its classes and feature size."""
    if tuple(model.classes) != tuple(classes) or model.feature_size != feature_size:
        raise LrcnError(
            f"bundle {path}: {NOVELTY_FILE} was fitted for other classes or features "
            f"({len(model.classes)} classes, {model.feature_size} features; the bundle has "
            f"{len(classes)}, {feature_size}): run `lrcn novelty fit` again"
        )


def parse_novelty(value: str | float | int | None) -> str | float | None:
    """A stream's novelty setting: None (the bundle's threshold), 'off', or a threshold.

    >>> parse_novelty("off"), parse_novelty("12.5"), parse_novelty(None)
    ('off', 12.5, None)
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == OFF:
        return OFF
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if isinstance(value, bool) or not threshold > 0 or threshold == float("inf"):
        raise LrcnError(f"novelty must be 'off' or a positive threshold (a distance), got {value!r}")
    return threshold


def stream_threshold(setting: str | float | None, model: NoveltyModel | None, stream: str) -> float | None:
    """The threshold a stream uses: its own, the bundle's, or None (no guard)."""
    setting = parse_novelty(setting)
    if setting == OFF:
        return None
    if model is None:
        if setting is None:
            return None
        raise LrcnError(
            f"stream {stream}: a novelty threshold needs a bundle with {NOVELTY_FILE} "
            f"(run `lrcn novelty fit BUNDLE DATA`)"
        )
    return model.threshold if setting is None else float(setting)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _in_memory(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _optional(value: np.ndarray) -> float | None:
    number = float(value)
    return None if np.isnan(number) else number


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
