"""What the `dinov3` options accept, checked as they are parsed so that a bad value stops the command at once.

Numbers come from the one bounds table (``dinov3_toolkit.bounds``), which the node's parameters read
too; namespaces follow ROS 2's rules (``dinov3_ros.names``). Each refusal names the option, the
range or rule, and the value given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import yaml

from dinov3_toolkit.bounds import BOUNDS, OutOfBounds
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads.manifest import parse_head_names

from ..names import InvalidName, check_namespace


def bounded(name: str) -> Callable[[str], int | float]:
    """An argparse type for the numeric setting ``name`` of ``BOUNDS`` (NaN, inf and out-of-range refused)."""
    bound = BOUNDS[name]

    def parse(text: str) -> int | float:
        try:
            return bound.parse("", text)
        except OutOfBounds as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def frame_size(text: str) -> tuple[int, int]:
    """``1280x720`` -> (720, 1280), i.e. (H, W)."""
    width, sep, height = text.lower().partition("x")
    side = BOUNDS["frame_side"]
    try:
        if sep:
            return side.parse("height", height), side.parse("width", width)
        problem = "no 'x' between the sides"
    except OutOfBounds as e:
        problem = str(e)
    raise argparse.ArgumentTypeError(f"frame size must be WIDTHxHEIGHT, e.g. 1280x720; got {text!r}: {problem}")


def ros_namespace(text: str) -> str:
    """A ROS 2 namespace, checked before anything is written (``dinov3`` is taken as ``/dinov3``, as a node does)."""
    try:
        return check_namespace(text)
    except InvalidName as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class KeyValue(argparse.Action):
    """``--head-arg fpn_channels=96`` -> {"fpn_channels": 96} (YAML-typed value)."""

    def __call__(self, parser, namespace, text, option_string=None):
        key, sep, value = text.partition("=")
        if not (sep and key):
            parser.error(f"{option_string} takes NAME=VALUE; got {text!r}")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), key: yaml.safe_load(value)})


class HeadNames(argparse.Action):
    """``--heads a b``, ``--heads a,b`` and ``--heads a, b`` -> ["a", "b"] (the node's ``heads`` reads them alike)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            names = parse_head_names(values)
        except ConfigError as e:
            parser.error(f"{option_string}: {e}")
        if not names:
            parser.error(f"{option_string} takes head names, e.g. {option_string} detection depth; got {values!r}")
        setattr(namespace, self.dest, names)


class HeadParam(argparse.Action):
    """``--param detection.score_threshold=0.4`` -> {"detection": {"score_threshold": 0.4}} (YAML-typed value)."""

    def __call__(self, parser, namespace, text, option_string=None):
        key, sep, value = text.partition("=")
        head, dot, name = key.partition(".")
        if not (sep and dot and head and name):
            parser.error(f"{option_string} takes HEAD.NAME=VALUE, e.g. detection.score_threshold=0.4; got {text!r}")
        params = {h: dict(p) for h, p in (getattr(namespace, self.dest) or {}).items()}
        params.setdefault(head, {})[name] = yaml.safe_load(value)
        setattr(namespace, self.dest, params)
