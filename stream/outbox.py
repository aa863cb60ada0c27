"""The outbox: numbers and encodes each message once and hands it to every sink.

`seq` counts per topic across all sinks, so the same message carries the same `seq` on ZeroMQ,
MQTT and in a JSONL file, and a gap in any of them means that sink dropped something.

>>> from lrcn.stream.sinks.jsonl import JsonlSink                                  # doctest: +SKIP
>>> outbox = Outbox([JsonlSink("/var/log/lrcn/messages.jsonl")], node="edge1") # doctest: +SKIP
>>> outbox.publish_status("door", "connected", "1920x1080 h264 at 25.0 fps")  # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


from lrcn.stream import messages
from lrcn.stream.credentials import redact
from lrcn.stream.message_schema import ActionEvent
from lrcn.stream.sinks import Outgoing, Sink
from lrcn.stream.stats import SinkStats

log = logging.getLogger("lrcn.sinks")

# The Sink method that takes each kind of message.
SINK_METHOD = {
    messages.PRED: "prediction",
    messages.STATUS: "status",
    messages.EVENT: "event",
    messages.HEARTBEAT: "heartbeat",
}


def default_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Outbox:
    """Safe to call from several threads: numbering and hand-over are serialised by one lock."""

    def __init__(self, sinks: Sequence[Sink], node: str | None = None):
        self.sinks = list(sinks)
        self.node = node or default_node()
        self._seq: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._closed = False
        self._names = self.names()
        self._failures_logged = [0] * len(self.sinks)  # per sink: failures already in the log
        self._next_failure_log = [0.0] * len(self.sinks)  # per sink: time.monotonic() it may log again

    def publish_prediction(
        self,
        stream: str,
        *,
        frame_index: int,
        window: tuple[int, int],
        label: str,
        score: float,
        top_k: Iterable[tuple[str, float]],
        captured_at: float,
        probabilities: dict[str, float] | None = None,
        stream_time: float | None = None,
        novelty: float | None = None,
        motion: float | None = None,
    ) -> bool:
        """Send one prediction; `captured_at` is the frame's time.monotonic() capture stamp.
        False if any sink dropped it."""
        now_wall, now_mono = time.time(), time.monotonic()
        latency_s = max(0.0, now_mono - captured_at)
        return self._hand_over(
            messages.PRED,
            stream,
            lambda seq: messages.encode_prediction(
                stream,
                seq=seq,
                frame_index=frame_index,
                window=window,
                label=label,
                score=score,
                top_k=top_k,
                capture_time=now_wall - latency_s,
                publish_time=now_wall,
                latency_ms=latency_s * 1000.0,
                probabilities=probabilities,
                stream_time=stream_time,
                novelty=novelty,
                motion=motion,
            ),
        )

    def publish_status(self, stream: str, state: str, reason: str = "", stats: dict | None = None) -> bool:
        """Send one status; credentials in `reason` are redacted (stream.credentials)."""
        reason = redact(reason)
        return self._hand_over(
            messages.STATUS,
            stream,
            lambda seq: messages.encode_status(
                stream, seq=seq, state=state, reason=reason, stats=stats, publish_time=time.time()
            ),
        )

    def publish_event(self, stream: str, event: ActionEvent | Mapping[str, Any]) -> bool:
        """Send one action event of stream.events (a start, update or end)."""
        return self._hand_over(
            messages.EVENT,
            stream,
            lambda seq: messages.encode_event(stream, seq=seq, event=event, publish_time=time.time()),
        )

    def heartbeat(self, streams: Sequence[str] = (), interval_s: float = 1.0) -> bool:
        """Send a heartbeat; call it every `interval_s` (the value tells subscribers what to expect)."""
        return self._hand_over(
            messages.HEARTBEAT,
            None,
            lambda seq: messages.encode_heartbeat(
                seq=seq, publish_time=time.time(), interval_s=interval_s, streams=streams, node=self.node
            ),
        )

    def names(self) -> list[str]:
        """Each sink's name in stats and metrics; a name used twice is numbered (mqtt, mqtt-2)."""
        named: list[str] = []
        for sink in self.sinks:
            name, n = sink.name, 2
            while name in named:
                name, n = f"{sink.name}-{n}", n + 1
            named.append(name)
        return named

    def stats(self) -> dict[str, SinkStats]:
        """{sink name: its counters}."""
        return {name: sink.stats() for name, sink in zip(self._names, self.sinks)}

    def report_failures(self, interval_s: float, now: float | None = None) -> list[str]:
        """Log each sink's new failures at warning, at most once per `interval_s` per sink (interval 0:
        whatever is new, as at shutdown); the lines logged."""
        now = time.monotonic() if now is None else now
        lines = []
        for i, (name, sink) in enumerate(zip(self._names, self.sinks)):
            failed = sink.failed
            if failed <= self._failures_logged[i] or (interval_s and now < self._next_failure_log[i]):
                continue
            lines.append(f"sink {name}: {failed - self._failures_logged[i]} failures ({failed} in all): {sink.problem}")
            log.warning("%s", lines[-1], extra={"sink": name, "failed": failed})
            self._failures_logged[i], self._next_failure_log[i] = failed, now + interval_s
        return lines

    def close(self, timeout_s: float = 1.0) -> None:
        """Close every sink, all within about `timeout_s`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        for sink in self.sinks:
            sink.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _hand_over(self, kind: str, stream: str | None, encode) -> bool:
        with self._lock:
            topic = messages.HEARTBEAT_TOPIC if stream is None else f"{kind}/{stream}"
            frames = encode(self._seq[topic])
            self._seq[topic] += 1
            message = Outgoing(kind, stream, topic, (frames[0], frames[1]))
            taken, method = True, SINK_METHOD[kind]
            for sink in self.sinks:
                if kind in sink.kinds:
                    taken &= getattr(sink, method)(message)
            return taken
