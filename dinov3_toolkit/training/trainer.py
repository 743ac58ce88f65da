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
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..bounds import BOUNDS
from ..device import autocast
from ..errors import ConfigError, Dinov3Error
from ..extractor import FeatureExtractor
from ..heads import Head, HeadLoss, PreparedImage
from .batches import Items, as_list, take, to_device
from .cache import FeatureCache
from .data import Dataset, read_image
from .distributed import Processes
from .evaluate import PRIMARY, Meter, make_meter

log = logging.getLogger(__name__)


class TrainingError(Dinov3Error, RuntimeError):
    """Training cannot go on as asked (a loss that is no longer finite, a checkpoint that does not fit)."""

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
        for name in ("epochs", "batch", "lr", "weight_decay", "clip", "augment", "seed", "workers"):
            BOUNDS[name].check(name, getattr(self, name))  # an OutOfBounds (ConfigError) naming the option
        if self.augment_epochs is not None:
            BOUNDS["augment_epochs"].check("augment_epochs", self.augment_epochs)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.amp not in AMP:
            raise ConfigError(f"amp must be one of {', '.join(AMP)}, got {self.amp!r}")

    @property
    def first_half(self) -> int:
        """Epochs of the recipes' first phase (augmented, at the full learning rate)."""
        return (self.epochs + 1) // 2

    @property
    def augmented_epochs(self) -> int:
        return self.first_half if self.augment_epochs is None else min(self.augment_epochs, self.epochs)

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "recipe":
            return self.lr if epoch < self.first_half else self.lr / 10
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
    geometry: tuple[tuple[int, int], tuple[int, int]]  # (input size, first feature map size), the same for all
    train: Dataset
    val: Dataset
    train_sizes: list[tuple[int, int]]  # (H, W) of every training image, from check_samples
    val_sizes: list[tuple[int, int]]
    folder: Path  # the output head folder; checkpoints/ and report/ go inside
    fingerprint: dict[str, Any] = field(default_factory=dict)  # what a resumed run must have in common
    processes: Processes = field(default_factory=Processes)
    progress: bool = True  # progress bars (the main process only)


@dataclass
class TrainOutcome:
    history: list[dict[str, Any]]  # one entry per finished epoch, as in report/train_log.jsonl
    best: dict[str, Any] | None  # the entry of the epoch whose weights were kept
    best_state: dict[str, torch.Tensor] | None
    stopped: bool  # True if a stop was asked for before the last epoch ended
    feature_seconds: float  # time spent filling the feature cache before the first epoch


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
        self.model = setup.model.to(self.device).train()
        self.net = DistributedDataParallel(self.model) if world > 1 else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.checkpoints = setup.folder / "checkpoints"
        self.report = setup.folder / "report"
        self.kept: list[tuple[int, Any]] = []  # (validation index, result) of the last validate(keep=...)
        # Workers are forked where the platform can: a head's loss from an external folder lives in a
        # package made at load time, which a spawned worker could not import.
        self._context = "fork" if options.workers and "fork" in mp.get_all_start_methods() else None

    # --- features -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _backbone(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Feature maps (B, C, h, w) of RGB images; plain no_grad (not inference mode): they feed autograd."""
        x = torch.cat([self.s.extractor.preprocess(image).tensor for image in images])
        with autocast(self.device, self.s.extractor.dtype):
            maps = self.s.extractor.backbone.forward_intermediates(x, self.s.cache.layers)
        return [m.float() for m in maps]

    def fill_cache(self) -> float:
        """Compute the features no run has cached yet: each process a share, each entry one writer."""
        p = self.s.processes
        start = time.perf_counter()
        samples = (*self.s.train.samples, *self.s.val.samples)
        images = list(dict.fromkeys([s.image for s in samples] + [s.previous for s in samples if s.previous]))
        mine = self.s.cache.missing(images)[p.rank:: p.world]  # every process lists the same, before any writes
        for image in tqdm(mine, desc="features", unit="img", disable=not (mine and p.main and self.s.progress)):
            self.s.cache.store(image, self._backbone([read_image(image)]))
        p.barrier()
        return time.perf_counter() - start

    def _features(self, items: list[dict[str, Any]], frame: str = "") -> list[torch.Tensor]:
        """The batch's maps, (B, C, h, w) per layer: cached ones as read, images through the backbone;
        ``frame="previous_"``: those of the frames before (flow pairs)."""
        fresh = [item[f"{frame}image"] for item in items if item[f"{frame}maps"] is None]
        computed = iter(zip(*self._backbone(fresh))) if fresh else iter(())
        per_item = [item[f"{frame}maps"] if item[f"{frame}maps"] is not None else list(next(computed))
                    for item in items]
        return [torch.stack([m.to(self.device) for m in layer]) for layer in zip(*per_item)]

    def _forward(self, net: torch.nn.Module, items: list[dict[str, Any]]) -> Any:
        """The head on a batch: with the frames before too for a temporal head (flow)."""
        if self.model.temporal:
            return net(self._features(items), self._features(items, "previous_"))
        return net(self._features(items))

    # --- loops --------------------------------------------------------------------------------------------
    def _loader(self, dataset: torch.utils.data.Dataset, order: Sequence[int]) -> DataLoader:
        return DataLoader(dataset, batch_size=self.local_batch, sampler=list(order), collate_fn=as_list,
                          num_workers=self.o.workers, multiprocessing_context=self._context)

    def _order(self, items: Items, epoch: int) -> list[int]:
        """This process's samples of ``epoch``, in order: a seeded shuffle, sharded (PyTorch's sampler)."""
        p = self.s.processes
        sampler = DistributedSampler(items, num_replicas=p.world, rank=p.rank, shuffle=True, seed=self.o.seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    def fit(self, stop: Callable[[], bool] = lambda: False, resume: bool = False,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainOutcome:
        """Train to the last epoch, or until ``stop()`` says so after a step; ``on_epoch`` gets each epoch's
        log entry in the main process (TensorBoard, for one)."""
        o, p = self.o, self.s.processes
        state = self._resume() if resume else {"epoch": 0, "step": 0, "running": {}, "history": [], "best": None}
        best_state = self._read_best() if state["best"] else None
        feature_seconds = self.fill_cache()
        train = Items(self.s.train, self.s.train_sizes, self.s.cache, self.s.loss, self.s.geometry, o.seed)
        for epoch in range(state["epoch"], o.epochs):
            start = time.perf_counter()
            train.epoch = epoch
            train.augment = o.augment if epoch < o.augmented_epochs else 0.0
            for group in self.optimizer.param_groups:
                group["lr"] = o.lr_at(epoch)
            running, skip = state["running"], state["step"]
            order = self._order(train, epoch)[skip * self.local_batch:]  # after a resume: only the steps not done
            bar = tqdm(self._loader(train, order), desc=f"epoch {epoch + 1}/{o.epochs}", unit="batch", leave=False,
                       initial=skip, total=skip + math.ceil(len(order) / self.local_batch),
                       disable=not (p.main and self.s.progress))
            for step, items in enumerate(bar, start=skip):
                losses = self._step(items, epoch, step)
                for k, v in losses.items():
                    running[k] = running.get(k, 0.0) + v
                running["steps"] = running.get("steps", 0) + 1
                bar.set_postfix(loss=f"{running['loss'] / running['steps']:.4f}")
                if p.any(stop()):  # all processes stop at the same step, or DDP would wait forever
                    running = p.mean(running)  # one process's sums stand for all: their mean is what is logged
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
            if p.main:
                if on_epoch is not None:
                    on_epoch(entry)
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
        position = [self.o.seed, epoch, step, self.s.processes.rank]
        torch.manual_seed(int(np.random.SeedSequence(position).generate_state(1, np.uint64)[0] >> np.uint64(1)))
        targets = to_device([item["target"] for item in items], self.device)
        with autocast(self.device, self.amp) if self.amp is not None else nullcontext():
            losses = self.s.loss(self._forward(self.net, items), targets)
        total = losses["loss"]
        if not torch.isfinite(total):
            parts = ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items())
            raise TrainingError(f"the loss is {total.item()} at epoch {epoch + 1}, step {step + 1} ({parts}); "
                                f"lower --lr, keep --clip on, or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.o.clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.o.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self, keep: int = 0) -> Meter:
        """The validation metric of the current weights over all processes; the first ``keep`` results go
        to ``self.kept`` (for the report's overlays)."""
        p = self.s.processes
        items = Items(self.s.val, self.s.val_sizes, self.s.cache, None, self.s.geometry, self.o.seed)
        meter = make_meter(self.task, self.s.val.class_names)
        self.kept = []
        self.model.eval()
        for batch in self._loader(items, range(p.rank, len(items), p.world)):  # each process its own share
            outputs = self._forward(self.model, batch)
            for i, item in enumerate(batch):
                image = PreparedImage(torch.empty(0), self.s.val_sizes[item["index"]], self.s.geometry[0])
                result = self.model.postprocess(take(outputs, i), image, self.s.params)
                meter.update(result, item["target"])
                if len(self.kept) < keep:
                    self.kept.append((item["index"], result))
        self.model.train()
        gathered = p.gather(meter)
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
            "settings": self._settings(),
        })

    def _settings(self) -> dict[str, Any]:
        """What a resumed run must share with the stopped one to end where the whole run would have."""
        options = {k: v for k, v in asdict(self.o).items() if k != "workers"}
        return {"options": options, "cache": self.s.cache.key, "processes": self.s.processes.world,
                **self.s.fingerprint}

    def _resume(self) -> dict[str, Any]:
        path = self.checkpoints / "last.pt"
        if not path.is_file():
            raise ConfigError(f"--resume: {path} does not exist (nothing to resume; start without --resume)")
        saved = torch.load(path, map_location="cpu", weights_only=False)
        now = self._settings()
        changed = sorted(k for k in {*now, *saved["settings"]} if now.get(k) != saved["settings"].get(k))
        if changed:
            raise ConfigError(f"--resume: {path} was made with other settings ({', '.join(changed)} differ); resume "
                              f"with the same command, or start again with --overwrite")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        if self.s.processes.main:
            log.info("resuming at epoch %d, step %d from %s", saved["epoch"] + 1, saved["step"], path)
        return {k: saved[k] for k in ("epoch", "step", "running", "history", "best")}

    def _read_best(self) -> dict[str, torch.Tensor]:
        path = self.checkpoints / "best.pt"
        if not path.is_file():
            raise ConfigError(f"--resume: {path} is missing (last.pt says an epoch was kept); start again with "
                              f"--overwrite")
        return torch.load(path, map_location="cpu", weights_only=True)

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
