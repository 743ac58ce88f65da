"""Our ROS-free tables as rclpy objects: parameter descriptors and QoS profiles.

``parameters.NODE_PARAMS`` and the heads' manifests describe parameters, ``topics.OutputTopic``
the outputs; this module turns them into what rclpy takes, so the node itself holds no QoS or
descriptor rules.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .topics import OutputTopic

RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}


def image_qos(reliability: str) -> QoSProfile:
    """The camera subscription: keep last 1 (only the newest frame matters), volatile, ``reliability``
    (docs/ros.md, QoS: why reliable is the default)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(topic: OutputTopic) -> QoSProfile:
    """Reliable (every subscriber kind accepts it), keep last ``topic.depth``; LabelInfo transient local,
    published once per configure, so that late subscribers get it."""
    durability = DurabilityPolicy.TRANSIENT_LOCAL if topic.latched else DurabilityPolicy.VOLATILE
    return QoSProfile(depth=topic.depth, reliability=ReliabilityPolicy.RELIABLE, durability=durability,
                      history=HistoryPolicy.KEEP_LAST)


def descriptor(description: str, default: Any, *, low=None, high=None, choices=()) -> ParameterDescriptor:
    """A descriptor with the range or choices that ``ros2 param describe`` shows and rclpy enforces."""
    d = ParameterDescriptor(description=description)
    if choices:
        d.additional_constraints = f"one of: {', '.join(map(str, choices))}"
    if isinstance(default, list):
        d.dynamic_typing = True  # an empty list would otherwise be typed as a byte array (rclpy#912)
    elif isinstance(default, float):
        # Dynamic, so that `ros2 param set ... 1` and `score_threshold: 1` in YAML are accepted for a
        # float parameter (rclpy types them int); our on-set callback checks the type and range.
        d.dynamic_typing = True
        if low is not None and high is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    elif isinstance(default, int) and not isinstance(default, bool) and low is not None and high is not None:
        d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return d
