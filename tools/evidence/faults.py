"""`lrcn faults BUNDLE`: fault injection against a running `lrcn serve`, bounded in time.

    lrcn faults bundles/mine --out fault-results                  # 10 kills per server, a 30 s stall
    lrcn faults bundles/mine --kills 2 --stall 3 --streams 2      # a short run

During one run of the real runtime process, with ffmpeg serving each live stream on 127.0.0.1:
- every stream server is killed and started again --kills times (the servers in parallel);
- a second subscriber reads, then stops reading for --stall seconds, then reads again;
- a file source plays a copy of the video with random bytes written over parts of it, looped.
It checks that the serve process never dies and stops cleanly on SIGTERM within its 2 s,
that heartbeats never stop (nothing blocks: the largest gap is reported), that every kill
shows up as a `lost`/`reconnecting` and then a `connected` state change, and that predictions
resume after each one; the stalled subscriber gets messages again afterwards. Writes
faults.json; exits non-zero with one line per broken promise.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from lrcn.stream.errors import LrcnError
from lrcn.tools.cli import commands
from lrcn.tools.evidence.ffmpeg_server import free_port, wait_until
from lrcn.tools.evidence.harness.recorder import Monitor
from lrcn.tools.evidence.harness.servers import StreamServer, checked_inputs, start_serve, tear_down

GAP_STATES = ("lost", "reconnecting")
CYCLE_TIMEOUT_S = 40.0
HEARTBEAT_GAP_LIMIT_S = 3.0


def corrupt_copy(video: Path, out: Path, chunks: int = 12, chunk_bytes: int = 2048, seed: int = 0) -> Path:
    """A copy of `video` with `chunks` runs of random bytes written over its middle 20-90%
    (the header and first frames intact, so it opens, then decodes with damage)."""
    data = bytearray(video.read_bytes())
    rng = np.random.default_rng(seed)
    for offset in np.linspace(0.2 * len(data), 0.9 * len(data), chunks).astype(int):
        data[offset : offset + chunk_bytes] = rng.integers(0, 256, chunk_bytes, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def kill_cycles(server: StreamServer, stream: str, monitor: Monitor, kills: int, down_s: float, cycles: list) -> None:
    """Kill and restart one server `kills` times; after each, wait for the gap's state changes
    and for predictions to resume. Appends one record per kill to `cycles`."""
    for k in range(kills):
        killed_at = time.monotonic()
        server.kill()
        time.sleep(down_s)
        restarted_at = time.monotonic()
        record = {"stream": stream, "kill": k + 1}
        try:
            server.start()
        except LrcnError as err:
            record["error"] = str(err)
            cycles.append(record)
            return

        def resumed(killed_at=killed_at):
            changes = monitor.state_changes_since(stream, killed_at)
            gap = next((c for c in changes if c["state"] in GAP_STATES), None)
            connected = next(
                (c for c in changes if c["state"] == "connected" and (gap is None or c["t"] >= gap["t"])), None
            )
            last = monitor.last_prediction.get(stream)
            return gap is not None and connected is not None and last is not None and last[0] > connected["t"]

        ok = wait_until(resumed, CYCLE_TIMEOUT_S, 0.05)
        changes = monitor.state_changes_since(stream, killed_at)
        record.update(
            {
                "resumed": ok,
                "events": [c["state"] for c in changes],
                "gap_event": any(c["state"] in GAP_STATES for c in changes),
                "connected_event": any(c["state"] == "connected" for c in changes),
                "down_s": round(restarted_at - killed_at, 2),
                "kill_to_prediction_s": round(monitor.last_prediction[stream][0] - killed_at, 2) if ok else None,
            }
        )
        cycles.append(record)
        print(
            f"faults: {stream} kill {k + 1}/{kills}: "
            + (
                f"predictions again after {record['kill_to_prediction_s']} s ({' -> '.join(record['events'])})"
                if ok
                else f"NOT resumed ({record['events']})"
            ),
            file=sys.stderr,
            flush=True,
        )
        time.sleep(0.5)


def stall_subscriber(endpoint: str, stall_s: float, result: dict) -> None:
    """Read for 2 s, stop reading for `stall_s`, then read again for up to 10 s."""
    from lrcn.stream.publisher import Subscriber

    with Subscriber(endpoint, [""], hwm=100) as subscriber:
        deadline = time.monotonic() + 2.0
        before = 0
        while time.monotonic() < deadline:
            before += subscriber.receive(0.1) is not None
        result["received_before"] = before
        time.sleep(stall_s)
        after, deadline = 0, time.monotonic() + 10.0
        while time.monotonic() < deadline and after < 200:
            after += subscriber.receive(0.2) is not None
        result["received_after"] = after
        result["missed_seq"] = sum(subscriber.missed.values())


def faults(args) -> dict:
    bundle, out, video = checked_inputs(args.bundle, args.out, args.video)
    corrupt = corrupt_copy(video, out / f"corrupt{video.suffix}")
    servers = [StreamServer(video) for _ in range(args.streams)]
    names = [f"cam{i}" for i in range(len(servers))]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = Monitor(endpoint)
    cycles: list[dict] = []
    stall: dict = {}
    result: dict = {
        "streams": args.streams,
        "kills_per_server": args.kills,
        "stall_s": args.stall,
        "video": str(video),
        "corrupt_file": str(corrupt),
    }
    serve = None
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        serve = start_serve(
            bundle,
            [s.url for s in servers] + [str(corrupt)],
            names + ["corrupt"],
            endpoint,
            args.timeout,
            out / "serve-stats.json",
            ["--loop"],
        )
        if not wait_until(lambda: all(n in monitor.predictions for n in names + ["corrupt"]), 60.0, 0.05):
            raise LrcnError(
                f"no predictions from {sorted(set(names + ['corrupt']) - set(monitor.predictions))} "
                f"within 60 s of starting serve"
            )
        result["first_predictions_s"] = round(time.monotonic() - started, 1)
        staller = threading.Thread(target=stall_subscriber, args=(endpoint, args.stall, stall), daemon=True)
        staller.start()
        killers = [
            threading.Thread(
                target=kill_cycles, args=(server, name, monitor, args.kills, args.down, cycles), daemon=True
            )
            for server, name in zip(servers, names)
        ]
        for killer in killers:
            killer.start()
            time.sleep(0.7)  # staggered, so the kills do not all land on the same instant
        for thread in [*killers, staller]:
            thread.join(max(1.0, started + args.timeout - 15 - time.monotonic()))
        alive_before_stop = serve.poll() is None
        corrupt_predictions = monitor.predictions.get("corrupt", 0)
        time.sleep(1.0)
        result["corrupt_predictions_still_coming"] = monitor.predictions.get("corrupt", 0) > corrupt_predictions
        stop_at = time.monotonic()
        if alive_before_stop:
            serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a serve that does not stop is a finding, not a crash of ours
            code = None
        result.update(
            {
                "serve_alive_until_stop": alive_before_stop,
                "serve_exit": code,
                "stop_s": round(time.monotonic() - stop_at, 2),
            }
        )
    finally:
        tear_down(serve, servers, monitor)
    stats_path = out / "serve-stats.json"
    final = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    result.update(
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "cycles": cycles,
            "stalled_subscriber": stall,
            "max_heartbeat_gap_s": round(monitor.max_heartbeat_gap_s, 3),
            "heartbeats": monitor.heartbeats,
            "predictions": dict(monitor.predictions),
            "events": monitor.state_change_list(),
            "final_stats": {
                name: {
                    k: s.get(k)
                    for k in ("state", "frames", "reconnects", "resets", "dropped", "publisher_dropped", "predictions")
                }
                for name, s in final.get("streams", {}).items()
            },
            "publisher": final.get("publisher"),
        }
    )
    result["problems"] = problems(result, args)
    (out / "faults.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def problems(result: dict, args) -> list[str]:
    found = []
    if not result.get("serve_alive_until_stop"):
        found.append("the serve process died during the run")
    if result.get("serve_exit") != 0:
        found.append(f"serve exited with {result.get('serve_exit')}")
    if result.get("stop_s", 0) > 3.0:
        found.append(f"serve took {result['stop_s']} s to stop after SIGTERM")
    if result["max_heartbeat_gap_s"] > HEARTBEAT_GAP_LIMIT_S:
        found.append(f"heartbeats stopped for {result['max_heartbeat_gap_s']} s")
    expected = args.kills * args.streams
    done = [c for c in result["cycles"] if "error" not in c]
    if len(done) < expected:
        found.append(f"{len(done)} of {expected} kill cycles ran")
    for cycle in result["cycles"]:
        name = f"{cycle['stream']} kill {cycle['kill']}"
        if "error" in cycle:
            found.append(f"{name}: {cycle['error']}")
            continue
        if not cycle["gap_event"]:
            found.append(f"{name}: no lost/reconnecting state change")
        if not cycle["connected_event"]:
            found.append(f"{name}: no connected state change")
        if not cycle["resumed"]:
            found.append(f"{name}: predictions did not resume within {CYCLE_TIMEOUT_S:.0f} s")
    stall = result["stalled_subscriber"]
    if not stall.get("received_after"):
        found.append("the stalled subscriber received nothing after its stall")
    if not result.get("corrupt_predictions_still_coming"):
        found.append("the corrupt file's stream stopped predicting")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("--streams", type=int, default=4, help="ffmpeg-served live streams (default 4)")
    parser.add_argument("--kills", type=int, default=10, help="kills and restarts of each server (default 10)")
    parser.add_argument("--down", type=float, default=1.0, help="seconds a killed server stays down (default 1)")
    parser.add_argument("--stall", type=float, default=30.0, help="seconds the second subscriber stops reading")
    parser.add_argument("--video", help="video the servers play (default: a UCF101 clip from ../shared)")
    parser.add_argument("--timeout", type=float, default=600.0, help="the whole run's limit, seconds (default 600)")
    parser.add_argument("--out", default="fault-results")


@commands.command(
    "faults",
    help="kill and restart stream servers, stall a subscriber, feed a corrupt file, during "
    "one serve run; checks recovery",
    arguments=add_arguments,
)
def run(args) -> None:
    if args.streams < 1 or args.kills < 0 or args.stall < 0 or args.down < 0 or args.timeout < 30:
        raise LrcnError("--streams must be >= 1, --kills/--stall/--down >= 0, --timeout >= 30")
    result = faults(args)
    cycles = [c for c in result["cycles"] if c.get("kill_to_prediction_s") is not None]
    times = [c["kill_to_prediction_s"] for c in cycles]
    print(
        f"faults: {len(cycles)} of {args.kills * args.streams} kills recovered"
        + (f" (kill to next prediction median {np.median(times):.1f} s, max {max(times):.1f} s)" if times else "")
        + f"; stalled subscriber {result['stalled_subscriber']}; largest heartbeat gap "
        f"{result['max_heartbeat_gap_s']} s; serve stopped in {result.get('stop_s')} s with exit "
        f"{result.get('serve_exit')}; corrupt-file stream {result['predictions'].get('corrupt', 0)} predictions"
    )
    if result["problems"]:
        raise LrcnError("faults: " + "; ".join(result["problems"]))


def main(argv: list[str] | None = None) -> int:
    """`python -m lrcn.tools.evidence.faults ...` is `lrcn faults ...`."""
    return commands.main(["faults", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
