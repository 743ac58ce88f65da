"""Photometric augmentation of training images, as in the published detection recipe (heads spec §8.1).

Only pixel values change, never geometry, so targets stay valid as they are.
Each step is drawn with its own probability: brightness +-32, contrast x0.8-1.2,
saturation x0.8-1.2 and hue +-10 degrees (each p 0.5), Gaussian blur 3 or 5
(p 0.3), Gaussian noise sigma 5-20 (p 0.3). Unlike the reference, hue and
saturation are changed in HSV computed from RGB (it converted RGB as BGR).
The random generator is passed in, so a sample's augmentation in an epoch is
the same on every run: a resumed run trains on exactly the images the
uninterrupted one did.
"""

from __future__ import annotations

import cv2
import numpy as np


def augment_photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A changed copy of RGB uint8 ``image`` (H, W, 3)."""
    x = image.astype(np.float32)
    if rng.random() < 0.5:
        x += rng.uniform(-32, 32)
    if rng.random() < 0.5:
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.2) + mean
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(0.8, 1.2)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-10, 10) / 2) % 180  # OpenCV hue is degrees / 2
        x = cv2.cvtColor(np.clip(hsv, 0, [180, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        x = cv2.GaussianBlur(x, (k, k), 0)
    if rng.random() < 0.3:
        x += rng.normal(0.0, rng.uniform(5, 20), size=x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
