"""The service port of `lrcn serve` against the real clients it is for: a real Prometheus server
scraping /metrics, and headless Chromium running the status page's script.

Both start `lrcn serve` on a looping video as two named streams, with everything on 127.0.0.1,
and kill every process they start. Each skips when its program (Debian's prometheus, chromium)
is not installed. LRCN_SAVE_SCREENSHOT=1 also copies the status page screenshot to
docs/results/status_page.png.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np
import pytest

from lrcn.stream.runtime_bundle import load_runtime_bundle
from tests.live_servers import free_port
from tests.cli import command, stop_group
from tests.paths import CHROMIUM, SCREENSHOT_SIZE
from tests.receivers import get_json, poll
from tests.cli import tail

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("cam", "door")
PROMETHEUS = shutil.which("prometheus")


@contextlib.contextmanager
def serving(bundle: Path, video: Path, tmp_path: Path):
    """`lrcn serve` on `video` looping as the streams STREAMS, with --metrics on a free loopback
    port; yields (the service's base URL, its stderr log) once /api/streams answers."""
    port = free_port()
    log = tmp_path / "serve.log"
    names = [arg for name in STREAMS for arg in ("--name", name)]
    serve = command(
        "serve",
        bundle,
        *[video] * len(STREAMS),
        *names,
        "--loop",
        "--endpoint",
        f"tcp://127.0.0.1:{free_port()}",
        "--metrics",
        f"127.0.0.1:{port}",
    )
    with open(log, "w") as out:
        process = subprocess.Popen(
            serve, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        overview = poll(
            lambda: get_json(url + "/api/streams"), lambda v: v is not None or process.poll() is not None, timeout_s=30
        )
        assert overview is not None, f"lrcn serve never answered on {url} (exit {process.poll()}):\n{tail(log)}"
        yield url, log
    finally:
        stop_group(process)


def prometheus_query(base: str, query: str) -> list[dict] | None:
    body = get_json(f"{base}/api/v1/query?{urlencode({'query': query})}")
    return body["data"]["result"] if body and body.get("status") == "success" else None


def by_stream(result: list[dict] | None) -> dict[str, float]:
    return {series["metric"].get("stream"): float(series["value"][1]) for series in result or []}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus server on PATH (Debian: apt-get install prometheus)")
def test_a_real_prometheus_scrapes_both_streams(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    with serving(bundle, video, tmp_path) as (service, serve_log):
        target = service.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: lrcn\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "prometheus.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    "--storage.tsdb.retention.time=1h",
                    "--query.lookback-delta=30s",
                ],
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            # Prometheus applies the targets some 5 s after it starts, then scrapes every second.
            predictions = by_stream(
                poll(
                    lambda: prometheus_query(base, "lrcn_predictions_total"),
                    lambda r: (
                        len(by_stream(r)) == len(STREAMS)
                        and min(by_stream(r).values()) > 0
                        or process.poll() is not None
                    ),
                    timeout_s=45,
                )
            )
            assert process.poll() is None, f"prometheus exited with {process.returncode}:\n{tail(log)}"
            targets = (get_json(f"{base}/api/v1/targets") or {}).get("data", {}).get("activeTargets", [])
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")], (targets, tail(serve_log))
            assert set(predictions) == set(STREAMS) and min(predictions.values()) > 0, predictions

            up = prometheus_query(base, 'up{job="lrcn"}')
            assert [(s["metric"]["instance"], s["value"][1]) for s in up] == [(target, "1")]
            assert by_stream(prometheus_query(base, 'lrcn_stream_state{state="connected"}')) == dict.fromkeys(
                STREAMS, 1.0
            )
            count = prometheus_query(base, "lrcn_capture_to_publish_seconds_count")
            assert len(count) == 1 and float(count[0]["value"][1]) > 0, count
            # rate() needs two scrapes with predictions between them; then p99 is a real latency.
            quantile = "histogram_quantile(0.99, rate(lrcn_capture_to_publish_seconds_bucket[30s]))"
            p99 = poll(
                lambda: prometheus_query(base, quantile),
                lambda r: len(r) == 1 and math.isfinite(float(r[0]["value"][1])),
                timeout_s=20,
            )
            assert 0 < float(p99[0]["value"][1]) < 10, p99
            info = prometheus_query(base, "lrcn_build_info")
            assert [s["metric"]["classes"] for s in info] == [",".join(load_runtime_bundle(bundle).classes)]
        finally:
            stop_group(process)


class StatusPage(HTMLParser):
    """The tiles of a rendered status page: {stream id: {"class": ..., "name": ..., "label": ..., "img": ...}}."""

    def __init__(self):
        super().__init__()
        self.tiles: dict[str, dict[str, str]] = {}
        self.texts: dict[str, str] = {}  # text of the elements with an id (#model, #error)
        self._tile: dict[str, str] | None = None
        self._field: str | None = None  # the tile field (or element id) whose text comes next

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "div" and (attrs.get("id") or "").startswith("tile-"):
            self._tile = self.tiles.setdefault(attrs["id"].removeprefix("tile-"), {"class": attrs.get("class", "")})
        elif self._tile is not None and tag == "img":
            self._tile["img"] = attrs.get("src") or ""
        elif self._tile is not None and tag == "div" and {"name", "label"} & set(classes):
            self._field = "name" if "name" in classes else "label"
            self._tile[self._field] = ""
        elif attrs.get("id") in ("model", "error"):
            self._field = "#" + attrs["id"]
            self.texts[self._field] = ""

    def handle_endtag(self, tag):
        self._field = None

    def handle_data(self, data):
        if self._field and self._field.startswith("#"):
            self.texts[self._field] += data
        elif self._field and self._tile is not None:
            self._tile[self._field] += data


def chromium(browser: str, url: str, *args: str, profile: Path, timeout_s: float = 60.0) -> str:
    """Headless Chromium on `url` after 4 s of virtual time (the page's script fetches and renders
    in it); its stdout. Runs as root, hence --no-sandbox; its stderr (D-Bus noise) is ignored."""
    process = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={SCREENSHOT_SIZE[0]},{SCREENSHOT_SIZE[1]}",
            "--virtual-time-budget=4000",
            *args,
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium {' '.join(args)} took over {timeout_s} s")
    finally:
        stop_group(process, grace_s=2)
    assert process.returncode == 0, f"chromium {' '.join(args)} exited with {process.returncode}"
    return out


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_the_status_page_renders_a_tile_per_stream_in_headless_chromium(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    classes = load_runtime_bundle(bundle).classes
    with serving(bundle, video, tmp_path) as (service, serve_log):
        overview = poll(
            lambda: get_json(service + "/api/streams"),
            lambda v: v is not None and all(v["streams"].get(s, {}).get("label") for s in STREAMS),
            timeout_s=30,
        )
        assert all(overview["streams"][s]["label"] for s in STREAMS), (overview, tail(serve_log))
        assert overview["model"]["classes"] == list(classes)

        screenshot = tmp_path / "status.png"
        chromium(CHROMIUM, service + "/", f"--screenshot={screenshot}", profile=tmp_path / "chromium-shot")
        dom = chromium(CHROMIUM, service + "/", "--dump-dom", profile=tmp_path / "chromium-dom")

    image = cv2.imread(str(screenshot))
    assert image is not None, f"no readable screenshot at {screenshot}"
    assert image.shape == (SCREENSHOT_SIZE[1], SCREENSHOT_SIZE[0], 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) one colour"
    if os.environ.get("LRCN_SAVE_SCREENSHOT") == "1":
        (ROOT / "docs" / "results").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, ROOT / "docs" / "results" / "status_page.png")

    page = StatusPage()
    page.feed(dom)
    assert sorted(page.tiles) == sorted(STREAMS), f"tiles {sorted(page.tiles)} in the rendered DOM:\n{dom[:2000]}"
    for stream, tile in page.tiles.items():
        assert tile.get("name") == stream, tile
        assert tile.get("label") in classes, f"tile {stream}: label {tile.get('label')!r} is not one of {classes}"
        assert tile["class"].split() == ["tile", "connected"], tile
        assert tile.get("img", "").startswith(f"frame/{stream}.jpg?t="), tile
    assert page.texts.get("#model", "").startswith(f"{len(classes)} classes, 64x64 px"), page.texts
    assert page.texts.get("#error") == "", f"the page could not reach the service: {page.texts['#error']}"
