"""Finding head folders, importing their code, building their models and loading their weights.

Discovery looks at ``dinov3_toolkit/head_*`` first (the shipped heads, and any folder a user
drops beside them in a source checkout, an editable install or a colcon ``--symlink-install``
workspace), then at each extra folder the user names (``head_dirs``), which is either a head
folder itself or a folder of ``head_*`` folders. Every step that can go wrong raises a ``HeadError`` naming
the head and the file, so a caller can skip that head and keep the others.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..backbone.weights import user_weights_dirs
from ..checkpoint import CheckpointError, load_into, read_state_dict
from ..errors import NotFound
from .base import Head, HeadError
from .manifest import FOLDER_PREFIX, MANIFEST, HeadManifest, head_name, load_manifest
from .training import HeadLoss

log = logging.getLogger(__name__)
# How a head whose weights file is missing fails; the CLI and the node add how to run anyway.
HEAD_UNWEIGHTED = "weights file not found"

# dinov3_toolkit/: its head_* folders run by default (the shipped ones and any dropped beside them).
BUILTIN_DIR = Path(__file__).resolve().parents[1]
# Trainable designs without published weights (RetinaNet, SSD, DETR, flow): found when named (--heads,
# dinov3 train/eval/export), never run by default, since without weights they could only fail or mislead.
TEMPLATES_DIR = BUILTIN_DIR / "templates"
_TOOLKIT = __package__.rsplit(".", 1)[0]  # dinov3_toolkit
_EXTERNAL_PACKAGE = "dinov3_heads"  # parent package of heads imported from outside dinov3_toolkit


def search_folders(extra_dirs: Iterable[str | Path] = (), *, templates: bool = False) -> list[Path]:
    """Where head folders are looked for, in order: dinov3_toolkit/ (the built-in heads and any dropped
    beside them), each extra folder, then (if asked) the templates' (the node's start log lists them)."""
    return [BUILTIN_DIR, *(Path(extra).expanduser().resolve() for extra in extra_dirs),
            *([TEMPLATES_DIR] if templates else [])]


def find_head_folders(extra_dirs: Iterable[str | Path] = (), *, templates: bool = False) -> list[Path]:
    """Head folders in discovery order (``search_folders``); an extra folder is a head folder or holds them."""
    folders = []
    for where in search_folders(extra_dirs, templates=templates):
        if not where.is_dir():
            raise NotFound(f"head folder {where} does not exist")
        if (where / MANIFEST).is_file():
            folders.append(where)
        else:
            folders += sorted(p for p in where.glob(f"{FOLDER_PREFIX}*") if p.is_dir())
    return folders


def discover(extra_dirs: Iterable[str | Path] = (), *,
             templates: bool = False) -> tuple[dict[str, HeadManifest], dict[str, HeadError]]:
    """Every head's manifest by name, and the heads whose manifest is broken; the templates too if asked.

    Names are unique: the first folder found wins (so a built-in head cannot be
    shadowed by accident) and a later folder of the same name is logged as an error;
    a template is simply not found when another folder has its name (a trained copy).
    """
    manifests: dict[str, HeadManifest] = {}
    errors: dict[str, HeadError] = {}
    for folder in find_head_folders(extra_dirs, templates=templates):
        name = head_name(folder)
        if name in manifests or name in errors:
            if folder.parent == TEMPLATES_DIR:
                continue
            first = manifests[name].folder if name in manifests else errors[name].path.parent
            log.error("%s", HeadError(name, folder, f"ignored: a head of this name was already found at {first}"))
            continue
        try:
            manifests[name] = load_manifest(folder)
        except HeadError as e:
            errors[name] = e
    return manifests, errors


def import_head_class(manifest: HeadManifest) -> type[Head]:
    """The model class named by ``manifest.model``, imported from the head's folder."""
    cls = _import_class(manifest, manifest.module, manifest.class_name, Head)
    if cls.temporal and not callable(getattr(cls, "first_result", None)):
        raise HeadError(manifest.name, manifest.module_path, f"{cls.__name__} is temporal but defines no "
                        f"first_result(reason): what it gives for a frame without a usable previous one")
    return cls


def import_head_loss(manifest: HeadManifest) -> type[HeadLoss]:
    """The loss class named by ``manifest.loss``; a head without one says it cannot be trained."""
    if manifest.loss is None:
        raise HeadError(manifest.name, manifest.path, "cannot be trained: its head.yaml names no 'loss' "
                        "(a HeadLoss class in the head folder, e.g. loss: loss.MyLoss)")
    return _import_class(manifest, *manifest.loss, HeadLoss)


def _import_class(manifest: HeadManifest, module_name: str, class_name: str, base: type) -> type:
    path = manifest.folder / (module_name.replace(".", "/") + ".py")
    try:
        module = importlib.import_module(f"{_package_for(manifest.folder)}.{module_name}")
    except KeyboardInterrupt:  # Ctrl-C while importing stops the start, not only this head
        raise
    except BaseException as e:  # a head's code can fail to import in any way, sys.exit() too: that head's error
        hint = f" (pip install {e.name}, or the package that provides it)" if isinstance(e, ModuleNotFoundError) \
            and e.name and not e.name.startswith(_EXTERNAL_PACKAGE) else ""
        raise HeadError(manifest.name, path, f"cannot be imported: {type(e).__name__}: {e}{hint}") from e
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise HeadError(manifest.name, path,
                        f"has no class {class_name} derived from {base.__module__.rsplit('.', 1)[0]}.{base.__name__}")
    return cls


def _package_for(folder: Path) -> str:
    """Import a head folder as a package, so its modules may import each other relatively.

    Built-in heads are part of dinov3_toolkit. Others get a package name made
    unique by their path (two extra folders may both hold a ``head_probe``); the
    folder does not need an ``__init__.py``.
    """
    if folder.parent == BUILTIN_DIR:  # dinov3_toolkit.head_<name> (a dropped folder needs no __init__.py)
        return f"{_TOOLKIT}.{folder.name}"
    if folder.parent == TEMPLATES_DIR:  # dinov3_toolkit.templates.head_<name>
        return f"{_TOOLKIT}.{TEMPLATES_DIR.name}.{folder.name}"
    if _EXTERNAL_PACKAGE not in sys.modules:
        root = types.ModuleType(_EXTERNAL_PACKAGE)
        root.__path__ = []
        sys.modules[_EXTERNAL_PACKAGE] = root
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    name = f"{_EXTERNAL_PACKAGE}.{folder.name}_{digest}"
    if name not in sys.modules:
        init = folder / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
            package = importlib.util.module_from_spec(spec)
            sys.modules[name] = package
            spec.loader.exec_module(package)
        else:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    return name


@dataclass
class LoadedHead:
    """A head ready to run: its manifest, its model (eval mode, on the device) and its current parameters."""

    manifest: HeadManifest
    model: Head
    params: Mapping[str, Any]
    weights: Path | None  # the file loaded; None when random or when the manifest names none

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def random_weights(self) -> bool:
        """True when the manifest names a weights file but none was loaded."""
        return self.manifest.weights is not None and self.weights is None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    def set_params(self, **values: Any) -> None:
        """Change parameters; all are validated first, then swapped in at once.

        A frame running meanwhile sees either the old or the new values, never a
        mix. Concurrent callers must take turns (the node calls from one thread).
        """
        current = {**self.params, **values}
        self.params = self.manifest.resolve_params(current)


def weights_candidates(manifest: HeadManifest) -> list[Path]:
    """Where a head's weights file may be: in the head folder, then ``<weights dir>/head_<name>/``.

    The second place lets every weights file live in one folder (``$DINOV3_WEIGHTS_DIR``,
    or this package's ``weights/``), which also works once the package is installed.
    """
    if manifest.weights is None:
        return []
    return [manifest.weights] + [d / manifest.folder.name / manifest.weights.name for d in user_weights_dirs()]


def load_head(
    manifest: HeadManifest,
    *,
    device: torch.device | str = "cpu",
    params: Mapping[str, Any] | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
) -> LoadedHead:
    """Build the head's model, load its weights strictly and validate its parameters.

    ``weights`` overrides the manifest's file. When no file is found, ``random_weights``
    keeps the random initialisation (with a warning) instead of failing.
    """
    name = manifest.name
    values = manifest.resolve_params(dict(params or {}))
    cls = import_head_class(manifest)
    class_names = manifest.read_class_names()
    args = dict(manifest.args)
    if class_names:
        if taken := {"class_names", "num_classes"} & set(args):
            raise HeadError(name, manifest.path, f"args must not set {', '.join(sorted(taken))}: the names in "
                            f"{manifest.classes.name} reach {cls.__name__} as class_names, and set the count")
        args["class_names"] = class_names
    if manifest.depth is not None:
        if "depth" in args:
            raise HeadError(name, manifest.path, f"args must not set depth: the manifest's depth key reaches "
                            f"{cls.__name__} as depth=")
        args["depth"] = manifest.depth
    try:
        model = cls(**args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the constructor is the head author's code (sys.exit() included)
        raise HeadError(name, manifest.path, f"{cls.__name__}(**args) failed: {type(e).__name__}: {e}") from e
    if getattr(model, "class_names", None) != class_names:
        raise HeadError(name, manifest.module_path, f"{cls.__name__}.__init__ must pass class_names to "
                        f"Head.__init__ (the manifest's classes file has {len(class_names)} names)")
    path = _find_weights(manifest, weights, random_weights)
    if path is not None:
        try:
            state_dict = cls.checkpoint_filter(read_state_dict(path))
            load_into(model, state_dict, source=f"weights file {path}")
        except CheckpointError as e:
            raise HeadError(name, path, str(e)) from e
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # checkpoint_filter is the head author's code (sys.exit() included)
            raise HeadError(name, path, f"loading failed: {type(e).__name__}: {e}") from e
        log.info("head %s: weights from %s", name, path)
    try:
        # Channels-last conv weights: the backbone's maps are channels-last already (tokens are
        # (N, C) rows), and oneDNN/cuDNN convs are fastest that way (depth head on the CPU:
        # -20%; the others unchanged; README, "Performance").
        model = model.eval().to(device=device, memory_format=torch.channels_last)
    except Exception as e:  # e.g. CUDA out of memory: this head is skipped, the others may still fit
        raise HeadError(name, manifest.module_path, f"cannot be moved to {device}: {type(e).__name__}: {e}") from e
    return LoadedHead(manifest=manifest, model=model, params=values, weights=path)


def _find_weights(manifest: HeadManifest, override: str | Path | None, random_weights: bool) -> Path | None:
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise HeadError(manifest.name, path, "weights file given for this head does not exist")
        return path
    candidates = weights_candidates(manifest)
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None or not candidates:
        return found
    looked = ", ".join(str(p) for p in candidates)
    if random_weights:
        log.warning("head %s: no weights file (looked for %s): running with RANDOM weights", manifest.name, looked)
        return None
    readme = manifest.weights.parent / "README.md"
    where = f"; {readme} says where to get it" if readme.is_file() else ""
    raise HeadError(manifest.name, manifest.weights, f"{HEAD_UNWEIGHTED} (looked for {looked}){where}")
