"""Shared test helpers: random weights that exercise every parameter; the shared reference vectors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with random values of a realistic scale.

    Unlike the default init (LayerScale 1e-5, zero biases), this makes every block,
    bias and norm matter, so a wrongly mapped tensor shows up in the features.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            scale_like = name.endswith(("gamma", "lambda1")) or ("norm" in name and name.endswith("weight"))
            if scale_like:
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias") or param.dim() == 1:
                param.copy_(0.05 * noise)
            else:
                fan_in = param[0].numel() if param.dim() > 1 else 1
                param.copy_(noise / fan_in**0.5)
    return model


# ROS 2 tests talk over DDS: keep discovery on this machine (no traffic beyond loopback) and give
# each pytest run its own domain, so that two runs on one machine never see each other's nodes.
# Set before any test imports rclpy; node processes the tests start inherit both.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
if os.environ.get("ROS_DISTRO") == "humble":  # Humble knows only the older switch (Jazzy warns it is deprecated)
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


# The reference tensors of ../shared/vectors (see shared/specs/heads.md section 10) are too
# large to commit (47 MB); they sit next to the repository, or where DINOV3_VECTORS_DIR says.
VECTORS_DIR = Path(os.environ.get("DINOV3_VECTORS_DIR", Path(__file__).resolve().parents[2] / "shared" / "vectors"))


def load_vector(name: str) -> dict:
    """``<VECTORS_DIR>/<name>.pt``, or skip the test saying where it was looked for."""
    path = VECTORS_DIR / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"reference vectors {path} not found (set DINOV3_VECTORS_DIR to the shared vectors folder)")
    if not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("reading the reference vectors needs torch >= 2.5 (torch.serialization.safe_globals)")
    from torch.torch_version import TorchVersion  # the files record the torch version they were made with

    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(path, map_location="cpu", weights_only=True)


def search_weights_only_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Backbone and head weights are looked for in ``folder`` alone, whatever this machine keeps elsewhere."""
    monkeypatch.setattr("dinov3_toolkit.backbone.weights.search_dirs", lambda: [folder])
    monkeypatch.setattr("dinov3_toolkit.heads.loader.user_weights_dirs", lambda: [folder])


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """No weights file is found anywhere: weights are searched only in an empty folder (returned)."""
    empty = tmp_path / "no_weights"
    empty.mkdir()
    search_weights_only_in(monkeypatch, empty)
    return empty


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    """A small engine (vits16 at 32x32, CPU) on random weights with every built-in head.

    No weights file on disk is seen, and the detection threshold is 0 (the
    manifest's minimum) so that random weights still give a few boxes.
    """
    from dinov3_toolkit.engine import Engine

    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, tmp_path_factory.mktemp("no-weights"))
        yield Engine.create(backbone="vits16", device="cpu", size=32, heads=["detection", "segmentation", "depth"],
                            random_weights=True, head_params={"detection": {"score_threshold": 0.0,
                                                                            "max_detections": 5}})
