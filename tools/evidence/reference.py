"""The generated reference tables of docs/reference/: every `lrcn` command and its arguments, read
from the argparse parsers the command line builds, and every metric of the HTTP port, read from
its definitions in stream/metrics.py. `python -m lrcn.tools.evidence.report` writes them into the pages
(`--check` fails when a page differs from the code), as it does the settings tables.

>>> ["`lrcn_frames_decoded_total`", "counter", "`stream`"] in [row[:3] for row in metric_rows()]
True
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import lrcn.stream.metrics

FAMILIES = {
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "InfoMetricFamily": "info",
    "HistogramMetricFamily": "histogram",
    "histogram_family": "histogram",
}
SUFFIX = {"counter": "_total", "info": "_info"}  # what prometheus_client appends to a family's samples


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


# ---------------------------------------------------------------- metrics, from stream/metrics.py's source


def _constants(node: ast.AST) -> list:
    """The literal strings of a list or tuple node ([] for anything else)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return []


def metric_rows(source: Path | None = None) -> list[list[str]]:
    """One row per metric family the collector yields: name as scraped, type, labels, help."""
    path = Path(source or lrcn.stream.metrics.__file__)
    tree = ast.parse(path.read_text())
    assigned = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    loops = {}  # id of a family's call inside a `for name, help, ... in ...` loop -> the tuples it takes
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Tuple):
            items = assigned.get(node.iter.id) if isinstance(node.iter, ast.Name) else node.iter
            if isinstance(items, ast.Tuple):
                for inner in ast.walk(node):
                    loops[id(inner)] = [_constants(element) for element in items.elts]
    wrappers = {
        arg.arg
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in FAMILIES
        for arg in node.args.args
    }
    rows = []
    for node in sorted(ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FAMILIES):
            continue
        kind = FAMILIES[node.func.id]
        labels = _constants(
            next(
                (k.value for k in node.keywords if k.arg == "labels"),
                node.args[2] if node.func.id == "histogram_family" else ast.List(elts=[]),
            )
        )
        name, documentation = node.args[0], node.args[1]
        if isinstance(name, ast.Constant) and isinstance(documentation, ast.Constant):
            named = [(name.value, documentation.value)]
        elif isinstance(name, ast.Name) and id(node) in loops:
            named = [(item[0], item[1]) for item in loops[id(node)]]
        elif isinstance(name, ast.Name) and name.id in wrappers:
            continue  # inside a helper such as histogram_family, whose callers name the metric
        else:
            raise ValueError(f"{path}:{node.lineno}: a metric whose name is not written out")
        rows += [
            [f"`{n}{SUFFIX.get(kind, '')}`", kind, ", ".join(f"`{label}`" for label in labels) or "-", _cell(d)]
            for n, d in named
        ]
    return rows


def metrics_reference() -> str:
    return _table(["metric", "type", "labels", "meaning"], metric_rows())


# ---------------------------------------------------------------- the command line, from its parsers


def _arguments(parser: argparse.ArgumentParser) -> list[list[str]]:
    formatter = argparse.HelpFormatter(parser.prog)
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = ", ".join(action.option_strings) or action.metavar or action.dest
        meaning = formatter._expand_help(action) if action.help else ""
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            meaning += f" (one of: {', '.join(map(str, action.choices))})"
        default = action.default
        shown = "-" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
        rows.append([f"`{name}`", shown, _cell(meaning)])
    return rows


def cli_reference() -> str:
    """Every command: a list that links to each, then each one's description and arguments."""
    from lrcn.tools.cli.commands import COMMANDS

    # Built-in commands only: a process may have registered more (a plugin, a test's own command).
    parsers = {name: COMMANDS.own_parser(name) for name in COMMANDS.names() if name in COMMANDS.built_in}
    helps = {name: _cell(COMMANDS._commands[name].help or parsers[name].description or "") for name in parsers}
    parts = [
        _table(
            ["command", "what it does"],
            [[f"[`lrcn {name}`](#lrcn-{name.replace(' ', '-')})", helps[name]] for name in parsers],
        )
    ]
    for name, parser in parsers.items():
        description = _cell(parser.description or "") or helps[name]
        parts.append(
            f"\n## `lrcn {name}`\n\n"
            + (description + "\n\n" if description else "")
            + _table(["argument", "default", "meaning"], _arguments(parser))
        )
    return "".join(parts)


def cli_reference_fresh() -> str:
    """`cli_reference()` as a new process renders it: the parsers' choices come from registries a
    long-lived process (a test run) may have added to, so the page is rendered where none has."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.evidence.reference"], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.removesuffix("\n")


if __name__ == "__main__":
    print(cli_reference())
