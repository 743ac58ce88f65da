"""Fault injection into weights files, for a head and for the backbone: a named error or a clean load.

The same faults are tried on both. A file that is no checkpoint (empty, cut short, text, a web
page, a Git LFS pointer, a pickle of something else, code) or one whose tensors do not fit
(a key missing or extra, a shape, integers, NaN, infinity) ends in an error naming the file and,
where one is at fault, the key. Other float precisions are cast and load. A head's bad file makes
that head fail at load while the other heads run; a backbone's bad file stops the start.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import search_weights_only_in
from fault_heads import TEMPLATE, Fault, write_head

from dinov3_toolkit.backbone import CheckpointError, create_backbone, load_backbone, save_backbone
from dinov3_toolkit.checkpoint import read_state_dict, save_state_dict
from dinov3_toolkit.engine import Engine

# torch warns when it meets a plain pickle (protocol 4), which is one of the faults tried here
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
SMALL = {"depth": 1}
ENGINE = dict(backbone="vits16plus", backbone_overrides=SMALL, device="cpu", size=32)
HEALTHY = "healthy"


class _Exploit:
    """Pickled code: unpickling it would create a folder (so a test can see whether it ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _saved(state: dict, suffix: str, path: Path) -> bytes:
    """The bytes of a whole, good file of ``state`` (written beside ``path``)."""
    whole = path.with_name(f"{path.stem}-whole{suffix}")
    save_state_dict(state, whole)
    return whole.read_bytes()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _torch_saved(obj: object, path: Path) -> None:
    torch.save(obj, path)


# fault -> (file suffix, writer(state dict, key, path), words of the error besides the file; {key} is the key)
FILE_FAULTS = {
    "an empty .pth": (".pth", lambda s, k, p: p.write_bytes(b""), "is empty (0 bytes)"),
    "an empty .safetensors": (".safetensors", lambda s, k, p: p.write_bytes(b""), "is empty (0 bytes)"),
    "a truncated .pth": (".pth", lambda s, k, p: p.write_bytes(_saved(s, ".pth", p)[:-300]),
                         "is not a readable PyTorch checkpoint: "),
    "a truncated .safetensors": (".safetensors", lambda s, k, p: p.write_bytes(_half(_saved(s, ".safetensors", p))),
                                 "is not a valid safetensors file"),
    "a text file named .pth": (".pth", lambda s, k, p: p.write_text("these are not weights\n"),
                               "is not a readable PyTorch checkpoint or safetensors file (it starts with b'these are"),
    "a Git LFS pointer": (".safetensors", lambda s, k, p: p.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 88\n"), "It is a Git LFS pointer"),
    "a web page named .safetensors": (".safetensors", lambda s, k, p: p.write_text("<!DOCTYPE html><p>Sign in"),
                                      "is not a readable PyTorch checkpoint or safetensors file"),
    "a pickle of another object": (".pth", lambda s, k, p: p.write_bytes(pickle.dumps({"weights": [1.0, 2.0]})),
                                   "refusing to load"),
    "a list of tensors": (".pth", lambda s, k, p: _torch_saved(list(s.values()), p),
                          "does not hold a state dict of tensors (got list)"),
    "a training checkpoint": (".pth", lambda s, k, p: _torch_saved({"model": s, "epoch": 3}, p),
                              "(a training checkpoint? save the model's state_dict() alone)"),
    "pickled code": (".pth", lambda s, k, p: _torch_saved({**s, k: _Exploit(p.with_suffix(".ran"))}, p),
                     "refusing to load"),
}


def _one(tensor: torch.Tensor, value: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = value
    return tensor


# fault -> (edit(state dict, key) -> state dict, words of the error)
VALUE_FAULTS = {
    "a missing key": (lambda s, k: {n: v for n, v in s.items() if n != k}, "1 missing key(s): {key}"),
    "an extra key": (lambda s, k: {**s, "extra.weight": torch.zeros(3)}, "1 unexpected key(s): extra.weight"),
    "a wrong shape": (lambda s, k: {**s, k: torch.zeros(5, *s[k].shape[1:])}, "{key} is (5,"),
    "integer tensors": (lambda s, k: {**s, k: s[k].to(torch.int32)},
                        "{key} is torch.int32, expected a floating-point tensor"),
    "a NaN": (lambda s, k: {**s, k: _one(s[k], float("nan"))}, "NaN or infinite values: {key} (1 of"),
    "an infinity": (lambda s, k: {**s, k: _one(s[k], float("-inf"))}, "NaN or infinite values: {key} (1 of"),
}
CASTS = {"float16 weights": (torch.float16, ".safetensors"), "bfloat16 weights": (torch.bfloat16, ".pth"),
         "float64 weights": (torch.float64, ".safetensors")}
# (group, fault): every kind tried, on a head and on the backbone
KINDS = [*FILE_FAULTS, *VALUE_FAULTS, *CASTS]


def write_fault(fault: str, state: dict, key: str, stem: Path) -> tuple[Path, str | None]:
    """The file of ``fault`` made from ``state`` (its ``key`` at fault); (path, error words or None: it loads)."""
    if fault in FILE_FAULTS:
        suffix, writer, words = FILE_FAULTS[fault]
        writer(state, key, stem.with_suffix(suffix))
        return stem.with_suffix(suffix), words.format(key=key)
    if fault in VALUE_FAULTS:
        edit, words = VALUE_FAULTS[fault]
        save_state_dict(edit(state, key), stem.with_suffix(".safetensors"))
        return stem.with_suffix(".safetensors"), words.format(key=key)
    dtype, suffix = CASTS[fault]
    save_state_dict({n: v.to(dtype) for n, v in state.items()}, stem.with_suffix(suffix))
    return stem.with_suffix(suffix), None


# --- a head's weights ------------------------------------------------------------------------------------

HEAD_STATE = {"classifier.weight": torch.randn(2, 384, 1, 1, generator=torch.Generator().manual_seed(0)),
              "classifier.bias": torch.tensor([0.25, -0.5])}
HEAD_KEY = "classifier.weight"
EXITS_IN_FILTER = Fault(model=TEMPLATE.format(top="", init="", forward="", postprocess="") + (
    "\n    @classmethod\n    def checkpoint_filter(cls, state_dict):\n        sys.exit(2)\n"))
HEAD_ONLY = {  # fault -> (what the folder holds, error words)
    "no file": ("nothing", "weights file not found (looked for"),
    "a folder in its place": ("folder", "weights file not found (looked for"),
    "checkpoint_filter calls sys.exit()": ("good", "loading failed: SystemExit: 2"),
}
HEAD_KINDS = [*KINDS, *HEAD_ONLY]
NAMES = {fault: f"w{i}" for i, fault in enumerate(HEAD_KINDS)}


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """(engine, frame result, weights file and expected words per fault): one head per fault beside a healthy one."""
    root = tmp_path_factory.mktemp("weights-faults")
    backbone = root / "backbone.pth"
    save_backbone(create_backbone("vits16plus", **SMALL), backbone)
    expected = {}
    for fault, name in NAMES.items():
        folder = write_head(root / "heads", name, EXITS_IN_FILTER if fault == "checkpoint_filter calls sys.exit()"
                            else Fault())
        (folder / "weights").mkdir()
        if fault in HEAD_ONLY:
            holds, words = HEAD_ONLY[fault]
            path = folder / "weights" / "model.safetensors"
            if holds == "folder":
                path.mkdir()
            elif holds == "good":
                save_state_dict(HEAD_STATE, path)
        else:
            path, words = write_fault(fault, HEAD_STATE, HEAD_KEY, folder / "weights" / "model")
        with (folder / "head.yaml").open("a") as manifest:
            manifest.write(f"weights: weights/{path.name}\n")
        expected[fault] = (path, words)
    write_head(root / "heads", HEALTHY)
    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, root / "nowhere")
        engine = Engine.create(**ENGINE, backbone_weights=backbone, heads=[*NAMES.values(), HEALTHY],
                               head_dirs=[root / "heads"])
    return engine, engine(np.zeros((24, 40, 3), np.uint8)), expected


@pytest.mark.parametrize("fault", HEAD_KINDS)
def test_a_heads_weights_fault_fails_that_head_naming_file_and_key_or_loads(heads, fault):
    engine, frame, expected = heads
    path, words = expected[fault]
    name = NAMES[fault]
    assert HEALTHY in frame.results and not frame.errors  # the other heads run
    if words is None:  # cast to float32 on loading
        loaded = engine.heads[name].model.state_dict()
        for key, value in HEAD_STATE.items():
            assert loaded[key].dtype == torch.float32
            torch.testing.assert_close(loaded[key], value.to(CASTS[fault][0]).float(), rtol=0, atol=0)
        assert name in frame.results
        return
    error = str(engine.failed[name])
    assert name not in engine.heads and error.startswith(f"head '{name}' (")
    assert str(path) in error and words in error, error
    assert not path.with_suffix(".ran").exists(), "the pickled code ran"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_an_unreadable_weights_file_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict(HEAD_STATE, path)
    path.chmod(0)
    with pytest.raises(CheckpointError, match=f"weights file {path} cannot be read"):
        read_state_dict(path)


# --- the backbone's weights ------------------------------------------------------------------------------

BACKBONE_KEY = "blocks.0.attn.proj.weight"


@pytest.fixture(scope="module")
def backbone_state():
    return create_backbone("vits16plus", **SMALL).state_dict()


@pytest.mark.parametrize("fault", KINDS)
def test_a_backbone_weights_fault_is_an_error_naming_file_and_key_or_loads(backbone_state, tmp_path, fault):
    path, words = write_fault(fault, backbone_state, BACKBONE_KEY, tmp_path / "backbone")
    if words is None:
        model = load_backbone("vits16plus", path, **SMALL)
        loaded = model.state_dict()[BACKBONE_KEY]
        assert loaded.dtype == torch.float32
        torch.testing.assert_close(loaded, backbone_state[BACKBONE_KEY].to(CASTS[fault][0]).float(), rtol=0, atol=0)
        return
    with pytest.raises(CheckpointError) as error:
        load_backbone("vits16plus", path, **SMALL)
    assert str(path) in str(error.value) and words in str(error.value), str(error.value)
    assert not path.with_suffix(".ran").exists(), "the pickled code ran"


def test_a_bad_backbone_file_stops_the_engine_naming_it(tmp_path, no_weights):
    """Without a backbone no head can run: the start fails, with the file and key, instead of running on garbage."""
    path, words = write_fault("a NaN", create_backbone("vits16plus", **SMALL).state_dict(), BACKBONE_KEY,
                              tmp_path / "backbone")
    with pytest.raises(CheckpointError, match="NaN or infinite values: blocks.0.attn.proj.weight") as error:
        Engine.create(**ENGINE, backbone_weights=path, heads=["depth"])
    assert str(path) in str(error.value)
