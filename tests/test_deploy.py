"""The deployment-file parser (stream/deploy.py over the schema in stream/settings.py), called
directly: a good file becomes typed settings and StreamConfigs, each mistake is one LrcnError line
naming file, line and key, and a `lrcn serve` flag wins over the file's value."""

from pathlib import Path

import pytest

from lrcn.stream.recording import RecordRules
from lrcn.stream.deploy import load_deployment, stream_from_table
from lrcn.stream.encoders import backend_names
from lrcn.stream.errors import LrcnError
from lrcn.stream.events import EventRules
from lrcn.stream.pipeline import PipelineOptions, StreamConfig
from lrcn.stream.settings import default, Settings
from lrcn.tools.cli.commands import build_parser
from lrcn.tools.cli.serving import options_from_args, streams_from_args

STREAM = '[[stream]]\nid = "cam"\nsource = "v.avi"\n'


def write(folder: Path, text: str, name: str = "deploy.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_full_file_becomes_typed_settings_and_stream_configs(tmp_path):
    clips = tmp_path / "clips"
    deployment = load_deployment(
        write(
            tmp_path,
            f"""
endpoint = "tcp://127.0.0.1:5556"
metrics = "127.0.0.1:9108"
backend = "onnxruntime-int8"
top_k = 2
gather_ms = 4.5
rtsp_transport = "udp"
read_timeout_s = 3

[[stream]]
id = "door"
source = "rtsp://10.0.0.5:8554/live"
crop = [640, 0, 1280, 1080]
mode = "continuous"
hop = 4
reset_every = 32
smooth = "hysteresis:3"
events = {{ min_score = 0.6, min_duration_s = 1.0, cooldown_s = 5, ignore = ["background"] }}
record = {{ dir = "{clips}", pre_s = 5, post_s = 5, max_gb = 20 }}
novelty = "off"

[[stream]]
source = "replay.mp4"
loop = true

[[sink]]
type = "jsonl"
path = "{tmp_path / "messages.jsonl"}"
""",
        )
    )
    assert deployment.settings == {
        "endpoint": "tcp://127.0.0.1:5556",
        "metrics": "127.0.0.1:9108",
        "backend": "onnxruntime-int8",
        "top_k": 2,
        "gather_ms": 4.5,
        "rtsp_transport": "udp",
        "read_timeout_s": 3.0,
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "messages.jsonl")}],
    }
    door, replay = deployment.streams
    assert door == StreamConfig(
        "rtsp://10.0.0.5:8554/live",
        id="door",
        crop=(640, 0, 1280, 1080),
        mode="continuous",
        hop=4,
        reset_every=32,
        smooth="hysteresis:3",
        novelty="off",
        events=EventRules(min_score=0.6, min_duration_s=1.0, cooldown_s=5.0, ignore=("background",)),
        record=RecordRules(str(clips), pre_s=5.0, post_s=5.0, max_gb=20.0),
    )
    assert replay == StreamConfig("replay.mp4", loop=True)
    assert clips.is_dir(), "a record dir is made and proved writable while the file is read"


def test_an_environment_variable_and_a_byte_order_mark_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("LRCN_TEST_SOURCE", "rtsp://cam.lan/live")
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[[stream]]\nid = "cam"\nsource = "${LRCN_TEST_SOURCE}"\n')
    assert load_deployment(path).streams == [StreamConfig("rtsp://cam.lan/live", id="cam")]


# name: (file text, what the one line names, its line number or None where no line applies)
BAD = {
    "unknown-key": ('colour = "red"\n' + STREAM, "unknown key 'colour'", 1),
    "unknown-stream-key": (STREAM + "colour = 3\n", "unknown key 'colour' in [[stream]] #1", 4),
    "hop-a-string": (STREAM + 'hop = "4"\n', "'hop' in [[stream]] #1 must be an integer", 4),
    "reset_every-negative": (
        STREAM + "reset_every = -3\n",
        "'reset_every' in [[stream]] #1 must be an integer >= 1",
        4,
    ),
    "mode": (STREAM + 'mode = "fast"\n', "'mode' in [[stream]] #1 must be 'exact' or 'continuous'", 4),
    "smooth": (STREAM + 'smooth = "median:x"\n', "smoothing must be", 4),
    "crop": (STREAM + "crop = [1, 2, 3]\n", "crop must be [x, y, width, height]", 4),
    "novelty": (STREAM + 'novelty = "often"\n', "novelty must be 'off' or a positive threshold", 4),
    "events": (STREAM + 'events = { min_score = "high" }\n', "'min_score' in the events of [[stream]] #1", 4),
    "endpoint": ("endpoint = 5556\n" + STREAM, "'endpoint' must be a string", 1),
    "metrics": ('metrics = "nohost:xyz"\n' + STREAM, "metrics address must be HOST:PORT", 1),
    "decoder": ('decoder = "magic"\n' + STREAM, "unknown decoder 'magic'", 1),
    "backend": (
        'backend = "cuda-magic"\n' + STREAM,
        f"unknown encoder backend 'cuda-magic' (known: {', '.join(backend_names())})",
        1,
    ),
    "stream-backend": (STREAM + 'backend = "cuda-magic"\n', "unknown encoder backend 'cuda-magic' (known: ", 4),
    "rtsp_transport": ('rtsp_transport = "carrier-pigeon"\n' + STREAM, "rtsp_transport", 1),
    "sink-type": (STREAM + '[[sink]]\ntype = "kafka"\n', "[[sink]] #1: unknown sink type 'kafka'", 5),
    "repeated-id": (STREAM + STREAM, "stream id 'cam' is given twice", 5),
    "unset-variable": (
        STREAM + 'smooth = "${LRCN_TEST_NOT_SET}"\n',
        "environment variable LRCN_TEST_NOT_SET is not set",
        4,
    ),
    "no-stream": ("top_k = 2\n", "no [[stream]] tables: nothing to serve", None),
    "not-toml": (STREAM + "hop =\n", "not valid TOML", None),
}


@pytest.mark.parametrize("name", BAD)
def test_each_mistake_is_one_lrcn_error_line_naming_the_file_line_and_key(name, tmp_path, monkeypatch):
    monkeypatch.delenv("LRCN_TEST_NOT_SET", raising=False)
    text, named, line = BAD[name]
    path = write(tmp_path, text)
    with pytest.raises(LrcnError) as caught:
        load_deployment(path)
    message = str(caught.value)
    assert "\n" not in message and named in message, message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(LrcnError, match=rf"^cannot read deployment file {tmp_path / 'nope.toml'}: .*No such file"):
        load_deployment(tmp_path / "nope.toml")


def test_one_stream_table_from_json_is_checked_as_in_a_file():
    assert stream_from_table({"source": "v.avi", "hop": 2}) == StreamConfig("v.avi", hop=2)
    with pytest.raises(LrcnError, match=r"^'hop' must be an integer >= 1, got 0$"):
        stream_from_table({"source": "v.avi", "hop": 0})


def serve_options(argv: list[str], config: Path) -> PipelineOptions:
    args = build_parser().parse_args(["serve", "bundle", "--config", str(config), *argv])
    deployment = load_deployment(config)
    settings = {**deployment.settings, "streams": deployment.streams}
    streams_from_args(args, settings)
    return options_from_args(args, settings)


def test_a_flag_wins_over_the_files_value_which_wins_over_the_default(tmp_path):
    config = write(
        tmp_path,
        'top_k = 2\nthreads = 3\ngather_ms = 5\nbackend = "onnxruntime-int8"\n'
        'rtsp_transport = "udp"\nread_timeout_s = 7\n' + STREAM,
    )
    from_file = serve_options([], config)
    assert (from_file.top_k, from_file.threads, from_file.gather_s, from_file.backend) == (
        2,
        3,
        0.005,
        "onnxruntime-int8",
    )
    assert (from_file.source.rtsp_transport, from_file.source.read_timeout_s) == ("udp", 7.0)
    flagged = serve_options(
        [
            "--top-k",
            "1",
            "--threads",
            "1",
            "--gather-ms",
            "0",
            "--backend",
            "onnxruntime",
            "--rtsp-transport",
            "tcp",
            "--read-timeout",
            "2",
        ],
        config,
    )
    assert (flagged.top_k, flagged.threads, flagged.gather_s, flagged.backend) == (1, 1, 0.0, "onnxruntime")
    assert (flagged.source.rtsp_transport, flagged.source.read_timeout_s) == ("tcp", 2.0)
    neither = serve_options([], write(tmp_path, STREAM, "plain.toml"))
    assert neither.top_k == default(Settings, "top_k") and neither.gather_s == default(Settings, "gather_ms") / 1000
