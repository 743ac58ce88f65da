"""The soak benchmark's bookkeeping (`dinov3 soak`): RSS samples, growth, frames, JSON, the node run.

Memory and time are never asserted: the figures are docs/performance.md's ("Soak"), from a
10,000-frame run; here a few frames through a 1-block backbone check what is recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import search_weights_only_in

from dinov3_ros.cli import build_parser, main
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads.loader import discover
from dinov3_toolkit.tools import soak

EVERY_HEAD = ["detection", "segmentation", "depth", "retinanet", "ssd", "detr", "flow"]


@pytest.fixture(scope="module")
def engine_soak(tmp_path_factory):
    """30 frames through every built-in and template head, RSS every 10 frames."""
    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, tmp_path_factory.mktemp("no-weights"))
        engine = Engine.create(backbone="vits16", device="cpu", size=32, heads=EVERY_HEAD, random_weights=True,
                               backbone_overrides={"depth": 1})
    for name, values in soak.lowest_thresholds({n: h.manifest for n, h in engine.heads.items()}).items():
        engine.set_params(name, **values)
    seen = []
    result = soak.run_soak(engine, frames=30, sample_every=10, settings={"size": 32}, on_sample=seen.append)
    return result, seen


def test_every_head_runs_and_rss_is_sampled_at_0_every_k_frames_and_the_end(engine_soak):
    result, seen = engine_soak
    assert result.mode == "engine" and result.frames == 30
    assert result.heads == tuple(EVERY_HEAD)
    assert result.head_errors == dict.fromkeys(EVERY_HEAD, 0)
    assert [s.frame for s in result.samples] == [0, 10, 20, 30]
    assert list(result.samples) == seen  # each sample was reported as it was taken
    assert all(s.rss_bytes > 0 for s in result.samples)
    elapsed = [s.elapsed_s for s in result.samples]
    assert elapsed == sorted(elapsed)
    assert set(result.random_weights) == {"backbone", *EVERY_HEAD}


def test_growth_is_counted_from_a_tenth_of_the_run_to_its_end(engine_soak):
    result, _ = engine_soak
    assert result.baseline.frame == 10  # the first sample at or after frame 30 // 10
    base, end = result.baseline.rss_bytes, result.samples[-1].rss_bytes
    assert result.growth_pct == pytest.approx(100 * (end - base) / base)
    made = soak.SoakResult("engine", 10_000, ("depth",), (soak.RssSample(0, 100, 0.0),
                           soak.RssSample(1_000, 200, 1.0), soak.RssSample(10_000, 210, 9.0)), {}, ())
    assert made.baseline.frame == 1_000 and made.growth_pct == pytest.approx(5.0)


def test_json_and_plot(engine_soak, tmp_path):
    result, _ = engine_soak
    written = soak.write(result, tmp_path)
    data = json.loads((tmp_path / "soak.json").read_text())
    assert [s["frame"] for s in data["samples"]] == [0, 10, 20, 30]
    assert data["growth_pct"] == pytest.approx(result.growth_pct)
    assert data["baseline_frame"] == 10 and data["end_rss_bytes"] == result.samples[-1].rss_bytes
    assert data["heads"] == EVERY_HEAD and data["note"] == soak.RANDOM_NOTE
    assert data["machine"]["device"] == "cpu" and data["settings"] == {"size": 32}
    if (tmp_path / "soak.png").is_file():  # matplotlib is optional
        assert written == [tmp_path / "soak.json", tmp_path / "soak.png"]


def test_frames_vary_in_size_and_content_with_increasing_stamps():
    frames = soak.SyntheticFrames(64)
    shapes = [frames.frame(i).shape[:2] for i in range(0, 4 * soak.FRAMES_PER_SIZE, soak.FRAMES_PER_SIZE)]
    assert shapes == [(64, 64), (48, 85), (32, 64), (64, 64)]
    assert all(frames.frame(i).dtype == np.uint8 and frames.frame(i).shape[2] == 3 for i in range(3))
    assert not np.array_equal(frames.frame(0), frames.frame(1))
    stamps = [frames.stamp_ns(i) for i in range(5)]
    assert stamps == sorted(set(stamps)) and stamps[0] > 0  # 0 would read as "no stamp"


def test_recorder_refuses_counts_that_are_not_positive_ints():
    for frames, every in [(0, 1), (10, 0), (10, 2.5), (True, 1)]:
        with pytest.raises(ConfigError, match="must be an int of at least 1"):
            soak.RssRecorder(frames, every)
    recorder = soak.RssRecorder(7, 3)
    for frame in range(8):
        recorder.record(frame)
    assert [s.frame for s in recorder.samples] == [0, 3, 6, 7]


def test_detectors_run_at_their_lowest_threshold_and_other_heads_are_left_alone():
    manifests, _ = discover((), templates=True)
    lowest = soak.lowest_thresholds(manifests)
    assert lowest == {name: {"score_threshold": 0.0} for name in ["detection", "retinanet", "ssd", "detr"]}


def test_cli_soak_writes_json_and_summary(tmp_path, capsys, no_weights):
    argv = ["soak", "--frames", "12", "--sample-every", "5", "--size", "32", "--depth", "1",
            "--heads", "depth", "flow", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "frame       5: RSS" in out and "engine soak: 12 frames through depth, flow" in out
    assert "head errors: none" in out
    data = json.loads((tmp_path / "soak.json").read_text())
    assert [s["frame"] for s in data["samples"]] == [0, 5, 10, 12]
    assert data["settings"]["depth"] == 1 and data["settings"]["heads"] == ["depth", "flow"]


@pytest.mark.parametrize("argv, message", [
    (["--frames", "nan"], "--frames: must be an integer in [1, 100000], got 'nan'"),
    (["--frames", "0"], "--frames: must be an integer in [1, 100000], got 0"),
    (["--sample-every", "inf"], "--sample-every: must be an integer in [1, 100000], got 'inf'"),
    (["--size", "650"], "--size: must be an integer in [16, 4096] px, a multiple of 16, got 650"),
    (["--depth", "0"], "--depth: must be an integer in [1, 64] blocks, got 0"),
])
def test_cli_refuses_bad_numbers(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["soak", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_depth_is_for_the_engine_soak_only(tmp_path, capsys):
    assert main(["soak", "--node", "--depth", "2", "--out", str(tmp_path)]) == 2
    assert "the node has no such parameter" in capsys.readouterr().err


def test_the_command_needs_no_ros_until_the_node_soak_runs():
    code = "import sys; from dinov3_ros.cli import build_parser; build_parser(); print('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_node_soak_through_the_real_node(no_weights):
    from ros_helpers import rclpy  # noqa: F401  (skips this test, saying why, without rclpy and vision_msgs)

    from dinov3_ros.soak_node import run_node_soak

    params = {"backbone": "vits16", "device": "cpu", "image_size": 32, "heads": ["detection", "flow"]}
    result = run_node_soak(params, frames=20, sample_every=5)
    assert result.mode == "node" and result.heads == ("detection", "flow")
    assert [s.frame for s in result.samples] == [0, 5, 10, 15, 20] and all(s.rss_bytes > 0 for s in result.samples)
    assert result.frames_without_output == 0 and result.messages["overlay"] == 20
    assert result.messages["detection/overlay"] >= 19 and result.messages["flow/overlay"] >= 19  # last in flight
    assert set(result.random_weights) == {"backbone", "detection", "flow"}
    assert "frames without output: 0" in result.lines()
    assert result.head_errors == {"detection": 0, "flow": 0}  # read from the node's own /diagnostics


def test_node_soak_counts_a_failing_head_from_the_node_s_diagnostics(no_weights, tmp_path, monkeypatch):
    from ros_helpers import rclpy  # noqa: F401  (skips this test, saying why, without rclpy and vision_msgs)

    from dinov3_ros.soak_node import run_node_soak
    from invalid_heads import BAD, write_bad_head

    write_bad_head(tmp_path, in_channels=384)  # its label map is wrong on every non-square frame
    monkeypatch.setattr("dinov3_toolkit.tools.soak.FRAMES_PER_SIZE", 2)  # frames 2 and 3 are not square
    params = {"backbone": "vits16", "device": "cpu", "image_size": 32, "heads": ["depth", BAD],
              "head_dirs": [str(tmp_path)]}
    result = run_node_soak(params, frames=6, sample_every=3)
    assert result.head_errors == {"depth": 0, BAD: 4}  # frames 2, 3, 4, 5: the two non-square sizes
    assert f"head errors: {BAD} {result.head_errors[BAD]}" in result.lines()
