"""Headless Chromium driven over its DevTools pipe (--remote-debugging-pipe: JSON messages ending in
a NUL byte, commands on the browser's fd 3, answers and events on its fd 4), so a test can ask a
live page what --dump-dom cannot show (a <video>'s readyState and duration) with the standard
library alone.

>>> with Browser(CHROMIUM, profile) as browser:                                  # doctest: +SKIP
...     page = browser.open("http://127.0.0.1:9108/")
...     page.evaluate("document.title")
'lrcn-stream'
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

from tests.cli import stop_group


class DevToolsError(RuntimeError):
    pass


class Browser:
    def __init__(self, executable: str, profile: Path, window: tuple[int, int] = (1280, 900)):
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()
        # bash puts the child's ends at fds 3 and 4 and execs Chromium; above fd 9 first, so that
        # neither redirection can overwrite the other's source.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_read, answers_write)]
        for fd in (commands_read, answers_write):
            os.close(fd)
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{ends[0]} 4>&{ends[1]} {ends[0]}<&- {ends[1]}>&-',
                "bash",
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=ends,
            start_new_session=True,
        )
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self._commands, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        stop_group(self.process, grace_s=2)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Run one DevTools command; its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise DevToolsError(f"{method}: {answer['error'].get('message')}")
                return answer["result"]

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise DevToolsError(f"chromium closed its DevTools pipe (exit {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        if not page.wait_for('location.href !== "about:blank" && document.readyState === "complete"', timeout_s=30):
            raise DevToolsError(f"{url} did not load in 30 s")
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited if it is a promise), as JSON gives it."""
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, self.session
        )
        if "exceptionDetails" in result:
            raise DevToolsError(
                f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float, interval_s: float = 0.25):
        """Evaluate until the value is truthy or `timeout_s` passes; the last value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval_s)

    def screenshot(self, path: Path) -> Path:
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
