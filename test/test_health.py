"""The node's /diagnostics status without ROS: its values, and which problem wins the message."""

from __future__ import annotations

from types import SimpleNamespace

from dinov3_ros.messages import Level
from dinov3_ros.health import UNDECODABLE_WARN_S, PipelineHealth
from dinov3_ros.worker import Rates, WorkerStats


def engine(random_weights=(), failed=()):
    return SimpleNamespace(device="cpu", heads={"detection": None, "depth": None}, random_weights=list(random_weights),
                           failed=dict.fromkeys(failed))


def stats(rejected=0):
    return WorkerStats(received=10 + rejected, processed=7, rejected=rejected, dropped=3, errors=1, waiting=0, busy=0,
                       latencies=(0.010, 0.030, 0.020), last_received_at=1.0)


TIMINGS = [SimpleNamespace(preprocess=0.001, backbone=0.1, heads={"detection": 0.02, "depth": 0.01},
                           postprocess={"detection": 0.001, "depth": 0.002})] * 3


def status(health, *, now=100.0, frames_warning=None, rejected=0, **engine_kwargs):
    return health.status("/ns/dinov3_node", engine(**engine_kwargs), "fp32", stats(rejected), Rates(30.0, 10.0),
                         TIMINGS, frames_warning, now)


def test_values_report_counts_rates_latency_and_stage_medians():
    s = status(PipelineHealth())
    assert s.name == "/ns/dinov3_node: pipeline" and (s.level, s.message) == (Level.OK, "running")
    v = s.values
    assert (v["frames received"], v["frames processed"], v["frames dropped (newer frame arrived first)"],
            v["frames failed"], v["frames undecodable"]) == ("10", "7", "3", "1", "0")
    assert (v["input rate (Hz)"], v["output rate (Hz)"]) == ("30.00", "10.00")
    assert v["latency median (ms)"] == "20.0" and v["backbone median (ms)"] == "100.0"
    assert v["detection median (ms)"] == "21.0" and v["depth median (ms)"] == "12.0"


def test_the_most_urgent_problem_is_the_message():
    health = PipelineHealth()
    assert status(health, failed=["depth"]).message == "heads skipped: depth"
    assert "random weights" in status(health, failed=["depth"], random_weights=["backbone"]).message
    undecodable = status(health, rejected=2, random_weights=["backbone"])
    assert undecodable.level == Level.WARN and undecodable.message.startswith("frames that cannot be decoded: 2")
    silent = status(health, rejected=2, frames_warning="no frame on /image for 5 s: ...")
    assert (silent.level, silent.message) == (Level.WARN, "no frame on /image for 5 s: ...")


def test_undecodable_frames_warn_for_a_while_after_the_last_one():
    health = PipelineHealth()
    assert status(health, now=100.0, rejected=1).level == Level.WARN
    assert status(health, now=100.0 + UNDECODABLE_WARN_S - 0.1, rejected=1).level == Level.WARN
    assert status(health, now=100.0 + UNDECODABLE_WARN_S + 0.1, rejected=1).level == Level.OK
    assert status(health, now=200.0, rejected=2).level == Level.WARN, "a new one warns again"

