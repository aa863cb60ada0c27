"""The offline replay of `lrcn stream-accuracy --offline`: the same runtime without the real-time
serving. The joined video's frames sampled on the model's grid are encoded by the bundle's
encoders (with their flow, for a bundle that sees motion) and stepped through
lrcn.stream.windows in every head mode, then scored like a live run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path


from lrcn.stream.errors import LrcnError
from lrcn.stream.sampling import grid_indices
from lrcn.tools.stream_accuracy.stream_scoring import (
    HeadMode,
    first_full_window,
    head_modes,
    run_record,
    score_stream,
    segment_rows,
)


def replay_predictions(head, clip_length: int, mode: HeadMode, inputs, frame_indices: Sequence[int]) -> list[dict]:
    """What a stream in `mode` publishes for these per-frame head inputs (`stream.windows.frame_inputs`
    of the sampled frames, oldest first; frame_indices: their frames in the served video): the
    windows of stream.windows, the smoothing of stream.smoothing, as the scheduler steps them, and
    no latency."""
    from lrcn.stream.smoothing import SmootherState, parse_smoothing, smooth
    from lrcn.stream.windows import WindowConfig, initial_state, step

    config = WindowConfig(mode=mode.mode, hop=mode.hop, reset_every=mode.reset_every)
    smoothing, smoother = parse_smoothing(mode.smooth), SmootherState()
    state, published = initial_state(head, clip_length, config), []
    for frame_input, index in zip(inputs, frame_indices):
        state, window = step(head, clip_length, config, state, frame_input, int(index))
        if window is not None:
            smoother, label, score = smooth(smoothing, smoother, window.probabilities)
            published.append(
                {"frame_index": int(index), "latency_ms": 0.0, "label": head.classes[label], "score": score}
            )
    return published


def sampled_features(bundle: Path, video: Path, media_frames: int, media_fps: float, cache: dict) -> tuple:
    """(joined features [N, F] of the video's frames sampled on the model's grid through the
    bundle's own encoders, with their flow for a bundle that sees motion; their frame indices in
    the video). Bundles whose encoder files have the same content share one encoding (`cache`,
    keyed by their digest)."""
    import hashlib

    from lrcn.stream.modalities import modality
    from lrcn.stream.runtime_bundle import load_runtime_bundle

    runtime = load_runtime_bundle(bundle)
    spec = runtime.meta.spec
    files = b"".join((bundle / modality(name).encoder_file).read_bytes() for name in spec.modalities)
    key = (hashlib.sha1(files).hexdigest(), spec.input_size, spec.fps)
    if key not in cache:
        features = runtime.video_features(video)
        indices = grid_indices((i / media_fps for i in range(media_frames)), spec.fps)
        if len(indices) != len(features):
            raise LrcnError(
                f"{video}: {len(features)} frames decoded on the {spec.fps:g} fps grid, {len(indices)} expected"
            )
        cache[key] = (features, indices)
    return cache[key]


def replay(
    bundle: Path, video: Path, labels_path: Path, modes: Sequence[HeadMode] | None, cache: dict | None = None
) -> dict:
    """`measure` without serving: the joined video decoded and sampled on the model's grid by its
    timestamps, encoded by the bundle's encoder, every head mode stepped through the runtime's
    windows (`replay_predictions`), and scored by the same functions as a live run."""
    from lrcn.models.synth import read_labels
    from lrcn.stream.bundle import read_meta
    from lrcn.stream.heads import load_head
    from lrcn.stream.windows import frame_inputs

    spec = read_meta(bundle).spec
    record = read_labels(labels_path)
    truth, media_fps = record["labels"], float(record["fps"])
    modes = list(modes or head_modes(spec.clip_length))
    start = first_full_window(len(truth), media_fps, spec.fps, spec.clip_length)
    features, indices = sampled_features(bundle, video, len(truth), media_fps, {} if cache is None else cache)
    head = load_head(bundle / "head.npz")
    inputs = frame_inputs(head, features)
    results = {}
    for mode in modes:
        payloads = replay_predictions(head, spec.clip_length, mode, inputs, indices)
        scores = score_stream(truth, payloads, media_fps, start)
        shown = scores.pop("shown")
        results[mode.name] = {
            "head": asdict(mode),
            **scores,
            "segments": segment_rows(record["segments"], shown, start),
            "predictions": len(payloads),
            "published": [[p["frame_index"], 0.0, p["label"], p["score"]] for p in payloads],
        }
    return run_record(bundle, video, labels_path, record, spec, start, results, replayed=True)
