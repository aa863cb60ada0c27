"""A real Prometheus (Debian's /usr/bin/prometheus) on 127.0.0.1 for an evidence run or a test:
it scrapes `lrcn serve`'s metrics port, optionally with rule files loaded, keeps its TSDB in a
folder of the run, and answers its HTTP API; always stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
JOB = "lrcn"  # the job name docs/deploy/alerts.yml expects


def config_text(target: str, interval_s: float, rule_files: list[Path] = ()) -> str:
    """prometheus.yml: scrape `target` (HOST:PORT) as job lrcn and evaluate the rules every `interval_s`."""
    rules = f"rule_files: [{', '.join(json.dumps(str(p)) for p in rule_files)}]\n" if rule_files else ""
    return (
        f"global: {{scrape_interval: {interval_s:g}s, evaluation_interval: {interval_s:g}s}}\n{rules}"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs: [{{targets: ['{target}']}}]\n"
    )


class Prometheus:
    """`prometheus` scraping `target` every `interval_s`, its files under `folder`."""

    def __init__(self, folder: Path, target: str, interval_s: float = 1.0, rule_files: list[Path] = ()):
        if not Path(PROMETHEUS).exists():
            raise LrcnError(f"{PROMETHEUS} not found (apt-get install prometheus)")
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(config_text(target, interval_s, list(rule_files)))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "prometheus.log"
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),
        )

    def wait_ready(self, timeout_s: float = 30.0) -> Prometheus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LrcnError(f"prometheus exited ({self.process.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise LrcnError(f"prometheus not ready within {timeout_s:g} s; see {self.log}")

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/PATH?params: its `data`; LrcnError with Prometheus' own error."""
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            answer = json.loads(err.read() or b"{}")
        except OSError as err:
            raise LrcnError(f"prometheus API {path}: {err}") from None
        if answer.get("status") != "success":
            raise LrcnError(f"prometheus API {path} {params}: {answer.get('error', answer)}")
        return answer["data"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
