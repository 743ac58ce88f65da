"""The vision_msgs 4.x message definitions we publish, for typestores that lack the package.

rosbags ships the ROS 2 core messages (std_msgs, sensor_msgs, geometry_msgs,
diagnostic_msgs) but not vision_msgs, so offline tools register these texts.
They are vision_msgs 4.1.1 (`ros-perception/vision_msgs`, branch ros2), the
version Humble and Jazzy ship, with comments dropped. A field out of order would
serialise without complaint and be read back as nonsense by a real subscriber,
so the tests compare their RIHS01 type hashes with the ones Jazzy's build generates.
"""

from __future__ import annotations

VISION_MSGS: dict[str, str] = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox2D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}
