"""Fuzzing head results: each one is refused with a clear error, or it can be used by every output.

A head is someone else's code, so its result may be anything: NaN or infinite boxes, negative
labels, labels past the class list, maps of another size or dtype, empty ones. Each example
below is a result with at most one such fault, named. One with a fault is refused, either by
its constructor (``TypeError``/``ValueError`` naming the result) or by the engine's check of
its kind's contract (``InvalidResult``); it never gets further. One without a fault passes the
check and then can be summarised, drawn (its own overlay and the composite), recorded
(``frames.jsonl``, valid against its schema, and its saved array) and published (every message,
serialised to CDR; detections read back to the same boxes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jsonschema import Draft202012Validator
from message_readers import msg_to_detections

from dinov3_ros.messages import bag_messages, label_info_to_msg, make_header
from dinov3_ros.topics import frame_messages
from dinov3_toolkit import result_kinds
from dinov3_toolkit.engine import FrameResult, StageTimings
from dinov3_toolkit.offline.records import RECORDS_FILE, SCHEMA_PATH, RunOutput
from dinov3_toolkit.offline.sources import SourceFrame
from dinov3_toolkit.overlays import draw_overlays
from dinov3_toolkit.result_kinds import InvalidResult
from dinov3_toolkit.results import DepthMap, Detections, FlowField, SemanticLabels

M = bag_messages("jazzy")
HEADER = make_header(M, 1_700_000_000, 5, "camera")
VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
BAD_FLOATS = [np.nan, np.inf, -np.inf]

# The faults tried on each kind, one per example, and where each is refused: "built" by the result's constructor,
# "checked" by the engine's check of its kind's contract (result_kinds.validate).
DETECTION_FAULTS = {
    "nan box": "checked", "inf box": "checked", "inverted box": "checked", "nan score": "checked",
    "inf score": "checked", "score above 1": "checked", "negative score": "checked", "label -1": "checked",
    "label past the classes": "checked", "float labels": "built", "integer boxes": "built", "2-d scores": "built",
    "boxes (N, 5)": "built", "one N too many": "built", "a list of boxes": "built", "a torch tensor": "built",
    "a class name not a string": "built", "class names in a list": "built",
}
LABEL_FAULTS = {"label past the classes": "checked", "map of another size": "checked", "no rows": "checked",
                "int64 map": "built", "uint16 map for few classes": "built", "3-d map": "built",
                "a class name not a string": "built", "a torch tensor": "built"}
DEPTH_FAULTS = {"map of another size": "checked", "float64 map": "built", "3-d map": "built",
                "unit not a string": "built", "a list": "built"}
FLOW_FAULTS = {"nan flow": "checked", "inf flow": "checked", "flow of another size": "checked",
               "three channels": "built", "float64 flow": "built", "no flow, no reason": "built",
               "reason not a string": "built"}
FAULTS = {Detections: DETECTION_FAULTS, SemanticLabels: LABEL_FAULTS, DepthMap: DEPTH_FAULTS, FlowField: FLOW_FAULTS}
FAULT_IDS = [(kind, fault) for kind, faults in FAULTS.items() for fault in faults]

names = st.lists(st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=6), min_size=1, max_size=6).map(tuple)
Case = tuple  # (constructor, its keyword arguments)


@st.composite
def detections(draw, size: tuple[int, int], fault: str | None) -> Case:
    """Boxes may reach past the frame (clipped, not refused); scores in [0, 1], sorted."""
    height, width = size
    classes = draw(names)
    n = draw(st.integers(1 if fault else 0, 6))
    corner = hnp.arrays(np.float32, (n, 2), elements=st.floats(-20, max(height, width) + 20, width=32))
    extent = hnp.arrays(np.float32, (n, 2), elements=st.floats(0, 50, width=32))
    top_left = draw(corner)
    boxes = np.concatenate([top_left, top_left + draw(extent)], axis=1)  # (N, 4) x1 <= x2, y1 <= y2
    scores = np.sort(draw(hnp.arrays(np.float32, n, elements=st.floats(0, 1, width=32))))[::-1].copy()
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, len(classes) - 1)))
    at = draw(st.integers(0, max(n - 1, 0)))
    if fault in ("nan box", "inf box"):
        boxes[at, draw(st.integers(0, 3))] = np.nan if fault == "nan box" else draw(st.sampled_from(BAD_FLOATS[1:]))
    elif fault == "inverted box":
        axis = draw(st.integers(0, 1))  # x or y: the near corner moves past the far one
        boxes[at, axis], boxes[at, axis + 2] = boxes[at, axis + 2] + 1, boxes[at, axis]
    elif fault in ("nan score", "inf score", "score above 1", "negative score"):
        scores[at] = {"nan score": np.nan, "inf score": np.inf, "score above 1": 1.5, "negative score": -0.25}[fault]
    elif fault in ("label -1", "label past the classes"):
        labels[at] = -1 if fault == "label -1" else len(classes) + draw(st.integers(0, 3))
    broken = {
        "float labels": lambda: {"labels": labels.astype(np.float64) + 0.5},
        "integer boxes": lambda: {"boxes": boxes.astype(np.int64)},
        "2-d scores": lambda: {"scores": np.stack([scores, scores], axis=1)},
        "boxes (N, 5)": lambda: {"boxes": np.concatenate([boxes, boxes[:, :1]], axis=1)},
        "one N too many": lambda: {"labels": np.append(labels, 0)},
        "a list of boxes": lambda: {"boxes": boxes.tolist()},
        "a torch tensor": lambda: {"scores": torch.from_numpy(scores)},
        "a class name not a string": lambda: {"class_names": (*classes[:-1], 7)},
        "class names in a list": lambda: {"class_names": list(classes)},
    }
    args = {"boxes": boxes, "scores": scores, "labels": labels, "class_names": classes}
    return Detections, {**args, **broken.get(fault, dict)()}


@st.composite
def semantic_labels(draw, size: tuple[int, int], fault: str | None) -> Case:
    """Few classes (a uint8 map) or more than 256 (uint16)."""
    classes = draw(st.one_of(names, st.integers(257, 300).map(lambda n: tuple(f"c{i}" for i in range(n)))))
    dtype = np.uint8 if len(classes) <= 256 else np.uint16
    shape = {"map of another size": (size[0] + 1, size[1]), "3-d map": (*size, 1), "no rows": (0, size[1])}.get(
        fault, size)
    labels = draw(hnp.arrays(dtype, shape, elements=st.integers(0, len(classes) - 1)))
    if fault == "label past the classes":
        labels.flat[draw(st.integers(0, labels.size - 1))] = len(classes) + draw(st.integers(0, 5))
    broken = {
        "int64 map": lambda: {"labels": labels.astype(np.int64)},
        "uint16 map for few classes": lambda: {"labels": labels.astype(np.uint16), "class_names": classes[:256]},
        "a class name not a string": lambda: {"class_names": (None, *classes[1:])},
        "a torch tensor": lambda: {"labels": torch.from_numpy(labels.astype(np.int64))},
    }
    return SemanticLabels, {"labels": labels, "class_names": classes, **broken.get(fault, dict)()}


# Values near float32's largest (3.4e38) too: their sums and squares overflow float32.
any_float = st.one_of(st.floats(width=32), st.sampled_from([3.4e38, -3.4e38, 1e30, 2e19]))
finite_or_huge = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False),
                           st.sampled_from([3.4e38, -3.4e38, 1e30, 2e19]))


@st.composite
def depth_maps(draw, size: tuple[int, int], fault: str | None) -> Case:
    """Any float32 values make a valid depth map, NaN and inf included: they mean "no depth here"."""
    shape = {"map of another size": (size[0], size[1] + 2), "3-d map": (*size, 2)}.get(fault, size)
    depth = draw(hnp.arrays(np.float32, shape, elements=any_float))
    broken = {"float64 map": lambda: {"depth": depth.astype(np.float64)}, "unit not a string": lambda: {"unit": 1.0},
              "a list": lambda: {"depth": depth.tolist()}}
    return DepthMap, {"depth": depth, "unit": draw(st.sampled_from(["", "m", "mm"])), **broken.get(fault, dict)()}


@st.composite
def flow_fields(draw, size: tuple[int, int], fault: str | None) -> Case:
    """Finite flow, or none with the reason (a stream's first frame)."""
    if fault is None and draw(st.booleans()):
        return FlowField, {"flow": None, "reason": "first frame of stream 'camera': flow needs two"}
    shape = {"flow of another size": (size[0] + 1, size[1] + 1, 2), "three channels": (*size, 3)}.get(fault, (*size, 2))
    flow = draw(hnp.arrays(np.float32, shape, elements=finite_or_huge))
    if fault in ("nan flow", "inf flow"):
        flow.flat[draw(st.integers(0, flow.size - 1))] = np.nan if fault == "nan flow" else -np.inf
    broken = {"float64 flow": lambda: {"flow": flow.astype(np.float64)}, "no flow, no reason": lambda: {"flow": None},
              "reason not a string": lambda: {"reason": None}}
    return FlowField, {"flow": flow, "reason": "", **broken.get(fault, dict)()}


STRATEGIES = {Detections: detections, SemanticLabels: semantic_labels, DepthMap: depth_maps, FlowField: flow_fields}
sizes = st.tuples(st.integers(1, 20), st.integers(1, 20))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-records")


def frame_of(result: object, size: tuple[int, int]) -> FrameResult:
    timings = StageTimings(preprocess=0.001, backbone=0.002, heads={"head": 0.001}, postprocess={"head": 0.001})
    return FrameResult(results={"head": result}, errors={}, timings=timings, image_size=size)


def use_everywhere(result: object, size: tuple[int, int], folder) -> None:
    """Everything an output does with a result: summary, overlays, record and saved array, messages."""
    assert isinstance(result_kinds.summary(result), str)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    overlays = draw_overlays(image, {"head": result}, heads=["head"], combined=True, notice="RANDOM WEIGHTS")
    panels = 0 if result_kinds.kind_of(result).layer is not None else 1
    own, combined = overlays.heads["head"], overlays.combined  # the banner is added above: taller, not wider
    assert own.shape[1:] == (size[1], 3) and own.shape[0] >= size[0] and own.dtype == np.uint8
    assert combined.shape[1:] == (size[1] * (1 + panels), 3) and combined.shape[0] >= size[0]

    frame = frame_of(result, size)
    item = SourceFrame(0, "frame", "/data/frame.png", 1_700_000_000_000_000_005, image)
    with RunOutput(folder, overlays="images", overwrite=True) as output:
        output.write(item, frame, overlays.combined)
    record = json.loads((folder / RECORDS_FILE).read_text().splitlines()[-1])  # strict JSON: no NaN, no Infinity
    VALIDATOR.validate(record)

    for class_id in ("name", "index"):
        messages = frame_messages(M, HEADER, frame, overlays, wanted=lambda topic: True, class_id=class_id)
        for msg in messages.values():
            M.typestore.serialize_cdr(msg, msg.__msgtype__)
        if isinstance(result, Detections) and class_id == "index":
            back = msg_to_detections(messages["head/detections"], result.class_names, class_id="index")
            # centre and size in float64: x1 comes back within rounding (2.7e-31 next to 1 comes back as 0)
            np.testing.assert_allclose(back.boxes, result.boxes, rtol=1e-6, atol=1e-5)
            np.testing.assert_array_equal(back.labels, result.labels)
    if names_ := getattr(result, "class_names", ()):
        M.typestore.serialize_cdr(label_info_to_msg(M, names_, HEADER), "vision_msgs/msg/LabelInfo")


@examples(120)
@given(size=sizes, kind=st.sampled_from(list(STRATEGIES)), data=st.data())
def test_a_result_without_a_fault_passes_the_check_and_every_output_can_use_it(size, kind, data, out_dir):
    constructor, args = data.draw(STRATEGIES[kind](size, None))
    checked = result_kinds.validate(constructor(**args), size, result_kinds.BY_TYPE[kind].task)
    use_everywhere(checked, size, out_dir)


@pytest.mark.parametrize("kind, fault", FAULT_IDS, ids=[f"{kind.__name__}-{fault}" for kind, fault in FAULT_IDS])
@examples(8)
@given(size=sizes, data=st.data())
def test_a_result_with_a_fault_is_refused_where_expected_and_says_why(kind, fault, size, data):
    constructor, args = data.draw(STRATEGIES[kind](size, fault))
    try:
        result = constructor(**args)
    except (TypeError, ValueError) as e:
        assert FAULTS[kind][fault] == "built", f"refused by the constructor, expected by the check: {e}"
        assert any(word in str(e) for word in (kind.__name__, *args)), str(e)  # it names the result or the field
        return
    assert FAULTS[kind][fault] == "checked", f"{fault}: built as {result!r:.300}"
    with pytest.raises(InvalidResult, match="^its "):  # the engine puts "head 'x' (its file): ..." before it
        result_kinds.validate(result, size, result_kinds.BY_TYPE[kind].task)
