"""The MQTT sink against a real mosquitto on 127.0.0.1 with a real paho subscriber: topics and
payloads, retained status and availability, the last will, a broker restart at qos 1, the
buffer's bound, bad options, and TLS with a password."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lrcn.stream import messages
from lrcn.stream.errors import LrcnError
from lrcn.stream.outbox import Outbox
from lrcn.stream.sinks import SINKS, Outgoing, Sink
from lrcn.stream.sinks.mqtt import MqttSink
from lrcn.stream.stats import plain
from lrcn.tools.evidence.mqtt_broker import MOSQUITTO, Broker, free_port, wait_until
from tests.cli import cam_serve, lrcn
from tests.mqtt_subscriber import Subscriber

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (apt-get install mosquitto)")
ROOT = Path(__file__).resolve().parents[1]


class Recorder(Sink):
    """What the outbox hands every sink: the ZeroMQ [topic, payload] frames to compare with."""

    name = "recorder"

    def __init__(self):
        self.messages: list[Outgoing] = []

    def send(self, message: Outgoing) -> bool:
        self.messages.append(message)
        return True


def predict(outbox: Outbox, stream: str, i: int) -> bool:
    return outbox.publish_prediction(
        stream,
        frame_index=i,
        window=(max(0, i - 15), i),
        label="wave",
        score=0.9,
        top_k=[("wave", 0.9), ("walk", 0.1)],
        captured_at=time.monotonic(),
    )


def counts(sink: MqttSink) -> dict:
    """The sink's stats but its failures (which depend on how often paho retried meanwhile)."""
    return {k: v for k, v in plain(sink.stats()).items() if k not in ("failed", "problem")}


def seqs(subscriber: Subscriber, topic: str) -> list[int]:
    return [json.loads(payload)["seq"] for _, payload, _ in subscriber.messages(topic)]


@pytest.mark.timeout(90)
def test_messages_topics_payloads_and_retained_state(broker):
    sink = MqttSink.from_config({"url": f"mqtt://127.0.0.1:{broker.port}/lrcn", "client_id": "sink-t1"}, node="test")
    subscribers = []
    try:
        assert SINKS.get("mqtt") is MqttSink
        assert wait_until(lambda: sink.stats().connected, 20), sink.stats()
        live = Subscriber(broker.port)
        subscribers.append(live)
        assert live.wait_for(lambda got: ("lrcn/availability", b"online", True) in got), live.messages()
        recorder = Recorder()
        outbox = Outbox([recorder, sink], node="test")
        for i in range(5):
            assert predict(outbox, "cam0", i)
        assert predict(outbox, "cam1", 0)
        assert outbox.publish_status("cam0", "connecting", "opening rtsp://cam0")
        assert outbox.publish_status("cam0", "connected", "1920x1080 h264 at 25.0 fps", {"frames": 3})
        assert outbox.publish_event("cam0", {"type": "start", "label": "wave", "start_frame": 3, "start_time": 0.12})
        assert outbox.heartbeat(["cam0", "cam1"], interval_s=1.0)
        expected = [
            (f"lrcn/{m.stream}/{m.kind}" if m.stream else f"lrcn/{m.kind}", m.payload) for m in recorder.messages
        ]
        assert live.wait_for(lambda got: len(got) >= 1 + len(expected)), live.messages()
        assert live.settled(), live.messages()  # anything extra (a duplicate) has arrived by now
        data = [(topic, payload) for topic, payload, _ in live.messages() if topic != "lrcn/availability"]
        assert sorted(data) == sorted(expected), "every message once, on its topic, byte for byte"
        for (topic, payload), message in zip(expected, recorder.messages):
            decoded = messages.decode([message.topic.encode(), payload])  # the ZeroMQ path's decode
            assert decoded.payload == json.loads(payload) and decoded.kind in topic
        for topic in {t for t, _ in expected}:
            assert [p for t, p in data if t == topic] == [p for t, p in expected if t == topic], f"order on {topic}"
        assert all(not retain for topic, _, retain in live.messages() if topic != "lrcn/availability")
        assert plain(sink.stats()) == {
            "sent": len(expected),
            "dropped": 0,
            "buffered": 0,
            "connected": True,
            "connects": 1,
            "failed": 0,
            "problem": "",
        }

        late = Subscriber(broker.port)  # a late subscriber sees the retained state, not the rest
        subscribers.append(late)
        assert late.wait_for(lambda got: len(got) >= 2), late.messages()
        assert late.settled(), late.messages()  # all the retained state, and nothing else
        last_status = [m for m in recorder.messages if m.kind == messages.STATUS][-1]
        assert json.loads(last_status.payload)["state"] == "connected"
        assert sorted(late.messages()) == sorted(
            [("lrcn/availability", b"online", True), ("lrcn/cam0/status", last_status.payload, True)]
        )
        assert "mqtt://127.0.0.1" in sink.describe() and "prefix lrcn qos 1" in sink.describe()

        started = time.monotonic()
        outbox.close(timeout_s=3.0)
        assert time.monotonic() - started < 10.0  # close keeps to its timeout, give or take a busy machine
        assert live.wait_for(lambda got: ("lrcn/availability", b"offline", False) in got), live.messages()
        after = Subscriber(broker.port)
        subscribers.append(after)
        assert after.wait_for(lambda got: ("lrcn/availability", b"offline", True) in got), after.messages()
        assert sink.stats().dropped == 0
        sink.close()  # idempotent
    finally:
        sink.close(1.0)
        for subscriber in subscribers:
            subscriber.close()


CHILD = """
import sys, time
from lrcn.stream.sinks.mqtt import MqttSink
sink = MqttSink.from_config({"host": "127.0.0.1", "port": int(sys.argv[1]), "keepalive_s": 2,
                             "client_id": "sink-will"}, node="child")
deadline = time.monotonic() + 30
while not sink.stats().connected and time.monotonic() < deadline:
    time.sleep(0.02)
print("connected" if sink.stats().connected else "not connected", flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(90)
def test_last_will_says_offline_when_the_sink_dies(broker):
    subscriber = Subscriber(broker.port)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(broker.port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "connected", child.stderr.read() if child.poll() is not None else ""
        assert subscriber.wait_for(lambda got: ("lrcn/availability", b"online", False) in got), subscriber.messages()
        child.kill()
        child.wait(10)
        assert subscriber.wait_for(lambda got: ("lrcn/availability", b"offline", False) in got, 30), (
            subscriber.messages()
        )
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        subscriber.close()


@pytest.mark.timeout(120)
def test_broker_restart_loses_nothing_at_qos_1(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port, session="sub-restart")
    sink = MqttSink.from_config(
        {"host": "127.0.0.1", "port": broker.port, "qos": 1, "client_id": "sink-restart"}, node="test"
    )
    outbox = Outbox([sink], node="test")
    sent, stop = [0], threading.Event()

    def publish():  # every 10 ms until stopped, on a schedule so a slow machine does not stretch it
        start = time.monotonic()
        while not stop.is_set():
            assert predict(outbox, "cam0", sent[0])
            sent[0] += 1
            time.sleep(max(0.0, start + sent[0] * 0.01 - time.monotonic()))

    try:
        assert wait_until(lambda: sink.stats().connected, 20), sink.stats()
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        assert wait_until(lambda: len(seqs(subscriber, "lrcn/cam0/pred")) >= 50, 20), "predictions flow"
        broker.stop()
        assert wait_until(lambda: not sink.stats().connected, 10), "the sink noticed the broker go"
        away = sent[0]
        assert wait_until(lambda: sent[0] >= away + 50, 20), "predictions published while the broker is away"
        broker.start()
        assert wait_until(lambda: sink.stats().connected, 30), sink.stats()
        back = sent[0]
        assert wait_until(lambda: sent[0] >= back + 50, 20), "predictions published after the broker came back"
        stop.set()
        publisher.join(30)
        assert not publisher.is_alive()
        n = sent[0]
        assert wait_until(lambda: len(set(seqs(subscriber, "lrcn/cam0/pred"))) >= n, 40), (
            n,
            sorted(set(range(n)) - set(seqs(subscriber, "lrcn/cam0/pred")))[:20],
            sink.stats(),
        )
        got = seqs(subscriber, "lrcn/cam0/pred")
        first_seen = list(dict.fromkeys(got))
        duplicated = sorted(seq for seq in set(got) if got.count(seq) > 1)
        print(f"\nbroker restart: {n} sent, {len(got)} received, duplicated seqs {duplicated}, stats {sink.stats()}")
        assert first_seen == list(range(n)), "every seq, in order, after de-duplication"
        stats = sink.stats()
        assert stats.dropped == 0 and stats.connects >= 2, stats
        outbox.close(3.0)
        assert sink.stats().sent == n and sink.stats().dropped == 0, sink.stats()
    finally:
        stop.set()
        sink.close(1.0)
        subscriber.close()
        broker.stop()


@pytest.mark.timeout(120)
def test_buffer_keeps_the_newest_while_the_broker_is_away(tmp_path):
    bound, extra = 50, 7
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port, session="sub-bound")  # a session that will queue for it
    subscriber.close()
    broker.stop()
    sink = MqttSink.from_config(
        {"host": "127.0.0.1", "port": broker.port, "buffer": bound, "client_id": "sink-bound"}, node="test"
    )
    try:
        outbox = Outbox([sink], node="test")
        for i in range(bound + extra):
            assert predict(outbox, "cam0", i)
        stats = sink.stats()
        assert (stats.dropped, stats.buffered, stats.sent, stats.connected) == (extra, bound, 0, False)
        broker.start()
        assert wait_until(lambda: sink.stats().connected, 45), sink.stats()
        subscriber = Subscriber(broker.port, session="sub-bound")
        assert subscriber.wait_for(lambda got: len(got) >= bound + 1), subscriber.messages()
        assert subscriber.settled(), subscriber.messages()  # anything beyond the bound has arrived by now
        assert seqs(subscriber, "lrcn/cam0/pred") == list(range(extra, extra + bound))
        assert counts(sink) == {"sent": bound, "dropped": extra, "buffered": 0, "connected": True, "connects": 1}
        assert sink.stats().failed >= 1 and "cannot connect to 127.0.0.1" in sink.stats().problem, (
            "the attempts while the broker was away are failures, and say so"
        )
    finally:
        sink.close(1.0)
        subscriber.close()
        broker.stop()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "options, says",
    [
        ({"url": "http://127.0.0.1:1883"}, "scheme 'http' is not mqtt or mqtts"),
        ({"url": "127.0.0.1:1883"}, "is not mqtt or mqtts"),
        ({"url": "mqtt://"}, "no host"),
        ({"url": "mqtt://:1883/lrcn"}, "no host"),
        ({"url": "mqtt://127.0.0.1:port"}, "bad port"),
        ({"url": "mqtt://127.0.0.1:99999"}, "bad port"),
        ({"url": "mqtt://127.0.0.1/lrcn?x=1"}, "no ?query"),
        ({"url": "mqtt://127.0.0.1", "host": "127.0.0.1"}, "either url or host"),
        ({}, "needs url"),
        ({"host": "127.0.0.1", "port": 0}, "port must be 1-65535"),
        ({"host": "127.0.0.1", "qos": 3}, "qos must be 0, 1 or 2"),
        ({"host": "127.0.0.1", "qos": True}, "'qos' has the wrong type"),
        ({"host": "127.0.0.1", "buffer": 0}, "buffer must be at least 1"),
        ({"host": "127.0.0.1", "keepalive_s": 0}, "keepalive_s must be at least 1"),
        ({"host": "127.0.0.1", "prefix": "a/+/b"}, "bad topic prefix"),
        ({"host": "127.0.0.1", "bogus": 1}, "unknown key 'bogus'"),
        ({"host": "127.0.0.1", "password": "x"}, "a password needs a username"),
        (
            {"host": "127.0.0.1", "tls": True, "ca_file": "/nonexistent/ca.pem"},
            "ca_file '/nonexistent/ca.pem' does not",
        ),
        (
            {"url": "mqtts://127.0.0.1", "cert_file": "/nonexistent/c.pem"},
            "cert_file '/nonexistent/c.pem' does not exist",
        ),
        ({"host": "127.0.0.1", "tls": True, "key_file": "/nonexistent/k.pem"}, "key_file needs cert_file"),
        ({"host": "127.0.0.1", "ca_file": "/etc/hostname"}, "need tls"),
    ],
)
def test_bad_options_are_one_line_errors(options, says):
    with pytest.raises(LrcnError) as err:
        MqttSink.from_config(options, node="test")
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.timeout(30)
def test_unreachable_broker_at_start_is_not_an_error():
    port = free_port()
    started = time.monotonic()
    sink = MqttSink.from_url(f"mqtt://user:secret@127.0.0.1:{port}/site/lrcn", node="edge1:42")
    try:
        assert time.monotonic() - started < 5.0  # does not wait out a connect attempt
        assert counts(sink) == {"sent": 0, "dropped": 0, "buffered": 0, "connected": False, "connects": 0}
        assert sink.describe() == f"mqtt://127.0.0.1:{port} prefix site/lrcn qos 1"  # never the password
        assert Outbox([sink], node="test").publish_status("cam0", "connecting")
        assert sink.stats().buffered == 1
    finally:
        started = time.monotonic()
        sink.close(0.5)
        assert time.monotonic() - started < 5.0  # keeps to its timeout, give or take a busy machine
    assert sink.stats().dropped == 1 and sink.stats().buffered == 0  # never delivered


def make_tls(folder: Path) -> dict:
    """A CA, a server certificate for 127.0.0.1 signed by it, and a password file for alice."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(args, cwd=folder, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run(
        "openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=lrcn test CA"
    )
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    run(shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c", "passwd", "alice", "s3cret")
    return {
        "ca": str(folder / "ca.crt"),
        "extra": [
            f"cafile {folder / 'ca.crt'}",
            f"certfile {folder / 'server.crt'}",
            f"keyfile {folder / 'server.key'}",
            f"password_file {folder / 'passwd'}",
        ],
    }


@pytest.mark.timeout(90)
@pytest.mark.skipif(
    shutil.which("openssl") is None
    or (shutil.which("mosquitto_passwd") is None and not Path("/usr/bin/mosquitto_passwd").exists()),
    reason="needs openssl and mosquitto_passwd",
)
def test_tls_with_a_password(tmp_path):
    tls = make_tls(tmp_path / "tls")
    broker = Broker(tmp_path / "broker", extra=tls["extra"], anonymous=False).start()
    sinks, subscriber = [], None
    try:
        subscriber = Subscriber(broker.port, tls_ca=tls["ca"], username="alice", password="s3cret")
        sink = MqttSink.from_config(
            {
                "url": f"mqtts://alice:s3cret@127.0.0.1:{broker.port}/lrcn",
                "ca_file": tls["ca"],
                "client_id": "sink-tls",
            },
            node="test",
        )
        sinks.append(sink)
        assert sink.describe() == f"mqtts://127.0.0.1:{broker.port} prefix lrcn qos 1"
        assert wait_until(lambda: sink.stats().connected, 20), (sink.stats(), broker.log.read_text()[-2000:])
        outbox = Outbox([sink], node="test")
        for i in range(3):
            assert predict(outbox, "cam0", i)
        assert subscriber.wait_for(lambda got: len([m for m in got if m[0] == "lrcn/cam0/pred"]) == 3)
        assert seqs(subscriber, "lrcn/cam0/pred") == [0, 1, 2]

        wrong = MqttSink.from_config(
            {
                "url": f"mqtts://alice:wrong@127.0.0.1:{broker.port}/other",
                "ca_file": tls["ca"],
                "client_id": "sink-wrong",
            },
            node="test",
        )
        sinks.append(wrong)
        assert wait_until(lambda: "refused" in wrong.last_error, 20), wrong.last_error
        assert predict(Outbox([wrong], node="test"), "cam0", 0)
        assert counts(wrong) == {"sent": 0, "dropped": 0, "buffered": 1, "connected": False, "connects": 0}
        assert wrong.stats().failed >= 1 and "refused" in wrong.stats().problem, "a refusal is a failure"
        assert "s3cret" not in str(wrong.stats()) and "wrong" not in wrong.stats().problem
    finally:
        for sink in sinks:
            sink.close(1.0)
        if subscriber is not None:
            subscriber.close()
        broker.stop()


@pytest.mark.timeout(120)
def test_lrcn_serve_with_mqtt_publishes_each_kind_under_the_url_prefix_and_says_offline_at_the_end(
    broker, exported_seed
):
    bundle, _, video = exported_seed
    subscriber = Subscriber(broker.port, prefix="site/north")
    try:
        run = lrcn(
            *cam_serve(bundle, video),
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--mqtt",
            f"mqtt://127.0.0.1:{broker.port}/site/north",
            "--min-score",
            "0",
            timeout=100,
        )
        assert run.returncode == 0, run.stderr
        assert f"mqtt://127.0.0.1:{broker.port} prefix site/north qos 1" in run.stdout
        assert subscriber.wait_for(lambda ms: ("site/north/availability", b"offline", False) in ms)
    finally:
        subscriber.close()
    topics = {topic for topic, _, _ in subscriber.messages()}
    assert topics == {
        "site/north/cam/pred",
        "site/north/cam/status",
        "site/north/cam/event",
        "site/north/heartbeat",
        "site/north/availability",
        "site/north/cam/snapshot",
    }
    # each event's snapshots, as JPEG bytes at the source's resolution, the last one retained
    snapshots = [p for _, p, _ in subscriber.messages("site/north/cam/snapshot")]
    assert snapshots and all(p[:2] == b"\xff\xd8" for p in snapshots)
    for kind in ("pred", "status", "event"):
        got = seqs(subscriber, f"site/north/cam/{kind}")
        assert got == list(range(len(got))) and got, f"{kind}: every message, in order"
    predictions = [json.loads(p) for _, p, _ in subscriber.messages("site/north/cam/pred")]
    assert all(messages.decode([b"pred/cam", json.dumps(p).encode()]).payload == p for p in predictions)
    assert "sink mqtt: sent" in run.stderr and "dropped 0" in run.stderr


def test_a_sink_takes_only_its_kinds(broker):
    subscriber = Subscriber(broker.port)
    sink = MqttSink("127.0.0.1", broker.port, kinds=["status", "event"])
    try:
        assert wait_until(lambda: sink.stats().connected, 20), sink.stats()
        with Outbox([sink], node="test") as outbox:
            for i in range(5):
                predict(outbox, "cam0", i)
            outbox.heartbeat(["cam0"])
            outbox.publish_status("cam0", "connected", "ok")
            outbox.publish_event("cam0", {"type": "start", "label": "wave", "start_frame": 3, "start_time": 0.1})
        assert subscriber.wait_for(lambda ms: any(t == "lrcn/availability" and p == b"offline" for t, p, _ in ms))
    finally:
        subscriber.close()
    assert {t for t, _, _ in subscriber.messages()} == {"lrcn/cam0/status", "lrcn/cam0/event", "lrcn/availability"}
    assert sink.stats().sent == 2
    with pytest.raises(LrcnError, match="kinds must be some of pred, status, event, heartbeat"):
        MqttSink.from_config({"host": "127.0.0.1", "kinds": ["preds"]}, node="test")
