"""`python -m lrcn.tools.evidence.restructure_ab`: the same speed before and after a change that
means to move code, not to change what runs per frame. Interleaved, so a loaded machine hits both.

    python -m lrcn.tools.evidence.restructure_ab --before 3b863ed --after-here --rounds 24 \\
        --out docs/results/restructure_ab.json

Each revision is exported with `git archive` (`--after-here`: this checkout as it is, uncommitted
changes included) and imported as `lrcn` through a folder of links, as pyproject.toml maps the
package, without installing it. One bundle, the seed model built by the "before" code unless
`--bundle` names one, is measured by each revision's own `lrcn bench --quick --no-startup
--no-capacity`, in a subprocess, before and after in the order ABBA BAAB... so that a drift in
load falls on both. From each bench.json it keeps the head step, the encoder call and the CPU per
frame of the scheduler and of the whole Pipeline; the table gives each metric's median per side
and after over before.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.checkout import find_checkout
from lrcn.tools.evidence.harness.procfs import load_average, machine_info
from lrcn.tools.evidence.harness.script import measure_and_save

TOOL = "python -m lrcn.tools.evidence.restructure_ab"
COMMAND = f"{TOOL} --before 3b863ed --after-here --rounds 24 --out docs/results/restructure_ab.json"
BENCH_FLAGS = ("--quick", "--no-startup", "--no-capacity")  # flags every revision's bench has had
# The bench module by layout, newest first: tools were flat before they were grouped by role.
BENCH_MODULES = {"tools/evidence/bench.py": "lrcn.tools.evidence.bench", "tools/bench.py": "lrcn.tools.bench"}
PACKAGE_FOLDERS = ("stream", "models", "tools")

# metric: (what it is, where bench.json has it)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "head_exact_cpu_ms": ("head step, exact window, CPU ms per frame", ("cost", "head_exact", "cpu_ms")),
    "head_continuous_cpu_ms": ("head step, continuous, CPU ms per frame", ("cost", "head_continuous", "cpu_ms")),
    "encoder_b1_ms": ("encoder call, batch 1, ms", ("cost", "encoder_b1", "ms")),
    "encoder_b1_cpu_ms": ("encoder call, batch 1, CPU ms", ("cost", "encoder_b1", "cpu_ms")),
    "encoder_b16_ms": ("encoder call, batch 16, ms", ("cost", "encoder_b16", "ms")),
    "encoder_b16_cpu_ms": ("encoder call, batch 16, CPU ms", ("cost", "encoder_b16", "cpu_ms")),
    "exact_cpu_ms": ("scheduler, exact window, CPU ms per frame", ("cost", "exact", "cpu_ms")),
    "continuous_cpu_ms": ("scheduler, continuous, CPU ms per frame", ("cost", "continuous", "cpu_ms")),
    "exact_vs_bare": ("scheduler exact over bare encoder + head (ms)", ("cost", "exact_vs_bare")),
    "continuous_vs_bare": ("scheduler continuous over bare encoder + head (ms)", ("cost", "continuous_vs_bare")),
    "pipeline_cpu_ms": ("Pipeline, one 25 fps stream, CPU ms per frame", ("pipeline", "cpu_ms_per_frame")),
    "pipeline_over_bare": ("Pipeline CPU over bare encoder + head CPU", ("pipeline", "cpu_over_bare")),
}

# The figures that count CPU time: the ones a busy machine moves least (wall-clock ms wait for a core).
CPU_METRICS = {name for name in METRICS if "cpu" in name} | {"pipeline_over_bare"}


@dataclass(frozen=True)
class Revision:
    """What the result says of one side: the revision asked for, what it is, and its bench."""

    rev: str
    commit: str
    subject: str
    uncommitted_changes: bool
    bench_module: str


@dataclass(frozen=True)
class Side:
    """One revision ready to run: its code's root and the folder to put on PYTHONPATH."""

    name: str
    revision: Revision
    root: Path
    pythonpath: Path

    @property
    def label(self) -> str:
        return f"{self.name}, {self.revision.rev}"


# -- the revisions -----------------------------------------------------------------------------


def git(checkout: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise LrcnError(f"git {' '.join(args)}: {reason}")
    return done.stdout.strip()


def resolve(checkout: Path, rev: str) -> tuple[str, str]:
    """(full commit, subject) of `rev`; a one-line error where this clone does not have it."""
    try:
        commit = git(checkout, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except LrcnError:
        raise LrcnError(f"no revision {rev!r} in {checkout} (a shallow clone? `git fetch --unshallow`)") from None
    return commit, git(checkout, "log", "-1", "--format=%s", commit)


def export(checkout: Path, commit: str, folder: Path) -> Path:
    """The tree of `commit`, written into `folder` by `git archive`."""
    archive = folder.with_suffix(".tar")
    git(checkout, "archive", "--format=tar", "-o", str(archive), commit)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()
    return folder


def package_links(root: Path, folder: Path) -> Path:
    """`folder`/lrcn, linking to `root`'s package folders as pyproject.toml maps them: the folder to
    put on PYTHONPATH."""
    package = folder / "lrcn"
    package.mkdir(parents=True)
    (package / "__init__.py").symlink_to(root / "package" / "__init__.py")
    for name in PACKAGE_FOLDERS:
        (package / name).symlink_to(root / name, target_is_directory=True)
    return folder


def bench_module(root: Path) -> str:
    """The module of `lrcn bench` in the code at `root`, found by which file exists."""
    for path, module in BENCH_MODULES.items():
        if (root / path).is_file():
            return module
    raise LrcnError(f"no bench module in {root} (looked for {', '.join(BENCH_MODULES)})")


def child_env(side: Side) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(side.pythonpath)}


def check_imports_itself(side: Side) -> None:
    """The subprocess must run this side's code, not an installed copy that shadows it."""
    probe = "import lrcn.stream, lrcn.tools; print(lrcn.stream.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(side), cwd=side.root
    )
    found = Path(done.stdout.strip()).resolve() if done.returncode == 0 else None
    if found != (side.root / "stream" / "__init__.py").resolve():
        raise LrcnError(f"{side.label}: imports lrcn.stream from {found}, not from {side.root}")


def prepare(name: str, checkout: Path, rev: str | None, scratch: Path) -> Side:
    """Side `name` of the comparison: `rev` exported into `scratch`, or this checkout when rev is None."""
    if rev is None:
        commit, subject = resolve(checkout, "HEAD")
        root, dirty, label = checkout, bool(git(checkout, "status", "--porcelain")), "here"
    else:
        commit, subject = resolve(checkout, rev)
        root, dirty, label = export(checkout, commit, scratch / f"{name}-code"), False, rev
    pythonpath = package_links(root, scratch / f"{name}-path")
    side = Side(name, Revision(label, commit, subject, dirty, bench_module(root)), root, pythonpath)
    check_imports_itself(side)
    return side


# -- measuring ---------------------------------------------------------------------------------


def run_child(side: Side, argv: list[str], what: str, timeout_s: float) -> None:
    try:
        done = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            env=child_env(side),
            cwd=side.root,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise LrcnError(f"{what} ({side.label}) took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise LrcnError(f"{what} ({side.label}) failed: {reason}")


def build_bundle(side: Side, out: Path, video: Path | None) -> Path:
    """The seed bundle (as `lrcn bench --seed-model` builds it), made by `side`'s code, which the
    other side can read (newer code reads older bundles)."""
    script = (
        "import sys; from pathlib import Path; from lrcn.models.seed_bundle import build_seed_bundle; "
        "build_seed_bundle(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)"
    )
    run_child(side, ["-c", script, str(out), *([str(video)] if video else [])], "building the seed bundle", 1800)
    return out


def figures(bench: dict) -> dict[str, float]:
    """The METRICS that `bench` (one bench.json) has."""
    found = {}
    for name, (_, path) in METRICS.items():
        value = bench
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            found[name] = value
    return found


def bench_once(side: Side, bundle: Path, out: Path, extra: list[str]) -> dict:
    """One `lrcn bench` of `side`'s code on `bundle`: its figures, the load around it, its wall time."""
    load, started = load_average(), time.monotonic()
    argv = ["-m", side.revision.bench_module, str(bundle), *BENCH_FLAGS, *extra, "--out", str(out)]
    run_child(side, argv, "lrcn bench", 900)
    bench = json.loads((out / "bench.json").read_text())
    return {
        "side": side.name,
        "load_before": load,
        "load_after": load_average(),
        "wall_s": round(time.monotonic() - started, 1),
        "model": bench.get("model"),
        "figures": figures(bench),
    }


def abba(rounds: int) -> list[str]:
    """The order of the runs: each round a pair, before first in even rounds, after first in odd ones.

    >>> abba(3)
    ['before', 'after', 'after', 'before', 'before', 'after']
    """
    pairs = [("before", "after"), ("after", "before")]
    return [name for i in range(rounds) for name in pairs[i % 2]]


def summarise(runs: list[dict]) -> dict:
    """Per metric both sides' values in round order, their medians, after over before, and the
    median over rounds of each round's after over before (the pair of runs next to each other, so
    the least touched by a change in load); a metric only where every run has it."""
    summary = {}
    for name, (label, _) in METRICS.items():
        if not all(name in run["figures"] for run in runs):
            continue
        by_round = {(run["round"], run["side"]): run["figures"][name] for run in runs}
        rounds = sorted({run["round"] for run in runs})
        values = {side: [by_round[r, side] for r in rounds] for side in ("before", "after")}
        medians = {side: statistics.median(v) for side, v in values.items()}
        summary[name] = {
            "label": label,
            **values,
            "before_median": round(medians["before"], 4),
            "after_median": round(medians["after"], 4),
            "after_over_before": round(medians["after"] / medians["before"], 3),
            "paired_after_over_before": round(
                statistics.median(a / b for a, b in zip(values["after"], values["before"])), 3
            ),
        }
    return summary


def measure(args: argparse.Namespace, command: str) -> dict:
    if args.rounds < 1:
        raise LrcnError("--rounds must be >= 1")
    checkout = find_checkout()
    if checkout is None or not (checkout / ".git").exists():
        raise LrcnError("run it inside a git clone of lrcn-stream: it exports the revisions with git archive")
    with tempfile.TemporaryDirectory(prefix="lrcn-ab-") as folder:
        scratch = Path(folder)
        sides = {
            "before": prepare("before", checkout, args.before, scratch),
            "after": prepare("after", checkout, None if args.after_here else args.after, scratch),
        }
        if args.bundle:
            bundle = Path(args.bundle).resolve()
            if not (bundle / "model.onnx").is_file():
                raise LrcnError(f"{bundle} has no model.onnx, which lrcn bench times as its naive baseline")
        else:
            from lrcn.tools.evidence.harness.servers import SHARED_VIDEO

            video = SHARED_VIDEO if SHARED_VIDEO.is_file() else None
            print(
                f"{TOOL}: building the seed bundle with the before code ({sides['before'].revision.rev})",
                file=sys.stderr,
            )
            bundle = build_bundle(sides["before"], scratch / "seed-112", video)
        extra = ["--latency-seconds", str(args.latency_seconds)] if args.latency_seconds else []
        runs = []
        for i, name in enumerate(abba(args.rounds)):
            print(f"{TOOL}: run {i + 1}/{2 * args.rounds}, {sides[name].label}", file=sys.stderr, flush=True)
            run = bench_once(sides[name], bundle, scratch / f"bench-{i}", extra)
            runs.append({"round": i // 2 + 1, **run})
    return {
        "what": "lrcn bench --quick --no-startup --no-capacity of each revision's own code on one bundle, "
        "interleaved ABBA; medians per side and after over before",
        "command": command,
        "before": asdict(sides["before"].revision),
        "after": asdict(sides["after"].revision),
        "bundle": str(args.bundle) if args.bundle else "the seed bundle, built by the before code",
        "model": runs[0]["model"],
        "bench_flags": [*BENCH_FLAGS, *extra],
        "machine": machine_info(runtime=True),
        "rounds": args.rounds,
        "runs": runs,
        "metrics": summarise(runs),
    }


# -- the table ---------------------------------------------------------------------------------


def fixed(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(result: dict, per_run: bool = True) -> str:
    """Markdown: each metric's median before and after and their ratios; with `per_run` each side's
    values round by round, else their range."""

    def values(vs: list[float]) -> str:
        return " ".join(fixed(v) for v in vs) if per_run else f"{fixed(min(vs))} to {fixed(max(vs))}"

    detail = "values, round by round" if per_run else "range"
    header = ["metric", "before median", "after median", "after / before", "same, median of the rounds' pairs"]
    header += [f"before {detail}", f"after {detail}"]
    rows = [
        [m["label"], fixed(m["before_median"]), fixed(m["after_median"]), f"{m['after_over_before']:.3f}"]
        + [f"{m['paired_after_over_before']:.3f}", values(m["before"]), values(m["after"])]
        for m in result["metrics"].values()
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown(result: dict) -> str:
    """The docs' table (docs/evidence/performance.md, through `python -m lrcn.tools.evidence.report`)."""
    before, after = result["before"], result["after"]
    loads = [run["load_before"][0] for run in result["runs"]] + [run["load_after"][0] for run in result["runs"]]
    after_rev = after["commit"][:7] + (" with uncommitted changes" if after["uncommitted_changes"] else "")
    paired = [m["paired_after_over_before"] for name, m in result["metrics"].items() if name in CPU_METRICS]
    return (
        f"Before: {before['commit'][:7]}, after: {after_rev}; {result['model']}; {result['rounds']} rounds "
        f"of each, ABBA; {result['machine']['cpu']}, {result['machine']['cores']} cores, 1-minute load "
        f"{min(loads):g} to {max(loads):g} during the runs.\n\n" + table(result, per_run=False) + "\n\n"
        f"The CPU figures' paired after / before: {min(paired):.3f} to {max(paired):.3f}."
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the revision before the change (anything git names)")
    after = parser.add_mutually_exclusive_group(required=True)
    after.add_argument("--after", help="the revision after the change")
    after.add_argument("--after-here", action="store_true", help="this checkout as it is, uncommitted changes too")
    parser.add_argument("--rounds", type=int, default=8, help="runs of each revision (default 8)")
    parser.add_argument("--bundle", help="an exported bundle with model.onnx (default: build the seed bundle)")
    parser.add_argument("--latency-seconds", type=float, help="passed to lrcn bench (default its --quick 3 s)")
    parser.add_argument("--out", type=Path, default=Path("restructure_ab.json"), help="the JSON written")
    args = parser.parse_args(argv)
    command = shlex.join([*TOOL.split(), *argv])
    return measure_and_save(TOOL, lambda: measure(args, command), table, args.out)


if __name__ == "__main__":
    sys.exit(main())
