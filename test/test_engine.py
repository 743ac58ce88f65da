"""The shared-feature engine with built-in and dropped-in heads, on a 2-block backbone at 64x64."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinov3_toolkit import result_kinds
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.heads import HeadError
from dinov3_toolkit.heads.loader import BUILTIN_DIR, discover
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "examples" / "head_linear_probe"
BUILTIN = ["depth", "detection", "segmentation"]
SMALL = dict(backbone="vits16plus", backbone_overrides={"depth": 2}, device="cpu", size=64)


@pytest.fixture(autouse=True)
def no_weights_on_disk(no_weights):
    """Whatever weights a developer keeps on this machine, tests see none."""


def add_probe(heads_dir: Path, name: str = "probe", *, weights: bool = True, seed: int = 0) -> Path:
    """Copy the example head into ``heads_dir`` as ``head_<name>``; give it random weights on disk."""
    folder = heads_dir / f"head_{name}"
    shutil.copytree(PROBE, folder)
    if weights:
        gen = torch.Generator().manual_seed(seed)
        state = {"classifier.weight": torch.randn(3, 384, 1, 1, generator=gen), "classifier.bias": torch.randn(3)}
        (folder / "weights").mkdir(exist_ok=True)
        save_state_dict(state, folder / "weights" / "model.safetensors")
    return folder


def frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def count_backbone_calls(engine: Engine) -> tuple[list[list[int]], list[int]]:
    """The layer indices of every backbone forward, and every run of its patch embedding.

    The patch embedding starts any forward, whichever method runs it, so the
    second list catches backbone runs that bypass ``forward_intermediates``.
    """
    calls: list[list[int]] = []
    embeds: list[int] = []
    original = engine.extractor.backbone.forward_intermediates

    def counted(x, indices):
        calls.append(list(indices))
        return original(x, indices)

    engine.extractor.backbone.forward_intermediates = counted
    engine.extractor.backbone.patch_embed.register_forward_hook(lambda *_: embeds.append(1))
    return calls, embeds


def test_builtin_heads_are_discovered():
    manifests, errors = discover()
    assert set(BUILTIN) <= set(manifests) and not errors
    assert {manifests[n].task for n in BUILTIN} == {"detection", "segmentation", "depth"}


def test_dropped_in_head_runs_next_to_the_builtin_heads(tmp_path):
    add_probe(tmp_path)
    engine = Engine.create(**SMALL, head_dirs=[tmp_path], random_weights=True)
    assert sorted(engine.heads) == sorted([*BUILTIN, "probe"]) and not engine.failed
    assert engine.random_weights == ["backbone", *[n for n in engine.heads if n != "probe"]]
    image = frame(48, 80)
    out = engine(image)
    assert not out.errors
    assert isinstance(out.results["detection"], Detections)
    assert isinstance(out.results["segmentation"], SemanticLabels)
    assert isinstance(out.results["depth"], DepthMap)

    # The probe's result is its own weights applied to the backbone's last map.
    probe = out.results["probe"]
    weights = engine.heads["probe"].model.classifier
    with torch.inference_mode():
        features = engine.extractor(image).maps[-1]
        logits = F.conv2d(features, weights.weight, weights.bias)
        expected = F.interpolate(logits, size=(48, 80), mode="bilinear", align_corners=False).argmax(1)[0]
    np.testing.assert_array_equal(probe.labels, expected.numpy().astype(np.uint8))
    assert probe.class_names == ("background", "floor", "obstacle")
    assert len(np.unique(probe.labels)) > 1  # a head that ignored its weights would not pass this


def test_probe_weights_change_its_output(tmp_path):
    add_probe(tmp_path / "a", seed=1)
    add_probe(tmp_path / "b", "probe2", seed=2)
    engine = Engine.create(**SMALL, heads=["probe", "probe2"], head_dirs=[tmp_path / "a", tmp_path / "b"],
                           random_weights=True)
    out = engine(frame(64, 64))
    assert not np.array_equal(out.results["probe"].labels, out.results["probe2"].labels)


@pytest.mark.parametrize("heads", [["detection"], ["detection", "segmentation"], BUILTIN])
def test_backbone_runs_once_per_frame(heads):
    engine = Engine.create(**SMALL, heads=heads, random_weights=True)
    calls, embeds = count_backbone_calls(engine)
    for i in range(3):
        out = engine(frame(64, 96, seed=i))
        assert sorted(out.results) == sorted(heads)
    assert calls == [[1]] * 3 and len(embeds) == 3  # once per frame, and only the last of the 2 blocks


def test_backbone_computes_the_union_of_the_heads_layers(tmp_path):
    folder = add_probe(tmp_path)
    manifest = folder / "head.yaml"
    manifest.write_text(manifest.read_text().replace("layers: [-1]", "layers: [0]"))
    engine = Engine.create(**SMALL, heads=["probe", "depth"], head_dirs=[tmp_path], random_weights=True)
    calls, embeds = count_backbone_calls(engine)
    out = engine(frame(64, 64))
    assert calls == [[0, 1]] and len(embeds) == 1 and not out.errors
    # the probe got block 0's map, not the last one
    with torch.inference_mode():
        block0 = engine.extractor.backbone.forward_intermediates(engine.extractor.preprocess(frame(64, 64)).tensor, [0])
        weights = engine.heads["probe"].model.classifier
        expected = F.interpolate(
            F.conv2d(block0[0], weights.weight, weights.bias), size=(64, 64), mode="bilinear", align_corners=False
        )
    np.testing.assert_array_equal(out.results["probe"].labels, expected.argmax(1)[0].numpy())


def test_timings_cover_every_stage():
    engine = Engine.create(**SMALL, heads=["detection", "depth"], random_weights=True)
    start = time.perf_counter()
    t = engine(frame(64, 64)).timings
    wall = time.perf_counter() - start
    stages = [t.preprocess, t.backbone, *t.heads.values(), *t.postprocess.values()]
    assert set(t.heads) == set(t.postprocess) == {"detection", "depth"}
    assert all(s > 0 for s in stages) and t.total <= wall
    assert t.total > 0.5 * wall  # the stages account for the call, not a fraction of it


@pytest.mark.parametrize("size", [(480, 640), (720, 1280)])
@pytest.mark.parametrize("resize_mode", ["stretch", "keep_aspect"])
def test_results_are_in_the_original_frame(size, resize_mode):
    engine = Engine.create(**{**SMALL, "size": 128}, resize_mode=resize_mode, random_weights=True,
                           head_params={"detection": {"score_threshold": 0.0, "max_detections": 50}})
    out = engine(frame(*size))
    h, w = size
    assert out.image_size == size
    assert out.results["segmentation"].labels.shape == size
    assert out.results["depth"].depth.shape == size
    boxes = out.results["detection"].boxes
    assert len(boxes) == 50
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
    assert boxes[:, 2].max() > w / 2 and boxes[:, 3].max() > h / 2  # spread over the whole frame, not 128x128


def test_head_parameters_override_and_change_live():
    engine = Engine.create(**SMALL, heads=["detection"], random_weights=True,
                           head_params={"detection": {"score_threshold": 0.0, "max_detections": 7}})
    assert len(engine(frame(64, 64)).results["detection"]) == 7
    engine.set_params("detection", max_detections=3)
    assert len(engine(frame(64, 64)).results["detection"]) == 3
    with pytest.raises(HeadError, match=r"max_detections must be in \[1"):
        engine.set_params("detection", max_detections=0)
    with pytest.raises(HeadError, match="has no parameter 'score_thresh'"):
        engine.set_params("detection", score_thresh=0.5)
    assert engine.heads["detection"].params["max_detections"] == 3  # unchanged by the refused calls
    with pytest.raises(KeyError, match="no running head 'nope'"):
        engine.set_params("nope", x=1)


def test_head_that_fails_to_load_its_weights_is_skipped(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    model = broken / "model.py"
    model.write_text(model.read_text() + (
        "\n    @classmethod\n    def checkpoint_filter(cls, state_dict):\n        return state_dict['nope']\n"
    ))
    engine = engine_with_broken(tmp_path)
    error = str(engine.failed["broken"])
    assert "loading failed: KeyError: 'nope'" in error and str(broken / "weights" / "model.safetensors") in error
    assert_others_work(engine)


def test_unknown_head_names_are_a_configuration_error():
    with pytest.raises(ValueError, match=r"unknown head\(s\) \['detektion'\]; heads found: depth, detection"):
        Engine.create(**SMALL, heads=["detektion"], random_weights=True)
    with pytest.raises(ValueError, match=r"heads must be named once each, got \['depth', 'depth'\]"):
        Engine.create(**SMALL, heads=["depth", "depth"], random_weights=True)
    with pytest.raises(ValueError, match="head 'depth', which is not enabled"):
        Engine.create(**SMALL, heads=["detection"], head_params={"depth": {}}, random_weights=True)


# --- broken heads: each is reported with its name and file, and the others keep working ---------------


def engine_with_broken(tmp_path: Path, **kwargs) -> Engine:
    return Engine.create(**SMALL, heads=["probe", "broken", "detection"], head_dirs=[tmp_path],
                         random_weights=True, **kwargs)


def assert_others_work(engine: Engine) -> None:
    out = engine(frame(48, 64))
    assert sorted(out.results) == ["detection", "probe"] and not out.errors


def test_bad_manifest(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    (broken / "head.yaml").write_text("task: segmentation\nmodel: [not, a, string]\n")
    engine = engine_with_broken(tmp_path)
    error = engine.failed["broken"]
    assert str(broken / "head.yaml") in str(error) and "'broken'" in str(error) and "needs 'model'" in str(error)
    assert_others_work(engine)


def test_unparsable_manifest(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    (broken / "head.yaml").write_text("task: [unclosed\n")
    engine = engine_with_broken(tmp_path)
    assert "is not valid YAML" in str(engine.failed["broken"]) and str(broken / "head.yaml") in str(
        engine.failed["broken"]
    )
    assert_others_work(engine)


def test_missing_weights_without_random_fallback(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken", weights=False)
    engine = Engine.create(**SMALL, heads=["probe", "broken"], head_dirs=[tmp_path], random_weights=False,
                           backbone_weights=_tiny_backbone_file(tmp_path))
    error = str(engine.failed["broken"])
    assert "'broken'" in error and "weights file not found" in error
    assert str(broken / "weights" / "model.safetensors") in error
    assert sorted(engine.heads) == ["probe"] and engine.random_weights == []
    assert not engine(frame(32, 32)).errors


def _tiny_backbone_file(tmp_path: Path) -> Path:
    from dinov3_toolkit.backbone import create_backbone, save_backbone

    path = tmp_path / "tiny_backbone.pth"
    save_backbone(create_backbone("vits16plus", depth=2), path)
    return path


def test_mismatched_weights(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    save_state_dict({"classifier.weight": torch.zeros(5, 384, 1, 1), "classifier.bias": torch.zeros(5)},
                    broken / "weights" / "model.safetensors")
    engine = engine_with_broken(tmp_path)
    error = str(engine.failed["broken"])
    assert "classifier.weight is (5, 384, 1, 1), expected (3, 384, 1, 1)" in error
    assert str(broken / "weights" / "model.safetensors") in error
    assert_others_work(engine)


def test_head_code_that_does_not_import(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    (broken / "model.py").write_text("import no_such_module_anywhere\n")
    engine = engine_with_broken(tmp_path)
    error = str(engine.failed["broken"])
    assert str(broken / "model.py") in error and "ModuleNotFoundError" in error
    assert_others_work(engine)


def test_forward_that_raises_on_a_frame(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    model = broken / "model.py"
    # Fails only on frames wider than tall, so the (square) warm-up passes.
    model.write_text(model.read_text().replace(
        "        logits = logits.float()\n",
        "        logits = logits.float()\n"
        "        if image.original_size[1] > image.original_size[0]:\n"
        "            raise RuntimeError('sensor fusion went wrong')\n",
    ))
    engine = engine_with_broken(tmp_path)
    assert sorted(engine.heads) == ["broken", "detection", "probe"]
    assert not engine(frame(64, 48)).errors
    out = engine(frame(48, 64))
    assert sorted(out.results) == ["detection", "probe"]
    error = out.errors["broken"]
    assert str(error).startswith(f"head 'broken' ({model}): failed on this frame: RuntimeError: sensor fusion")
    line = model.read_text().splitlines().index("            raise RuntimeError('sensor fusion went wrong')") + 1
    assert str(error).endswith(f"(at model.py:{line})")  # the line of the head's own code that raised
    assert isinstance(error.__cause__, RuntimeError)
    assert "broken" not in out.timings.heads


def test_head_that_cannot_run_is_caught_by_the_warmup(tmp_path):
    add_probe(tmp_path)
    broken = add_probe(tmp_path, "broken")
    manifest = broken / "head.yaml"
    manifest.write_text(manifest.read_text().replace("in_channels: 384", "in_channels: 768"))
    save_state_dict({"classifier.weight": torch.zeros(3, 768, 1, 1), "classifier.bias": torch.zeros(3)},
                    broken / "weights" / "model.safetensors")
    manifest.write_text(manifest.read_text().replace("layers: [-1]", "layers: [0]"))
    engine = Engine.create(**SMALL, heads=["probe", "broken"], head_dirs=[tmp_path], random_weights=True)
    error = str(engine.failed["broken"])
    assert error.startswith(f"head 'broken' ({broken / 'model.py'}): failed on this frame: RuntimeError")
    assert error.endswith("(the warm-up run on a blank frame)") and error.count("head 'broken'") == 1
    assert engine.layers == [1]  # block 0 was only read by the removed head: no longer extracted
    out = engine(frame(48, 64))
    assert sorted(out.results) == ["probe"] and not out.errors


@pytest.mark.parametrize(("task", "message"), [
    ("detection", "refused: its task 'detection' promises Detections results but it returned SemanticLabels"),
    ("embedding", "refused: it returned SemanticLabels, the result of task 'segmentation', but its task is "
                  "'embedding': set task: segmentation in head.yaml"),
])
def test_a_head_whose_result_contradicts_its_task_is_refused_by_name_at_warmup(tmp_path, task, message):
    """Publishers come from the task, messages from the result: a head where they disagree must not run."""
    add_probe(tmp_path)
    liar = add_probe(tmp_path, "liar")
    manifest = liar / "head.yaml"
    manifest.write_text(manifest.read_text().replace("task: segmentation", f"task: {task}"))
    engine = Engine.create(**SMALL, heads=["probe", "liar"], head_dirs=[tmp_path], random_weights=True)
    assert str(engine.failed["liar"]) == f"head 'liar' ({manifest}): {message}"
    assert sorted(engine.heads) == ["probe"]
    out = engine(frame(48, 64))
    assert sorted(out.results) == ["probe"] and not out.errors


def test_bad_parameter_override_fails_only_that_head(tmp_path):
    add_probe(tmp_path)
    engine = Engine.create(**SMALL, heads=["probe", "detection"], head_dirs=[tmp_path], random_weights=True,
                           head_params={"probe": {"min_confidence": "high"}})
    assert "min_confidence must be of type float, got 'high'" in str(engine.failed["probe"])
    assert sorted(engine.heads) == ["detection"]


def test_duplicate_head_name_is_refused(tmp_path, caplog):
    folder = add_probe(tmp_path / "x", "detection")
    engine = Engine.create(**SMALL, heads=["detection"], head_dirs=[tmp_path / "x"], random_weights=True)
    assert engine.heads["detection"].manifest.folder.parent == BUILTIN_DIR
    assert f"head 'detection' ({folder}): ignored: a head of this name was already found at" in caplog.text


def test_head_weights_found_in_the_weights_dir(tmp_path, monkeypatch):
    add_probe(tmp_path / "heads", weights=False)
    weights_dir = tmp_path / "weights"
    state = {"classifier.weight": torch.randn(3, 384, 1, 1), "classifier.bias": torch.randn(3)}
    (weights_dir / "head_probe").mkdir(parents=True)
    save_state_dict(state, weights_dir / "head_probe" / "model.safetensors")
    monkeypatch.setattr("dinov3_toolkit.heads.loader.user_weights_dirs", lambda: [weights_dir])
    engine = Engine.create(**SMALL, heads=["probe"], head_dirs=[tmp_path / "heads"], random_weights=True)
    assert engine.heads["probe"].weights == weights_dir / "head_probe" / "model.safetensors"
    torch.testing.assert_close(engine.heads["probe"].model.classifier.weight, state["classifier.weight"])


def test_a_builtin_head_folder_runs_from_anywhere(tmp_path):
    """Head folders are self-contained: a copy of one is a new head, with no other file edited."""
    shutil.copytree(BUILTIN_DIR / "head_depth", tmp_path / "head_depth_copy",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pth"))
    engine = Engine.create(**SMALL, heads=["depth", "depth_copy"], head_dirs=[tmp_path], random_weights=True)
    engine.heads["depth_copy"].model.load_state_dict(engine.heads["depth"].model.state_dict())
    out = engine(frame(40, 72))
    assert type(engine.heads["depth_copy"].model).__module__.startswith("dinov3_heads.head_depth_copy")
    np.testing.assert_array_equal(out.results["depth_copy"].depth, out.results["depth"].depth)


def test_weights_trained_on_another_backbone_are_refused_by_head_name_unless_allowed(tmp_path, caplog):
    add_probe(tmp_path)  # its head.yaml: trained_on vits16plus
    other = dict(SMALL, backbone="vits16")
    engine = Engine.create(**other, heads=["probe", "depth"], head_dirs=[tmp_path], random_weights=True)
    assert "probe" not in engine.heads and "depth" in engine.heads  # a random head is not refused: no weights
    message = str(engine.failed["probe"])
    assert "head 'probe'" in message and "trained on vits16plus features, but the backbone is vits16" in message
    allowed = Engine.create(**other, heads=["probe"], head_dirs=[tmp_path], random_weights=True,
                            allow_backbone_mismatch=True)
    assert "probe" in allowed.heads and allowed(frame(32, 32)).results["probe"].labels.shape == (32, 32)
    assert "trained with backbone=vits16plus but the engine runs backbone=vits16" in caplog.text


def _probe_returning(tmp_path: Path, line: str) -> Path:
    """A probe that, on frames wider than tall (so the square warm-up passes), does ``line`` before returning."""
    broken = add_probe(tmp_path, "broken")
    model = broken / "model.py"
    model.write_text(model.read_text().replace(
        "        return SemanticLabels(labels_to_host(labels, len(self.class_names)), self.class_names)\n",
        "        result = SemanticLabels(labels_to_host(labels, len(self.class_names)), self.class_names)\n"
        "        if image.original_size[1] > image.original_size[0]:\n"
        f"            {line}\n"
        "        return result\n",
    ))
    return model


@pytest.mark.parametrize("line, message", [
    ("result = SemanticLabels(result.labels + 7, result.class_names)", "labels span 7..9 but it has 3 class names"),
    ("result = SemanticLabels(result.labels[:10], result.class_names)", "label map is 10x64 but the frame is 48x64"),
    ("import sys; sys.exit(0)", "SystemExit: 0"),
])
def test_an_invalid_result_or_an_exit_is_that_heads_failure_alone(tmp_path, line, message):
    add_probe(tmp_path)
    _probe_returning(tmp_path, line)
    engine = engine_with_broken(tmp_path)
    out = engine(frame(48, 64))
    assert sorted(out.results) == ["detection", "probe"] and message in str(out.errors["broken"])


def test_boxes_are_clipped_to_the_frame_and_non_finite_ones_refused():
    names = ("a", "b")
    inside = result_kinds.validate(Detections(np.array([[-5, 2, 70, 60]], np.float32), np.array([0.5], np.float32),
                                              np.array([1]), names), (48, 64))
    np.testing.assert_array_equal(inside.boxes, [[0, 2, 64, 48]])
    with pytest.raises(result_kinds.InvalidResult, match="not all finite"):
        result_kinds.validate(Detections(np.array([[0, 0, np.nan, 4]], np.float32), np.array([0.5], np.float32),
                                         np.array([0]), names), (48, 64))
    with pytest.raises(result_kinds.InvalidResult, match=r"labels span -1..-1"):
        result_kinds.validate(Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.array([-1]),
                                         names), (48, 64))


def test_ctrl_c_inside_a_head_still_stops_the_run(tmp_path):
    add_probe(tmp_path)
    _probe_returning(tmp_path, "raise KeyboardInterrupt")
    engine = engine_with_broken(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        engine(frame(48, 64))
