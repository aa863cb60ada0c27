"""Event review on the status page, end to end: a real `lrcn serve` records two streams of an H.264
file whose test-pattern stretches make events with overlapping pre- and post-roll (the file of
tests/test_event_store.py), and headless Chromium, driven over its DevTools pipe, shows them:
newest first, filtered by stream, label and time, each with its snapshot and its clip playing in a
<video>. The file loops, so the page is asked for the events before a time pinned once some have
ended, and the answer of /api/events for the same filter is what it must show."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import av
import cv2
import pytest

from tests.devtools import Browser
from tests.live_servers import free_port
from tests.cli import stop_group, tail
from tests.paths import CHROMIUM, ROOT, SCREENSHOT_SIZE
from tests.receivers import get_json, poll

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
]

# Two streams of the same file: `cam` watches one class over the whole frame, `door` every class in a
# corner (another picture, so other labels may win there).
CONFIG = """
[[stream]]
id = "cam"
source = "{video}"
loop = true
events = {{ min_score = 0.0, min_duration_s = 0.5, classes = ["wave_one_hand"] }}
record = {{ dir = "{clips}", pre_s = 1, post_s = 2, max_clip_s = 5 }}

[[stream]]
id = "door"
source = "{video}"
loop = true
crop = [0, 0, 160, 120]
events = {{ min_score = 0.0, min_duration_s = 0.5 }}
record = {{ dir = "{clips}", pre_s = 1, post_s = 2, max_clip_s = 5 }}
"""

ROWS = """[...document.querySelectorAll("#review-list > li")].map(row => ({
  id: row.id.replace(/^event-/, ""), stream: row.dataset.stream, label: row.dataset.label,
  text: row.innerText, snapshot: row.querySelector("img") ? row.querySelector("img").naturalWidth : null,
  snapshot_src: row.querySelector("img") ? row.querySelector("img").getAttribute("src") : null,
  clip: row.querySelector("video") ? row.querySelector("video").getAttribute("src") : null}))"""


@pytest.fixture(scope="module")
def serving(exported_seed, patterned, tmp_path_factory):
    """`lrcn serve` recording both streams, asked once cam has two events with clips: (its base
    URL, the record dir, the events listed before the pin, the pin, the JSONL of its messages)."""
    bundle, _, _ = exported_seed
    root = tmp_path_factory.mktemp("review")
    clips = root / "clips"
    config = root / "deploy.toml"
    config.write_text(CONFIG.format(video=patterned, clips=clips))
    port = free_port()
    log = root / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lrcn.tools.cli",
                "serve",
                str(bundle),
                "--config",
                str(config),
                "--endpoint",
                f"tcp://127.0.0.1:{free_port()}",
                "--jsonl",
                str(root / "messages.jsonl"),
                "--metrics",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def recorded(listing):
        return (
            listing is not None
            and sum(
                e["stream"] == "cam" and e["clip_url"] is not None and (clips / e["clip"]).is_file()
                for e in listing["events"]
            )
            >= 2
        )

    try:
        listing = poll(
            lambda: get_json(url + "/api/events"),
            lambda v: recorded(v) or process.poll() is not None,
            timeout_s=120,
            interval_s=0.5,
        )
        assert recorded(listing), f"no two recorded cam events (exit {process.poll()}):\n{listing}\n{tail(log)}"
        pin = max(e["start_time"] for e in listing["events"]) + 0.001
        pinned = get_json(f"{url}/api/events?before={pin}")["events"]
        yield url, clips, pinned, pin, root / "messages.jsonl"
    finally:
        stop_group(process)


def page_rows(browser: Browser, url: str) -> list[dict]:
    """The review list of the page at `url` once it has loaded and its snapshots have."""
    page = browser.open(url)
    listed = page.wait_for(
        f"""document.getElementById("review-count").textContent !== "" &&
                               (rows => rows.every(r => r.snapshot !== 0) && {{rows}})({ROWS})""",
        timeout_s=20,
    )
    assert listed, f"the list never loaded: {page.evaluate(ROWS)}"
    return listed["rows"]


def test_the_review_list_shows_the_runs_events_newest_first_and_filtered(serving, tmp_path):
    url, _, pinned, pin, jsonl = serving

    def started():
        messages = (json.loads(line) for line in jsonl.read_text().splitlines())
        return {m["id"] for m in messages if m["topic"].startswith("event/") and m["type"] == "start"}

    assert poll(started, lambda ids: {e["id"] for e in pinned} <= ids, timeout_s=10) >= {e["id"] for e in pinned}, (
        "every stored event was published"
    )
    assert [e["start_time"] for e in pinned] == sorted((e["start_time"] for e in pinned), reverse=True)
    labels = sorted({e["label"] for e in pinned})
    views = [
        {},
        {"stream": "cam"},
        {"stream": "door"},
        *({"label": label} for label in labels),
        {"stream": "cam", "label": "bend"},
        {"after": pinned[-2]["start_time"]},
    ]
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        for view in views:
            wanted = [
                e
                for e in pinned
                if all(e[k] == v for k, v in view.items() if k != "after") and e["start_time"] >= view.get("after", 0)
            ]
            rows = page_rows(browser, f"{url}/?{urlencode({**view, 'before': pin})}")
            assert [(r["id"], r["stream"], r["label"]) for r in rows] == [
                (e["id"], e["stream"], e["label"]) for e in wanted
            ], view
            for row, event in zip(rows, wanted):
                assert event["label"] in row["text"] and event["stream"] in row["text"]
                assert row["snapshot"] == (320 if event["stream"] == "cam" else 160), "the snapshot loaded"
                best = f"api/events/{event['id']}/snapshot.jpg?frame=best"  # the start frame's while open
                assert row["snapshot_src"] == best if event["end_time"] else row["snapshot_src"] in (best[:-11], best)
                clip = f"api/events/{event['id']}/clip.mp4"
                assert row["clip"] == clip if event["clip_url"] else row["clip"] in (None, clip), "written since"
    assert len({e["stream"] for e in pinned}) == 2 and len(pinned) >= 3, pinned


def test_the_filter_form_narrows_the_list_and_keeps_its_state_in_the_address(serving, tmp_path):
    url, _, pinned, pin, _ = serving
    after = math.floor(pinned[-2]["start_time"])  # the form's time inputs count whole seconds
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        page = browser.open(f"{url}/?{urlencode({'before': pin})}")
        assert page.wait_for('document.getElementById("review-count").textContent !== ""', timeout_s=20)
        page.evaluate(f"""(form => {{
            form.elements.stream.value = "door";
            form.elements.stream.dispatchEvent(new Event("change", {{bubbles: true}}));
            form.elements.after.value = localInputTime("{after}");
            form.elements.after.dispatchEvent(new Event("change", {{bubbles: true}}));
        }})(document.getElementById("filters"))""")
        wanted = [e["id"] for e in pinned if e["stream"] == "door" and e["start_time"] >= after]
        as_js = json.dumps(json.dumps(wanted, separators=(",", ":")))  # JSON.stringify's text, as a JS string
        rows = page.wait_for(
            f"(ids => JSON.stringify(ids) === {as_js} && ids)({ROWS}.map(row => row.id))", timeout_s=20
        )
        assert rows == wanted, (page.evaluate(ROWS), wanted)
        address = parse_qs(urlsplit(page.evaluate("location.href")).query)
        assert address["stream"] == ["door"] and address["before"] == [str(pin)], address
        assert datetime.fromisoformat(address["after"][0].replace("Z", "+00:00")).timestamp() == after


def test_strings_from_a_crafted_link_are_shown_as_text_never_as_html(serving, tmp_path):
    url, _, _, _, _ = serving
    hostile = {"stream": '<img id="injected" src="x">', "label": '"><b id="injected2">x</b>'}
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        page = browser.open(f"{url}/?{urlencode(hostile)}")
        assert page.wait_for('document.getElementById("review-count").textContent !== ""', timeout_s=20)
        assert page.evaluate('document.querySelectorAll("#injected, #injected2").length') == 0
        shown = page.evaluate(
            '(form => [form.elements.stream.value, form.elements.label.value])(document.getElementById("filters"))'
        )
        assert shown == [hostile["stream"], hostile["label"]], "kept as the filter's text"
        assert page.evaluate(ROWS) == [], "no event matches them"


def test_a_clip_plays_in_its_video_element_with_the_files_duration(serving, tmp_path):
    url, clips, pinned, pin, _ = serving
    event = next(e for e in pinned if e["stream"] == "cam" and e["clip_url"] and (clips / e["clip"]).is_file())
    with av.open(str(clips / event["clip"])) as container:
        duration = container.duration / av.time_base
    with Browser(CHROMIUM, tmp_path / "profile", SCREENSHOT_SIZE) as browser:
        page = browser.open(f"{url}/?{urlencode({'stream': 'cam', 'before': pin})}")
        video = f'document.querySelector("#event-{event["id"]} video")'
        assert page.wait_for(f"{video} !== null", timeout_s=20), page.evaluate(ROWS)
        page.evaluate(f"{video}.muted = true, {video}.play().then(() => true)")
        state = page.wait_for(
            f"{video}.readyState >= 2 && {video}.currentTime > 0.5 && "
            f"[{video}.readyState, {video}.duration, {video}.error]",
            timeout_s=20,
        )
        assert state, page.evaluate(
            f"[{video}.readyState, {video}.networkState, {video}.error && {video}.error.message]"
        )
        ready, played_s, error = state
        assert ready >= 2 and error is None
        assert played_s == pytest.approx(duration, abs=0.05), (played_s, duration)
        # The list refreshes every 3 s; the row, and the clip playing in it, stay.
        page.evaluate(f"window.playing = {video}, window.playedAt = {video}.currentTime")
        assert page.wait_for(
            f"{video} === window.playing && {video}.currentTime > window.playedAt + 3", timeout_s=15
        ), page.evaluate(f"[{video} === window.playing, {video}.currentTime]")
        assert page.evaluate(f"{video}.error") is None
        page.evaluate(f"{video}.pause(), {video}.currentTime = 2.0")  # inside the event, for the picture
        page.wait_for(f"!{video}.seeking && {video}.readyState >= 2", timeout_s=10)
        page.evaluate('document.getElementById("review").scrollIntoView()')
        screenshot = page.screenshot(tmp_path / "review.png")
    image = cv2.imread(str(screenshot))
    assert image is not None and image.shape[1] == SCREENSHOT_SIZE[0], "a screenshot of the window"
    assert image.std() > 20, f"the screenshot is (nearly) blank: pixel std {image.std():.1f}"
    if os.environ.get("LRCN_SAVE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "results" / "review_page.png")
