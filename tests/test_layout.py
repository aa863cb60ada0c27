"""The code's shape, checked: one import package (`lrcn`), and no import cycle among its
modules, counting the imports inside functions too (a lazy import hides a cycle, it does not
remove it)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"package": "lrcn", "stream": "lrcn.stream", "models": "lrcn.models", "tools": "lrcn.tools"}


def project_modules() -> dict[str, Path]:
    """Installed name -> file, for every module of package/ (the root), stream/, models/ and tools/."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((package, *parts))] = path
    return modules


def imported_names(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module or name, line) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            found.append((base, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name, _ in imported_names(path, module):
            while name and name not in modules:  # a name inside a module -> that module
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("lrcn."):
                edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_code_imports_itself_only_as_lrcn():
    wrong = []
    for path in sorted(
        [
            *ROOT.glob("stream/**/*.py"),
            *ROOT.glob("models/**/*.py"),
            *ROOT.glob("tools/**/*.py"),
            *ROOT.glob("tests/**/*.py"),
        ]
    ):
        for name, line in imported_names(path, "lrcn.x.y"):
            if name.split(".")[0] in PACKAGES:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_among_the_modules():
    graph = import_graph()
    assert "lrcn.stream.errors" in graph and graph["lrcn.stream.pipeline"], "the graph was read"
    assert cycles(graph) == []


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
