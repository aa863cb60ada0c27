"""`lrcn train --distribute`: TF_CONFIG's one-line errors, the sharing out of videos between
workers, mirrored training on this CPU, and two real workers on 127.0.0.1 against one."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lrcn.models import synth  # noqa: E402
from lrcn.models.frame_cache import FrameCache, map_sharded  # noqa: E402
from lrcn.models.distribute import parse_tf_config  # noqa: E402
from lrcn.stream.errors import LrcnError  # noqa: E402
from tests.cli import assert_one_line_error, lrcn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, words",
    [
        (None, ["needs TF_CONFIG"]),
        ("{not json", ["not JSON"]),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', ["host:port"]),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', ["ps"]),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', ["index 2", "0..1"]),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', ['"type": "worker"']),
    ],
)
def test_bad_tf_config_is_one_line(text, words):
    with pytest.raises(LrcnError) as err:
        parse_tf_config(text)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_multiworker_without_or_with_broken_tf_config_is_a_one_line_error(small_synthetic, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    for tf_config, word in ((None, "needs TF_CONFIG"), ("[1, 2", "not JSON")):
        run_env = env | ({"TF_CONFIG": tf_config} if tf_config else {}) | {"TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lrcn.tools.cli",
                "train",
                str(small_synthetic),
                "--out",
                str(tmp_path / "o"),
                "--distribute",
                "multiworker",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=run_env,
            timeout=120,
        )
        assert_one_line_error(result, word)
        assert not (tmp_path / "o").exists()


class ThreadExchange:
    """Two workers as two threads, exchanging one item each per round through a barrier: the
    same contract as Distribution.gather (a collective every worker calls alike)."""

    def __init__(self, workers):
        self.workers, self.slots, self.barrier = workers, [None] * workers, threading.Barrier(workers)

    def worker(self, index):
        exchange = self

        class Worker:
            worker, workers = index, exchange.workers

            @staticmethod
            def gather(item):
                exchange.slots[index] = item
                exchange.barrier.wait()
                shares = list(exchange.slots)
                exchange.barrier.wait()
                return shares

        return Worker()


def run_workers(workers, job):
    exchange, results = ThreadExchange(workers), [None] * workers

    def run(index):
        results[index] = job(exchange.worker(index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_each_worker_computes_its_share_and_ends_with_all():
    items = list(range(7))
    computed = {0: [], 1: []}

    def job(shard):
        def compute(item):
            computed[shard.worker].append(item)
            return None if item == 5 else np.array([item * 10])  # item 5 "unreadable"

        return map_sharded(items, compute, shard)

    results = run_workers(2, job)
    assert computed == {0: [0, 2, 4, 6], 1: [1, 3, 5]}
    expected = {i: [i * 10] for i in items if i != 5}
    for result in results:
        assert {i: list(v) for i, v in result.items()} == expected


def test_features_are_encoded_by_shares_and_cached_by_every_worker(small_synthetic, tmp_path):
    """A frozen backbone's features: each worker encodes its videos, gets the others', and
    caches them all, so that the features equal one worker's own encoding."""
    from lrcn.models.architectures import build_model, split_model
    from lrcn.models.features import FeatureCache
    from lrcn.stream.bundle import ModelSpec

    spec = ModelSpec(
        classes=tuple(synth.CLASSES),
        backbone="small",
        input_size=(32, 32),
        clip_length=4,
        fps=5,
        lstm_units=8,
        trainable_layers=0,
    )
    encoder, _ = split_model(build_model(spec), spec)
    videos = sorted(small_synthetic.glob("*/*.avi"))[:5]
    frames = FrameCache(None, spec.input_size, spec.fps)
    alone = FeatureCache(None, spec, encoder).all_views(videos, frames.frames, ("plain", "mirror"))
    decoded = {0: [], 1: []}

    def job(shard):
        def frames_of(path):
            decoded[shard.worker].append(path)
            return frames.frames(path)

        cache = FeatureCache(tmp_path / f"cache{shard.worker}", spec, encoder)
        return cache.all_views(videos, frames_of, ("plain", "mirror"), shard), cache

    results = run_workers(2, job)
    assert decoded == {0: videos[0::2], 1: videos[1::2]}
    for shared, cache in results:
        assert list(shared) == videos
        for path in videos:
            for view, features in zip(("plain", "mirror"), shared[path]):
                assert np.allclose(features, alone[path][("plain", "mirror").index(view)], atol=1e-5)
                assert np.array_equal(cache.cached(path, view), features)


TINY = [
    "--backbone",
    "small",
    "--size",
    "32",
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
    "--test-groups",
    "02",
    "--no-refit",
    "--no-cache",
    "--quiet",
]


@pytest.mark.slow
def test_mirrored_on_this_cpu_trains_and_gives_the_same_bundle_form(small_synthetic, tmp_path):
    runs = {
        name: lrcn("train", small_synthetic, "--out", tmp_path / name, *TINY, *flags)
        for name, flags in (("plain", []), ("mirrored", ["--distribute", "mirrored"]))
    }
    for run in runs.values():
        assert run.returncode == 0, run.stderr
    assert "no GPU here, training on the CPU as one replica" in runs["mirrored"].stderr
    files = {name: sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*")) for name in runs}
    assert files["plain"] == files["mirrored"]
    metas = {name: json.loads((tmp_path / name / "meta.json").read_text()) for name in runs}
    assert metas["mirrored"]["model"] == metas["plain"]["model"]
    assert metas["mirrored"]["training"]["distribute"] == {
        "strategy": "mirrored",
        "workers": 1,
        "replicas": 1,
        "global_batch": 8,
    }
    from lrcn.models.experiment import load_bundle

    model, _ = load_bundle(tmp_path / "mirrored")
    assert model(np.zeros((1, 4, 32, 32, 3), np.float32)).shape == (1, len(synth.CLASSES))


# Freshly rendered clips (the recipe of test_training's motion test, shortened), no dropout:
# two workers with per-replica batch 8 see the same global batches of 16 as one worker, from
# the same initial weights, so they should reach the same model up to float rounding.
LEARN = [
    "--backbone",
    "small",
    "--size",
    "32",
    "--clip-length",
    "8",
    "--fps",
    "10",
    "--lstm-units",
    "64",
    "--dropout",
    "0",
    "0",
    "--epochs",
    "3",
    "--patience",
    "3",
    "--synthetic-clips",
    "480",
    "--lr",
    "2e-3",
    "--test-groups",
    "02",
    "--no-refit",
    "--quiet",
]


@pytest.mark.heavy  # three TensorFlow trainings, about 2.5 minutes: beyond CI's 20 minutes with the rest
def test_two_workers_on_localhost_match_one_worker(small_synthetic, tmp_path):
    """Two `lrcn train --distribute multiworker` processes on 127.0.0.1 (CPU), launched as
    `python -m lrcn.tools.evidence.local_workers` launches them: the chief's bundle loads and tests within
    one video of a one-worker run (14 test videos), and the other worker leaves nothing behind."""
    from lrcn.models.experiment import load_bundle
    from lrcn.tools.evidence.local_workers import train

    train(small_synthetic, tmp_path / "one", [*LEARN, "--batch-size", "16"], tmp_path / "cache1", workers=1)
    _, errors = train(small_synthetic, tmp_path / "two", [*LEARN, "--batch-size", "8"], tmp_path / "cache2", workers=2)
    assert "worker 1 of 2" in errors[1] and "(chief)" in errors[0]
    model, meta = load_bundle(tmp_path / "two")
    assert meta.training["distribute"] == {"strategy": "multiworker", "workers": 2, "replicas": 2, "global_batch": 16}
    one_meta = json.loads((tmp_path / "one" / "meta.json").read_text())
    one_right, two_right = one_meta["metrics"]["test"]["video_correct"], meta.metrics["test"]["video_correct"]
    assert meta.metrics["test"]["videos"] == one_meta["metrics"]["test"]["videos"] == 14
    assert abs(two_right - one_right) <= 1, (one_right, two_right)
    scratch = [line for line in errors[1].splitlines() if "writes into" in line]
    assert scratch and not Path(scratch[0].split("writes into ")[1].split(" (")[0]).exists()
