"""The kinds of result a head can return, in one table keyed by the result class.

Each kind says which manifest ``task`` promises it and how the terminal sums it up in a few words;
the ROS layer keeps the matching table (topic, message type, builder) in ``dinov3_ros.topics``.
A head declares its kind through ``task`` and proves it on its first result: at warm-up, a head
whose result contradicts its task is refused by name (``check_result``), so that publishers made
from the task and messages made from the result can never disagree. A task not in the table
(``task: embedding``) promises nothing: its results get an overlay and a record only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results import DepthMap, Detections, SemanticLabels


@dataclass(frozen=True)
class ResultKind:
    result_type: type
    task: str  # the head.yaml task that promises this result
    summary: Callable[[Any], str]  # a few words for the terminal, e.g. "3 boxes (person 0.91, ...)"


def _detections(result: Detections) -> str:
    top = ", ".join(f"{name} {score:.2f}" for name, score in zip(result.names()[:3], result.scores[:3]))
    return f"{len(result)} boxes" + (f" ({top}{', ...' if len(result) > 3 else ''})" if len(result) else "")


def _labels(result: SemanticLabels) -> str:
    present = np.bincount(result.labels.ravel(), minlength=len(result.class_names))
    largest = [result.class_names[i] for i in np.argsort(present)[::-1][:3] if present[i]]
    n = np.count_nonzero(present)
    return f"{n} class{'es' if n != 1 else ''} ({', '.join(largest)}{', ...' if n > 3 else ''})"


def _depth(result: DepthMap) -> str:
    return f"depth {np.nanmin(result.depth):.2f}..{np.nanmax(result.depth):.2f}"


KINDS = (
    ResultKind(Detections, "detection", _detections),
    ResultKind(SemanticLabels, "segmentation", _labels),
    ResultKind(DepthMap, "depth", _depth),
)
BY_TYPE = {kind.result_type: kind for kind in KINDS}
BY_TASK = {kind.task: kind for kind in KINDS}


def kind_of(result: object) -> ResultKind | None:
    """The kind of ``result`` (subclasses count as their base), or None for a type of a plug-in's own."""
    for cls in type(result).__mro__:
        if cls in BY_TYPE:
            return BY_TYPE[cls]
    return None


def summary(result: object) -> str:
    kind = kind_of(result)
    return kind.summary(result) if kind else type(result).__name__


def check_result(task: str, result: object) -> str | None:
    """Why ``result`` breaks the promise of ``task`` (None when it keeps it), naming both kinds."""
    promised, returned = BY_TASK.get(task), kind_of(result)
    if promised is not None and returned is not promised:
        return (f"its task {task!r} promises {promised.result_type.__name__} results but it returned "
                f"{type(result).__name__}")
    if promised is None and returned is not None:
        return (f"it returned {type(result).__name__}, the result of task {returned.task!r}, but its task is "
                f"{task!r}: set task: {returned.task} in head.yaml")
    return None
