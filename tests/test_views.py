"""The pipeline's stream table and its read-only views (stream.table, stream.views): a reader in
another thread sees a reload whole or not at all, and the typed stats of a real run are the numbers
its messages carry (the edges' JSON is the records, turned into builtins)."""

import json
import threading

import pytest

from lrcn.stream.recording import RecordRules
from lrcn.stream.events import EventRules
from lrcn.stream.pipeline import Pipeline, PipelineOptions, StreamConfig
from lrcn.stream.stats import ClipStats, PipelineStats, StreamStats, plain

pytestmark = pytest.mark.timeout(120)

BEFORE = [StreamConfig("pattern:", id="a"), StreamConfig("pattern:", id="b")]
AFTER = [StreamConfig("pattern:", id="a", fps=5.0), StreamConfig("pattern:", id="c")]  # a restarts, b goes, c comes


def test_a_reader_in_another_thread_sees_each_reload_whole_or_not_at_all(exported_seed):
    pipeline = Pipeline(exported_seed[0], BEFORE, PipelineOptions(endpoint=None))
    seen: list[tuple[frozenset, frozenset, frozenset]] = []
    torn: list[str] = []
    done = threading.Event()

    def read() -> None:
        try:
            # A pause between rounds: a reader spinning without one holds the GIL against the inference
            # thread and the sources it starts, and a loaded machine then takes minutes over one reload.
            while not done.wait(0.001):
                for name, served in pipeline.table.items():
                    if not name == served.name == served.source.name == served.track.plan.id:
                        torn.append(f"table entry {name}: {served.source.name}, {served.track.plan.id}")
                stats, overview = pipeline.stats(), pipeline.overview()
                ready = pipeline.readiness()
                seen.append((frozenset(stats.streams), frozenset(overview), frozenset(ready)))
        except Exception as err:  # noqa: BLE001 - a reader that fails is what this test looks for
            torn.append(f"{type(err).__name__}: {err}")

    pipeline.start()
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for configs in (AFTER, BEFORE, AFTER, BEFORE):
            pipeline.reconfigure(configs, timeout_s=60)  # a loaded machine may take a while; whole is the point
    finally:
        done.set()
        reader.join(10)
        pipeline.stop()
    assert not torn, torn[:3]
    whole = ({"a", "b"}, {"a", "c"})
    assert len(seen) > 20, "the reader read while the reloads were applied"
    assert all(
        streams in whole and shown in whole and any(ready <= names for names in whole) for streams, shown, ready in seen
    ), {s for s in seen if s[0] not in whole or s[1] not in whole}
    assert {streams for streams, _, _ in seen} == set(map(frozenset, whole)), "both tables were read"
    assert pipeline.table["a"].config.fps is None and pipeline.table["a"].source.options.fps != 5.0


def test_the_typed_stats_of_a_real_run_are_the_numbers_its_messages_and_stats_json_carry(
    exported_seed, patterned, tmp_path
):
    bundle, video = exported_seed[0], patterned
    jsonl, record = tmp_path / "messages.jsonl", tmp_path / "clips"
    config = StreamConfig(
        str(video),
        id="cam",
        pace=False,
        events=EventRules(min_score=0.0, min_duration_s=0.0),
        record=RecordRules(dir=record),
    )
    pipeline = Pipeline(
        bundle, [config], PipelineOptions(endpoint=None, sinks=({"type": "jsonl", "path": str(jsonl)},))
    )
    stats = pipeline.run(duration_s=60)
    messages = [json.loads(line) for line in jsonl.read_text().splitlines()]
    typed = stats.streams["cam"]
    assert isinstance(stats, PipelineStats) and isinstance(typed, StreamStats)

    assert typed.predictions == len([m for m in messages if m["topic"] == "pred/cam"]) > 0
    assert typed.encoded == typed.sampled == stats.encoded and typed.dropped == typed.shutdown_dropped == 0
    assert isinstance(typed.clips, ClipStats) and typed.clips.clips >= 1, "the events' clips are counted"
    final = [m["stats"] for m in messages if m["topic"] == "status/cam" and m["stats"].get("report") == "final"][-1]
    rates = ("fps_in", "fps_out")  # over the whole run: they go on falling after the final status
    assert list(final) == [*StreamStats.__struct_fields__, "report"]
    assert {k: v for k, v in final.items() if k not in (*rates, "report")} == {
        k: v for k, v in plain(typed).items() if k not in rates
    }

    written = json.loads(json.dumps(plain(stats)))  # what `lrcn serve --stats-json` writes
    assert list(written) == list(PipelineStats.__struct_fields__)
    assert written["streams"]["cam"] == json.loads(json.dumps(plain(typed)))
    assert written["batch_sizes"] == {str(size): calls for size, calls in stats.batch_sizes.items()}
    assert written["sinks"] == {  # what a JSONL sink counts, and none of the other kinds' counters
        "jsonl": {"sent": len(messages), "dropped": 0, "failed": 0, "rotations": 0, "queued": 0, "problem": ""}
    }
