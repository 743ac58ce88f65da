"""What ``dinov3 train`` leaves behind: a head folder the node loads as it is.

    head_<name>/
      head.yaml          the template's, with the classes, the backbone width, trained_on and provenance
      model.py loss.py   the template's code, copied (so the folder travels alone)
      class_names.txt    from the data
      weights/model.pth  the best epoch's weights (by the validation metric)
      report/            metrics.json, train_log.jsonl, curves and plots, a few validation overlays
      checkpoints/       last.pt (to --resume) and best.pt; not needed on the robot

The folder's name is the head's name on the robot, so it may not be a built-in
head's: discovery keeps the first head of a name, and the built-in one would win.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoint import save_state_dict
from ..errors import ConfigError, OutputTaken
from ..heads.loader import BUILTIN_DIR
from ..heads.manifest import FOLDER_PREFIX, MANIFEST, HeadManifest

WEIGHTS = "weights/model.pth"
CLASS_NAMES = "class_names.txt"
_RUN_DIRS = ("report", "checkpoints")  # written by the run, never copied from a template
_NOT_COPIED = {"weights", "__pycache__", *_RUN_DIRS}


def check_output(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder name the node could not load, or an earlier run that would be lost; before any work."""
    if not folder.name.startswith(FOLDER_PREFIX) or folder.name == FOLDER_PREFIX:
        raise ConfigError(f"the output folder's name is the head's name and must be {FOLDER_PREFIX}<name>, "
                          f"got {folder.name!r} (e.g. --out heads/{FOLDER_PREFIX}shapes)")
    if (BUILTIN_DIR / folder.name).is_dir():
        raise ConfigError(f"{folder.name} is a built-in head's name, which would hide the trained one; "
                          f"choose another (e.g. {folder.name}_mine)")
    if resume:
        return
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OutputTaken(f"{folder} is not empty; pass --resume to continue its training, --overwrite to "
                              f"start again, or choose another --out")
        if not (folder / MANIFEST).is_file() and not (folder / "checkpoints").is_dir():
            raise OutputTaken(f"{folder} does not look like a trained head folder; refusing to overwrite it")
        shutil.rmtree(folder)


def write_head_folder(
    folder: Path,
    template: HeadManifest,
    *,
    class_names: Sequence[str],
    args: Mapping[str, Any],
    loss_args: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    trained_on: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> None:
    """Copy the template's code, then write the manifest, class names and weights next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = {*_NOT_COPIED, MANIFEST, *([template.classes.name] if template.classes else [])}
    for item in template.folder.iterdir():
        if item.name in skip or item.resolve() == folder.resolve():
            continue
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, target)
    manifest: dict[str, Any] = {
        "description": trained_description(template, class_names, provenance.get("data", "own data")),
        "task": template.task,
        "model": f"{template.module}.{template.class_name}",
        "args": dict(args),
    }
    if class_names:
        (folder / CLASS_NAMES).write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        manifest["classes"] = CLASS_NAMES
    manifest["weights"] = WEIGHTS
    manifest["layers"] = list(template.layers)
    manifest["trained_on"] = dict(trained_on)
    if template.task == "depth":  # the data sets' depth is in metres (training/data/folders.py), so is the head's
        manifest["depth"] = {"unit": "m", "kind": "metric"}
    if template.params:
        manifest["params"] = {name: _param_entry(spec) for name, spec in template.params.items()}
    if template.threshold_param:
        manifest["threshold_param"] = template.threshold_param
    if template.loss:
        manifest["loss"] = ".".join(template.loss)
        if loss_args:
            manifest["loss_args"] = dict(loss_args)
    manifest["provenance"] = dict(provenance)
    save_state_dict(state_dict, folder / WEIGHTS)
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    (folder / MANIFEST).write_text(f"# Written by dinov3 train; provenance says from what.\n{text}", encoding="utf-8")


def trained_description(template: HeadManifest, class_names: Sequence[str], data: str) -> str:
    """The template's description with what the training changed: its classes, and depth in metres.

    A template says what it was made for ("..., COCO 80 classes"); a head trained on three classes
    that still says so misleads whoever reads ``dinov3 heads`` or the node's start log.
    """
    kept = [part for part in _top_level_parts(template.description) if not re.search(r"\bclasses\b", part)]
    if template.task == "depth":  # the data's depth is in metres (training/data/folders.py)
        kept = [re.sub(r";?\s*units undocumented", "", part) for part in kept] + ["metric depth in metres"]
    if class_names:
        shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        kept.append(f"{len(class_names)} classes ({shown})")
    return f"{', '.join(kept)} - trained by dinov3 train on {data}"


def _top_level_parts(text: str) -> list[str]:
    """Split on the commas outside parentheses: "FCOS (a, b), COCO" -> ["FCOS (a, b)", "COCO"]."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _param_entry(spec: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"default": spec.default}
    for key in ("min", "max"):
        if getattr(spec, key) is not None:
            entry[key] = getattr(spec, key)
    if spec.choices:
        entry["choices"] = list(spec.choices)
    if spec.description:
        entry["description"] = spec.description
    return entry
