"""``dinov3``: the engine and the node's message conversion without ROS running.

Subcommands:
  run        images (file, folder, glob), a video or a camera -> overlays, JSON, label PNGs, depth, a bag
  bag        a rosbag2 with camera images -> a new bag with the node's topics added
  demo       every built-in head on the bundled photos -> overlays, JSON and an MCAP bag
  heads      the heads found: task, classes, weights
  check      versions, devices and precisions, where weights were looked for and found
  export     the backbone and heads as one ONNX graph, checked against onnxruntime
  bench      per-frame cost stage by stage, ratios, JSON and a plot (README, "Performance")
  backbones  every backbone variant, its size and whether its weights are found
  train      a head trained on your data (COCO, VOC, masks, depth) -> a head folder the node loads
  eval       a head folder scored on a labelled data set: mAP, mIoU, AbsRel, with plots
  synth      a small synthetic data set in every format train reads
  soak       resident memory over thousands of frames through every head, or through the node

It lives in the ROS layer because bags use ``messages`` (the node's code);
it needs no ROS install, only ``rosbags`` for the bag outputs.
"""

from .command import build_parser, main
from .common import sample_images

__all__ = ["build_parser", "main", "sample_images"]
