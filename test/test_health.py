"""The node's /diagnostics statuses without ROS: the values, which problem wins the message, the per-head statuses."""

from __future__ import annotations

from types import SimpleNamespace

from dinov3_ros.health import PROBLEM_WARN_S, PipelineHealth
from dinov3_ros.messages import Level
from dinov3_ros.problems import FrameCounts, HeadFailures
from dinov3_ros.worker import Rates, WorkerStats

NODE = "/ns/dinov3_node"
BAD = "head 'depth' (/heads/head_depth/model.py): failed on this frame: returned an invalid result: its depth map ..."


def engine(random_weights=(), failed=()):
    return SimpleNamespace(device="cpu", heads={"detection": None, "depth": None}, random_weights=list(random_weights),
                           failed={name: f"head {name!r}: weights file not found" for name in failed})


def stats(rejected=0):
    return WorkerStats(received=10 + rejected, processed=7, rejected=rejected, dropped=3, errors=1, waiting=0, busy=0,
                       latencies=(0.010, 0.030, 0.020), last_received_at=1.0)


TIMINGS = [SimpleNamespace(preprocess=0.001, backbone=0.1, heads={"detection": 0.02, "depth": 0.01},
                           postprocess={"detection": 0.001, "depth": 0.002})] * 3


def counts(frames=7, **failed: int) -> FrameCounts:
    return FrameCounts(frames, {head: HeadFailures(n, BAD.replace("depth", head)) for head, n in failed.items()})


def statuses(health, *, now=100.0, frames_warning=None, rejected=0, failures=None, **engine_kwargs):
    return health.statuses(NODE, engine(**engine_kwargs), "fp32", stats(rejected), Rates(30.0, 10.0), TIMINGS,
                           frames_warning, failures or counts(), now)


def status(health, **kwargs):
    """The pipeline's status."""
    return statuses(health, **kwargs)[0]


def by_name(found) -> dict:
    return {s.name.removeprefix(f"{NODE}: "): s for s in found}


def test_values_report_counts_rates_latency_stage_medians_and_failures_per_head():
    s = status(PipelineHealth(), failures=counts(depth=2))
    assert s.name == f"{NODE}: pipeline"
    v = s.values
    assert (v["frames received"], v["frames processed"], v["frames dropped (newer frame arrived first)"],
            v["frames failed"], v["frames undecodable"]) == ("10", "7", "3", "1", "0")
    assert (v["input rate (Hz)"], v["output rate (Hz)"]) == ("30.00", "10.00")
    assert v["latency median (ms)"] == "20.0" and v["backbone median (ms)"] == "100.0"
    assert v["detection median (ms)"] == "21.0" and v["depth median (ms)"] == "12.0"
    assert (v["detection failed frames"], v["depth failed frames"]) == ("0", "2")


def test_a_healthy_pipeline_is_ok_with_an_ok_status_per_head():
    found = by_name(statuses(PipelineHealth()))
    assert list(found) == ["pipeline", "head detection", "head depth"]
    assert all((s.level, s.message) == (Level.OK, "running") for s in found.values())
    assert found["head depth"].values == {"frames run": "7", "frames failed": "0"}
    assert {s.hardware_id for s in found.values()} == {"cpu"}


def test_the_most_urgent_problem_is_the_message():
    health = PipelineHealth()
    assert status(health, failed=["depth"]).message == "heads skipped: depth"
    assert "random weights" in status(health, failed=["depth"], random_weights=["backbone"]).message
    failing = status(health, random_weights=["backbone"], failures=counts(12, depth=12))
    assert (failing.level, failing.message) == (Level.WARN, f"head depth failed on 12 of 12 frames: {BAD}"), (
        "a failing head outranks random weights: the test suite runs on random weights")
    undecodable = status(health, rejected=2, random_weights=["backbone"], failures=counts(12, depth=12))
    assert undecodable.level == Level.WARN and undecodable.message.startswith("frames that cannot be decoded: 2")
    silent = status(health, rejected=2, frames_warning="no frame on /image for 5 s: ...", failures=counts(12, depth=12))
    assert (silent.level, silent.message) == (Level.WARN, "no frame on /image for 5 s: ...")


def test_a_failing_head_is_warn_in_its_own_status_with_its_count_and_last_error():
    found = by_name(statuses(PipelineHealth(), failures=counts(40, depth=12)))
    head = found["head depth"]
    assert (head.level, head.message) == (Level.WARN, f"failed on 12 of 40 frames: {BAD}")
    assert head.values == {"frames run": "40", "frames failed": "12", "last error": BAD}
    assert (found["head detection"].level, found["head detection"].message) == (Level.OK, "running")


def test_the_head_that_failed_most_is_named_and_the_others_counted():
    message = status(PipelineHealth(), failures=counts(40, detection=3, depth=12)).message
    assert message.startswith("head depth failed on 12 of 40 frames (1 more head(s) failing: see their statuses): ")


def test_a_skipped_head_is_warn_in_its_own_status():
    found = by_name(statuses(PipelineHealth(), failed=["segmentation"]))
    skipped = found["head segmentation"]
    assert (skipped.level, skipped.message) == (Level.WARN, "skipped: head 'segmentation': weights file not found")
    assert list(found) == ["pipeline", "head detection", "head depth", "head segmentation"]


def test_undecodable_frames_warn_for_a_while_after_the_last_one():
    health = PipelineHealth()
    assert status(health, now=100.0, rejected=1).level == Level.WARN
    assert status(health, now=100.0 + PROBLEM_WARN_S - 0.1, rejected=1).level == Level.WARN
    assert status(health, now=100.0 + PROBLEM_WARN_S + 0.1, rejected=1).level == Level.OK
    assert status(health, now=200.0, rejected=2).level == Level.WARN, "a new one warns again"


def test_a_head_warns_for_a_while_after_its_last_failure_and_keeps_its_count():
    health = PipelineHealth()

    def depth(now, failed, frames=20):
        found = by_name(statuses(health, now=now, failures=counts(frames, depth=failed)))
        return found["pipeline"].level, found["head depth"]

    assert depth(100.0, 1)[0] == depth(100.0 + PROBLEM_WARN_S - 0.1, 1, 30)[0] == Level.WARN
    pipeline, head = depth(100.0 + PROBLEM_WARN_S + 0.1, 1, 40)
    assert pipeline == head.level == Level.OK
    assert head.message == f"running; failed on 1 of 40 frames, none for {PROBLEM_WARN_S:g} s"
    assert head.values["frames failed"] == "1" and head.values["last error"] == BAD
    assert depth(200.0, 2)[1].level == Level.WARN, "a new failure warns again"
