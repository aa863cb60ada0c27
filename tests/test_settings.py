"""The settings schema (stream/settings.py) through the deployment file and the real command line:
every value out of range and every bad stream id is one line naming file:line at start (exit 2)
and one refusal per SIGHUP at reload while predictions go on; secrets come from the environment
and files and never show in an error; any dict is either typed settings or one LrcnError line."""

import json
import math
import signal
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from lrcn.stream import settings as schema
from lrcn.stream.deploy import load_deployment, parse_deployment
from lrcn.stream.errors import LrcnError
from lrcn.stream.sources import stream_name
from lrcn.tools.cli.commands import main
from tests.live_servers import free_port, wait_until
from tests.receivers import Collector
from tests.cli import start_lrcn

STREAM = '[[stream]]\nid = "cam"\nsource = "{video}"\nloop = true\n'

# (top-level text, [[stream]] extra text): each a value point 8 of issue 22 found accepted.
BAD_VALUES = {
    "max_batch-0": ("max_batch = 0\n", ""),
    "max_batch--1": ("max_batch = -1\n", ""),
    "max_batch-huge": ("max_batch = 100000\n", ""),
    "gather_ms-1e9": ("gather_ms = 1e9\n", ""),
    "gather_ms-negative": ("gather_ms = -1\n", ""),
    "stats_interval_s-0": ("stats_interval_s = 0\n", ""),
    "stats_interval_s--1": ("stats_interval_s = -1\n", ""),
    "stats_interval_s-inf": ("stats_interval_s = inf\n", ""),
    "stats_interval_s-nan": ("stats_interval_s = nan\n", ""),
    "threads--1": ("threads = -1\n", ""),
    "top_k--2": ("top_k = -2\n", ""),
    "top_k-0": ("top_k = 0\n", ""),
    "top_k-1e6": ("top_k = 1e6\n", ""),
    "open_timeout_s--1": ("open_timeout_s = -1\n", ""),
    "read_timeout_s-0": ("read_timeout_s = 0\n", ""),
    "backoff_max_s-inf": ("backoff_max_s = inf\n", ""),
    "degraded_min_rate-2": ("degraded_min_rate = 2\n", ""),
    "degraded_max_resets-0": ("degraded_max_resets = 0\n", ""),
    "fps-inf": ("", "fps = inf\n"),
    "fps-0": ("", "fps = 0\n"),
    "hop-0": ("", "hop = 0\n"),
    "hop-bool": ("", "hop = true\n"),
    "min_score-2": ("", "events = { min_score = 2 }\n"),
    "cooldown_s-nan": ("", "events = { cooldown_s = nan }\n"),
    "min_duration_s--1": ("", "events = { min_duration_s = -1 }\n"),
    "max_gb-inf": ("", 'events = {}\nrecord = { dir = "{clips}", max_gb = inf }\n'),
    "max_gb-0": ("", 'events = {}\nrecord = { dir = "{clips}", max_gb = 0 }\n'),
    "pre_s--1": ("", 'events = {}\nrecord = { dir = "{clips}", pre_s = -1 }\n'),
    "post_s-inf": ("", 'events = {}\nrecord = { dir = "{clips}", post_s = inf }\n'),
    "retain_days-0": ("", 'events = {}\nrecord = { dir = "{clips}", retain_days = 0 }\n'),
    "min_free_gb--1": ("", 'events = {}\nrecord = { dir = "{clips}", min_free_gb = -1 }\n'),
}
BAD_IDS = {
    "slash": "door/2",
    "empty": "",
    "climbing": "../../etc",
    "topic-wildcards": "cam+#",
    "unicode": "caméra",
    "200-characters": "c" * 200,
    "dot": "cam.",
    "newline": "cam\\n",
}


def bad_value_file(folder: Path, name: str, video: str = "v.avi") -> Path:
    top, extra = BAD_VALUES[name]
    path = folder / f"{name}.toml"
    path.write_text(top + "\n" + STREAM.format(video=video) + extra.replace("{clips}", str(folder / "clips")))
    return path


def bad_id_file(folder: Path, name: str, video: str = "v.avi") -> Path:
    path = folder / f"id-{name}.toml"
    path.write_text(STREAM.format(video=video) + f'\n[[stream]]\nid = "{BAD_IDS[name]}"\nsource = "{video}"\n')
    return path


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


# ---------------------------------------------------------------- at start: one line, exit 2


@pytest.mark.parametrize("name", BAD_VALUES)
def test_each_bad_value_at_start_is_one_line_naming_file_and_line_and_exit_2(name, tmp_path, capsys):
    config = bad_value_file(tmp_path, name)
    key = name.split("-")[0]
    assert main(["serve", str(tmp_path), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lrcn: error: {config}:") and err.count("\n") == 1, err
    line = int(err.split(f"{config}:", 1)[1].split(":", 1)[0])
    assert key in config.read_text().splitlines()[line - 1], f"line {line} holds {key}: {err}"
    assert f"'{key}'" in err
    assert not (tmp_path / "clips").exists(), "a refused file makes no record dir"


@pytest.mark.parametrize("name", BAD_IDS)
def test_each_bad_stream_id_at_start_is_one_line_naming_file_and_line_and_exit_2(name, tmp_path, capsys):
    config = bad_id_file(tmp_path, name)
    assert main(["serve", str(tmp_path), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"lrcn: error: {config}:7: stream id must be letters, digits, _ and -, 1 to 64")
        and err.count("\n") == 1
    ), err


@pytest.mark.parametrize("name", BAD_IDS)
def test_a_bad_name_flag_is_one_line_and_exit_2(name, tmp_path, capsys):
    assert main(["serve", str(tmp_path), "v.avi", "--name", BAD_IDS[name].replace("\\n", "\n")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: --name: stream id must be") and err.count("\n") == 1, err


def test_a_name_flag_that_repeats_a_file_id_in_another_case_is_refused(tmp_path, capsys):
    (tmp_path / "d.toml").write_text('[[stream]]\nid = "cam"\nsource = "a.avi"\n')
    assert main(["serve", str(tmp_path), "b.avi", "--config", str(tmp_path / "d.toml"), "--name", "CAM"]) == 2
    assert (
        capsys.readouterr().err == "lrcn: error: stream id 'CAM' is given as 'cam' (ids differing only in case "
        "share a folder)\n"
    )


def test_top_k_beyond_the_models_classes_is_refused_where_the_bundle_loads(exported_seed, capsys):
    bundle, _, video = exported_seed
    assert main(["serve", str(bundle), str(video), "--top-k", "999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: top_k must be 1 to the model's ") and err.endswith(" classes, got 999\n"), err


TWO_IDS = '[[stream]]\nid = "cam"\nsource = "a.avi"\n\n[[stream]]\nid = "{second}"\nsource = "b.avi"\n'


@pytest.mark.parametrize("text", [TWO_IDS.format(second="cam"), TWO_IDS.format(second="Cam")], ids=["same", "case"])
def test_ids_that_would_share_a_folder_are_refused_at_the_second(text, tmp_path):
    (tmp_path / "d.toml").write_text(text)
    with pytest.raises(LrcnError, match=r"d.toml:6: stream id '(cam|Cam)' is given"):
        load_deployment(tmp_path / "d.toml")


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--max-batch", "0"], "--max-batch must be an integer >= 1, got 0"),
        (["--gather-ms", "1e9"], "--gather-ms must be a number <= 1000.0"),
        (["--stats-interval-s", "0"], "--stats-interval-s must be a number > 0.0"),
        (["--stats-interval", "inf"], "--stats-interval-s must be a number <= 3600.0"),
        (["--top-k", "0"], "--top-k must be an integer >= 1"),
        (["--open-timeout", "-1"], "--open-timeout-s must be a number > 0.0"),
        (["--read-timeout-s", "nan"], "--read-timeout-s must be a number > 0.0"),
        (["--pre-roll", "-1", "--record", "{clips}"], "--pre-s must be a number >= 0.0"),
        (["--cooldown", "inf"], "--cooldown-s must be a number <= 86400.0"),
        (["--max-gb", "0", "--record", "{clips}"], "--max-gb must be a number > 0.0"),
        (["--retain-days", "inf", "--record", "{clips}"], "--retain-days must be a number <= 36500.0"),
        (["--min-free-gb", "-1", "--record", "{clips}"], "--min-free-gb must be a number >= 0.0"),
    ],
)
def test_a_bad_flag_and_its_old_spelling_are_checked_by_the_same_schema(argv, complaint, tmp_path, capsys):
    argv = [a.replace("{clips}", str(tmp_path / "clips")) for a in argv]
    assert main(["serve", str(tmp_path), "v.avi", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn: error: ") and err.count("\n") == 1 and complaint in err, err


def test_the_old_flag_spellings_still_set_the_one_name(tmp_path):
    from lrcn.tools.cli.commands import build_parser

    old = build_parser("serve").parse_args(
        [
            "serve",
            "b",
            "--pre-roll",
            "2",
            "--post-roll",
            "3",
            "--watch-classes",
            "a",
            "--ignore-classes",
            "b",
            "--open-timeout",
            "4",
            "--read-timeout",
            "5",
            "--backoff-max",
            "6",
            "--stats-interval",
            "7",
            "--min-duration",
            "8",
            "--cooldown",
            "9",
            "--event-updates",
            "10",
        ]
    )
    new = build_parser("serve").parse_args(
        [
            "serve",
            "b",
            "--pre-s",
            "2",
            "--post-s",
            "3",
            "--classes",
            "a",
            "--ignore",
            "b",
            "--open-timeout-s",
            "4",
            "--read-timeout-s",
            "5",
            "--backoff-max-s",
            "6",
            "--stats-interval-s",
            "7",
            "--min-duration-s",
            "8",
            "--cooldown-s",
            "9",
            "--update-s",
            "10",
        ]
    )
    assert vars(old) == vars(new)
    assert new.pre_s == 2 and new.classes == "a" and new.update_s == 10
    help_text = build_parser("serve")._subparsers._group_actions[0].choices["serve"].format_help()
    assert "--pre-roll" not in help_text
    assert "--max-batch N         largest encoder call, in frames (default 16)" in help_text


def test_the_retention_flags_reach_the_record_rules_of_each_source(tmp_path):
    from lrcn.tools.cli.commands import build_parser
    from lrcn.tools.cli.serving import streams_from_args

    args = build_parser("serve").parse_args(
        [
            "serve",
            "b",
            "a.avi",
            "--record",
            str(tmp_path),
            "--max-gb",
            "2.5",
            "--retain-days",
            "7",
            "--min-free-gb",
            "0",
        ]
    )
    record = streams_from_args(args, {})[0].record
    assert (record.max_gb, record.retain_days, record.min_free_gb) == (2.5, 7.0, 0.0)
    defaults = streams_from_args(
        build_parser("serve").parse_args(["serve", "b", "a.avi", "--record", str(tmp_path)]), {}
    )
    assert (defaults[0].record.max_gb, defaults[0].record.retain_days) == (
        schema.default(schema.Record, "max_gb"),
        None,
    )


def test_a_byte_order_mark_is_read_as_the_start_of_the_file(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes('\ufeffmax_batch = 4\n[[stream]]\nid = "cam"\nsource = "a.avi"\n'.encode("utf-8"))
    deployment = load_deployment(path)
    assert deployment.settings == {"max_batch": 4} and deployment.streams[0].id == "cam"


def test_the_default_id_of_any_source_follows_the_rule_and_never_holds_credentials():
    for source in [
        "rtsp://admin:s3cret@10.0.0.5:554/live/ch1.sdp",
        "/data/cam.v2.mp4",
        "../../etc/passwd",
        "0",
        "http://user:pw@[::1]:8080/" + "x" * 300,
        "gst:videotestsrc ! appsink",
        "caméra.avi",
        ".avi",
    ]:
        name = stream_name(source)
        assert schema.check_stream_id(name) == name
        assert "admin" not in name and "s3cret" not in name and "user" not in name and "pw" not in name


# ---------------------------------------------------------------- secrets from outside the file


def test_an_environment_variable_fills_a_value_and_an_unset_one_is_named_never_shown(tmp_path, monkeypatch):
    path = tmp_path / "env.toml"
    path.write_text(
        'metrics = "127.0.0.1:${LRCN_TEST_PORT}"\n[[stream]]\nsource = "rtsp://u:${LRCN_TEST_PW}@h/x"\n'
        'hop = "${LRCN_TEST_PW}"\n'
    )
    monkeypatch.delenv("LRCN_TEST_PORT", raising=False)
    monkeypatch.setenv("LRCN_TEST_PW", "s3cret")
    with pytest.raises(LrcnError, match=r"env.toml:1: environment variable LRCN_TEST_PORT is not set"):
        load_deployment(path)
    monkeypatch.setenv("LRCN_TEST_PORT", "9108")
    with pytest.raises(LrcnError) as raised:
        load_deployment(path)
    assert "env.toml:4: 'hop' in [[stream]] #1 must be an integer, got '${LRCN_TEST_PW}'" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    path.write_text(path.read_text().replace('hop = "${LRCN_TEST_PW}"\n', ""))
    deployment = load_deployment(path)
    assert deployment.settings["metrics"] == "127.0.0.1:9108" and deployment.streams[0].source == "rtsp://u:s3cret@h/x"


def test_a_password_file_becomes_the_source_password_and_its_errors_never_show_it(tmp_path):
    secret = tmp_path / "door.secret"
    secret.write_text("p@ss:w/rd\n")
    path = tmp_path / "pw.toml"
    stream = '[[stream]]\nid = "door"\nsource = "{source}"\npassword_file = "{secret}"\n'
    path.write_text(stream.format(source="rtsp://admin@10.0.0.5:554/live", secret=secret))
    assert load_deployment(path).streams[0].source == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/live"
    for source, complaint in [
        ("rtsp://10.0.0.5/live", "needs a URL source with a user"),
        ("rtsp://admin:other@10.0.0.5/live", "is set but source already has a password"),
        ("door.avi", "needs a URL source with a user"),
    ]:
        path.write_text(stream.format(source=source, secret=secret))
        with pytest.raises(LrcnError, match=f"pw.toml:4: password_file {complaint}") as raised:
            load_deployment(path)
        assert "p@ss" not in str(raised.value) and "other" not in str(raised.value)
    path.write_text(stream.format(source="rtsp://admin@h/x", secret=tmp_path / "missing"))
    with pytest.raises(LrcnError, match="pw.toml:4: cannot read password_file .*missing: No such file"):
        load_deployment(path)


# ---------------------------------------------------------------- any dict: typed or one line

KEYS = [
    *schema.Settings.__struct_fields__,
    *schema.Stream.__struct_fields__,
    *schema.Events.__struct_fields__,
    *schema.Record.__struct_fields__,
    "type",
    "fsp",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(
        [
            "exact",
            "continuous",
            "tcp",
            "cpu",
            "off",
            "a.avi",
            "cam",
            "rtsp://u@h/x",
            "${HOME}",
            "${LRCN_UNSET_FOR_TEST}",
            "ema:0.5",
            "127.0.0.1:0",
            "jsonl",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=12,
)
TABLE = st.dictionaries(
    st.sampled_from([k for k in KEYS if k not in ("password_file", "record", "dir")]), VALUES, max_size=6
)


STREAM_TABLE = st.builds(
    lambda table, source: {**table, **source},
    TABLE,
    st.sampled_from([{}, {"source": "a.avi"}, {"source": "rtsp://u@h/x"}]),
)


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=TABLE, streams=st.one_of(st.lists(STREAM_TABLE, max_size=3), VALUES), sinks=st.lists(TABLE, max_size=2))
def test_any_dict_is_typed_settings_or_one_lrcn_error_line(top, streams, sinks):
    data = {**top, "stream": streams, "sink": sinks}
    try:
        deployment = parse_deployment(data, Path("any.toml"), "")
    except LrcnError as err:
        assert str(err).startswith("any.toml") and "\n" not in str(err)
        return
    for config in deployment.streams:
        assert config.id is None or schema.check_stream_id(config.id)
        assert config.fps is None or 0 < config.fps <= 1000
    for key, value in deployment.settings.items():
        assert not isinstance(value, float) or math.isfinite(value), key


# ---------------------------------------------------------------- a real `lrcn serve`: SIGHUP


class Lines(threading.Thread):
    """A process's stderr, one JSON log record per line, kept as it comes."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.records = stream, []

    def run(self) -> None:
        for line in self.stream:
            self.records.append(json.loads(line) if line.startswith("{") else {"message": line})

    def refusals(self) -> list[dict]:
        return [r for r in list(self.records) if r["message"].startswith("reload refused")]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sighup_with_each_bad_id_and_value_is_refused_once_and_predictions_go_on_without_a_seq_gap(
    exported_seed, tmp_path
):
    bundle, _, video = exported_seed
    endpoint = free_port()
    good = f'endpoint = "tcp://127.0.0.1:{endpoint}"\n\n' + STREAM.format(video=video)
    config = tmp_path / "cameras.toml"
    config.write_text(good)
    process = start_lrcn("serve", bundle, "--config", config, "--log-format", "json")
    collector = Collector(f"tcp://127.0.0.1:{endpoint}")
    collector.start()
    lines = Lines(process.stderr)
    lines.start()
    files = [bad_id_file(tmp_path, name, video) for name in BAD_IDS] + [
        bad_value_file(tmp_path, name, video) for name in BAD_VALUES
    ]
    try:
        assert wait_until(lambda: len(collector.predictions("cam")) >= 3, 60), lines.records[-5:]
        for number, bad in enumerate(files, start=1):
            text = bad.read_text()
            config.write_text(f'endpoint = "tcp://127.0.0.1:{endpoint}"\n' + text)
            process.send_signal(signal.SIGHUP)
            assert wait_until(lambda number=number: len(lines.refusals()) >= number, 10), (bad.name, lines.records[-3:])
            assert process.poll() is None, bad.name
        before = len(collector.predictions("cam"))
        assert wait_until(lambda: len(collector.predictions("cam")) >= before + 5, 20), "still predicting"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        lines.join(5)
        collector.close()
    assert process.returncode == 0, lines.records[-5:]
    refusals = lines.refusals()
    assert len(refusals) == len(files), [r["message"] for r in refusals]
    assert all(str(config) in r["message"] and r["level"] == "error" for r in refusals)
    assert not [r for r in lines.records if r["message"].startswith("reloaded")], "no bad file was applied"
    assert not [r for r in lines.records if "Traceback" in r["message"] or "inference stopped" in r["message"]]
    seqs = [p["seq"] for p in collector.predictions("cam")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq without a gap"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_sighup_a_tenth_of_a_second_after_launch_does_not_end_serve(exported_seed):
    bundle, _, video = exported_seed
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    collector.start()
    process = start_lrcn("serve", bundle, video, "--name", "cam", "--loop", "--endpoint", endpoint)
    try:
        time.sleep(0.1)  # the test is about a SIGHUP this soon after launch, before serve is up
        process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(collector.predictions("cam")) >= 3 or process.poll() is not None, 60)
        assert process.poll() is None, process.stderr.read()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        collector.close()
    assert process.returncode == 0, err
    assert "SIGHUP: nothing to reload" in err
