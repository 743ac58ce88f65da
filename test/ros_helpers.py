"""Talking to a real dinov3_node over DDS: the node started as users start it, and a probe node.

`NodeProcess` runs the `dinov3_node` console script with `--ros-args`, its log in a file the
tests read; it sees no torch hub or Hugging Face cache, so it runs on random weights (the
checkout's own `weights/` folders hold none in a clean clone). `Probe` is an rclpy node in the
test process, spun by a background thread, that publishes camera frames, keeps every message it
receives and calls the node's services. Both need rclpy and vision_msgs: `make test` installs
them from PyPI (scripts/setup_ros_wheels.py); a sourced ROS 2 workspace has them too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from waits import ceiling


def _import_ros() -> Any:
    """rclpy, after checking that vision_msgs imports too; else skip the module saying why."""
    try:
        import rclpy
        import vision_msgs.msg  # noqa: F401
    except ImportError as e:
        skipped = Path(sys.prefix) / ".ros-wheels-skipped"  # written by scripts/setup_ros_wheels.py
        why = skipped.read_text().strip() if skipped.is_file() else f"{type(e).__name__}: {e}"
        pytest.skip(f"needs rclpy and vision_msgs, which `make test` installs into the venv from PyPI "
                    f"(scripts/setup_ros_wheels.py), or a sourced ROS 2 workspace: {why}", allow_module_level=True)
    return rclpy


rclpy = _import_ros()

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from dinov3_ros.topics import DEFAULT_NAMESPACE  # noqa: E402

HEIGHT, WIDTH = 48, 80  # not square, and an even width for the 4:2:2 encodings
# Bytes per pixel of each encoding the node reads (dinov3_ros.messages.SUPPORTED_ENCODINGS).
PIXEL_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "16UC1": 2, "yuv422": 2,
               "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1,
               "bayer_grbg8": 1}
# A small model that still runs every built-in head: ViT-S/16 on random weights, 64x64, CPU.
TINY_NODE = {"backbone": "vits16", "random_weights": True, "device": "cpu", "image_size": 64,
             "detection.score_threshold": 0.0, "diagnostics_period": 0.3}
ACTIVE, INACTIVE, UNCONFIGURED, FINALIZED = (State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE,
                                             State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_FINALIZED)


def poll(condition: Callable[[], Any], timeout: float) -> Any:
    """``condition()`` once it is true, or its last (false) value after ``timeout`` s (``waits.ceiling``)."""
    deadline = time.monotonic() + ceiling(timeout)
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return condition()


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Like ``poll``, but a test failure naming ``what`` when ``condition`` stays false."""
    value = poll(condition, timeout)
    assert value, f"timed out after {ceiling(timeout):.0f} s waiting for {what}"
    return value


def _param_arg(name: str, value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list):
        text = "[" + ",".join(value) + "]"
    else:
        text = str(value)
    return f"{name}:={text}"


class NodeProcess:
    """`dinov3_node --ros-args -r __ns:=<namespace> -p name:=value ...` with its output in a file; namespace None:
    no remap, the node's own default (/dinov3)."""

    def __init__(self, log_dir: Path, namespace: str | None, params: dict[str, Any], *,
                 ros_args: tuple[str, ...] = (), executable: str | None = None, env: dict[str, str] | None = None):
        executable = executable or shutil.which("dinov3_node", path=str(Path(sys.executable).parent))
        assert executable, f"the dinov3_node console script is not installed next to {sys.executable}"
        remap = [] if namespace is None else ["-r", f"__ns:={namespace}"]
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.name = f"{self.namespace}/dinov3_node"
        args = [executable, "--ros-args", *remap, *ros_args]
        for name, value in params.items():
            args += ["-p", _param_arg(name, value)]
        self.log_path = log_dir / f"{self.namespace.strip('/').replace('/', '_')}.log"
        no_weights = log_dir / "no-weights"
        no_weights.mkdir(exist_ok=True)
        # Unbuffered and uncoloured, so the tests read every line as soon as it is written.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0",
               "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "TORCH_HOME": str(no_weights),
               "HF_HUB_CACHE": str(no_weights), **(env or {})}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60.0, *, start: int = 0) -> str:
        """The output once ``text`` appears in it at or after character ``start`` (see ``len(output())``)."""
        def seen() -> bool:
            found = text in self.output()[start:]
            assert found or self.process.poll() is None, (
                f"the node exited ({self.process.returncode}) before printing {text!r}:\n{self.output()}")
            return found

        wait_until(seen, timeout, f"{text!r} in the node's output:\n{self.output()[-3000:]}")
        return self.output()

    def interrupt(self, timeout: float = 30.0) -> int:
        """SIGINT (Ctrl-C) and the exit code; killed, and the test failed, if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(ceiling(timeout))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} did not exit within {ceiling(timeout):.0f} s of SIGINT:\n"
                        f"{self.output()[-3000:]}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Probe:
    """A test-side rclpy node in its own context, spun in a background thread.

    ``received[topic]`` lists the messages each subscription got, in order of arrival.
    """

    def __init__(self, name: str = "probe") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type: type, topic: str, qos: Any = 10) -> None:
        self.node.create_subscription(msg_type, topic, self.received[topic].append, qos)

    def publisher(self, msg_type: type, topic: str, qos: Any = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type: type, service: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.node.create_client(srv_type, service)
        try:
            assert client.wait_for_service(timeout_sec=ceiling(timeout)), f"service {service} never appeared"
            future = client.call_async(request)
            wait_until(future.done, timeout, f"an answer from {service}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def state(self, node_name: str) -> int:
        return self.call(GetState, f"{node_name}/get_state", GetState.Request()).current_state.id

    def transition(self, node_name: str, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, f"{node_name}/change_state", request).success

    def set_parameters(self, node_name: str, **values: Any) -> list:
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return list(self.call(SetParameters, f"{node_name}/set_parameters", request).results)

    def close(self) -> None:
        """Stop the spinning thread first, so that nothing is destroyed under it."""
        self._stop.set()
        self._thread.join(10.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def image_msg(stamp: int, encoding: str = "rgb8", frame_id: str = "camera_optical", *,
              height: int = HEIGHT, width: int = WIDTH) -> Image:
    """A random frame in ``encoding``, with ``stamp`` as its header's seconds, to find its outputs by."""
    step = width * PIXEL_BYTES[encoding]
    data = np.random.default_rng(stamp).integers(0, 256, height * step, dtype=np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    msg.data = data.tobytes()
    msg.header.stamp.sec = stamp
    msg.header.frame_id = frame_id
    return msg


def compressed_msg(stamp: int, fmt: str, frame_id: str = "camera_optical") -> CompressedImage:
    import cv2

    bgr = np.random.default_rng(stamp).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(f".{fmt.replace('jpeg', 'jpg')}", bgr)
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = encoded.tobytes()
    msg.header.stamp.sec = stamp
    msg.header.frame_id = frame_id
    return msg


def with_stamp(messages: list, stamp: int) -> list:
    return [m for m in messages if m.header.stamp.sec == stamp]


def pipeline_status(diagnostics: list, node_name: str) -> tuple[int, str, dict[str, str]] | None:
    """(level, message, values) of that node's pipeline status in the newest DiagnosticArray, if any."""
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == f"{node_name}: pipeline":
                level = status.level if isinstance(status.level, int) else status.level[0]
                return level, status.message, {kv.key: kv.value for kv in status.values}
    return None
