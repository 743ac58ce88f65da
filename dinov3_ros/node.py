"""``dinov3_node``: camera images in; detections, label images, depth, overlays and diagnostics out.

A lifecycle node (Humble and Jazzy ``rclpy.lifecycle``):

* configure: load the backbone and heads (a missing weights file fails the
  transition with the loader's message), declare the heads' parameters,
  create the publishers;
* activate: subscribe and start the worker and the frame watchdog; deactivate: unsubscribe and
  stop them;
* cleanup / shutdown: drop the models and free the GPU memory.

By default it walks itself to active (``autostart``); set it false for
managed bring-up. The subscription callback only stores the newest frame; a
worker thread runs the engine (``worker.LatestFrameWorker``), so no backlog
forms and parameter changes or transitions never wait behind inference.

Nothing fails silently: a frame that does not decode, and a head that fails on a frame (raising
or returning an invalid result), are logged once per kind of problem and counted in /diagnostics
(``problems.py``) while the other heads publish. When no frame arrives for ``frame_timeout``
seconds the watchdog says why (``watchdog.py``), in the log and in /diagnostics. The library's
own log lines (weights, devices) reach /rosout through ``log_bridge``.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from collections import deque
from typing import Any

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

try:  # Jazzy
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

from dinov3_toolkit.backbone import WeightsNotFoundError
from dinov3_toolkit.engine import Engine, FrameResult
from dinov3_toolkit.heads.loader import HEAD_UNWEIGHTED, search_folders
from dinov3_toolkit.heads.manifest import ParamSpec
from dinov3_toolkit.overlays import draw_overlays

from . import log_bridge, messages
from .health import PipelineHealth
from .messages import DecodeError, compressed_to_rgb, image_to_rgb
from .parameters import NODE_PARAMS, PARAMS_BY_NAME, check_node_param
from .problems import Problems
from .ros_tables import descriptor, image_qos, output_qos
from .topics import (DEFAULT_NAMESPACE, IMAGE_TYPES, OVERLAY, OutputTopic, frame_messages, label_info_messages,
                     overlays_wanted, publishable_topics)
from .watchdog import FrameWatchdog, Publisher
from .worker import LatestFrameWorker, Rejected

_TIMINGS_KEPT = 100  # frames over which diagnostics report median stage times
_WATCHDOG_PERIOD_S = 0.5  # how often the watchdog looks; frame_timeout itself is a parameter


class Dinov3Node(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        self._engine: Engine | None = None
        self._worker: LatestFrameWorker | None = None
        self._subscription = None
        self._publishers_by_topic: dict[str, Any] = {}
        self._bridge = _cv_bridge()
        self._diagnostics_timer = None
        self._head_params: dict[str, tuple[str, ParamSpec]] = {}  # "<head>.<param>" -> (head, spec)
        self._problems: Problems | None = None  # logged once and counted; made anew at each configure
        self._compressed = False
        self._timings: deque = deque(maxlen=_TIMINGS_KEPT)
        self._messages = messages.ros_messages()
        self._watchdog: FrameWatchdog | None = None
        self._watchdog_timer = None
        self._frames_warning: str | None = None  # the watchdog's current warning, shown in /diagnostics
        self._health = PipelineHealth()  # the /diagnostics status
        super().__init__("dinov3_node", **kwargs)
        # Registered first, so that values from the parameters file are validated at declaration too.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for p in NODE_PARAMS:
            self.declare_parameter(
                p.name, p.default, descriptor(p.description, p.default, low=p.min, high=p.max, choices=p.choices)
            )
        # A steady clock: with use_sim_time a ROS-clock timer would wait for /clock before starting.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart, clock=self._steady)
        self._log_handler = log_bridge.attach(self.get_logger())  # last: nothing above can leave it attached

    # --- lifecycle ---------------------------------------------------------------------------------

    def _autostart(self) -> None:
        """Configure and activate once the executor spins (a transition needs a spinning node)."""
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self._engine is not None:
            return  # a lifecycle manager configured the node first
        try:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        except Exception as e:  # rclpy refuses a transition from the state a manager left the node in
            self.get_logger().warning(f"autostart skipped: {e}")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = {name: check_node_param(name, self.get_parameter(name).value) for name in PARAMS_BY_NAME}
        folders = search_folders(p["head_dirs"], templates=bool(p["heads"]))  # templates run only when named
        self.get_logger().info("looking for head_* folders in " + ", ".join(map(str, folders)))
        try:
            self._engine = Engine.create(
                backbone=p["backbone"],
                backbone_weights=p["backbone_weights"] or None,
                device=p["device"],
                precision=p["precision"],
                size=p["image_size"],
                resize_mode=p["resize_mode"],
                heads=p["heads"] or None,
                head_dirs=p["head_dirs"],
                random_weights=p["random_weights"],
                stream_gap_s=p["stream_gap"],
                allow_backbone_mismatch=p["allow_backbone_mismatch"],
            )
        except Exception as e:  # missing weights, unknown head, bad device: the loader's message says which
            self._log_failure("configure failed", e, self._weights_hint(e, p))
            return TransitionCallbackReturn.FAILURE
        engine = self._engine
        for name, error in engine.failed.items():
            self.get_logger().error(f"head {name} is skipped: {error}{self._weights_hint(error, p)}")
        if engine.random_weights:
            self.get_logger().warning(
                "*** RUNNING WITH RANDOM WEIGHTS (" + ", ".join(engine.random_weights) + "): every output is "
                "meaningless. This is for smoke tests only; set random_weights:=false for real use. ***"
            )
        try:
            self._declare_head_params()
        except Exception as e:  # an invalid <head>.<param> override in the parameters file
            self._log_failure("configure failed", e)
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._create_publishers()
        self._problems = Problems(self.get_logger().error)
        self._worker = LatestFrameWorker(self._process, on_error=self._problems.frame_failed)
        self._diagnostics_timer = self.create_timer(p["diagnostics_period"], self._publish_diagnostics,
                                                    clock=self._steady)
        self.get_logger().info(
            f"configured: {engine.extractor.spec.name} on {engine.device} ({p['precision']}), heads "
            + (", ".join(name + (f" ({head.manifest.depth.describe()})" if head.manifest.depth else "")
                         for name, head in engine.heads.items()) or "none")  # depth: what its values mean
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        reliability = self.get_parameter("image_reliability").value
        qos = image_qos(reliability)
        self._compressed = self.get_parameter("compressed").value
        if self._compressed:
            from sensor_msgs.msg import CompressedImage as msg_type
        else:
            from sensor_msgs.msg import Image as msg_type
        self._subscription = self.create_subscription(
            msg_type,
            "image",
            self._worker.submit,
            qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos),
        )
        self._worker.start()
        self._worker.resume()
        self._watchdog = FrameWatchdog(self.get_parameter("frame_timeout").value, topic=self._subscription.topic_name,
                                       msgtype=_msgtype(msg_type), reliability=reliability)
        self._watchdog.start(time.monotonic())
        self._watchdog_timer = self.create_timer(_WATCHDOG_PERIOD_S, self._check_frames, clock=self._steady)
        self.get_logger().info(f"active: subscribed to {self._subscription.topic_name} ({reliability})")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Unsubscribe and pause: returns at once, a frame being processed finishes unpublished."""
        self._unsubscribe()
        self._worker.pause()
        if self._engine is not None:  # flow after a reactivation must not pair frames from before it
            self._engine.forget_streams()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """A transition raised: free everything, so that the node is back to a clean unconfigured state."""
        self.get_logger().error(f"error while in state {state.label}: releasing the models and publishers")
        self._unsubscribe()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _unsubscribe(self) -> None:
        """Stop listening: the subscription and the watchdog that watches it."""
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self._watchdog_timer is not None:
            self.destroy_timer(self._watchdog_timer)
            self._watchdog_timer = None
        self._watchdog = self._frames_warning = None

    def destroy_node(self) -> None:
        """Unsubscribe and release (joining the worker) before rclpy destroys the handles it publishes on."""
        self._unsubscribe()
        self._release()
        log_bridge.detach(self._log_handler)
        super().destroy_node()

    def _release(self) -> None:
        """Stop the worker (waiting for a running frame, so the model is not freed under it), drop
        publishers, timers and models, and give the GPU memory back."""
        if self._worker is not None:
            self._worker.stop()
        for topic, publisher in self._publishers_by_topic.items():
            if topic.endswith("/label_info"):
                self.destroy_publisher(publisher)
            else:  # also unregisters it from the lifecycle's managed entities
                self.destroy_lifecycle_publisher(publisher)
        self._publishers_by_topic.clear()
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        device = self._engine.device if self._engine is not None else None
        self._engine = self._worker = None
        gc.collect()
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # --- parameters --------------------------------------------------------------------------------

    def _declare_head_params(self) -> None:
        """``<head>.<param>`` for every running head, from its manifest; overrides from params.yaml apply."""
        for head in self._engine.heads.values():
            for spec in head.manifest.params.values():
                full = f"{head.name}.{spec.name}"
                self._head_params[full] = (head.name, spec)
                if not self.has_parameter(full):  # declared at the first configure; kept across cleanups
                    described = descriptor(spec.description, spec.default, low=spec.min, high=spec.max,
                                           choices=spec.choices)
                    self.declare_parameter(full, spec.default, described)  # an override is validated here
                head.set_params(**{spec.name: spec.validate(self.get_parameter(full).value)})

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Validate every change first; apply head parameters only when all are valid."""
        changes: dict[str, dict[str, Any]] = {}
        configured = self._engine is not None
        for param in params:
            try:
                if param.name in self._head_params:
                    head, spec = self._head_params[param.name]
                    changes.setdefault(head, {})[spec.name] = spec.validate(param.value)
                elif param.name in PARAMS_BY_NAME:
                    check_node_param(param.name, param.value)
                    if configured and not PARAMS_BY_NAME[param.name].live:
                        return SetParametersResult(
                            successful=False,
                            reason=f"{param.name} takes effect at configure: deactivate and clean up the node first",
                        )
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
        if configured:
            for head, values in changes.items():
                if head in self._engine.heads:
                    self._engine.set_params(head, **values)
        return SetParametersResult(successful=True)

    # --- frames ------------------------------------------------------------------------------------

    def _create_publishers(self) -> None:
        classes, skipped = publishable_topics(self._engine.heads, self._messages.message_class)
        if skipped:  # an optional topic's package (foxglove_msgs) is not installed: said once per configure
            self.get_logger().info(skipped)
        for topic, msg_type in classes.items():
            # LabelInfo gets a plain publisher: it is static, so it is published once, below, and kept
            # (transient-local) for every later subscriber, whatever the lifecycle state.
            create = self.create_publisher if topic.latched else self.create_lifecycle_publisher
            self._publishers_by_topic[topic.name] = create(msg_type, topic.name, output_qos(topic))
        diagnostics = OutputTopic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
        self._publishers_by_topic[diagnostics.name] = self.create_lifecycle_publisher(
            self._messages.message_class(diagnostics.msgtype), diagnostics.name, output_qos(diagnostics)
        )
        # The threshold in LabelInfo is the one at configure.
        for topic, msg in label_info_messages(self._messages, self._engine.heads, self._stamp_header()).items():
            self._publishers_by_topic[topic].publish(msg)

    @property
    def engine(self) -> Engine | None:
        """The engine while configured: its heads, device and random weights (``dinov3 soak --node`` reports them)."""
        return self._engine

    def _process(self, msg) -> None:
        """Worker thread: decode, run every head, publish what has subscribers."""
        engine = self._engine
        if engine is None:
            return
        try:
            rgb = compressed_to_rgb(msg) if self._compressed else image_to_rgb(msg, bridge=self._bridge)
        except DecodeError as e:  # counted as undecodable, never as processed (no output, no latency)
            self._problems.log_once(f"decode:{e.kind}", f"skipping frames that cannot be decoded: {e}")
            raise Rejected(str(e)) from e
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        frame = engine(rgb, stream="camera", stamp_ns=stamp_ns)  # the node has one camera: one stream
        self._timings.append(frame.timings)
        self._problems.count_frame(frame.errors)  # a failed head has no result: nothing of it is published
        self._publish(msg.header, rgb, frame)

    def _publish(self, header, rgb, frame: FrameResult) -> None:
        pubs = self._publishers_by_topic

        def wanted(topic: str) -> bool:  # overlays cost time: only drawn when watched
            return topic in pubs and (not topic.endswith(OVERLAY) or pubs[topic].get_subscription_count() > 0)

        heads, combined = overlays_wanted(frame.results, wanted)
        overlays = draw_overlays(rgb, frame.results, heads=heads, combined=combined, notice=self._random_notice())
        outgoing = frame_messages(self._messages, header, frame, overlays, wanted=wanted,
                                  class_id=self.get_parameter("class_id").value)
        for topic, msg in outgoing.items():
            pubs[topic].publish(msg)

    def _stamp_header(self):
        """A header stamped now, for messages that describe the node rather than a frame."""
        return self._messages.new("std_msgs/msg/Header", stamp=self.get_clock().now().to_msg(), frame_id="")

    def _random_notice(self) -> str | None:
        random = self._engine.random_weights if self._engine is not None else []
        return f"RANDOM WEIGHTS ({', '.join(random)}): output is meaningless" if random else None

    def _publish_diagnostics(self) -> None:
        engine, worker = self._engine, self._worker
        if engine is None or worker is None:
            return
        statuses = self._health.statuses(self.get_fully_qualified_name(), engine,
                                         self.get_parameter("precision").value, worker.stats(), worker.rates(),
                                         list(self._timings), self._frames_warning, self._problems.snapshot(),
                                         time.monotonic())
        self._publishers_by_topic["/diagnostics"].publish(
            messages.diagnostics_to_msg(self._messages, self._stamp_header(), statuses)
        )

    # --- problems ----------------------------------------------------------------------------------

    def _check_frames(self) -> None:
        """Watchdog tick: warn once when frames stop arriving (saying why), and once when they are back."""
        watchdog, worker = self._watchdog, self._worker
        if watchdog is None or worker is None:
            return
        watchdog.timeout_s = self.get_parameter("frame_timeout").value  # live
        silent = watchdog.silent_for(time.monotonic(), worker.stats().last_received_at)
        warning = None if silent is None else watchdog.explain(self._image_publishers(), self._other_image_topics())
        if warning == self._frames_warning:
            return
        if warning:
            self.get_logger().warning(warning)
        elif watchdog.timeout_s:  # not when the watchdog was just turned off (frame_timeout 0)
            self.get_logger().info(f"frames arrive on {watchdog.topic} again")
        self._frames_warning = warning

    def _image_publishers(self) -> list[Publisher]:
        """Who publishes on the image topic, with the QoS each offers (`ros2 topic info --verbose`)."""
        if self._subscription is None:
            return []
        return [
            Publisher(
                node=f"{info.node_namespace.rstrip('/')}/{info.node_name}",
                msgtype=info.topic_type,
                reliability=info.qos_profile.reliability.name.lower(),
                durability=info.qos_profile.durability.name.lower(),
            )
            for info in self.get_publishers_info_by_topic(self._subscription.topic_name)
        ]

    def _other_image_topics(self) -> list[str]:
        """The graph's Image and CompressedImage topics, but this node's own input and outputs."""
        own = {self._subscription.topic_name, *(p.topic_name for p in self._publishers_by_topic.values())}
        return sorted(name for name, types in self.get_topic_names_and_types()
                      if name not in own and any(t in IMAGE_TYPES for t in types))

    def _on_incompatible_qos(self, event) -> None:
        policy = str(getattr(event.last_policy_kind, "name", event.last_policy_kind)).removeprefix("RMW_QOS_POLICY_")
        self.get_logger().error(
            f"a publisher on {self._subscription.topic_name if self._subscription else 'image'} offers QoS "
            f"incompatible with this subscription ({policy}), so no frames arrive. If the camera publishes "
            f"best effort, set image_reliability:=best_effort; check with `ros2 topic info --verbose <topic>`."
        )

    def _weights_hint(self, error: BaseException, p: dict[str, Any]) -> str:
        """When ``error`` is missing weights: the parameters that fix it, on a line of its own; else ''."""
        if p["random_weights"]:
            return ""
        if isinstance(error, WeightsNotFoundError):
            fix = ("set backbone_weights to the file (or a folder holding one), or clear it and set "
                   "random_weights:=true" if p["backbone_weights"] else
                   "put the file in one of those folders or set backbone_weights to it, or set random_weights:=true")
        elif HEAD_UNWEIGHTED in str(error):
            fix = "put the head's weights file where listed, or set random_weights:=true"
        else:
            return ""
        return (f"\nTo run: {fix} to try the pipeline on random weights (every output then says so); then "
                f"`ros2 lifecycle set {self.get_fully_qualified_name()} configure`, or restart the node.")

    def _log_failure(self, what: str, error: BaseException, hint: str = "") -> None:
        """The message at error level; the traceback at debug (`--log-level dinov3.dinov3_node:=debug`)."""
        self.get_logger().error(f"{what}: {error}{hint}")
        self.get_logger().debug("".join(traceback.format_exception(error)))


def _msgtype(msg_class: type) -> str:
    """``sensor_msgs.msg.Image`` -> ``"sensor_msgs/msg/Image"``, the spelling the ROS graph uses."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


def _cv_bridge():
    """cv_bridge's converter when installed (the ROS way, handles every encoding's layout), else our own path."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    return CvBridge()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        node = Dinov3Node(namespace=DEFAULT_NAMESPACE)  # a `-r __ns:=/other` remap still wins
    except InvalidParameterValueException as e:  # a bad -p value or params file entry: its reason in one line
        rclpy.shutdown()
        sys.exit(f"dinov3_node: {e}")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()  # joins the worker before the handles it publishes on are destroyed
        if rclpy.ok():
            rclpy.shutdown()
