"""Secrets never leave: `redact` on its own, the log formatters, and a real `lrcn serve` whose
sources carry passwords (a closed RTSP port that keeps reconnecting, a live ffmpeg stream), with
every output of the run searched for them: stdout, stderr (text and JSON logs), /metrics,
/api/streams, /readyz, ZeroMQ, MQTT (a real Mosquitto), the JSONL file and --stats-json."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request

import pytest
import zmq

from lrcn.stream.credentials import redact
from lrcn.stream.logs import configure_logging
from lrcn.stream.sources import Source, stream_name
from lrcn.tools.evidence.mqtt_broker import MOSQUITTO, Broker
from tests.live_servers import FFMPEG, ffmpeg_tcp_ts, free_port, served, wait_until, write_video
from tests.cli import start_lrcn, stop

USER, RTSP_PASSWORD, TCP_PASSWORD, MQTT_PASSWORD = "camuser7", "Rtsp-s3cret%21", "Tcp-s3cret", "Mqtt-s3cret"
# What must appear nowhere: the user, each password, and the percent-decoded form of the first.
SECRETS = (USER, "Rtsp-s3cret", TCP_PASSWORD, MQTT_PASSWORD)


@pytest.mark.parametrize(
    "text, shown",
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/live", "rtsp://***:***@10.0.0.5:554/live"),
        ("rtsp://admin@10.0.0.5/live", "rtsp://***@10.0.0.5/live"),
        ("rtsp://admin:p%40ss%2Fw@cam/x", "rtsp://***:***@cam/x"),
        ("rtsp://admin:p@ss@cam/x", "rtsp://***:***@cam/x"),  # a raw '@' in the password
        (
            "a rtsp://u:p@h1/x and http://v:q@[::1]:80/y, then rtsps://w@h3",
            "a rtsp://***:***@h1/x and http://***:***@[::1]:80/y, then rtsps://***@h3",
        ),
        ("cannot open source 'rtsp://u:p@h:1/live': refused", "cannot open source 'rtsp://***:***@h:1/live': refused"),
        (
            "http://cam/snap.cgi?user=admin&password=hunter2&chan=1",
            "http://cam/snap.cgi?user=admin&password=***&chan=1",
        ),
        (
            "gst:rtspsrc location=rtsp://cam/x user-id=admin user-pw=hunter2 ! appsink",
            "gst:rtspsrc location=rtsp://cam/x user-id=admin user-pw=*** ! appsink",
        ),
        ("no URL: 3 frames, a@b, x=y, 100% done", "no URL: 3 frames, a@b, x=y, 100% done"),
        ("", ""),
    ],
)
def test_redact_masks_the_user_and_password_of_every_url_and_leaves_other_text_alone(text, shown):
    assert redact(text) == shown
    assert redact(shown) == shown, "redacting twice changes nothing"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_log_line_carries_a_password_in_its_message_arguments_extra_fields_or_traceback(fmt):
    out = io.StringIO()
    configure_logging("info", fmt, stream=out)
    log = logging.getLogger("lrcn.test")
    url = "rtsp://admin:s3cret@10.0.0.5/live"
    log.info("opening %s", url, extra={"source": url, "sources": [url], "nested": {"url": url}})
    log.warning(f"in the message itself: {url}")
    try:
        raise ValueError(f"cannot open {url}")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 if fmt == "text" else all(json.loads(line) for line in lines)
    assert "s3cret" not in out.getvalue() and "admin" not in out.getvalue()
    assert "rtsp://***:***@10.0.0.5/live" in lines[0]


def test_a_source_shows_its_url_without_credentials_and_opens_it_with_them():
    source = Source("rtsp://admin:s3cret@127.0.0.1:1/live", (32, 32))
    assert source.uri == "rtsp://admin:s3cret@127.0.0.1:1/live" and source.display == "rtsp://***:***@127.0.0.1:1/live"
    assert source.name == "127-0-0-1-1-live"
    assert stream_name("rtsp://admin:s3cret@cam:abc/live") == "cam-live", "a bad port: an id all the same, no password"


def http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as err:  # /readyz answers 503 while a stream is not connected
        return err.read().decode()


class RawSubscriber:
    """Every ZeroMQ message's raw bytes, received in a thread."""

    def __init__(self, endpoint: str):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.subscribe(b"")
        self.socket.connect(endpoint)
        self.received: list[bytes] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.stopping.is_set():
            if self.socket.poll(100):
                self.received.append(b" ".join(self.socket.recv_multipart()))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.socket.close(0)
        self.context.term()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(MOSQUITTO is None or FFMPEG is None, reason="needs mosquitto and ffmpeg")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_password_in_a_source_url_appears_in_no_output_of_lrcn_serve(exported_seed, tmp_path, log_format):
    from tests.mqtt_subscriber import Subscriber as MqttSubscriber

    bundle, _, _ = exported_seed
    video = write_video(tmp_path / "clip.avi", n_frames=100)
    closed, live = free_port(), free_port()
    rtsp = f"rtsp://{USER}:{RTSP_PASSWORD}@127.0.0.1:{closed}/live"
    tcp = f"tcp://{USER}:{TCP_PASSWORD}@127.0.0.1:{live}"
    endpoint, metrics = f"tcp://127.0.0.1:{free_port()}", free_port()
    jsonl, stats_json = tmp_path / "messages.jsonl", tmp_path / "stats.json"
    broker = Broker(tmp_path / "broker").start()
    mqtt_subscriber = MqttSubscriber(broker.port)
    zmq_subscriber = RawSubscriber(endpoint)
    answers = {}
    try:
        with served(ffmpeg_tcp_ts(video, live), live):
            process = start_lrcn(
                "serve",
                "--log-format",
                log_format,
                bundle,
                rtsp,
                tcp,
                "--name",
                "door",
                "--endpoint",
                endpoint,
                "--metrics",
                f"127.0.0.1:{metrics}",
                "--jsonl",
                jsonl,
                "--mqtt",
                f"mqtt://{USER}:{MQTT_PASSWORD}@127.0.0.1:{broker.port}/lrcn",
                "--stats-json",
                stats_json,
                "--stats-interval",
                "0.5",
                "--backoff-max",
                "0.5",
                "--open-timeout",
                "2",
            )
            try:
                base = f"http://127.0.0.1:{metrics}"

                def served_enough() -> bool:
                    try:
                        streams = json.loads(http_text(f"{base}/api/streams"))["streams"]
                    except (OSError, ValueError):
                        return False
                    return (
                        streams["door"]["reconnects"] + streams["door"]["events"].__len__() >= 3
                        and streams[next(n for n in streams if n != "door")]["predictions"] >= 5
                    )

                assert (
                    wait_until(lambda: process.poll() is not None or served_enough(), 60, 0.2)
                    and process.poll() is None
                ), process.stderr.read() if process.poll() is not None else "not enough served"
                for page in ("/metrics", "/api/streams", "/readyz", "/healthz"):
                    answers[page] = http_text(base + page)
            finally:
                out, err = stop(process)
        assert wait_until(lambda: any(t.endswith("/status") for t, _, _ in mqtt_subscriber.messages()), 10)
    finally:
        zmq_subscriber.close()
        mqtt_subscriber.close()
        broker.stop()

    assert process.returncode == 0, err
    streams = json.loads(answers["/api/streams"])["streams"]
    assert streams["door"]["source"] == f"rtsp://***:***@127.0.0.1:{closed}/live", "the display form is shown"
    assert any("reconnecting" in e["state"] for e in streams["door"]["events"]), "the closed port produced reasons"
    assert "door" in json.loads(answers["/readyz"])["not_ready"]
    outputs = {
        "stdout": out,
        "stderr": err,
        **answers,
        "jsonl": jsonl.read_text(),
        "stats-json": stats_json.read_text(),
        "zeromq": b"\n".join(zmq_subscriber.received).decode(),
        "mqtt": "\n".join(f"{t} {p.decode()}" for t, p, _ in mqtt_subscriber.messages()),
    }
    assert all(outputs.values()), {name: len(text) for name, text in outputs.items()}
    assert "cannot open source rtsp://***:***@" in outputs["zeromq"] and "***" in err
    leaks = {name: secret for name, text in outputs.items() for secret in SECRETS if secret in text}
    assert not leaks, leaks


def test_a_bad_source_with_a_password_is_a_one_line_error_without_it(exported_seed, capsys):
    from lrcn.tools.cli.commands import main

    bundle, _, _ = exported_seed
    assert main(["serve", str(bundle), "ftp://admin:s3cret@cams.example/x.mp4"]) == 2
    err = capsys.readouterr().err
    assert "unsupported source URL scheme 'ftp' in 'ftp://***:***@cams.example/x.mp4'" in err, err
    assert "s3cret" not in err and "admin" not in err and len(err.strip().splitlines()) == 1
