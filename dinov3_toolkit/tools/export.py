"""ONNX export: the backbone and every enabled head as one graph, a normalised image in, raw head outputs out.

Pre-processing (resize, normalise) and post-processing (decoding boxes, NMS,
argmax, resampling to the camera frame) stay outside the graph: they are cheap,
run on the device in the engine, and differ per deployment. The graph is the
part worth handing to TensorRT (``trtexec --onnx=model.onnx``). It is exported
at one input size, the engine's (``size`` x ``size`` for ``stretch``); a graph
with a dynamic size exports but does not run yet (a Reshape keeps an
export-time shape), see the README.

Output names are ``<head>.<n>``: the n-th tensor of the head's ``forward``
result, flattened in order (nested dicts by key order, lists by index).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..engine import Engine
from ..errors import ConfigError, MissingExtra

INPUT_NAME = "image"


class ExportGraph(nn.Module):
    """The engine's backbone and heads as one module: (1, 3, H, W) normalised image -> every head's raw tensors."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine  # for its layer plan (``layers``, ``head_inputs``); not a module
        self.backbone = engine.extractor.backbone
        self.heads = nn.ModuleDict({name: head.model for name, head in engine.heads.items()})

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.backbone.forward_intermediates(image, self.engine.layers)
        outputs: list[torch.Tensor] = []
        for name, head in self.heads.items():
            outputs += tree_leaves(head(self.engine.head_inputs(name, maps)))
        return tuple(outputs)

    def output_names(self, example: torch.Tensor) -> list[str]:
        """``<head>.<n>`` for every output tensor, found by running the heads once on ``example``."""
        with torch.inference_mode():
            maps = self.backbone.forward_intermediates(example, self.engine.layers)
            return [
                f"{name}.{n}"
                for name, head in self.heads.items()
                for n in range(len(tree_leaves(head(self.engine.head_inputs(name, maps)))))
            ]


def example_input(engine: Engine) -> torch.Tensor:
    """A random normalised image of the size the engine feeds its backbone (fp32, on the CPU)."""
    side = engine.extractor.preprocess.size
    height, width = engine.extractor.preprocess.input_size(side, side)
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def export_onnx(engine: Engine, path: str | Path) -> list[str]:
    """Write the ONNX graph of ``engine`` (fp32, CPU) to ``path``; returns the output names."""
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]  # torch's exporter uses both
    if missing:
        raise MissingExtra(f"ONNX export needs {' and '.join(missing)} (pip install '.[export]')")
    if engine.device.type != "cpu":
        raise ConfigError(f"export runs on the CPU; build the engine with device='cpu' (got {engine.device})")
    graph = ExportGraph(engine).eval()
    example = example_input(engine)
    names = graph.output_names(example)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=names,
                          verbose=False)
    return names


def compare_with_onnxruntime(engine: Engine, path: str | Path) -> float:
    """The largest absolute difference between onnxruntime (CPU) on ``path`` and PyTorch, on one random input."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingExtra("checking an export needs onnxruntime (pip install '.[export]')") from e
    graph = ExportGraph(engine).eval()
    example = example_input(engine)
    with torch.inference_mode():
        expected = [t.float().numpy() for t in graph(example)]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected_input = list(session.get_inputs()[0].shape)
    if expected_input != list(example.shape):
        raise ConfigError(f"{path} takes an image of shape {expected_input}; this engine feeds {list(example.shape)} "
                         "(exported at another size?)")
    got = session.run(None, {INPUT_NAME: example.numpy()})
    if [g.shape for g in got] != [e.shape for e in expected]:
        raise ConfigError(f"{path} gives outputs of shapes {[g.shape for g in got]}; PyTorch gives "
                         f"{[e.shape for e in expected]} (exported from another model or size?)")
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
