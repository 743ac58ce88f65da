"""The library's Python log records reach the node's ROS logger at their own severity, in any order."""

from __future__ import annotations

import logging

from ros_helpers import rclpy  # noqa: F401  (skips the module without rclpy)
from rclpy.logging import LoggingSeverity, get_logger  # noqa: E402

from dinov3_ros import log_bridge  # noqa: E402

RECORDS = [(logging.INFO, "INFO", "first info"), (logging.WARNING, "WARN", "a warning"),
           (logging.INFO, "INFO", "second info"), (logging.ERROR, "ERROR", "an error"),
           (logging.DEBUG, "DEBUG", "a debug line"), (logging.CRITICAL, "FATAL", "a fatal one")]


def _lines(err: str, logger_name: str) -> list[str]:
    return [line for line in err.splitlines() if f"[{logger_name}]" in line]


def test_every_severity_reaches_the_ros_logger_in_any_order(capfd):
    """rclpy raises when one calling line changes severity; a record at each one must still get through."""
    ros = get_logger("bridge_all")
    ros.set_level(LoggingSeverity.DEBUG)
    handler = log_bridge.attach(ros)
    try:
        for level, _, text in RECORDS:
            logging.getLogger("dinov3_toolkit.engine").log(level, text)
    finally:
        log_bridge.detach(handler)
    err = capfd.readouterr().err
    assert "Logging error" not in err, err
    lines = _lines(err, "bridge_all")
    assert len(lines) == len(RECORDS), err
    for line, (_, tag, text) in zip(lines, RECORDS):
        assert line.startswith(f"[{tag}]") and line.endswith(text), line


def test_the_ros_level_decides_live_and_detach_restores_python_logging(capfd, caplog):
    ros = get_logger("bridge_level")
    ros.set_level(LoggingSeverity.WARN)
    handler = log_bridge.attach(ros)
    library = logging.getLogger("dinov3_ros.worker")
    try:
        library.info("hidden at WARN")
        ros.set_level(LoggingSeverity.DEBUG)  # e.g. `ros2 service call .../set_logger_levels`
        library.debug("shown at DEBUG")
    finally:
        log_bridge.detach(handler)
    lines = _lines(capfd.readouterr().err, "bridge_level")
    assert [line.split("]: ")[-1] for line in lines] == ["shown at DEBUG"]
    with caplog.at_level(logging.WARNING):
        library.warning("back to Python logging")
    assert "back to Python logging" in caplog.text
