"""The training loop of ``dinov3 train``: a frozen backbone's features in, a head's weights out.

The backbone never changes, so the features of every image are computed once,
before the first epoch, into the ``FeatureCache``; epochs read them from disk
and cost only the head. Images that photometric augmentation changes (the
recipes' first phase) go through the backbone again, since their features differ.

Everything random is drawn from the seed and the position in the run (epoch,
step, sample index): the sample order per epoch, each sample's augmentation and
the head's dropout. A run stopped half-way (Ctrl-C, or a killed job) resumes
from ``checkpoints/last.pt`` with its optimiser and schedule and ends with the
weights an uninterrupted run would have reached.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from ..device import autocast
from ..errors import ConfigError
from ..extractor import FeatureExtractor
from ..heads import Head, HeadLoss, PreparedImage
from .augment import augment_photometric
from .cache import FeatureCache
from .data import Dataset, read_image
from .distributed import Processes
from .evaluate import PRIMARY, Meter, make_meter

log = logging.getLogger(__name__)

SCHEDULES = ("recipe", "cosine", "constant")
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainOptions:
    """How to train; the defaults are the published recipes' (heads spec §8.1-8.2)."""

    epochs: int = 30
    batch: int = 16  # over all processes together; each of N processes takes batch / N
    lr: float = 1e-4
    schedule: str = "recipe"  # recipe: lr for the first half of the epochs, lr / 10 after
    weight_decay: float = 1e-4
    clip: float = 5.0  # gradient-norm clip; 0 turns it off
    amp: str = "none"  # bf16 / fp16 autocast of the head on CUDA
    augment: float = 0.8  # probability that an image is augmented, in the augmented epochs
    augment_epochs: int | None = None  # how many epochs are augmented; None: the first half (the recipes)
    seed: int = 0
    workers: int = 2  # data-loader processes per training process

    def __post_init__(self) -> None:
        for name in ("epochs", "batch"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "weight_decay", "clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise ConfigError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {value}")
        if not 0.0 <= self.augment <= 1.0:
            raise ConfigError(f"augment is a probability in [0, 1], got {self.augment}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.amp not in AMP:
            raise ConfigError(f"amp must be one of {', '.join(AMP)}, got {self.amp!r}")
        if self.augment_epochs is not None and self.augment_epochs < 0:
            raise ConfigError(f"augment_epochs must be >= 0, got {self.augment_epochs}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")

    @property
    def augmented_epochs(self) -> int:
        return (self.epochs + 1) // 2 if self.augment_epochs is None else min(self.augment_epochs, self.epochs)

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "recipe":
            return self.lr if epoch < (self.epochs + 1) // 2 else self.lr / 10
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.lr


@dataclass
class TrainSetup:
    """What to train on: the head and its loss, the frozen backbone, the data, where to write."""

    model: Head
    loss: HeadLoss
    params: dict[str, Any]  # the head's parameter values that validation post-processes with
    extractor: FeatureExtractor
    cache: FeatureCache
    train: Dataset
    val: Dataset
    train_sizes: list[tuple[int, int]]  # (H, W) of every training image, from check_samples
    val_sizes: list[tuple[int, int]]
    folder: Path  # the output head folder; checkpoints/ and report/ go inside
    processes: Processes = field(default_factory=Processes)
    relative_depth: bool = False
    progress: bool = True  # progress bars (the main process only)


@dataclass
class TrainOutcome:
    history: list[dict[str, Any]]  # one entry per finished epoch, as in report/train_log.jsonl
    best: dict[str, Any] | None  # the entry of the epoch whose weights were kept
    best_state: dict[str, torch.Tensor] | None
    stopped: bool  # True if a stop was asked for before the last epoch ended
    feature_seconds: float  # time spent filling the feature cache before the first epoch


class _Samples(torch.utils.data.Dataset):
    """One item per sample: cached maps (or an augmented image to run the backbone on) and its target."""

    def __init__(self, data: Dataset, sizes: list[tuple[int, int]], cache: FeatureCache, loss: HeadLoss | None,
                 geometry: tuple[tuple[int, int], tuple[int, int]], augment: float, seed: int) -> None:
        self.data, self.sizes, self.cache, self.loss = data, sizes, cache, loss
        self.input_size, self.feature_size = geometry
        self.augment, self.seed = augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.data.samples[i]
        target = sample.load_target()
        rng = np.random.default_rng([self.seed, self.epoch, i])
        item: dict[str, Any] = {"index": i, "maps": None, "image": None}
        if self.augment > 0 and rng.random() < self.augment:
            item["image"] = augment_photometric(read_image(sample.image), rng)
        else:
            item["maps"] = self.cache.load(sample.image)
        if self.loss is None:  # validation: the raw target, for the metric
            item["target"] = target
        else:
            item["target"] = self.loss.encode(target, self.sizes[i], self.input_size, self.feature_size)
        return item


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch  # items differ in kind (maps or image, any target): the trainer stacks them


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def take(outputs: Any, i: int) -> Any:
    """Sample ``i`` of batched head outputs, batch dimension kept (what ``postprocess`` expects)."""
    if isinstance(outputs, torch.Tensor):
        return outputs[i: i + 1]
    if isinstance(outputs, dict):
        return {k: take(v, i) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(take(v, i) for v in outputs)
    raise TypeError(f"cannot split head outputs of type {type(outputs).__name__} into samples")


class Trainer:
    def __init__(self, setup: TrainSetup, options: TrainOptions) -> None:
        self.s, self.o = setup, options
        self.device = setup.extractor.device
        self.task = setup.train.task
        world = setup.processes.world
        if options.batch % world:
            raise ConfigError(f"batch {options.batch} must divide evenly over {world} processes")
        self.local_batch = options.batch // world
        if options.amp != "none" and self.device.type != "cuda":
            raise ConfigError(f"amp {options.amp} needs a CUDA device (this run is on {self.device})")
        self.amp = AMP[options.amp]
        self.scaler = torch.amp.GradScaler("cuda", enabled=options.amp == "fp16")
        self.geometry = self._geometry()
        self.model = setup.model.to(self.device).train()
        self.net = DistributedDataParallel(self.model) if world > 1 else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.checkpoints = setup.folder / "checkpoints"
        self.report = setup.folder / "report"

    # --- features -----------------------------------------------------------------------------------------
    def _geometry(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(input size, first feature map size): fixed for a training run (the stretch resize)."""
        h, w = self.s.train_sizes[0]
        input_size = self.s.extractor.preprocess.input_size(h, w)
        maps = self._backbone([np.zeros((h, w, 3), np.uint8)])
        return input_size, tuple(maps[0].shape[-2:])

    @torch.no_grad()
    def _backbone(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Feature maps (B, C, h, w) of RGB images; plain no_grad (not inference mode): they feed autograd."""
        x = torch.cat([self.s.extractor.preprocess(image).tensor for image in images])
        with autocast(self.device, self.s.extractor.dtype):
            maps = self.s.extractor.backbone.forward_intermediates(x, self.s.cache.layers)
        return [m.float() for m in maps]

    def fill_cache(self) -> float:
        """Compute the features no run has cached yet (the main process writes; the others wait)."""
        start = time.perf_counter()
        if self.s.processes.main:
            images = [s.image for s in (*self.s.train.samples, *self.s.val.samples)]
            missing = self.s.cache.missing(dict.fromkeys(images))
            for image in tqdm(missing, desc="features", unit="img", disable=not (missing and self.s.progress)):
                self.s.cache.store(image, self._backbone([read_image(image)]))
        self.s.processes.barrier()
        return time.perf_counter() - start

    def _features(self, items: list[dict[str, Any]]) -> list[torch.Tensor]:
        """The batch's maps, (B, C, h, w) per layer: cached ones as read, augmented images through the backbone."""
        fresh = [item["image"] for item in items if item["maps"] is None]
        computed = iter(zip(*self._backbone(fresh))) if fresh else iter(())
        per_item = [item["maps"] if item["maps"] is not None else [m for m in next(computed)] for item in items]
        return [torch.stack(layer).to(self.device) for layer in zip(*per_item)]

    # --- loops --------------------------------------------------------------------------------------------
    def _loader(self, items: _Samples, shuffle: bool) -> tuple[DataLoader, DistributedSampler | None]:
        p = self.s.processes
        if shuffle:
            sampler = DistributedSampler(items, num_replicas=p.world, rank=p.rank, shuffle=True, seed=self.o.seed)
            dataset: torch.utils.data.Dataset = items
        else:  # validation: each process its own share, none repeated
            sampler, dataset = None, Subset(items, range(p.rank, len(items), p.world))
        loader = DataLoader(dataset, batch_size=self.local_batch, sampler=sampler, collate_fn=_as_list,
                            num_workers=self.o.workers, persistent_workers=False)
        return loader, sampler

    def fit(self, stop: Callable[[], bool] = lambda: False, resume: bool = False,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainOutcome:
        """Train to the last epoch, or until ``stop()`` says so after a step; ``on_epoch`` gets each epoch's
        log entry in the main process (TensorBoard, for one)."""
        o, p = self.o, self.s.processes
        state = self._resume() if resume else {"epoch": 0, "step": 0, "running": {}, "history": [], "best": None}
        feature_seconds = self.fill_cache()
        train = _Samples(self.s.train, self.s.train_sizes, self.s.cache, self.s.loss, self.geometry, 0.0, o.seed)
        loader, sampler = self._loader(train, shuffle=True)
        best_state = self._read_best() if state["best"] else None
        for epoch in range(state["epoch"], o.epochs):
            start = time.perf_counter()
            train.epoch = epoch
            train.augment = o.augment if epoch < o.augmented_epochs else 0.0
            sampler.set_epoch(epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = o.lr_at(epoch)
            running, skip = state["running"], state["step"]
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{o.epochs}", unit="batch", leave=False, disable=not (p.main and self.s.progress))
            for step, items in enumerate(bar):
                if step < skip:
                    continue  # done before the interruption: same order, same samples
                losses = self._step(items, epoch, step)
                for k, v in losses.items():
                    running[k] = running.get(k, 0.0) + v
                running["steps"] = running.get("steps", 0) + 1
                bar.set_postfix(loss=f"{running['loss'] / running['steps']:.4f}")
                if p.any(stop()):  # all processes stop at the same step, or DDP would wait forever
                    self._save_last({**state, "epoch": epoch, "step": step + 1, "running": running})
                    return TrainOutcome(state["history"], state["best"], best_state, True, feature_seconds)
            train_losses = p.mean({k: v / running["steps"] for k, v in running.items() if k != "steps"})
            metrics = self.validate().compute()
            entry = {"epoch": epoch + 1, "lr": o.lr_at(epoch), "augment": train.augment,
                     "train": train_losses, "val": metrics, "seconds": round(time.perf_counter() - start, 3)}
            if epoch == 0:  # the first epoch's features were computed just before it: its true cost
                entry["feature_seconds"] = round(feature_seconds, 3)
            state["history"].append(entry)
            if _better(self.task, metrics, state["best"]):
                state["best"] = entry
                best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                self._save(self.checkpoints / "best.pt", best_state)
            state = {**state, "epoch": epoch + 1, "step": 0, "running": {}}
            self._save_last(state)
            self._write_log(state["history"])
            if p.main and on_epoch is not None:
                on_epoch(entry)
            if p.main:
                key, _ = PRIMARY[self.task]
                value = "n/a" if metrics[key] is None else f"{metrics[key]:.4f}"
                log.info("epoch %d/%d: loss %.4f, val %s %s (%.1f s)", epoch + 1, o.epochs, train_losses["loss"],
                         key, value, entry["seconds"])
            if p.any(stop()):
                return TrainOutcome(state["history"], state["best"], best_state, epoch + 1 < o.epochs,
                                    feature_seconds)
        return TrainOutcome(state["history"], state["best"], best_state, False, feature_seconds)

    def _step(self, items: list[dict[str, Any]], epoch: int, step: int) -> dict[str, float]:
        # Dropout and any other randomness in the head: fixed by the run's position, so a resumed run matches.
        torch.manual_seed(((self.o.seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_000 + self.s.processes.rank)
        features = self._features(items)
        targets = _to([item["target"] for item in items], self.device)
        with autocast(self.device, self.amp) if self.amp is not None else nullcontext():
            losses = self.s.loss(self.net(features), targets)
        total = losses["loss"]
        if not torch.isfinite(total):
            raise FloatingPointError(f"the loss became {total.item()} at epoch {epoch + 1}, step {step + 1} "
                                     f"(parts: {({k: float(v) for k, v in losses.items()})}); lower --lr or use --clip")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.o.clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.o.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self, keep: int = 0) -> Meter:
        """The validation metric of the current weights over all processes; ``keep`` first results in
        ``self.kept`` (for the report's overlays)."""
        items = _Samples(self.s.val, self.s.val_sizes, self.s.cache, None, self.geometry, 0.0, self.o.seed)
        loader, _ = self._loader(items, shuffle=False)
        meter = make_meter(self.task, self.s.val.class_names, relative_depth=self.s.relative_depth)
        self.kept: list[tuple[int, Any]] = []
        self.model.eval()
        for batch in loader:
            outputs = self.model(self._features(batch))
            for i, item in enumerate(batch):
                image = PreparedImage(torch.empty(0), self.s.val_sizes[item["index"]], self.geometry[0])
                result = self.model.postprocess(take(outputs, i), image, self.s.params)
                meter.update(result, item["target"])
                if len(self.kept) < keep:
                    self.kept.append((item["index"], result))
        self.model.train()
        gathered = self.s.processes.gather(meter)
        for other in gathered[1:]:
            gathered[0].merge(other)
        return gathered[0]

    # --- checkpoints and logs -----------------------------------------------------------------------------
    def _save(self, path: Path, obj: Any) -> None:
        if not self.s.processes.main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.partial")
        torch.save(obj, partial)
        os.replace(partial, path)  # a run killed while saving keeps the previous file

    def _save_last(self, state: dict[str, Any]) -> None:
        self._save(self.checkpoints / "last.pt", {
            **state,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "options": asdict(self.o),
            "cache_key": self.s.cache.key,
        })

    def _resume(self) -> dict[str, Any]:
        path = self.checkpoints / "last.pt"
        if not path.is_file():
            raise ConfigError(f"--resume: {path} does not exist (nothing to resume; start without --resume)")
        saved = torch.load(path, map_location="cpu", weights_only=False)
        changed = {k for k, v in asdict(self.o).items() if k != "workers" and saved["options"].get(k) != v}
        if changed or saved["cache_key"] != self.s.cache.key:
            what = ", ".join(sorted(changed)) or "the backbone, its weights, size or resize mode"
            raise ConfigError(f"--resume: {path} was made with other settings ({what}); resume with the same ones")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        if self.s.processes.main:
            log.info("resuming at epoch %d, step %d from %s", saved["epoch"] + 1, saved["step"], path)
        return {k: saved[k] for k in ("epoch", "step", "running", "history", "best")}

    def _read_best(self) -> dict[str, torch.Tensor]:
        return torch.load(self.checkpoints / "best.pt", map_location="cpu", weights_only=True)

    def _write_log(self, history: list[dict[str, Any]]) -> None:
        """report/train_log.jsonl, rewritten whole from the checkpointed history (so it matches after a resume)."""
        if self.s.processes.main:
            self.report.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps(entry, allow_nan=False, default=_json_default) + "\n" for entry in history)
            (self.report / "train_log.jsonl").write_text(text)


def _better(task: str, metrics: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether this epoch's weights beat the kept ones; a metric that could not be computed (None: no
    objects in the validation set) never beats a number, and ties keep the earlier epoch."""
    key, higher = PRIMARY[task]
    new, old = metrics[key], None if best is None else best["val"][key]
    if best is None or (old is None and new is not None):
        return True
    if new is None:
        return False
    return new > old if higher else new < old


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")




