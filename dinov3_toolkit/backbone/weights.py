"""Finding a backbone's weights file on disk.

DINOv3 weights cannot be redistributed, so we never download: we look where a
user is likely to have put them, in this order:

1. an explicit path (a file, or a folder to search);
2. the folders in ``$DINOV3_WEIGHTS_DIR`` (``os.pathsep``-separated);
3. this package's ``weights/`` folder: at the repository root in a source or
   editable install, ``<prefix>/share/dinov3_ros/weights`` once installed (by
   pip or colcon);
4. torch hub's checkpoint folder (where Meta's ``torch.hub.load`` saves files);
5. the Hugging Face hub cache (where ``hf download`` saves files).

In a folder we accept Meta's official file name, or a Hugging Face download:
``<repo-name>/model.safetensors`` or ``<repo-name>.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import Dinov3Error
from .registry import BackboneSpec

WEIGHTS_DIR_ENV = "DINOV3_WEIGHTS_DIR"


def package_weights_dir(module_file: str | Path = __file__) -> Path:
    """``weights/`` of this package, in a source tree or where setup.py installed it."""
    root = Path(module_file).resolve().parents[2]  # the repo root, or site-packages once installed
    if root.name in ("site-packages", "dist-packages"):
        prefix = root.parents[2]  # <prefix>/lib/pythonX.Y/site-packages
        return prefix / "share" / "dinov3_ros" / "weights"
    return root / "weights"


PACKAGE_WEIGHTS_DIR = package_weights_dir()


class WeightsNotFoundError(Dinov3Error, FileNotFoundError):
    """No weights file for a backbone was found; the message says where we looked."""


def _hf_cache_dir() -> Path:
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def user_weights_dirs() -> list[Path]:
    """The folders in ``$DINOV3_WEIGHTS_DIR``, then this package's ``weights/`` (heads look here too)."""
    env = [Path(p) for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if p]
    return [*env, PACKAGE_WEIGHTS_DIR]


def search_dirs() -> list[Path]:
    """The folders searched when no explicit path is given, in order."""
    return [*user_weights_dirs(), Path(torch.hub.get_dir()) / "checkpoints", _hf_cache_dir()]


def expected_names(spec: BackboneSpec) -> list[str]:
    """File names (relative to a search folder) that hold ``spec``'s weights."""
    names = [spec.weights.meta_filename]
    if spec.weights.hf_repo:
        repo = spec.weights.hf_repo.split("/")[-1]
        names += [f"{repo}/model.safetensors", f"{repo}.safetensors"]
    return names


def _find_in(folder: Path, spec: BackboneSpec) -> Path | None:
    for name in expected_names(spec):
        if (folder / name).is_file():
            return folder / name
    if spec.weights.hf_repo:
        return _find_in_hf_cache(folder / f"models--{spec.weights.hf_repo.replace('/', '--')}")
    return None


def _find_in_hf_cache(repo_dir: Path) -> Path | None:
    """The snapshot ``refs/main`` points to, else the newest one (the hub cache layout)."""
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        current = repo_dir / "snapshots" / ref.read_text().strip() / "model.safetensors"
        if current.is_file():
            return current
    snapshots = list(repo_dir.glob("snapshots/*/model.safetensors"))
    return max(snapshots, key=lambda p: p.stat().st_mtime) if snapshots else None


def resolve_weights(spec: BackboneSpec, path: str | Path | None = None) -> Path:
    """The weights file for ``spec``, or a ``WeightsNotFoundError`` that says where we looked."""
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        if not path.is_dir():
            raise WeightsNotFoundError(f"weights path {path} for backbone {spec.name} does not exist (a weights "
                                       f"file, or a folder holding one, was expected). Without a path, these "
                                       f"folders are searched:\n{_where_to_put(spec, search_dirs())}")
        folders = [path]
    else:
        folders = search_dirs()
    for folder in folders:
        found = _find_in(folder, spec)
        if found is not None:
            return found
    raise WeightsNotFoundError(f"no weights for backbone {spec.name}. Looked in:\n{_where_to_put(spec, folders)}")


def _where_to_put(spec: BackboneSpec, folders: list[Path]) -> str:
    """``folders``, the file names looked for in them and where to get the file: every not-found message's end."""
    looked = "\n".join(f"  {folder}" for folder in folders)
    names = "\n".join(f"  {name}" for name in expected_names(spec))
    source = f"Hugging Face repo {spec.weights.hf_repo} or " if spec.weights.hf_repo else ""
    return (f"{looked}\nfor a file named:\n{names}\n"
            f"Get them from the {source}Meta's DINOv3 release (both need the licence accepted), "
            f"put the file in one of those folders or pass its path; see weights/README.md.")
