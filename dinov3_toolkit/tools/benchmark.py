"""Per-frame cost, stage by stage, measured side by side in one run (``dinov3 bench``).

Every stage runs once per round, the stages interleaved round after round, so
that a machine getting slower or faster mid-run (thermals, a noisy neighbour)
moves all of them alike and the ratios stay fair. The device is synchronised
around each timed call. Stages:

* ``model`` (a): backbone + every enabled head, forward only, on a prepared input;
* ``engine`` (b): ``Engine(frame)``, uint8 camera frame in, typed results out;
* ``engine+ros`` (c): (b) plus building the ROS messages (passed in by the ROS layer);
* ``backbone``, ``backbone+1``, ``backbone+2``... (d): the backbone alone and
  with the first k heads (the last is ``model``); ``separate``: one full
  backbone + head pipeline per head, as without shared features;
* ``transformers`` (e): Hugging Face's ``DINOv3ViTModel`` with our weights.

``RATIOS`` are the figures we hold ourselves to (docs/performance.md).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import autocast
from ..engine import Engine
from ..errors import ConfigError, MissingExtra

JSON_NAME = "bench.json"
PLOT_NAME = "bench.png"


@dataclass(frozen=True)
class Ratio:
    """``numerator`` / ``denominator`` medians, and the most we accept."""

    numerator: str
    denominator: str
    limit: float | None
    meaning: str

    @property
    def name(self) -> str:
        return f"{self.numerator} / {self.denominator}"


RATIOS = (
    Ratio("engine", "model", 1.10, "(b)/(a): what the pipeline adds around the network"),
    Ratio("engine+ros", "engine", None, "(c)/(b): building the ROS messages"),
    Ratio("model", "backbone", 1.45, "every head on the shared features vs the backbone alone"),
    Ratio("model", "separate", 0.45, "shared features vs one backbone per head"),
    Ratio("backbone", "transformers", 1.00, "our backbone vs transformers' DINOv3ViTModel, same weights and precision"),
)


@dataclass
class Stage:
    """A timed call and its samples (seconds)."""

    name: str
    run: Callable[[], Any]
    description: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile, linear between the closest ranks (numpy's default)."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def run_benchmark(
    engine: Engine,
    frame: np.ndarray,
    *,
    rounds: int,
    warmup: int = 2,
    to_messages: Callable[[Any, np.ndarray], Any] | None = None,
    transformers: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Time every stage on ``frame`` and return the report (``report``).

    ``to_messages(frame_result, frame)`` is the ROS layer's conversion, for stage
    (c); ``transformers`` adds stage (e) (ViT backbones only).
    """
    prepared = engine.extractor.preprocess(frame)
    names = list(engine.heads)

    def backbone_and(heads: list[str]) -> Callable[[], None]:
        def run() -> None:
            maps = engine.extractor.run_backbone(prepared)
            for name in heads:
                engine.head_forward(name, maps, maps)  # a temporal head pairs the frame with itself: same cost

        return run

    def separate() -> None:
        for name in names:
            maps = engine.extractor.run_backbone(prepared)
            engine.head_forward(name, maps, maps)

    engine_timings: list = []  # what the engine measured of its own parts, per call

    def run_engine() -> None:
        engine_timings.append(engine(frame, stream="bench").timings)  # from the second call on, flow runs too

    stages = [Stage("backbone", backbone_and([]), "backbone alone (d)")]
    for k in range(1, len(names)):
        stages.append(Stage(f"backbone+{k}", backbone_and(names[:k]), f"backbone + {', '.join(names[:k])} (d)"))
    stages.append(Stage("model", backbone_and(names), f"backbone + {', '.join(names) or 'no head'}, forward only (a)"))
    if len(names) > 1:
        stages.append(Stage("separate", separate, f"{len(names)} separate backbone + head pipelines (d)"))
    stages.append(Stage("engine", run_engine, "Engine(frame): uint8 frame to typed results (b)"))
    if to_messages is not None:
        stages.append(Stage("engine+ros", lambda: to_messages(engine(frame), frame), "(b) + ROS messages (c)"))
    if transformers:
        stages.append(_transformers_stage(engine, prepared.tensor))
    measure(stages, rounds, warmup, engine.synchronize)
    return report(stages, settings or {}, engine, engine_timings[-rounds:])


def _transformers_stage(engine: Engine, x: torch.Tensor) -> Stage:
    """Stage (e): transformers' DINOv3ViTModel with our backbone's weights, at the engine's precision."""
    from .transformers_vit import to_transformers

    twin = to_transformers(engine.extractor.backbone)

    def run() -> None:
        with torch.inference_mode(), autocast(engine.device, engine.extractor.dtype):
            twin(pixel_values=x)

    return Stage("transformers", run, "transformers DINOv3ViTModel, same weights and precision (e)")


def measure(stages: list[Stage], rounds: int, warmup: int, synchronize: Callable[[], None]) -> None:
    """Run every stage ``warmup`` times untimed, then ``rounds`` times interleaved, timing each call."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be a positive int, got {rounds!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an int >= 0, got {warmup!r}")
    for _ in range(warmup):
        for stage in stages:
            stage.run()
    for _ in range(rounds):
        for stage in stages:
            synchronize()
            start = time.perf_counter()
            stage.run()
            synchronize()
            stage.samples.append(time.perf_counter() - start)


def report(
    stages: list[Stage], settings: Mapping[str, Any], engine: Engine, engine_timings: list | None = None
) -> dict[str, Any]:
    """The run as JSON-ready data: settings, machine, per-stage median/p90 (ms), ratios of medians."""
    by_name = {stage.name: stage for stage in stages}
    ratios = {}
    for ratio in RATIOS:
        if ratio.numerator in by_name and ratio.denominator in by_name:
            value = by_name[ratio.numerator].median / by_name[ratio.denominator].median
            ok = None if ratio.limit is None else value <= ratio.limit
            ratios[ratio.name] = {"value": value, "limit": ratio.limit, "ok": ok, "meaning": ratio.meaning}
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": dict(settings),
        "machine": machine(engine.device),
        "heads": list(engine.heads),
        "random_weights": engine.random_weights,
        "stages": {
            s.name: {
                "description": s.description,
                "median_ms": s.median * 1e3,
                "p90_ms": s.p90 * 1e3,
                "samples_ms": [t * 1e3 for t in s.samples],
            }
            for s in stages
        },
        "ratios": ratios,
    }
    if engine_timings:
        out["engine_breakdown_ms"] = _breakdown(engine_timings)
    return out


def _breakdown(timings: list) -> dict[str, Any]:
    """Median ms of each part of ``Engine.__call__`` as the engine timed it."""

    def med(values: list[float]) -> float:
        return statistics.median(values) * 1e3

    heads = timings[0].heads
    return {
        "preprocess": med([t.preprocess for t in timings]),
        "backbone": med([t.backbone for t in timings]),
        "heads": {name: med([t.heads.get(name, math.nan) for t in timings]) for name in heads},
        "postprocess": {name: med([t.postprocess.get(name, math.nan) for t in timings]) for name in heads},
    }


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(data: Mapping[str, Any]) -> str:
    """The stages and ratios as Markdown, as docs/performance.md shows them."""
    lines = ["| stage | median ms | p90 ms | what |", "|---|---:|---:|---|"]
    for name, s in data["stages"].items():
        lines.append(f"| {name} | {s['median_ms']:.1f} | {s['p90_ms']:.1f} | {s['description']} |")
    lines += ["", "| ratio of medians | value | target |", "|---|---:|---|"]
    for name, r in data["ratios"].items():
        target = "" if r["limit"] is None else f"≤ {r['limit']:.2f} {'✓' if r['ok'] else '✗'}"
        lines.append(f"| {name} | {r['value']:.3f} | {target} |")
    return "\n".join(lines)


def write(data: Mapping[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write ``bench.json`` and its plot ``bench.png`` into ``folder``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / JSON_NAME
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    plot_path = folder / PLOT_NAME
    plot(data, plot_path)
    return json_path, plot_path


def plot(data: Mapping[str, Any], path: str | Path) -> None:
    """Median bars with p90 whiskers per stage, and each ratio against its target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingExtra("the plot needs matplotlib: pip install 'matplotlib>=3.5'") from e
    stages = data["stages"]
    names = list(stages)[::-1]  # first stage on top
    medians = [stages[n]["median_ms"] for n in names]
    p90s = [stages[n]["p90_ms"] for n in names]
    ratios = data["ratios"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 0.45 * max(len(names), len(ratios)) + 1.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    left.barh(names, medians, color="#4c72b0", label="median")
    left.errorbar(p90s, names, fmt="|", color="black", markersize=12, label="p90")
    for y, value in enumerate(medians):
        left.text(value, y, f" {value:.0f}", va="center", fontsize=8)
    left.set_xlabel("ms per frame")
    left.legend(loc="lower right", fontsize=8)
    r_names = list(ratios)[::-1]
    values = [ratios[n]["value"] for n in r_names]
    colors = ["#999999" if ratios[n]["ok"] is None else "#55a868" if ratios[n]["ok"] else "#c44e52" for n in r_names]
    right.barh(r_names, values, color=colors)
    for y, n in enumerate(r_names):
        limit = ratios[n]["limit"]
        if limit is not None:
            right.plot([limit, limit], [y - 0.4, y + 0.4], color="black")
        right.text(values[y], y, f" {values[y]:.2f}", va="center", fontsize=8)
    right.set_xlabel("ratio of medians (black line: target)")
    s, m = data["settings"], data["machine"]
    where = m.get("gpu") or m["cpu"]
    fig.suptitle(
        f"{s['backbone']} at {s['size']}, frame {s['frame'][1]}x{s['frame'][0]}, {s['precision']}, "
        f"{m['device']} ({where}), {data['date'][:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
