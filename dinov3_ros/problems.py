"""What went wrong on the node's frames: each kind of problem logged once, each head's failures counted.

A bad stream or a broken head repeats its problem on every frame: the log gets it once per kind
(so it is read, not scrolled past), and /diagnostics gets the counts (``health.py``). The worker
thread records, the diagnostics timer reads a ``snapshot()``; one lock keeps them apart, and no
log call is made under it. ROS-free: the node passes its logger's ``error``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple


class HeadFailures(NamedTuple):
    """How often one head failed, and why it failed the last time."""

    frames: int  # frames it failed on
    last_error: str


@dataclass(frozen=True)
class FrameCounts:
    """A consistent snapshot: ``frames`` the heads ran on, and the heads that failed on some of them."""

    frames: int
    failures: Mapping[str, HeadFailures]


class Problems:
    """Logs each kind of problem once (``log(message)``) and counts per head the frames it failed on."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._frames = 0
        self._failures: dict[str, HeadFailures] = {}

    def log_once(self, kind: str, message: str) -> None:
        """Log ``message`` unless a problem of this ``kind`` was logged before."""
        with self._lock:
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            self._log(message + " (logged once; counted in /diagnostics)")

    def count_frame(self, errors: Mapping[str, BaseException]) -> None:
        """One frame through the heads; ``errors``: the heads that failed on it (``FrameResult.errors``).

        A head's problem is logged once per kind of cause: an exception type, or the invalid result
        the engine found (``InvalidResult``) whatever was wrong with it this time.
        """
        for name, error in errors.items():
            self.log_once(f"head:{name}:{type(error.__cause__ or error).__name__}", str(error))
        with self._lock:
            self._frames += 1
            for name, error in errors.items():
                before = self._failures.get(name, HeadFailures(0, ""))
                self._failures[name] = HeadFailures(before.frames + 1, str(error))

    def frame_failed(self, error: BaseException) -> None:
        """A frame that failed as a whole (the worker's ``on_error``; the worker counts it)."""
        self.log_once(f"worker:{type(error).__name__}", f"frame failed: {type(error).__name__}: {error}")

    def snapshot(self) -> FrameCounts:
        with self._lock:
            return FrameCounts(self._frames, dict(self._failures))
