"""The callback sink: every message handed to Python functions in this process, decoded.

It is what `lrcn.Recognizer.run` (stream.recognizer) serves into instead of a ZeroMQ port. Each
message is the same schema v1 JSON the other sinks send, decoded once (`stream.messages.decode`)
and given to the function for its kind:

    on_prediction(message, frame)   pred/<stream>; `frame` from `frames(stream)`, or None
    on_event(message)               event/<stream>: start, update, end
    on_status(message)              status/<stream>

The functions run on the pipeline's inference thread, in order: they must return quickly (a slow
one delays every stream; a live source then drops frames at its ring, counted). A function that
raises does not stop the pipeline: the message counts in `failed`, and `problem` says why.

A deployment file cannot name functions, so `type = "callback"` in a [[sink]] table is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.stats import SinkStats
from lrcn.stream.sinks import Outgoing, Sink, register

CALLBACKS = {messages.PRED: "on_prediction", messages.EVENT: "on_event", messages.STATUS: "on_status"}


@register
class CallbackSink(Sink):
    name = "callback"

    def __init__(
        self,
        *,
        on_prediction: Callable | None = None,
        on_event: Callable | None = None,
        on_status: Callable | None = None,
        frames: Callable[[str], np.ndarray | None] | None = None,
    ):
        given = {messages.PRED: on_prediction, messages.EVENT: on_event, messages.STATUS: on_status}
        for kind, function in given.items():
            if function is not None and not callable(function):
                raise LrcnError(f"callback sink: {CALLBACKS[kind]} must be a function, got {type(function).__name__}")
        self._functions = {kind: function for kind, function in given.items() if function is not None}
        self.kinds = frozenset(self._functions)
        self._frames = frames
        self.sent = 0
        self.failed = 0
        self.problem = ""

    @classmethod
    def from_config(cls, options: Mapping, *, node: str) -> CallbackSink:
        unknown = sorted(set(options) - {*CALLBACKS.values(), "frames"})
        if unknown or not any(callable(options.get(name)) for name in CALLBACKS.values()):
            raise LrcnError(
                "a callback sink takes Python functions (on_prediction, on_event, on_status): "
                "it is for lrcn.Recognizer.run, not a deployment file"
            )
        return cls(**options)

    def send(self, message: Outgoing) -> bool:
        function = self._functions.get(message.kind)
        if function is None:
            return True
        try:
            decoded = messages.decode(message.frames)
            if message.kind == messages.PRED:
                frame = self._frames(message.stream) if self._frames is not None and message.stream else None
                function(decoded, frame)
            else:
                function(decoded)
        except Exception as err:  # noqa: BLE001 - the caller's bug must not stop the pipeline (counted, said)
            self.failed += 1
            self.problem = f"{CALLBACKS[message.kind]} raised {type(err).__name__}: {' '.join(str(err).split())}"
            return True
        self.sent += 1
        return True

    def stats(self) -> SinkStats:
        return SinkStats(sent=self.sent, dropped=0, failed=self.failed, problem=self.problem)

    def describe(self) -> str:
        return f"callbacks ({', '.join(CALLBACKS[kind] for kind in sorted(self.kinds))})"
