"""`lrcn demo`: the whole training side on a fresh machine, with nothing but this package.

Synthesises motion-only action videos, trains a small seed-architecture LRCN on three groups,
and tests it on the fourth, unseen group.
"""
from __future__ import annotations

import time
from pathlib import Path

from stream.bundle import ModelSpec


def run_demo(workdir: Path, quick: bool = False) -> dict:
    from models import synth
    from models.data import discover, split_by_groups
    from models.experiment import train_and_test
    from models.train import TrainConfig
    from tools.cli import print_result

    started = time.time()
    data = workdir / "synth"
    if not data.exists():
        synth.write_dataset(data, videos_per_class=8 if quick else 24, n_frames=40, size=64, seed=0, groups=4)
    dataset = discover(data, "ucf101")
    train_videos, test_videos = split_by_groups(list(dataset.videos), ["04"])
    spec = ModelSpec(classes=dataset.classes, backbone="small", input_size=(64, 64), clip_length=8, fps=10.0,
                     lstm_units=128)
    # Mirroring would turn move_left into move_right: the synthetic classes are direction-sensitive.
    config = TrainConfig(epochs=2 if quick else 10, batch_size=8, learning_rate=1e-3, patience=4,
                         clips_per_video=2 if quick else 4, flip=False, cache_dir=str(workdir / "cache"))
    print(f"training a small LRCN {spec.input_size[0]}x{spec.input_size[1]}, T={spec.clip_length}, "
          f"on {len(train_videos)} synthetic videos; testing on {len(test_videos)} of an unseen group "
          f"(chance: {1 / len(dataset.classes):.2f})")
    result = train_and_test(spec, train_videos, test_videos, workdir / "bundle", config)
    print_result(result)
    print(f"bundle: {workdir / 'bundle'} ({time.time() - started:.0f} s)")
    return result
