"""`dinov3 heads`, `check` and `backbones`: what is installed, found and usable on this machine."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform

import cv2
import numpy as np
import torch

from dinov3_toolkit.backbone import WeightsNotFoundError, get_backbone_spec, list_backbones, resolve_weights
from dinov3_toolkit.backbone import weights as backbone_weights
from dinov3_toolkit.device import PRECISIONS, autocast
from dinov3_toolkit.heads.loader import TEMPLATES_DIR, discover, weights_candidates

from .common import EXIT_OK, EXIT_PARTIAL


def cmd_heads(args: argparse.Namespace) -> int:
    """Every head found, its task, classes and layers, and whether its weights are in place; the templates too,
    marked, since naming one runs it (`--heads retinanet`) and an unknown name lists them."""
    manifests, failed = discover(args.head_dir, templates=True)
    print(f"{'head':<16} {'task':<14} {'classes':>7}  {'layers':<10} weights")
    for name, manifest in manifests.items():
        names = manifest.read_class_names() if manifest.classes else ()
        classes = len(names)
        candidates = weights_candidates(manifest)
        found = next((p for p in candidates if p.is_file()), None)
        template = manifest.folder.parent == TEMPLATES_DIR
        if found is not None:
            weights = ("template, " if template else "") + f"found: {found}"
        elif template:
            weights = f"template: runs only when named, no published weights (train it: dinov3 train {name} ...)"
        elif candidates:
            weights = f"MISSING (looked for {', '.join(str(p) for p in candidates)})"
        else:
            weights = "none needed"
        print(f"{name:<16} {manifest.task:<14} {classes:>7}  {str(list(manifest.layers)):<10} {weights}")
        if args.verbose:
            print(f"{'':<16} {manifest.description} [{manifest.folder}]")
            if classes:
                print(f"{'':<16} classes: {', '.join(names[:12])}{', ...' if classes > 12 else ''}")
    for name, error in failed.items():
        print(f"{name:<16} BROKEN: {error}")
    print("Every head but the templates runs by default; --heads picks some, e.g. --heads detection,depth.")
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """What this machine offers: versions, devices and precisions that work, where weights are."""
    print(f"python {platform.python_version()} on {platform.platform()}")
    cuda_build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    print(f"torch {torch.__version__} ({cuda_build}), numpy {np.__version__}, opencv {cv2.__version__}")
    for package in ("safetensors", "rosbags", "tqdm", "transformers"):
        print(f"  {package:<13} {_version(package)}")
    for module in ("rclpy", "cv_bridge", "vision_msgs"):
        found = importlib.util.find_spec(module) is not None
        print(f"  {module:<13} {'importable' if found else 'not importable (needed only by the ROS node)'}")

    print("\ndevices and precisions (a small convolution and matmul run under each):")
    devices = [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    for device in devices:
        if device.type == "cuda":
            p = torch.cuda.get_device_properties(device)
            name = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}"
        else:
            name = platform.processor() or platform.machine()
        support = ", ".join(f"{precision} {_precision_works(device, dtype)}" for precision, dtype in PRECISIONS.items())
        print(f"  {str(device):<8} {name}: {support}")
    if not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if not torch.version.cuda else "no CUDA device or driver found"
        print(f"  no CUDA device: {why}; 'auto' (the default) and 'cuda' run on the CPU")

    print("\nweights are looked for in (first match wins):")
    for folder in backbone_weights.search_dirs():
        print(f"  {folder}" + ("" if folder.is_dir() else "  (does not exist)"))
    found = []
    for backbone in list_backbones():
        try:
            found.append(f"{backbone}: {resolve_weights(get_backbone_spec(backbone))}")
        except WeightsNotFoundError:
            pass
    print("backbone weights found:" + "".join(f"\n  {line}" for line in found) if found else
          "backbone weights found: none (README, Weights: where to get them)")
    print()
    return cmd_heads(argparse.Namespace(head_dir=args.head_dir, verbose=False))


# What each weights tag of a backbone name was pretrained on (Meta's DINOv3 release).
TAG_DATA = {
    "lvd1689m": "LVD-1689M, 1.7 billion curated web images",
    "sat493m": "SAT-493M, 493 million satellite images",
}


def cmd_backbones(args: argparse.Namespace) -> int:
    """Every backbone variant, its parameter count, its short name, and its weights file if found."""
    print(f"{'name':<24} {'params':>10}  {'short name':<15} weights")
    names = list_backbones()
    for name in names:
        spec = get_backbone_spec(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in spec.build().parameters())
        short = spec.arch if get_backbone_spec(spec.arch).name == name else ""  # the tag a bare variant picks
        try:
            found = f"found: {resolve_weights(spec)}"
        except WeightsNotFoundError:
            found = f"not found (expects {spec.weights.meta_filename}"
            found += f" or {spec.weights.hf_repo})" if spec.weights.hf_repo else ")"
        print(f"{name:<24} {params / 1e6:>9.1f}M  {short:<15} {found}")
    tags = dict.fromkeys(get_backbone_spec(name).weights.tag for name in names)  # in order, once each
    print("\nA name is variant.weights: the architecture, then the data its weights were pretrained on ("
          + "; ".join(f"{tag}: {TAG_DATA.get(tag, 'see Meta')}" for tag in tags) + ").\n"
          "--backbone takes either; the short name is the variant alone and picks its first weights "
          f"(vits16plus is {get_backbone_spec('vits16plus').name}).")
    return EXIT_OK


def _precision_works(device: torch.device, dtype: torch.dtype) -> str:
    try:
        with torch.inference_mode(), autocast(device, dtype):
            x = torch.randn(1, 8, 16, 16, device=device)
            y = torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3, device=device))
            (y.flatten(1) @ y.flatten(1).T).sum().item()
        return "ok"
    except Exception as e:  # the point is to find out, whatever the failure
        return f"FAILS ({type(e).__name__})"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
