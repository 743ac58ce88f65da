"""head_detection: key layout, reference vectors, decoding geometry and run-time parameters."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from conftest import load_vector
from tolerances import perturb_one_element_, rounding_atol

from dinov3_toolkit.checkpoint import CheckpointError
from dinov3_toolkit.head_detection.model import DinoFCOSHead
from dinov3_toolkit.heads import load_manifest
from dinov3_toolkit.heads.loader import BUILTIN_DIR
from dinov3_toolkit.preprocess import PreparedImage, Preprocessor

FOLDER = BUILTIN_DIR / "head_detection"
DEFAULTS = {"score_threshold": 0.2, "nms_iou_threshold": 0.6, "max_detections": 100, "class_agnostic_nms": False}
NUM_CLASSES = 80
NAMES = load_manifest(FOLDER).read_class_names()  # COCO, as the weights were trained


def _current_layout() -> list[tuple[str, tuple[int, ...]]]:
    """heads.md section 7, ``detection_DinoFCOSHead_HEAD``: 51 keys in this order."""
    conv3, gn = (192, 192, 3, 3), (192,)
    keys = [("fpn.proj.0.weight", (192, 384, 1, 1)), ("fpn.proj.1.weight", gn), ("fpn.proj.1.bias", gn)]
    blocks = [f"fpn.{m}" for m in ("down1", "down2", "smooth3", "smooth4", "smooth5")]
    blocks += [f"head.{tower}.{i}" for tower in ("cls_tower", "reg_tower") for i in range(4)]
    for block in blocks:
        keys += [(f"{block}.conv.weight", conv3), (f"{block}.gn.weight", gn), (f"{block}.gn.bias", gn)]
    for name, out in (("cls_logits", NUM_CLASSES), ("bbox_reg", 4), ("centerness", 1)):
        keys += [(f"head.{name}.weight", (out, 192, 3, 3)), (f"head.{name}.bias", (out,))]
    return keys + [(f"head.scales.{i}", ()) for i in range(3)]


def _legacy_state_dict() -> dict[str, torch.Tensor]:
    """heads.md section 7, ``detection_DinoFCOSHead_pre4fdc716``: 42 keys, plain-conv FPN, no scales."""
    keys = [("fpn.proj.weight", (192, 384, 1, 1)), ("fpn.proj.bias", (192,))]
    for m in ("down1", "down2", "smooth3", "smooth4", "smooth5"):
        keys += [(f"fpn.{m}.weight", (192, 192, 3, 3)), (f"fpn.{m}.bias", (192,))]
    keys += [(k, s) for k, s in _current_layout() if k.startswith("head.") and not k.startswith("head.scales")]
    return {k: torch.zeros(s) for k, s in keys}


def _prepared(original: tuple[int, int], input_size: tuple[int, int]) -> PreparedImage:
    return PreparedImage(tensor=torch.zeros(1, 3, *input_size), original_size=original, input_size=input_size)


@pytest.fixture(scope="module")
def vec():
    return load_vector("detection")


def test_manifest_declares_the_head_and_its_parameters():
    manifest = load_manifest(FOLDER)
    assert (manifest.name, manifest.task, manifest.module, manifest.class_name) == (
        "detection", "detection", "model", "DinoFCOSHead"
    )
    assert manifest.args == {"in_channels": 384, "fpn_channels": 192, "num_convs": 4}
    assert manifest.trained_on == {"backbone": "vits16plus", "size": 640, "resize_mode": "stretch"}
    assert manifest.resolve_params() == DEFAULTS
    assert all(spec.description for spec in manifest.params.values())
    names = manifest.read_class_names()
    assert len(names) == NUM_CLASSES and len(set(names)) == NUM_CLASSES
    assert (names[0], names[1], names[9], names[60], names[79]) == (
        "person", "bicycle", "traffic light", "dining table", "toothbrush"
    )
    assert manifest.weights == FOLDER / "weights" / "model.pth"
    assert (FOLDER / "weights" / "README.md").is_file()


def test_state_dict_matches_the_published_layout():
    state = DinoFCOSHead(NAMES).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == _current_layout()
    assert sum(v.numel() for v in state.values()) == 4_539_160


@pytest.mark.reference
def test_seeded_init_reproduces_the_reference_weights(vec):
    # The vectors were made with torch.manual_seed(0) right before constructing the reference class, so equal
    # tensors prove the same layer creation order and the same prior / N(0, 0.001) initialisation. Equal up to
    # rounding: the random bits are the same everywhere, but turning them into uniform (a + (b - a) * r, with or
    # without FMA) and normal values (Box-Muller: log, sqrt, cos of up to 2 pi, scale) takes about ten fp32
    # operations whose vectorised forms differ per CPU capability. Another order or init moves every value by
    # about its spread, a million times more.
    reference = vec["state_dict"]
    torch.manual_seed(0)
    state = DinoFCOSHead(NAMES).state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=rounding_atol(value, reduction=1, depth=10), msg=key)


def test_checkpoint_filter_refuses_the_pre_4fdc716_layout():
    legacy = _legacy_state_dict()
    assert len(legacy) == 42 and sum(v.numel() for v in legacy.values()) == 4_538_005
    for state in (legacy, {f"module.{k}": v for k, v in legacy.items()}):
        with pytest.raises(CheckpointError, match="pre-4fdc716 DinoFCOSHead layout") as err:
            DinoFCOSHead.checkpoint_filter(state)
        assert "object_detection_dinov3" in str(err.value) and "GroupNorm" in str(err.value)


def test_checkpoint_filter_strips_a_module_prefix():
    state = DinoFCOSHead(NAMES).state_dict()
    filtered = DinoFCOSHead.checkpoint_filter({f"module.{k}": v for k, v in state.items()})
    assert list(filtered) == list(state)
    DinoFCOSHead(NAMES).load_state_dict(filtered, strict=True)
    partly = {"module.x": torch.zeros(1), "y": torch.zeros(1)}
    assert DinoFCOSHead.checkpoint_filter(partly) == partly  # only an all-keys prefix is a wrapper


# The longest path to an output: proj, down1, down2, smooth4, smooth3, 4 tower convs, the output conv;
# the longest dot product is a 3x3 conv over 192 channels.
REDUCTION, DEPTH = 192 * 3 * 3, 10
# Decoding rounds a box side three times (cell centre, minus the distance, times the frame scale) and a
# score three times (two sigmoids and their product); no sums.
DECODE_DEPTH = 3


def _reference_head(vec) -> DinoFCOSHead:
    head = DinoFCOSHead(NAMES).eval()
    head.load_state_dict(DinoFCOSHead.checkpoint_filter(vec["state_dict"]), strict=True)
    return head


def _assert_matches_reference(head: DinoFCOSHead, vec) -> None:
    with torch.no_grad():
        out = head([vec["input"]])
    assert set(out) == {"cls", "reg", "ctr"}
    for key in out:
        assert [t.shape for t in out[key]] == [t.shape for t in vec["outputs"][key]]
        for got, want in zip(out[key], vec["outputs"][key]):
            atol = rounding_atol(want, reduction=REDUCTION, depth=DEPTH)
            torch.testing.assert_close(got, want, rtol=0, atol=atol, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.reference
def test_forward_matches_reference_outputs(vec):
    _assert_matches_reference(_reference_head(vec), vec)


def _transpose_channels_(weight: torch.Tensor) -> None:
    weight.copy_(weight.transpose(0, 1).clone())  # a (192, 192, 3, 3) kernel loaded as (in, out)


@pytest.mark.reference
@pytest.mark.parametrize(("name", "bug"), [
    ("fpn.proj.0.weight", perturb_one_element_),  # the first layer
    ("fpn.smooth5.gn.weight", perturb_one_element_),  # a norm's scale
    ("head.cls_tower.3.conv.weight", perturb_one_element_),  # the deepest tower conv, least visible (~50x)
    ("head.bbox_reg.weight", perturb_one_element_),
    ("head.cls_logits.bias", perturb_one_element_),
    ("head.cls_tower.0.conv.weight", _transpose_channels_),
    ("head.cls_logits.bias", torch.Tensor.zero_),  # a missing bias
])
def test_reference_comparison_catches_a_one_weight_bug(vec, name, bug):
    head = _reference_head(vec)
    with torch.no_grad():
        bug(head.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_matches_reference(head, vec)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("score", "iou", "key"),
    [(0.015, 0.6, "score0.015_nms0.6"), (0.2, 0.1, "score0.2_nms0.1"), (0.2, 0.6, "score0.2_nms0.6")],
)
def test_decoding_matches_reference(vec, score, iou, key):
    expected = vec["decoded"][key]
    params = {**DEFAULTS, "score_threshold": score, "nms_iou_threshold": iou}
    det = DinoFCOSHead(NAMES).postprocess(vec["outputs"], _prepared((640, 640), (640, 640)), params)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.labels.dtype == np.int64
    assert len(det) == len(expected["scores"])

    def canonical(boxes, scores, labels):  # one order for both, whatever way ties were broken
        order = np.lexsort((boxes[:, 1], boxes[:, 0], labels, -scores))
        return boxes[order], scores[order], labels[order]

    got = canonical(det.boxes, det.scores, det.labels)
    want = canonical(*(expected[k].numpy() for k in ("boxes_xyxy", "scores", "labels")))
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=rounding_atol(want[0], reduction=1, depth=DECODE_DEPTH))
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=rounding_atol(want[1], reduction=1, depth=DECODE_DEPTH))
    np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decoding_on_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(0)
    sizes = _level_sizes(640, 640)
    outputs = {  # random logits and 0..100 px boxes: thousands of overlapping candidates for NMS
        "cls": [torch.randn(1, NUM_CLASSES, h, w, generator=gen) - 2 for h, w in sizes],
        "reg": [torch.rand(1, 4, h, w, generator=gen) * 50 for h, w in sizes],
        "ctr": [torch.randn(1, 1, h, w, generator=gen) for h, w in sizes],
    }
    params = {**DEFAULTS, "score_threshold": 0.05, "max_detections": 1000}
    image = _prepared((480, 640), (640, 640))
    head = DinoFCOSHead(NAMES)
    cpu = head.postprocess(outputs, image, params)
    cuda = head.postprocess({k: [t.cuda() for t in v] for k, v in outputs.items()}, image, params)
    assert len(cpu) == 1000
    np.testing.assert_allclose(cuda.boxes, cpu.boxes, rtol=0, atol=rounding_atol(cpu.boxes, reduction=1, depth=DECODE_DEPTH))
    np.testing.assert_allclose(cuda.scores, cpu.scores, rtol=0,
                               atol=rounding_atol(cpu.scores, reduction=1, depth=DECODE_DEPTH))
    np.testing.assert_array_equal(cuda.labels, cpu.labels)


def _level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """P3, P4, P5 sizes for an h x w input: stride 16, then two 3x3 stride-2 convs with padding 1."""
    sizes = [(h // 16, w // 16)]
    for _ in range(2):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes


def _outputs(input_size, hits, dtype=torch.float32) -> dict[str, list[torch.Tensor]]:
    """Raw outputs where nothing scores except ``hits``: (level, row, col, class, logit, (l, t, r, b))."""
    out: dict[str, list[torch.Tensor]] = {"cls": [], "reg": [], "ctr": []}
    for h, w in _level_sizes(*input_size):
        out["cls"].append(torch.full((1, NUM_CLASSES, h, w), -float("inf")))
        out["reg"].append(torch.ones(1, 4, h, w))
        out["ctr"].append(torch.full((1, 1, h, w), 30.0))  # sigmoid = 1: score = sigmoid(class logit)
    for level, row, col, cls, logit, ltrb in hits:
        out["cls"][level][0, cls, row, col] = logit
        out["reg"][level][0, :, row, col] = torch.tensor(ltrb, dtype=torch.float32)
    return {k: [t.to(dtype) for t in v] for k, v in out.items()}


# original (H, W), resize mode, input (h, w), (level, row, col), (l, t, r, b) in input px, box in original px.
GEOMETRY = [
    # stride 16: centre (168, 328) -> (128, 308, 228, 428); y * 480/640.
    ((480, 640), "stretch", (640, 640), (0, 20, 10), (40, 20, 60, 100), (128, 231, 228, 321)),
    # stride 32: centre (624, 176) -> (600, 160, 674 -> 640, 184); x * 2, y * 720/640.
    ((720, 1280), "stretch", (640, 640), (1, 5, 19), (24, 16, 50, 8), (1200, 180, 1280, 207)),
    # stride 64: centre (160, 32) -> (150, -18 -> 0, 180, 62); no scaling.
    ((480, 640), "keep_aspect", (480, 640), (2, 0, 2), (10, 50, 20, 30), (150, 0, 180, 62)),
    # stride 16: centre (8, 344) -> (-22 -> 0, 340, 16, 384 -> 352); x * 2, y * 720/352.
    ((720, 1280), "keep_aspect", (352, 640), (0, 21, 0), (30, 4, 8, 40), (0, 340 * 720 / 352, 32, 720)),
]


@pytest.mark.parametrize(("original", "mode", "input_size", "cell", "ltrb", "expected"), GEOMETRY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_box_lands_where_expected_in_the_original_image(original, mode, input_size, cell, ltrb, expected, dtype):
    assert Preprocessor(mean=(0, 0, 0), std=(1, 1, 1), size=640, mode=mode).input_size(*original) == input_size
    head = DinoFCOSHead(tuple(f"c{i}" for i in range(NUM_CLASSES)))
    outputs = _outputs(input_size, [(*cell, 7, 5.0, ltrb)], dtype=dtype)
    det = head.postprocess(outputs, _prepared(original, input_size), DEFAULTS)
    assert len(det) == 1 and det.labels.tolist() == [7] and det.names() == ["c7"]
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32
    # The logits and distances are exact in fp16 too, so both dtypes decode with fp32 roundings only.
    np.testing.assert_allclose(det.scores, [torch.sigmoid(torch.tensor(5.0)).item()], rtol=0,
                               atol=rounding_atol(det.scores, reduction=1, depth=DECODE_DEPTH))
    np.testing.assert_allclose(det.boxes[0], expected, rtol=0,
                               atol=rounding_atol(np.array(expected), reduction=1, depth=DECODE_DEPTH))
    height, width = original
    assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= width).all() and (det.boxes[:, [1, 3]] <= height).all()


def test_score_threshold_is_strict():
    outputs = _outputs((640, 640), [(0, 3, 3, 0, 10.0, (8, 8, 8, 8))])
    det = DinoFCOSHead(NAMES).postprocess(outputs, _prepared((640, 640), (640, 640)),
                                          {**DEFAULTS, "score_threshold": 0.0})
    assert len(det) == 1  # every other pair scores exactly 0, which is not above 0


def test_class_agnostic_nms_merges_overlapping_boxes_of_different_classes():
    big = (40, 40, 40, 40)
    # 80 px boxes whose centres are one 16 px cell apart: IoU 64/96 = 0.67 > 0.6.
    hits = [(0, 10, 10, 1, 4.0, big), (0, 10, 11, 2, 3.0, big), (0, 11, 10, 1, 2.0, big)]
    image = _prepared((640, 640), (640, 640))
    aware = DinoFCOSHead(NAMES).postprocess(_outputs((640, 640), hits), image, DEFAULTS)
    assert aware.labels.tolist() == [1, 2]  # the class-1 box one row down falls to the first class-1 box
    agnostic = DinoFCOSHead(NAMES).postprocess(_outputs((640, 640), hits), image,
                                               {**DEFAULTS, "class_agnostic_nms": True})
    assert agnostic.labels.tolist() == [1]
    np.testing.assert_array_less(np.diff(aware.scores), 0)


def test_max_detections_keeps_the_highest_scores():
    hits = [(0, 2 * i, 2 * i, i % 5, float(i), (4, 4, 4, 4)) for i in range(12)]  # disjoint boxes
    image = _prepared((640, 640), (640, 640))
    head = DinoFCOSHead(NAMES)
    assert len(head.postprocess(_outputs((640, 640), hits), image, DEFAULTS)) == 12
    det = head.postprocess(_outputs((640, 640), hits), image, {**DEFAULTS, "max_detections": 3})
    np.testing.assert_allclose(det.scores, torch.sigmoid(torch.tensor([11.0, 10.0, 9.0])).numpy(), rtol=0,
                               atol=rounding_atol(det.scores, reduction=1, depth=DECODE_DEPTH))
    assert det.labels.tolist() == [11 % 5, 10 % 5, 9 % 5]


def test_forward_shapes_on_a_keep_aspect_grid():
    head = DinoFCOSHead(('a', 'b', 'c'), in_channels=16, fpn_channels=8, num_convs=1).eval()
    with torch.no_grad():
        out = head([torch.randn(1, 16, 23, 40)])
    assert [tuple(t.shape) for t in out["cls"]] == [(1, 3, 23, 40), (1, 3, 12, 20), (1, 3, 6, 10)]
    assert [tuple(t.shape[1:]) for t in out["reg"]] == [(4, 23, 40), (4, 12, 20), (4, 6, 10)]
    assert [tuple(t.shape[1:]) for t in out["ctr"]] == [(1, 23, 40), (1, 12, 20), (1, 6, 10)]
    assert all((t >= 0).all() for t in out["reg"])  # softplus distances


def test_constructor_rejects_a_bad_prior():
    with pytest.raises(ValueError, match="1.5"):
        DinoFCOSHead(NAMES, prior_prob=1.5)
