"""Typed head results <-> ROS 2 messages, written once for the node and for offline bag tools.

- ``backend``: where messages come from (rclpy in the node, rosbags offline) and the header;
- ``images``: sensor_msgs/Image and CompressedImage both ways, over one encoding table;
- ``vision``: vision_msgs Detection2DArray and LabelInfo;
- ``annotations``: foxglove_msgs ImageAnnotations, the boxes and labels Foxglove draws over the image;
- ``diagnostics``: diagnostic_msgs DiagnosticArray.

What a subscriber can rely on: every message gets a copy of the input image's header (stamp and
frame_id; ImageAnnotations, which has no header, the stamp in each annotation), and coordinates are
the input image's pixels, x right and y down.
"""

from .annotations import detections_to_annotations
from .backend import (
    DISTROS,
    BagMessages,
    ConversionError,
    MessageBackend,
    RosMessages,
    bag_messages,
    make_header,
    ros_messages,
)
from .diagnostics import Level, Status, diagnostics_to_msg
from .images import (
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    DecodeError,
    compressed_to_rgb,
    depth_to_msg,
    flow_to_msg,
    image_to_rgb,
    labels_to_msg,
    raw_array,
    rgb_to_msg,
    to_rgb,
)
from .vision import CLASS_ID_MODES, check_class_id_mode, detections_to_msg, label_info_to_msg

__all__ = [
    "CLASS_ID_MODES", "DISTROS", "SUPPORTED_COMPRESSED_FORMATS", "SUPPORTED_ENCODINGS", "BagMessages",
    "ConversionError", "DecodeError", "Level", "MessageBackend", "RosMessages", "Status", "bag_messages",
    "check_class_id_mode", "compressed_to_rgb", "depth_to_msg", "detections_to_annotations", "detections_to_msg",
    "diagnostics_to_msg", "flow_to_msg", "image_to_rgb", "label_info_to_msg", "labels_to_msg", "make_header",
    "raw_array", "rgb_to_msg", "ros_messages", "to_rgb",
]
