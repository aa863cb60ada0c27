"""The issue-23 study tools: the two-stream driver resumes instead of redoing, the input-size
recommendation follows its rule, and the report tables say what the figures say."""

from __future__ import annotations

import json

from lrcn.tools.evidence import report
from lrcn.tools.evidence.input_size_study import recommend
from lrcn.tools.evidence.two_stream_study import main as study


def write(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def finished_run(work, name="weizmann4-s0-rgb"):
    """A run whose every step has left its output: a trained, tested, exported bundle and its measurements."""
    bundle = work / "bundles" / name
    write(
        bundle / "meta.json",
        {
            "model": {"head": "pool", "input_size": [112, 112]},
            "training": {"seconds": 12.0, "val_groups": ["3"], "test_groups": ["6", "7", "8"]},
            "metrics": {"test": {"videos": 12, "video_correct": 11, "video_accuracy": 0.9167, "clip_accuracy": 0.9}},
        },
    )
    for file in ("model.keras", "encoder.onnx", "head.npz"):
        (bundle / file).write_bytes(b"x")
    write(bundle / "export.json", {"max_difference": 1e-6})
    modes = {
        "exact-hop1": {
            "accuracy": 0.8,
            "correct": 80,
            "frames": 100,
            "delay": {"median_s": 0.4, "max_s": 1.0, "missed": 0, "changes": 11},
        }
    }
    write(work / "measured" / f"{name}.stream.json", {"modes": modes})
    write(
        work / "measured" / f"{name}.novelty.json",
        {
            "bundles": [
                {
                    "method": "combined",
                    "threshold": 1.1,
                    "datasets": {
                        "weizmann4": {"role": "held-out", "videos": 12, "windows": 175, "unknown_share": 0.0},
                        "ps7": {"role": "foreign", "videos": 27, "windows": 360, "unknown_share": 1.0, "auroc": 1.0},
                    },
                }
            ]
        },
    )


def test_a_finished_run_is_collected_without_running_any_step_again(tmp_path, capsys):
    work, empty = tmp_path / "work", tmp_path / "no-data"
    empty.mkdir()  # every `lrcn` step would fail here: no weizmann4 in it
    finished_run(work)
    summary = tmp_path / "two_stream.json"
    code = study(
        [
            "--data",
            str(empty),
            "--work",
            str(work),
            "--datasets",
            "weizmann4",
            "--seeds",
            "0",
            "--modalities",
            "rgb",
            "--stages",
            "train,export,stream,novelty",
            "--summary",
            str(summary),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert not (work / "logs").exists()  # no command ran
    (run,) = json.loads(summary.read_text())["runs"]
    assert run["offline"]["video_correct"] == 11
    assert run["stream_offline"]["exact-hop1"] == {
        "accuracy": 0.8,
        "correct": 80,
        "frames": 100,
        "delay_median_s": 0.4,
        "delay_max_s": 1.0,
        "missed": 0,
        "changes": 11,
    }
    assert run["novelty"]["datasets"]["ps7"]["unknown_share"] == 1.0


def test_a_missing_step_runs_and_its_failure_is_one_line_and_exit_2(tmp_path, capsys):
    work, empty = tmp_path / "work", tmp_path / "no-data"
    empty.mkdir()
    finished_run(work)
    (work / "measured" / "weizmann4-s0-rgb.stream.json").unlink()
    code = study(
        [
            "--data",
            str(empty),
            "--work",
            str(work),
            "--datasets",
            "weizmann4",
            "--seeds",
            "0",
            "--modalities",
            "rgb",
            "--stages",
            "train,export,stream",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("lrcn: lrcn stream-accuracy failed")
    assert "stream-accuracy" in (work / "logs" / "weizmann4-s0-rgb.log").read_text()


def test_an_unknown_data_set_or_modality_is_one_line_and_exit_2(tmp_path, capsys):
    for flag, value in (("--datasets", "kinetics"), ("--modalities", "depth")):
        assert study(["--work", str(tmp_path), flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and value in err[0]


def size_result(correct: dict[int, dict[str, int]], videos: dict[str, int]) -> dict:
    return {
        "accuracy": {
            name: {
                "sizes": {
                    str(size): {"val_correct": by_set[name], "val_videos": count} for size, by_set in correct.items()
                }
            }
            for name, count in videos.items()
        },
        "cost": {"sizes": {str(size): {} for size in correct}},
    }


def test_the_recommended_size_is_the_smallest_within_two_standard_errors_of_the_best_everywhere():
    videos = {"weizmann4": 24, "ucf101_9": 324}
    # ucf101_9 at 112 is 24 videos (7.4 points) below 224: out; 160 is 5 below (1.5 points): within
    assert (
        recommend(
            size_result(
                {
                    112: {"weizmann4": 24, "ucf101_9": 275},
                    160: {"weizmann4": 24, "ucf101_9": 294},
                    224: {"weizmann4": 24, "ucf101_9": 299},
                },
                videos,
            )
        )
        == "160"
    )
    assert (
        recommend(
            size_result(
                {
                    112: {"weizmann4": 24, "ucf101_9": 295},
                    160: {"weizmann4": 24, "ucf101_9": 294},
                    224: {"weizmann4": 24, "ucf101_9": 299},
                },
                videos,
            )
        )
        == "112"
    )
    # a small set counts too: 18 of 24 is more than two standard errors below 24 of 24
    assert (
        recommend(
            size_result(
                {
                    112: {"weizmann4": 18, "ucf101_9": 299},
                    160: {"weizmann4": 24, "ucf101_9": 299},
                    224: {"weizmann4": 24, "ucf101_9": 299},
                },
                videos,
            )
        )
        == "160"
    )


def test_the_offline_table_flags_a_two_stream_model_below_its_better_stream():
    def run(modality, correct):
        return {
            "dataset": "ps7",
            "seed": 0,
            "modality": modality,
            "model": {"fusion": "late"},
            "training": {
                "fusion_choice": {
                    "chosen": "late",
                    "validation": {"early": {"video_accuracy": 0.8}, "late": {"video_accuracy": 0.9}},
                }
            }
            if modality == "both"
            else {},
            "offline": {"videos": 9, "video_correct": correct, "video_accuracy": correct / 9},
        }

    below = report.two_stream_offline({"runs": [run("rgb", 5), run("flow", 8), run("both", 7)]})
    assert (
        "**no** (-0.111)" in below
        and "| ps7 | 0 | 5/9 = 0.556 | 8/9 = 0.889 | 7/9 = 0.778 | late | early 0.800, late 0.900 |" in below
    )
    assert report.two_stream_offline({"runs": [run("rgb", 5), run("flow", 8), run("both", 9)]}).endswith("| yes |")


def test_the_flow_encoder_table_shows_each_candidate_the_one_kept_and_both_encoders_test_accuracy():
    def run(modality, correct, choice=None):
        return {
            "dataset": "ucf101_9",
            "seed": 0,
            "modality": modality,
            "flow_encoder": choice,
            "offline": {"videos": 126, "video_correct": correct, "video_accuracy": correct / 126},
        }

    choice = {
        "chosen": "tuned",
        "candidates": {
            "frozen": {"val_video_accuracy": 0.486, "val_field_accuracy": 0.285},
            "tuned": {"val_video_accuracy": 0.5, "val_field_accuracy": 0.31},
            "scratch": {"val_video_accuracy": 0.361, "val_field_accuracy": 0.262},
        },
    }
    frozen = {"runs": [run("flow", 70), run("both", 111)]}
    trained = {"runs": [run("flow", 75, choice), run("both", 112, choice)]}
    table = report.two_stream_flow_encoder(frozen, trained)
    assert (
        "| ucf101_9 | 0 | flow | 0.486 / 0.285 | 0.500 / 0.310 | 0.361 / 0.262 | **tuned** | 70/126 = 0.556 "
        "| 75/126 = 0.595 |"
    ) in table
    assert "| RGB + flow |" in table and table.count("\n") == 3


def test_the_study_passes_its_flow_encoder_to_flow_runs_only(tmp_path, monkeypatch):
    from lrcn.tools.evidence import two_stream_study

    calls = []
    monkeypatch.setattr(two_stream_study, "lrcn", lambda *args, log: calls.append(args))
    for modality in ("rgb", "flow", "both"):
        run = two_stream_study.Run(two_stream_study.DATASETS["ps7"], 0, modality)
        two_stream_study.train(run, tmp_path, "w.h5", tmp_path / modality, tmp_path / "log", "auto")
    rgb, flow, both = calls
    assert "--flow-encoder" not in rgb and "--modalities" not in rgb
    for args in (flow, both):
        assert args[args.index("--flow-encoder") + 1] == "auto"
