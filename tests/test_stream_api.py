"""Adding and removing streams over the HTTP port (stream.stream_api) on a running pipeline:
real HTTP requests with and without the web-config's password, the JSONL sink as the record of
what the added stream published and of the removed one's final status."""

import http.client
import json
from pathlib import Path

import pytest

from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.service import ServiceServer
from tests.live_servers import wait_until
from tests.web_auth import basic, bcrypt_hash, web_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def running(exported_seed, tmp_path_factory):
    bundle, _, video = exported_seed
    folder = tmp_path_factory.mktemp("api")
    jsonl = folder / "messages.jsonl"
    pipeline = Pipeline(
        bundle,
        [StreamConfig(str(video), id="file", loop=True)],
        PipelineOptions(endpoint="tcp://127.0.0.1:*", sinks=({"type": "jsonl", "path": str(jsonl)},)),
    )
    pipeline.start()
    locked = ServiceServer(
        pipeline, "127.0.0.1:0", web_config=web_config(folder / "web.yml", users={"alice": bcrypt_hash(PASSWORD)})
    ).start()
    open_port = ServiceServer(pipeline, "127.0.0.1:0").start()
    try:
        yield pipeline, video, jsonl, locked.url, open_port.url
    finally:
        locked.stop()
        open_port.stop()
        pipeline.stop()


def call(url: str, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def messages(jsonl) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]


def test_writes_are_refused_without_the_web_config_password(running):
    pipeline, video, _, locked, open_port = running
    table = {"source": str(video), "id": "intruder", "loop": True}
    status, body = call(open_port, "POST", "/api/streams", table)
    assert status == 403 and "--web-config" in body["error"]
    assert call(open_port, "DELETE", "/api/streams/file")[0] == 403
    assert call(locked, "POST", "/api/streams", table)[0] == 401
    assert call(locked, "POST", "/api/streams", table, basic("alice", "wrong"))[0] == 401
    assert set(pipeline.configs) == {"file"}


def test_add_then_remove_a_stream_with_the_password(running):
    pipeline, video, jsonl, locked, _ = running
    auth = basic("alice", PASSWORD)
    status, body = call(
        locked,
        "POST",
        "/api/streams",
        {"source": str(video), "id": "door", "loop": True, "events": {"min_score": 0.0}},
        auth,
    )
    assert status == 201 and body["added"] == ["door"] and body["kept"] == ["file"], body
    assert wait_until(lambda: sum(m["topic"] == "pred/door" for m in messages(jsonl)) >= 3, 30), "its predictions start"
    status, body = call(locked, "DELETE", "/api/streams/door", headers=auth)
    assert status == 200 and body["removed"] == ["door"], body
    assert set(pipeline.configs) == {"file"}
    assert wait_until(
        lambda: any(m["topic"] == "status/door" and m["stats"].get("report") == "final" for m in messages(jsonl)), 10
    ), "its final status is sent"
    assert call(locked, "DELETE", "/api/streams/door", headers=auth)[0] == 404


@pytest.mark.parametrize(
    "body, headers, status, words",
    [
        ({"source": "x.mp4", "hop": 0}, {}, 400, "hop"),
        ({"source": "x.mp4", "colour": "red"}, {}, 400, "unknown key 'colour'"),
        ({"source": "rtsp://cam/live", "password_file": "/etc/shadow"}, {}, 400, "password_file"),
        (b"not json", {}, 400, "not JSON"),
        ([1, 2], {}, 400, "JSON object"),
        ({"source": "x.mp4"}, {"Content-Type": "text/plain"}, 415, "application/json"),
        ({"source": "VIDEO", "id": "file"}, {}, 409, "already served"),
    ],
)
def test_bad_stream_tables_are_refused_with_one_line(running, body, headers, status, words):
    pipeline, video, _, locked, _ = running
    if isinstance(body, dict) and body.get("source") == "VIDEO":
        body = {**body, "source": str(video)}
    got, answer = call(locked, "POST", "/api/streams", body, {**basic("alice", PASSWORD), **headers})
    assert got == status and words in answer["error"] and "\n" not in answer["error"], answer
    assert set(pipeline.configs) == {"file"}


def test_the_last_stream_cannot_be_removed(running):
    _, _, _, locked, _ = running
    status, body = call(locked, "DELETE", "/api/streams/file", headers=basic("alice", PASSWORD))
    assert status == 409 and "last stream" in body["error"]


def test_openapi_describes_every_path_and_method_served(running):
    """Each documented request gets an answer that is not "no page" from a real serve."""
    import yaml

    _, _, _, locked, _ = running
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs" / "reference" / "openapi.yaml").read_text())
    auth = basic("alice", PASSWORD)
    for path, methods in spec["paths"].items():
        concrete = path.replace("{id}", "nosuch")
        for method in methods:
            host, port = locked.removeprefix("http://").rsplit(":", 1)
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request(
                method.upper(),
                concrete,
                body=b"{}" if method == "post" else None,
                headers={"Content-Type": "application/json", **auth},
            )
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            assert b"no page" not in answer, (method, path, answer)
