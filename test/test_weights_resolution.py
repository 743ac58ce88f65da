"""Where weights are looked for, and what is said when they are not found."""

from __future__ import annotations

import pytest

from dinov3_toolkit.backbone import WeightsNotFoundError, get_backbone_spec, resolve_weights
from dinov3_toolkit.backbone import weights as weights_mod

SPEC = get_backbone_spec("vits16plus")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real cache or repo folder leaks into the search."""
    monkeypatch.setattr(weights_mod, "PACKAGE_WEIGHTS_DIR", tmp_path / "repo_weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.delenv("DINOV3_WEIGHTS_DIR", raising=False)
    return tmp_path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_explicit_file(isolated):
    f = _touch(isolated / "anything.pth")
    assert resolve_weights(SPEC, f) == f


def test_explicit_folder_with_meta_name(isolated):
    f = _touch(isolated / "mine" / SPEC.weights.meta_filename)
    assert resolve_weights(SPEC, isolated / "mine") == f


def test_explicit_missing_path_is_an_error(isolated):
    with pytest.raises(WeightsNotFoundError, match="nope.pth for backbone vits16plus.lvd1689m does not exist"):
        resolve_weights(SPEC, isolated / "nope.pth")


def test_env_dir_comes_before_repo_dir(isolated, monkeypatch):
    env_file = _touch(isolated / "env" / "dinov3-vits16plus-pretrain-lvd1689m" / "model.safetensors")
    _touch(isolated / "repo_weights" / SPEC.weights.meta_filename)
    monkeypatch.setenv("DINOV3_WEIGHTS_DIR", str(isolated / "env"))
    assert resolve_weights(SPEC) == env_file


def test_repo_weights_dir(isolated):
    f = _touch(isolated / "repo_weights" / "dinov3-vits16plus-pretrain-lvd1689m.safetensors")
    assert resolve_weights(SPEC) == f


def test_torch_hub_cache(isolated):
    f = _touch(isolated / "torch_home" / "hub" / "checkpoints" / SPEC.weights.meta_filename)
    assert resolve_weights(SPEC) == f


def test_hf_hub_cache(isolated):
    snap = isolated / "hf_cache" / "models--facebook--dinov3-vits16plus-pretrain-lvd1689m" / "snapshots" / "abc"
    f = _touch(snap / "model.safetensors")
    assert resolve_weights(SPEC) == f


def test_not_found_says_where_what_and_how(isolated):
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(SPEC)
    text = str(info.value)
    assert str(isolated / "repo_weights") in text
    assert str(isolated / "hf_cache") in text
    assert SPEC.weights.meta_filename in text
    assert "facebook/dinov3-vits16plus-pretrain-lvd1689m" in text
    assert "weights/README.md" in text


def test_hf_hub_cache_follows_refs_main(isolated):
    repo = isolated / "hf_cache" / "models--facebook--dinov3-vits16plus-pretrain-lvd1689m"
    old = _touch(repo / "snapshots" / "aaa_old" / "model.safetensors")
    current = _touch(repo / "snapshots" / "zzz_current" / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa_old\n")
    assert resolve_weights(SPEC) == old
    (repo / "refs" / "main").write_text("zzz_current")
    assert resolve_weights(SPEC) == current


@pytest.mark.parametrize(
    "module_file, expected",
    [
        ("/src/dinov3_ros/dinov3_toolkit/backbone/weights.py", "/src/dinov3_ros/weights"),
        (
            "/ws/install/dinov3_ros/lib/python3.10/site-packages/dinov3_toolkit/backbone/weights.py",
            "/ws/install/dinov3_ros/share/dinov3_ros/weights",
        ),
        ("/venv/lib/python3.12/site-packages/dinov3_toolkit/backbone/weights.py", "/venv/share/dinov3_ros/weights"),
    ],
)
def test_package_weights_dir_source_and_installed(module_file, expected):
    from pathlib import Path

    assert weights_mod.package_weights_dir(module_file) == Path(expected)
