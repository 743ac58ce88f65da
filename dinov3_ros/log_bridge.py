"""Python ``logging`` records of our libraries -> the node's ROS logger (/rosout, the launch log).

The toolkit is ROS-free, so it logs with ``logging`` ("no weights for backbone ...: RANDOM
weights", a CUDA fallback, a head without weights). Without a bridge those lines go to the
process's stderr only: not to /rosout, rqt_console, Foxglove or the launch log where a ROS user
looks. ``attach`` forwards them, at the matching severity, under the node's logger name.
"""

from __future__ import annotations

import logging

from rclpy.logging import LoggingSeverity

# The loggers whose records belong in the node's log.
LIBRARY_LOGGERS = ("dinov3_toolkit", "dinov3_ros")

_TO_ROS = {
    logging.DEBUG: LoggingSeverity.DEBUG,
    logging.INFO: LoggingSeverity.INFO,
    logging.WARNING: LoggingSeverity.WARN,
    logging.ERROR: LoggingSeverity.ERROR,
    logging.CRITICAL: LoggingSeverity.FATAL,
}
_FROM_ROS = {int(ros): py for py, ros in _TO_ROS.items()}


def _severity(levelno: int) -> LoggingSeverity:
    """The ROS severity of a Python level; levels between the named ones round down."""
    return _TO_ROS[max((level for level in _TO_ROS if level <= levelno), default=logging.DEBUG)]


class RosLogHandler(logging.Handler):
    """Hands each record to an rclpy logger; the rclpy logger's own level decides what is printed."""

    def __init__(self, ros_logger) -> None:
        super().__init__()
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._ros_logger.log(self.format(record), _severity(record.levelno))
        except Exception:  # logging must never break the caller (logging.Handler's own rule)
            self.handleError(record)


def attach(ros_logger) -> RosLogHandler:
    """Forward the library loggers to ``ros_logger`` from now on, at its level; ``detach`` undoes it."""
    handler = RosLogHandler(ros_logger)
    level = _FROM_ROS.get(int(ros_logger.get_effective_level()), logging.INFO)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # printed once, by ROS, not also by a root handler
    return handler


def detach(handler: RosLogHandler) -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        if not logger.handlers:
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
