"""The HTTP port locked and under stress, with real parts: a running pipeline's ServiceServer (and
`lrcn serve` as a process) on real sockets, real TLS with a CA and certificates the test makes
with the openssl CLI, bcrypt hashes, hundreds of idle and slow connections, a low descriptor
limit (prlimit), and a few hundred random requests."""

import collections
import http.client
import json
import logging
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest

from lrcn.stream.errors import LrcnError
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.service import ServiceServer
from lrcn.stream.webconfig import load_web_config
from tests.live_servers import free_port, wait_until
from tests.cli import metrics_url, start_lrcn, stderr_until, stop
from tests.web_auth import basic, bcrypt_hash, web_config

pytestmark = pytest.mark.timeout(120)
OPENSSL = shutil.which("openssl")
PROMETHEUS = shutil.which("prometheus")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed (apt-get install openssl)")
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def pipeline(exported_seed):
    """A pipeline running on a looping file, so /healthz is 200 and /frame has a frame."""
    bundle, _, video = exported_seed
    running = Pipeline(
        bundle, [StreamConfig(str(video), id="file", loop=True)], PipelineOptions(endpoint="tcp://127.0.0.1:*")
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """{name: path}: a CA, a server certificate it signed for 127.0.0.1 and localhost, and a
    client certificate it signed, each with its key."""
    if OPENSSL is None:
        pytest.skip("openssl not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run([OPENSSL, *map(str, args)], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lrcn test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
        )
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def request(
    url: str, path: str, method: str = "GET", headers: dict | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request on a fresh connection."""
    scheme, _, hostport = url.partition("://")
    host, port = hostport.rsplit(":", 1)
    connection = (
        http.client.HTTPSConnection(host, int(port), timeout=5, context=context)
        if scheme == "https"
        else http.client.HTTPConnection(host, int(port), timeout=5)
    )
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@needs_openssl
def test_a_locked_port_needs_tls_from_its_ca_and_a_password(pipeline, tls_files, tmp_path):
    config = web_config(
        tmp_path / "web.yml",
        tls={"cert_file": tls_files["server.crt"], "key_file": tls_files["server.key"]},
        users={"prometheus": bcrypt_hash(PASSWORD)},
        headers={"X-Frame-Options": "deny"},
    )
    with ServiceServer(pipeline, "127.0.0.1:0", web_config=config) as service:
        assert service.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=tls_files["ca.crt"])
        for path in ("/healthz", "/metrics", "/readyz", "/", "/api/streams", "/frame/file.jpg", "/nope"):
            status, headers, body = request(service.url, path, context=trusted)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), (path, status)
            assert b"file" not in body and b"lrcn_" not in body
        for wrong in (
            basic("prometheus", "wrong"),
            basic("nobody", PASSWORD),
            {"Authorization": "Basic !!"},
            {"Authorization": "Bearer " + PASSWORD},
        ):
            assert request(service.url, "/metrics", headers=wrong, context=trusted)[0] == 401, wrong
        assert wait_until(
            lambda: request(service.url, "/healthz", headers=basic("prometheus", PASSWORD), context=trusted)[0] == 200,
            20,
        )
        status, headers, body = request(service.url, "/metrics", headers=basic("prometheus", PASSWORD), context=trusted)
        assert status == 200 and b"lrcn_" in body and headers["X-Frame-Options"] == "deny"
        status, _, jpeg = request(
            service.url, "/frame/file.jpg", headers=basic("prometheus", PASSWORD), context=trusted
        )
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        with pytest.raises(ssl.SSLCertVerificationError):
            request(service.url, "/healthz", context=ssl.create_default_context())  # not our CA
        with pytest.raises((http.client.HTTPException, ConnectionError, TimeoutError)):
            request(service.url.replace("https://", "http://"), "/healthz", headers=basic("prometheus", PASSWORD))
        # and the port still serves after the plain-HTTP client and the distrustful one
        assert request(service.url, "/readyz", headers=basic("prometheus", PASSWORD), context=trusted)[0] == 200


def test_a_good_password_costs_one_bcrypt_then_is_remembered(pipeline, tmp_path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()  # about 0.2 s a check
    with ServiceServer(
        pipeline, "127.0.0.1:0", web_config=web_config(tmp_path / "web.yml", users={"p": hashed})
    ) as service:
        started = time.monotonic()
        statuses = [request(service.url, "/healthz", headers=basic("p", PASSWORD))[0] for _ in range(20)]
        elapsed = time.monotonic() - started
        started = time.monotonic()
        wrong = [request(service.url, "/healthz", headers=basic("p", "nope"))[0] for _ in range(3)]
        wrong_elapsed = time.monotonic() - started
    assert all(status in (200, 503) for status in statuses) and wrong == [401] * 3
    assert elapsed < 5 * wrong_elapsed / 3, (elapsed, wrong_elapsed)  # 20 good < 5 bad: only the first was bcrypt


@needs_openssl
def test_client_certificates_from_the_configured_ca_are_required(pipeline, tls_files, tmp_path):
    config = web_config(
        tmp_path / "web.yml",
        tls={
            "cert_file": tls_files["server.crt"],
            "key_file": tls_files["server.key"],
            "client_ca_file": tls_files["ca.crt"],
            "client_auth_type": "RequireAndVerifyClientCert",
            "min_version": "TLS13",
        },
    )
    with ServiceServer(pipeline, "127.0.0.1:0", web_config=config) as service:
        anonymous = ssl.create_default_context(cafile=tls_files["ca.crt"])
        with pytest.raises((ssl.SSLError, ConnectionError)):
            request(service.url, "/healthz", context=anonymous)
        known = ssl.create_default_context(cafile=tls_files["ca.crt"])
        known.load_cert_chain(tls_files["client.crt"], tls_files["client.key"])
        assert request(service.url, "/healthz", context=known)[0] in (200, 503)
        old = ssl.create_default_context(cafile=tls_files["ca.crt"])
        old.load_cert_chain(tls_files["client.crt"], tls_files["client.key"])
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionError)):
            request(service.url, "/healthz", context=old)


BAD_FILES = {
    "unknown key": ("tls_server_config:\n  cert_file: a\n  key_file: b\n  ciphers: x\n", "ciphers: unknown"),
    "a toolkit key lrcn lacks": ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit: an exporter-toolkit"),
    "plain password": ("basic_auth_users:\n  alice: secret\n", "basic_auth_users.alice must be a bcrypt hash"),
    "no key_file": ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config needs key_file"),
    "bad YAML": ("basic_auth_users: [\n", ":2: not valid YAML"),
    "not a mapping": ("- a\n- b\n", "the file must be a mapping"),
    "CA without policy": (
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
        "client_ca_file without a client_auth_type",
    ),
    "unverified client certs": (
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n"
        "  client_auth_type: RequireAnyClientCert\n",
        "does not verify",
    ),
    "TLS version": ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n", "'SSL3' is not one of"),
    "header": ("http_server_config:\n  headers:\n    Set-Cookie: a\n", "headers.Set-Cookie: unknown"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_web_config_is_one_line_naming_the_file(name, tmp_path):
    text, expected = BAD_FILES[name]
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(LrcnError) as raised:
        load_web_config(path)
    message = str(raised.value)
    assert message.startswith(f"web config {path}") and expected in message and "\n" not in message, message


def test_missing_certificate_files_and_a_missing_file_are_one_line(pipeline, tmp_path):
    with pytest.raises(LrcnError, match=r"^web config .*nope.yml: No such file"):
        ServiceServer(pipeline, "127.0.0.1:0", web_config=tmp_path / "nope.yml")
    config = web_config(tmp_path / "web.yml", tls={"cert_file": "gone.crt", "key_file": "gone.key"})
    with pytest.raises(LrcnError, match=r"cannot load cert_file .*gone.crt"):
        ServiceServer(pipeline, "127.0.0.1:0", web_config=config)


def test_only_known_host_names_are_answered(pipeline):
    with ServiceServer(pipeline, "127.0.0.1:0") as service:
        port = service.url.rsplit(":", 1)[1]
        for host in (
            "localhost",
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            "[::1]",
            "10.1.2.3:80",
            "LOCALHOST.",
            socket.gethostname(),
            socket.getfqdn(),
        ):
            assert request(service.url, "/healthz", headers={"Host": host})[0] in (200, 503), host
        for host in ("attacker.example", f"attacker.example:{port}", "localhost.attacker.example", "127.0.0.1.nip.io"):
            status, _, body = request(service.url, "/api/streams", headers={"Host": host})
            assert status == 403 and b"file" not in body, host
    with ServiceServer(pipeline, "127.0.0.1:0", allowed_hosts=["Cam.Example:9108"]) as service:
        assert request(service.url, "/healthz", headers={"Host": "cam.example:9108"})[0] in (200, 503)
        assert request(service.url, "/healthz", headers={"Host": "localhost"})[0] == 403


def test_head_answers_the_headers_of_get_and_server_names_no_python(pipeline):
    with ServiceServer(pipeline, "127.0.0.1:0") as service:
        for path in ("/", "/healthz", "/nope"):
            get_status, get_headers, body = request(service.url, path)
            head_status, head_headers, head_body = request(service.url, path, method="HEAD")
            assert head_status == get_status and head_body == b""
            assert head_headers["Content-Type"] == get_headers["Content-Type"]
            if path == "/":
                assert int(head_headers["Content-Length"]) == len(body)
            assert get_headers["Server"] == head_headers["Server"] == "lrcn"
        assert request(service.url, "/", method="PUT")[0] == 501


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed `sock` yet (it sends nothing before closing)."""
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


def test_idle_and_slow_connections_are_closed_in_time_and_healthz_answers_throughout(pipeline):
    """150 connections that never send and 150 that send half a head (slowloris): closed after
    the timeouts, while /healthz answers (no queue behind them)."""
    timeout_s = 3.0
    with ServiceServer(pipeline, "127.0.0.1:0", idle_timeout_s=timeout_s, header_timeout_s=timeout_s) as service:
        host, port = service.url.split("//")[1].rsplit(":", 1)
        assert wait_until(lambda: request(service.url, "/healthz")[0] == 200, 20)
        opened = time.monotonic()
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(300)]
        for sock in idle[150:]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: local")
        # An answer counts if the oldest idle connection, the first the server closes, was still open
        # after it: then /healthz did not wait behind the 300, however slow this machine is.
        answered_while_open = 0
        while answered_while_open < 5 and still_open(idle[0]):
            assert request(service.url, "/healthz")[0] == 200
            answered_while_open += still_open(idle[0])
        assert answered_while_open >= 1, "no /healthz answer while the 300 connections were open"
        deadline = opened + timeout_s + 10.0  # the timeout and a generous turn of the loop on a busy machine
        closed, seen_closed = 0, []
        for sock in idle:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                closed += sock.recv(100) == b""
            except (TimeoutError, ConnectionResetError):
                pass
            seen_closed.append(time.monotonic())
            sock.close()
        assert closed == 300, closed
        assert seen_closed[0] - opened >= timeout_s, "the oldest was closed before its timeout"
        assert request(service.url, "/healthz")[0] == 200


def lrcn_serve_limited(bundle: Path, nofile: int, *args) -> subprocess.Popen:
    """`lrcn serve` with at most `nofile` descriptors, set before exec."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return start_lrcn("serve", bundle, *args, preexec_fn=limit)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


@pytest.mark.slow
def test_at_a_low_descriptor_limit_the_accept_loop_does_not_spin_and_healthz_answers(exported_seed):
    """`lrcn serve` at 64 descriptors, watching a camera that is not there (so it spends no CPU of
    its own), flooded with 300 connections that stay open: /healthz keeps answering and the process
    takes little CPU (the accept loop backs off instead of spinning on EMFILE)."""
    bundle, _, _ = exported_seed
    process = lrcn_serve_limited(bundle, 64, f"tcp://127.0.0.1:{free_port()}", "--metrics", "127.0.0.1:0")
    flood = []
    try:
        url = metrics_url(process)
        host, port = url.split("//")[1].rsplit(":", 1)
        assert wait_until(lambda: request(url, "/healthz")[0] == 200, 20), request(url, "/healthz")
        flooding = time.monotonic()
        for _ in range(300):
            try:
                flood.append(socket.create_connection((host, int(port)), timeout=0.5))
            except OSError:  # a full backlog: the kernel drops the SYN
                if time.monotonic() - flooding > 10:
                    break
        before, started = cpu_seconds(process.pid), time.monotonic()
        for _ in range(10):
            assert request(url, "/healthz")[0] == 200
            time.sleep(0.3)  # a measuring window of CPU time: a spinning accept loop would fill it
        used = (cpu_seconds(process.pid) - before) / (time.monotonic() - started)
        print(f"lrcn serve at 64 descriptors, {len(flood)} connections open: {used:.1%} of a core")
        assert used < 0.3, f"{used:.0%} of a core while flooded"
        assert len(flood) >= 200, f"{len(flood)} of 300 connected: the listen backlog is too short"
    finally:
        for sock in flood:
            sock.close()
        _, err = stop(process)
    assert "Traceback" not in err, err
    assert process.returncode == 0, err


OUT_OF_DESCRIPTORS_SERVER = """
import logging, resource, sys, time
from lrcn.stream.httpd import HttpServer
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
answer = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
server = HttpServer(("127.0.0.1", 0), lambda head, peer: (answer, False), max_connections=1000).start()
print(server.address[1], flush=True)
time.sleep(60)
"""


def test_out_of_descriptors_the_accept_loop_backs_off_and_still_answers():
    """The HTTP loop alone at 32 descriptors and a connection limit it cannot reach, so accept()
    itself fails with EMFILE: it warns, closes the oldest idle connections to answer new ones, and
    does not spin."""
    process = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    flood, warned = [], ""
    try:
        port = int(process.stdout.readline())
        for _ in range(150):
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        warned = stderr_until(process, "out of file descriptors")
        before, started = cpu_seconds(process.pid), time.monotonic()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert read_answer(sock, "GET") == (200, b"ok")
            time.sleep(0.2)  # a measuring window of CPU time: a spinning loop would fill it
        used = (cpu_seconds(process.pid) - before) / (time.monotonic() - started)
        assert used < 0.3, f"{used:.0%} of a core at the descriptor limit"
    finally:
        for sock in flood:
            sock.close()
        process.kill()
        _, err = process.communicate(timeout=10)
        err = warned + err
    assert "out of file descriptors" in err and "Traceback" not in err, err


def test_a_bad_web_config_stops_serve_with_one_line(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    (tmp_path / "web.yml").write_text("basic_auth_users:\n  alice: secret\n")
    process = lrcn_serve_limited(
        bundle, 1024, f"tcp://127.0.0.1:{free_port()}", "--metrics", "127.0.0.1:0", "--web-config", tmp_path / "web.yml"
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if "web config" in line]
    assert len(lines) == 1 and "basic_auth_users.alice must be a bcrypt hash" in lines[0] and "Traceback" not in err


METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PATCH",
    "get",
    "G\x00T",
    "",
    "GET GET",
]
PATHS = [
    "/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/streams",
    "/frame/file.jpg",
    "/frame/../../etc/passwd.jpg",
    "/frame/%00.jpg",
    "/%ff%fe",
    "*",
    "http://evil.example/metrics",
    "//",
    "/?" + "a" * 5000,
    "",
    "/\x7f",
    "/frame/" + "é" * 50 + ".jpg",
    "/index.html#x",
]
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1.1", "HTTP/x", "", "http/1.1", "HTTP/1.1 extra"]
GOOD_AUTH = "Authorization: Basic " + b64encode(f"p:{PASSWORD}".encode()).decode()
HEADERS = [
    "Host: localhost",
    "Host: evil.example",
    "Host:",
    "Host: [::1",
    "Host: " + "a" * 300,
    GOOD_AUTH,
    "Authorization: Basic ====",
    "Authorization: Basic " + b64encode(b"\xff\xfe:\x00").decode(),
    "Authorization: Digest x",
    "Content-Length: 5",
    "Content-Length: -1",
    "Content-Length: x",
    "Transfer-Encoding: chunked",
    "Connection: close",
    "Connection: keep-alive",
    "Accept: application/openmetrics-text; version=1.0.0",
    "Accept: */*;q=x",
    "X-Long: " + "b" * 70000,
    "no colon here",
    " folded",
    "\x00: \x01",
    "Expect: 100-continue",
]


def random_request(rng: random.Random) -> tuple[str, str, list[str]]:
    """(method, request line, header lines): mostly well formed, so that the answers reach every
    path and status and not only the parser's 400, with the odd pieces mixed in."""
    method = rng.choice(["GET", "HEAD"] if rng.random() < 0.7 else METHODS)
    version = rng.choice(["HTTP/1.1", "HTTP/1.0"] if rng.random() < 0.8 else VERSIONS)
    headers = rng.sample(HEADERS, rng.randint(0, 3))
    if rng.random() < 0.7:
        headers.insert(0, "Host: localhost")
    if rng.random() < 0.6:
        headers.append(GOOD_AUTH)
    return method, " ".join(part for part in (method, rng.choice(PATHS), version) if part), headers


ANSWER = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n")


def read_answer(sock: socket.socket, method: str) -> tuple[int, bytes] | None:
    """(status, rest) of the first final answer on `sock`, checked to be well formed; None when
    the server closed without answering."""
    data = b""
    while True:
        match = ANSWER.match(data)
        if match and match.group(1).startswith(b"1"):  # 100 Continue: the answer follows
            data = data[match.end() :]
            continue
        if match:
            headers = dict(line.split(b": ", 1) for line in match.group(2).split(b"\r\n") if line)
            length = int(headers.get(b"Content-Length", b"0"))
            body_length = 0 if method == "HEAD" else length
            if len(data) >= match.end() + body_length:
                return int(match.group(1)), data[match.end() :]
        elif len(data) >= 7 and not data.startswith(b"HTTP/1."):
            raise AssertionError(f"not an HTTP answer: {data[:200]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            assert not data, f"cut off: {data[:300]!r}"
            return None
        data += chunk


def test_random_requests_get_well_formed_answers_and_no_traceback(pipeline, tmp_path, caplog):
    rng = random.Random(22)
    config = web_config(tmp_path / "web.yml", users={"p": bcrypt_hash(PASSWORD)})
    statuses = collections.Counter()
    with (
        caplog.at_level(logging.DEBUG, logger="lrcn"),
        ServiceServer(pipeline, "127.0.0.1:0", web_config=config, header_timeout_s=1.0) as service,
    ):
        host, port = service.url.split("//")[1].rsplit(":", 1)
        started = time.monotonic()
        for _i in range(300):
            method, line, headers = random_request(rng)
            head = "\r\n".join([line, *headers]).encode("utf-8") + rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n\n"])
            if rng.random() < 0.1:
                head = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n"
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                try:
                    sock.sendall(head)
                    answer = read_answer(sock, method)
                except (ConnectionResetError, BrokenPipeError):
                    # A head over 64 KiB is answered 431 and closed while the rest is still coming;
                    # the bytes left unread make that close a reset, which may overtake the answer.
                    assert len(head) > 65536
                    answer = (431, b"")
            statuses[answer and answer[0]] += 1
            if answer is not None and answer[0] == 200:
                assert GOOD_AUTH.encode() in head, head[:200]
        elapsed = time.monotonic() - started
        assert request(service.url, "/healthz", headers=basic("p", PASSWORD))[0] == 200
    assert statuses[None] <= 10 and elapsed < 30, (statuses, elapsed)
    assert {200, 400, 401, 403, 404, 431, 501} <= set(statuses), statuses  # every gate was reached
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
    ]


def test_binding_beyond_loopback_without_a_password_is_a_warning(pipeline, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="lrcn.service"):
        ServiceServer(pipeline, "0.0.0.0:0").stop()
    assert any("without a password" in r.getMessage() for r in caplog.records)
    caplog.clear()
    config = web_config(tmp_path / "web.yml", users={"p": bcrypt_hash(PASSWORD)})
    with caplog.at_level(logging.WARNING, logger="lrcn.service"):
        ServiceServer(pipeline, "127.0.0.1:0", web_config=config).stop()
        ServiceServer(pipeline, "127.0.0.1:0").stop()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.mark.slow
@needs_openssl
@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus server on PATH (Debian: apt-get install prometheus)")
def test_one_web_config_locks_prometheus_and_lrcn_and_prometheus_scrapes_through_it(pipeline, tls_files, tmp_path):
    """The exporter-toolkit format, proven by its own reader: the same file (relative paths and
    all) locks a real Prometheus's web port and lrcn's, and Prometheus scrapes lrcn over TLS with
    the password."""
    for name, path in tls_files.items():
        shutil.copy(path, tmp_path / name)
    config = web_config(
        tmp_path / "web.yml",
        tls={"cert_file": "server.crt", "key_file": "server.key"},
        users={"prometheus": bcrypt_hash(PASSWORD)},
    )
    (tmp_path / "password").write_text(PASSWORD)
    trusted = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    with ServiceServer(pipeline, "127.0.0.1:0", web_config=config) as service:
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n  - job_name: lrcn\n"
            f"    scheme: https\n    tls_config: {{ca_file: {tmp_path / 'ca.crt'}}}\n"
            f"    basic_auth: {{username: prometheus, password_file: {tmp_path / 'password'}}}\n"
            f"    static_configs: [{{targets: ['{service.url.removeprefix('https://')}']}}]\n"
        )
        port = free_port()
        base = f"https://127.0.0.1:{port}"
        with open(tmp_path / "prometheus.log", "w") as out:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--web.config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:

            def targets():
                try:
                    status, _, body = request(
                        base, "/api/v1/targets", headers=basic("prometheus", PASSWORD), context=trusted
                    )
                except OSError:
                    return None
                assert status in (200, 503), body  # 503: Prometheus is still starting
                return json.loads(body)["data"]["activeTargets"] if status == 200 else None

            assert wait_until(
                lambda: process.poll() is not None or [t["health"] for t in targets() or []] == ["up"], 45
            ), (targets(), (tmp_path / "prometheus.log").read_text()[-2000:])
            assert request(base, "/api/v1/targets", context=trusted)[0] == 401, "the file locks Prometheus too"
            status, _, body = request(
                base, "/api/v1/query?query=lrcn_build_info", headers=basic("prometheus", PASSWORD), context=trusted
            )
            assert status == 200 and json.loads(body)["data"]["result"], body
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_pipelined_and_byte_by_byte_requests_are_answered_in_order(pipeline):
    with ServiceServer(pipeline, "127.0.0.1:0") as service:
        host, port = service.url.split("//")[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, rest = read_answer(sock, "GET")
            assert status == 404
            second = rest
            while b"\r\n\r\n" not in second:
                second += sock.recv(65536)
            assert second.startswith(b'{"error": "no page /nope"}HTTP/1.1 200 OK\r\n'), second  # HEAD: no body
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n":
                sock.send(bytes([byte]))
            assert read_answer(sock, "GET")[0] == 404


def test_flags_win_over_the_deployment_file_for_the_port_lock():
    from argparse import Namespace

    from lrcn.tools.cli.args import host_list
    from lrcn.tools.cli.serving import service_options

    file = {"web_config": "/etc/lrcn/web.yml", "allowed_hosts": ["cam.example"]}
    assert service_options(Namespace(web_config=None, allowed_hosts=None), file) == {
        "web_config": "/etc/lrcn/web.yml",
        "allowed_hosts": ["cam.example"],
    }
    assert service_options(Namespace(web_config="mine.yml", allowed_hosts=host_list("a.example, b.example")), file) == {
        "web_config": "mine.yml",
        "allowed_hosts": ["a.example", "b.example"],
    }
    assert service_options(Namespace(web_config=None, allowed_hosts=None), {}) == {
        "web_config": None,
        "allowed_hosts": None,
    }
