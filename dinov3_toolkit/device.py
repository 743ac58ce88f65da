"""Where and at what precision the models run.

``auto``, ``cpu``, ``cuda`` and ``cuda:N`` are accepted. ``auto`` (the default) is
the first GPU where CUDA works, else the CPU, silently: nothing particular was asked
for. Asking for CUDA on a machine without it falls back to the CPU with a warning,
so a launch file written for the robot still starts on a laptop. Reduced precision
uses autocast: weights stay fp32, matmuls run in fp16/bf16, and the parts Meta keeps
in fp32 (norms, RoPE) stay there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import re

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_device_name(name: str) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the syntax only: ``resolve_device`` decides
    whether that GPU exists), else a ``ConfigError``."""
    text = str(name).strip()
    if not re.fullmatch(rf"{AUTO}|cpu|cuda(:\d+)?", text):
        raise ConfigError(f"device must be '{AUTO}', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return text


def resolve_device(name: str) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a device that exists on this machine."""
    text = check_device_name(name)
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if text != AUTO:  # CUDA was asked for: say that it is not what runs
            log.warning("device %r requested but CUDA is not available: running on the CPU", name)
        return torch.device("cpu")
    index = int(text.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device {name!r} does not exist: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def resolve_precision(name: str) -> torch.dtype:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}") from None


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW = 64 * 2**20  # buffers up to this size come from the reusable heap, not fresh mmaps


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than hand it back to the kernel.

    Every frame allocates the same large activation buffers. By default glibc maps
    big ones fresh and unmaps them on free, so each frame pays a page fault per 4 KiB
    of them; on the CPU that is a third of the depth head's time (ViT-S+ at 640:
    154 -> 123 ms). The process keeps its peak memory instead. Process-wide, like
    PyTorch's advice to preload jemalloc; a no-op (False) where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BELOW))
