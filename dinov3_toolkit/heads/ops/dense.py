"""Resampling dense head outputs (class logits, depth maps) to the original image, on the device.

Dense heads predict at a fraction of the input resolution. Resampling once,
straight to the camera frame, replaces the published heads' two steps (to a
fixed 320x320 inside the head, then to the input size) and keeps the work on
the device: only the final (H, W) map is copied to the host.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...results import label_dtype

#: Classes upsampled at a time by ``labels_at``: 16 x 720 x 1280 float32 is 59 MB,
#: where all 134 COCO-panoptic classes at once would be 494 MB. For narrow outputs
#: PyTorch's CPU kernel vectorises across channels, and a class's last bit can then
#: depend on its SIMD lane; a multiple of 16 floats (one AVX-512 register) keeps
#: identical classes in lanes that compute them identically.
CLASS_CHUNK = 16

#: Relative slack of the candidate test in ``possible_winners``: far above the few
#: float32 roundings (~5e-7 relative) of a bilinear sample, so no winner is pruned.
_PRUNE_SLACK = 1e-5


def labels_at(logits: torch.Tensor, size: tuple[int, int], chunk: int = CLASS_CHUNK) -> torch.Tensor:
    """The per-pixel argmax of ``logits`` (1, K, h, w) upsampled bilinearly to ``size`` (H, W).

    Equal to ``F.interpolate(logits, size, mode="bilinear", align_corners=False).argmax(1)[0]``
    (ties go to the lowest class index in both), at a fraction of the cost:

    * only the classes that can win somewhere (``possible_winners``, usually a
      handful of the 134) are upsampled, and none when a single class can;
    * those are upsampled ``chunk`` at a time with a running max, so memory
      stays near chunk x H x W values instead of K x H x W.

    Returns an (H, W) int64 tensor on ``logits``' device.
    """
    _check_map(logits, "logits")
    size = _check_size(size)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    classes = possible_winners(logits)
    if len(classes) == 1:
        return torch.full(size, int(classes[0]), dtype=torch.int64, device=logits.device)
    if len(classes) < logits.shape[1]:
        # Pad to whole chunks with a plane that never wins, so every candidate is upsampled in a
        # full SIMD register: identical classes then get identical values and the lower one wins.
        lowest = logits.amin()
        floor = lowest - lowest.abs() - 1  # below every class, finite
        plane = floor.expand(1, -len(classes) % CLASS_CHUNK, *logits.shape[-2:])
        return classes[_chunked_argmax(torch.cat([logits[:, classes], plane], 1), size, chunk)]
    return _chunked_argmax(logits, size, chunk)


def possible_winners(logits: torch.Tensor) -> torch.Tensor:
    """The classes (ascending indices) that can be the argmax anywhere after bilinear upsampling.

    Any upsampled pixel is a convex combination of one 2x2 window of cells. In a
    window, class k can only win if its largest cell value reaches the best
    smallest cell value of any class; classes that never do are dropped. Exact up
    to a slack far above float rounding (``_PRUNE_SLACK``). Every class is kept
    when the logits are not all finite.
    """
    x = logits.float()
    every = torch.arange(x.shape[1], device=x.device)
    if not bool(torch.isfinite(x).all()):
        return every
    windows = F.pad(x, (0, 1, 0, 1), mode="replicate")  # (1, K, h+1, w+1): edge cells pair with themselves
    upper = F.max_pool2d(windows, 2, stride=1)[0]  # (K, h, w): each class's max over each 2x2 window
    lower = -F.max_pool2d(-windows, 2, stride=1)[0]  # (K, h, w): its min
    reach = lower.amax(0) - _PRUNE_SLACK * (1 + x.abs().amax())  # (h, w): what a winner must reach
    return every[(upper >= reach).flatten(1).any(1)]


def _chunked_argmax(logits: torch.Tensor, size: tuple[int, int], chunk: int) -> torch.Tensor:
    """Upsample ``chunk`` classes at a time, keeping the running max; on a tie the lower class wins."""
    best = labels = None
    for start in range(0, logits.shape[1], chunk):
        up = upsample_bilinear(logits[:, start : start + chunk], size)  # (1, c, H, W)
        value, index = up[0].max(dim=0)  # (H, W) each; the first maximum within the chunk
        if best is None:
            best, labels = value, index
        else:
            # Strictly greater: on a tie the earlier chunk, i.e. the lower class index, keeps the pixel.
            better = value > best
            best = torch.where(better, value, best)
            labels = torch.where(better, index + start, labels)
    return labels


def labels_to_host(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """An (H, W) class-index tensor as the host array ``SemanticLabels`` wants (uint8, or uint16 above 256 classes).

    Narrowed on the device first so that only 1 (or 4) bytes per pixel cross to the
    host; torch < 2.3 has no uint16, so those go as int32 and are narrowed on the host.
    """
    dtype = label_dtype(num_classes)
    small = labels.to(torch.uint8 if dtype is np.uint8 else torch.int32)
    return small.cpu().numpy().astype(dtype, copy=False)


def resize_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1, 1, h, w) map resized bilinearly to ``size`` (H, W): an (H, W) float32 tensor on its device."""
    _check_map(x, "map")
    if x.shape[1] != 1:
        raise ValueError(f"map must have one channel, (1, 1, h, w), got shape {tuple(x.shape)}")
    return upsample_bilinear(x.float(), _check_size(size))[0, 0]


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, H, W), bilinear with ``align_corners=False`` as every published head was trained."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _check_map(x: object, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[0] != 1 or 0 in x.shape:
        raise ValueError(f"{what} must be (1, C, h, w) for one frame, got shape {tuple(x.shape)}")


def _check_size(size: object) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be (H, W), two positive ints, got {size!r}")
    return int(size[0]), int(size[1])
