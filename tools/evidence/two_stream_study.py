"""The measurements of issue 23: RGB-only, flow-only and two-stream bundles, trained by one recipe
on each data set and seed, and what each does offline, live, on stills and against foreign data.

    python -m lrcn.tools.evidence.two_stream_study --data ../shared/data --weights W --work /work/runs23/study \\
        [--datasets weizmann4,ps7,ucf101_9] [--seeds 0,1,2] [--modalities rgb,flow,both] \\
        [--stages train,export,stream,live,novelty] [--flow-encoder frozen|tuned|scratch|auto] \
        [--summary docs/results/two_stream.json]

For each (data set, seed, modality) it runs the `lrcn` command line, each step skipped when its
output is already there (so a stopped run resumes, and adding a modality later trains only that):
- train: `lrcn train DATA SPLIT --seed S RECIPE [--modalities flow | rgb,flow --fusion auto]
  --flow-encoder E` into WORK/bundles/DS-sS-MOD (RGB runs pass no modality flag: the same command works
  before issue 23). E is frozen by default, the encoder of docs/results/two_stream.json; auto trains
  the flow CNN on flow and keeps the best on validation (docs/results/two_stream_trained.json).
  The offline video accuracy is the one `lrcn train` measures on the held-out test groups;
- export: `lrcn export BUNDLE` (encoder.onnx, and encoder.flow.onnx for a bundle that uses flow);
- stream: `lrcn stream-accuracy BUNDLE DATA SPLIT --offline --seed 0`: frames right and change delay
  in every head mode on the held-out videos joined (the same joined stream for every bundle);
- live: `lrcn stream-accuracy BUNDLE DATA SPLIT --static SECONDS --seed 0`: served through `serve`
  by ffmpeg, adds events (precision, recall, false a minute) and events a minute on stills;
- novelty: the bundle copied to WORK/novelty/DS-sS-MOD, `lrcn novelty fit` on its training groups
  (seed S), `lrcn novelty measure --foreign` the other two data sets: held-out windows and foreign
  windows labelled `unknown`.
Splits (the held-out groups of the issue): weizmann4 subjects 6, 7, 8; ps7 person 3 (trained on
persons 1 and 2); ucf101_9 UCF101's split 1 (groups 01-07 test). Validation, wherever a choice is
made (L2, epochs, fusion), is `lrcn train`'s own group-disjoint split of the training groups.

Each run's figures go to WORK/results/DS-sS-MOD.json and all of them, with the recipe and the
commands, to --summary (docs/results/two_stream.json); `python -m lrcn.tools.evidence.report` makes the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError

SEEDS = (0, 1, 2)
MODALITIES = {"rgb": (), "flow": ("--modalities", "flow"), "both": ("--modalities", "rgb,flow", "--fusion", "auto")}
STAGES = ("train", "export", "stream", "live", "novelty")
STEP_TIMEOUT_S = 4 * 3600
# The pooling head of docs/evidence/results.md (its best offline head on all three sets), at 112 px. Its L2 is
# the one that recipe's validation chose on each set (DataSet.steps): a two-stream bundle trains one
# head, so no L2 is chosen per run, and every modality gets the same.
RECIPE = (
    "--backbone",
    "mobilenet_v2",
    "--size",
    "112",
    "--lr",
    "1e-3",
    "--head",
    "pool",
    "--dropout",
    "0.5",
    "0.5",
    "--batch-size",
    "32",
    "--quiet",
)


@dataclass(frozen=True)
class DataSet:
    name: str
    split: tuple[str, ...]  # relative to the data root where a path
    still_seconds: float  # --static: the still scene served
    steps: tuple[str, ...]  # L2, clips per video and epochs: about 3,000 steps a model

    def split_args(self, data: Path) -> list[str]:
        return [str(data / a) if a.endswith(".txt") else a for a in self.split]


DATASETS = {
    "weizmann4": DataSet(
        "weizmann4",
        ("--test-groups", "6,7,8"),
        120,
        ("--l2", "0.1", "--clips-per-video", "32", "--epochs", "120", "--patience", "120"),
    ),
    "ps7": DataSet(
        "ps7",
        ("--test-groups", "3"),
        60,
        ("--l2", "0.1", "--clips-per-video", "32", "--epochs", "120", "--patience", "120"),
    ),
    "ucf101_9": DataSet(
        "ucf101_9",
        ("--split-lists", "ucf101_9/splits/trainlist01.txt", "ucf101_9/splits/testlist01.txt"),
        180,
        ("--l2", "0.01", "--clips-per-video", "8", "--epochs", "40", "--patience", "40"),
    ),
}


@dataclass(frozen=True)
class Run:
    dataset: DataSet
    seed: int
    modality: str

    @property
    def name(self) -> str:
        return f"{self.dataset.name}-s{self.seed}-{self.modality}"


def lrcn(*args, log: Path, timeout: float = STEP_TIMEOUT_S) -> None:
    """One `lrcn` command (this interpreter, this PYTHONPATH), its output appended to `log`."""
    command = [sys.executable, "-m", "lrcn.tools.cli", *map(str, args)]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"$ lrcn {' '.join(map(str, args))}\n")
        out.flush()
        try:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise LrcnError(f"lrcn {args[0]} ran past {timeout:g} s (log: {log})") from None
        out.write(f"# exit {done.returncode} after {time.monotonic() - started:.0f} s\n")
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise LrcnError(f"lrcn {args[0]} failed ({log}): {' | '.join(tail)}")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# -- the steps: each does nothing when its output is there ---------------------------------------


def train(run: Run, data: Path, weights: str, bundle: Path, log: Path, flow_encoder: str) -> None:
    meta = read_json(bundle / "meta.json")
    if meta and meta.get("metrics", {}).get("test") and (bundle / "model.keras").is_file():
        return
    flow = ("--flow-encoder", flow_encoder) if MODALITIES[run.modality] else ()
    lrcn(
        "train",
        data / run.dataset.name,
        *run.dataset.split_args(data),
        "--out",
        bundle,
        "--weights",
        weights,
        "--seed",
        run.seed,
        *RECIPE,
        *run.dataset.steps,
        *MODALITIES[run.modality],
        *flow,
        log=log,
    )


def export(run: Run, bundle: Path, log: Path) -> None:
    encoders = {"rgb": ["encoder.onnx"], "flow": ["encoder.flow.onnx"], "both": ["encoder.onnx", "encoder.flow.onnx"]}
    wanted = encoders[run.modality] + ["head.npz", "export.json"]
    if all((bundle / name).is_file() for name in wanted):
        return
    lrcn("export", bundle, log=log)


def stream_accuracy(run: Run, data: Path, bundle: Path, out: Path, log: Path, *how) -> None:
    """`lrcn stream-accuracy` on the run's test split, once: `how` is `--offline` (the replayed
    stream) or `--static SECONDS` (served live, with still scenes)."""
    if out.is_file():
        return
    lrcn(
        "stream-accuracy",
        bundle,
        data / run.dataset.name,
        *run.dataset.split_args(data),
        *how,
        "--seed",
        0,
        "--summary",
        out,
        log=log,
    )


def novelty(run: Run, data: Path, bundle: Path, guarded: Path, out: Path, log: Path) -> None:
    """Fit and measure the guard on a copy, so the bundle the other steps serve stays unguarded."""
    if out.is_file():
        return
    if not (guarded / "novelty.npz").is_file():
        shutil.rmtree(guarded, ignore_errors=True)
        shutil.copytree(
            bundle, guarded, ignore=shutil.ignore_patterns("checkpoints", "selection", "*.keras", "curves.png")
        )
        lrcn(
            "novelty",
            "fit",
            guarded,
            data / run.dataset.name,
            *run.dataset.split_args(data),
            "--seed",
            run.seed,
            log=log,
        )
    foreign = [arg for name in DATASETS if name != run.dataset.name for arg in ("--foreign", data / name)]
    lrcn("novelty", "measure", guarded, *run.dataset.split_args(data), *foreign, "--out", out, log=log)


# -- what each run's figures are -----------------------------------------------------------------


def mode_figures(modes: dict) -> dict:
    out = {}
    for key, mode in modes.items():
        delay = mode.get("delay", {})
        row = {
            "accuracy": mode.get("accuracy"),
            "correct": mode.get("correct"),
            "frames": mode.get("frames"),
            "delay_median_s": delay.get("median_s"),
            "delay_max_s": delay.get("max_s"),
            "missed": delay.get("missed"),
            "changes": delay.get("changes"),
        }
        found = mode.get("events")
        if found:
            row |= {
                "events": found.get("events"),
                "true_positives": found.get("true_positives"),
                "precision": found.get("precision"),
                "recall": found.get("recall"),
                "false_per_min": found.get("false_per_min"),
            }
        row |= {key: mode[key] for key in ("unknown", "idle", "latency_p99_ms") if key in mode}
        out[key] = row
    return out


def still_figures(static: dict | None) -> dict | None:
    if not static:
        return None
    return {
        "seconds": static.get("seconds"),
        "modes": {
            key: {
                "events_per_min": mode.get("events", {}).get("per_min"),
                "predictions": mode.get("predictions"),
                "unknown": mode.get("unknown"),
                "idle": mode.get("idle"),
                "head_labels": mode.get("head_labels"),
            }
            for key, mode in static.get("modes", {}).items()
        },
    }


def novelty_figures(measured: dict | None) -> dict | None:
    if not measured:
        return None
    (bundle,) = measured["bundles"]
    return {
        "method": bundle["method"],
        "threshold": bundle["threshold"],
        "datasets": {
            name: {key: row.get(key) for key in ("role", "videos", "windows", "unknown_share", "auroc")}
            for name, row in bundle["datasets"].items()
        },
    }


def flow_encoder_figures(record: dict | None) -> dict | None:
    """meta.json's training["flow_encoder"] without the epoch histories."""
    if not record:
        return None
    keep = ("backbone", "trainable_layers", "epochs_run", "kept", "val_field_accuracy", "val_video_accuracy", "seconds")
    return {
        "chosen": record["chosen"],
        "val_videos": record.get("val_videos"),
        "candidates": {name: {key: row.get(key) for key in keep} for name, row in record["candidates"].items()},
    }


def figures(run: Run, bundle: Path, files: dict[str, Path]) -> dict:
    meta = read_json(bundle / "meta.json") or {}
    model, training = meta.get("model", {}), meta.get("training", {})
    streamed, served = read_json(files["stream"]), read_json(files["live"])
    return {
        "dataset": run.dataset.name,
        "seed": run.seed,
        "modality": run.modality,
        "bundle": str(bundle),
        "model": {
            key: model.get(key)
            for key in (
                "modalities",
                "fusion",
                "fusion_weights",
                "head",
                "input_size",
                "classes",
                "l2",
                "flow_backbone",
                "flow_trained",
            )
        },
        "flow_encoder": flow_encoder_figures(training.get("flow_encoder")),
        "training": {
            key: training.get(key)
            for key in ("seconds", "best_epoch", "val_groups", "test_groups", "fusion_choice", "l2_selection")
        },
        "offline": meta.get("metrics", {}).get("test"),
        "export": read_json(bundle / "export.json"),
        "stream_offline": mode_figures(streamed["modes"]) if streamed else None,
        "live": mode_figures(served["modes"]) if served else None,
        "stills": still_figures(served.get("static")) if served else None,
        "novelty": novelty_figures(read_json(files["novelty"])),
    }


def run_one(
    run: Run,
    data: Path,
    weights: str,
    work: Path,
    stages: tuple[str, ...],
    flow_encoder: str = "frozen",
) -> dict:
    bundle = work / "bundles" / run.name
    log = work / "logs" / f"{run.name}.log"
    files = {stage: work / "measured" / f"{run.name}.{stage}.json" for stage in ("stream", "live", "novelty")}
    (work / "measured").mkdir(parents=True, exist_ok=True)
    steps = {
        "train": lambda: train(run, data, weights, bundle, log, flow_encoder),
        "export": lambda: export(run, bundle, log),
        "stream": lambda: stream_accuracy(run, data, bundle, files["stream"], log, "--offline"),
        "live": lambda: stream_accuracy(
            run, data, bundle, files["live"], log, "--static", f"{run.dataset.still_seconds:g}"
        ),
        "novelty": lambda: novelty(run, data, bundle, work / "novelty" / run.name, files["novelty"], log),
    }
    for stage in STAGES:
        if stage in stages:
            started = time.monotonic()
            steps[stage]()
            print(f"{run.name}: {stage} done ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    result = figures(run, bundle, files)
    out = work / "results" / f"{run.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summarise(work: Path, cost: Path | None, flow_encoder: str = "frozen", summary: str = "two_stream.json") -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((work / "results").glob("*.json"))]
    order = {name: i for i, name in enumerate(DATASETS)}
    runs.sort(key=lambda r: (order.get(r["dataset"], 99), r["seed"], list(MODALITIES).index(r["modality"])))
    for r in runs:
        r["bundle"] = Path(r["bundle"]).name
    flag = "" if flow_encoder == "frozen" else f"--flow-encoder {flow_encoder} "
    return {
        "command": f"python -m lrcn.tools.evidence.two_stream_study --data ../shared/data --weights W --work WORK "
        f"{flag}--summary docs/results/{summary}",
        "flow_encoder": flow_encoder,
        "recipe": " ".join(RECIPE),
        "steps": {name: " ".join(d.steps) for name, d in DATASETS.items()},
        "splits": {name: " ".join(d.split) for name, d in DATASETS.items()},
        "modality_flags": {name: " ".join(flags) for name, flags in MODALITIES.items()},
        "runs": runs,
        **({"cost": read_json(cost)} if cost and cost.is_file() else {}),
    }


def listed(text: str, known, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise LrcnError(f"unknown {what} {', '.join(unknown) or '(none given)'} (known: {', '.join(map(str, known))})")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.two_stream_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of the three data sets")
    parser.add_argument("--weights", default="../shared/pretrained/mobilenet_v2_1.0_imagenet_notop.weights.h5")
    parser.add_argument("--work", type=Path, required=True, help="bundles, logs and per-run JSON (resumable)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="rgb, flow, both")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"any of {', '.join(STAGES)}")
    parser.add_argument("--summary", type=Path, help="write every run's figures here (docs/results/two_stream.json)")
    parser.add_argument("--cost", type=Path, help="a two_stream_cost JSON to include in the summary")
    parser.add_argument(
        "--flow-encoder",
        choices=("frozen", "tuned", "scratch", "auto"),
        default="frozen",
        help="lrcn train --flow-encoder of the flow and two-stream runs (default frozen: the "
        "ImageNet CNN as it comes, as in docs/results/two_stream.json)",
    )
    parser.add_argument(
        "--collect", action="store_true", help="run nothing: write --summary from the runs already under --work"
    )
    parser.add_argument("--keep-going", action="store_true", help="a failed run is reported and the next one runs")
    args = parser.parse_args(argv)
    try:
        names = listed(args.datasets, DATASETS, "data set(s)")
        seeds = [int(s) for s in listed(args.seeds, [str(s) for s in range(100)], "seed(s)")]
        modalities = listed(args.modalities, MODALITIES, "modality(ies)")
        stages = tuple(listed(args.stages, STAGES, "stage(s)"))
        if not args.data.is_dir():
            raise LrcnError(f"data folder {args.data} does not exist")
        weights = str(Path(args.weights).resolve())
        failed = []
        for name in [] if args.collect else names:
            for seed in seeds:
                for modality in modalities:
                    run = Run(DATASETS[name], seed, modality)
                    try:
                        run_one(run, args.data.resolve(), weights, args.work.resolve(), stages, args.flow_encoder)
                    except LrcnError as err:
                        if not args.keep_going:
                            raise
                        failed.append(run.name)
                        print(f"lrcn: {run.name}: {err}", file=sys.stderr, flush=True)
        if args.summary:
            summary = summarise(args.work.resolve(), args.cost, args.flow_encoder, args.summary.name)
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(summary, indent=1) + "\n")
            print(f"{len(summary['runs'])} runs written to {args.summary}")
        if failed:
            print(f"lrcn: failed: {', '.join(failed)}", file=sys.stderr)
            return 1
    except LrcnError as err:
        print(f"lrcn: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
