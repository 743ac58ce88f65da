"""rosbag2 in and out without a ROS install: camera frames from a bag, the node's topics into a new one.

Reading and writing go through ``rosbags`` (pure Python; sqlite3 and MCAP), and
every message is built by ``messages`` via ``topics.frame_messages``, the
node's own code, so a processed bag holds what the node would have published
for the same frames: same topics under the namespace, same types, the input
header on every message, and each message recorded at its input's time.

Bags are written as rosbag2 metadata version 8, the newest that ROS 2 Humble
reads (version 9 stores QoS profiles in a form Humble rejects); Jazzy reads it
too. LabelInfo is recorded as transient local, so ``ros2 bag play`` republishes
it latched. The metadata's ``custom_data`` says what ran on random weights
(``dinov3.random_weights``), so a bag copied away from its run still says when
its results are meaningless.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinov3_toolkit.engine import FrameResult
from dinov3_toolkit.errors import Dinov3Error
from dinov3_toolkit.heads.loader import LoadedHead
from dinov3_toolkit.offline.runner import FrameWriter
from dinov3_toolkit.offline.sources import SourceFrame
from dinov3_toolkit.overlays import draw_overlays

from . import messages
from .bag_diagnostics import DIAGNOSTICS, BagDiagnostics
from .messages import DecodeError, compressed_to_rgb, image_to_rgb
from .messages.backend import import_rosbags
from .names import check_full_topic_name, join_topic
from .topics import (
    DEFAULT_NAMESPACE,
    IMAGE,
    IMAGE_TYPES,
    OVERLAY,
    RESULT_TOPICS,
    OutputTopic,
    frame_messages,
    label_info_messages,
    output_topics,
    overlays_wanted,
)

STORAGES = ("mcap", "sqlite3")
BAG_VERSION = 8
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"  # where frames from files, videos and cameras are recorded
RANDOM_WEIGHTS_KEY = "dinov3.random_weights"  # custom_data: what ran on random weights, comma-separated; "" if none
# The last name of the image topics dinov3 writes: a bag it wrote has them beside the camera's.
OUTPUT_IMAGE_NAMES = frozenset({OVERLAY, *(topic.suffix for topics in RESULT_TOPICS.values() for topic in topics
                                           if topic.msgtype == IMAGE)})


class BagError(Dinov3Error, ValueError):
    """A bag that cannot be read or written as asked; the message says what to change."""


@dataclass
class BagFrame(SourceFrame):
    """A frame read from a bag, with the recorded message it came from (copied unchanged into the output)."""

    topic: str = ""
    msgtype: str = ""
    rawdata: bytes = b""
    log_time_ns: int = 0


class BagImages:
    """The image messages of one topic of a rosbag2 (sqlite3 or MCAP), in recording order.

    ``topic`` may be omitted when the bag has exactly one camera topic: one ``Image``
    or ``CompressedImage`` topic besides those dinov3 writes (``pick_image_topic``;
    ``namespace``: where this run writes its results). Frames that cannot be decoded
    arrive with ``error`` set.
    """

    def __init__(self, path: str | Path, topic: str | None = None, *, distro: str = "jazzy",
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        AnyReader = import_rosbags("rosbags.highlevel").AnyReader  # noqa: N806  (a class)

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        # Bags written by ros2 bag and rosbags carry their message definitions; the
        # distro's store is only for older bags that do not.
        typestore = messages.bag_messages(distro).typestore
        try:
            self.reader = AnyReader([self.path], default_typestore=typestore)
            self.reader.open()
        except Exception as e:  # rosbags raises several types for "not a bag"
            raise BagError(f"{self.path} is not a rosbag2 folder or .mcap/.db3 file rosbags can read: {e}") from e
        images = {c.topic: c.msgtype for c in self.reader.connections if c.msgtype in IMAGE_TYPES}
        try:
            self.topic = pick_image_topic(images, topic, self.path, namespaces=(DEFAULT_NAMESPACE, namespace))
        except BagError:
            self.reader.close()
            raise
        self.msgtype = images[self.topic]
        self._connections = [c for c in self.reader.connections if c.topic == self.topic]
        self.total = sum(c.msgcount for c in self._connections) or None  # None: unknown (e.g. a truncated MCAP)

    def __iter__(self) -> Iterator[BagFrame]:
        for index, (connection, log_time, rawdata) in enumerate(self.reader.messages(connections=self._connections)):
            rgb, error, stamp, frame_id = None, None, log_time, ""
            try:
                msg = self.reader.deserialize(rawdata, connection.msgtype)
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                frame_id = msg.header.frame_id
                compressed = connection.msgtype.endswith("CompressedImage")
                rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
            except DecodeError as e:
                error = str(e)
            except Exception as e:  # a corrupt message must not end the run
                error = f"message cannot be deserialised: {type(e).__name__}: {e}"
            yield BagFrame(
                index=index,
                name=f"{index:06d}",
                origin=f"{self.path}:{self.topic}#{index}",
                stamp_ns=stamp,
                rgb=rgb,
                error=error,
                frame_id=frame_id,
                topic=self.topic,
                msgtype=connection.msgtype,
                rawdata=bytes(rawdata),
                log_time_ns=log_time,
            )

    def close(self) -> None:
        self.reader.close()


def pick_image_topic(images: Mapping[str, str], wanted: str | None, path: Path, *,
                     namespaces: Sequence[str] = (DEFAULT_NAMESPACE,)) -> str:
    """``wanted`` if it is an image topic of the bag, else the bag's only camera topic.

    ``images`` maps topics to types. Camera topics are the image topics dinov3 did not
    write (``camera_topics``), so that a bag dinov3 wrote can be processed again
    without ``--topic``.
    """
    if wanted is not None:
        if wanted not in images:
            raise BagError(f"bag {path} has no Image or CompressedImage topic {wanted}; "
                           f"its image topics: {_listing(images)}")
        return wanted
    if not images:
        raise BagError(f"bag {path} has no Image or CompressedImage topic; a camera topic is needed")
    cameras = camera_topics(images, namespaces)
    if len(cameras) == 1:
        return next(iter(cameras))
    ours = {t: m for t, m in images.items() if t not in cameras}
    skipped = f"; skipped as dinov3 outputs: {_listing(ours)}" if ours else ""
    problem = "has several camera image topics" if cameras else "has no camera image topic"
    raise BagError(f"bag {path} {problem}; choose one with --topic (camera topics: {_listing(cameras)}{skipped})")


def camera_topics(images: Mapping[str, str], namespaces: Sequence[str] = (DEFAULT_NAMESPACE,)) -> dict[str, str]:
    """The image topics dinov3 did not write: those outside ``namespaces`` (the root namespace ``/`` holds every
    topic, so it says nothing); and, only if several remain, those not named like a result image (a bag
    written under another namespace: ``.../overlay``, ``.../labels``...), so a lone ``/camera/depth`` is kept."""
    prefixes = [namespace.rstrip("/") + "/" for namespace in namespaces if namespace.strip("/")]
    cameras = {t: m for t, m in images.items() if not any(t.startswith(prefix) for prefix in prefixes)}
    if len(cameras) > 1:
        cameras = {t: m for t, m in cameras.items() if t.rsplit("/", 1)[-1] not in OUTPUT_IMAGE_NAMES} or cameras
    return cameras


def _listing(images: Mapping[str, str]) -> str:
    return ", ".join(f"{t} ({m.split('/')[-1]})" for t, m in sorted(images.items())) or "none"


class BagOutput(FrameWriter):
    """A rosbag2 being written, one whole frame at a time: the input image and the node's topics.

    ``heads`` decides the topics (``topics.output_topics``). The combined overlay
    is recorded unless ``overlay`` is false; per-head overlays only with
    ``head_overlays``; /diagnostics, one DiagnosticArray per frame, only with
    ``diagnostics``. ``random_weights`` (``Engine.random_weights``) goes into the
    metadata. Frames that did not come from a bag are recorded as rgb8 images on
    ``image_topic``. Close it (or use it as a context manager) to finish the bag;
    an interrupted run closed this way leaves a valid bag.
    """

    def __init__(
        self,
        path: str | Path,
        heads: Mapping[str, LoadedHead],
        *,
        storage: str = "mcap",
        distro: str = "jazzy",
        namespace: str = DEFAULT_NAMESPACE,
        class_id: str = "name",
        overlay: bool = True,
        head_overlays: bool = False,
        diagnostics: BagDiagnostics | None = None,
        notice: str | None = None,
        random_weights: Sequence[str] = (),
        image_topic: str = DEFAULT_IMAGE_TOPIC,
        overwrite: bool = False,
    ) -> None:
        rosbag2 = import_rosbags("rosbags.rosbag2")
        StoragePlugin, Writer = rosbag2.StoragePlugin, rosbag2.Writer  # noqa: N806  (classes)

        if storage not in STORAGES:
            raise BagError(f"bag storage must be one of {STORAGES}, got {storage!r}")
        messages.check_class_id_mode(class_id)
        recorded = [topic for topic in output_topics(heads)
                    if not (topic.name == OVERLAY and not overlay)
                    and not (topic.name.endswith("/overlay") and not head_overlays)]
        names = {topic.name: join_topic(namespace, topic.name) for topic in recorded}  # checked before writing
        check_full_topic_name(image_topic)
        self.path = Path(path)
        _make_room(self.path, overwrite)
        self.messages = messages.bag_messages(distro)
        self.class_id = class_id
        self.notice = notice
        self.image_topic = image_topic
        self.diagnostics = diagnostics
        self.frames = 0
        self.counts: Counter[str] = Counter()  # messages written per topic (full name)
        self._heads = heads
        self._writer = Writer(
            self.path,
            version=BAG_VERSION,
            storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3,
        )
        self._writer.open()
        self._writer.set_custom_data(RANDOM_WEIGHTS_KEY, ",".join(random_weights))
        self._connections: dict[str, Any] = {
            topic.name: self._writer.add_connection(names[topic.name], topic.msgtype,
                                                    typestore=self.messages.typestore,
                                                    offered_qos_profiles=[_qos(topic)])
            for topic in recorded
        }
        if diagnostics is not None:
            self._connections[DIAGNOSTICS.name] = self._writer.add_connection(
                DIAGNOSTICS.name, DIAGNOSTICS.msgtype, typestore=self.messages.typestore,
                offered_qos_profiles=[_qos(DIAGNOSTICS)])
        self._inputs: dict[tuple[str, str], Any] = {}
        self.wants_overlay = overlay

    def write(self, item: SourceFrame, frame: FrameResult, overlay: np.ndarray | None) -> None:
        """Record the frame's input image and its results, all at the input's time (LabelInfo before the first)."""
        M = self.messages
        header = messages.make_header(M, item.stamp_ns // 10**9, item.stamp_ns % 10**9, item.frame_id)
        if isinstance(item, BagFrame):
            log_time, topic, msgtype, rawdata = item.log_time_ns, item.topic, item.msgtype, item.rawdata
        else:
            log_time, topic, msgtype = item.stamp_ns, self.image_topic, "sensor_msgs/msg/Image"
            rawdata = self._serialize(messages.rgb_to_msg(M, item.rgb, header))
        if self.frames == 0:  # LabelInfo once, before the first results, as the node publishes it at configure
            for name, msg in label_info_messages(M, self._heads, header).items():
                self._write(self._connections[name], log_time, msg)
        self._writer.write(self._input_connection(topic, msgtype), log_time, rawdata)
        self.counts[topic] += 1
        wanted = self._connections.__contains__
        heads, combined = overlays_wanted(frame.results, wanted)
        given = overlay if combined else None  # the runner draws the composite for its own files too
        overlays = draw_overlays(item.rgb, frame.results, heads=heads, combined=combined and given is None,
                                 notice=self.notice)
        if given is not None:
            overlays.combined = given
        outgoing = frame_messages(M, header, frame, overlays, wanted=wanted, class_id=self.class_id)
        for name, msg in outgoing.items():
            self._write(self._connections[name], log_time, msg)
        if self.diagnostics is not None:  # stamped like the node's: the time, and no frame
            statuses = self.diagnostics.statuses(item, frame)
            node_header = messages.make_header(M, item.stamp_ns // 10**9, item.stamp_ns % 10**9, "")
            self._write(self._connections[DIAGNOSTICS.name], log_time,
                        messages.diagnostics_to_msg(M, node_header, statuses))
        self.frames += 1

    def _input_connection(self, topic: str, msgtype: str) -> Any:
        if (topic, msgtype) not in self._inputs:
            qos = [_qos(OutputTopic(topic, msgtype))]  # offered as a result topic is
            self._inputs[topic, msgtype] = self._writer.add_connection(
                topic, msgtype, typestore=self.messages.typestore, offered_qos_profiles=qos
            )
        return self._inputs[topic, msgtype]

    def _serialize(self, msg: Any) -> bytes:
        return self.messages.typestore.serialize_cdr(msg, msg.__msgtype__)

    def _write(self, connection: Any, log_time: int, msg: Any) -> None:
        self._writer.write(connection, log_time, self._serialize(msg))
        self.counts[connection.topic] += 1

    def topics(self) -> dict[str, str]:
        """Every topic of the bag (full name) and its type, in the order they were added."""
        return {c.topic: c.msgtype for c in self._writer.connections}

    def close(self) -> None:
        self._writer.close()

    def describe(self) -> str:
        """What was written where, for the closing summary."""
        return f"{self.frames} frame(s) in bag {self.path.resolve()}"


def check_output_path(path: str | Path, overwrite: bool, *, input_path: str | Path | None = None) -> None:
    """Raise unless a bag can be written at ``path``: it is new, or an earlier bag and ``overwrite`` is set.

    Never the input bag, nor a folder inside it or around it. Callers check before
    loading a model, so that a taken path is reported at once.
    """
    path = Path(path)
    if input_path is not None:
        a, b = path.resolve(), Path(input_path).resolve()
        if a == b or a in b.parents or b in a.parents:
            raise BagError(f"output bag {path} would overwrite or nest with the input bag {input_path}; "
                           "choose an --out outside it")
    if not path.exists():
        return
    is_bag = _is_earlier_bag(path)
    if overwrite and is_bag:
        return
    hint = "pass --overwrite to replace it" if is_bag else "it is not a bag, so choose another path"
    raise BagError(f"output bag {path} exists; {hint}")


def _is_earlier_bag(path: Path) -> bool:
    """A folder holding only a bag's files (a run killed hard may have left no metadata.yaml)."""
    if not path.is_dir():
        return False
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(n == "metadata.yaml" or n.endswith((".mcap", ".db3", ".db3-journal")) for n in names)


def _make_room(path: Path, overwrite: bool) -> None:
    """rosbags writes into a new folder; ``overwrite`` removes an earlier bag there (and nothing else)."""
    check_output_path(path, overwrite)
    if path.exists():
        shutil.rmtree(path)


def _qos(topic: OutputTopic) -> Any:
    """What the node offers on ``topic`` (``OutputTopic`` holds the rule), as rosbags records it.

    Called by a ``BagOutput``, which has already found rosbags.
    """
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(0, 0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=topic.depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if topic.latched else QosDurability.VOLATILE,
        deadline=never,
        lifespan=never,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=never,
        avoid_ros_namespace_conventions=False,
    )
