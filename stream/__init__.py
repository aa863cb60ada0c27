"""The edge runtime: sources, ring, scheduler, encoder backends, head, publisher.

Nothing here imports TensorFlow.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lrcn-stream")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
