"""The latest-frame worker: no backlog, drops counted, bounded latency, prompt stop/pause, errors survived.

Timing bounds are deliberately loose (a loaded 2-core CI machine): they separate "bounded" from
"grows with the run" (a queue), not 21 ms from 25 ms.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from waits import ceiling

from dinov3_ros.worker import LatestFrameWorker, Rates, Rejected

PROCESS_S = 0.02
PERIOD_S = 0.001


def _conserved(stats) -> bool:
    return stats.received == stats.processed + stats.rejected + stats.dropped + stats.waiting + stats.busy


def _wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + ceiling(timeout)
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


class Gate:
    """A process() that blocks until released, so a test decides what is mid-way."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[int] = []

    def __call__(self, item: int) -> None:
        self.seen.append(item)
        self.entered.set()
        if not self.release.wait(ceiling(5.0)):
            raise TimeoutError("test gate never released")


@pytest.fixture
def gated():
    gate = Gate()
    worker = LatestFrameWorker(gate)
    worker.start()
    yield worker, gate
    gate.release.set()
    assert worker.stop(timeout=5.0)


def test_fast_producer_leaves_at_most_one_waiting_and_latency_bounded():
    processed: list[int] = []
    worker = LatestFrameWorker(lambda item: (processed.append(item), time.sleep(PROCESS_S)), latency_window=10_000)
    worker.start()
    snapshots = []
    deadline = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < deadline:
        worker.submit(i)
        snapshots.append(worker.stats())
        i += 1
        time.sleep(PERIOD_S)
    assert worker.stop(timeout=ceiling(2.0))
    final = worker.stats()

    assert all(s.waiting <= 1 and s.busy <= 1 for s in snapshots)
    assert all(_conserved(s) for s in snapshots)
    assert final.received == i
    assert _conserved(final) and final.waiting == 0 and final.busy == 0
    assert final.dropped > 0 and final.errors == 0
    assert final.processed == len(processed) >= 10
    assert processed == sorted(set(processed)), "items must be processed in increasing order, each once"

    latencies = final.latencies
    assert len(latencies) == final.processed
    assert max(latencies) < 10 * PROCESS_S, latencies
    # A queue would make the latency grow with the run; the newest-frame slot keeps it flat.
    third = len(latencies) // 3
    first, last = statistics.mean(latencies[:third]), statistics.mean(latencies[-third:])
    assert last < first + 2 * PROCESS_S, (first, last)


def test_the_newest_item_is_processed_next_and_older_ones_dropped(gated):
    worker, gate = gated
    worker.submit(0)
    assert gate.entered.wait(ceiling(2.0))
    for i in range(1, 6):
        worker.submit(i)
        stats = worker.stats()
        assert stats.waiting == 1 and stats.busy == 1 and stats.dropped == i - 1
    gate.entered.clear()
    gate.release.set()
    assert gate.entered.wait(ceiling(2.0))
    assert _wait_until(lambda: worker.stats().processed == 2)
    assert gate.seen == [0, 5]
    assert worker.stats().dropped == 4


def test_latency_counts_from_received_at():
    worker = LatestFrameWorker(lambda item: None)
    worker.start()
    worker.submit("frame", received_at=time.monotonic() - 0.5)
    assert _wait_until(lambda: worker.stats().processed == 1)
    assert worker.stop(timeout=ceiling(2.0))
    (latency,) = worker.stats().latencies
    assert 0.5 <= latency < 5.0


def test_stop_returns_promptly_while_process_runs_then_finishes(gated):
    worker, gate = gated
    worker.submit(0)
    assert gate.entered.wait(ceiling(2.0))
    worker.submit(1)  # waiting behind the running item: stop() drops it

    t0 = time.monotonic()
    assert worker.stop(timeout=0.05) is False, "the thread is still inside process()"
    assert time.monotonic() - t0 < ceiling(1.0)  # promptly: not the gate's whole wait
    with pytest.raises(RuntimeError, match="still inside process"):
        worker.start()

    gate.release.set()
    assert worker.stop(timeout=ceiling(2.0)) is True
    assert worker.stop(timeout=0.0) is True, "stop() is idempotent"
    stats = worker.stats()
    assert gate.seen == [0]
    assert (stats.processed, stats.dropped, stats.waiting, stats.busy) == (1, 1, 0, 0)

    worker.submit(2)  # a late callback after stop: counted, not processed
    assert worker.stats().dropped == 2 and _conserved(worker.stats())


def test_stop_before_start_and_restart_after_stop():
    seen: list[int] = []
    worker = LatestFrameWorker(seen.append)
    assert worker.stop() is True
    worker.start()
    worker.submit(1)
    assert _wait_until(lambda: seen == [1])
    assert worker.stop(timeout=ceiling(2.0))
    worker.start()
    worker.start()  # already running: no second thread
    worker.submit(2)
    assert _wait_until(lambda: seen == [1, 2])
    assert worker.stop(timeout=ceiling(2.0))
    assert worker.stats().processed == 2


def test_errors_are_counted_reported_and_the_thread_keeps_going():
    reported: list[Exception] = []
    seen: list[int] = []

    def process(item: int) -> None:
        seen.append(item)
        if item % 2:
            raise ValueError(f"bad frame {item}")

    worker = LatestFrameWorker(process, on_error=reported.append)
    worker.start()
    for i in range(6):
        worker.submit(i)
        assert _wait_until(lambda: worker.stats().processed == i + 1)
    assert worker.stop(timeout=ceiling(2.0))
    stats = worker.stats()
    assert seen == list(range(6))
    assert (stats.processed, stats.errors, stats.dropped) == (6, 3, 0)
    assert [str(e) for e in reported] == ["bad frame 1", "bad frame 3", "bad frame 5"]
    assert len(stats.latencies) == 3, "latency is measured on the successful items only"


def test_rejected_items_are_counted_apart_from_processed_ones_and_out_of_rates_and_latency():
    """An undecodable frame is no processed frame: it must not raise the output rate or hide failures."""
    reported: list[Exception] = []

    def process(item: int) -> None:
        if item < 3:
            raise Rejected(f"cannot decode {item}")

    worker = LatestFrameWorker(process, on_error=reported.append)
    worker.start()
    for i in range(4):
        worker.submit(i)
        assert _wait_until(lambda: worker.stats().rejected + worker.stats().processed == i + 1)
    assert worker.stop(timeout=ceiling(2.0))
    stats = worker.stats()
    assert (stats.received, stats.processed, stats.rejected, stats.errors, stats.dropped) == (4, 1, 3, 0, 0)
    assert _conserved(stats)
    assert reported == [], "the raiser reports a rejection itself"
    assert len(stats.latencies) == 1
    rates = worker.rates()  # 4 in, 1 out: taken in one call, over the same window
    assert rates.input_fps == pytest.approx(4 * rates.output_fps)
    assert stats.last_received_at is not None and stats.last_received_at <= time.monotonic()


def test_a_failing_error_handler_does_not_end_the_thread(caplog):
    def on_error(exc: Exception) -> None:
        raise RuntimeError("handler broke")

    def process(item: int) -> None:
        if item == 0:
            raise ValueError("bad frame")

    worker = LatestFrameWorker(process, on_error=on_error)
    worker.start()
    worker.submit(0)
    assert _wait_until(lambda: worker.stats().processed == 1)
    worker.submit(1)
    assert _wait_until(lambda: worker.stats().processed == 2)
    assert worker.stop(timeout=ceiling(2.0))
    assert worker.stats().errors == 1
    assert "on_error failed" in caplog.text


def test_default_error_handler_logs(caplog):
    worker = LatestFrameWorker(lambda item: 1 / 0)
    worker.start()
    worker.submit(0)
    assert _wait_until(lambda: worker.stats().errors == 1)
    assert worker.stop(timeout=ceiling(2.0))
    assert "processing a frame failed" in caplog.text and "ZeroDivisionError" in caplog.text


def test_pause_returns_promptly_drops_the_waiting_item_and_resume_continues(gated):
    worker, gate = gated
    worker.submit(0)
    assert gate.entered.wait(ceiling(2.0))
    worker.submit(1)  # waiting while 0 runs

    t0 = time.monotonic()
    worker.pause()  # lifecycle deactivate: must not wait for process(0)
    assert time.monotonic() - t0 < 0.5
    stats = worker.stats()
    assert (stats.waiting, stats.busy, stats.dropped) == (0, 1, 1), "the waiting item would be stale on resume"

    worker.submit(2)  # a callback racing the deactivation
    gate.entered.clear()
    gate.release.set()
    assert _wait_until(lambda: worker.stats().busy == 0)
    time.sleep(0.05)
    assert gate.seen == [0], "nothing is processed while paused"
    stats = worker.stats()
    assert (stats.received, stats.processed, stats.dropped, stats.waiting) == (3, 1, 2, 0)

    worker.resume()
    worker.submit(3)
    assert gate.entered.wait(ceiling(2.0))
    assert _wait_until(lambda: worker.stats().processed == 2)
    assert gate.seen == [0, 3]


def test_rates_measure_input_and_output():
    t0 = time.monotonic()
    worker = LatestFrameWorker(lambda item: time.sleep(0.05), rate_window_s=10.0)  # 10x the input period
    assert worker.rates() == Rates(0.0, 0.0)
    worker.start()
    t1 = time.monotonic()
    for i in range(40):
        worker.submit(i)
        time.sleep(0.005)
    t2 = time.monotonic()
    assert worker.stop(timeout=ceiling(2.0))
    rates = worker.rates()
    elapsed = time.monotonic() - t0
    stats = worker.stats()
    # 40 frames over the time since the worker was created (the window is not full yet).
    assert 40 / elapsed <= rates.input_fps <= 40 / (t2 - t1)
    assert rates.output_fps > 0
    assert rates.input_fps > rates.output_fps, "half or more of the frames were dropped"
    assert rates.input_fps / rates.output_fps == pytest.approx(stats.received / stats.processed, rel=1e-6)


def test_rates_forget_frames_older_than_the_window():
    worker = LatestFrameWorker(lambda item: None, rate_window_s=0.1)
    worker.start()
    worker.submit(0)
    assert _wait_until(lambda: worker.stats().processed == 1)
    assert worker.rates().input_fps > 0
    time.sleep(0.15)
    assert worker.rates() == Rates(0.0, 0.0)
    assert worker.stop(timeout=ceiling(2.0))


@pytest.mark.parametrize("kwargs", [{"latency_window": 0}, {"rate_window_s": 0.0}, {"rate_window_s": float("nan")}])
def test_invalid_windows_are_rejected(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        LatestFrameWorker(lambda item: None, **kwargs)
