"""The examples in the modules' docstrings run as tests, imported by their installed names
(`lrcn.stream.heads`, not `stream.heads`), so each module is loaded once. Only modules with an
example are items (found in the source, without importing anything). models/ needs TensorFlow
and a few tools need optional parts (GStreamer's bindings): a module whose import misses such a
package that is not installed is skipped with the reason; any other ImportError fails."""

import ast
import doctest
import importlib
import importlib.util

import pytest

from tests.paths import ROOT

PACKAGES = {"lrcn.stream": ROOT / "stream", "lrcn.models": ROOT / "models", "lrcn.tools": ROOT / "tools"}


def has_example(source: str) -> bool:
    """A docstring (module, class or function, at any depth) holds a `>>>` line."""
    nodes = [tree := ast.parse(source)] + [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    return any(">>> " in (ast.get_docstring(node, clean=False) or "") for node in nodes)


def modules_with_examples() -> list[str]:
    names = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            if has_example(path.read_text(encoding="utf-8")):
                parts = path.relative_to(folder).with_suffix("").parts
                names.append(".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)]))
    return sorted(names)


def missing_optional_package(err: ImportError) -> str | None:
    """The absent third-party package an import failed on, or None (a broken import of ours)."""
    top = (getattr(err, "name", None) or "").split(".")[0]
    if not top or top == "lrcn" or not isinstance(err, ModuleNotFoundError):
        return None
    return top if importlib.util.find_spec(top) is None else None


# In a process of its own: importing every module here would register the built-in modalities
# in file order, not the registry's, and change what stream.modalities' own example prints.
DOCTEST_VIEW = """
import doctest, importlib, json, pkgutil, sys
from tests.test_doctests import PACKAGES, missing_optional_package
found, importable = [], []
for package in PACKAGES:
    path = importlib.import_module(package).__path__
    for name in [package] + [info.name for info in pkgutil.walk_packages(path, package + ".")]:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            if missing_optional_package(err) is None:
                raise
            continue
        importable.append(name)
        if any(t.examples for t in doctest.DocTestFinder().find(module)):
            found.append(name)
print(json.dumps({"found": found, "importable": importable}))
"""


def test_the_source_search_finds_exactly_the_modules_where_doctest_finds_examples():
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", DOCTEST_VIEW], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    view = json.loads(run.stdout.splitlines()[-1])
    assert set(modules_with_examples()) & set(view["importable"]) == set(view["found"])
    assert "lrcn.stream.bundle" in view["found"] and "lrcn.stream.errors" not in view["found"]


@pytest.mark.parametrize("name", modules_with_examples())
def test_the_docstring_examples_hold(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        package = missing_optional_package(err)
        if package is None:
            raise
        pytest.skip(f"{name} needs {package}, not installed here")
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name}: the source has a >>> line but doctest found no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


@pytest.mark.parametrize("first", ["lrcn.stream.modalities.flow", "lrcn.stream.modalities.rgb"])
def test_the_modalities_example_holds_whichever_modality_is_imported_first(first):
    """The registry lists built-in modalities in BUILT_IN's order, not in the order of import."""
    import subprocess
    import sys

    code = f"import doctest, {first}, lrcn.stream.modalities as m; print(doctest.testmod(m).failed)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0 and run.stdout.split()[-1] == "0", run.stdout + run.stderr
