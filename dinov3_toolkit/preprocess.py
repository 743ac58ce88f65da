"""Camera frame -> normalised model input, on the model's device.

The uint8 frame is uploaded as it is (a quarter of the bytes of a float image),
then converted, resized and normalised on the device. Two resize modes:

* ``stretch`` (default): to ``size`` x ``size``, ignoring the aspect ratio. The
  published heads were trained on 640x640 stretched COCO images, so this is
  what they expect.
* ``keep_aspect``: the long side becomes ``size``, the short side the nearest
  multiple of the backbone's ``size_multiple`` (16 for ViTs, 32 for ConvNeXt),
  so feature cells stay square.

Resizing is bilinear with antialiasing, as Meta's reference transform does;
without it, downscaling a 1280x720 camera frame aliases. The result records
both sizes so that outputs can be mapped back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import DEFAULTS
from .errors import ConfigError

RESIZE_MODES = ("stretch", "keep_aspect")


@dataclass(frozen=True)
class PreparedImage:
    """A normalised (1, 3, h, w) float32 tensor and the geometry needed to undo the resize."""

    tensor: torch.Tensor
    original_size: tuple[int, int]  # (H, W) of the frame as received
    input_size: tuple[int, int]  # (h, w) fed to the backbone

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): multiply input-frame coordinates by these to get original-frame ones."""
        return self.original_size[0] / self.input_size[0], self.original_size[1] / self.input_size[1]


def check_rgb_image(image: object) -> np.ndarray:
    """Return ``image`` if it is an RGB uint8 H x W x 3 array; else raise naming what was expected."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H x W x 3, uint8 RGB), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be H x W x 3 (RGB), got shape {image.shape}")
    return image


class Preprocessor:
    """Resize and normalise RGB uint8 frames for one backbone on one device."""

    def __init__(
        self,
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        size: int = DEFAULTS.size,
        mode: str = DEFAULTS.resize_mode,
        size_multiple: int = 16,
        device: torch.device | str = "cpu",
    ) -> None:
        if mode not in RESIZE_MODES:
            raise ConfigError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < size_multiple or size % size_multiple:
            raise ConfigError(f"image size must be a positive multiple of {size_multiple}, got {size!r}")
        self.size = size
        self.mode = mode
        self.size_multiple = size_multiple
        self.device = torch.device(device)
        # x_norm = (x / 255 - mean) / std = x * scale + shift, folded into one multiply-add.
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an H x W frame is resized to."""
        if self.mode == "stretch":
            return self.size, self.size
        m = self.size_multiple
        if height >= width:
            return self.size, max(m, round(width * self.size / height / m) * m)
        return max(m, round(height * self.size / width / m) * m), self.size

    def __call__(self, image: np.ndarray) -> PreparedImage:
        image = check_rgb_image(image)
        height, width = image.shape[:2]
        h, w = self.input_size(height, width)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, H, W), 0..255
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        x = x * self._scale + self._shift  # (1, 3, h, w) normalised
        return PreparedImage(tensor=x, original_size=(height, width), input_size=(h, w))
