"""Small rosbag2 files for the bag tests: camera frames in, every message of a bag out.

Input bags are written with rosbags exactly as ``ros2 bag record`` stores them
(metadata version 8, CDR), with messages built from the node's own typestore.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dinov3_ros.messages import bag_messages, make_header

M = bag_messages("jazzy")
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


@dataclass
class InputFrame:
    """One recorded camera message, and the RGB picture it shows."""

    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray  # what decoding the message must give
    rawdata: bytes = b""  # the CDR bytes recorded


@dataclass
class Recorded:
    """One message of a bag as read back."""

    log_time_ns: int
    rawdata: bytes
    msg: Any


def random_rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def raw_frame(topic: str, rgb: np.ndarray, encoding: str, stamp_ns: int, log_time_ns: int, frame_id: str) -> InputFrame:
    """A ``sensor_msgs/Image`` of ``rgb`` in ``encoding`` (rgb8, bgr8 or mono8: mono8 keeps the red channel)."""
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding == "mono8":
        pixels = rgb[..., 0]
        rgb = np.repeat(pixels[..., None], 3, axis=2)  # grey shows as equal channels
    else:
        raise ValueError(encoding)
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    msg = M.new(
        IMAGE,
        header=make_header(M, stamp_ns // 10**9, stamp_ns % 10**9, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=pixels[0].size,
        data=pixels.reshape(-1).copy(),
    )
    raw = bytes(M.typestore.serialize_cdr(msg, IMAGE))
    return InputFrame(topic, IMAGE, log_time_ns, stamp_ns, frame_id, rgb, raw)


def png_frame(topic: str, rgb: np.ndarray, fmt: str, stamp_ns: int, log_time_ns: int, frame_id: str) -> InputFrame:
    """A png ``sensor_msgs/CompressedImage`` (lossless, so it decodes to ``rgb`` exactly)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = M.new(
        COMPRESSED,
        header=make_header(M, stamp_ns // 10**9, stamp_ns % 10**9, frame_id),
        format=fmt,
        data=data.reshape(-1).copy(),
    )
    raw = bytes(M.typestore.serialize_cdr(msg, COMPRESSED))
    return InputFrame(topic, COMPRESSED, log_time_ns, stamp_ns, frame_id, rgb, raw)


def write_bag(path: Path, storage: str, frames: list[InputFrame], extra: list[tuple[str, str, int, Any]] = ()) -> Path:
    """A rosbag2 holding ``frames`` and ``extra`` (topic, msgtype, log time, message) messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connections: dict[str, Any] = {}

        def connection(topic: str, msgtype: str) -> Any:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=M.typestore)
            return connections[topic]

        records = [(f.log_time_ns, f.topic, f.msgtype, f.rawdata) for f in frames]
        records += [(t, topic, msgtype, bytes(M.typestore.serialize_cdr(msg, msgtype)))
                    for topic, msgtype, t, msg in extra]
        for log_time, topic, msgtype, raw in sorted(records, key=lambda r: r[0]):
            writer.write(connection(topic, msgtype), log_time, raw)
    return path


def read_bag(path: Path) -> tuple[dict[str, list[Recorded]], dict[str, Any]]:
    """Every message of a bag by topic in recording order, and the connection of each topic.

    No default typestore: the bag must carry the definitions of what it holds,
    as a player without our vision_msgs definitions (Foxglove, ros2 bag) needs.
    """
    from rosbags.highlevel import AnyReader

    messages: dict[str, list[Recorded]] = {}
    with AnyReader([path]) as reader:
        connections = {c.topic: c for c in reader.connections}
        assert len(connections) == len(reader.connections), "a topic has several connections"
        for c in connections.values():
            messages[c.topic] = []
        for connection, log_time, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            messages[connection.topic].append(Recorded(log_time, bytes(raw), msg))
    return messages, connections


def stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
