"""head_depth: the published DepthHeadLite layout, its forward order, depth in original pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_
from tolerances import perturb_one_element_, rounding_atol

from dinov3_toolkit.head_depth.model import DepthHeadLite
from dinov3_toolkit.heads.loader import BUILTIN_DIR, load_head
from dinov3_toolkit.heads.manifest import load_manifest
from dinov3_toolkit.preprocess import PreparedImage
from dinov3_toolkit.results import DepthMap

FOLDER = BUILTIN_DIR / "head_depth"

# shared/specs/heads.md section 7: key and shape of the published weights/model.pth, in file order.
PUBLISHED_LAYOUT = """
    proj0.weight 32x384x1x1
    proj1.weight 64x384x1x1
    proj2.weight 96x384x1x1
    proj3.weight 128x384x1x1
    down3.dw.weight 128x1x3x3
    down3.bn1.weight 128
    down3.bn1.bias 128
    down3.pw.weight 128x128x1x1
    down3.bn2.weight 128
    down3.bn2.bias 128
    to_c0.dw.weight 32x1x3x3
    to_c0.bn1.weight 32
    to_c0.bn1.bias 32
    to_c0.pw.weight 160x32x1x1
    to_c0.bn2.weight 160
    to_c0.bn2.bias 160
    to_c1.dw.weight 64x1x3x3
    to_c1.bn1.weight 64
    to_c1.bn1.bias 64
    to_c1.pw.weight 160x64x1x1
    to_c1.bn2.weight 160
    to_c1.bn2.bias 160
    to_c2.dw.weight 96x1x3x3
    to_c2.bn1.weight 96
    to_c2.bn1.bias 96
    to_c2.pw.weight 160x96x1x1
    to_c2.bn2.weight 160
    to_c2.bn2.bias 160
    to_c3.dw.weight 128x1x3x3
    to_c3.bn1.weight 128
    to_c3.bn1.bias 128
    to_c3.pw.weight 160x128x1x1
    to_c3.bn2.weight 160
    to_c3.bn2.bias 160
    fuse3.proj.weight 160x160x1x1
    fuse3.bn.weight 160
    fuse3.bn.bias 160
    fuse3.res.0.dw.weight 160x1x3x3
    fuse3.res.0.bn1.weight 160
    fuse3.res.0.bn1.bias 160
    fuse3.res.0.pw.weight 160x160x1x1
    fuse3.res.0.bn2.weight 160
    fuse3.res.0.bn2.bias 160
    fuse2.proj.weight 160x160x1x1
    fuse2.bn.weight 160
    fuse2.bn.bias 160
    fuse2.res.0.dw.weight 160x1x3x3
    fuse2.res.0.bn1.weight 160
    fuse2.res.0.bn1.bias 160
    fuse2.res.0.pw.weight 160x160x1x1
    fuse2.res.0.bn2.weight 160
    fuse2.res.0.bn2.bias 160
    fuse1.proj.weight 160x160x1x1
    fuse1.bn.weight 160
    fuse1.bn.bias 160
    fuse1.res.0.dw.weight 160x1x3x3
    fuse1.res.0.bn1.weight 160
    fuse1.res.0.bn1.bias 160
    fuse1.res.0.pw.weight 160x160x1x1
    fuse1.res.0.bn2.weight 160
    fuse1.res.0.bn2.bias 160
    fuse0.proj.weight 160x160x1x1
    fuse0.bn.weight 160
    fuse0.bn.bias 160
    fuse0.res.0.dw.weight 160x1x3x3
    fuse0.res.0.bn1.weight 160
    fuse0.res.0.bn1.bias 160
    fuse0.res.0.pw.weight 160x160x1x1
    fuse0.res.0.bn2.weight 160
    fuse0.res.0.bn2.bias 160
    h1.weight 80x160x3x3
    h1.bias 80
    h2.weight 40x80x3x3
    h2.bias 40
    out.weight 1x40x1x1
    out.bias 1
    h1_bn.weight 80
    h1_bn.bias 80
    h2_bn.weight 40
    h2_bn.bias 40
"""


def test_state_dict_layout_is_the_published_one():
    model = DepthHeadLite()
    rows = [line.split() for line in PUBLISHED_LAYOUT.strip().splitlines()]
    expected = [(key, tuple(int(d) for d in shape.split("x"))) for key, shape in rows]
    assert len(expected) == 80
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == 555_729
    assert list(model.buffers()) == []  # GroupNorm, despite the "bn" names


def _reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """heads.md section 3.4 written out with torch.nn.functional, straight from the state dict."""

    def up(t, size):
        return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)

    def norm(t, key):
        return F.group_norm(t, 8, state[f"{key}.weight"], state[f"{key}.bias"])

    def ds_conv(t, key, stride=1):
        t = F.conv2d(t, state[f"{key}.dw.weight"], stride=stride, padding=1, groups=t.shape[1])
        t = F.gelu(norm(t, f"{key}.bn1"))
        return F.gelu(norm(F.conv2d(t, state[f"{key}.pw.weight"]), f"{key}.bn2"))

    def fuse(t, key, skip=None):
        t = F.gelu(norm(F.conv2d(t, state[f"{key}.proj.weight"]), f"{key}.bn"))
        return ds_conv(t if skip is None else t + skip, f"{key}.res.0")

    h, w = x.shape[-2:]
    b0, b1, b2, b3 = (F.conv2d(x, state[f"proj{i}.weight"]) for i in range(4))
    f0 = ds_conv(up(b0, (4 * h, 4 * w)), "to_c0")
    f1 = ds_conv(up(b1, (2 * h, 2 * w)), "to_c1")
    f2 = ds_conv(b2, "to_c2")
    f3 = ds_conv(ds_conv(b3, "down3", stride=2), "to_c3")
    y = fuse(f3, "fuse3")
    y = fuse(up(y, f2.shape[-2:]), "fuse2", f2)
    y = fuse(up(y, f1.shape[-2:]), "fuse1", f1)
    y = fuse(up(y, f0.shape[-2:]), "fuse0", f0)
    y = F.relu(norm(F.conv2d(y, state["h1.weight"], state["h1.bias"], padding=1), "h1_bn"))
    y = up(y, (8 * h, 8 * w))
    y = F.relu(norm(F.conv2d(y, state["h2.weight"], state["h2.bias"], padding=1), "h2_bn"))
    return F.softplus(F.conv2d(y, state["out.weight"], state["out.bias"])) + 1e-3


# The longest path: proj3, down3 and to_c3 (depthwise + pointwise each), four fuse blocks of three convs,
# h1, h2 and out; the longest dot product is h1's 3x3 conv over 160 channels.
REDUCTION, DEPTH = 160 * 3 * 3, 20


def _lively_head() -> DepthHeadLite:
    """Random weights whose output varies: randomize_ knows a norm's scale by "norm" in its name, and these
    GroupNorms are called "bn", so their scales would be drawn near 0 and the depth map nearly constant."""
    model = randomize_(DepthHeadLite()).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=gen))
    return model


def _assert_follows_the_published_order(model: DepthHeadLite, state: dict[str, torch.Tensor], grid) -> None:
    features = torch.randn(1, 384, *grid, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth = model([features])
        reference = _reference_forward(state, features)
    assert depth.shape == (1, 1, 8 * grid[0], 8 * grid[1])
    torch.testing.assert_close(depth, reference, rtol=0, atol=rounding_atol(reference, reduction=REDUCTION, depth=DEPTH))
    assert (depth >= 1e-3).all()


@pytest.mark.reference
@pytest.mark.parametrize("grid", [(40, 40), (5, 8), (3, 5)])
def test_forward_follows_the_published_order(grid):
    model = _lively_head()
    _assert_follows_the_published_order(model, model.state_dict(), grid)


@pytest.mark.reference
@pytest.mark.parametrize(("name", "bug"), [
    ("proj0.weight", perturb_one_element_),  # the first layer of the finest branch
    ("fuse3.res.0.pw.weight", perturb_one_element_),  # the coarsest, most upsampled path
    ("h1_bn.bias", perturb_one_element_),
    ("fuse0.proj.weight", lambda w: w.copy_(w.transpose(0, 1).clone())),  # a (160, 160, 1, 1) kernel as (in, out)
    ("h2.bias", torch.Tensor.zero_),  # a missing bias
])
def test_published_order_comparison_catches_a_one_weight_bug(name, bug):
    model = _lively_head()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        bug(model.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_follows_the_published_order(model, state, (5, 8))


def test_state_dict_round_trip_loads_strictly():
    source = randomize_(DepthHeadLite(), seed=3).eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu", weights_only=True)
    target = DepthHeadLite().eval()
    target.load_state_dict(DepthHeadLite.checkpoint_filter(state), strict=True)
    features = [torch.randn(1, 384, 10, 12)]
    with torch.no_grad():
        assert torch.equal(target(features), source(features))


def test_every_parameter_affects_the_output():
    model = randomize_(DepthHeadLite()).eval()
    features = [torch.randn(1, 384, 4, 4)]
    with torch.no_grad():
        reference = model(features)
        for name, param in model.named_parameters():
            original = param.clone()
            param.add_(0.5 * torch.randn_like(param))  # not uniform: a norm would cancel a uniform bias shift
            assert not torch.allclose(model(features), reference), name
            param.copy_(original)


@pytest.mark.parametrize("original_size", [(480, 640), (720, 1280)])
def test_depth_covers_the_original_frame(original_size):
    model = randomize_(DepthHeadLite()).eval()
    with torch.no_grad():
        raw = model([torch.randn(1, 384, 40, 40)])  # (1, 1, 320, 320) for a 640x640 input
    image = PreparedImage(tensor=torch.zeros(1, 3, 640, 640), original_size=original_size, input_size=(640, 640))
    result = model.postprocess(raw.half(), image, {})  # as if the forward ran under autocast
    assert isinstance(result, DepthMap) and result.unit == ""
    assert result.depth.shape == original_size and result.depth.dtype == np.float32
    assert (result.depth > 0).all()
    expected = F.interpolate(raw.half().float(), size=original_size, mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(result.depth, expected[0, 0].numpy())


def test_rejects_a_wrong_number_of_branch_widths():
    with pytest.raises(ValueError, match=r"\(32, 64\)"):
        DepthHeadLite(proj_channels=(32, 64))


def test_manifest_builds_the_head():
    manifest = load_manifest(FOLDER)
    assert manifest.task == "depth" and (manifest.module, manifest.class_name) == ("model", "DepthHeadLite")
    assert manifest.classes is None and manifest.layers == (-1,)
    assert manifest.weights == FOLDER / "weights" / "model.pth"
    assert manifest.trained_on == {"backbone": "vits16plus", "size": 640, "resize_mode": "stretch"}
    head = load_head(manifest, random_weights=True)
    assert isinstance(head.model, DepthHeadLite) and head.class_names == ()


def test_weights_readme_names_the_published_file():
    readme = (FOLDER / "weights" / "README.md").read_text(encoding="utf-8")
    assert "fd1a1357dccc129273e195dff119ad05ae003b047bf26d0310e5604e2f2bde88" in readme
    assert "2,250,825 bytes" in readme and "model.pth" in readme
