"""A real Mosquitto on 127.0.0.1, for the MQTT sink's tests and benchmark: config, persistence and
log in a scratch folder, started and stopped by its caller (SIGTERM, then kill), restartable on
the same port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from lrcn.tools.evidence.ffmpeg_server import free_port, wait_until

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """mosquitto with its config in `folder`; `extra` lines go into the listener's section
    (e.g. TLS files, password_file with allow_anonymous false)."""

    def __init__(self, folder: Path, port: int | None = None, extra: list[str] = (), anonymous: bool = True):
        self.folder, self.port = Path(folder), port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "mosquitto.conf"
        self.log = self.folder / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            *extra,
            "persistence true",
            f"persistence_location {self.folder}/",
            "max_queued_messages 100000",
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto switches to a `mosquitto` user that cannot write here
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> Broker:
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        if (
            not wait_until(lambda: self.process.poll() is not None or accepts(self.port), timeout_s, 0.05)
            or self.process.poll() is not None
        ):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log.read_text()[-2000:]}")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
