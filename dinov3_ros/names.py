"""ROS 2's rules for namespaces and topic names, checked without rclpy.

Bags are written offline, where rclpy may be absent, and rosbags writes any string as a topic name:
an invalid namespace would end up in the bag and fail only when someone plays it. So the names are
checked here before anything is written, with the rules of ``rmw_validate_namespace`` and
``rmw_validate_full_topic_name`` (``test/test_names.py`` compares the two on generated names
wherever rclpy is installed). The node gets the same checks from rclpy itself.
"""

from __future__ import annotations

import re

from dinov3_toolkit.errors import ConfigError

FULL_TOPIC_MAX_LENGTH = 247  # RMW_TOPIC_MAX_NAME_LENGTH: 255 less the DDS prefix ("rt/")
NAMESPACE_MAX_LENGTH = FULL_TOPIC_MAX_LENGTH - 2  # RMW_NAMESPACE_MAX_LENGTH: room for "/x" after it
_BAD_CHARACTER = re.compile(r"[^A-Za-z0-9_/]")


class InvalidName(ConfigError):
    """A namespace or topic name that ROS 2 would refuse (a ``ValueError`` too)."""


def _problem(name: str, what: str, max_length: int) -> str | None:
    """What is wrong with an absolute ROS name (a namespace when ``what`` says so), or None."""
    if not name:
        return f"{what} must not be empty"
    if not name.startswith("/"):
        return f"{what} must be absolute: begin with '/'"
    if bad := _BAD_CHARACTER.search(name):
        return f"{what} may hold only letters, digits, '_' and '/': {bad[0]!r} at index {bad.start()}"
    if "//" in name:
        return f"{what} must not hold '//' (at index {name.index('//')})"
    if name.endswith("/") and name != "/":
        return f"{what} must not end with '/'"
    if name == "/" and what == "topic name":
        return "a topic name must hold more than '/'"
    if token := re.search(r"/([0-9])", name):
        return f"no part of a {what} may begin with a digit ({token[1]!r} at index {token.start(1)})"
    if len(name) > max_length:
        return f"{what} must not be longer than {max_length} characters, it has {len(name)}"
    return None


def check_namespace(namespace: str) -> str:
    """``namespace`` made absolute (``dinov3`` -> ``/dinov3``, as a node takes it), or ``InvalidName``."""
    absolute = namespace if namespace.startswith("/") else "/" + namespace
    problem = _problem(absolute, "namespace", NAMESPACE_MAX_LENGTH)
    if problem:
        raise InvalidName(f"{namespace!r} is not a valid ROS 2 namespace: {problem}")
    return absolute


def check_full_topic_name(topic: str) -> str:
    """``topic`` if it is a valid fully qualified ROS 2 topic name, else ``InvalidName``."""
    problem = _problem(topic, "topic name", FULL_TOPIC_MAX_LENGTH)
    if problem:
        raise InvalidName(f"{topic!r} is not a valid ROS 2 topic name: {problem}")
    return topic


def join_topic(namespace: str, relative: str) -> str:
    """The fully qualified topic ``relative`` under ``namespace``, checked (``/`` + ``a/b`` -> ``/a/b``)."""
    return check_full_topic_name(check_namespace(namespace).rstrip("/") + "/" + relative)
