"""`lrcn serve` and `lrcn annotate` through the real command line: a real bundle, real videos,
a real subscriber, signals, and one-line errors for bad input."""

import json
import shutil
import signal
import subprocess

import cv2
import numpy as np
import pytest

from lrcn.stream.keys import load_client_keys, make_keys
from lrcn.stream.publisher import Subscriber
from lrcn.stream.runtime_bundle import load_runtime_bundle
from tests.live_servers import free_port
from tests.offline import offline_windows
from lrcn.tools.cli.commands import main
from tests.cli import lrcn, start_lrcn
from tests.receivers import receive_until

pytestmark = pytest.mark.timeout(90)


def test_serve_publishes_predictions_and_sigterm_stops_it_with_final_stats(exported_seed):
    bundle, _, video = exported_seed
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    process = start_lrcn(
        "serve", bundle, video, "--name", "cam", "--loop", "--endpoint", endpoint, "--smooth", "ema:0.5"
    )
    try:
        with Subscriber(endpoint) as subscriber:
            messages = receive_until(subscriber, lambda ms: sum(m.kind == "pred" for m in ms) >= 5, 30)
            assert sum(m.kind == "pred" for m in messages) >= 5, process.stderr.read() if process.poll() else ""
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
            final_status = lambda ms: any(
                m.kind == "status" and m.payload["stats"].get("report") == "final"  # noqa: E731
                for m in ms
            )
            messages += receive_until(subscriber, final_status, 10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.startswith(f"lrcn: serving cam on {endpoint}")
    assert "lrcn.serve served" in err and "[cam] stopped" in err and "latency p50/p95/p99" in err
    prediction = next(m.payload for m in messages if m.kind == "pred")
    assert set(prediction["probabilities"]) == set(load_runtime_bundle(bundle).classes)
    final = [m.payload for m in messages if m.kind == "status" and m.payload["stats"].get("report") == "final"]
    assert final and final[-1]["state"] == "stopped"


def test_serve_from_a_deployment_file_runs_each_stream_with_its_settings(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "deploy.toml"
    config.write_text(
        f'endpoint = "{endpoint}"\nstats_interval_s = 0.5\ndecoder = "auto"\nbackoff_max_s = 30\n\n'
        f'[[stream]]\nid = "left"\nsource = "{video}"\n\n'
        f'[[stream]]\nid = "right"\nsource = "{video}"\nhop = 2\nsmooth = "hysteresis:2"\n'
        'backend = "onnxruntime-int8"\ncrop = [0, 0, 32, 48]\ndecoder = "cpu"\n'
    )
    stats_json = tmp_path / "stats.json"
    with Subscriber(endpoint, topics=["pred/"]) as subscriber:
        process = start_lrcn("serve", bundle, "--config", config, "--stats-json", stats_json, "--duration", "20")
        try:
            messages = receive_until(subscriber, lambda ms: False, 1.0)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        messages += receive_until(subscriber, lambda ms: False, 0.3)
    assert process.returncode == 0, err
    stats = json.loads(stats_json.read_text())
    left, right = stats["streams"]["left"], stats["streams"]["right"]
    assert left["state"] == right["state"] == "ended", "files end and so does serve"
    assert left["encoded"] == right["encoded"] > 0
    assert right["predictions"] == (left["predictions"] + 1) // 2, "hop 2: a window every second sampled frame"
    assert {m.stream for m in messages} == {"left", "right"}, "the INT8 stream predicts beside the fp32 one"


def test_serve_with_curve_keys_reaches_an_authorized_subscriber_only(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    process = start_lrcn("serve", bundle, video, "--loop", "--endpoint", endpoint, "--curve-keys", tmp_path / "keys")
    try:
        with (
            Subscriber(endpoint, curve=load_client_keys(tmp_path / "keys")) as allowed,
            Subscriber(endpoint) as plaintext,
        ):
            assert receive_until(allowed, lambda ms: any(m.kind == "pred" for m in ms), 30)
            assert receive_until(plaintext, lambda ms: False, 1.0) == []
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


def test_serve_a_synthetic_stream(exported_seed, tmp_path):
    bundle, _, _ = exported_seed
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stats_json = tmp_path / "stats.json"
    process = start_lrcn("serve", bundle, "synth:2:7", "--endpoint", endpoint, "--stats-json", stats_json)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "synth:2:7 is " in err and ".labels.json" in err
    assert json.loads(stats_json.read_text())["streams"]["synth-7"]["predictions"] > 5


def test_annotate_draws_the_exact_window_prediction_on_every_frame(exported_seed, tmp_path, capsys):
    bundle, _, video = exported_seed
    out = tmp_path / "annotated.mp4"
    assert main(["annotate", str(bundle), str(video), "-o", str(out)]) == 0
    runtime = load_runtime_bundle(bundle)
    expected = len(offline_windows(runtime, video))
    assert capsys.readouterr().out.strip().endswith(f"frames, {expected} predictions")
    original, annotated = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(out))
    try:
        count = int(original.get(cv2.CAP_PROP_FRAME_COUNT))
        assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == count
        for _ in range(count - 1):
            ok_a, a = original.read()
            ok_b, b = annotated.read()
        assert ok_a and ok_b and a.shape == b.shape
        corner = (slice(0, a.shape[0] // 8), slice(0, a.shape[1] // 2))
        assert np.abs(a[corner].astype(int) - b[corner].astype(int)).mean() > 20, "the label box is drawn"
    finally:
        original.release()
        annotated.release()


@pytest.fixture
def bad_inputs(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "encoder.onnx").write_bytes(b"not an onnx file")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    stream = f'[[stream]]\nsource = "{video}"\n'
    files = {
        "malformed": '[[stream]]\nsource = "a.avi\n',
        "unknown": f"{stream}fsp = 5\n",
        "bad_crop": f"{stream}crop = [0, 0, 10]\n",
        "bad_decoder": f'decoder = "nvdec9"\n\n{stream}',
        "both": f'endpoint = "tcp://127.0.0.1:5556"\nconnect = "tcp://127.0.0.1:5557"\n\n{stream}',
        "bad_metrics": f'metrics = "localhost:http"\n\n{stream}',
        "unknown_sink": f'{stream}\n[[sink]]\ntype = "kafka"\n',
        "bad_sink_key": f'{stream}\n[[sink]]\ntype = "jsonl"\nfile = "x.jsonl"\n',
        "record_without_events": f'{stream}record = {{ dir = "{tmp_path / "clips"}" }}\n',
        "record_inf_quota": f'{stream}events = {{}}\nrecord = {{ dir = "{tmp_path / "clips"}", max_gb = inf }}\n',
    }
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return {
        "bundle": str(bundle),
        "video": str(video),
        "broken": str(broken),
        "corrupt": str(corrupt),
        **{name: str(tmp_path / f"{name}.toml") for name in files},
        "blocker": str(blocker),
        "missing": str(tmp_path / "missing.avi"),
        "url": f"tcp://127.0.0.1:{free_port()}",
        "out": str(tmp_path / "out.mp4"),
    }


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["serve", "{missing}", "{video}"], "model bundle not found: {missing}"),
        (["serve", "{broken}", "{video}"], "cannot load"),
        (["serve", "{bundle}", "{missing}"], "video not found: {missing}"),
        (["serve", "{bundle}", "{corrupt}"], "{corrupt}"),
        (
            ["serve", "{bundle}", "{video}", "--crop", "0,0,4000,10"],
            "crop [0, 0, 4000, 10] reaches outside the 64x64 frame",
        ),
        (["serve", "{bundle}", "{url}", "--decoder", "nvdec9"], "unknown decoder 'nvdec9'"),
        (["serve", "{bundle}", "--config", "{bad_crop}"], "{bad_crop}:3: crop must be [x, y, width, height]"),
        (["serve", "{bundle}", "--config", "{bad_decoder}"], "{bad_decoder}:1: unknown decoder 'nvdec9'"),
        (["serve", "{bundle}", "--config", "{malformed}"], "{malformed}: not valid TOML"),
        (["serve", "{bundle}", "--config", "{unknown}"], "{unknown}:3: unknown key 'fsp' in [[stream]] #1"),
        (["serve", "{bundle}"], "nothing to serve"),
        (["serve", "{bundle}", "--config", "{both}"], "sets both endpoint (bind) and connect"),
        (["serve", "{bundle}", "--config", "{bad_metrics}"], "{bad_metrics}:1: metrics address must be HOST:PORT"),
        (["serve", "{bundle}", "{video}", "--metrics", "1.2.3.4.5:99999"], "metrics address must be HOST:PORT"),
        (
            ["serve", "{bundle}", "{video}", "--watch-classes", "dance,bend"],
            "events name classes the model lacks: dance",
        ),
        (["serve", "{bundle}", "{video}", "--min-score", "2"], "--min-score must be a number <= 1.0, got 2.0"),
        (["serve", "{bundle}", "{video}", "--smooth", "median:3"], "smoothing must be"),
        (
            ["serve", "{bundle}", "--config", "{unknown_sink}"],
            "{unknown_sink}:5: [[sink]] #1: unknown sink type 'kafka'",
        ),
        (["serve", "{bundle}", "--config", "{bad_sink_key}"], "sink #1 (jsonl): unknown key 'file' in a jsonl sink"),
        (["serve", "{bundle}", "{video}", "--mqtt", "http://broker"], "sink #1 (mqtt): "),
        (["serve", "{bundle}", "{video}", "--mqtt", "mqtt://"], "sink #1 (mqtt): "),
        (
            ["serve", "{bundle}", "{video}", "--jsonl", "{blocker}/out.jsonl"],
            "jsonl sink: cannot write {blocker}/out.jsonl",
        ),
        (
            ["serve", "{bundle}", "{video}", "--record", "{blocker}/clips"],
            "record dir {blocker}/clips cannot be created",
        ),
        (["serve", "{bundle}", "--config", "{record_without_events}"], "record needs events (clips are cut per event)"),
        (["serve", "{bundle}", "pattern:", "--record", "{out}"], "cannot record clips from pattern:"),
        (
            ["serve", "{bundle}", "--config", "{record_inf_quota}"],
            "'max_gb' in the record of [[stream]] #1 must be a number <= 1000000.0, got inf",
        ),
        (["annotate", "{bundle}", "{missing}", "-o", "{out}"], "video not found"),
        (["annotate", "{bundle}", "{corrupt}", "-o", "{out}"], "{corrupt}"),
        (["annotate", "{bundle}", "{video}", "-o", "{missing}/x.mp4"], "cannot write video"),
    ],
    ids=[
        "missing-bundle",
        "broken-bundle",
        "missing-file",
        "corrupt-file",
        "crop-outside",
        "bad-decoder",
        "bad-crop-toml",
        "bad-decoder-toml",
        "malformed-toml",
        "unknown-toml-key",
        "no-source",
        "bind-and-connect",
        "bad-metrics-toml",
        "bad-metrics-flag",
        "unknown-event-class",
        "bad-min-score",
        "bad-smoothing",
        "unknown-sink-type",
        "bad-sink-key",
        "bad-mqtt-scheme",
        "mqtt-no-host",
        "unwritable-jsonl",
        "unwritable-record-dir",
        "record-without-events",
        "record-pattern",
        "record-inf-quota",
        "annotate-missing",
        "annotate-corrupt",
        "annotate-unwritable",
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(bad_inputs, capsys, argv, complaint):
    argv = [a.format(**bad_inputs) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: ") and err.count("\n") == 1, err
    assert complaint.format(**bad_inputs) in err


def test_serve_exits_1_when_a_stream_fails_and_says_why_in_one_line(bad_inputs, capsys):
    argv = [
        "serve",
        bad_inputs["bundle"],
        bad_inputs["video"],
        bad_inputs["url"],
        "--max-attempts",
        "2",
        "--open-timeout",
        "1",
        "--name",
        "file",
        "--name",
        "cam",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    failed = [
        line.split(" error   lrcn.serve [cam] ", 1)[1]
        for line in err.splitlines()
        if " lrcn.serve [cam] " in line and " error " in line
    ]
    assert failed == [
        f"stream cam failed: cannot open source {bad_inputs['url']}: Connection refused; gave up after 2 attempts"
    ], err
    assert "[file] ended" in err, "the file stream still ran to its end"


def test_a_bad_input_from_the_real_command_line_has_no_traceback(tmp_path):
    run = lrcn("serve", tmp_path, "x.avi", timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_two_recognizers_connect_into_one_proxy_and_a_subscriber_gets_both(exported_seed):
    bundle, _, video = exported_seed
    xsub, xpub = free_port(), free_port()
    proxy = start_lrcn(
        "proxy", "--xsub", f"tcp://127.0.0.1:{xsub}", "--xpub", f"tcp://127.0.0.1:{xpub}", "--duration", 60
    )
    recognizers = []
    try:
        assert proxy.stdout.readline().startswith("proxy: publishers -> "), proxy.stderr.read()
        recognizers = [
            start_lrcn("serve", bundle, video, "--name", name, "--loop", "--connect", f"tcp://127.0.0.1:{xsub}")
            for name in ("north", "south")
        ]
        for recognizer in recognizers:
            assert "into tcp://127.0.0.1:" in recognizer.stdout.readline()
        with Subscriber(f"tcp://127.0.0.1:{xpub}") as subscriber:

            def enough(messages):
                return all(
                    sum(m.kind == "pred" and m.stream == name for m in messages) >= 10 for name in ("north", "south")
                )

            messages = receive_until(subscriber, enough, 40)
            missed = dict(subscriber.missed)
    finally:
        for process in [*recognizers, proxy]:
            process.send_signal(signal.SIGTERM)
        for process in [*recognizers, proxy]:
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    assert enough(messages)
    for name in ("north", "south"):
        seqs = [m.payload["seq"] for m in messages if m.kind == "pred" and m.stream == name]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{name}: seq contiguous through the proxy"
        assert missed.get(f"pred/{name}", 0) == 0
    nodes = {m.payload["node"]: tuple(m.payload["streams"]) for m in messages if m.kind == "heartbeat"}
    assert sorted(nodes.values()) == [("north",), ("south",)] and len(nodes) == 2, nodes
    assert all(process.returncode == 0 for process in recognizers)
