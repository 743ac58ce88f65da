"""The kinds of result a head can return, in one table keyed by the result class.

Each kind says which manifest ``task`` promises it, how the terminal sums it up,
what its JSON record holds, which array ``dinov3 run`` keeps beside the record,
and how it is drawn: over the camera image (``layer``) or as its own panel. The
ROS layer keeps the matching table (topic, message type, builder) in
``dinov3_ros.topics``; a new kind is one row here and one there.

A head declares its kind through ``task`` and keeps to it on every frame: at
warm-up, a head whose result contradicts its task is refused by name
(``check_result``), and a later result that does is that frame's failure
(``BrokenPromise``), so that publishers made from the task and messages made
from the result can never disagree. A task not in the table (``task: embedding``)
promises nothing: its results get a record naming their type, and an overlay
once their head registers a kind for them (``register``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import depth_drawing, drawing
from .results import DepthMap, Detections, FlowField, SemanticLabels


@dataclass(frozen=True)
class SavedArray:
    """An array ``dinov3 run`` writes beside the record: ``<folder>/<frame name>_<head><suffix>``.

    ``.npy`` files hold the array as it is; any other suffix is an image format
    OpenCV writes losslessly (``.png``). ``array`` may give None (a flow head's
    first frame): nothing is written and the record's file is null."""

    folder: str
    suffix: str
    array: Callable[[Any], np.ndarray | None]


def _type_name(result: object) -> str:
    return type(result).__name__


def _no_fields(result: object) -> dict[str, Any]:
    return {"result_type": type(result).__name__}


class InvalidResult(ValueError):
    """A head's result that breaks its kind's contract (labels out of range, non-finite boxes, a map of
    another size): that head's failure on that frame, so nothing downstream ever sees it."""


class BrokenPromise(InvalidResult):
    """A result of another kind than its head's task promises: publishers are made from the task and messages
    from the result, so they would disagree (or nothing could draw it)."""


def _as_is(result: Any, size: tuple[int, int]) -> Any:
    return result


def _no_drawer(image: np.ndarray, result: object) -> np.ndarray:
    raise TypeError(
        f"no overlay drawer for result type {type(result).__module__}.{type(result).__qualname__}; register "
        f"one with dinov3_toolkit.result_kinds.register(ResultKind({type(result).__name__}, task=..., draw=...)), "
        f"draw being a function (image, result) -> RGB image"
    )


@dataclass(frozen=True)
class ResultKind:
    result_type: type
    task: str  # the head.yaml task that promises this result
    summary: Callable[[Any], str] = _type_name  # a few words for the terminal: "3 boxes (person 0.91, ...)"
    record_type: str = "other"  # the record's "type" in frames.jsonl (see frame_record.schema.json)
    record: Callable[[Any], dict[str, Any]] = _no_fields  # the record's other fields, JSON-ready
    saved: SavedArray | None = None  # the array kept beside the record; its path is the record's "file"
    draw: Callable[[np.ndarray, Any], np.ndarray] = _no_drawer  # (camera image, result) -> RGB picture
    layer: int | None = None  # painted over the camera image in this order (lowest first); None: own panel
    # draw also takes taken=, the text boxes already on a composite (list of (x, y, w, h)): its own text keeps
    # out of them and is added to them, so that no layer writes over another's labels
    places_text: bool = False
    # (result, frame (H, W)) -> the result, made exact where that is harmless (boxes clipped to the frame),
    # or InvalidResult naming what is wrong; the engine runs it on every result before anything else sees it
    validate: Callable[[Any, tuple[int, int]], Any] = _as_is


def _map_size(name: str, shape: tuple[int, ...], size: tuple[int, int]) -> None:
    if tuple(shape[:2]) != tuple(size):
        raise InvalidResult(f"its {name} is {shape[0]}x{shape[1]} but the frame is {size[0]}x{size[1]} "
                            f"(height x width): results are in the original frame's pixels")


def _label_range(labels: np.ndarray, names: tuple[str, ...]) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise InvalidResult(f"its labels span {int(labels.min())}..{int(labels.max())} but it has "
                            f"{len(names)} class names (0..{len(names) - 1})")


def _valid_detections(result: Detections, size: tuple[int, int]) -> Detections:
    _label_range(result.labels, result.class_names)
    if not (np.isfinite(result.boxes).all() and np.isfinite(result.scores).all()):
        raise InvalidResult("its boxes or scores are not all finite")
    if ((result.scores < 0) | (result.scores > 1)).any():
        raise InvalidResult(f"its scores span {float(result.scores.min()):g}..{float(result.scores.max()):g}; "
                            f"scores are confidences in [0, 1]")
    if (inverted := np.flatnonzero((result.boxes[:, 2:] < result.boxes[:, :2]).any(axis=1))).size:
        raise InvalidResult(f"its box {inverted[0]} is {result.boxes[inverted[0]].tolist()}: boxes are "
                            f"[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
    height, width = size
    boxes = np.clip(result.boxes, 0, np.array([width, height, width, height], np.float32))  # inside the frame
    return result if np.array_equal(boxes, result.boxes) else Detections(boxes, result.scores, result.labels,
                                                                         result.class_names)


def _valid_labels(result: SemanticLabels, size: tuple[int, int]) -> SemanticLabels:
    _map_size("label map", result.labels.shape, size)
    _label_range(result.labels, result.class_names)
    return result


def _valid_depth(result: DepthMap, size: tuple[int, int]) -> DepthMap:
    _map_size("depth map", result.depth.shape, size)  # non-finite depth is allowed: "no depth here"
    return result


def _valid_flow(result: FlowField, size: tuple[int, int]) -> FlowField:
    if result.flow is not None:
        _map_size("flow", result.flow.shape, size)
        if not np.isfinite(result.flow).all():
            raise InvalidResult("its flow is not all finite")
    return result


def _detections_summary(result: Detections) -> str:
    top = ", ".join(f"{name} {score:.2f}" for name, score in zip(result.names()[:3], result.scores[:3]))
    return f"{len(result)} boxes" + (f" ({top}{', ...' if len(result) > 3 else ''})" if len(result) else "")


def _detections_record(result: Detections) -> dict[str, Any]:
    return {"detections": [
        {"box": box, "score": score, "label": label, "class_name": result.class_names[label]}
        for box, score, label in zip(result.boxes.tolist(), result.scores.tolist(), result.labels.tolist())
    ]}


def _pixels_per_class(result: SemanticLabels) -> np.ndarray:
    return np.bincount(result.labels.ravel(), minlength=len(result.class_names))


def _labels_summary(result: SemanticLabels) -> str:
    present = _pixels_per_class(result)
    largest = [result.class_names[i] for i in np.argsort(present)[::-1][:3] if present[i]]
    n = np.count_nonzero(present)
    return f"{n} class{'es' if n != 1 else ''} ({', '.join(largest)}{', ...' if n > 3 else ''})"


def _labels_record(result: SemanticLabels) -> dict[str, Any]:
    counts = _pixels_per_class(result)
    return {"classes": [
        {"label": int(i), "class_name": result.class_names[i], "pixels": int(counts[i])}
        for i in np.flatnonzero(counts)
    ]}


def _depth_summary(result: DepthMap) -> str:
    finite = result.depth[np.isfinite(result.depth)]  # as recorded: NaN and inf mean "no depth here"
    unit = f" {result.unit}" if result.unit else ""
    span = f"{finite.min():.2f}..{finite.max():.2f}{unit}" if finite.size else "with no finite value"
    return f"depth {span} ({result.kind})"


def _depth_record(result: DepthMap) -> dict[str, Any]:
    finite = result.depth[np.isfinite(result.depth)]
    return {
        "unit": result.unit,
        "kind": result.kind,
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
    }


def _flow_speed(result: FlowField) -> np.ndarray:
    """The finite speeds (pixels per frame) of the flow's pixels, flattened."""
    flow = result.flow.astype(np.float64)  # float32 speeds and their sum overflow past 1.8e19 and 3.4e38
    speed = np.hypot(flow[..., 0], flow[..., 1])
    return speed[np.isfinite(speed)]


def _flow_summary(result: FlowField) -> str:
    if result.flow is None:
        return f"no flow ({result.reason})"
    speed = _flow_speed(result)
    return f"flow up to {speed.max():.1f} px" if speed.size else "flow with no finite value"


def _flow_record(result: FlowField) -> dict[str, Any]:
    speed = _flow_speed(result) if result.flow is not None else np.zeros(0)
    return {"reason": result.reason or None, "mean_px": float(speed.mean()) if speed.size else None,
            "max_px": float(speed.max()) if speed.size else None}


KINDS = (
    ResultKind(Detections, "detection", _detections_summary, "detections", _detections_record,
               draw=drawing.draw_detections, layer=1, places_text=True, validate=_valid_detections),  # boxes last: never hidden
    ResultKind(SemanticLabels, "segmentation", _labels_summary, "labels", _labels_record,
               SavedArray("labels", ".png", lambda result: result.labels), drawing.draw_segmentation, layer=0,
               places_text=True, validate=_valid_labels),
    ResultKind(DepthMap, "depth", _depth_summary, "depth", _depth_record,
               SavedArray("depth", ".npy", lambda result: result.depth), depth_drawing.draw_depth_panel,
               validate=_valid_depth),
    ResultKind(FlowField, "flow", _flow_summary, "flow", _flow_record,
               SavedArray("flow", ".npy", lambda result: result.flow), drawing.draw_flow_panel,
               validate=_valid_flow),
)
BY_TYPE = {kind.result_type: kind for kind in KINDS}
BY_TASK = {kind.task: kind for kind in KINDS}


def register(kind: ResultKind) -> ResultKind:
    """Add a plug-in's own result kind (call it where the head's model is defined).

    Its results then get their summary, overlay and saved array; their record is
    the schema's ``other`` one (type name and file), and no topic is published
    for them beyond the overlay (that table lives in the ROS layer). Built-in
    kinds and tasks cannot be replaced.
    """
    if not isinstance(kind, ResultKind):
        raise TypeError(f"register needs a ResultKind, got {kind!r}")
    if kind.record_type != "other" or kind.record is not _no_fields:
        raise ValueError(f"a plug-in kind ({kind.result_type.__name__}) keeps the 'other' record of "
                         f"frames.jsonl's fixed schema: leave record_type and record unset")
    taken = BY_TYPE.get(kind.result_type) or BY_TASK.get(kind.task)
    if taken in KINDS:  # a plug-in's own kind may be registered again (its head loaded twice)
        raise ValueError(f"result type {kind.result_type.__name__} / task {kind.task!r} is built in "
                         f"({taken.result_type.__name__}, task {taken.task!r}); give a plug-in kind its own")
    BY_TYPE[kind.result_type] = BY_TASK[kind.task] = kind
    return kind


def kind_of(result: object) -> ResultKind | None:
    """The kind of ``result`` (subclasses count as their base), or None for a type nobody registered."""
    for cls in type(result).__mro__:
        if cls in BY_TYPE:
            return BY_TYPE[cls]
    return None


def _kind_or_plain(result: object) -> ResultKind:
    """Its kind, or one with the defaults (type name, "other" record, no drawer) for unregistered types."""
    return kind_of(result) or ResultKind(type(result), "")


def validate(result: object, size: tuple[int, int], task: str | None = None) -> object:
    """``result`` checked against its kind's contract for a frame of ``size`` (H, W), and against what its head's
    ``task`` promises when given; ``InvalidResult`` (``BrokenPromise``) if broken."""
    if task is not None and (broken := check_result(task, result)):
        raise BrokenPromise(broken)
    return _kind_or_plain(result).validate(result, size)


def summary(result: object) -> str:
    return _kind_or_plain(result).summary(result)


def record(result: object, file: str | None) -> dict[str, Any]:
    """The JSON record of one head's result; ``file`` is where its ``saved`` array went (if it has one)."""
    kind = _kind_or_plain(result)
    return {"type": kind.record_type, **({"file": file} if kind.saved else {}), **kind.record(result)}


def drawable(result: object) -> bool:
    """Whether some kind draws ``result`` (a plug-in's own type gets an overlay once registered with a drawer)."""
    return _kind_or_plain(result).draw is not _no_drawer


def draw(image: np.ndarray, result: object, taken: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
    """The overlay of one head's result, by its kind (a TypeError naming the type if none draws it); a kind
    that ``places_text`` keeps its text out of ``taken`` and adds its own there."""
    kind = _kind_or_plain(result)
    return kind.draw(image, result, taken=taken) if kind.places_text else kind.draw(image, result)


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
