"""An authenticated proxy with real parts: real pyzmq sockets, `lrcn keys` folders, and real
`lrcn proxy` / `lrcn serve` processes; rogue publishers and subscribers, SIGHUP revocation, and a
publisher that can deliver nothing saying so."""

import json
import signal
import subprocess
import time

import pytest
import zmq.auth

from lrcn.stream.errors import LrcnError
from lrcn.stream.keys import ClientKeys, load_client_keys, load_proxy_keys, make_keys
from lrcn.stream.publisher import Proxy, Publisher, Subscriber
from lrcn.tools.cli.commands import main
from tests.live_servers import free_port, wait_until
from tests.receivers import ANY_PORT, Ticker, first_message, publish
from tests.cli import cam_serve, start_lrcn, stderr_until
from tests.receivers import receive_until
from tests.cli import metrics_url
from tests.receivers import scrape

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def keys(tmp_path):
    """A proxy's folder: subscribers `client` and `dash`, publishers `edge` and `edge2`."""
    folder = tmp_path / "keys"
    make_keys(folder)
    make_keys(folder, "dash")
    make_keys(folder, "edge", role="publisher")
    make_keys(folder, "edge2", role="publisher")
    return folder


def stranger(tmp_path, server_public: bytes) -> ClientKeys:
    """A well-formed pair that no list authorizes."""
    zmq.auth.create_certificates(str(tmp_path), "stranger")
    public, _ = zmq.auth.load_certificate(str(tmp_path / "stranger.key"))
    _, secret = zmq.auth.load_certificate(str(tmp_path / "stranger.key_secret"))
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def streams_seen(subscriber: Subscriber, seconds: float) -> set:
    seen, deadline = set(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = subscriber.receive(timeout_s=0.05)
        if message is not None:
            seen.add(message.stream)
    return seen


def test_a_curve_proxy_forwards_only_authorized_publishers_to_authorized_subscribers(keys, tmp_path):
    proxy_keys = load_proxy_keys(keys)
    intruder = stranger(tmp_path, proxy_keys.public)
    with (
        Proxy(ANY_PORT, ANY_PORT, curve=proxy_keys) as proxy,
        Publisher(proxy.xsub_endpoint, bind=False, curve=load_client_keys(keys, "edge")) as edge,
        Publisher(proxy.xsub_endpoint, bind=False) as plaintext,
        Publisher(proxy.xsub_endpoint, bind=False, curve=intruder) as unknown,
        Publisher(proxy.xsub_endpoint, bind=False, curve=load_client_keys(keys, "dash")) as subscriber_key,
        Subscriber(proxy.xpub_endpoint, curve=load_client_keys(keys)) as allowed,
        Subscriber(proxy.xpub_endpoint, curve=load_client_keys(keys, "edge")) as publisher_key,
        Subscriber(proxy.xpub_endpoint, curve=intruder) as denied,
        Subscriber(proxy.xpub_endpoint) as eavesdropper,
    ):
        rogues = {"plaintext": plaintext, "unknown": unknown, "subscriber-key": subscriber_key}

        def send():
            publish(edge, "edge")
            for name, rogue in rogues.items():
                rogue.publish_event(name, {"type": "start", "label": "fake"})

        assert first_message(allowed, send).stream == "edge"
        with Ticker(send):
            assert streams_seen(allowed, 2.0) == {"edge"}, "no rogue's fake event reached the subscriber"
            assert [s.receive(timeout_s=0.5) for s in (publisher_key, denied, eavesdropper)] == [None] * 3
        failures = proxy.handshake_failures()
    assert failures["publishers"] >= 3 and failures["subscribers"] >= 3, failures
    for rogue in rogues.values():
        stats = rogue.zeromq.stats()
        assert stats.sent == 0 and stats.undelivered > 0 and not stats.connected, stats
    assert "delivers nothing: handshake refused: this key is not authorized" in unknown.zeromq.stats().problem
    assert edge.counts().sent > 0 and edge.zeromq.stats().connected


def test_reloading_the_keys_revokes_a_connected_subscriber_and_keeps_the_others(keys):
    with (
        Proxy(ANY_PORT, ANY_PORT, curve=load_proxy_keys(keys)) as proxy,
        Publisher(proxy.xsub_endpoint, bind=False, curve=load_client_keys(keys, "edge")) as edge,
        Subscriber(proxy.xpub_endpoint, curve=load_client_keys(keys)) as revoked,
        Subscriber(proxy.xpub_endpoint, curve=load_client_keys(keys, "dash")) as kept,
    ):
        with Ticker(lambda: publish(edge, "edge")):
            assert first_message(revoked, lambda: None) is not None and first_message(kept, lambda: None) is not None
            (keys / "authorized_clients" / "client.key").unlink()
            assert proxy.reload_keys() == {"publishers": 0, "subscribers": 1}
            assert proxy.authorized() == {"publishers": 2, "subscribers": 1}
            rebound = edge.counts().sent  # what edge publishes from now on reaches only the kept
            after = lambda ms: any(m.payload["seq"] > rebound for m in ms)
            assert after(receive_until(kept, after, 10)), "the other subscriber reconnected"
            cut = edge.counts().sent
            # What the proxy sent before the rebind may still reach the revoked one, however late.
            late = receive_until(revoked, lambda ms: False, 1.0)
            assert all(m.payload["seq"] <= cut for m in late), "the revoked one is out without a restart"


def test_a_proxy_refuses_to_start_without_a_publishers_list_and_reload_keeps_the_old_lists_on_a_bad_file(tmp_path):
    folder = tmp_path / "keys"
    make_keys(folder)
    with pytest.raises(LrcnError, match="no authorized_publishers/ folder"):
        load_proxy_keys(folder)
    make_keys(folder, "edge", role="publisher")
    with Proxy(ANY_PORT, ANY_PORT, curve=load_proxy_keys(folder)) as proxy:
        (folder / "authorized_publishers" / "junk.key").write_text("not a certificate\n")
        with pytest.raises(LrcnError, match="junk.key"):
            proxy.reload_keys()
        assert proxy.authorized() == {"publishers": 1, "subscribers": 1}


def test_cli_keys_makes_a_publisher_pair_in_its_own_list(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert main(["keys", str(folder), "--publisher", "edge1"]) == 0
    assert main(["keys", str(folder), "--publisher"]) == 0
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [
        "authorized_publishers/edge1.key",
        "authorized_publishers/publisher.key",
        "edge1.key",
        "edge1.key_secret",
        "publisher.key",
        "publisher.key_secret",
        "server.key",
        "server.key_secret",
    ]
    assert (folder / "authorized_clients").is_dir() and not any((folder / "authorized_clients").iterdir())


def start_proxy(*args):
    xsub, xpub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    process = start_lrcn("proxy", "--xsub", xsub, "--xpub", xpub, *args)
    banner = process.stdout.readline()
    assert banner.startswith("proxy: publishers -> "), banner + (process.stderr.read() if process.poll() else "")
    return process, xsub, xpub


def finish(*processes) -> list[str]:
    """SIGINT each in turn (a recognizer before its proxy, so its last messages have somewhere to
    go), and their stderr."""
    errs = []
    for process in processes:
        process.send_signal(signal.SIGINT)
        try:
            errs.append(process.communicate(timeout=15)[1])
        except subprocess.TimeoutExpired:
            process.kill()
            errs.append(process.communicate()[1])
    return errs


@pytest.mark.slow
def test_serve_publishes_through_a_curve_proxy_a_rogue_does_not_and_sighup_revokes_a_subscriber(
    exported_seed, keys, tmp_path
):
    bundle, _, video = exported_seed
    proxy, xsub, xpub = start_proxy("--curve-keys", keys)
    serve = start_lrcn(
        *cam_serve(bundle, video),
        "--loop",
        "--connect",
        xsub,
        "--curve-keys",
        keys,
        "--curve-client",
        "edge",
    )
    reloaded = ""
    try:
        with (
            Subscriber(xpub, curve=load_client_keys(keys)) as subscriber,
            Subscriber(xpub, curve=stranger(tmp_path, load_proxy_keys(keys).public)) as denied,
            Publisher(xsub, bind=False) as rogue,
            Ticker(lambda: rogue.publish_event("cam", {"type": "start", "label": "fake"}), period_s=0.05),
        ):
            messages = receive_until(subscriber, lambda ms: sum(m.kind == "pred" for m in ms) >= 5, 40)
            assert sum(m.kind == "pred" for m in messages) >= 5, serve.stderr.read() if serve.poll() else ""
            assert not any(m.kind == "event" and m.payload.get("label") == "fake" for m in messages)
            assert denied.receive(timeout_s=0.5) is None
            (keys / "authorized_clients" / "client.key").unlink()
            proxy.send_signal(signal.SIGHUP)
            reloaded = stderr_until(proxy, "SIGHUP: keys reloaded")
            while subscriber.receive(timeout_s=0.5) is not None:  # what the proxy sent before the reload
                pass
            assert receive_until(subscriber, lambda ms: False, 2.0) == [], "revoked without a restart"
    finally:
        serve_err, proxy_err = finish(serve, proxy)
        proxy_err = reloaded + proxy_err
    assert serve.returncode == 0, serve_err
    assert "refused a CURVE handshake from 127.0.0.1" in proxy_err, proxy_err
    assert "a client failed the handshake: no CURVE" in proxy_err, "the plaintext rogue is logged too"
    assert (
        "SIGHUP: keys reloaded: publishers 2 keys authorized, subscribers 1 keys authorized; "
        "1 revoked on the subscribers side" in proxy_err
    ), proxy_err
    assert "delivers nothing" not in serve_err


@pytest.mark.slow
def test_serve_into_a_proxy_that_refuses_it_warns_and_reports_nothing_as_sent(exported_seed, keys, tmp_path):
    bundle, _, video = exported_seed
    proxy, xsub, _ = start_proxy("--curve-keys", keys)
    stats_json = tmp_path / "stats.json"
    # `dash` is a subscriber's pair: the proxy's XSUB side does not admit it
    serve = start_lrcn(
        *cam_serve(bundle, video),
        "--connect",
        xsub,
        "--curve-keys",
        keys,
        "--curve-client",
        "dash",
        "--stats-interval",
        "0.5",
        "--stats-json",
        stats_json,
        "--duration",
        "4",
    )
    try:
        serve_err = serve.communicate(timeout=60)[1]
    finally:
        (proxy_err,) = finish(proxy)
    assert serve.returncode == 0, serve_err
    stats = json.loads(stats_json.read_text())
    zeromq = stats["sinks"]["zeromq"]
    assert stats["publisher"]["sent"] == zeromq["sent"] == 0 and zeromq["undelivered"] > 0, zeromq
    assert zeromq["handshake_failures"] > 0 and zeromq["connected"] is False
    assert "delivers nothing: handshake refused: this key is not authorized by the server" in serve_err, serve_err
    assert f"{zeromq['undelivered']} messages not delivered: no proxy accepted the publisher" in serve_err
    assert "refused a CURVE handshake" in proxy_err


@pytest.mark.slow
def test_serve_with_curve_keys_counts_refused_subscribers_in_metrics_and_sighup_revokes(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    folder = tmp_path / "keys"
    make_keys(folder)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    serve = start_lrcn(
        "serve", bundle, video, "--loop", "--endpoint", endpoint, "--curve-keys", folder, "--metrics", free_port()
    )
    reloaded = ""
    try:
        url = metrics_url(serve)
        with Subscriber(endpoint, curve=stranger(tmp_path, load_client_keys(folder).server_public)) as denied:
            assert denied.receive(timeout_s=1.5) is None
        assert wait_until(
            lambda: scrape(url)[("lrcn_curve_handshake_failures_total", (("sink", "zeromq"),))] >= 1, 10, 0.05
        )
        (folder / "authorized_clients" / "client.key").unlink()
        serve.send_signal(signal.SIGHUP)
        reloaded = stderr_until(serve, "SIGHUP: CURVE keys reloaded")
        with Subscriber(endpoint, curve=load_client_keys(folder)) as revoked:
            assert receive_until(revoked, lambda ms: False, 2.0) == [], "a revoked key's new handshake is refused"
    finally:
        (serve_err,) = finish(serve)
        serve_err = reloaded + serve_err
    assert serve.returncode == 0, serve_err
    assert "SIGHUP: CURVE keys reloaded, 1 revoked" in serve_err
    assert "refused a CURVE handshake from 127.0.0.1" in serve_err
