"""The flow encoder trained on flow (models.flow_encoder): candidates fitted as field classifiers on the
training groups, one kept by validation accuracy, then frozen under the temporal head; its features
cached under its own weights. Synthetic moving videos at 64 px, so CI trains real CNNs on real DIS flow."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lrcn.models.data import group_holdout  # noqa: E402
from lrcn.models.features import FeatureCache  # noqa: E402
from lrcn.models.flow_encoder import FLOW_ENCODERS, choose_flow_encoder, flow_candidates  # noqa: E402
from lrcn.models.joint import build_encoder  # noqa: E402
from lrcn.models.modalities import encoder_spec  # noqa: E402
from lrcn.stream.bundle import ModelSpec  # noqa: E402
from lrcn.stream.errors import LrcnError  # noqa: E402
from lrcn.stream.video import read_motion  # noqa: E402
from tests.bundles import TINY  # noqa: E402


def fields_reader(spec):
    return lambda path: read_motion(path, spec.input_size, spec.fps)[0]


def test_each_candidate_is_fitted_on_flow_and_the_best_on_validation_is_kept_frozen(moving):
    root, dataset, train_videos, _ = moving
    spec = ModelSpec(classes=dataset.classes, modalities=("rgb", "flow"), **TINY)
    fit_videos, val_videos = group_holdout(train_videos, 0.3, 0)
    chosen_spec, encoder, record = choose_flow_encoder(
        spec, ("frozen", "scratch"), fit_videos, val_videos, fields_reader(spec), seed=0
    )
    candidates = record["candidates"]
    assert set(candidates) == {"frozen", "scratch"}
    best = max(
        candidates,
        key=lambda n: (
            candidates[n]["val_video_accuracy"],
            candidates[n]["val_field_accuracy"],
            -FLOW_ENCODERS.index(n),
        ),
    )
    assert record["chosen"] == best
    # trained from scratch on real DIS fields of moving shapes, a single field names the action above chance
    chance = 1 / len(dataset.classes)
    assert candidates["scratch"]["val_field_accuracy"] > chance + 0.15, candidates["scratch"]
    assert candidates["scratch"]["history"][0]["phase"] == "encoder"
    assert [h["phase"] for h in candidates["frozen"]["history"]] == ["probe"] * len(candidates["frozen"]["history"])
    assert chosen_spec.flow_trained == (best == "scratch")
    assert chosen_spec.flow_backbone == ("small" if best == "scratch" else None)
    assert not encoder.trainable and encoder.output_shape[-1] == build_encoder(chosen_spec, "flow").output_shape[-1]


def test_candidates_unknown_or_tuned_without_imagenet_weights_are_one_line_errors():
    spec = ModelSpec(classes=("a", "b"), modalities=("flow",), **TINY)
    with pytest.raises(LrcnError, match="is not one of frozen, tuned, scratch"):
        flow_candidates(spec, ("sparse",))
    with pytest.raises(LrcnError, match="--weights"):
        flow_candidates(spec, ("tuned",))
    with pytest.raises(LrcnError, match="needs the flow modality"):
        ModelSpec(classes=("a", "b"), flow_trained=True)
    assert not ModelSpec(classes=("a", "b"), modalities=("flow",), flow_trained=False).to_json().get("flow_trained")


def test_a_trained_encoders_features_are_cached_under_its_own_weights(moving, tmp_path):
    """Two encoders of one spec with different weights never share cached features; the same weights do."""
    spec = ModelSpec(classes=("a", "b"), modalities=("flow",), flow_backbone="small", flow_trained=True, **TINY)
    flow_spec = encoder_spec(spec, "flow")
    first, second = build_encoder(spec, "flow"), build_encoder(spec, "flow")
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    caches = [FeatureCache(tmp_path, flow_spec, encoder, "flow", trained=True) for encoder in (first, second)]
    assert caches[0].identity != caches[1].identity
    again = build_encoder(spec, "flow")
    again.set_weights(first.get_weights())
    assert FeatureCache(tmp_path, flow_spec, again, "flow", trained=True).identity == caches[0].identity
    video = moving[2][0].path
    fields = fields_reader(spec)(video)
    cached = caches[0].features(video, fields)
    assert caches[0].file(video, "plain").is_file() and caches[1].cached(video, "plain") is None
    assert np.array_equal(caches[0].cached(video, "plain"), cached)
