"""Sinks beside ZeroMQ, through the real command line: `lrcn serve --jsonl` and [[sink]] tables
write the same messages, with the same `seq`, as the ZeroMQ subscriber receives; every message
kind validates against its JSON Schema in docs/schemas; a file sink rotates without a gap."""

import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from lrcn.stream.publisher import Subscriber
from tests.cli import cam_serve, start_lrcn
from tests.live_servers import free_port, wait_until
from lrcn.tools.evidence import schemas

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schemas"


def validators() -> dict[str, jsonschema.Draft202012Validator]:
    return {
        path.name.split(".")[0]: jsonschema.Draft202012Validator(json.loads(path.read_text()))
        for path in SCHEMAS.glob("*.schema.json")
    }


def serve_to_the_end(bundle, video, endpoint, *extra) -> tuple[list, str]:
    """Run `lrcn serve` on a file until it ends, with a subscriber on every topic; (messages, stderr)."""
    with Subscriber(endpoint) as subscriber:
        process = start_lrcn(*cam_serve(bundle, video), "--endpoint", endpoint, "--stats-interval", "0.5", *extra)
        received, deadline = [], time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            message = subscriber.receive(timeout_s=0.1)
            if message is not None:
                received.append(message)
        received += [m for m in iter(lambda: subscriber.receive(timeout_s=0.3), None)]
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return received, err


def jsonl_messages(*paths: Path) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def test_the_jsonl_file_holds_what_zeromq_sent_with_the_same_seq_and_every_kind_fits_its_schema(
    exported_seed, tmp_path
):
    bundle, _, video = exported_seed
    path = tmp_path / "out" / "messages.jsonl"
    received, err = serve_to_the_end(
        bundle, video, f"tcp://127.0.0.1:{free_port()}", "--jsonl", path, "--min-score", "0", "--min-duration", "0"
    )
    lines = jsonl_messages(path)
    by_topic = {}
    for line in lines:
        by_topic.setdefault(line["topic"], []).append(line)
    assert set(by_topic) == {"pred/cam", "status/cam", "event/cam"}, "heartbeats are left out by default"
    for topic, kept in by_topic.items():
        assert [m["seq"] for m in kept] == list(range(len(kept))), f"{topic}: the file has every message, in order"
    # Every message ZeroMQ delivered (the subscriber may have joined after the first few) is in
    # the file, byte for byte the same payload.
    zmq_by_key = {(m.topic, m.payload["seq"]): m.payload for m in received if m.kind != "heartbeat"}
    assert sum(topic == "pred/cam" for topic, _ in zmq_by_key) >= 10, err
    file_by_key = {(line["topic"], line["seq"]): {k: v for k, v in line.items() if k != "topic"} for line in lines}
    assert all(file_by_key[key] == payload for key, payload in zmq_by_key.items())
    assert {m.kind for m in received} == {"pred", "status", "event", "heartbeat"}

    check = validators()
    assert set(check) == {"pred", "status", "event", "heartbeat"}
    for message in received:
        check[message.kind].validate(message.payload)
    ends = [m.payload for m in received if m.kind == "event" and m.payload["type"] == "end"]
    assert ends and all({"end_frame", "duration_s", "peak_score"} <= set(e) for e in ends)
    broken = dict(next(m.payload for m in received if m.kind == "pred"))
    del broken["label"]
    assert not check["pred"].is_valid(broken) and not check["pred"].is_valid({**broken, "label": 3, "window": [1]})


def test_a_jsonl_sink_table_rotates_by_size_and_the_kept_files_hold_a_gapless_tail(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    path = tmp_path / "messages.jsonl"
    config = tmp_path / "deploy.toml"
    config.write_text(
        f'[[stream]]\nid = "cam"\nsource = "{video}"\n\n'
        f'[[sink]]\ntype = "jsonl"\npath = "{path}"\nmax_mb = 0.001\nkeep = 3\nkinds = ["pred"]\n'
    )
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    process = subprocess.run(
        [sys.executable, "-m", "lrcn.tools.cli", "serve", str(bundle), "--config", str(config), "--endpoint", endpoint],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert process.returncode == 0, process.stderr
    assert "sink jsonl: sent" in process.stderr and "rotations" in process.stderr
    kept = [path.with_name(f"{path.name}.{n}") for n in (3, 2, 1)] + [path]
    assert all(p.is_file() for p in kept) and not path.with_name(f"{path.name}.4").exists()
    assert all(p.stat().st_size <= 0.001 * 1024 * 1024 for p in kept)
    seqs = [m["seq"] for m in jsonl_messages(*kept)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 0, (
        "oldest first, no gap, the rest rotated out"
    )


def test_the_committed_schema_files_are_the_ones_the_code_makes():
    assert schemas.main(["--check"]) == 0, "run python -m lrcn.tools.evidence.schemas"


def test_a_jsonl_file_that_can_no_longer_be_written_is_counted_and_the_caller_never_notices(tmp_path):
    import shutil

    from lrcn.stream.outbox import Outbox
    from lrcn.stream.sinks.jsonl import JsonlSink

    folder = tmp_path / "logs"
    sink = JsonlSink(folder / "messages.jsonl", max_mb=0.001, keep=1)
    with Outbox([sink], node="test") as outbox:
        assert all(outbox.publish_status("cam", "connected", f"line {n}") for n in range(3))
        assert wait_until(lambda: sink.stats().sent == 3, 20), sink.stats()
        shutil.rmtree(folder)  # an unmounted disk: rotating and reopening now fail
        assert all(outbox.publish_status("cam", "connected", "x" * 200) for _ in range(20))
    stats = sink.stats()
    assert stats.sent >= 3 and stats.failed >= 1 and stats.sent + stats.failed == 23, stats
    assert sink.problem.startswith(f"cannot write {folder / 'messages.jsonl'}") and "\n" not in sink.problem
    assert not sink._writer.is_alive(), "the writer wrote what it could and ended at close"


@pytest.mark.parametrize("kind", [["mqtt"], {"type": "mqtt"}, None, 3])
def test_a_sink_type_that_is_not_a_name_is_one_error_line(kind):
    """A Python caller's or a JSON table's `type` of any value: refused as unknown, never a
    TypeError from looking an unhashable value up."""
    from lrcn.stream.errors import LrcnError
    from lrcn.stream.sinks import open_sink

    with pytest.raises(LrcnError, match=r"^unknown sink type .* \(known: zeromq, mqtt, jsonl"):
        open_sink({"type": kind}, node="test")
