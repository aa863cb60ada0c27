"""A real ZeroMQ subscriber in a thread, for the evidence tools: `Recorder` keeps every message
with its arrival time; `Monitor` keeps the running tallies a soak or a fault run reads while it
runs (predictions per stream, state changes, heartbeat gaps, latencies per interval)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from lrcn.stream.messages import MessageError
from lrcn.stream.publisher import Subscriber


class Recorder:
    """Subscribes to `topics` at `endpoint` and hands each message, with its arrival time on
    `clock`, to `take` (which keeps them in `messages`), in a thread of its own until `close`.
    A malformed message is counted in `malformed` and skipped. A subclass sets up its own state
    before calling this constructor: the thread starts here."""

    def __init__(self, endpoint: str, topics=("",), clock=time.time):
        self.subscriber = Subscriber(endpoint, topics)
        self.clock = clock
        self.messages: list[tuple[float, object]] = []
        self.malformed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__.lower(), daemon=True)
        self._thread.start()
        self._cpu_clock = time.pthread_getcpuclockid(self._thread.ident)

    def take(self, at: float, message) -> None:
        self.messages.append((at, message))

    def cpu_s(self) -> float:
        """This thread's CPU so far: not the measured code's, so a caller subtracts it from the process's."""
        return time.clock_gettime(self._cpu_clock)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.subscriber.receive(0.05)
            except MessageError:
                self.malformed += 1
                continue
            if message is not None:
                self.take(self.clock(), message)

    def close(self) -> list[tuple[float, object]]:
        """Stop receiving; every (arrival time, message) kept."""
        self._stop.set()
        self._thread.join(2.0)
        self.subscriber.close()
        return self.messages


class Monitor(Recorder):
    """Counts predictions per stream, keeps every state change (a status message without a stats report), the newest periodic
    stats per stream, heartbeat gaps, and the latencies of the current interval (taken and
    cleared by `take_latencies`); times on the monotonic clock."""

    def __init__(self, endpoint: str):
        self.predictions: dict[str, int] = defaultdict(int)
        self.last_prediction: dict[str, tuple[float, int]] = {}  # stream -> (monotonic time, frame index)
        self.state_changes: list[dict] = []
        self.stats: dict[str, dict] = {}
        self.heartbeats = 0
        self.last_heartbeat: float | None = None
        self.max_heartbeat_gap_s = 0.0
        self._latencies: list[float] = []
        self._lock = threading.Lock()
        super().__init__(endpoint, ("",), clock=time.monotonic)

    def take(self, now: float, message) -> None:
        payload = message.payload
        with self._lock:
            if message.kind == "pred":
                self.predictions[message.stream] += 1
                self.last_prediction[message.stream] = (now, payload["frame_index"])
                if len(self._latencies) < 100_000:
                    self._latencies.append(payload["latency_ms"])
            elif message.kind == "status":
                if payload["stats"].get("report"):
                    self.stats[message.stream] = payload["stats"]
                else:
                    self.state_changes.append(
                        {"t": now, "stream": message.stream, "state": payload["state"], "reason": payload["reason"]}
                    )
            elif message.kind == "heartbeat":
                if self.last_heartbeat is not None:
                    self.max_heartbeat_gap_s = max(self.max_heartbeat_gap_s, now - self.last_heartbeat)
                self.last_heartbeat = now
                self.heartbeats += 1

    def take_latencies(self) -> list[float]:
        with self._lock:
            taken, self._latencies = self._latencies, []
        return taken

    def state_changes_since(self, stream: str, since: float) -> list[dict]:
        with self._lock:
            return [c for c in self.state_changes if c["stream"] == stream and c["t"] >= since]

    def state_change_list(self) -> list[dict]:
        """The state changes as a result lists them: stream, state, reason."""
        return [{k: c[k] for k in ("stream", "state", "reason")} for c in self.state_changes]
