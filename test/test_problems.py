"""Problems on the node's frames without ROS: each kind logged once, each head's failures counted."""

from __future__ import annotations

from dinov3_ros.problems import FrameCounts, HeadFailures, Problems
from dinov3_toolkit.heads import HeadError
from dinov3_toolkit.result_kinds import InvalidResult


def head_error(head: str, cause: BaseException) -> HeadError:
    """What the engine puts in ``FrameResult.errors``: the head's error, caused by what the head did."""
    error = HeadError(head, f"/heads/head_{head}/model.py", f"failed on this frame: {cause}")
    error.__cause__ = cause
    return error


def test_head_failures_are_counted_per_head_with_the_last_error():
    problems = Problems(lambda message: None)
    problems.count_frame({})
    problems.count_frame({"bad": head_error("bad", InvalidResult("its label map is 64x64"))})
    last, flaky = head_error("bad", InvalidResult("its label map is 32x32")), head_error("flaky", RuntimeError("OOM"))
    problems.count_frame({"bad": last, "flaky": flaky})
    expected = {"bad": HeadFailures(2, str(last)), "flaky": HeadFailures(1, str(flaky))}
    assert problems.snapshot() == FrameCounts(3, expected)


def test_each_kind_of_problem_is_logged_once():
    logged: list[str] = []
    problems = Problems(logged.append)
    for size in (64, 32, 16):  # another size is the same kind of problem: the head returns invalid results
        problems.count_frame({"bad": head_error("bad", InvalidResult(f"its label map is {size}x{size}"))})
    problems.count_frame({"bad": head_error("bad", RuntimeError("boom"))})  # another kind, for the same head
    problems.count_frame({"other": head_error("other", InvalidResult("its labels span 0..99"))})  # another head
    for _ in range(2):
        problems.log_once("decode:encoding", "skipping frames that cannot be decoded: unsupported encoding")
        problems.frame_failed(OSError("publisher gone"))
    assert logged == [
        f"{head_error('bad', InvalidResult('its label map is 64x64'))} (logged once; counted in /diagnostics)",
        f"{head_error('bad', RuntimeError('boom'))} (logged once; counted in /diagnostics)",
        f"{head_error('other', InvalidResult('its labels span 0..99'))} (logged once; counted in /diagnostics)",
        "skipping frames that cannot be decoded: unsupported encoding (logged once; counted in /diagnostics)",
        "frame failed: OSError: publisher gone (logged once; counted in /diagnostics)",
    ]
    assert problems.snapshot().failures["bad"].frames == 4


def test_a_snapshot_does_not_change_with_later_frames():
    problems = Problems(lambda message: None)
    problems.count_frame({"bad": head_error("bad", InvalidResult("x"))})
    before = problems.snapshot()
    problems.count_frame({"bad": head_error("bad", InvalidResult("y"))})
    assert before.frames == 1 and before.failures["bad"].frames == 1
