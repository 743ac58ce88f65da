"""Memory over a long run (``dinov3 soak``): resident memory sampled while many frames go through every head.

A leak shows as memory that keeps growing frame after frame; a benchmark of a few
rounds cannot see it. The soak runs N varied frames of one stream through an
``Engine`` (every head's result drawn as an overlay too, as ``dinov3 run`` and a
watched node do), reads the process's resident set size every K frames, and
reports its growth from frame N/10 (1,000 of 10,000) to the end: the first
frames are left out because the allocator and PyTorch's caches fill up to their
working size then. ``gc`` is left as it is, so what a long-running node would
keep is what the soak sees. The same recorder and result serve the node soak
(``dinov3_ros.soak_node``). Random weights are fine: the buffers and results
have the same shapes and counts whatever the weights' values, given that the
detectors' score thresholds are at their minimum (``lowest_thresholds``), so that
every frame carries the most boxes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..engine import Engine
from ..errors import ConfigError, MissingExtra
from ..heads.manifest import HeadManifest
from ..overlays import draw_overlays
from .benchmark import machine

STREAM = "soak"
FRAME_PERIOD_NS = 100_000_000  # 10 Hz stamps: consecutive frames pair for flow (below the stream gap)
FRAMES_PER_SIZE = 50  # a new frame size every 50 frames: flow starts anew, resized results change shape
RANDOM_NOTE = "random weights: memory use does not depend on the weights' values, only on shapes and counts"


@dataclass(frozen=True)
class RssSample:
    """The resident memory after ``frame`` frames, ``elapsed_s`` seconds into the run."""

    frame: int
    rss_bytes: int
    elapsed_s: float


def rss_bytes() -> int:
    """This process's resident set size now.

    The current RSS, not the peak (``ru_maxrss``): the peak only ever rises and is
    set once by loading and the warm-up, so growth below it stays invisible, and it
    cannot show memory coming back. Linux's ``/proc/self/status`` (VmRSS); psutil elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    try:
        import psutil
    except ImportError as e:
        raise MissingExtra("reading the resident memory needs Linux's /proc or psutil: pip install psutil") from e
    return psutil.Process().memory_info().rss


class RssRecorder:
    """Samples RSS at frame 0, every ``every`` frames and at the last of ``frames``."""

    def __init__(self, frames: int, every: int, on_sample: Callable[[RssSample], None] | None = None) -> None:
        for name, value in (("frames", frames), ("sample_every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int of at least 1, got {value!r}")
        self.frames, self.every, self.on_sample = frames, every, on_sample
        self.samples: list[RssSample] = []
        self._start = time.perf_counter()

    def record(self, frame: int) -> None:
        """Call after each frame with the count done so far (and once with 0 before the first)."""
        if frame % self.every == 0 or frame == self.frames:
            sample = RssSample(frame, rss_bytes(), time.perf_counter() - self._start)
            self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)


class SyntheticFrames:
    """Varied RGB frames of one camera: a few sizes around the network's, each held for ``FRAMES_PER_SIZE``
    frames, and contents from fine noise to large blobs (so results vary in size: labels, boxes)."""

    def __init__(self, size: int, pool: int = 6, seed: int = 0) -> None:
        self.sizes = [(size, size), (3 * size // 4, 4 * size // 3), (size // 2, size)]  # (H, W)
        rng = np.random.default_rng(seed)
        self.pool = [[_blobs(rng, h, w, scale=1 + 7 * (k % 3)) for k in range(pool)] for h, w in self.sizes]

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i``: (H, W, 3) uint8."""
        run = i // FRAMES_PER_SIZE
        return self.pool[run % len(self.sizes)][i % len(self.pool[0])]

    @staticmethod
    def stamp_ns(i: int) -> int:
        return (i + 1) * FRAME_PERIOD_NS


def _blobs(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Random colours at 1/``scale`` of the frame's resolution, smoothly enlarged to (H, W, 3) uint8."""
    small = rng.integers(0, 256, (max(1, height // scale), max(1, width // scale), 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


def lowest_thresholds(manifests: Mapping[str, HeadManifest]) -> dict[str, dict[str, Any]]:
    """Each head's ``threshold_param`` at its minimum: the most boxes through NMS, messages and drawing."""
    out = {}
    for name, manifest in manifests.items():
        spec = manifest.params.get(manifest.threshold_param) if manifest.threshold_param else None
        if spec is not None and spec.min is not None:
            out[name] = {spec.name: spec.min}
    return out


@dataclass(frozen=True)
class SoakResult:
    """One soak run: what ran, the RSS samples, and what went wrong on the way."""

    mode: str  # "engine" or "node"
    frames: int
    heads: tuple[str, ...]
    samples: tuple[RssSample, ...]  # frame 0 (after loading and warm-up), every K frames, the last
    head_errors: dict[str, int]  # frames each head failed on (node run: as its /diagnostics counts them)
    random_weights: tuple[str, ...]  # what ran on random weights (``Engine.random_weights``)
    settings: dict[str, Any] = field(default_factory=dict)
    frames_without_output: int = 0  # node run: frames whose combined overlay never arrived
    messages: dict[str, int] = field(default_factory=dict)  # node run: messages received per output topic
    machine: dict[str, Any] = field(default_factory=dict)  # what it ran on (``benchmark.machine``)

    @property
    def baseline(self) -> RssSample:
        """The first sample at or after frame N/10: growth is counted from there."""
        start = max(1, self.frames // 10)
        return next(s for s in self.samples if s.frame >= start)

    @property
    def growth_pct(self) -> float:
        base = self.baseline.rss_bytes
        return 100.0 * (self.samples[-1].rss_bytes - base) / base

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [asdict(s) for s in self.samples]
        data.update(baseline_frame=self.baseline.frame, baseline_rss_bytes=self.baseline.rss_bytes,
                    end_rss_bytes=self.samples[-1].rss_bytes, growth_pct=self.growth_pct,
                    seconds=self.samples[-1].elapsed_s,
                    date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if self.random_weights:
            data["note"] = RANDOM_NOTE
        return data

    def lines(self) -> list[str]:
        """The summary printed at the end."""
        base, end = self.baseline, self.samples[-1]
        out = [f"{self.mode} soak: {self.frames} frames through {', '.join(self.heads)} in {end.elapsed_s:.0f} s",
               f"RSS at frame {base.frame}: {_mib(base.rss_bytes)}, at frame {end.frame}: {_mib(end.rss_bytes)}: "
               f"growth {self.growth_pct:+.2f}%"]
        if self.mode == "node":
            out.append(f"frames without output: {self.frames_without_output}")
        errors = ", ".join(f"{name} {count}" for name, count in self.head_errors.items() if count)
        out.append(f"head errors: {errors or 'none'}")
        if self.random_weights:
            out.append(f"({', '.join(self.random_weights)}: {RANDOM_NOTE})")
        return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def run_soak(engine: Engine, *, frames: int, sample_every: int, settings: Mapping[str, Any] | None = None,
             on_sample: Callable[[RssSample], None] | None = None) -> SoakResult:
    """``frames`` frames through ``engine`` and every head's overlay, RSS every ``sample_every`` frames."""
    recorder = RssRecorder(frames, sample_every, on_sample)
    source = SyntheticFrames(engine.extractor.preprocess.size)
    notice = "RANDOM WEIGHTS" if engine.random_weights else None
    errors: Counter[str] = Counter({name: 0 for name in engine.heads})
    recorder.record(0)
    for i in range(frames):
        rgb = source.frame(i)
        result = engine(rgb, stream=STREAM, stamp_ns=source.stamp_ns(i))
        errors.update(result.errors.keys())
        draw_overlays(rgb, result.results, heads=list(result.results), combined=True, notice=notice)
        recorder.record(i + 1)
    return SoakResult("engine", frames, tuple(engine.heads), tuple(recorder.samples), dict(errors),
                      tuple(engine.random_weights), dict(settings or {}), machine=machine(engine.device))


def write(result: SoakResult, folder: str | Path) -> list[Path]:
    """``soak.json`` (``soak_node.json`` for a node run) and, with matplotlib, its plot; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "soak" if result.mode == "engine" else f"soak_{result.mode}"
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    written = [json_path]
    if plot(result, folder / f"{stem}.png"):
        written.append(folder / f"{stem}.png")
    return written


def plot(result: SoakResult, path: str | Path) -> bool:
    """RSS (MiB) over frames, the baseline marked; False without matplotlib (the JSON has every sample)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    frames = [s.frame for s in result.samples]
    mib = [s.rss_bytes / 2**20 for s in result.samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(frames, mib, color="#4c72b0")
    ax.axvline(result.baseline.frame, color="#999999", linestyle="--", label=f"frame {result.baseline.frame}")
    ax.set_xlabel("frames")
    ax.set_ylabel("RSS (MiB)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{result.mode} soak, {', '.join(result.heads)}: growth {result.growth_pct:+.2f}% "
                 f"from frame {result.baseline.frame}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
