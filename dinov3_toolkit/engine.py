"""The shared-feature engine: one RGB frame in, one typed result per head out.

The backbone runs exactly once per frame, computing only the layers the enabled
heads read; every head then reuses those maps. A head that raises on a frame is
reported in ``FrameResult.errors`` (named, with its file) and the others still
return results, so one faulty plug-in never takes the camera pipeline down.
Usage is shown in docs/heads.md, "From Python".
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbone import (
    WeightsNotFoundError,
    create_backbone,
    get_backbone_spec,
    load_backbone,
)
from .backbone.features import resolve_layer_indices
from .bounds import BOUNDS
from .config import DEFAULTS
from .device import autocast, keep_freed_memory
from .errors import ConfigError
from .extractor import FeatureExtractor
from .heads.base import HeadError
from .heads.loader import LoadedHead, discover, load_head
from .result_kinds import BrokenPromise, InvalidResult, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage of one frame (synchronised with the device at each boundary)."""

    preprocess: float
    backbone: float
    heads: dict[str, float]  # each head's forward
    postprocess: dict[str, float]  # each head's post-processing, results on the host

    @property
    def total(self) -> float:
        return self.preprocess + self.backbone + sum(self.heads.values()) + sum(self.postprocess.values())


@dataclass(frozen=True)
class FrameResult:
    """Everything one frame produced."""

    results: dict[str, Any]  # head name -> Detections / SemanticLabels / DepthMap / a custom result
    errors: dict[str, HeadError]  # heads that raised on this frame
    timings: StageTimings
    image_size: tuple[int, int]  # (H, W) of the frame, the frame every result is in


RANDOM_BACKBONE_SEED = 0
WARMUP_STREAM = "warm-up"  # the blank frames' own stream, forgotten after the warm-up


@dataclass(frozen=True)
class _Kept:
    """A stream's previous frame, kept for temporal heads: its backbone maps and when it was taken."""

    maps: list[torch.Tensor]
    stamp_ns: int | None
    size: tuple[int, int]  # (H, W) of the frame: the stretch resize hides a change from the maps' shapes


def open_backbone(name: str, weights: str | Path | None = None, *, random_weights: bool = False,
                  **overrides: Any) -> tuple[torch.nn.Module, bool]:
    """Backbone ``name`` with its weights, found or given; (model, True) with random weights when none are
    found and ``random_weights`` allows it (never when a file was named)."""
    try:
        return load_backbone(name, weights, **overrides), False
    except WeightsNotFoundError as e:
        if not random_weights or weights is not None:
            raise
        log.warning("%s\n-> running backbone %s with RANDOM weights", e, name)
        return random_backbone_model(name, **overrides), True


def random_backbone_model(name: str, **overrides: Any) -> torch.nn.Module:
    """Backbone ``name`` with random weights, the same in every run and process (the global RNG is left
    as it was): a head trained on random features (tests, smoke runs) meets the same features in
    ``dinov3 run`` and ``dinov3 eval``, and two training processes agree."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_BACKBONE_SEED)
        return create_backbone(name, **overrides)


class Engine:
    """A backbone on a device and the heads that share its features."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        heads: Iterable[LoadedHead],
        *,
        failed: Mapping[str, HeadError] | None = None,
        random_backbone: bool = False,
    ) -> None:
        """``heads`` must already be on ``extractor.device`` (``load_head`` puts them there)."""
        self.extractor = extractor
        self.heads: dict[str, LoadedHead] = {}
        self.failed: dict[str, HeadError] = dict(failed or {})  # heads that could not be loaded
        self.random_backbone = random_backbone
        self.stream_gap_s = DEFAULTS.stream_gap_s
        self._streams: dict[str, _Kept] = {}  # stream -> its previous frame, for temporal heads
        self._generation = 0  # counts forget_streams() calls
        self._wanted: dict[str, list[int]] = {}  # head name -> backbone layers it reads
        for head in heads:
            try:
                self._wanted[head.name] = resolve_layer_indices(head.manifest.layers, extractor.backbone.num_layers)
            except ValueError as e:
                self.failed[head.name] = HeadError(head.name, head.manifest.path, f"'layers': {e}")
                continue
            self.heads[head.name] = head
        self._plan_layers()

    def _plan_layers(self) -> None:
        """The backbone computes the union of the running heads' layers, once; each head picks its own."""
        wanted = {name: layers for name, layers in self._wanted.items() if name in self.heads}
        self.layers = sorted({i for layers in wanted.values() for i in layers}) or [-1]
        self.extractor.layers = self.layers
        self._picks = {name: [self.layers.index(i) for i in layers] for name, layers in wanted.items()}

    @classmethod
    def create(
        cls,
        *,
        backbone: str = DEFAULTS.backbone,
        backbone_weights: str | Path | None = None,
        device: str = DEFAULTS.device,
        precision: str = DEFAULTS.precision,
        size: int = DEFAULTS.size,
        resize_mode: str = DEFAULTS.resize_mode,
        heads: Sequence[str] | None = None,
        head_dirs: Iterable[str | Path] = (),
        head_params: Mapping[str, Mapping[str, Any]] | None = None,
        head_weights: Mapping[str, str | Path] | None = None,
        random_weights: bool = False,
        warmup: bool = True,
        backbone_overrides: Mapping[str, Any] | None = None,
        stream_gap_s: float = DEFAULTS.stream_gap_s,
        allow_backbone_mismatch: bool = False,
    ) -> Engine:
        """Load a backbone and the enabled heads (``None``: every head found).

        A head that cannot be loaded is logged and listed in ``failed``; the rest
        run. Asking for a head that no folder provides is a configuration error.
        ``random_weights`` runs with random weights wherever no file is found (for
        smoke tests and demos; results are meaningless). ``warmup`` runs a blank
        frame (two with a temporal head) so that the first camera frame is not slow and a head that cannot
        run at all is caught at start. A head whose weights were trained on another
        backbone (its manifest's ``trained_on``) is refused unless
        ``allow_backbone_mismatch``; other sizes or resize modes are only warned about.
        """
        stream_gap_s = BOUNDS["stream_gap"].check("stream_gap_s", stream_gap_s)
        manifests, failed = discover(head_dirs, templates=heads is not None)  # templates only when named
        names = list(manifests) + [n for n in failed if n not in manifests] if heads is None else list(heads)
        if len(set(names)) != len(names):
            raise ConfigError(f"heads must be named once each, got {names}")
        unknown = [n for n in names if n not in manifests and n not in failed]
        if unknown:
            found = ", ".join(sorted({*manifests, *failed})) or "none"
            raise ConfigError(f"unknown head(s) {unknown}; heads found: {found}")
        for name in set(head_params or {}) | set(head_weights or {}):
            if name not in names:
                raise ConfigError(f"parameters or weights given for head {name!r}, which is not enabled")
        failed = {n: e for n, e in failed.items() if n in names}

        spec = get_backbone_spec(backbone)
        keep_freed_memory()  # per-frame buffers are reused, not paged in anew (device.py)
        model, random_backbone = open_backbone(spec.name, backbone_weights, random_weights=random_weights,
                                               **dict(backbone_overrides or {}))
        extractor = FeatureExtractor(model, spec, device=device, precision=precision, size=size,
                                     resize_mode=resize_mode)

        loaded = []
        for name in names:
            if name in failed:
                continue
            try:
                head = load_head(
                    manifests[name],
                    device=extractor.device,
                    params=(head_params or {}).get(name),
                    weights=(head_weights or {}).get(name),
                    random_weights=random_weights,
                )
            except HeadError as e:
                failed[name] = e
                continue
            if (trained := _trained_backbone(head)) not in (None, spec.arch) and not allow_backbone_mismatch:
                failed[name] = HeadError(name, head.manifest.path, f"its weights were trained on {trained} "
                                         f"features, but the backbone is {spec.arch}: its results would be garbage "
                                         f"(allow_backbone_mismatch / --allow-backbone-mismatch runs it anyway)")
                continue
            _warn_if_trained_elsewhere(head, spec.arch, size, resize_mode)
            loaded.append(head)
        engine = cls(extractor, loaded, failed=failed, random_backbone=random_backbone)
        engine.stream_gap_s = stream_gap_s
        if warmup:
            engine.warmup()
        for error in engine.failed.values():
            log.error("%s; the other heads still run", error)
        return engine

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    @property
    def random_weights(self) -> list[str]:
        """What runs on random weights: ``backbone`` and/or head names (empty in real use)."""
        heads = [name for name, head in self.heads.items() if head.random_weights]
        return ["backbone"] * self.random_backbone + heads

    def set_params(self, head: str, **values: Any) -> None:
        """Change a head's parameters at run time (validated; a bad value leaves them unchanged)."""
        if head not in self.heads:
            raise KeyError(f"no running head {head!r}; running: {', '.join(self.heads) or 'none'}")
        self.heads[head].set_params(**values)

    def head_inputs(self, name: str, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The feature maps head ``name`` reads, out of the backbone's maps for ``self.layers``."""
        return [maps[i] for i in self._picks[name]]

    def head_forward(self, name: str, maps: list[torch.Tensor], previous: list[torch.Tensor] | None = None) -> Any:
        """Head ``name``'s raw outputs on the backbone's maps (and, for a temporal head, the previous frame's
        of its stream), at the engine's precision."""
        with torch.inference_mode():
            with autocast(self.extractor.device, self.extractor.dtype):
                model = self.heads[name].model
                if model.temporal:
                    if previous is None:
                        raise ValueError(f"head {name!r} is temporal: it needs the previous frame's maps too")
                    return model(self.head_inputs(name, maps), self.head_inputs(name, previous))
                return model(self.head_inputs(name, maps))

    def _previous(self, stream: str, stamp_ns: int | None, size: tuple[int, int]) -> tuple[list | None, str]:
        """The kept maps of ``stream``'s previous frame, or None and why there are none to use."""
        kept = self._streams.get(stream)
        if kept is None:
            return None, f"first frame of stream {stream!r}: flow needs two"
        if kept.size != size:
            return None, f"the frame size changed on stream {stream!r} ({kept.size} to {size})"
        if stamp_ns and kept.stamp_ns:  # 0: a driver that stamps nothing
            gap = (stamp_ns - kept.stamp_ns) / 1e9
            if gap < 0:
                return None, f"time went back {-gap:.3f} s on stream {stream!r}: a new sequence starts"
            if gap > self.stream_gap_s:
                return None, f"a gap of {gap:.3f} s on stream {stream!r} (more than {self.stream_gap_s:g} s)"
        return kept.maps, ""

    def forget_streams(self) -> None:
        """Drop every stream's kept frame (the node does when it is deactivated: the next frame starts anew);
        a frame being processed meanwhile (on another thread) is not kept either."""
        self._generation += 1
        self._streams.clear()

    def warmup(self) -> None:
        """Run a blank frame; heads that fail on it, or whose result contradicts their task, move to ``failed``."""
        side = self.extractor.preprocess.size
        blank = np.zeros((side, side, 3), dtype=np.uint8)
        errors = dict(self(blank, stream=WARMUP_STREAM).errors)
        if any(head.model.temporal for head in self.heads.values()):  # a second frame runs their forward too
            errors.update(self(blank, stream=WARMUP_STREAM).errors)  # the first ran their first_result
        self._streams.pop(WARMUP_STREAM, None)
        for name, error in errors.items():
            if isinstance(error.__cause__, BrokenPromise):  # publishers come from the task: never run such a head
                self.failed[name] = HeadError(name, self.heads[name].manifest.path, f"refused: {error.__cause__}")
                continue
            self.failed[name] = HeadError(name, error.path, f"{error.message} (the warm-up run on a blank frame)")
            self.failed[name].__cause__ = error.__cause__
        dropped = [name for name in self.heads if name in self.failed]
        for name in dropped:
            del self.heads[name]
        if dropped:
            self._plan_layers()

    def __call__(self, image: np.ndarray, *, stream: str = "default", stamp_ns: int | None = None) -> FrameResult:
        """Run every head on one RGB uint8 (H, W, 3) frame of ``stream`` (one per camera or source), taken
        at ``stamp_ns``; temporal heads pair it with the stream's previous frame (see ``_previous``)."""
        sync = self.synchronize
        start = time.perf_counter()
        prepared = self.extractor.preprocess(image)
        sync()
        after_pre = time.perf_counter()
        maps = self.extractor.run_backbone(prepared)
        sync()
        after_backbone = time.perf_counter()

        results: dict[str, Any] = {}
        errors: dict[str, HeadError] = {}
        forward_s: dict[str, float] = {}
        post_s: dict[str, float] = {}
        temporal = any(head.model.temporal for head in self.heads.values())
        generation = self._generation  # a forget_streams() meanwhile: this frame is not kept either
        previous, why = self._previous(stream, stamp_ns, prepared.original_size) if temporal else (None, "")
        for name, head in list(self.heads.items()):
            t0 = time.perf_counter()
            try:
                if head.model.temporal and previous is None:
                    results[name] = validate(head.model.first_result(why), prepared.original_size, head.manifest.task)
                    continue
                outputs = self.head_forward(name, maps, previous)
                sync()
                t1 = time.perf_counter()
                with torch.inference_mode():
                    result = head.model.postprocess(outputs, prepared, head.params)
                # nothing downstream sees a broken result, or one of another kind than its task promises
                results[name] = validate(result, prepared.original_size, head.manifest.task)
            except KeyboardInterrupt:  # Ctrl-C (and SIGTERM, through the runners) stops the run, not the head
                raise
            except BaseException as e:  # a plug-in may fail in any way, sys.exit() too; never the others
                errors[name] = _frame_error(name, head, e)
                continue
            forward_s[name] = t1 - t0
            post_s[name] = time.perf_counter() - t1
        if temporal and generation == self._generation:
            self._streams[stream] = _Kept(maps, stamp_ns, prepared.original_size)
        timings = StageTimings(
            preprocess=after_pre - start, backbone=after_backbone - after_pre, heads=forward_s, postprocess=post_s
        )
        return FrameResult(results=results, errors=errors, timings=timings, image_size=prepared.original_size)

    def synchronize(self) -> None:
        """Wait for the device's queued work, so that a clock read afterwards includes it."""
        if self.extractor.device.type == "cuda":
            torch.cuda.synchronize(self.extractor.device)


def _frame_error(name: str, head: LoadedHead, e: BaseException) -> HeadError:
    """The error of a head that raised on a frame, pointing at the line of its own code that failed."""
    where = ""
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if Path(frame.filename).is_relative_to(head.manifest.folder):
            where = f" (at {Path(frame.filename).name}:{frame.lineno})"
            break
    what = f"returned an invalid result: {e}" if isinstance(e, InvalidResult) else f"{type(e).__name__}: {e}"
    error = HeadError(name, head.manifest.module_path, f"failed on this frame: {what}{where}")
    error.__cause__ = e
    return error


def _trained_backbone(head: LoadedHead) -> str | None:
    """The backbone (architecture) whose features the head's loaded weights were trained on, if stated."""
    return head.manifest.trained_on.get("backbone") if head.weights is not None else None


def _warn_if_trained_elsewhere(head: LoadedHead, arch: str, size: int, resize_mode: str) -> None:
    """Weights trained on other features give plausible-looking garbage; say so at start."""
    if head.weights is None:
        return
    running = {"backbone": arch, "size": size, "resize_mode": resize_mode}
    for key, expected in head.manifest.trained_on.items():
        if running[key] != expected:
            log.warning(
                "head %s was trained with %s=%s but the engine runs %s=%s: its results may be poor",
                head.name, key, expected, key, running[key],
            )
