"""The foxglove_msgs 3.x definitions of ImageAnnotations, for typestores and venvs that lack the package.

Foxglove's Image panel draws ``foxglove_msgs/msg/ImageAnnotations`` over a camera image; nothing in
ROS core defines it, so bags register these texts and ``make ros`` generates a Python package from
them. They are the ROS 2 texts of foxglove_msgs 3.0.0-3.2.x (the layout Humble and Jazzy shipped
from 2023; Jazzy's rosdistro entry names 3.2.2), with comments dropped: ``foxglove/schemas``
``ros_foxglove_msgs/ros2`` at ImageAnnotations 7e20581, PointsAnnotation 555b061, TextAnnotation
9495371, CircleAnnotation 2863dee, and Color 9a78ae4 / Point2 1660613 (``ros1``, same fields).

Releases from 2026 on add ``timestamp`` and ``metadata`` fields, which change the wire layout. The
node publishes with whatever foxglove_msgs is installed (every field set here exists in both), and a
bag carries these texts with it, so Foxglove reads our bags whichever release it knows. The tests
check field names, types and order against the package's, and RIHS01 hashes against a rosidl build.
"""

from __future__ import annotations

FOXGLOVE_MSGS_VERSION = "3.2.2"

FOXGLOVE_MSGS: dict[str, str] = {
    "foxglove_msgs/msg/Color": "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n",
    "foxglove_msgs/msg/Point2": "float64 x\nfloat64 y\n",
    "foxglove_msgs/msg/CircleAnnotation": (
        "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nfloat64 diameter\nfloat64 thickness\n"
        "foxglove_msgs/Color fill_color\nfoxglove_msgs/Color outline_color\n"
    ),
    "foxglove_msgs/msg/PointsAnnotation": (
        "builtin_interfaces/Time timestamp\n"
        "uint8 UNKNOWN=0\nuint8 POINTS=1\nuint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\n"
        "uint8 type\nfoxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\n"
        "foxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\nfloat64 thickness\n"
    ),
    "foxglove_msgs/msg/TextAnnotation": (
        "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nstring text\nfloat64 font_size\n"
        "foxglove_msgs/Color text_color\nfoxglove_msgs/Color background_color\n"
    ),
    "foxglove_msgs/msg/ImageAnnotations": (
        "foxglove_msgs/CircleAnnotation[] circles\nfoxglove_msgs/PointsAnnotation[] points\n"
        "foxglove_msgs/TextAnnotation[] texts\n"
    ),
}
