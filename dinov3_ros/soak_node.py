"""The soak through the real node (``dinov3 soak --node``): ``Dinov3Node`` in this process, fed and watched
over rclpy, its resident memory sampled as in ``dinov3_toolkit.tools.soak``.

Everything a camera run exercises is in the loop: the subscription and the latest-frame worker,
decoding, the engine with every head, the messages, and every overlay (a subscriber listens to
every output topic, and the node draws an overlay only for a watched topic). Frames are sent one
at a time, each once the previous one's combined overlay has come back, so none is dropped and
the count of frames is the count processed. The listener keeps counts, never messages, so the
soak holds nothing that grows. rclpy is imported when the soak runs, so `dinov3 --help` works
without ROS.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads.loader import discover
from dinov3_toolkit.tools.benchmark import machine
from dinov3_toolkit.tools.soak import RssRecorder, RssSample, SoakResult, SyntheticFrames, lowest_thresholds

from . import messages
from .topics import OVERLAY

OUTPUT_TIMEOUT_S = 60.0  # a frame whose overlay has not come back by then is counted and the soak goes on
_NOT_OUTPUTS = ("/rosout", "/parameter_events", "/transition_event")  # what every (lifecycle) node publishes
_RUNS = itertools.count()  # soaks run in this process, for a namespace of their own


def node_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The node's parameters for a soak: ``params`` (backbone, image_size, heads, ...) on random weights,
    started by the soak rather than by itself, each detector's threshold at its minimum."""
    heads = list(params.get("heads") or [])
    manifests, _ = discover((), templates=bool(heads))  # templates are found when named, as in the node
    wanted = {name: m for name, m in manifests.items() if not heads or name in heads}
    overrides = {"random_weights": True, "autostart": False, **params}
    for head, values in lowest_thresholds(wanted).items():
        overrides.update({f"{head}.{name}": value for name, value in values.items()})
    return overrides


def run_node_soak(params: Mapping[str, Any], *, frames: int, sample_every: int,
                  on_sample: Callable[[RssSample], None] | None = None) -> SoakResult:
    """``frames`` camera frames through a ``Dinov3Node`` built with ``params`` (node parameters), every
    output subscribed to, RSS every ``sample_every`` frames."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from .node import Dinov3Node

    recorder = RssRecorder(frames, sample_every, on_sample)
    overrides = node_overrides(params)
    context = rclpy.Context()
    rclpy.init(context=context)
    # Unique to this run: no other process's nodes on these topics, and not an earlier soak's in this process
    # either, whose node of the same name the graph can still list (without its publishers) after it is gone.
    namespace = f"/dinov3_soak_{os.getpid()}_{next(_RUNS)}"
    executor = SingleThreadedExecutor(context=context)
    nodes = []
    try:
        node = Dinov3Node(namespace=namespace, context=context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        nodes.append(node)
        nodes.append(rclpy.create_node("dinov3_soak_listener", namespace=namespace, context=context))
        for each in nodes:
            executor.add_node(each)
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise ConfigError("the node did not configure: its log above says why")
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise ConfigError("the node did not activate: its log above says why")
        engine = node.engine  # the node's own: which heads run, where, and on what weights
        overlay = f"{namespace}/{OVERLAY}"
        listener = _Listener(nodes[1], _outputs(node, executor, overlay), overlay)
        _spin_until(executor, lambda: listener.matched(node), OUTPUT_TIMEOUT_S, "the node and the listener to match")

        source = SyntheticFrames(node.get_parameter("image_size").value)
        missing = 0
        recorder.record(0)
        for i in range(frames):
            stamp = source.stamp_ns(i)
            listener.send(source.frame(i), stamp)
            if not _spin_until(executor, lambda: listener.overlay_stamp == stamp, OUTPUT_TIMEOUT_S):
                missing += 1
            recorder.record(i + 1)
        sent = time.monotonic()  # the head counts of a /diagnostics published after the last frame
        _spin_until(executor, lambda: listener.diagnostics_at > sent, OUTPUT_TIMEOUT_S, "a /diagnostics message")
        settings = {k: v for k, v in overrides.items() if "." not in k}
        return SoakResult("node", frames, tuple(engine.heads), tuple(recorder.samples), listener.head_errors(),
                          tuple(engine.random_weights), settings, frames_without_output=missing,
                          messages={t.removeprefix(f"{namespace}/"): n for t, n in listener.counts.items()},
                          machine=machine(engine.device))
    finally:
        executor.shutdown(timeout_sec=1.0)
        for each in reversed(nodes):  # the node last: destroy_node() joins its worker before its publishers go
            each.destroy_node()
        context.try_shutdown()


class _Listener:
    """Publishes the camera frames and listens to every output topic, counting messages (keeping none)."""

    def __init__(self, node: Any, topics: dict[str, str], overlay: str) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.M = messages.ros_messages()
        self.topics, self.overlay = topics, overlay
        self.counts: Counter[str] = Counter(dict.fromkeys(topics, 0))
        self.overlay_stamp = 0  # of the last combined overlay received, in ns
        self.diagnostics, self.diagnostics_at = None, 0.0  # the last /diagnostics, and its time.monotonic()
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)  # meets volatile and latched topics
        for topic, msgtype in topics.items():
            node.create_subscription(self.M.message_class(msgtype), topic, self._counter(topic), qos)
        self.camera = node.create_publisher(self.M.message_class("sensor_msgs/msg/Image"), "image", qos)

    def _counter(self, topic: str) -> Callable[[Any], None]:
        def received(msg: Any) -> None:
            self.counts[topic] += 1
            if topic == self.overlay:
                self.overlay_stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            elif topic == "/diagnostics":
                self.diagnostics, self.diagnostics_at = msg, time.monotonic()

        return received

    def head_errors(self) -> dict[str, int]:
        """Frames each head failed on, from the per-head statuses of the last /diagnostics (``health.py``)."""
        failed = {}
        for status in self.diagnostics.status if self.diagnostics is not None else ():
            if ": head " in status.name:
                values = {kv.key: kv.value for kv in status.values}
                failed[status.name.split(": head ", 1)[1]] = int(values.get("frames failed", 0))
        return failed

    def matched(self, node: Any) -> bool:
        """The node subscribes to the frames, and the listener to every output."""
        return self.camera.get_subscription_count() > 0 and all(node.count_subscribers(t) for t in self.topics)

    def send(self, rgb: Any, stamp_ns: int) -> None:
        header = messages.make_header(self.M, stamp_ns // 10**9, stamp_ns % 10**9, "camera_optical")
        self.camera.publish(messages.rgb_to_msg(self.M, rgb, header))


def _outputs(node: Any, executor: Any, overlay: str) -> dict[str, str]:
    """The node's output topics and their types (``pkg/msg/Name``), once the graph lists them."""
    def listed() -> dict[str, str]:
        found = node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())
        return {topic: types[0] for topic, types in found if not topic.endswith(_NOT_OUTPUTS)}

    _spin_until(executor, lambda: overlay in listed(), OUTPUT_TIMEOUT_S, f"the node to publish {overlay}")
    return listed()


def _spin_until(executor: Any, condition: Callable[[], bool], timeout_s: float, what: str = "") -> bool:
    """Spin until ``condition()``; False after ``timeout_s`` (a ``ConfigError`` naming ``what`` if given)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            if what:
                raise ConfigError(f"timed out after {timeout_s:g} s waiting for {what}")
            return False
        executor.spin_once(timeout_sec=0.01)
    return True
