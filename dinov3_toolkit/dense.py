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

from .results import label_dtype

#: Classes upsampled at a time by ``labels_at``: 16 x 720 x 1280 float32 is 59 MB,
#: where all 134 COCO-panoptic classes at once would be 494 MB. For narrow outputs
#: PyTorch's CPU kernel vectorises across channels, and a class's last bit can then
#: depend on its SIMD lane; a multiple of 16 floats (one AVX-512 register) keeps
#: every class in the lane it has in a single call over all classes.
CLASS_CHUNK = 16


def labels_at(logits: torch.Tensor, size: tuple[int, int], chunk: int = CLASS_CHUNK) -> torch.Tensor:
    """The per-pixel argmax of ``logits`` (1, K, h, w) upsampled bilinearly to ``size`` (H, W).

    Equal to ``F.interpolate(logits, size, mode="bilinear", align_corners=False).argmax(1)[0]``
    (ties go to the lowest class index in both), but the classes are upsampled
    ``chunk`` at a time with a running max, so memory stays near chunk x H x W
    values instead of K x H x W. Returns an (H, W) int64 tensor on ``logits``' device.
    (With a ``chunk`` that is not a multiple of 16, values may differ from the
    one-call upsampling in the last bit, so exact ties may then break differently.)
    """
    _check_map(logits, "logits")
    size = _check_size(size)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
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
