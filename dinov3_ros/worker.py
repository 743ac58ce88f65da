"""Latest-frame worker: the subscription callback hands over frames, one thread processes the newest.

Why a single slot and not a queue: on a robot a stale result is worse than a missing one. A queue
in front of inference that is slower than the camera only grows, and every output describes the
world further in the past (perception nodes with a queue of 10 frames process old ones). Here a frame
that arrives while another one waits replaces it and is counted as dropped, so the latency of
every output is at most one inference plus the time the frame waited for it.

The callback never waits for inference and neither do `pause()`/`stop()`: the lock is never held
while `process()` runs. Nothing here imports ROS, so the policy is tested without rclpy. All times
come from `time.monotonic()`, which NTP or sim time cannot step backwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

_LOG = logging.getLogger(__name__)


class Rejected(Exception):
    """Raised by `process()` for an item it cannot work on at all (a frame that does not decode).

    Such an item is counted as rejected: not as processed, and kept out of the rates and latencies,
    so that they describe real outputs. `on_error` is not called: the raiser reports its own reason.
    """


@dataclass(frozen=True)
class WorkerStats:
    """A consistent snapshot: received == processed + rejected + dropped + waiting + busy.

    `processed` counts every item `process()` finished, `errors` those of them that raised;
    `rejected` the items it refused (`Rejected`). `latencies` (seconds, submit -> end of
    `process()`) are of the last successful items, oldest first. `last_received_at` is the
    `time.monotonic()` of the last submit (None before the first).
    """

    received: int
    processed: int
    rejected: int
    dropped: int
    errors: int
    waiting: int
    busy: int
    latencies: tuple[float, ...]
    last_received_at: float | None


class Rates(NamedTuple):
    """Frames per second over the worker's sliding window."""

    input_fps: float
    output_fps: float


def _log_error(exc: Exception) -> None:
    _LOG.error("processing a frame failed: %s", exc, exc_info=exc)


class LatestFrameWorker:
    """Run `process(item)` in one thread on the newest submitted item; never build a backlog.

    States: running (after `start()`), paused (`pause()`: for lifecycle deactivate) and stopped
    (`stop()`). Before `start()` submitted items are kept like when running. While paused or
    stopped, submitted items are counted as received and dropped at once, and `pause()`/`stop()`
    drop the item that was waiting: when processing resumes, it starts from a frame that arrives
    afterwards, never from one that grew stale meanwhile. An item already inside `process()`
    always finishes and is counted.

    An exception from `process()` is counted and handed to `on_error` (default: logged), and the
    thread carries on with the next frame; a `Rejected` one is only counted, as rejected.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        *,
        on_error: Callable[[Exception], None] | None = None,
        latency_window: int = 30,
        rate_window_s: float = 2.0,
        name: str = "dinov3_worker",
    ) -> None:
        if latency_window < 1:
            raise ValueError(f"latency_window: expected at least 1 item, got {latency_window}")
        if not rate_window_s > 0:
            raise ValueError(f"rate_window_s: expected a positive number of seconds, got {rate_window_s}")
        self._process = process
        self._on_error = on_error or _log_error
        self._rate_window_s = float(rate_window_s)
        self._name = name
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._paused = False
        self._slot: tuple[Any, float] | None = None  # (item, received_at): the one waiting item
        self._busy = False
        self._received = self._processed = self._rejected = self._dropped = self._errors = 0
        self._last_received_at: float | None = None
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._inputs: deque[float] = deque()  # monotonic times of submits within the rate window
        self._outputs: deque[float] = deque()  # ... and of successful ends of process()
        self._created = time.monotonic()

    # Producer side (the subscription callback) -------------------------------------------------

    def submit(self, item: Any, received_at: float | None = None) -> None:
        """Store `item` as the newest, dropping an unprocessed older one; never blocks on `process()`.

        `received_at` is a `time.monotonic()` value (e.g. taken on callback entry); default: now.
        """
        now = time.monotonic()
        with self._cond:
            self._received += 1
            self._last_received_at = now
            self._append_rate(self._inputs, now)
            if self._stopping or self._paused:
                self._dropped += 1
                return
            if self._slot is not None:
                self._dropped += 1
            self._slot = (item, now if received_at is None else received_at)
            self._cond.notify()

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (also after a completed `stop()`); no-op when already running."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                if not self._stopping:
                    return
                raise RuntimeError(
                    f"{self._name}: cannot start while the stopped thread is still inside process(); "
                    "call stop() without a timeout first"
                )
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop processing and join the thread for up to `timeout` s; True once it has ended.

        Returns after `timeout` even while `process()` still runs (call again to wait longer).
        """
        with self._cond:
            self._stopping = True
            self._drop_waiting()
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def pause(self) -> None:
        """Stop taking new items without waiting for the one being processed."""
        with self._cond:
            self._paused = True
            self._drop_waiting()

    def resume(self) -> None:
        """Accept and process items again after `pause()`."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # Diagnostics -------------------------------------------------------------------------------

    def stats(self) -> WorkerStats:
        with self._cond:
            return WorkerStats(
                received=self._received,
                processed=self._processed,
                rejected=self._rejected,
                dropped=self._dropped,
                errors=self._errors,
                waiting=int(self._slot is not None),
                busy=int(self._busy),
                latencies=tuple(self._latencies),
                last_received_at=self._last_received_at,
            )

    def rates(self) -> Rates:
        """Submitted and successfully processed frames per second over the last `rate_window_s`."""
        now = time.monotonic()
        with self._cond:
            for times in (self._inputs, self._outputs):
                self._prune(times, now)
            # Right after creation the window is not full yet: divide by the time actually covered.
            span = min(self._rate_window_s, now - self._created)
            if span <= 0:
                return Rates(0.0, 0.0)
            return Rates(len(self._inputs) / span, len(self._outputs) / span)

    # Worker thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self._paused or self._slot is None):
                    self._cond.wait()
                if self._stopping:
                    return
                item, received_at = self._slot
                self._slot = None
                self._busy = True
            error: Exception | None = None
            rejected = False
            try:
                self._process(item)  # the lock is free: submit/pause/stop never wait for this
            except Rejected:
                rejected = True
            except Exception as e:  # one bad frame must not end the node's processing
                error = e
            end = time.monotonic()
            with self._cond:
                self._busy = False
                if rejected:
                    self._rejected += 1
                    continue
                self._processed += 1
                if error is None:
                    self._latencies.append(end - received_at)
                    self._append_rate(self._outputs, end)
                else:
                    self._errors += 1
            if error is not None:
                self._report(error)

    def _report(self, error: Exception) -> None:
        try:
            self._on_error(error)
        except Exception:  # a failing error handler must not end the thread either
            _LOG.exception("%s: on_error failed while reporting %r", self._name, error)

    def _drop_waiting(self) -> None:
        # Caller holds the lock.
        if self._slot is not None:
            self._slot = None
            self._dropped += 1

    def _append_rate(self, times: deque[float], now: float) -> None:
        # Caller holds the lock.
        times.append(now)
        self._prune(times, now)

    def _prune(self, times: deque[float], now: float) -> None:
        while times and times[0] < now - self._rate_window_s:
            times.popleft()
