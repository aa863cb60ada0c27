"""What a capture backend is, and the registry that finds one by a source's scheme.

A capture is one connection to a source: it opens in its constructor, yields decoded frames
with their presentation times, converts the frames it is asked for to RGB at the model size,
and closes. Everything else (sampling, pacing, reconnecting, status, the ring) is the
supervisor's, written once in `stream.sources.supervisor`. A new kind of source is one module
with one `@register`ed Capture subclass:

    @register
    class MyCapture(Capture):
        schemes = ("mine",)                    # mine://... sources come here
        def __init__(self, uri, size, options, stopping): ...
        def frames(self): yield pts, frame    # pts in seconds, or None
        def to_rgb(self, frame): return image  # [H, W, 3] uint8
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lrcn.stream.credentials import redact
from lrcn.stream.errors import LrcnError
from lrcn.stream.registry import Registry
from lrcn.stream.sources.options import SourceOptions

CAMERA, FILE = "camera", "file"


class CaptureError(Exception):
    """A connection could not be made or broke; `reason` is one line, credentials redacted.
    `fatal` when trying again cannot help (a decoder this machine lacks): the stream fails. A crop
    outside the frame is not fatal: a camera's resolution can change back."""

    def __init__(self, reason: str, fatal: bool = False):
        reason = redact(reason)
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class Capture:
    """One open connection to a source (see the module docstring)."""

    schemes: ClassVar[tuple[str, ...]] = ()
    description: str = ""  # one line for the `connected` status: size, codec, rate, decoder
    fps: float | None = None  # the source's own frame rate, when it states one
    timestamped: bool = True  # frames carry presentation times (else: timed by arrival or position)
    # Clip recording (stream.recording): a capture that `records` demuxes compressed packets of its
    # video stream (`video_stream`, a PyAV stream) and hands each to `packet_tap` when one is set.
    records: ClassVar[bool] = False
    video_stream: Any = None
    packet_tap: Callable[[Any], None] | None = None

    @classmethod
    def is_live(cls, uri: str) -> bool:
        """Live sources come and go: they are retried forever and never paced. The others
        (files, finite generated streams) end, can loop, and are paced or read losslessly."""
        return True

    @classmethod
    def check(cls, uri: str, size: tuple[int, int], options: SourceOptions) -> None:
        """Raise LrcnError with one line for what can be known wrong before any thread starts."""

    def __init__(
        self, uri: str, size: tuple[int, int], options: SourceOptions, stopping: threading.Event | None = None
    ):
        raise NotImplementedError

    def frames(self) -> Iterator[tuple[float | None, Any]]:
        """(presentation time in seconds, or None where a frame has none, frame) in presentation
        order, until the source ends; raises CaptureError when a read fails or times out."""
        raise NotImplementedError

    def to_rgb(self, frame: Any) -> np.ndarray:
        """The frame cropped and scaled to the model size, [H, W, 3] uint8 RGB."""
        raise NotImplementedError

    def original(self, frame: Any) -> Any:
        """The frame at the source's resolution for snapshots (stream.snapshots.Original), by
        reference, never a copy; None where a capture keeps none."""
        return None

    def close(self) -> None:
        pass

    @classmethod
    def check_first_frame(cls, uri: str, size: tuple[int, int], options: SourceOptions) -> None:
        """Open the source and convert its first frame, raising LrcnError with one line if that
        fails: for a file, damage or a crop outside the frame is then reported before any thread
        starts."""
        try:
            capture = cls(uri, size, options)
        except CaptureError as err:
            shown = redact(uri)
            raise LrcnError(err.reason if shown in err.reason else f"{shown}: {err.reason}") from None
        try:
            for _, frame in capture.frames():
                capture.to_rgb(frame)
                return
            raise LrcnError(f"no decodable frame in video: {redact(uri)}")
        except CaptureError as err:
            raise LrcnError(f"{redact(uri)}: {err.reason}") from None
        finally:
            capture.close()


# The package's __init__ imports the built-in capture modules, so nothing is loaded on demand.
CAPTURES: Registry[type[Capture]] = Registry("source scheme", built_in=())


def register(cls: type[Capture]) -> type[Capture]:
    """Class decorator: the capture for each of its `schemes`."""
    for scheme in cls.schemes:
        CAPTURES.add(scheme, cls)
    return cls


# A URL scheme (RFC 3986) of two or more characters: one letter is a Windows drive (C:).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def scheme_of(uri: str) -> str:
    """The registry key of a source: its URL scheme, `camera` for an index or /dev/video*, else
    `file` (a path, or a file: URL). `javascript:...` or `foo://...` is an error, not a missing file.

    >>> [scheme_of(u) for u in ("0", "/dev/video2", "RTSP://cam/live", "pattern:25", "clip.avi", "file:///a.avi")]
    ['camera', 'camera', 'rtsp', 'pattern', 'file', 'file']
    """
    if uri.isdigit() or uri.startswith("/dev/video"):
        return CAMERA
    match = _SCHEME.match(uri)
    scheme = match[1].lower() if match else ""
    if scheme in CAPTURES:
        return scheme
    if "://" in uri or (match and not Path(uri).exists()):  # a file may have a colon in its name
        raise LrcnError(
            f"unsupported source URL scheme {scheme or uri.split(':', 1)[0]!r} in {redact(uri)!r} "
            f"(known: {', '.join(sorted(s for s in CAPTURES.names() if s not in (CAMERA, FILE)))}, "
            f"file://, a file or a camera index)"
        )
    return FILE


def capture_class(uri: str) -> type[Capture]:
    return CAPTURES.get(scheme_of(uri))


def schemes() -> list[str]:
    return sorted(CAPTURES.names())
