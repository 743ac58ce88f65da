"""What `dinov3 export` leaves on disk: one .onnx file, a weights side file only above torch's size threshold,
and none of the exporter's notices about torch itself."""

from __future__ import annotations

import logging
import warnings

import onnx
import pytest
from onnx.external_data_helper import uses_external_data
from tolerances import export_atol

from dinov3_toolkit.engine import Engine
from dinov3_toolkit.tools.export import EXPORTER_REGISTRY_LOG, compare_with_onnxruntime, export_onnx, weights_file

pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (pip install '.[export]')")
pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime (pip install '.[export]')")


@pytest.fixture
def engine(no_weights) -> Engine:
    """One block of vits16 and the depth head: a graph that exports in seconds."""
    return Engine.create(backbone="vits16", device="cpu", size=32, heads=["depth"], random_weights=True,
                         backbone_overrides={"depth": 1}, warmup=False)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_small_graph_is_one_file_and_an_earlier_side_file_is_removed(engine, tmp_path):
    path = tmp_path / "model.onnx"
    stale = tmp_path / "model.onnx.data"
    stale.write_bytes(b"weights of an earlier, larger export")
    registry = logging.getLogger(EXPORTER_REGISTRY_LOG)
    seen, filters = Collect(), list(registry.filters)
    registry.addHandler(seen)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export_onnx(engine, path)
    finally:
        registry.removeHandler(seen)
    assert not stale.exists() and weights_file(path) is None
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.initializer and not any(uses_external_data(t) for t in model.graph.initializer)
    assert compare_with_onnxruntime(engine, path) <= export_atol(engine)
    assert not [m for m in seen.messages if "torchvision" in m]  # torch's notice about its torchvision ops
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    assert registry.filters == filters  # the notice is silenced during the export only


def test_above_torchs_threshold_the_weights_go_to_a_side_file_the_graph_names(engine, tmp_path, monkeypatch):
    from torch.onnx._internal.exporter import _onnx_program

    if not hasattr(_onnx_program, "_LARGE_MODEL_THRESHOLD"):
        pytest.skip("this torch decides external data otherwise; the threshold this test lowers is gone")
    monkeypatch.setattr(_onnx_program, "_LARGE_MODEL_THRESHOLD", 0)  # as if this graph were above 1.5 GB
    path = tmp_path / "model.onnx"
    export_onnx(engine, path)
    assert weights_file(path) == tmp_path / "model.onnx.data"
    model = onnx.load(str(path), load_external_data=False)
    assert any(uses_external_data(t) for t in model.graph.initializer)
    assert compare_with_onnxruntime(engine, path) <= export_atol(engine)  # onnxruntime finds the side file beside the graph
