"""Real training runs on synthetic video, bundles on disk, and the CLI's one-line errors."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lrcn.models import synth  # noqa: E402
from lrcn.models.data import discover, split_by_groups  # noqa: E402
from lrcn.models.experiment import load_bundle, train_and_test  # noqa: E402
from lrcn.models.train import TrainConfig, train  # noqa: E402
from lrcn.stream.bundle import ModelSpec  # noqa: E402
from lrcn.stream.errors import LrcnError  # noqa: E402
from tests.paths import PRETRAINED, SHARED, needs_pretrained, needs_shared_data  # noqa: E402
from tests.cli import assert_one_line_error, lrcn  # noqa: E402


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth.write_dataset(root, videos_per_class=12, n_frames=32, size=64, seed=1, groups=4)
    return root


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    """A small LRCN trained on groups 01-03 (epochs chosen on one of them, then refit on all
    three) and tested on group 04."""
    out = tmp_path_factory.mktemp("bundle")
    dataset = discover(synthetic)
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["04"])
    spec = ModelSpec(
        classes=dataset.classes, backbone="small", input_size=(64, 64), clip_length=8, fps=10, lstm_units=64
    )
    config = TrainConfig(
        epochs=6,
        batch_size=8,
        learning_rate=1e-3,
        patience=6,
        clips_per_video=4,
        flip=False,
        cache_dir=str(out / "cache"),
        progress=False,
    )
    result = train_and_test(spec, train_videos, test_videos, out / "bundle", config)
    return out / "bundle", result, test_videos


@pytest.mark.slow
def test_training_writes_a_complete_bundle_with_provenance(trained):
    bundle, result, test_videos = trained
    assert result["videos"] == len(test_videos) == 21
    for name in (
        "model.keras",
        "meta.json",
        "curves.png",
        "evaluation/report.json",
        "evaluation/confusion.png",
        "selection/model.keras",
        "checkpoints/history.csv",
    ):
        assert (bundle / name).is_file(), name
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["model"]["classes"] == sorted(synth.CLASSES)
    assert meta["metrics"]["test"]["video_accuracy"] == result["video_accuracy"]
    training = meta["training"]
    assert training["test_groups"] == ["04"] and training["train_groups"] == ["01", "02", "03"]
    assert len(training["val_groups"]) == 1 and training["epochs_run"] == training["selection"]["best_epoch"]


@pytest.mark.slow
def test_short_training_on_rendered_motion_beats_chance_widely(tmp_path):
    """The small LRCN trained on freshly rendered clips, tested on written videos of an unseen group:
    only motion separates the classes, so this is the LSTM's work."""
    root = tmp_path / "synth"
    synth.write_dataset(root, videos_per_class=4, n_frames=24, size=32, seed=2, groups=2)
    dataset = discover(root)
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["02"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="small",
        input_size=(32, 32),
        clip_length=8,
        fps=10,
        lstm_units=128,
        feature_dropout=0.0,
        lstm_dropout=0.0,
    )
    config = TrainConfig(
        epochs=6,
        batch_size=16,
        learning_rate=1e-3,
        patience=6,
        synthetic_clips=1400,
        refit=False,
        cache_dir=None,
        progress=False,
    )
    result = train_and_test(spec, train_videos, test_videos, tmp_path / "bundle", config)
    assert result["videos"] == 14
    assert result["video_accuracy"] >= 0.6, result  # chance is 1/7


@pytest.mark.slow
@needs_shared_data
@needs_pretrained
def test_short_training_on_real_footage_beats_chance_widely(tmp_path):
    """Frozen ImageNet MobileNetV2 + LSTM on weizmann4: six subjects train, three unseen ones test."""
    dataset = discover(SHARED / "data" / "weizmann4")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["6", "7", "8"])
    spec = ModelSpec(
        classes=dataset.classes,
        backbone="mobilenet_v2",
        backbone_weights=str(PRETRAINED),
        trainable_layers=0,
        input_size=(112, 112),
        clip_length=8,
        fps=10,
        lstm_units=128,
    )
    config = TrainConfig(epochs=8, learning_rate=1e-3, refit=False, cache_dir=str(tmp_path / "cache"), progress=False)
    result = train_and_test(spec, train_videos, test_videos, tmp_path / "bundle", config)
    assert result["videos"] == 12
    assert result["video_accuracy"] >= 0.75, result  # chance is 0.25


@pytest.mark.slow
def test_bundle_round_trip_and_evaluate_command(trained, synthetic, tmp_path):
    bundle, result, _ = trained
    model, meta = load_bundle(bundle)
    assert meta.spec.clip_length == 8 and meta.feature_size == 8 * 8 * 32
    x = np.random.default_rng(0).random((1, 8, 64, 64, 3), dtype=np.float32)
    assert model(x).shape == (1, len(synth.CLASSES))
    run = lrcn("evaluate", bundle, synthetic, "--test-groups", "04", "--out", tmp_path / "eval", "--no-cache")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["video_accuracy"] == result["video_accuracy"]
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


@pytest.mark.slow
def test_resume_continues_the_history(synthetic, tmp_path):
    dataset = discover(synthetic)
    videos = [v for v in dataset.videos if v.group in ("01", "02")]
    spec = ModelSpec(classes=dataset.classes, input_size=(64, 64), clip_length=4, fps=5, lstm_units=16)
    config = TrainConfig(epochs=1, clips_per_video=1, flip=False, refit=False, cache_dir=None, progress=False)
    train_and_test(spec, videos, [], tmp_path, config)
    config.epochs = 2
    train_and_test(spec, videos, [], tmp_path, config, resume=True)
    history = (tmp_path / "checkpoints" / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1"]


def test_same_seed_same_weights(synthetic, tmp_path):
    dataset = discover(synthetic)
    videos = [v for v in dataset.videos if v.group in ("01", "02")]
    spec = ModelSpec(
        classes=dataset.classes, backbone="small", input_size=(64, 64), clip_length=4, fps=5, lstm_units=16
    )
    weights = []
    for run in ("a", "b", "c"):
        config = TrainConfig(epochs=1, clips_per_video=1, cache_dir=None, progress=False, seed=7 if run != "c" else 8)
        model, _ = train(spec, videos, [], tmp_path / run, config)
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, c) for a, c in zip(weights[0], weights[2]))


def test_corrupt_video_is_named_and_skipped(synthetic, tmp_path):
    data = tmp_path / "data"
    for folder in synthetic.iterdir():
        (data / folder.name).mkdir(parents=True)
        for video in sorted(folder.glob("*_g0[12]_*"))[:2]:
            (data / folder.name / video.name).symlink_to(video)
    (data / "still" / "v_still_g01_c99.avi").write_bytes(b"\x00garbage" * 500)
    run = lrcn(
        "train",
        data,
        "--out",
        tmp_path / "b",
        "--backbone",
        "small",
        "--size",
        "64",
        "--clip-length",
        "4",
        "--fps",
        "5",
        "--lstm-units",
        "8",
        "--epochs",
        "1",
        "--clips-per-video",
        "1",
        "--no-cache",
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    assert "v_still_g01_c99.avi" in run.stderr
    assert (tmp_path / "b" / "model.keras").is_file()


def test_bad_input_gives_one_line_errors(synthetic, tmp_path):
    assert_one_line_error(lrcn("train", tmp_path / "missing", "--out", tmp_path / "o"), "missing")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(lrcn("train", tmp_path / "empty", "--out", tmp_path / "o"), "no videos")
    bad_list = tmp_path / "test.txt"
    bad_list.write_text("still/v_still_g01_c01.avi\nskipping/v_skipping_g01_c01.avi\n")
    assert_one_line_error(
        lrcn("train", synthetic, "--out", tmp_path / "o", "--split-lists", bad_list, bad_list),
        "unknown class",
        "skipping",
    )
    assert_one_line_error(lrcn("train", synthetic, "--out", tmp_path / "o", "--test-groups", "99"), "99")
    assert_one_line_error(lrcn("evaluate", tmp_path / "nobundle", synthetic), "nobundle")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{}")
    assert_one_line_error(lrcn("evaluate", broken, synthetic), "meta.json")


def test_wrong_bundle_contents_are_one_line_errors(tmp_path):
    from lrcn.models.architectures import build_model
    from lrcn.models.train import save_bundle
    from lrcn.stream.bundle import BundleMeta

    spec = ModelSpec(classes=("a", "b", "c"), input_size=(48, 48), clip_length=4, lstm_units=8)
    save_bundle(build_model(spec), BundleMeta(spec=spec, feature_size=256), tmp_path / "ok")
    load_bundle(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "meta.json").read_text())
    for name, change in {"size": {"input_size": [64, 64]}, "classes": {"classes": ["a", "b"]}}.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.keras").write_bytes((tmp_path / "ok" / "model.keras").read_bytes())
        (folder / "meta.json").write_text(json.dumps({**meta, "model": {**meta["model"], **change}}))
        with pytest.raises(LrcnError) as err:
            load_bundle(folder)
        assert "\n" not in str(err.value)
    (tmp_path / "ok" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LrcnError, match="cannot load"):
        load_bundle(tmp_path / "ok")


def test_cli_pool_head_chooses_l2_on_the_validation_groups(synthetic, tmp_path):
    """`lrcn train --head pool --l2 A,B`: one model per penalty on the validation group, the
    best recorded in meta.json and used for the bundle, whose pooling is standardised."""
    data = tmp_path / "data"
    for folder in synthetic.iterdir():
        (data / folder.name).mkdir(parents=True)
        for video in sorted(folder.glob("*_g0[123]_*")):
            (data / folder.name / video.name).symlink_to(video)
    out = tmp_path / "b"
    run = lrcn(
        "train",
        data,
        "--out",
        out,
        "--backbone",
        "small",
        "--size",
        "32",
        "--clip-length",
        "4",
        "--fps",
        "5",
        "--head",
        "pool",
        "--l2",
        "0.001,0.5",
        "--epochs",
        "2",
        "--clips-per-video",
        "2",
        "--test-groups",
        "03",
        "--no-refit",
        "--no-cache",
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    assert "chosen on validation groups" in run.stderr
    meta = json.loads((out / "meta.json").read_text())
    selection = meta["training"]["l2_selection"]
    assert selection["chosen"] in (0.001, 0.5)
    assert set(selection["validation"]) == {"0.001", "0.5"}
    for video_accuracy, clip_accuracy in selection["validation"].values():
        assert 0 <= video_accuracy <= 1 and 0 <= clip_accuracy <= 1
    # The rule: best video accuracy, then clip accuracy, then the larger penalty.
    assert selection["chosen"] == max((0.001, 0.5), key=lambda l2: (*selection["validation"][f"{l2:g}"], l2))
    assert meta["model"]["head"] == "pool" and meta["model"]["l2"] == selection["chosen"]
    assert meta["training"]["val_groups"] and meta["training"]["test_groups"] == ["03"]
    assert meta["metrics"]["test"]["videos"] == 21
    for l2 in ("0.001", "0.5"):
        assert (out / "selection" / f"l2-{l2}" / "model.keras").is_file(), l2
    model, loaded = load_bundle(out)
    from lrcn.models.architectures import TemporalPooling

    (pooling,) = [layer for layer in model.layers if isinstance(layer, TemporalPooling)]
    center, inverse_scale = pooling.get_weights()
    assert np.abs(center).max() > 0 and np.abs(inverse_scale - 1).max() > 0  # standardised from training clips
    assert np.isclose(model.layers[-1].kernel_regularizer.get_config()["l2"], selection["chosen"])


def assert_one_line_usage_error(result, *words):
    """argparse's rejection: exit 2, its usage, then exactly one `lrcn train: error:` line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("lrcn train: error: argument --l2:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("value", ["abc", "-1", "10", "nan", "0.1,", "", "0.01,-0.5"])
def test_bad_l2_is_a_one_line_error(tmp_path, value):
    assert_one_line_usage_error(
        lrcn("train", tmp_path, "--out", tmp_path / "o", "--head", "pool", f"--l2={value}"), repr(value)
    )
    assert not (tmp_path / "o").exists()


def test_negative_l2_as_a_separate_argument_is_a_one_line_error(tmp_path):
    assert_one_line_usage_error(lrcn("train", tmp_path, "--out", tmp_path / "o", "--l2", "-1"), "[0, 10)", "'-1'")
    assert_one_line_usage_error(lrcn("train", tmp_path, "--out", tmp_path / "o", "--l2", "abc"), "numbers", "'abc'")
