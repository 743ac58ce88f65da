"""The offline loop behind ``dinov3 run``, ``bag`` and ``demo``: frames in, the engine, writers out.

One loop for every source and every output, so that a bag written from a video
and a bag written from a bag hold the same thing for the same frame. It shows a
progress bar with frames/s, stops cleanly on Ctrl-C (``interrupts``), keeps
going past unreadable frames and failing heads, and returns what happened.
"""

from __future__ import annotations

import logging
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..engine import Engine, FrameResult
from ..overlays import composite
from .interrupts import StopOnInterrupt
from .sources import SourceFrame

log = logging.getLogger(__name__)

SOURCE_STREAM = "source"  # a run reads one source: its frames are one stream for temporal heads (flow)


class FrameWriter(ABC):
    """Something that stores processed frames (``records.RunOutput``, ``dinov3_ros.bag.BagOutput``).

    A context manager: leaving the ``with`` block closes it, whatever happened.
    """

    wants_overlay: bool  # whether ``write`` uses the overlay (drawing one costs time)

    @abstractmethod
    def write(self, item: SourceFrame, frame: FrameResult, overlay: np.ndarray | None) -> None:
        """Store one whole frame; never called for frames that could not be read."""

    @abstractmethod
    def close(self) -> None:
        """Finish the output so that it is complete and readable."""

    @abstractmethod
    def describe(self) -> str:
        """What was written where, for the closing summary."""

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunSummary:
    """What a run did, for the closing summary and the exit status."""

    frames: int = 0  # processed and written
    skipped: list[str] = field(default_factory=list)  # frames that could not be read, and why
    head_errors: Counter = field(default_factory=Counter)  # head name -> frames it failed on
    shortfall: str | None = None  # the source gave fewer frames than it declared (a truncated video), and how many
    interrupted: bool = False
    seconds: float = 0.0  # wall time of the loop
    model_seconds: float = 0.0  # time inside the engine

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """The closing summary, a line per fact."""
        stopped = " (stopped by Ctrl-C; everything written so far is complete)" if self.interrupted else ""
        lines = [f"{self.frames} frame(s) in {self.seconds:.1f} s: {self.fps:.2f} frames/s{stopped}"]
        if self.frames:
            lines.append(f"model time {self.model_seconds / self.frames * 1e3:.1f} ms per frame")
        if self.skipped:
            lines.append(f"{len(self.skipped)} unreadable frame(s) skipped, first: {self.skipped[0]}")
        if self.shortfall:
            lines.append(self.shortfall)
        lines += [f"head {name} failed on {n} frame(s)" for name, n in self.head_errors.items()]
        return lines


def run_frames(
    engine: Engine,
    frames: Iterable[SourceFrame],
    writers: Sequence[FrameWriter],
    *,
    total: int | None = None,
    notice: str | None = None,
    progress: bool = True,
    stop: StopOnInterrupt | None = None,
) -> RunSummary:
    """Run ``engine`` on every frame and hand each result to every writer, until done or Ctrl-C.

    ``notice`` (e.g. the random-weights warning) is drawn on every overlay.
    Writing a frame is never interrupted, so outputs hold only whole frames.
    Pass a ``stop`` that is already entered to also protect the closing of the
    outputs (``stop.closing``); by default the loop handles Ctrl-C itself.
    """
    summary = RunSummary()
    overlay_wanted = any(w.wants_overlay for w in writers)
    start = time.perf_counter()
    bar = tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    with nullcontext(stop) if stop is not None else StopOnInterrupt() as stop:
        try:
            for item in frames:
                if item.rgb is None:
                    summary.skipped.append(f"{item.origin}: {item.error}")
                    log.warning("skipping %s: %s", item.origin, item.error)
                else:
                    frame = engine(item.rgb, stream=SOURCE_STREAM, stamp_ns=item.stamp_ns)
                    summary.model_seconds += frame.timings.total
                    for name, error in frame.errors.items():
                        if not summary.head_errors[name]:
                            log.error("%s (reported once; counted in the summary)", error)
                        summary.head_errors[name] += 1
                    overlay = composite(item.rgb, frame.results, notice=notice) if overlay_wanted else None
                    with stop.deferred():  # a forced stop waits until the frame is written (and counted)
                        for writer in writers:
                            writer.write(item, frame, overlay)
                        summary.frames += 1
                bar.update()
                if stop.requested:
                    summary.interrupted = True
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - start
    return summary
