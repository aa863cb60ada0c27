"""The examples in the modules' docstrings run as tests, imported by their installed names
(`lrcn.stream.heads`, not `stream.heads`), so each module is loaded once. models/ needs
TensorFlow, and a few tools need optional parts (GStreamer's bindings); those are skipped
with the reason."""
import doctest
import importlib
import pkgutil

import pytest

import lrcn.models
import lrcn.stream
import lrcn.tools


def module_names() -> list[str]:
    names = []
    for package in (lrcn.stream, lrcn.models, lrcn.tools):
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(names)


@pytest.mark.parametrize("name", module_names())
def test_the_docstring_examples_hold(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:   # an optional part: TensorFlow for models/, PyGObject for GStreamer
        pytest.skip(f"{name} needs {err.name or err}")
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
