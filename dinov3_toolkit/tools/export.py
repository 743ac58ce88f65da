"""ONNX export: the backbone and every enabled head as one graph, a normalised image in, raw head outputs out.

Pre-processing (resize, normalise) and post-processing (decoding boxes, NMS,
argmax, resampling to the camera frame) stay outside the graph: they are cheap,
run on the device in the engine, and differ per deployment. The graph is the
part worth handing to TensorRT (``trtexec --onnx=model.onnx``). It is exported
at one input size, the engine's (``size`` x ``size`` for ``stretch``); a graph
with a dynamic size exports but does not run yet (a Reshape keeps an
export-time shape), see docs/offline.md, "dinov3 export".

Output names are ``<head>.<n>``: the n-th tensor of the head's ``forward``
result, flattened in order (nested dicts by key order, lists by index). A graph
with a temporal head (flow) also takes ``previous.<i>`` and gives ``features.<i>``.

The file is self-contained up to torch's threshold for large models (1.5 GB of weights in
torch 2.13: ``vitl16`` and smaller). Above it (``vitl16plus`` and larger) torch writes the
weights beside the graph, as ``<file>.data`` (``weights_file``), because one protobuf file
cannot exceed 2 GB; the graph names that file, so the two must stay together.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..engine import Engine
from ..errors import ConfigError, MissingExtra

INPUT_NAME = "image"
EXPORTER_REGISTRY_LOG = "torch.onnx._internal.exporter._registration"


class ExportGraph(nn.Module):
    """The engine's backbone and heads as one module: (1, 3, H, W) normalised image -> every head's raw tensors.

    With a temporal head (optical flow) the graph also takes the previous frame's
    backbone maps (``previous.<i>``) and gives this frame's (``features.<i>``), so a
    deployment keeps them from one frame to the next, as the engine does.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine  # for its layer plan (``layers``, ``head_inputs``); not a module
        self.backbone = engine.extractor.backbone
        self.heads = nn.ModuleDict({name: head.model for name, head in engine.heads.items()})
        self.temporal = any(head.temporal for head in self.heads.values())
        if self.temporal and "features" in self.heads:
            raise ConfigError("a head named 'features' would share its output names with the maps a temporal head's "
                              "graph gives (features.<i>); rename that head's folder to export them together")

    def _run(self, image: torch.Tensor, previous: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        maps = self.backbone.forward_intermediates(image, self.engine.layers)
        outputs = {}
        for name, head in self.heads.items():
            inputs = self.engine.head_inputs(name, maps)
            raw = head(inputs, self.engine.head_inputs(name, previous)) if head.temporal else head(inputs)
            outputs[name] = tree_leaves(raw)
        if self.temporal:
            outputs["features"] = maps
        return outputs

    def forward(self, image: torch.Tensor, *previous: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for tensors in self._run(image, list(previous)).values() for t in tensors)

    def input_names(self) -> list[str]:
        return [INPUT_NAME, *(f"previous.{i}" for i in range(len(self.engine.layers) if self.temporal else 0))]

    def output_names(self, example: tuple[torch.Tensor, ...]) -> list[str]:
        """``<head>.<n>`` for every output tensor (and ``features.<i>``), found by running the graph on ``example``."""
        with torch.inference_mode():
            outputs = self._run(example[0], list(example[1:]))
        return [f"{name}.{n}" for name, tensors in outputs.items() for n in range(len(tensors))]


def example_input(engine: Engine) -> tuple[torch.Tensor, ...]:
    """A random normalised image of the size the engine feeds its backbone (fp32, on the CPU), and for
    temporal heads the backbone maps of a second random image as the previous frame's."""
    side = engine.extractor.preprocess.size
    height, width = engine.extractor.preprocess.input_size(side, side)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=generator)
    if not any(head.model.temporal for head in engine.heads.values()):
        return (image,)
    with torch.inference_mode():
        previous = engine.extractor.backbone.forward_intermediates(
            torch.randn(1, 3, height, width, generator=generator), engine.layers)
    return (image, *(m.clone() for m in previous))


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
    _side_file(path).unlink(missing_ok=True)  # an earlier, larger export's weights would not match this graph
    # external_data=False: one file, unless the weights pass torch's 1.5 GB threshold (see the module docstring)
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(graph, example, str(path), dynamo=True, input_names=graph.input_names(),
                          output_names=names, verbose=False, external_data=False)
    return names


def weights_file(path: str | Path) -> Path | None:
    """The file beside the graph at ``path`` that holds its weights, if the export wrote one (above 1.5 GB)."""
    side = _side_file(Path(path))
    return side if side.is_file() else None


def _side_file(path: Path) -> Path:
    return path.with_name(path.name + ".data")  # the name torch's exporter (onnxscript) gives it


class _TorchvisionNotice(logging.Filter):
    """Drops torch's "torchvision is not installed. Skipping torchvision::nms" (and roi_align, roi_pool,
    deform_conv2d): the exporter warns while registering its translations of torchvision's ops, which
    our graphs never contain, so the warning says nothing about this export."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's two notices that concern torch itself, not the graph: each for what it is."""
    registry = logging.getLogger(EXPORTER_REGISTRY_LOG)
    notice = _TorchvisionNotice()
    registry.addFilter(notice)
    try:
        with warnings.catch_warnings():
            # torch's exporter copies its own tree specs, which trips torch's own deprecation of LeafSpec
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        registry.removeFilter(notice)


def compare_with_onnxruntime(engine: Engine, path: str | Path) -> float:
    """The largest absolute difference between onnxruntime (CPU) on ``path`` and PyTorch, on one random input."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingExtra("checking an export needs onnxruntime (pip install '.[export]')") from e
    graph = ExportGraph(engine).eval()
    example = example_input(engine)
    with torch.inference_mode():
        expected = [t.float().numpy() for t in graph(*example)]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected_input = list(session.get_inputs()[0].shape)
    if expected_input != list(example[0].shape):
        raise ConfigError(f"{path} takes an image of shape {expected_input}; this engine feeds "
                          f"{list(example[0].shape)} (exported at another size?)")
    if [i.name for i in session.get_inputs()] != graph.input_names():
        raise ConfigError(f"{path} takes inputs {[i.name for i in session.get_inputs()]}; this engine's graph "
                          f"takes {graph.input_names()} (exported with other heads?)")
    got = session.run(None, {name: t.numpy() for name, t in zip(graph.input_names(), example)})
    if [g.shape for g in got] != [e.shape for e in expected]:
        raise ConfigError(f"{path} gives outputs of shapes {[g.shape for g in got]}; PyTorch gives "
                         f"{[e.shape for e in expected]} (exported from another model or size?)")
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
