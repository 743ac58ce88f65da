"""/diagnostics in a bag: the node's statuses, counted from the frames an offline run processes."""

from __future__ import annotations

from types import SimpleNamespace

from dinov3_ros.bag_diagnostics import BagDiagnostics
from dinov3_ros.messages import Level
from dinov3_toolkit.engine import FrameResult, StageTimings
from dinov3_toolkit.offline.sources import SourceFrame

T0 = 1_700_000_000 * 10**9


def engine(random_weights=()):
    return SimpleNamespace(device="cpu", heads={"detection": None, "depth": None}, failed={},
                           random_weights=list(random_weights))


def item(index: int) -> SourceFrame:
    return SourceFrame(index, f"f{index}", f"x#{index}", T0 + index * 100_000_000, None)  # 10 frames/s of stamp time


def frame(total_s: float = 0.05, **errors: str) -> FrameResult:
    timings = StageTimings(preprocess=0.001, backbone=total_s - 0.008, heads={"detection": 0.002, "depth": 0.003},
                           postprocess={"detection": 0.001, "depth": 0.001})  # total: total_s
    return FrameResult(results={}, errors=errors, timings=timings, image_size=(4, 4))


def by_name(statuses, node="/dinov3/dinov3_node") -> dict:
    return {s.name.removeprefix(f"{node}: "): s for s in statuses}


def test_counts_rates_and_latency_come_from_the_frames_processed():
    diagnostics = BagDiagnostics(engine(), "bf16")
    for index, total in ((0, 0.02), (1, 0.04), (2, 0.03)):
        statuses = by_name(diagnostics.statuses(item(index), frame(total)))
    pipeline = statuses["pipeline"]
    assert (pipeline.level, pipeline.message) == (Level.OK, "running")
    v = pipeline.values
    assert (v["frames received"], v["frames processed"], v["frames undecodable"], v["frames dropped (newer "
            "frame arrived first)"]) == ("3", "3", "0", "0")
    assert (v["input rate (Hz)"], v["output rate (Hz)"], v["precision"]) == ("10.00", "10.00", "bf16")
    assert v["latency median (ms)"] == "30.0"
    assert sorted(statuses) == ["head depth", "head detection", "pipeline"]
    assert statuses["head depth"].values == {"frames run": "3", "frames failed": "0"}


def test_frames_read_but_never_processed_are_undecodable_and_a_failing_head_warns():
    diagnostics = BagDiagnostics(engine(), "fp32", namespace="/robot")
    diagnostics.statuses(item(0), frame())
    failed = frame(depth="head 'depth': failed on this frame")
    statuses = by_name(diagnostics.statuses(item(3), failed), "/robot/dinov3_node")
    pipeline = statuses["pipeline"]
    assert (pipeline.values["frames received"], pipeline.values["frames processed"],
            pipeline.values["frames undecodable"]) == ("4", "2", "2")
    assert pipeline.level == Level.WARN and pipeline.message.startswith("frames that cannot be decoded: 2 so far")
    assert pipeline.values["depth failed frames"] == "1"
    assert statuses["head depth"].level == Level.WARN and "failed on 1 of 2 frames" in statuses["head depth"].message
    assert statuses["head detection"].level == Level.OK


def test_random_weights_warn_when_nothing_else_does():
    statuses = BagDiagnostics(engine(["backbone"]), "fp32").statuses(item(0), frame())
    assert (statuses[0].level, statuses[0].message) == (Level.WARN, "random weights: outputs are meaningless")
    assert statuses[0].values["input rate (Hz)"] == "0.00"  # one frame: no rate yet
