"""Several processes through torchrun: which one this is, and the few collective steps training needs.

`dinov3 train` runs unchanged under ``torchrun --nproc_per_node N``: torchrun sets
RANK / WORLD_SIZE / LOCAL_RANK, and PyTorch's DistributedDataParallel averages
the gradients. NCCL joins GPUs, gloo joins CPU processes (how the tests run it).
One process alone needs no process group at all.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..device import AUTO
from ..errors import ConfigError

TIMEOUT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and prints: the cache, checkpoints, logs, the head folder."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the processes (every process gets it)."""
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is True on any (a stop asked for in one stops all)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (pickled: keep it small)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def join(device: str) -> tuple[Processes, str]:
    """This process's place among torchrun's, and its device (``cuda`` becomes ``cuda:<local rank>``; ``auto``
    too where CUDA works, else ``cpu``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == AUTO:  # each process its own GPU, not every process the first one
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if device not in ("cuda", f"cuda:{local_rank}"):
            raise ConfigError(f"under torchrun each process takes the GPU of its local rank; use --device cuda, "
                              f"not {device!r}")
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank >= found:
            raise ConfigError(f"process {local_rank} of this machine needs GPU {local_rank} but {found} GPU(s) are "
                              f"visible; start at most {found} processes per machine, or use --device cpu")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # The processes wait for each other while the feature cache fills: allow hours, not PyTorch's minutes.
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
    return Processes(rank, world, local_rank), device


def leave(processes: Processes) -> None:
    if processes.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
