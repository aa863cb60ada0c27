"""Every query of docs/deploy/grafana-dashboard.json answered by a real Prometheus after a real run.

    nice python -m lrcn.tools.evidence.dashboard_queries BUNDLE                    # the record: 10 minutes
    python -m lrcn.tools.evidence.dashboard_queries BUNDLE --duration 20 --scrape-s 1 --out /tmp/dq

`lrcn serve` runs three streams for --duration seconds: two live cameras (ffmpeg serving the
video as TCP MPEG-TS on 127.0.0.1; the second one's server is stopped for --outage-s seconds
halfway, so it is lost, reconnects and resets) and the video as a looping file, all with
events on; Debian's Prometheus scrapes its metrics port every --scrape-s seconds with
docs/deploy/alerts.yml loaded. Then the dashboard's JSON is parsed, Grafana's variables are
set as its "All" view of the run would set them, and each panel expression is sent to
Prometheus' query_range over the whole run. Records, per expression, the series and points
that came back and whether any point was not 0; prints a table and writes
dashboard_queries.json. Exit status 1 when any expression returns nothing (a bug in the
dashboard or the metrics), 2 when it could not measure.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import free_port
from lrcn.tools.evidence.harness.prometheus import Prometheus
from lrcn.tools.evidence.harness.script import save
from lrcn.tools.evidence.harness.servers import REPO, StreamServer, checked_inputs, http_get, serve_command, terminate

DASHBOARD = REPO / "docs" / "deploy" / "grafana-dashboard.json"
ALERTS = REPO / "docs" / "deploy" / "alerts.yml"
POINTS = 120  # about this many points per series, as a Grafana panel a few hundred pixels wide asks for


def dashboard_queries(dashboard: dict) -> list[dict]:
    """[{"panel", "ref", "expr"}] of every target of every panel (rows' panels included)."""
    panels = [p for panel in dashboard["panels"] for p in [panel, *panel.get("panels", [])]]
    return [
        {"panel": panel["title"], "ref": target.get("refId", ""), "expr": target["expr"]}
        for panel in panels
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def grafana_variables(scrape_s: float, step_s: float, range_s: float) -> dict[str, str]:
    """What Grafana puts for the variables on the dashboard's "All" view of a `range_s` range:
    $__rate_interval is max($__interval + scrape interval, 4 x scrape interval)."""
    return {
        "$stream": ".*",
        "${stream}": ".*",
        "$__rate_interval": f"{max(step_s + scrape_s, 4 * scrape_s):g}s",
        "$__interval": f"{step_s:g}s",
        "$__range": f"{range_s:.0f}s",
    }


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):  # longest first: a name that starts another is not cut
        expr = expr.replace(name, variables[name])
    return expr


def answer_summary(result: list[dict]) -> dict:
    """Series, points and whether any point is non-zero, of one query_range answer."""
    values = [float(v) for series in result for _, v in series["values"]]
    return {"series": len(result), "points": len(values), "nonzero": any(v != 0 and not math.isnan(v) for v in values)}


def deployment(folder: Path, video: Path, cameras: list[StreamServer], metrics: int) -> Path:
    events = "events = { min_score = 0.0, min_duration_s = 1.0 }\n"
    text = (
        f'metrics = "127.0.0.1:{metrics}"\nendpoint = "tcp://127.0.0.1:{free_port()}"\nread_timeout_s = 3\n'
        f"backoff_max_s = 2\nstats_interval_s = 2\n"
        + "".join(
            f'[[stream]]\nid = "cam{i + 1}"\nsource = "{camera.url}"\n{events}' for i, camera in enumerate(cameras)
        )
        + f'[[stream]]\nid = "file"\nsource = {json.dumps(str(video))}\nloop = true\n{events}'
    )
    path = folder / "cameras.toml"
    path.write_text(text)
    return path


def measure(args) -> dict:
    bundle, out, video = checked_inputs(args.bundle, args.out, args.video)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    cameras = [StreamServer(video), StreamServer(video)]
    metrics = free_port()
    serve = prometheus = None
    log = out / "dashboard-serve.log"
    try:
        for camera in cameras:
            camera.start()
        config = deployment(out, video, cameras, metrics)
        serve = subprocess.Popen(
            serve_command(bundle, "--config", config),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w"),
        )
        prometheus = Prometheus(out / "prometheus", f"127.0.0.1:{metrics}", args.scrape_s, [ALERTS]).wait_ready()
        start = time.time()
        outage_at, outage_end = start + args.duration / 2, start + args.duration / 2 + args.outage_s
        outage_done = False
        while time.time() < start + args.duration:
            if serve.poll() is not None:
                raise LrcnError(f"lrcn serve exited ({serve.returncode}); see {log}")
            if not outage_done and cameras[1].alive and outage_at <= time.time():
                cameras[1].kill()
            if not outage_done and time.time() >= outage_end and not cameras[1].alive:
                cameras[1].start()
                outage_done = True
            time.sleep(0.5)
        end = time.time()
        if http_get(f"http://127.0.0.1:{metrics}/metrics")[0] != 200:
            raise LrcnError(f"the metrics port does not answer; see {log}")
        step = max(args.scrape_s, (end - start) / POINTS)
        variables = grafana_variables(args.scrape_s, step, end - start)
        rows = []
        for query in queries:
            sent = substitute(query["expr"], variables)
            result = prometheus.api("query_range", query=sent, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
            rows.append({**query, "sent": sent, **answer_summary(result["result"])})
        alerts = sorted(
            {(a["labels"]["alertname"], a["labels"].get("stream", ""), a["state"]) for a in prometheus.alerts()}
        )
    finally:
        if serve is not None:
            terminate(serve)
        if prometheus is not None:
            prometheus.stop()
        for camera in cameras:
            camera.kill()
    return {
        "what": "every expression of docs/deploy/grafana-dashboard.json sent to Prometheus' query_range over a "
        "real lrcn serve run: two ffmpeg-served cameras (the second stopped for outage_s halfway) and a "
        "looping file, events on",
        "command": f"python -m lrcn.tools.evidence.dashboard_queries BUNDLE --duration {args.duration:g} "
        f"--scrape-s {args.scrape_s:g} --outage-s {args.outage_s:g}",
        "bundle": str(bundle),
        "video": str(video),
        "duration_s": round(end - start, 1),
        "scrape_interval_s": args.scrape_s,
        "step_s": round(step, 3),
        "grafana_variables": variables,
        "prometheus": prometheus_version(),
        "queries": rows,
        "empty": [f"{r['panel']} ({r['ref']})" for r in rows if r["series"] == 0],
        "alerts_at_end": [{"alert": a, "stream": s, "state": st} for a, s, st in alerts],
    }


def prometheus_version() -> str:
    from lrcn.tools.evidence.harness.prometheus import PROMETHEUS

    answer = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True, timeout=30)
    return (answer.stdout or answer.stderr).splitlines()[0] if (answer.stdout or answer.stderr) else ""


def report(result: dict) -> str:
    width = max(len(f"{r['panel']} ({r['ref']})") for r in result["queries"])
    lines = [
        f"{result['duration_s']:.0f} s run, scraped every {result['scrape_interval_s']:g} s, "
        f"query_range step {result['step_s']:g} s ({result['prometheus']})",
        f"{'panel (target)':<{width}}  series  points  non-zero",
    ]
    for r in result["queries"]:
        lines.append(
            f"{r['panel'] + ' (' + r['ref'] + ')':<{width}}  {r['series']:>6}  {r['points']:>6}  "
            f"{'yes' if r['nonzero'] else 'no':>8}"
        )
    lines.append(
        f"{len(result['queries']) - len(result['empty'])} of {len(result['queries'])} expressions returned data"
        + (f"; EMPTY: {', '.join(result['empty'])}" if result["empty"] else "")
    )
    lines.append(
        "alerts at the end: "
        + (", ".join(f"{a['alert']}{{{a['stream']}}} {a['state']}" for a in result["alerts_at_end"]) or "none")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.dashboard_queries", description=__doc__.splitlines()[0]
    )
    parser.add_argument("bundle")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of serving (default 600)")
    parser.add_argument("--scrape-s", type=float, default=5.0, help="Prometheus' scrape and rule interval (default 5)")
    parser.add_argument(
        "--outage-s",
        type=float,
        default=30.0,
        help="seconds the second camera's server is stopped, halfway (default 30)",
    )
    parser.add_argument("--video", help="video the cameras and the file play (default: as lrcn bench)")
    parser.add_argument("--out", default="dashboard-results", help="the run's files (default dashboard-results)")
    parser.add_argument(
        "--json",
        default=str(REPO / "docs" / "results" / "dashboard_queries.json"),
        help="where the result goes (default docs/results/dashboard_queries.json)",
    )
    args = parser.parse_args(argv)
    if not (args.duration > 0 and args.scrape_s > 0 and 0 <= args.outage_s < args.duration / 2):
        print(
            "dashboard_queries: error: --duration and --scrape-s must be positive, --outage-s under half the duration",
            file=sys.stderr,
        )
        return 2
    try:
        result = measure(args)
    except LrcnError as err:
        print(f"dashboard_queries: error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    print(f"wrote {save(result, Path(args.json))}")
    return 1 if result["empty"] else 0


if __name__ == "__main__":
    sys.exit(main())
