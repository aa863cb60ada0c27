"""What an MQTT or JSONL sink costs beside ZeroMQ alone, in one run.

    python -m lrcn.tools.evidence.bench_sinks BUNDLE [--streams 8] [--round-s 20] [--rounds 3] [--out docs/results]

Two measurements, each alternating the sink sets round by round (ZeroMQ; ZeroMQ + MQTT at qos 1,
at qos 0, and with status and events only; ZeroMQ + JSONL; all three) so that a shared
machine's drift hits every set alike:

- serving: a real Pipeline in this process serves N looping video files paced like cameras,
  through a real Mosquitto on 127.0.0.1 and a real file; the figure is the process's CPU
  (all threads: capture, inference, paho's network thread, the file writer) per frame, and the
  extra per frame against ZeroMQ alone;
- per message: the same sinks take 20,000 predictions of the bundle's shape as fast as the
  outbox hands them over, waiting until the last is out; CPU per message, less ZeroMQ alone's,
  is the sink's own cost, precise where the serving figure is within the noise.

Prints a table and writes sink_cost.json.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lrcn.stream.outbox import Outbox
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.runtime_bundle import load_runtime_bundle
from lrcn.stream.sinks import open_sink
from lrcn.stream.sinks.zeromq import ZeroMqSink
from lrcn.tools.evidence.ffmpeg_server import free_port
from lrcn.tools.evidence.harness.procfs import machine_info
from lrcn.tools.evidence.harness.script import add_video_and_out, measure_and_save, rounds_parser
from lrcn.tools.evidence.harness.scoring import extra_percent
from lrcn.tools.evidence.harness.servers import default_video
from lrcn.tools.evidence.mqtt_broker import Broker

# mqtt0: at qos 0; mqttev: status and events only, no message per frame
SETS = ("zeromq", "zeromq+mqtt", "zeromq+mqtt0", "zeromq+mqttev", "zeromq+jsonl", "zeromq+mqtt+jsonl")


def sink_tables(name: str, broker_port: int, folder: Path) -> tuple[dict, ...]:
    tables = {
        "mqtt": {"type": "mqtt", "url": f"mqtt://127.0.0.1:{broker_port}/bench", "buffer": 100_000},
        "mqtt0": {"type": "mqtt", "url": f"mqtt://127.0.0.1:{broker_port}/bench", "buffer": 100_000, "qos": 0},
        "mqttev": {"type": "mqtt", "url": f"mqtt://127.0.0.1:{broker_port}/bench", "kinds": ["status", "event"]},
        "jsonl": {"type": "jsonl", "path": str(folder / f"{name}.jsonl"), "queue": 100_000},
    }
    return tuple(tables[part] for part in name.split("+")[1:])


def serve_round(bundle, video: Path, streams: int, seconds: float, sinks: tuple[dict, ...]) -> dict:
    options = PipelineOptions(endpoint=f"tcp://127.0.0.1:{free_port()}", sinks=sinks, stats_interval_s=1.0)
    pipeline = Pipeline(bundle, [StreamConfig(str(video), id=f"cam{i}", loop=True) for i in range(streams)], options)
    pipeline.start()
    time.sleep(2.0)  # connected and warm
    cpu, wall, encoded = time.process_time(), time.monotonic(), pipeline.stats().encoded
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    stats = pipeline.stats()
    pipeline.stop()
    frames = stats.encoded - encoded
    dropped = {name: s.dropped for name, s in stats.sinks.items()}
    return {"cores": cpu / wall, "frames": frames, "cpu_ms_per_frame": cpu / frames * 1000, "dropped": dropped}


def message_round(sinks: tuple[dict, ...], messages: int, classes: list[str]) -> dict:
    outbox = Outbox([ZeroMqSink(f"tcp://127.0.0.1:{free_port()}"), *[open_sink(t, node="bench") for t in sinks]])
    time.sleep(0.5)  # MQTT connected
    probabilities = dict(zip(classes, np.linspace(0.9, 0.01, len(classes)).tolist()))
    top = sorted(probabilities.items(), key=lambda kv: -kv[1])[:3]
    cpu = time.process_time()
    for n in range(messages):
        outbox.publish_prediction(
            "cam0",
            frame_index=n,
            window=(max(0, n - 15), n),
            label=top[0][0],
            score=top[0][1],
            top_k=top,
            captured_at=time.monotonic(),
            probabilities=probabilities,
            stream_time=n / 25,
        )
    stats = outbox.stats()
    outbox.close(timeout_s=30.0)  # waits until the file writer and paho have sent the last one
    cpu = time.process_time() - cpu
    return {"cpu_us_per_message": cpu / messages * 1e6, "dropped": {k: v.dropped for k, v in stats.items()}}


def bench(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_runtime_bundle(args.bundle, "onnxruntime")
    video = Path(args.video) if args.video else default_video(out)
    serving = {name: [] for name in SETS}
    per_message = {name: [] for name in SETS}
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as scratch, Broker(Path(scratch) / "broker") as broker:
        for number in range(args.rounds):
            for name in SETS if number % 2 == 0 else reversed(SETS):
                tables = sink_tables(name, broker.port, Path(scratch))
                per_message[name].append(message_round(tables, args.messages, list(bundle.classes)))
                serving[name].append(serve_round(bundle, video, args.streams, args.round_s, tables))
                print(
                    f"round {number + 1}/{args.rounds} {name}: {serving[name][-1]['cpu_ms_per_frame']:.3f} ms CPU "
                    f"per frame, {per_message[name][-1]['cpu_us_per_message']:.1f} us per message",
                    file=sys.stderr,
                    flush=True,
                )
    base_frame = float(np.median([r["cpu_ms_per_frame"] for r in serving["zeromq"]]))
    base_message = float(np.median([r["cpu_us_per_message"] for r in per_message["zeromq"]]))
    results = {}
    for name in SETS:
        frame = float(np.median([r["cpu_ms_per_frame"] for r in serving[name]]))
        message = float(np.median([r["cpu_us_per_message"] for r in per_message[name]]))
        results[name] = {
            "serving_cpu_ms_per_frame": round(frame, 4),
            "serving_extra_percent": extra_percent(frame, base_frame),
            "serving_cores": round(float(np.median([r["cores"] for r in serving[name]])), 3),
            "cpu_us_per_message": round(message, 2),
            "extra_us_per_message": round(message - base_message, 2),
            # one prediction per encoded frame at hop 1: the sink's own cost as a share of a frame's
            "extra_percent_of_frame": round((message - base_message) / 1000 / base_frame * 100, 2),
            "dropped": [r["dropped"] for r in serving[name]] + [r["dropped"] for r in per_message[name]],
            "rounds": {"serving": serving[name], "per_message": per_message[name]},
        }
    return {
        "what": "CPU of a Pipeline per frame and of an Outbox per message with each sink set, alternating rounds",
        "bundle": str(args.bundle),
        "streams": args.streams,
        "video": str(video),
        "round_s": args.round_s,
        "rounds": args.rounds,
        "messages": args.messages,
        "machine": machine_info(runtime=True),
        "sets": results,
    }


def report(result: dict) -> str:
    """One row per sink set: CPU per frame serving and per message, and the extra over ZeroMQ alone."""
    lines = [
        f"{'sinks':<20} {'ms CPU/frame':>12} {'vs zeromq':>10} {'us/message':>11} {'extra us':>9} {'% of frame':>10}"
    ]
    for name, r in result["sets"].items():
        lines.append(
            f"{name:<20} {r['serving_cpu_ms_per_frame']:>12.3f} {r['serving_extra_percent']:>+9.2f}% "
            f"{r['cpu_us_per_message']:>11.1f} {r['extra_us_per_message']:>9.1f} "
            f"{r['extra_percent_of_frame']:>9.2f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = rounds_parser(
        "bench_sinks",
        __doc__.splitlines()[0],
        rounds=3,
        rounds_help=None,
        round_s=20.0,
        round_s_help="seconds of serving per round and set (default 20)",
    )
    parser.add_argument("--messages", type=int, default=20_000, help="predictions per message round (default 20000)")
    add_video_and_out(parser)
    args = parser.parse_args(argv)
    return measure_and_save("bench_sinks", lambda: bench(args), report, Path(args.out) / "sink_cost.json")


if __name__ == "__main__":
    sys.exit(main())
