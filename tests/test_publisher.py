import io
import re
import subprocess
import sys
import threading
import time

import pytest
import zmq
import zmq.auth

from lrcn.stream.errors import LrcnError
from lrcn.stream.keys import ClientKeys, load_client_keys, load_server_keys, make_keys
from lrcn.stream.messages import PRED
from lrcn.stream.publisher import Proxy, Publisher, Subscriber
from lrcn.tools.cli.commands import main
from lrcn.tools.cli.watch import StreamRow, render_table, watch
from tests.receivers import ANY_PORT, first_message, publish, Ticker

pytestmark = pytest.mark.timeout(60)


def test_predictions_status_and_heartbeats_reach_a_subscriber_over_tcp_with_their_topics():
    with (
        Publisher(ANY_PORT) as publisher,
        Subscriber(publisher.endpoint, topics=["pred/", "status/", "heartbeat"]) as sub,
    ):
        message = first_message(sub, lambda: publish(publisher, frame_index=20))
        assert message.topic == "pred/cam0" and message.kind == PRED
        p = message.payload
        assert (p["frame_index"], p["window"], p["label"], p["top_k"]) == (
            20,
            [5, 20],
            "wave",
            [["wave", 0.75], ["walk", 0.25]],
        )
        assert p["latency_ms"] >= 10.0 and p["capture_time"] < p["publish_time"] <= time.time()
        publisher.publish_status("cam0", "lost", "stream ended", {"dropped": 3})
        publisher.heartbeat(streams=["cam0"], interval_s=1.0)
        received = [sub.receive(timeout_s=5.0) for _ in range(2)]
        assert [m.topic for m in received] == ["status/cam0", "heartbeat"]
        assert received[0].payload["stats"] == {"dropped": 3} and received[1].payload["streams"] == ["cam0"]
        assert publisher.counts().shed == 0


def test_a_subscriber_gets_only_the_topics_it_asked_for_and_seq_counts_per_topic():
    with Publisher(ANY_PORT) as publisher, Subscriber(publisher.endpoint, topics=["status/cam1"]) as sub:

        def send():
            publish(publisher, "cam1")
            publisher.publish_status("cam1", "connected")
            publisher.publish_status("cam1", "lost")

        first = first_message(sub, send)
        second = sub.receive(timeout_s=5.0)
        assert first.topic == second.topic == "status/cam1"
        assert second.payload["seq"] == first.payload["seq"] + 1
        assert (first.payload["state"], second.payload["state"]) == ("connected", "lost")
        assert sub.missed["status/cam1"] == 0


def test_a_subscriber_that_stops_reading_neither_blocks_the_publisher_nor_starves_another():
    with (
        Publisher(ANY_PORT, hwm=50) as publisher,
        Subscriber(publisher.endpoint, hwm=50) as stalled,
        Subscriber(publisher.endpoint, hwm=100_000) as reader,
    ):
        assert first_message(stalled, lambda: publish(publisher)) is not None
        assert first_message(reader, lambda: publish(publisher)) is not None
        got, done = [], threading.Event()

        def drain():
            while not done.is_set() or got[-1].stream != "done":
                message = reader.receive(timeout_s=0.1)
                if message is not None:
                    got.append(message)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        total = 2000
        # ~6 kB each, 12 MB in all: more than the kernel's socket buffers hold for the stalled one
        probabilities = {f"class-{k:03d}": k / 300 for k in range(300)}
        for i in range(1, total + 1):  # `stalled` reads none of these
            publish(publisher, frame_index=i, probabilities=probabilities)
            if i % 10 == 0:
                time.sleep(0.001)  # a steady rate the reading subscriber can keep up with
        done.set()
        while thread.is_alive():  # a final message to tell the reader we are done
            publish(publisher, "done")
            thread.join(0.05)
        frames = [m.payload["frame_index"] for m in got if m.stream == "cam0" and m.payload["frame_index"] > 0]
        assert len(frames) >= 0.9 * total, "the reading subscriber is served while the other stalls"
        assert frames == sorted(frames)
        late = []
        while (message := stalled.receive(timeout_s=0.5)) is not None:
            late.append(message)
        assert len(late) < total, "the stalled subscriber's queue is bounded: the rest was shed"
        assert first_message(stalled, lambda: publish(publisher)) is not None  # a gap shows once a later one arrives
        assert stalled.missed["pred/cam0"] > 0, "what was shed shows up as seq gaps"


def test_curve_admits_an_authorized_client_and_no_one_else(tmp_path):
    make_keys(tmp_path / "keys")
    (tmp_path / "other").mkdir()
    zmq.auth.create_certificates(str(tmp_path / "other"), "intruder")
    _, intruder_secret = zmq.auth.load_certificate(str(tmp_path / "other" / "intruder.key_secret"))
    intruder_public, _ = zmq.auth.load_certificate(str(tmp_path / "other" / "intruder.key"))
    server = load_server_keys(tmp_path / "keys")
    intruder = ClientKeys(public=intruder_public, secret=intruder_secret, server_public=server.public)
    with (
        Publisher(ANY_PORT, curve=server) as publisher,
        Subscriber(publisher.endpoint, curve=load_client_keys(tmp_path / "keys")) as allowed,
        Subscriber(publisher.endpoint, curve=intruder) as denied,
        Subscriber(publisher.endpoint) as plaintext,
    ):
        assert first_message(allowed, lambda: publish(publisher)) is not None
        with Ticker(lambda: publish(publisher)):
            assert allowed.receive(timeout_s=5.0) is not None
            assert denied.receive(timeout_s=1.5) is None
            assert plaintext.receive(timeout_s=0.5) is None


def test_a_proxy_fans_two_publishers_in_to_one_subscriber():
    with (
        Proxy(ANY_PORT, ANY_PORT) as proxy,
        Publisher(proxy.xsub_endpoint, bind=False) as north,
        Publisher(proxy.xsub_endpoint, bind=False) as south,
        Subscriber(proxy.xpub_endpoint, topics=["pred/"]) as sub,
    ):
        seen = set()
        with Ticker(lambda: (publish(north, "north"), publish(south, "south"))):
            deadline = time.monotonic() + 10
            while seen != {"north", "south"} and time.monotonic() < deadline:
                message = sub.receive(timeout_s=0.1)
                if message is not None:
                    seen.add(message.stream)
        assert seen == {"north", "south"}


def test_binding_a_busy_endpoint_is_a_one_line_error():
    with Publisher(ANY_PORT) as publisher:
        with pytest.raises(LrcnError, match="cannot bind tcp://127.0.0.1:") as raised:
            Publisher(publisher.endpoint)
        assert "\n" not in str(raised.value)


def test_cli_keys_makes_a_server_and_a_client_pair_and_refuses_to_overwrite(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert main(["keys", str(folder)]) == 0
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [
        "authorized_clients/client.key",
        "client.key",
        "client.key_secret",
        "server.key",
        "server.key_secret",
    ]
    assert (folder / "server.key_secret").stat().st_mode & 0o077 == 0
    assert main(["keys", str(folder), "--client", "bob"]) == 0
    assert (folder / "authorized_clients" / "bob.key").is_file()
    capsys.readouterr()
    assert main(["keys", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"lrcn: error: keys for client 'client' already exist in {folder}\n"


def test_cli_watch_prints_one_plain_line_per_message_and_stops_at_count(capsys):
    with Publisher(ANY_PORT) as publisher:
        frame = iter(range(10**6))

        def send():
            publish(publisher, "cam0", next(frame))
            publisher.publish_status("cam0", "connected", "64x64 at 25.0 fps")

        with Ticker(send):
            assert main(["watch", publisher.endpoint, "--count", "4"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(("pred cam0 seq=", "status cam0 seq=")) for line in lines)
    assert any("label=wave score=0.750" in line for line in lines)
    assert "lrcn: watched 4 messages" in captured.err


def test_cli_watch_with_duration_ends_by_itself_when_nothing_arrives(capsys):
    with Publisher(ANY_PORT) as publisher:
        assert main(["watch", publisher.endpoint, "--duration", "0.3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "watched 0 messages" in captured.err


def test_the_watch_table_shows_each_stream_on_one_row():
    rows = {
        "cam1": StreamRow(
            label="walk",
            score=0.5,
            latency_ms=12.0,
            predictions=3,
            missed=1,
            dropped=7,
            state="connected",
            last_seen=9.0,
        ),
        "cam0": StreamRow(state="lost", reason="stream ended", last_seen=8.0),
    }
    lines = render_table(rows, now=10.0, heartbeat_age_s=0.5)
    assert lines[0].split() == [
        "stream",
        "state",
        "label",
        "score",
        "latency",
        "preds",
        "gaps",
        "drops",
        "seen",
        "reason",
    ]
    assert lines[1].split() == ["cam0", "lost", "-", "-", "-", "0", "0", "-", "2.0s", "stream", "ended"]
    assert lines[2].split() == ["cam1", "connected", "walk", "0.50", "12.0ms", "3", "1", "7", "1.0s"]
    assert lines[3] == "last heartbeat 0.5 s ago"


def test_cli_proxy_forwards_until_its_duration_ends(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "lrcn.tools.cli", "proxy", "--xsub", ANY_PORT, "--xpub", ANY_PORT, "--duration", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert banner.startswith("proxy: publishers -> tcp://127.0.0.1:"), banner + process.stderr.read()
        xsub = banner.split("publishers -> ")[1].split(",")[0]
        xpub = banner.rsplit("subscribers -> ", 1)[1].strip()
        with Publisher(xsub, bind=False) as publisher, Subscriber(xpub) as sub:
            assert first_message(sub, lambda: publish(publisher, "via-proxy")).stream == "via-proxy"
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["watch", "nonsense"], "lrcn: error: cannot connect nonsense: "),
        (
            ["watch", "tcp://127.0.0.1:1", "--curve-keys", "/nonexistent", "--count", "1"],
            "lrcn: error: key file not found: /nonexistent/client.key_secret",
        ),
        (["proxy", "--xsub", "tcp://127.0.0.1:*", "--xpub", "bogus://x"], "lrcn: error: cannot bind bogus://x: "),
    ],
)
def test_cli_bad_input_is_one_line_on_stderr_and_exit_2(argv, complaint):
    result = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.cli", *argv], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith(complaint) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_watch_on_a_terminal_redraws_one_table_in_place():
    out = io.StringIO()
    with Publisher(ANY_PORT) as publisher, Ticker(lambda: (publish(publisher, "cam0"), publisher.heartbeat(["cam0"]))):
        assert watch(publisher.endpoint, count=6, out=out, interactive=True) == 6
    text = out.getvalue()
    tables = text.count("stream ")
    assert text.startswith("stream ") and "cam0" in text and "last heartbeat" in text
    moves = re.findall(r"\x1b\[(\d+)F\x1b\[J", text)
    assert len(moves) == tables - 1, "each redraw first moves up over the previous table"


def test_a_newer_publisher_s_schema_2_message_and_new_topics_reach_an_older_reader_and_watch(capsys):
    """Forward compatibility: schema 2 with a field this reader does not know, a track/<stream>
    topic (a kind added later) and a topic without a stream, sent by hand over a real PUB socket."""
    import json

    newer_prediction = {
        "schema": 2,
        "stream": "cam0",
        "seq": 0,
        "frame_index": 9,
        "window": [0, 9],
        "label": "wave",
        "score": 0.8,
        "top_k": [["wave", 0.8]],
        "capture_time": 1.0,
        "publish_time": 1.01,
        "latency_ms": 10.0,
        "a_field_from_the_future": {"x": 1},
    }
    track = {"schema": 2, "stream": "cam0", "seq": 0, "boxes": [[1, 2, 3, 4]]}
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    endpoint = f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"
    frames = [
        [b"pred/cam0", json.dumps(newer_prediction).encode()],
        [b"track/cam0", json.dumps(track).encode()],
        [b"inventory", b'{"cameras": 3}'],
    ]

    def send():
        for message in frames:
            socket.send_multipart(message)

    try:
        with Subscriber(endpoint) as subscriber, Ticker(send):
            received = {}
            deadline = time.monotonic() + 10
            while len(received) < 3 and time.monotonic() < deadline:
                message = subscriber.receive(timeout_s=0.1)
                if message is not None:
                    received[message.topic] = message
            assert received["pred/cam0"].payload["a_field_from_the_future"] == {"x": 1} and received["pred/cam0"].known
            assert received["track/cam0"].kind == "track" and received["track/cam0"].stream == "cam0"
            assert not received["track/cam0"].known and received["inventory"].stream is None
            assert main(["watch", endpoint, "--count", "9"]) == 0
            rows = {}
            from lrcn.tools.cli.watch import apply

            for message in received.values():
                apply(rows, message, 0, now=1.0)
            assert rows["cam0"].label == "wave" and rows["cam0"].predictions == 1, "the track did not count as one"
    finally:
        socket.close(linger=0)
        context.term()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(line.startswith("pred cam0 seq=0") for line in lines)
    assert any(line.startswith("track cam0 seq=0 (not known to this reader)") for line in lines)
    assert any(line.startswith("inventory - seq=- ") for line in lines)
    assert "0 malformed" in captured.err
