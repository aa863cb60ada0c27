"""lrcn-stream: real-time activity recognition with an LRCN. The package is lrcn.stream (the
runtime, no TensorFlow), lrcn.models (training) and lrcn.tools (the `lrcn` command); its root
holds only the Python API's names, loaded on first use so `import lrcn` costs nothing:

    import lrcn
    recognizer = lrcn.Recognizer("bundles/mine")      # docs/guide/python-api.md
"""

API = {
    "Recognizer": "lrcn.stream.recognizer",
    "Prediction": "lrcn.stream.recognizer",
    "FrameFeed": "lrcn.stream.recognizer",
    "Runner": "lrcn.stream.recognizer",
    "StreamConfig": "lrcn.stream.pipeline",
    "EventRules": "lrcn.stream.events",
    "LrcnError": "lrcn.stream.errors",
}
__all__ = [*sorted(API)]


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'lrcn' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(API[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
