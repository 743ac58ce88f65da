"""Ctrl-C for long offline runs: the first one finishes the frame in hand, the second stops at once.

Neither ever stops half-way through writing a frame, so whatever was written
holds only complete frames (a bag stays a valid bag, a JSON Lines file ends
with a whole line). SIGTERM (``kill``, ``docker stop``) counts as a first Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class StopOnInterrupt:
    """Use as a context manager around the loop and the outputs; check ``requested`` between frames.

    Outside the main thread (where Python cannot install signal handlers) it
    changes nothing and Ctrl-C keeps its default behaviour.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message: str = "stopping after this frame; Ctrl-C again to stop now") -> None:
        self.message = message
        self.requested = False
        self._writing = False
        self._interrupt_after_write = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that no signal interrupts; a forced stop asked for meanwhile happens right after it."""
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self._interrupt_after_write:
            self._interrupt_after_write = False
            raise KeyboardInterrupt

    @contextmanager
    def closing(self, thing: Any) -> Iterator[Any]:
        """``thing`` itself, closed on exit inside ``deferred``: finishing a file is never cut short."""
        try:
            yield thing
        finally:
            with self.deferred():
                thing.close()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.requested = True
            print(f"\n{signal.Signals(signum).name}: {self.message}", file=sys.stderr, flush=True)
        elif self._writing:
            self._interrupt_after_write = True
        else:
            raise KeyboardInterrupt
