"""Where messages come from: rclpy classes in the node, rosbags dataclasses offline; and the header.

The same builders make rclpy messages in the node and rosbags dataclasses in tools and tests; a
small backend object (``ros_messages()`` or ``bag_messages(distro)``) supplies the message
classes and the two field representations that differ between them (``uint8[]`` and ``byte``);
it is the ``M`` argument of every builder. Builders pass every field, because rosbags dataclasses
have no defaults.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np

from dinov3_toolkit.errors import ConfigError, Dinov3Error, MissingExtra

from ..foxglove_msgs_defs import FOXGLOVE_MSGS
from ..vision_msgs_defs import VISION_MSGS

DISTROS = ("humble", "jazzy")


class ConversionError(Dinov3Error, ValueError):
    """An input a conversion cannot represent: wrong dtype, shape, encoding or content."""


class MessageBackend(Protocol):
    """Where messages come from: rclpy classes in a ROS process, rosbags dataclasses offline."""

    def new(self, typename: str, **fields: Any) -> Any:
        """A ``typename`` (``"pkg/msg/Name"``) message with the given fields."""
        ...

    def uint8_sequence(self, values: np.ndarray) -> Any:
        """A ``uint8[]`` field holding the bytes of ``values`` in C order."""
        ...

    def byte(self, value: int) -> Any:
        """A ``byte`` field."""
        ...


class RosMessages:
    """rclpy message classes, imported on first use so that this module imports without ROS.

    ``uint8[]`` fields take an ``array.array("B")`` and ``byte`` fields a one-byte
    ``bytes``: the forms rclpy stores without checking element by element.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def new(self, typename: str, **fields: Any) -> Any:
        return self.message_class(typename)(**fields)

    def message_class(self, typename: str) -> type:
        """The rclpy class of ``typename`` (``"pkg/msg/Name"``), e.g. to create a publisher."""
        cls = self._classes.get(typename)
        if cls is None:
            package, _, name = typename.split("/")
            try:
                module = importlib.import_module(f"{package}.msg")
            except ImportError as e:
                raise MissingExtra(
                    f"building {typename} needs the ROS package {package} "
                    f"(apt install ros-$ROS_DISTRO-{package.replace('_', '-')})"
                ) from e
            cls = self._classes[typename] = getattr(module, name)
        return cls

    def uint8_sequence(self, values: np.ndarray) -> array.array:
        out = array.array("B")
        out.frombytes(raw_bytes(values))
        return out

    def byte(self, value: int) -> bytes:
        return bytes((value,))


class BagMessages:
    """rosbags dataclasses of one distro's typestore, with vision_msgs and foxglove_msgs registered.

    ``typestore`` serialises them (``typestore.serialize_cdr(msg, msg.__msgtype__)``).
    ``uint8[]`` fields are numpy uint8 arrays and ``byte`` fields ints, as rosbags reads them.
    """

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, typename: str, **fields: Any) -> Any:
        return self.typestore.types[typename](**fields)

    def uint8_sequence(self, values: np.ndarray) -> np.ndarray:
        return raw_bytes(values).copy()  # the message owns its data, like a published one

    def byte(self, value: int) -> int:
        return int(value)


def ros_messages() -> RosMessages:
    """The backend for a ROS process: messages to publish with rclpy."""
    return RosMessages()


def import_rosbags(module: str) -> Any:
    """A ``rosbags`` module, or a ``MissingExtra`` saying how to get it (a colcon install may lack the pip
    requirements; see requirements.txt)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra("bags and offline messages need rosbags: pip install 'rosbags>=0.11'") from e


def bag_messages(distro: str = "humble") -> BagMessages:
    """The backend for offline tools and tests: rosbags messages with ``distro``'s definitions."""
    if distro not in DISTROS:
        raise ConfigError(f"no rosbags typestore for distro {distro!r}; expected one of {DISTROS}")
    typesys = import_rosbags("rosbags.typesys")
    Stores, get_types_from_msg, get_typestore = typesys.Stores, typesys.get_types_from_msg, typesys.get_typestore
    typestore = get_typestore({"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}[distro])
    types: dict[str, Any] = {}
    for typename, text in {**VISION_MSGS, **FOXGLOVE_MSGS}.items():
        types.update(get_types_from_msg(text, typename))
    typestore.register(types)
    return BagMessages(typestore)


def make_header(M: MessageBackend, sec: int, nanosec: int, frame_id: str = "") -> Any:
    """A std_msgs/Header; results get a copy of their input image's header through this."""
    stamp = M.new("builtin_interfaces/msg/Time", sec=int(sec), nanosec=int(nanosec))
    return M.new("std_msgs/msg/Header", stamp=stamp, frame_id=str(frame_id))


def copy_header(M: MessageBackend, header: Any) -> Any:
    return make_header(M, header.stamp.sec, header.stamp.nanosec, header.frame_id)


def raw_bytes(values: np.ndarray) -> np.ndarray:
    """The bytes of ``values`` in C order, as a flat uint8 view (a copy only if not contiguous)."""
    return np.ascontiguousarray(values).reshape(-1).view(np.uint8)
