"""The deployment's monitoring against real parts: Debian's promtool checks docs/deploy/alerts.yml;
a real `lrcn serve` run (a looping file with events, a camera whose server is gone, a camera that
sends ten seconds at once and then nothing) is scraped by a real Prometheus (/usr/bin/prometheus on
127.0.0.1) with the rules loaded; every query of docs/deploy/grafana-dashboard.json must return
data and the "stream down" and "connected without predictions" alerts must fire.

To keep the run under a minute the test loads a copy of the rules with short windows and `for:`
durations (the expressions are otherwise the same as shipped)."""
import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.bundles import exported_seed  # noqa: F401  (a fixture)
from tests.live_servers import FFMPEG, free_port, wait_until
from tests.test_service import lrcn, metrics_url, stop

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docs" / "deploy" / "alerts.yml"
DASHBOARD = ROOT / "docs" / "deploy" / "grafana-dashboard.json"
PROMTOOL, PROMETHEUS = shutil.which("promtool") or "/usr/bin/promtool", shutil.which("prometheus") or "/usr/bin/prometheus"
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed (apt-get install prometheus)")
# Grafana's variables, as the dashboard's "All" and a short run would set them.
GRAFANA_VARIABLES = {"$stream": ".*", "$__rate_interval": "15s", "$__range": "5m"}


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_dashboard_plots_what_the_issue_asks_for():
    queries = " ".join(expr for _, expr in dashboard_queries())
    for metric in ("lrcn_stream_state", "lrcn_frames_decoded_total", "lrcn_predictions_total",
                   "lrcn_ring_dropped_frames_total", "lrcn_capture_to_publish_seconds_bucket", "lrcn_events_total",
                   "lrcn_stream_activity", "lrcn_reconnects_total"):
        assert metric in queries, metric


def short_rules(path: Path) -> Path:
    """The shipped rules with test-sized windows: `for:` 3 s, two-minute increases over 15 s."""
    text = re.sub(r"for: \d+m", "for: 3s", RULES.read_text())
    path.write_text(text.replace("[2m]", "[15s]").replace("[5m]", "[15s]"))
    return path


class StallingServer:
    """A camera that sends `payload` (an MPEG-TS file) at once to its first client, then keeps the
    connection open and sends nothing: connected, and silent."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            with client:
                client.sendall(self.payload)
                self._closed.wait()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.listener.close()


def api(base: str, path: str, **params) -> dict:
    url = f"{base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def firing(base: str) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"].get("stream", "")) for a in api(base, "alerts")["data"]["alerts"]
            if a["state"] == "firing"}


@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_promtool
@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus not installed (apt-get install prometheus)")
@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
def test_prometheus_answers_every_dashboard_query_and_fires_the_alerts(exported_seed, tmp_path):  # noqa: F811
    bundle, _, video = exported_seed
    burst = tmp_path / "burst.ts"
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=128x96:rate=25", "-t", "10", "-c:v", "mpeg2video", "-q:v", "5", "-f", "mpegts",
                    str(burst)], check=True, timeout=120)
    stalling = StallingServer(burst.read_bytes())
    metrics, web = free_port(), free_port()
    config = tmp_path / "cameras.toml"
    config.write_text(f'metrics = "127.0.0.1:{metrics}"\nendpoint = "tcp://127.0.0.1:{free_port()}"\n'
                      f'read_timeout_s = 120\nbackoff_max_s = 1\n'
                      f'[[stream]]\nid = "file"\nsource = "{video}"\nloop = true\nevents = {{ min_score = 0.0 }}\n'
                      f'[[stream]]\nid = "gone"\nsource = "tcp://127.0.0.1:{free_port()}"\n'
                      f'[[stream]]\nid = "stall"\nsource = "tcp://127.0.0.1:{stalling.port}"\n')
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{short_rules(tmp_path / 'alerts.yml')}]\n"
        f"scrape_configs:\n  - job_name: lrcn\n    static_configs: [{{targets: ['127.0.0.1:{metrics}']}}]\n")
    prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{web}"
    serve = None
    try:
        serve = lrcn("serve", bundle, "--config", config)
        metrics_url(serve)
        want = {("LrcnStreamDown", "gone"), ("LrcnConnectedWithoutPredictions", "stall")}
        assert wait_until(lambda: want <= firing(base), 90), firing(base)
        assert ("LrcnConnectedWithoutPredictions", "file") not in firing(base), "the file stream predicts"
        assert ("LrcnStreamDown", "stall") not in firing(base), "the silent camera is still connected"
        open_event = lambda: api(base, "query", query='max(lrcn_stream_activity{stream="file"})')["data"]["result"]  # noqa: E731
        assert wait_until(lambda: any(r["value"][1] == "1" for r in open_event()), 30), "the file's open event is plotted"
        events = api(base, "query", query='sum(lrcn_events_total{stream="file"})')["data"]["result"]
        assert events and float(events[0]["value"][1]) >= 1
        empty = [(title, expr) for title, expr in dashboard_queries()
                 if not api(base, "query", query=grafana(expr))["data"]["result"]]
        assert not empty, empty
    finally:
        if serve is not None:
            stop(serve)
        prometheus.terminate()
        prometheus.wait(15)
        stalling.close()


def grafana(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr
