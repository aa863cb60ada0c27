"""Sink failures are visible and never cut a message: a real `lrcn serve --jsonl` writing onto a
64 KiB tmpfs that fills up, and the failure reporting of the outbox on its own."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lrcn.stream.outbox import Outbox
from lrcn.stream.sinks import Sink
from lrcn.stream.sinks.jsonl import JsonlSink
from tests.live_servers import free_port, wait_until
from tests.cli import cam_serve, start_lrcn, stop


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k"):
    """A tmpfs of `size` mounted on `folder` for the block; skipped where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def metric(text: str, name: str, sink: str) -> float | None:
    match = re.search(rf'^{name}\{{sink="{sink}"\}} (\S+)$', text, re.MULTILINE)
    return float(match[1]) if match else None


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_jsonl_sink_on_a_full_disk_warns_counts_keeps_whole_lines_and_exits_cleanly(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "messages.jsonl"
        port = free_port()
        started = time.monotonic()
        process = start_lrcn(
            *cam_serve(bundle, video),
            "--loop",
            "--no-pace",
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--metrics",
            f"127.0.0.1:{port}",
            "--jsonl",
            path,
            "--stats-interval",
            "0.5",
        )
        try:

            def failures() -> float:
                with contextlib.suppress(OSError):
                    return metric(scrape(port), "lrcn_sink_failures_total", "jsonl") or 0
                return 0

            assert wait_until(lambda: failures() > 0, 60, 0.2), (
                process.stderr.read() if process.poll() is not None else "no failures"
            )
            # Many more failing writes than any count of warnings the rule below allows.
            assert wait_until(lambda: failures() >= 200, 60, 0.2), failures()
            scraped = scrape(port)
        finally:
            out, err = stop(process)
        stats_intervals = (time.monotonic() - started) / 0.5
        lines = path.read_bytes().split(b"\n")

    assert process.returncode == 0, err
    assert "Traceback" not in err and "Errno" not in err, err
    warnings = [line for line in err.splitlines() if " warning " in line and "sink jsonl:" in line]
    assert warnings and "No space left on device" in warnings[0], err
    assert len(warnings) <= stats_intervals + 1, "at most one warning per stats interval, not one per line"
    assert lines[-1] == b"", "the file ends with a whole line"
    assert all(json.loads(line)["topic"] for line in lines[:-1]), "every line parses"
    summary = re.search(r"sink jsonl: sent (\d+), dropped (\d+), failed (\d+)", err)
    assert summary, err
    sent, failed = int(summary[1]), int(summary[3])
    assert sent == len(lines) - 1, "sent counts exactly the lines in the file"
    assert failed > 0 and "problem cannot write" in err and "No space left on device" in err
    assert len(warnings) < failed / 2, "fewer warnings than failed lines"
    assert metric(scraped, "lrcn_messages_sent_total", "jsonl") <= sent
    assert metric(scraped, "lrcn_sink_failures_total", "jsonl") > 0


def test_a_write_cut_short_is_truncated_to_the_last_whole_line(tmp_path):
    """Lines bigger than what is left of a 64 KiB disk: each is dropped whole, the file keeps only
    whole lines, and once there is room again writing goes on."""
    with small_disk(tmp_path / "disk") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"x" * 40_000)
        sink = JsonlSink(disk / "m.jsonl")
        with Outbox([sink], node="test") as outbox:
            for n in range(5):
                outbox.publish_status("cam", "connected", f"{n} " + "y" * 7_000)
            assert wait_until(lambda: sink.failed and not sink.stats().queued, 5), sink.stats()
            stuck = sink.stats()
            filler.unlink()  # room again
            outbox.publish_status("cam", "connected", "after")
            assert wait_until(lambda: sink.sent == stuck.sent + 1, 5), sink.stats()
        lines = (disk / "m.jsonl").read_bytes().split(b"\n")
    assert stuck.sent + stuck.failed == 5 and stuck.failed >= 1, stuck
    assert "No space left on device" in stuck.problem
    assert lines[-1] == b"" and [json.loads(line)["reason"][:2] for line in lines[:-1]] == [
        f"{n} " for n in range(stuck.sent)
    ] + ["af"]


def test_a_zeromq_send_that_fails_is_counted_not_raised():
    from lrcn.stream.sinks.zeromq import ZeroMqSink

    sink = ZeroMqSink("tcp://127.0.0.1:0")
    outbox = Outbox([sink], node="test")
    assert outbox.publish_status("cam", "connected")
    sink.close(0)  # a socket gone under the caller's feet
    assert not outbox.publish_status("cam", "connected")
    stats = sink.stats()
    assert (stats.sent, stats.failed) == (1, 1) and stats.problem.startswith("cannot send on tcp://127.0.0.1:")


class Refusing(Sink):
    """A sink whose transport refuses everything."""

    name = "refusing"

    def send(self, message) -> bool:
        self.failed += 1
        self.problem = "the far end hung up"
        return False


def test_failures_are_logged_at_most_once_per_interval_per_sink(caplog):
    sink = Refusing()
    outbox = Outbox([sink, Refusing()], node="test")
    with caplog.at_level("WARNING", logger="lrcn.sinks"):
        outbox.publish_status("cam", "connected")
        assert outbox.report_failures(5.0, now=100.0) == [
            "sink refusing: 1 failures (1 in all): the far end hung up",
            "sink refusing-2: 1 failures (1 in all): the far end hung up",
        ]
        for _ in range(3):
            outbox.publish_status("cam", "connected")
        assert outbox.report_failures(5.0, now=104.9) == [], "within the interval: nothing"
        assert outbox.report_failures(5.0, now=105.0)[0] == "sink refusing: 3 failures (4 in all): the far end hung up"
        assert outbox.report_failures(5.0, now=200.0) == [], "nothing new: nothing"
    assert len(caplog.records) == 4 and caplog.records[0].sink == "refusing"
