"""A head folder whose head returns an invalid result on every real frame, for the isolation tests.

Its label map has the model input's size instead of the frame's: the bug of a segmentation head
that forgets to map its logits back to the camera image. The warm-up frame is square at the input
size, so the head passes the warm-up, runs, and then fails on every frame of another size.
"""

from __future__ import annotations

from pathlib import Path

BAD = "bad"
BAD_MESSAGE = "returned an invalid result: its label map is"  # the engine's words, in every report of it

MODEL = '''
from dinov3_toolkit.heads import Head, SemanticLabels, labels_at, labels_to_host
from torch import nn


class InputSizeLabels(Head):
    def __init__(self, class_names, in_channels):
        super().__init__(class_names)
        self.classifier = nn.Conv2d(in_channels, len(self.class_names), kernel_size=1)

    def forward(self, features):
        return self.classifier(features[0])

    def postprocess(self, logits, image, params):
        labels = labels_at(logits.float(), image.input_size)  # the bug: the model input's size, not the frame's
        return SemanticLabels(labels_to_host(labels, len(self.class_names)), self.class_names)
'''


def write_bad_head(heads_dir: Path, name: str = BAD, *, in_channels: int = 384) -> Path:
    """``heads_dir/head_<name>``: a segmentation head (no weights file: it runs as initialised)."""
    folder = heads_dir / f"head_{name}"
    folder.mkdir(parents=True)
    (folder / "head.yaml").write_text(f"task: segmentation\nmodel: model.InputSizeLabels\n"
                                      f"args: {{in_channels: {in_channels}}}\nclasses: class_names.txt\n")
    (folder / "class_names.txt").write_text("background\nobstacle\n")
    (folder / "model.py").write_text(MODEL)
    return folder
