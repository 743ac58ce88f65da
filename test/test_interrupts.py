"""Ctrl-C in offline runs: the first asks to stop after the frame, the second stops, but never mid-write."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dinov3_toolkit.offline.interrupts import StopOnInterrupt


def send(sig: int, stop: StopOnInterrupt | None = None) -> None:
    """Send ``sig`` to this process and give Python the chance to run its handler.

    Python runs signal handlers in the main thread between bytecodes; the short
    sleeps make sure that happens here, not at some later line. Before a SIGTERM
    it checks our handler is installed, so a failing test cannot kill pytest.
    """
    if stop is not None:
        assert signal.getsignal(sig) == stop._handle, "handler not installed; not sending"
    os.kill(os.getpid(), sig)
    for _ in range(20):
        time.sleep(0.001)


def test_the_first_sigint_only_asks_to_stop(capsys):
    with StopOnInterrupt() as stop:
        assert not stop.requested
        send(signal.SIGINT, stop)
        assert stop.requested
        survived = True
    assert survived
    assert "SIGINT: stopping after this frame" in capsys.readouterr().err


def test_the_second_sigint_raises_keyboard_interrupt():
    with pytest.raises(KeyboardInterrupt):
        with StopOnInterrupt() as stop:
            send(signal.SIGINT, stop)
            assert stop.requested
            send(signal.SIGINT, stop)
            pytest.fail("the second Ctrl-C must stop at once")


def test_a_second_sigint_during_a_write_waits_for_the_write_to_finish():
    steps = []
    with StopOnInterrupt() as stop:
        send(signal.SIGINT, stop)
        with pytest.raises(KeyboardInterrupt):
            with stop.deferred():
                steps.append("write started")
                send(signal.SIGINT, stop)
                steps.append("write finished")  # reached: the block is not interrupted
            steps.append("after the block")  # not reached: the stop happens right after the block
    assert steps == ["write started", "write finished"]


def test_a_deferred_block_without_a_second_signal_does_not_raise():
    with StopOnInterrupt() as stop:
        send(signal.SIGINT, stop)
        with stop.deferred():  # only the first Ctrl-C: the run stops later, between frames
            pass
        with stop.deferred():
            pass
    assert stop.requested


def test_sigterm_counts_as_a_first_request(capsys):
    with StopOnInterrupt() as stop:
        send(signal.SIGTERM, stop)
        assert stop.requested
    assert "SIGTERM:" in capsys.readouterr().err
    # ... and a SIGINT after it is the second request
    with pytest.raises(KeyboardInterrupt):
        with StopOnInterrupt() as stop:
            send(signal.SIGTERM, stop)
            send(signal.SIGINT, stop)


def test_handlers_are_restored_on_exit_also_after_an_interrupt():
    before = {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS}
    with StopOnInterrupt() as stop:
        for sig in StopOnInterrupt.SIGNALS:
            assert signal.getsignal(sig) == stop._handle
    assert {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS} == before

    with pytest.raises(KeyboardInterrupt):
        with StopOnInterrupt() as stop:
            send(signal.SIGINT, stop)
            send(signal.SIGINT, stop)
    assert {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS} == before


def test_outside_the_main_thread_it_installs_nothing_and_does_not_fail():
    before = {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS}
    seen = {}

    def work():
        try:
            with StopOnInterrupt() as stop:
                seen["inside"] = {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS}
                with stop.deferred():
                    seen["wrote"] = True
                seen["requested"] = stop.requested
        except BaseException as e:  # reported to the main thread, which asserts
            seen["error"] = e

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert "error" not in seen, seen.get("error")
    assert seen["inside"] == before and seen["wrote"] and seen["requested"] is False
    assert {sig: signal.getsignal(sig) for sig in StopOnInterrupt.SIGNALS} == before


def test_closing_finishes_the_close_even_when_ctrl_c_comes_during_it():
    class Output:
        closed = False

        def close(self):
            send(signal.SIGINT, stop)  # a second Ctrl-C while the file is being finished
            self.closed = True

    output = Output()
    with pytest.raises(KeyboardInterrupt):
        with StopOnInterrupt() as stop:
            send(signal.SIGINT, stop)
            with stop.closing(output) as same:
                assert same is output
    assert output.closed
