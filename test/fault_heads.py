"""Head folders with one fault each, written from one small template, for the fault-injection tests.

The template is a 1x1-convolution segmentation head over the last backbone layer (384 channels:
vits16plus). A fault is a few lines put into its module, its constructor, its ``forward`` or its
``postprocess``, or a replacement for its ``model.py`` or ``head.yaml``. ``self.calls`` counts
``forward`` calls; the engine's warm-up is the first, so ``if self.calls > 1:`` makes a fault
strike on real frames only, after the head was accepted.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = '''\
import sys

import numpy as np
import torch
from torch import nn

from dinov3_toolkit.heads import DepthMap, Detections, Head, SemanticLabels, labels_at, labels_to_host
{top}


class Faulty(Head):
    def __init__(self, class_names, in_channels):
        super().__init__(class_names)
        self.classifier = nn.Conv2d(in_channels, len(self.class_names), kernel_size=1)
        self.calls = 0
{init}

    def forward(self, features):
        self.calls += 1
{forward}
        return self.classifier(features[0])

    def postprocess(self, logits, image, params):
        labels = labels_at(logits.float(), image.original_size)
        result = SemanticLabels(labels_to_host(labels, len(self.class_names)), self.class_names)
{postprocess}
        return result
'''
CLASS_NAMES = ("background", "obstacle")


@dataclass(frozen=True)
class Fault:
    """Where the fault goes; every field left empty is the healthy template's."""

    task: str = "segmentation"
    top: str = ""  # module level, after the imports
    init: str = ""
    forward: str = ""
    postprocess: str = ""  # may replace ``result``
    model: str | None = None  # the whole model.py instead of the template
    manifest: str | None = None  # the whole head.yaml instead of the template's


def detections(boxes: str = "[[1, 1, 4, 4]]", scores: str = "[0.5]", labels: str = "[0]") -> str:
    """A postprocess fault of a detection head: this one box from the second call on, a valid one before."""
    return (f"boxes, scores, labels = np.float32([[1, 1, 4, 4]]), np.float32([0.5]), np.array([0])\n"
            f"if self.calls > 1:\n"
            f"    boxes, scores, labels = np.float32({boxes}), np.float32({scores}), np.array({labels})\n"
            f"result = Detections(boxes, scores, labels, self.class_names)")


def write_head(heads_dir: Path, name: str, fault: Fault = Fault()) -> Path:
    """``heads_dir/head_<name>`` with ``fault`` in it; returns the folder."""
    folder = heads_dir / f"head_{name}"
    folder.mkdir(parents=True)
    code = fault.model if fault.model is not None else TEMPLATE.format(
        top=fault.top, init=_indent(fault.init), forward=_indent(fault.forward), postprocess=_indent(fault.postprocess))
    (folder / "model.py").write_text(code)
    manifest = (f"task: {fault.task}\nmodel: model.Faulty\nargs: {{in_channels: 384}}\nclasses: class_names.txt\n"
                if fault.manifest is None else fault.manifest)
    (folder / "head.yaml").write_text(manifest)
    (folder / "class_names.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return folder


def _indent(lines: str) -> str:
    return textwrap.indent(lines, " " * 8) if lines else ""
