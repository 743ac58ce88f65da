"""Reading, checking and writing backbone checkpoints.

Reading never executes code from the file: safetensors files are plain
tensors, and ``.pth`` files go through ``torch.load(weights_only=True)``, which
refuses any pickled object other than tensors and plain containers. Loading is
strict: every missing key, unexpected key or wrong shape is reported by name.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

from .errors import Dinov3Error

_SHOWN = 8  # how many offending keys an error message lists


class CheckpointError(Dinov3Error, RuntimeError):
    """A weights file that cannot be read or does not fit the model."""


_LFS_POINTER = b"version https://git-lfs"  # what a clone without Git LFS holds instead of the file


def _is_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON header starting with "{".
    return len(head) >= 9 and head[8:9] == b"{"


def _is_pytorch(head: bytes) -> bool:
    # torch.save writes a zip archive; the legacy format (and any pickle) starts with the PROTO opcode.
    return head.startswith((b"PK\x03\x04", b"\x80"))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors or ``.pth`` file into a flat ``{key: tensor}`` dict on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as e:  # e.g. no read permission
        raise CheckpointError(f"weights file {path} cannot be read: {e}") from e
    if not head:
        raise CheckpointError(f"weights file {path} is empty (0 bytes): an interrupted download or copy?")
    if not (_is_safetensors(head) or _is_pytorch(head)):
        lfs = (" It is a Git LFS pointer, not the weights: fetch the file itself (git lfs pull)."
               if head.startswith(_LFS_POINTER) else "")
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint or safetensors file "
                              f"(it starts with {head[:24]!r}).{lfs}")
    if _is_safetensors(head):
        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled objects other than tensors "
            f"(only weights are accepted, code in a checkpoint is never run): {e}"
        ) from e
    except Exception as e:  # torch.load fails in many ways on files that are not checkpoints
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {e}") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (got {type(obj).__name__})")
    for key, value in obj.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            nested = " (a training checkpoint? save the model's state_dict() alone)" if isinstance(value, dict) else ""
            raise CheckpointError(f"{path} does not hold a state dict (names to tensors): it maps {key!r} to a "
                                  f"{type(value).__name__}{nested}")
    return dict(obj)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def check_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Every way ``state_dict`` fails to fit ``model`` exactly, one line each (empty: it fits)."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    wrong = [
        f"{k} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        problems.append(f"{len(wrong)} wrong shape(s): {_listing(wrong)}")
    # What the values are, not only where they go: an integer tensor for a float parameter is a different
    # file, and one NaN makes every output NaN. Floating tensors of another precision are cast on loading.
    kinds = [f"{k} is {v.dtype}, expected a floating-point tensor" for k, v in state_dict.items()
             if k in expected and expected[k].is_floating_point() and not v.is_floating_point()]
    if kinds:
        problems.append(f"{len(kinds)} tensor(s) of the wrong kind: {_listing(kinds)}")
    broken = [f"{k} ({n} of {v.numel()})" for k, v in state_dict.items()
              if k in expected and v.is_floating_point() and (n := _non_finite(v))]
    if broken:
        problems.append(f"{len(broken)} tensor(s) with NaN or infinite values: {_listing(broken)}")
    return problems


def _non_finite(tensor: torch.Tensor) -> int:
    """How many values of ``tensor`` are NaN or infinite. One sum first, 10x faster than a full check: any such
    value makes the sum non-finite, and only then (or when the sum overflows) are they counted."""
    if bool(torch.isfinite(tensor.sum())):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def load_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, assign: bool = False
) -> None:
    """Load strictly, or raise a ``CheckpointError`` naming every mismatch.

    ``assign`` replaces the model's tensors instead of copying into them (for models built on ``meta``).
    """
    problems = check_state_dict(state_dict, model)
    if problems:
        lines = "\n  ".join(problems)
        raise CheckpointError(f"{source} does not fit the model:\n  {lines}")
    model.load_state_dict(state_dict, strict=True, assign=assign)


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write a state dict; ``.safetensors`` by extension, else a plain tensor ``.pth``. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        save_safetensors(_untie(tensors), str(path))
    else:
        torch.save(tensors, path)


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (ConvNeXt's norm / norms.3 alias).
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
