"""The benchmark: stages, interleaving, statistics, ratios, JSON and plot; `dinov3 bench`; the transformers twin.

Only the bookkeeping is checked here: timings are never asserted (docs/performance.md).
"""

from __future__ import annotations

import json
import statistics

import cv2
import numpy as np
import pytest
import torch

from conftest import randomize_
from tolerances import rounding_atol, vit_rounding
from dinov3_ros.cli import main
from dinov3_toolkit.tools import benchmark
from dinov3_toolkit.backbone import get_backbone_spec
from dinov3_toolkit.tools.transformers_vit import to_transformers
from dinov3_toolkit.engine import FrameResult

pytest.importorskip("transformers", reason="transformers is the reference for stage (e)")
pytest.importorskip("matplotlib", reason="matplotlib draws the plot")


@pytest.fixture(scope="module")
def bench(tiny_engine):
    """One small run of every stage, with a ROS message builder that records what it gets."""
    converted = []

    def to_messages(result, frame):
        converted.append((result, frame))
        return {"n": len(result.results)}

    frame = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    data = benchmark.run_benchmark(
        tiny_engine, frame, rounds=3, warmup=1, to_messages=to_messages, settings={"backbone": "vits16"}
    )
    return data, converted, frame


def test_every_stage_is_timed_every_round(bench, tiny_engine):
    data, converted, frame = bench
    assert list(data["stages"]) == [
        "backbone", "backbone+1", "backbone+2", "model", "separate", "engine", "engine+ros", "transformers"
    ]
    for name, stage in data["stages"].items():
        samples = stage["samples_ms"]
        assert len(samples) == 3 and all(t > 0 for t in samples), name
        assert stage["median_ms"] == pytest.approx(statistics.median(samples))
        assert statistics.median(samples) <= stage["p90_ms"] <= max(samples)
    assert data["stages"]["model"]["description"].startswith("backbone + " + ", ".join(tiny_engine.heads))
    # (c) converted real engine results of the benchmark frame, once per call (1 warm-up + 3 rounds).
    assert len(converted) == 4
    assert all(isinstance(r, FrameResult) and r.image_size == (40, 56) and f is frame for r, f in converted)
    assert set(converted[0][0].results) == set(tiny_engine.heads)


def test_ratios_are_ratios_of_the_medians(bench):
    data, _, _ = bench
    stages = data["stages"]
    assert set(data["ratios"]) == {r.name for r in benchmark.RATIOS}
    for ratio in benchmark.RATIOS:
        entry = data["ratios"][ratio.name]
        expected = stages[ratio.numerator]["median_ms"] / stages[ratio.denominator]["median_ms"]
        assert entry["value"] == pytest.approx(expected)
        assert entry["ok"] is (None if ratio.limit is None else expected <= ratio.limit)


def test_report_says_what_ran_where(bench, tiny_engine):
    data, _, _ = bench
    assert data["settings"] == {"backbone": "vits16"}
    assert data["machine"]["device"] == "cpu" and data["machine"]["torch"] == torch.__version__
    assert data["heads"] == list(tiny_engine.heads)
    assert data["random_weights"] == tiny_engine.random_weights
    breakdown = data["engine_breakdown_ms"]
    assert set(breakdown["heads"]) == set(breakdown["postprocess"]) == set(tiny_engine.heads)
    assert breakdown["backbone"] > 0


def test_measure_interleaves_rounds_after_untimed_warmup():
    calls, syncs = [], []
    stages = [benchmark.Stage(name, lambda name=name: calls.append(name), name) for name in "abc"]
    benchmark.measure(stages, rounds=2, warmup=1, synchronize=lambda: syncs.append(len(calls)))
    assert calls == list("abc") * 3
    assert [len(s.samples) for s in stages] == [2, 2, 2]
    assert syncs == [3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9]  # before and after every timed call


@pytest.mark.parametrize(("rounds", "warmup"), [(0, 1), (2, -1), (True, 0), (2.0, 0)])
def test_measure_rejects_bad_counts(rounds, warmup):
    with pytest.raises(ValueError, match="rounds|warmup"):
        benchmark.measure([], rounds, warmup, synchronize=lambda: None)


def test_a_ratio_over_its_target_is_flagged(tiny_engine):
    stages = [benchmark.Stage(name, lambda: None, name) for name in ("model", "engine")]
    stages[0].samples[:] = [1.0, 1.0, 1.0]
    stages[1].samples[:] = [1.2, 1.3, 1.1]
    data = benchmark.report(stages, {}, tiny_engine)
    meaning = benchmark.RATIOS[0].meaning
    assert data["ratios"] == {"engine / model": {"value": pytest.approx(1.2), "limit": 1.10, "ok": False,
                                                 "meaning": meaning}}


def test_json_plot_and_table_are_written(bench, tmp_path):
    data, _, _ = bench
    data = {**data, "settings": {"backbone": "vits16", "size": 32, "frame": [40, 56], "precision": "fp32"}}
    json_path, plot_path = benchmark.write(data, tmp_path / "new" / "folder")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(data))
    picture = cv2.imread(str(plot_path))
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 600
    assert picture.std() > 10  # something was drawn
    table = benchmark.markdown_table(data)
    for name in [*data["stages"], *data["ratios"]]:
        assert f"| {name} |" in table


@torch.inference_mode()
@pytest.mark.parametrize("name", ["vits16", "vits16plus"])
def test_transformers_twin_computes_our_features(name):
    ours = randomize_(get_backbone_spec(name).build(depth=2)).eval()
    twin = to_transformers(ours)
    x = torch.randn(1, 3, 48, 64)
    theirs = twin(pixel_values=x).last_hidden_state[:, 5:].reshape(1, 3, 4, -1).permute(0, 3, 1, 2)
    reduction, depth = vit_rounding(ours, 1, tokens=3 * 4 + 5)
    torch.testing.assert_close(ours.forward_intermediates(x, [-1])[0], theirs, rtol=0,
                               atol=rounding_atol(theirs, reduction=reduction, depth=depth))


def test_transformers_twin_is_for_vits_only():
    with pytest.raises(TypeError, match="ViT"):
        to_transformers(get_backbone_spec("convnext_tiny").build())


def test_cli_bench_writes_json_and_plot(tmp_path, capsys, no_weights):
    out = tmp_path / "bench"
    argv = ["bench", "--backbone", "vits16", "--depth", "1", "--size", "32", "--device", "cpu",
            "--frame", "48x40", "--rounds", "2", "--warmup", "0", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / benchmark.JSON_NAME).read_text())
    assert data["settings"]["frame"] == [40, 48] and data["settings"]["depth"] == 1
    assert {"engine", "engine+ros", "model", "transformers"} <= set(data["stages"])
    assert (out / benchmark.PLOT_NAME).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| engine / model |" in printed and "random weights" in printed


@pytest.mark.parametrize("frame", ["48", "48x", "0x40", "axb"])
def test_cli_bench_rejects_a_bad_frame_size(frame, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--frame", frame])
    assert exit_info.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
