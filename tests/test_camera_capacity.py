"""The camera-capacity harness end to end, small: one RTSP camera at 320x240, a few seconds of
`lrcn serve` with the seed bundle. Says that the trial runs and reports; no timing is judged."""

from pathlib import Path

import pytest

from lrcn.tools.evidence.camera_capacity import (
    REPO,
    Source,
    checkout_code,
    judge,
    rtsp_server_missing,
    run_trial,
    source_video,
)
from lrcn.tools.evidence.ffmpeg_server import FFMPEG


@pytest.mark.slow
def test_one_camera_trial_reports_every_figure(exported_seed, tmp_path):
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    missing = rtsp_server_missing()
    if missing:
        pytest.skip(f"GStreamer RTSP server not available: {missing}")
    bundle, _, _ = exported_seed
    assert Path(checkout_code(REPO)["stream_module"]).is_relative_to(REPO)
    video = source_video(tmp_path, Source(width=320, height=240, seconds=12, bitrate_mbit=1))

    trial = run_trial(REPO, bundle, video, count=1, duration_s=5, fps=10)

    assert trial["exit_code"] == 0, trial.get("serve_log_tail")
    assert trial["serve_cpu_s"] > 0
    for key in ("serve_cores", "server_cores", "machine_cores", "holds", "reasons", "elapsed_s"):
        assert key in trial
    cam0 = trial["streams"]["cam0"]
    assert cam0["frames"] > 0 and cam0["encoded"] > 0, cam0
    assert cam0["dropped"] is not None and cam0["latency_p99_ms"] is not None
    assert cam0["predictions_received"] > 0


def test_a_camera_that_never_connected_does_not_hold():
    trial = {
        "timed_out": False,
        "elapsed_s": 60.0,
        "streams": {
            "cam0": {
                "state": "connecting",
                "frames": 0,
                "encoded": 0,
                "dropped": 0,
                "latency_p99_ms": None,
                "received_fps": None,
            }
        },
    }
    holds, reasons = judge(trial, fps=10)
    assert not holds and "never connected" in reasons[0]
