"""ONNX export of backbone + heads, checked against onnxruntime on the CPU."""

from __future__ import annotations

import re

import onnx
import pytest
import torch
from tolerances import export_atol, perturb_one_element_

from dinov3_ros.cli import main
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.tools.export import ExportGraph, compare_with_onnxruntime, example_input, export_onnx

pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (pip install '.[export]')")
pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime (pip install '.[export]')")


@pytest.fixture(scope="module")
def exported(tiny_engine, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, export_onnx(tiny_engine, path)


def test_the_graph_has_one_image_input_and_every_heads_raw_outputs(tiny_engine, exported):
    path, names = exported
    model = onnx.load(str(path))
    (image,) = model.graph.input
    assert image.name == "image"
    assert [d.dim_value for d in image.type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert [o.name for o in model.graph.output] == names
    # detection: 3 levels x (class, box, centerness) logits; segmentation and depth: one map each
    assert names == ["detection.0", *(f"detection.{i}" for i in range(1, 9)), "segmentation.0", "depth.0"]
    outputs = ExportGraph(tiny_engine)(*example_input(tiny_engine))
    assert outputs[-2].shape[1] == 134 and outputs[-1].shape[1] == 1


def test_onnxruntime_reproduces_pytorch(tiny_engine, exported):
    path, _ = exported
    assert compare_with_onnxruntime(tiny_engine, path) <= export_atol(tiny_engine)


# One number for all outputs, so the check is as tight as the largest output (detection's logits) allows.
@pytest.mark.parametrize("where", ["backbone.patch_embed.proj.weight", "detection.fpn.proj.0.weight", "depth.out.weight"])
def test_the_check_catches_a_one_weight_change(tiny_engine, exported, where):
    path, _ = exported
    owner, name = where.split(".", 1)
    model = tiny_engine.extractor.backbone if owner == "backbone" else tiny_engine.heads[owner].model
    weight = model.get_parameter(name)
    original = weight.detach().clone()
    try:
        perturb_one_element_(weight)  # PyTorch now runs other weights than the graph holds
        assert compare_with_onnxruntime(tiny_engine, path) > export_atol(tiny_engine)
    finally:
        with torch.no_grad():
            weight.copy_(original)


def test_a_graph_from_another_size_is_refused_by_the_check(exported, no_weights):
    path, _ = exported
    other = Engine.create(backbone="vits16", device="cpu", size=48, random_weights=True,
                          heads=["detection", "segmentation", "depth"], warmup=False)
    with pytest.raises(ValueError, match=r"takes an image of shape \[1, 3, 32, 32\]; this engine feeds \[1, 3, 48, 48\]"):
        compare_with_onnxruntime(other, path)


def test_dinov3_export_writes_and_checks(tmp_path, capsys, no_weights):
    out = tmp_path / "depth.onnx"
    torch.manual_seed(0)
    code = main(["export", "--backbone", "vits16", "--size", "32", "--heads", "depth", "--random-weights",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "input 'image' (1, 3, 32, 32) normalised RGB, outputs depth.0" in text
    difference = float(re.search(r"max abs difference (\S+)", text)[1])
    torch.manual_seed(0)  # the same random weights as the command's, for the outputs' magnitude
    same = Engine.create(backbone="vits16", device="cpu", size=32, heads=["depth"], random_weights=True)
    assert difference <= export_atol(same)
    assert compare_with_onnxruntime(same, out) <= export_atol(same)  # really the same weights


def test_a_temporal_head_exports_with_the_previous_frames_maps_in_and_this_frames_out(tmp_path, no_weights):
    engine = Engine.create(backbone="vits16", device="cpu", size=32, heads=["flow", "ssd"], random_weights=True)
    names = export_onnx(engine, tmp_path / "flow.onnx")
    model = onnx.load(str(tmp_path / "flow.onnx"))
    assert [i.name for i in model.graph.input] == ["image", "previous.0"]
    assert names == ["flow.0", "ssd.0", "ssd.1", "features.0"]  # and the maps to feed back as previous.0
    assert compare_with_onnxruntime(engine, tmp_path / "flow.onnx") <= export_atol(engine)
