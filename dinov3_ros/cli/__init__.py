"""``dinov3``: the engine and the node's message conversion without ROS running.

``dinov3 --help`` lists the subcommands, from each one's ``help`` in ``command.py``.

It lives in the ROS layer because bags use ``messages`` (the node's code);
it needs no ROS install, only ``rosbags`` for the bag outputs.
"""

from .command import build_parser, main
from .common import sample_images

__all__ = ["build_parser", "main", "sample_images"]
