import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lrcn.stream.publisher import Publisher
from lrcn.tools.cli.watch import StreamRow, render_table

ROOT = Path(__file__).resolve().parents[1]
LONG_REASON = "64x64 at 25.0 fps, via a long description of the source that no terminal this narrow fits"


def test_render_table_cuts_every_line_to_the_width():
    rows = {
        name: StreamRow(
            label="wave",
            score=0.9,
            latency_ms=12.0,
            predictions=5,
            state="connected",
            reason=LONG_REASON,
            last_seen=9.0,
        )
        for name in ("cam0", "cam1")
    }
    uncut = render_table(rows, now=10.0)
    assert min(len(line) for line in uncut[1:]) > 110, "uncut, the status makes the rows wider than the terminal"
    for width in (40, 80, 110):
        lines = render_table(rows, now=10.0, width=width)
        assert all(len(line) <= width for line in lines), lines
        assert [line.split()[0] for line in lines] == ["stream", "cam0", "cam1"]
        assert lines == [line[:width] for line in uncut], "each line keeps its start: the reason, last, is cut"
    assert "connected" in render_table(rows, now=10.0, width=80)[1], "the state shows at 80 columns"
    assert "64x64 at 25.0" in render_table(rows, now=10.0, width=110)[1]


def tmux(socket: Path, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-S", str(socket), *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to give `lrcn watch` a real 80-column terminal")
def test_watch_redraws_in_place_in_an_80_column_terminal(tmp_path):
    stop = threading.Event()
    socket = tmp_path / "tmux"  # a private server, and no socket file left in /tmp/tmux-UID
    with Publisher("tcp://127.0.0.1:*") as publisher:

        def publish():
            frame = 0
            while not stop.wait(0.05):
                for stream in ("cam0", "cam1"):
                    publisher.publish_status(stream, "connected", LONG_REASON, {"dropped": 0})
                    publisher.publish_prediction(
                        stream,
                        frame_index=frame,
                        window=(0, frame),
                        label="wave",
                        score=0.9,
                        top_k=[("wave", 0.9)],
                        captured_at=time.monotonic(),
                    )
                publisher.heartbeat(["cam0", "cam1"], interval_s=0.05)
                frame += 1

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        command = shlex.join([sys.executable, "-m", "lrcn.tools.cli", "watch", publisher.endpoint, "--duration", "6"])
        try:
            tmux(socket, "new-session", "-d", "-s", "watch", "-x", "80", "-y", "30", "-c", str(ROOT), command)
            # Keeps the pane (and an early error on it) readable should the command end before the capture.
            tmux(socket, "set-option", "-t", "watch", "remain-on-exit", "on")
            deadline, screen = time.monotonic() + 5, ""
            while time.monotonic() < deadline and not ("\ncam0 " in screen and "\ncam1 " in screen):
                time.sleep(0.1)
                screen = tmux(socket, "capture-pane", "-p", "-t", "watch")
            time.sleep(2)  # eight more redraws, each of which once added a copy of the table
            screen = tmux(socket, "capture-pane", "-p", "-t", "watch")
        finally:
            stop.set()
            thread.join(5)
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, timeout=10)
    lines = screen.splitlines()
    assert "lrcn: watched" not in screen, "captured after watch had ended:\n" + screen
    assert [line.split()[0] for line in lines if line.strip()] == ["stream", "cam0", "cam1", "last"], screen
    assert all(len(line) <= 80 for line in lines), screen
