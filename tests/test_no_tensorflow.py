"""The runtime under stream/ never imports TensorFlow, and runs an exported bundle without it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tests.edge_install import BLOCK


ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import lrcn.stream
names = [f"lrcn.stream.{m.name}" for m in pkgutil.iter_modules(lrcn.stream.__path__)]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx") or m.startswith("lrcn.models"))}))
"""

# A finder that makes TensorFlow (and what pulls it in) unimportable, as on an edge box.

RUN_BUNDLE = (
    BLOCK
    + """
import json, numpy as np
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.video import read_frames
bundle = load_runtime_bundle(sys.argv[1])
frames = read_frames(sys.argv[2], bundle.meta.spec.input_size, bundle.meta.spec.fps)
print(json.dumps(bundle.clip_probabilities(frames[:bundle.meta.spec.clip_length]).tolist()))
"""
)


def python(code, *args):
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_stream_module_leaves_tensorflow_out():
    found = python(IMPORT_ALL)
    assert "lrcn.stream.encoders" in found["modules"] and "lrcn.stream.heads" in found["modules"]
    assert found["loaded"] == []


def test_an_exported_bundle_runs_with_tensorflow_unimportable(exported_seed):
    from lrcn.stream.runtime_bundle import load_runtime_bundle

    bundle, frames, video = exported_seed
    probabilities = python(RUN_BUNDLE, bundle, video)
    expected = load_runtime_bundle(bundle).clip_probabilities(frames[:4])
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
