"""diagnostic_msgs/DiagnosticArray: the node's health, as robot monitoring tools read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any, NamedTuple

from .backend import ConversionError, MessageBackend, copy_header


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class Status(NamedTuple):
    """One DiagnosticStatus; a plain 5-tuple in this order works too."""

    name: str
    hardware_id: str
    level: int
    message: str
    values: Mapping[str, str]


def diagnostics_to_msg(M: MessageBackend, header: Any, statuses: Iterable[Status | tuple]) -> Any:
    """diagnostic_msgs/DiagnosticArray; values are strings, formatted by the caller (it knows the precision)."""
    out = []
    for status in statuses:
        name, hardware_id, level, message, values = status
        if level not in set(Level):
            raise ConversionError(f"diagnostic {name!r} has level {level!r}; expected one of {[int(x) for x in Level]}")
        not_str = {k: type(v).__name__ for k, v in values.items() if not isinstance(k, str) or not isinstance(v, str)}
        if not_str:
            raise ConversionError(f"diagnostic {name!r} values must be str -> str; not so for {not_str}")
        out.append(
            M.new(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=M.byte(int(level)),
                name=str(name),
                message=str(message),
                hardware_id=str(hardware_id),
                values=[M.new("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in values.items()],
            )
        )
    return M.new("diagnostic_msgs/msg/DiagnosticArray", header=copy_header(M, header), status=out)
