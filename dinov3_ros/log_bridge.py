"""Python ``logging`` records of our libraries -> the node's ROS logger (/rosout, the launch log).

The toolkit is ROS-free, so it logs with ``logging`` ("no weights for backbone ...: RANDOM
weights", a CUDA fallback, a head without weights). Without a bridge those lines go to the
process's stderr only: not to /rosout, rqt_console, Foxglove or the launch log where a ROS user
looks. ``attach`` forwards them, at the matching severity, under the node's logger name.
"""

from __future__ import annotations

import logging

# The loggers whose records belong in the node's log.
LIBRARY_LOGGERS = ("dinov3_toolkit", "dinov3_ros")


class RosLogHandler(logging.Handler):
    """Hands each record to an rclpy logger, whose own level (live, `--log-level`) decides what is printed."""

    def __init__(self, ros_logger) -> None:
        super().__init__()
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        log, level = self._ros_logger, record.levelno
        try:
            # rclpy ties one severity to each line that calls it, and raises when a line logs at
            # another: so each severity gets its own line here, never one `log.log(text, severity)`.
            if level >= logging.CRITICAL:
                log.fatal(self.format(record))
            elif level >= logging.ERROR:
                log.error(self.format(record))
            elif level >= logging.WARNING:
                log.warning(self.format(record))
            elif level >= logging.INFO:
                log.info(self.format(record))
            else:
                log.debug(self.format(record))
        except Exception:  # logging must never break the caller (logging.Handler's own rule)
            self.handleError(record)


def attach(ros_logger) -> RosLogHandler:
    """Forward the library loggers to ``ros_logger`` from now on; ``detach`` undoes it.

    The library loggers pass every record (DEBUG); the rclpy logger filters, so that raising its
    level at run time (`ros2 service call .../set_logger_levels`, `--log-level`) shows library
    debug lines too. A record below the ROS level costs one comparison in rclpy.
    """
    handler = RosLogHandler(ros_logger)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # printed once, by ROS, not also by a root handler
    return handler


def detach(handler: RosLogHandler) -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        if not logger.handlers:
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
