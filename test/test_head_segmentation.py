"""head_segmentation: the published ASPPDecoder layout, its reference outputs, labels in original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_vector, randomize_
from tolerances import perturb_one_element_, rounding_atol

from dinov3_toolkit.checkpoint import CheckpointError
from dinov3_toolkit.heads.ops.dense import labels_at
from dinov3_toolkit.head_segmentation.model import ASPPDecoder
from dinov3_toolkit.heads.loader import BUILTIN_DIR, load_head
from dinov3_toolkit.heads.manifest import load_manifest
from dinov3_toolkit.preprocess import PreparedImage

FOLDER = BUILTIN_DIR / "head_segmentation"
NAMES = load_manifest(FOLDER).read_class_names()  # background + 133 COCO-panoptic classes


def _names(n: int) -> tuple[str, ...]:
    return tuple(f"class{i}" for i in range(n))

# shared/specs/heads.md section 7: key, shape ("-" for a scalar), "buffer" for BatchNorm statistics.
PUBLISHED_LAYOUT = """
    initial.0.weight 576x384x1x1
    initial.0.bias 576
    initial.1.weight 576
    initial.1.bias 576
    initial.1.running_mean 576 buffer
    initial.1.running_var 576 buffer
    initial.1.num_batches_tracked - buffer
    project.0.weight 288x576x1x1
    project.0.bias 288
    project.1.weight 288
    project.1.bias 288
    project.1.running_mean 288 buffer
    project.1.running_var 288 buffer
    project.1.num_batches_tracked - buffer
    branches.0.weight 288x288x3x3
    branches.0.bias 288
    branches.1.weight 288x288x3x3
    branches.1.bias 288
    branches.2.weight 288x288x3x3
    branches.2.bias 288
    branches.3.weight 288x288x3x3
    branches.3.bias 288
    branches_bn.0.weight 288
    branches_bn.0.bias 288
    branches_bn.0.running_mean 288 buffer
    branches_bn.0.running_var 288 buffer
    branches_bn.0.num_batches_tracked - buffer
    branches_bn.1.weight 288
    branches_bn.1.bias 288
    branches_bn.1.running_mean 288 buffer
    branches_bn.1.running_var 288 buffer
    branches_bn.1.num_batches_tracked - buffer
    branches_bn.2.weight 288
    branches_bn.2.bias 288
    branches_bn.2.running_mean 288 buffer
    branches_bn.2.running_var 288 buffer
    branches_bn.2.num_batches_tracked - buffer
    branches_bn.3.weight 288
    branches_bn.3.bias 288
    branches_bn.3.running_mean 288 buffer
    branches_bn.3.running_var 288 buffer
    branches_bn.3.num_batches_tracked - buffer
    fuse.0.weight 576x1152x1x1
    fuse.0.bias 576
    fuse.1.weight 576
    fuse.1.bias 576
    fuse.1.running_mean 576 buffer
    fuse.1.running_var 576 buffer
    fuse.1.num_batches_tracked - buffer
    ds.dw.weight 576x1x3x3
    ds.pw.weight 576x576x1x1
    ds.pw.bias 576
    ds.bn.weight 576
    ds.bn.bias 576
    ds.bn.running_mean 576 buffer
    ds.bn.running_var 576 buffer
    ds.bn.num_batches_tracked - buffer
    classifier.weight 134x576x1x1
    classifier.bias 134
"""


def _layout() -> list[tuple[str, tuple[int, ...], bool]]:
    rows = [line.split() for line in PUBLISHED_LAYOUT.strip().splitlines()]
    return [(r[0], () if r[1] == "-" else tuple(int(d) for d in r[1].split("x")), len(r) == 3) for r in rows]


def test_state_dict_layout_is_the_published_one():
    model = ASPPDecoder(NAMES)
    state = model.state_dict()
    layout = _layout()
    assert len(layout) == 59
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(k, shape) for k, shape, _ in layout]
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == {k for k, _, is_buffer in layout if is_buffer}
    assert sum(p.numel() for p in model.parameters()) == 4_460_390
    assert sum(b.numel() for b in model.buffers()) == 6_344


# The longest path: initial, project, an ASPP branch, fuse, the depthwise and pointwise convs, the
# classifier; the longest dot product is a 3x3 branch conv over 288 channels. The bilinear upsample adds a
# 4-term convex combination, one more layer.
REDUCTION, DEPTH = 288 * 3 * 3, 7


@pytest.fixture(scope="module")
def vector():
    return load_vector("segmentation")


def _reference_model(vector) -> ASPPDecoder:
    model = ASPPDecoder(NAMES).eval()
    model.load_state_dict(vector["state_dict"], strict=True)
    return model


def _assert_matches_reference(model: ASPPDecoder, vector) -> None:
    outputs = vector["outputs"]
    with torch.no_grad():
        logits = model([vector["input"]])  # (1, 134, 40, 40)
    assert logits.shape == (1, 134, 40, 40)
    lowres = outputs["logits_lowres_40x40"]
    torch.testing.assert_close(logits, lowres, rtol=0, atol=rounding_atol(lowres, reduction=REDUCTION, depth=DEPTH))

    # The original upsampled inside forward; the same bilinear upsample of our low-res logits matches it.
    full = F.interpolate(logits, size=(320, 320), mode="bilinear", align_corners=False).double()
    subsampled = outputs["logits_320_subsampled_every4"]
    atol = rounding_atol(subsampled, reduction=REDUCTION, depth=DEPTH + 1)
    torch.testing.assert_close(full[..., ::4, ::4], subsampled.double(), rtol=0, atol=atol)
    sums = outputs["logits_320_checksums"]
    assert tuple(full.shape) == tuple(sums["shape"])
    # Element errors up to atol move a sum of n terms, and a sum of |x|, by at most n * atol, a sum of squares
    # by n * atol * 2 max|x| (x^2 - y^2 = (x - y)(x + y)), and the min and max by atol.
    n, peak = full.numel(), max(abs(sums["min"]), abs(sums["max"]))
    for name, value, bound in [("sum", full.sum(), n * atol), ("abs_sum", full.abs().sum(), n * atol),
                               ("sq_sum", (full**2).sum(), n * atol * 2 * peak)]:
        assert abs(value.item() - sums[name]) <= bound, name
    assert abs(full.min().item() - sums["min"]) <= atol and abs(full.max().item() - sums["max"]) <= atol

    labels = labels_at(logits, (320, 320))
    agreement = (labels == outputs["argmax_320"][0].long()).double().mean().item()
    assert agreement >= 0.9999  # measured 1.0 (all 102,400 pixels); rounding can only flip near-ties


@pytest.mark.reference
def test_matches_the_reference_vectors(vector):
    _assert_matches_reference(_reference_model(vector), vector)


def _transpose_channels_(weight: torch.Tensor) -> None:
    weight.copy_(weight.transpose(0, 1).clone())  # a (288, 288, 3, 3) kernel loaded as (in, out)


@pytest.mark.reference
@pytest.mark.parametrize(("name", "bug"), [
    ("initial.0.weight", perturb_one_element_),  # the first layer
    ("branches.2.bias", perturb_one_element_),  # the least visible parameter (~2.5x the tolerance)
    ("ds.dw.weight", perturb_one_element_),
    ("classifier.weight", perturb_one_element_),
    ("branches.0.weight", _transpose_channels_),
    ("classifier.bias", torch.Tensor.zero_),  # a missing bias
])
def test_reference_comparison_catches_a_one_weight_bug(vector, name, bug):
    model = _reference_model(vector)
    with torch.no_grad():
        bug(model.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_matches_reference(model, vector)


def _prepared(original_size: tuple[int, int]) -> PreparedImage:
    return PreparedImage(tensor=torch.zeros(1, 3, 640, 640), original_size=original_size, input_size=(640, 640))


def _left_right_logits(num_classes: int, left: int, right: int) -> torch.Tensor:
    """(1, K, 40, 40): class ``left`` wins in the left 20 columns, ``right`` in the right 20."""
    logits = torch.full((1, num_classes, 40, 40), -1.0)
    logits[0, [left, right]] = 0.0
    logits[0, left, :, :20] = 1.0
    logits[0, right, :, 20:] = 1.0
    return logits


@pytest.mark.parametrize(("num_classes", "right", "dtype"), [(134, 2, np.uint8), (300, 299, np.uint16)])
@pytest.mark.parametrize("original_size", [(480, 640), (720, 1280)])
def test_labels_cover_the_original_frame(num_classes, right, dtype, original_size):
    model = ASPPDecoder(_names(num_classes))
    result = model.postprocess(_left_right_logits(num_classes, 1, right), _prepared(original_size), {})
    height, width = original_size
    assert result.labels.shape == (height, width) and result.labels.dtype == dtype
    assert result.class_names == model.class_names
    half = width // 2
    assert (result.labels[:, : half - 1] == 1).all()  # the stretched frame maps halves to halves
    assert (result.labels[:, half + 1 :] == right).all()
    assert set(np.unique(result.labels[:, half - 1 : half + 1])) <= {1, right}


def test_postprocess_accepts_half_precision_logits():
    model = ASPPDecoder(NAMES)
    logits = _left_right_logits(134, 7, 9).half()
    result = model.postprocess(logits, _prepared((48, 64)), {})
    expected = labels_at(logits.float(), (48, 64)).numpy()
    np.testing.assert_array_equal(result.labels, expected)


def test_postprocess_needs_one_name_per_class():
    model = ASPPDecoder(_names(5))
    model.class_names = ("a", "b")
    with pytest.raises(ValueError, match="5 classes but has 2 class names"):
        model.postprocess(torch.zeros(1, 5, 4, 4), _prepared((8, 8)), {})


def test_every_tensor_affects_the_output():
    model = randomize_(ASPPDecoder(_names(6), proj_channels=32, branch_channels=16)).eval()
    with torch.no_grad():
        for module in model.modules():  # running statistics matter in eval mode: make them non-trivial
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        features = [torch.randn(1, 384, 6, 7)]
        reference = model(features)
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):  # only counts training steps
                continue
            original = tensor.clone()
            tensor.add_(0.5 * torch.randn_like(tensor))  # not uniform: a norm could cancel a uniform shift
            assert not torch.allclose(model(features), reference), name
            tensor.copy_(original)


def test_refuses_the_light_head_checkpoint():
    with pytest.raises(CheckpointError, match="Mask2FormerLiteHead"):
        ASPPDecoder.checkpoint_filter({"pixel_embed.0.weight": torch.zeros(256, 384, 1, 1)})
    state = ASPPDecoder(_names(3), proj_channels=8, branch_channels=8).state_dict()
    assert ASPPDecoder.checkpoint_filter(state) is state


def test_class_names_are_background_then_coco_panoptic():
    names = (FOLDER / "class_names.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == 134 and len(set(names)) == 134
    assert names[:3] == ["background", "person", "bicycle"]
    assert names[80] == "toothbrush"  # the last of the 80 things
    assert names[81] == "banner" and names[117] == "tree-merged" and names[-1] == "rug-merged"


def test_manifest_builds_the_head():
    manifest = load_manifest(FOLDER)
    assert manifest.task == "segmentation" and (manifest.module, manifest.class_name) == ("model", "ASPPDecoder")
    assert manifest.layers == (-1,)
    assert manifest.weights == FOLDER / "weights" / "model.pth"
    assert manifest.trained_on == {"backbone": "vits16plus", "size": 640, "resize_mode": "stretch"}
    head = load_head(manifest, random_weights=True)
    assert isinstance(head.model, ASPPDecoder) and head.model.classifier.out_channels == 134
    assert head.class_names == tuple(manifest.read_class_names())
