"""Receiving what lrcn publishes, as its users do: a ZeroMQ inbox, a JSONL collector, HTTP scrapes."""

import json
import threading
import time
import urllib.error

from lrcn.stream.events import EventRules
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.publisher import Publisher, Subscriber
from prometheus_client.parser import text_string_to_metric_families

ANY_PORT = "tcp://127.0.0.1:*"


class Inbox:
    """A subscriber and everything it has received."""

    def __init__(self, endpoint: str, topics=("",)):
        self.subscriber = Subscriber(endpoint, topics)
        self.messages = []

    def join(self, pipeline, timeout_s: float = 10.0) -> bool:
        """Wait until this subscription has reached the pipeline's publisher (see `joined`)."""

        def received() -> bool:
            message = self.subscriber.receive(timeout_s=0.01)
            if message is not None:
                self.messages.append(message)
            return bool(self.messages)

        return joined(pipeline, received, timeout_s)

    def until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            message = self.subscriber.receive(timeout_s=0.05)
            if message is not None:
                self.messages.append(message)
        return True

    def drain(self, quiet_s: float = 0.3) -> None:
        while (message := self.subscriber.receive(timeout_s=quiet_s)) is not None:
            self.messages.append(message)

    def predictions(self, stream=None):
        return [m.payload for m in self.messages if m.kind == "pred" and stream in (None, m.stream)]

    def statuses(self, stream=None):
        return [m.payload for m in self.messages if m.kind == "status" and stream in (None, m.stream)]

    def close(self):
        self.subscriber.close()


def receive_until(subscriber, predicate, timeout_s):
    messages, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate(messages):
        message = subscriber.receive(timeout_s=0.1)
        if message is not None:
            messages.append(message)
    return messages


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample /metrics serves."""
    status, body = get(url + "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


class Collector(threading.Thread):
    """A subscriber in a thread, keeping every message."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.subscriber = Subscriber(endpoint)
        self.messages = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            message = self.subscriber.receive(timeout_s=0.05)
            if message is not None:
                self.messages.append(message)

    def predictions(self, stream: str) -> list[dict]:
        return [m.payload for m in list(self.messages) if m.kind == "pred" and m.stream == stream]

    def statuses(self, stream: str) -> list[dict]:
        return [m.payload for m in list(self.messages) if m.kind == "status" and m.stream == stream]

    def close(self) -> None:
        self.done.set()
        self.join(2)
        self.subscriber.close()


def publish(publisher: Publisher, stream: str = "cam0", frame_index: int = 0, probabilities=None) -> bool:
    return publisher.publish_prediction(
        stream,
        frame_index=frame_index,
        window=(max(0, frame_index - 15), frame_index),
        label="wave",
        score=0.75,
        top_k=[("wave", 0.75), ("walk", 0.25)],
        captured_at=time.monotonic() - 0.01,
        probabilities=probabilities,
    )


def first_message(subscriber: Subscriber, send, timeout_s: float = 10.0):
    """Send until the subscriber receives one message: a new SUB misses what was sent before it joined."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        send()
        message = subscriber.receive(timeout_s=0.05)
        if message is not None:
            return message
    return None


class Ticker:
    """Calls `send` every `period_s` in a thread until stopped."""

    def __init__(self, send, period_s: float = 0.01):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(send, period_s), daemon=True)

    def _run(self, send, period_s):
        while not self._stop.wait(period_s):
            send()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def get_json(url: str, timeout_s: float = 5.0):
    """The JSON body at `url`, or None while nothing answers there (or it answers an error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def poll(fetch, done, timeout_s: float, interval_s: float = 0.25):
    """Call `fetch` until `done(value)` holds or `timeout_s` passes; the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def run_received(pipeline, duration_s: float):
    """Run `pipeline` with a subscriber that joined before the first frame: (its stats, the closed
    Inbox holding every message it published)."""
    inbox = Inbox(pipeline.endpoint)
    try:
        assert inbox.join(pipeline)
        stats = pipeline.run(duration_s=duration_s)
        inbox.drain()
    finally:
        inbox.close()
    return stats, inbox


def run_pipeline(bundle, video, pace: bool = False, **config):
    """The pipeline on `video` (unpaced by default), events for any label (min_score 0); (stats, predictions, events)."""
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(video), id="cam", pace=pace, events=EventRules(min_score=0.0), **config)],
        PipelineOptions(endpoint=ANY_PORT),
    )
    stats, inbox = run_received(pipeline, duration_s=60)
    events = [m.payload for m in inbox.messages if m.kind == "event"]
    return stats.streams["cam"], inbox.predictions("cam"), events


def joined(pipeline, has_message, timeout_s: float = 10.0) -> bool:
    """Heartbeats through the pipeline's outbox, before it starts, until `has_message()`: then the
    subscription has reached the publisher and nothing published from now on is missed (a ZeroMQ
    subscriber misses what is sent before it joins)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.outbox.heartbeat()
        stop = time.monotonic() + 0.05
        while time.monotonic() < stop:
            if has_message():
                return True
            time.sleep(0.005)
    return False
