"""The open-set guard (stream.novelty, `lrcn novelty`, the pipeline's `unknown`): fitted on real
encoder features of synthetic videos, served on real files, with bad inputs as one line."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.novelty import NOVELTY_FILE, load_novelty, parse_novelty, window_means
from lrcn.stream.publisher import Subscriber
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.tools.cli.commands import main
from tests.bundles import SEED_SPEC_ARGS
from tests.paths import SHARED, needs_shared_data
from tests.live_servers import free_port
from tests.receivers import receive_until

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
SYNTH_CLASSES = ("still", "move_left", "grow")  # stand in for the seed bundle's three classes


@pytest.fixture(scope="module")
def guarded(exported_seed, tmp_path_factory):
    """(bundle with novelty.npz, its data, a held-out video of its own, a foreign video): a copy of
    the seed bundle, fitted by `lrcn novelty fit` on synthetic videos of three classes. The seed
    CNN is untrained, so its features carry little meaning beyond their scale: the Mahalanobis
    method separates its windows here, the cosine kNN needs a trained encoder's
    features (test_knn_on_imagenet_features_tells_foreign_footage_apart)."""
    from lrcn.models import synth

    bundle, _, _ = exported_seed
    root = tmp_path_factory.mktemp("novelty")
    copy = root / "bundle"
    shutil.copytree(bundle, copy)
    written = synth.write_dataset(root / "synth", videos_per_class=4, n_frames=40, size=64, seed=5, groups=4)
    data = root / "data"
    for name, synth_class in zip(SEED_SPEC_ARGS["classes"], SYNTH_CLASSES):
        shutil.copytree(root / "synth" / synth_class, data / name)
    foreign = root / "foreign.avi"  # a scene of another world: bright noise, no shape
    import cv2

    writer = synth.open_writer(foreign, 25.0, 64)
    rng = np.random.default_rng(1)
    for _ in range(40):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (5, 5), 0))
    writer.release()
    assert written
    assert (
        main(
            [
                "novelty",
                "fit",
                str(copy),
                str(data),
                "--test-groups",
                "04",
                "--val-groups",
                "03",
                "--method",
                "mahalanobis",
                "--hop",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    held_out = sorted((data / SEED_SPEC_ARGS["classes"][0]).glob("*_g04_*.avi"))[0]
    return copy, data, held_out, foreign


def window_scores(bundle: Path, video: Path) -> np.ndarray:
    from lrcn.stream.video import read_frames

    runtime = load_runtime_bundle(bundle)
    spec = runtime.meta.spec
    features = runtime.encoder.encode(read_frames(video, spec.input_size, spec.fps))
    return runtime.novelty.score(window_means(features, spec.clip_length))


def test_fit_writes_novelty_npz_and_records_it_in_meta(guarded):
    bundle, _, _, _ = guarded
    model = load_novelty(bundle)
    meta = load_runtime_bundle(bundle).meta
    assert model.classes == SEED_SPEC_ARGS["classes"] and model.threshold > 0 and model.method == "mahalanobis"
    recorded = meta.metrics["novelty"]
    assert recorded["file"] == NOVELTY_FILE and recorded["validation_folds"] == [["03"]]
    assert "04" not in recorded["fit_groups"] and recorded["threshold"] == round(model.threshold, 4)


def test_a_held_out_window_of_a_known_class_scores_below_a_foreign_one(guarded):
    bundle, _, held_out, foreign = guarded
    own, other = window_scores(bundle, held_out), window_scores(bundle, foreign)
    threshold = load_novelty(bundle).threshold
    assert np.median(own) < threshold < np.median(other), (own, other, threshold)
    assert own.mean() < other.min()


@pytest.mark.slow
@needs_shared_data
@pytest.mark.timeout(400)  # an export and three fits; 120 s is not enough on a loaded 2-core machine
def test_on_imagenet_features_foreign_footage_scores_above_held_out_subjects(tmp_path):
    """Every method on a frozen ImageNet MobileNetV2 (64x64, the project's pretrained weights),
    fitted by `lrcn novelty fit` on weizmann4 subjects 0-4: held-out subject 8's windows score
    below UCF101 and PS7 footage, and stay under the threshold. On so few subjects the threshold
    from held-out folds is loose (docs/evidence/results.md, Open set), so where foreign windows fall
    against it is measured there, not asserted here."""
    pytest.importorskip("tensorflow")
    from lrcn.models.export import export_bundle
    from lrcn.models.seed_bundle import untrained_bundle
    from lrcn.stream.bundle import ModelSpec
    from lrcn.stream.video import read_frames

    data = SHARED / "data"
    spec = ModelSpec(
        classes=("bend", "jumping_jack", "wave_one_hand", "wave_two_hands"),
        backbone="mobilenet_v2",
        input_size=(64, 64),
        clip_length=8,
        head="pool",
        trainable_layers=0,
        backbone_weights=str(SHARED / "pretrained" / "mobilenet_v2_1.0_imagenet_notop.weights.h5"),
    )
    bundle = untrained_bundle(spec, tmp_path / "bundle")
    export_bundle(bundle, read_frames(data / "weizmann4" / "bend" / "s0_bend.avi", spec.input_size, spec.fps))
    own_videos = sorted((data / "weizmann4").glob("*/s8_*.avi"))
    foreign_videos = [
        data / "ucf101_9" / "Archery" / "v_Archery_g01_c01.avi",
        data / "ps7" / "both_arms_raise_front" / "PS7A3P1T1.avi",
    ]
    encoder = load_runtime_bundle(bundle).encoder
    own_windows, foreign_windows = (
        [
            window_means(encoder.encode(read_frames(path, spec.input_size, spec.fps)), spec.clip_length)
            for path in videos
        ]
        for videos in (own_videos, foreign_videos)
    )
    for method in ("knn", "mahalanobis", "combined"):  # the frame features are cached by the first fit
        assert (
            main(
                [
                    "novelty",
                    "fit",
                    str(bundle),
                    str(data / "weizmann4"),
                    "--test-groups",
                    "5,6,7,8",
                    "--method",
                    method,
                    "--cache",
                    str(tmp_path / "cache"),
                ]
            )
            == 0
        )
        model = load_novelty(bundle)
        own, foreign = (
            np.concatenate([model.score(windows) for windows in videos]) for videos in (own_windows, foreign_windows)
        )
        assert model.method == method and np.median(own) < foreign.min(), (method, own, foreign)
        assert (own > model.threshold).mean() <= 0.1, (method, own, model.threshold)


def test_combined_is_the_larger_part_on_the_scale_of_its_validation_scores_and_survives_the_file(tmp_path):
    """Gaussian windows of two classes: calibration maps each part's validation median to 0 and its
    95th percentile to 1; the score is the larger scaled part; novelty.npz (its bank in float16)
    gives the same scores back."""
    from lrcn.stream.novelty import fit_novelty, save_novelty, with_threshold

    rng = np.random.default_rng(3)
    means = np.eye(16)[:2] * 5
    windows = np.concatenate([rng.normal(0, 1, (300, 16)) + means[0], rng.normal(0, 1, (300, 16)) + means[1]])
    validation = np.concatenate([rng.normal(0, 1, (200, 16)) + means[0], rng.normal(0, 1, (200, 16)) + means[1]])
    raw = fit_novelty(windows, np.repeat([0, 1], 300), ("a", "b"), clip_length=16, method="combined")
    parts = raw.part_scores(validation)
    model = raw.calibrated(parts, target=0.05)
    scaled = (parts - np.median(parts, 0)) / (np.quantile(parts, 0.95, axis=0) - np.median(parts, 0))
    assert parts.shape == (400, 2) and np.allclose(np.median(scaled, 0), 0)
    assert np.allclose(model.combine(parts), scaled.max(1))
    model = with_threshold(model, model.combine(parts), target=0.05)
    foreign = rng.normal(0, 1, (50, 16)) + np.eye(16)[9] * 5
    assert (model.score(foreign) > model.threshold).all() and (model.score(validation) > model.threshold).mean() <= 0.05
    (tmp_path / "b").mkdir()
    save_novelty(model, tmp_path / "b")
    loaded = load_novelty(tmp_path / "b")
    assert loaded.method == "combined" and loaded.arrays["knn__bank"].dtype == np.float32
    assert np.allclose(loaded.score(foreign), model.score(foreign), rtol=1e-2)
    assert loaded.summary()["scale"] == [round(float(v), 6) for v in model.arrays["scale"]]


def test_fit_combined_through_the_command(guarded, tmp_path):
    """`lrcn novelty fit --method combined` on the fixture's data: a held-out window of a known
    class is under the threshold, the foreign scene over it."""
    bundle, data, held_out, foreign = guarded
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    assert (
        main(
            [
                "novelty",
                "fit",
                str(copy),
                str(data),
                "--test-groups",
                "04",
                "--val-groups",
                "03",
                "--method",
                "combined",
                "--hop",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    model = load_novelty(copy)
    own, other = window_scores(copy, held_out), window_scores(copy, foreign)
    assert model.method == "combined" and np.median(own) < model.threshold < np.median(other), (own, other)


def test_fit_refuses_the_bundles_test_groups(guarded, exported_seed, tmp_path, capsys):
    bundle, data, _, _ = guarded
    import json

    meta_path = bundle / "meta.json"
    meta = json.loads(meta_path.read_text())
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    meta["training"] |= {"data": str(data), "test_groups": ["04"]}
    (copy / "meta.json").write_text(json.dumps(meta))
    assert main(["novelty", "fit", str(copy), str(data), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: group(s) 04 are the bundle's test groups") and err.count("\n") == 1, err


@pytest.mark.slow
def test_serve_publishes_unknown_with_the_score_and_no_event_on_a_foreign_stream(guarded, tmp_path):
    bundle, _, held_out, foreign = guarded
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "deploy.toml"
    events = "events = { min_score = 0.0 }"
    config.write_text(
        f'[[stream]]\nid = "foreign"\nsource = "{foreign}"\nloop = true\n{events}\n\n'
        f'[[stream]]\nid = "unguarded"\nsource = "{foreign}"\nloop = true\nnovelty = "off"\n{events}\n\n'
        f'[[stream]]\nid = "own"\nsource = "{held_out}"\nloop = true\n{events}\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "lrcn.tools.cli", "serve", str(bundle), "--config", str(config), "--endpoint", endpoint],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Subscriber(endpoint) as subscriber:

            def enough(messages):
                return all(
                    sum(m.kind == "pred" and m.stream == s for m in messages) >= 12
                    for s in ("foreign", "unguarded", "own")
                )

            messages = receive_until(subscriber, enough, 60)
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert enough(messages), err
    preds = {
        s: [m.payload for m in messages if m.kind == "pred" and m.stream == s] for s in ("foreign", "unguarded", "own")
    }
    threshold = load_novelty(bundle).threshold
    assert all(p["label"] == "unknown" for p in preds["foreign"] if p["novelty"] > threshold)
    assert sum(p["label"] == "unknown" for p in preds["foreign"]) >= 0.8 * len(preds["foreign"])
    assert all(p["label"] != "unknown" and p["novelty"] > threshold for p in preds["unguarded"][:10])
    assert sum(p["label"] == "unknown" for p in preds["own"]) <= 0.5 * len(preds["own"])
    assert all(set(p["probabilities"]) == set(SEED_SPEC_ARGS["classes"]) for p in preds["foreign"])  # raw, unchanged
    starts = {m.stream for m in messages if m.kind == "event" and m.payload["type"] == "start"}
    assert "foreign" not in starts and {"unguarded", "own"} <= starts


def test_annotate_draws_unknown_on_a_foreign_video_and_not_with_the_guard_off(guarded, tmp_path, capsys):
    bundle, _, held_out, foreign = guarded
    assert main(["annotate", str(bundle), str(foreign), "-o", str(tmp_path / "foreign.mp4")]) == 0
    out = capsys.readouterr().out.strip()
    predictions, unknown = re.search(r"(\d+) predictions \((\d+) unknown\)$", out).groups()
    assert int(predictions) > 0 and int(unknown) == int(predictions), out
    assert main(["annotate", str(bundle), str(held_out), "-o", str(tmp_path / "held_out.mp4")]) == 0
    predictions, unknown = re.search(r"(\d+) predictions \((\d+) unknown\)$", capsys.readouterr().out.strip()).groups()
    assert int(unknown) < int(predictions) / 2, "the held-out video of a known class keeps most of its labels"
    assert main(["annotate", str(bundle), str(foreign), "-o", str(tmp_path / "off.mp4"), "--novelty", "off"]) == 0
    assert capsys.readouterr().out.strip().endswith(" predictions"), "no guard, no unknown count"


def test_the_score_is_the_offline_score_of_the_window(guarded):
    """The scheduler's ring mean equals the mean of the window's frames offline."""
    from lrcn.stream.ring import Frame
    from lrcn.stream.scheduler import Scheduler, StreamPlan
    from lrcn.stream.video import read_frames
    from lrcn.stream.windows import WindowConfig

    bundle, _, _, foreign = guarded
    runtime = load_runtime_bundle(bundle)
    spec = runtime.meta.spec
    frames = read_frames(foreign, spec.input_size, spec.fps)
    scheduler = Scheduler(
        runtime.head, spec.clip_length, runtime.encoder, [StreamPlan("s", WindowConfig(hop=2))], novelty=runtime.novelty
    )
    published = scheduler.process({"s": [Frame(image, i, i / spec.fps) for i, image in enumerate(frames)]}).predictions
    offline = window_scores(bundle, foreign)
    assert [p.window for p in published] == [(i, i + spec.clip_length - 1) for i in range(0, len(offline), 2)]
    np.testing.assert_allclose([p.novelty for p in published], offline[::2], rtol=1e-4)


def test_a_bundle_without_novelty_npz_has_no_guard(exported_seed):
    bundle, _, _ = exported_seed
    assert load_runtime_bundle(bundle).novelty is None


@pytest.mark.parametrize("value, complaint", [("abc", "'abc'"), ("-3", "'-3'"), (True, "True")])
def test_a_bad_setting_is_one_line(value, complaint):
    with pytest.raises(LrcnError, match="novelty must be 'off' or a positive threshold") as caught:
        parse_novelty(value)
    assert complaint in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture
def bad(guarded, tmp_path):
    bundle, data, held_out, _ = guarded
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    (damaged / NOVELTY_FILE).write_bytes(b"PK\x03\x04 not a zip")
    config = tmp_path / "bad.toml"
    config.write_text(f'[[stream]]\nsource = "{held_out}"\nnovelty = "abc"\n')
    return {
        "bundle": str(bundle),
        "damaged": str(damaged),
        "video": str(held_out),
        "config": str(config),
        "data": str(data),
        "plain": str(tmp_path / "plain"),
    }


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["serve", "{damaged}", "{video}"], "{damaged}/novelty.npz: not a novelty file"),
        (["serve", "{bundle}", "{video}", "--novelty", "abc"], "novelty must be 'off' or a positive threshold"),
        (["serve", "{bundle}", "--config", "{config}"], "{config}:3: novelty must be 'off' or a positive threshold"),
        (["novelty", "measure", "{damaged}"], "{damaged}/novelty.npz: not a novelty file"),
        (
            ["novelty", "fit", "{bundle}", "{data}", "--test-groups", "04", "--val-groups", "09"],
            "--val-groups: no training",
        ),
        (["novelty", "fit", "{bundle}", "{data}", "--test-groups", "04", "--target", "2"], "novelty target must be"),
    ],
    ids=["damaged-npz", "bad-flag", "bad-deploy-key", "measure-damaged", "unknown-val-group", "bad-target"],
)
def test_bad_input_is_one_line_and_exit_2(bad, capsys, argv, complaint):
    argv = [a.format(**bad) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: ") and err.count("\n") == 1, err
    assert complaint.format(**bad) in err


def test_a_threshold_without_novelty_npz_is_refused(exported_seed, capsys):
    bundle, _, video = exported_seed
    assert main(["serve", str(bundle), str(video), "--novelty", "12"]) == 2
    assert "a novelty threshold needs a bundle with novelty.npz" in capsys.readouterr().err
