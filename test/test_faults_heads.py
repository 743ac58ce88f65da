"""Fault injection into heads: each fault ends isolated and named, and the other heads keep working.

One engine loads a healthy head beside one head per fault below, and runs one frame. Each fault
ends in one of these ways, which its case checks:

- ``load``: the head is refused at start (``engine.failed``), named with a file of its folder;
- ``warm-up``: it loads but fails on the blank warm-up frame, and is refused the same way;
- ``frame``: it runs, and fails on the real frame (``frame.errors``), named with its file;
- ``accepted``: what it does is allowed, and its result is used like any other;
- ``propagates``: Ctrl-C inside a head stops the whole run, as it must.

Whatever the faults, the healthy head's result is there, and the frame is drawn, recorded and
published (``test_the_frame_with_every_fault_is_still_drawn_recorded_and_published``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import search_weights_only_in
from fault_heads import Fault, detections, write_head

from dinov3_ros.messages import bag_messages, make_header
from dinov3_ros.topics import frame_messages
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.offline.records import frame_record
from dinov3_toolkit.offline.sources import SourceFrame
from dinov3_toolkit.overlays import draw_overlays
from dinov3_toolkit.results import Detections, SemanticLabels

SMALL = dict(backbone="vits16plus", backbone_overrides={"depth": 1}, device="cpu", size=32)
AFTER_WARMUP = "if self.calls > 1:\n    "
HEALTHY = "healthy"

# fault -> (the fault, how it ends, words its report must hold)
HEAD_FAULTS = {
    "raises in __init__": (Fault(init="raise RuntimeError('no GPU for me')"), "load",
                           "Faulty(**args) failed: RuntimeError: no GPU for me"),
    "sys.exit() in __init__": (Fault(init="sys.exit(3)"), "load", "Faulty(**args) failed: SystemExit: 3"),
    "imports a missing module": (Fault(top="import no_such_module_anywhere"), "load",
                                 "cannot be imported: ModuleNotFoundError: No module named 'no_such_module_anywhere' "
                                 "(pip install no_such_module_anywhere"),
    "raises on import": (Fault(top="raise ImportError('needs CUDA 13')"), "load",
                         "cannot be imported: ImportError: needs CUDA 13"),
    "sys.exit() on import": (Fault(top="sys.exit('bye')"), "load", "cannot be imported: SystemExit: bye"),
    "a syntax error in model.py": (Fault(model="class Faulty(Head:\n    pass\n"), "load",
                                   "cannot be imported: SyntaxError"),
    "head.yaml that is not YAML": (Fault(manifest="task: [segmentation\nmodel: model.Faulty\n"), "load",
                                   "is not valid YAML"),
    "head.yaml naming no such class": (Fault(manifest="task: segmentation\nmodel: model.Missing\n"), "load",
                                       "has no class Missing derived from dinov3_toolkit.heads.Head"),
    "a class that is not a Head": (Fault(top="class Plain:\n    pass",
                                         manifest="task: segmentation\nmodel: model.Plain\n"), "load",
                                   "has no class Plain derived from dinov3_toolkit.heads.Head"),
    "a missing class names file": (Fault(manifest="task: segmentation\nmodel: model.Faulty\nargs: {in_channels: 384}\n"
                                                  "classes: nowhere.txt\n"), "load",
                                   "class names file does not exist"),
    "raises in forward from the start": (Fault(forward="raise RuntimeError('bad shapes')"), "warm-up",
                                         "failed on this frame: RuntimeError: bad shapes (at model.py:"),
    "a task its result contradicts": (Fault(task="depth"), "warm-up",
                                      "refused: its task 'depth' promises DepthMap results but it returned "
                                      "SemanticLabels"),
    "raises in forward": (Fault(forward=AFTER_WARMUP + "raise RuntimeError('lost the GPU')"), "frame",
                          "failed on this frame: RuntimeError: lost the GPU (at model.py:"),
    "raises in postprocess": (Fault(postprocess=AFTER_WARMUP + "raise ValueError('bad threshold')"), "frame",
                              "failed on this frame: ValueError: bad threshold (at model.py:"),
    "sys.exit() in postprocess": (Fault(postprocess=AFTER_WARMUP + "sys.exit(0)"), "frame",
                                  "failed on this frame: SystemExit: 0"),
    "raises MemoryError": (Fault(forward=AFTER_WARMUP + "raise MemoryError('CUDA out of memory')"), "frame",
                           "failed on this frame: MemoryError: CUDA out of memory"),
    "recurses without end": (Fault(postprocess=AFTER_WARMUP + "(again := lambda n: again(n + 1))(0)"), "frame",
                             "failed on this frame: RecursionError"),
    "returns None": (Fault(postprocess=AFTER_WARMUP + "result = None"), "frame",
                     "returned an invalid result: its task 'segmentation' promises SemanticLabels results but it "
                     "returned NoneType"),
    "returns a wrong type": (Fault(postprocess=AFTER_WARMUP + "result = result.labels"), "frame",
                             "promises SemanticLabels results but it returned ndarray"),
    "returns a device tensor": (Fault(postprocess=AFTER_WARMUP + "result = logits"), "frame",
                                "promises SemanticLabels results but it returned Tensor"),
    "returns another kind than its task": (
        Fault(postprocess=AFTER_WARMUP + "result = DepthMap(np.zeros(image.original_size, np.float32))"), "frame",
        "promises SemanticLabels results but it returned DepthMap"),
    "labels past its classes": (Fault(postprocess=AFTER_WARMUP + "result = SemanticLabels(result.labels + 5, "
                                                                 "self.class_names)"), "frame",
                                "returned an invalid result: its labels span"),
    "a huge result": (Fault(postprocess=AFTER_WARMUP + "result = SemanticLabels(np.zeros((2400, 4000), np.uint8), "
                                                       "self.class_names)"), "frame",
                      "its label map is 2400x4000 but the frame is 24x40"),
    "NaN boxes": (Fault(task="detection", postprocess=detections(boxes="[[0, 0, np.nan, 4]]")), "frame",
                  "its boxes or scores are not all finite"),
    "infinite scores": (Fault(task="detection", postprocess=detections(scores="[np.inf]")), "frame",
                        "its boxes or scores are not all finite"),
    "scores above 1": (Fault(task="detection", postprocess=detections(scores="[7.5]")), "frame",
                       "its scores span 7.5..7.5"),
    "inverted boxes": (Fault(task="detection", postprocess=detections(boxes="[[9, 9, 2, 2]]")), "frame",
                       "its box 0 is [9.0, 9.0, 2.0, 2.0]"),
    "a label of -1": (Fault(task="detection", postprocess=detections(labels="[-1]")), "frame",
                      "its labels span -1..-1"),
    "many boxes": (Fault(task="detection", postprocess=detections(
        boxes="np.tile([[1, 1, 30, 20]], (2000, 1))", scores="np.full(2000, 0.5)", labels="np.zeros(2000, int)")),
        "accepted", ""),
    "boxes past the frame": (Fault(task="detection", postprocess=detections(boxes="[[-50, -5, 900, 30]]")),
                             "accepted", ""),
    "a result of its own type": (Fault(task="embedding", postprocess="result = {'embedding': np.zeros(8)}"),
                                 "accepted", ""),
}
NAMES = {fault: f"f{i}" for i, fault in enumerate(HEAD_FAULTS)}  # head names are ROS name tokens
# Ctrl-C and SIGTERM stop the whole run: these end the engine's call (or its creation), so each needs its own.
INTERRUPTS = {
    "KeyboardInterrupt in forward": Fault(forward=AFTER_WARMUP + "raise KeyboardInterrupt"),
    "KeyboardInterrupt in postprocess": Fault(postprocess=AFTER_WARMUP + "raise KeyboardInterrupt"),
    "KeyboardInterrupt in __init__": Fault(init="raise KeyboardInterrupt"),
}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """(engine, frame result, folder per fault): every faulty head and a healthy one, on one 24x40 frame."""
    heads_dir = tmp_path_factory.mktemp("faulty-heads")
    folders = {fault: write_head(heads_dir, NAMES[fault], spec) for fault, (spec, _, _) in HEAD_FAULTS.items()}
    write_head(heads_dir, HEALTHY)
    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, tmp_path_factory.mktemp("no-weights"))
        engine = Engine.create(**SMALL, heads=[*NAMES.values(), HEALTHY], head_dirs=[heads_dir], random_weights=True)
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    return engine, image, engine(image), folders


@pytest.mark.parametrize("fault", HEAD_FAULTS)
def test_each_head_fault_ends_isolated_and_named(faulty, fault):
    engine, _, frame, folders = faulty
    _, outcome, words = HEAD_FAULTS[fault]
    name, folder = NAMES[fault], folders[fault]
    assert isinstance(frame.results[HEALTHY], SemanticLabels)  # the others keep working
    if outcome in ("load", "warm-up"):
        error = engine.failed[name]
        assert name not in engine.heads and name not in frame.results and name not in frame.errors
        assert (outcome == "warm-up") == ("(the warm-up run on a blank frame)" in str(error) or "refused" in str(error))
    elif outcome == "frame":
        error = frame.errors[name]
        assert name in engine.heads and name not in frame.results
    else:
        assert name in frame.results and name not in frame.errors and name not in engine.failed
        return
    assert str(error).startswith(f"head '{name}' ({folder}") and words in str(error), str(error)


def test_accepted_results_are_what_the_heads_returned(faulty):
    _, _, frame, _ = faulty
    many, past = frame.results[NAMES["many boxes"]], frame.results[NAMES["boxes past the frame"]]
    assert isinstance(many, Detections) and len(many) == 2000
    np.testing.assert_array_equal(past.boxes, [[0, 0, 40, 24]])  # clipped to the 24x40 frame
    assert frame.results[NAMES["a result of its own type"]].keys() == {"embedding"}


def test_the_frame_with_every_fault_is_still_drawn_recorded_and_published(faulty):
    engine, image, frame, _ = faulty
    overlays = draw_overlays(image, frame.results, heads=list(frame.results), combined=True)
    assert HEALTHY in overlays.heads and NAMES["a result of its own type"] not in overlays.heads  # nothing draws it
    assert overlays.combined.shape == image.shape  # layers only: every drawable result is painted over the image
    item = SourceFrame(0, "frame", "/data/frame.png", 1_700_000_000_000_000_000, image)
    record = frame_record(item, frame, {}, None)
    json.dumps(record, allow_nan=False)
    assert set(record["errors"]) == {NAMES[f] for f, (_, outcome, _) in HEAD_FAULTS.items() if outcome == "frame"}
    M = bag_messages("jazzy")
    messages = frame_messages(M, make_header(M, 1, 2, "camera"), frame, overlays, wanted=lambda topic: True)
    assert f"{HEALTHY}/labels" in messages and f"{NAMES['many boxes']}/detections" in messages
    assert not any(topic.startswith(tuple(f"{n}/" for n in frame.errors)) for topic in messages)


@pytest.mark.parametrize("fault", INTERRUPTS)
def test_ctrl_c_inside_a_head_stops_the_run(tmp_path, fault, no_weights):
    write_head(tmp_path, "interrupted", INTERRUPTS[fault])
    write_head(tmp_path, HEALTHY)
    with pytest.raises(KeyboardInterrupt):
        engine = Engine.create(**SMALL, heads=["interrupted", HEALTHY], head_dirs=[tmp_path], random_weights=True)
        engine(np.zeros((24, 40, 3), np.uint8))
