"""Training on several devices or machines with TensorFlow's own engine, `tf.distribute`.

- `none`: the default device, no strategy (the plain path, unchanged).
- `mirrored`: every GPU of this machine (MirroredStrategy); without GPUs, the CPU as one replica.
- `multiworker`: the machines that TF_CONFIG names (MultiWorkerMirroredStrategy). Every worker
  runs the same command; worker 0 is the chief and writes the bundle.

Every worker takes its share of the videos to decode and encode (video i goes to worker
i % workers) and the shares are then all-gathered through the strategy's own collectives, so
the workers need no shared file system; each one keeps what it received in its local cache.

>>> parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
(1, 2)
>>> LOCAL.workers, LOCAL.is_chief, LOCAL.gather("anything")
(1, True, ['anything'])
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np

from lrcn.stream.errors import LrcnError

log = logging.getLogger(__name__)

TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'


@dataclass(frozen=True)
class Distribution:
    """A started strategy and this process's place in it."""

    name: str = "none"
    strategy: Any = None
    worker: int = 0
    workers: int = 1

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def is_chief(self) -> bool:
        return self.worker == 0

    def gather(self, item):
        """Every worker's `item` (any picklable value, None included), in worker order.

        A collective: every worker must call it the same number of times."""
        if self.workers == 1:
            return [item]
        return [
            None if not payload else np.load(io.BytesIO(payload), allow_pickle=False)
            for payload in all_gather_bytes(self.strategy, self.workers, encode(item))
        ]


LOCAL = Distribution()


def encode(item) -> bytes:
    if item is None:
        return b""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(item), allow_pickle=False)
    return buffer.getvalue()


def all_gather_bytes(strategy, workers: int, payload: bytes) -> list[bytes]:
    """One byte string per worker, all-gathered in eager mode (ragged first dimensions are
    allowed there; collectives take no uint8, so the bytes travel as int32 words)."""
    import tensorflow as tf

    words = np.frombuffer(payload + b"\0" * (-len(payload) % 4), dtype=np.int32)
    context = lambda: tf.distribute.get_replica_context()

    def gathered(value):
        result = strategy.run(lambda v: context().all_gather(v, axis=0), args=(tf.constant(value),))
        return strategy.experimental_local_results(result)[0].numpy()

    sizes = gathered(np.array([len(payload)], dtype=np.int32))
    data = gathered(words)
    # Each local replica sent the same payload; replicas are numbered worker by worker.
    per_worker = len(sizes) // workers
    ends = np.cumsum([(int(size) + 3) // 4 for size in sizes])
    out = []
    for worker in range(workers):
        replica = worker * per_worker
        start = ends[replica - 1] if replica else 0
        out.append(data[start : ends[replica]].tobytes()[: int(sizes[replica])])
    return out


def parse_tf_config(text: str | None) -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG; anything wrong is one LrcnError line."""
    if not text:
        raise LrcnError(f"--distribute multiworker needs TF_CONFIG, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise LrcnError(f"TF_CONFIG is not JSON ({err.msg} at character {err.pos})") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise LrcnError('TF_CONFIG needs "cluster": {"worker": ["host:port", ...]} with one entry per machine')
    if set(cluster) - {"worker"}:
        raise LrcnError(
            f"TF_CONFIG: only workers are used (worker 0 is the chief); remove "
            f"{', '.join(sorted(set(cluster) - {'worker'}))}"
        )
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise LrcnError('TF_CONFIG needs "task": {"type": "worker", "index": N}')
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise LrcnError(
            f"TF_CONFIG: task index {index!r} is not one of the {len(workers)} workers (0..{len(workers) - 1})"
        )
    return index, len(workers)


def start_none() -> Distribution:
    return LOCAL


def start_mirrored() -> Distribution:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
        log.info("--distribute mirrored: %d GPU(s), %d replicas", len(gpus), strategy.num_replicas_in_sync)
    else:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        log.info("--distribute mirrored: no GPU here, training on the CPU as one replica")
    return Distribution("mirrored", strategy)


def start_multiworker() -> Distribution:
    import tensorflow as tf

    index, workers = parse_tf_config(os.environ.get("TF_CONFIG"))
    patch_keras_for_multiworker()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log.info(
        "--distribute multiworker: worker %d of %d%s, %d replicas",
        index,
        workers,
        " (chief)" if index == 0 else "",
        strategy.num_replicas_in_sync,
    )
    return Distribution("multiworker", strategy, index, workers)


STRATEGIES: dict[str, Callable[[], Distribution]] = {
    "none": start_none,
    "mirrored": start_mirrored,
    "multiworker": start_multiworker,
}

_started: Distribution | None = None


def start(name: str) -> Distribution:
    """The process's distribution, started once: MultiWorkerMirroredStrategy must come before
    any other TensorFlow op, and a process can take part in one cluster only."""
    global _started
    if name not in STRATEGIES:
        raise LrcnError(f"unknown --distribute {name!r}: choose {', '.join(STRATEGIES)}")
    if _started is None or (_started.name == "none" and name != "none"):
        _started = STRATEGIES[name]()
    elif name != "none" and _started.name != name:
        raise LrcnError(f"this process already trains with --distribute {_started.name}")
    return _started if name != "none" else LOCAL


def current() -> Distribution:
    return _started or LOCAL


@contextlib.contextmanager
def output_dir(out: Path, distribution: Distribution) -> Iterator[Path]:
    """Where this worker writes: the chief writes `out`; the others (whose checkpoints Keras
    saves all the same) write into a temporary folder, removed afterwards."""
    if distribution.is_chief:
        yield out
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"lrcn-worker{distribution.worker}-"))
    log.info("worker %d writes into %s (removed at the end); the chief writes %s", distribution.worker, scratch, out)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def distributed_copy(model, distribution: Distribution, compile_fn: Callable, sample_batch):
    """`model`'s twin with variables under the strategy, the same weights, compiled and built
    for fit (build_for_fit)."""
    import keras

    with distribution.strategy.scope():
        twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        compile_fn(twin)
    build_for_fit(twin, distribution, sample_batch)
    return twin


def build_for_fit(model, distribution: Distribution, sample_batch) -> None:
    """Build a compiled model's training state (optimizer, metrics) from a local batch, in the
    strategy's scope, and leave Keras's own build at the start of fit nothing to do.

    Keras 3 builds it at the start of fit by reducing the first distributed batch, which fails
    on an (x, y) pair of per-replica values (keras-team/keras#20585)."""
    with distribution.strategy.scope():
        model._symbolic_build(data_batch=sample_batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


_patched = False


def patch_keras_for_multiworker() -> None:
    """Keras 3 reduces each step's metrics across workers with strategy.reduce("MEAN", v, axis=0),
    which fails on scalars (keras-team/keras#20585); reduce them with no axis instead, the mean
    over replicas that single-machine strategies compute."""
    global _patched
    if _patched:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    _patched = True
