"""Overlays: stable colours, pixels where they belong, labels inside objects and never piled up, the legend
of the classes present, the depth bar's range and meaning, the banner above, dispatch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dinov3_toolkit import depth_drawing, result_kinds
from dinov3_toolkit.depth_drawing import depth_bar, draw_depth
from dinov3_toolkit.drawing import (add_banner, caption_box, draw_detections, draw_segmentation, legend, palette,
                                    place_labels)
from dinov3_toolkit.overlays import composite, draw_overlays
from dinov3_toolkit.result_kinds import ResultKind
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels

H, W = 480, 640
NAMES = tuple(f"class{i}" for i in range(134))
GREY = 100


def _grey(h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def _dets(boxes, labels, scores=None) -> Detections:
    scores = np.linspace(0.9, 0.5, len(boxes)) if scores is None else scores
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(labels, np.int64),
        NAMES,
    )


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=-1)


def _luma(rgb) -> float:
    r, g, b = (float(c) for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _min_distance(colours: np.ndarray) -> float:
    c = colours.astype(np.float64)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


# --- palette -------------------------------------------------------------------------------------------------


def test_palette_is_deterministic_and_prefix_stable():
    p = palette(134)
    assert p.shape == (134, 3) and p.dtype == np.uint8
    np.testing.assert_array_equal(p, palette(134))
    np.testing.assert_array_equal(palette(20), p[:20])  # a class keeps its colour whatever the class count
    np.testing.assert_array_equal(p[0], [255, 0, 0])  # hue 0, full saturation and value
    assert palette(0).shape == (0, 3)
    with pytest.raises(ValueError, match="-1"):
        palette(-1)


def test_palette_colours_are_well_separated():
    # The ancestor's RandomState(42) palette reaches 8.4 (134 colours) and 30.4 (first 20): bounds must beat it.
    assert _min_distance(palette(134)) > 18.0
    assert _min_distance(palette(20)) > 45.0
    assert _min_distance(palette(8)) > 80.0


# --- detections ----------------------------------------------------------------------------------------------


def test_detection_outline_in_class_colour_and_rest_untouched():
    image = _grey()
    before = image.copy()
    out = draw_detections(image, _dets([[100, 80, 300, 200]], [5]), count=False)
    np.testing.assert_array_equal(image, before)  # input not mutated
    assert out is not image and out.shape == image.shape and out.dtype == np.uint8
    colour = palette(len(NAMES))[5]
    for y, x in [(140, 100), (140, 300), (200, 200), (80, 250)]:  # left, right, bottom, top edge
        np.testing.assert_array_equal(out[y, x], colour, err_msg=f"outline pixel {(y, x)}")
    for y, x in [(140, 200), (400, 500), (10, 600), (300, 50)]:  # inside the box, far away
        np.testing.assert_array_equal(out[y, x], [GREY] * 3, err_msg=f"pixel {(y, x)}")
    # The label sits just above the box, starting at its left edge, filled with the class colour.
    label = _changed(out[:79], image[:79])
    ys, xs = np.nonzero(label)
    assert ys.size and xs.min() == 100 and ys.max() == 78 and 50 < ys.min() < 79
    assert (out[:79][label] == colour).all(axis=-1).mean() > 0.5


def test_each_detection_gets_its_own_class_colour():
    out = draw_detections(_grey(), _dets([[50, 100, 150, 200], [400, 100, 500, 200]], [1, 2]))
    colours = palette(len(NAMES))
    np.testing.assert_array_equal(out[150, 50], colours[1])
    np.testing.assert_array_equal(out[150, 400], colours[2])


def _label_area_above(out: np.ndarray, image: np.ndarray, y1: int) -> int:
    return int(_changed(out[:y1 - 2], image[:y1 - 2]).sum())


@pytest.mark.parametrize("shape", [(480, 640), (1080, 1920)])
def test_labels_stay_whole_at_image_edges(shape):
    h, w = shape
    image = _grey(h, w)
    reference = draw_detections(image, _dets([[w // 3, h // 2, w // 3 + 60, h // 2 + 40]], [3]), count=False)
    full_area = _label_area_above(reference, image, h // 2)
    assert full_area > 0

    # Box at the bottom-right corner, narrower than its label: the label is shifted left, not cut off.
    corner = draw_detections(image, _dets([[w - 30, h - 40, w, h]], [3]), count=False)
    assert _label_area_above(corner, image, h - 40) == full_area
    assert _changed(corner[:, w - 1], image[:, w - 1]).any()

    # Box touching the top edge: no room above, so the label goes inside the box.
    top = draw_detections(image, _dets([[w // 2, 0, w // 2 + 300, 200]], [3]), count=False)
    inside = _changed(top, image)
    inside[:, : w // 2 + 3] = False  # drop the outline: left edge
    inside[:3] = False  # and the part of the label that overlaps the top edge
    assert inside[:100].sum() > 0.7 * full_area
    assert not _changed(top[:, : w // 2 - 3], image[:, : w // 2 - 3]).any()

    # Box just below the top edge, with no room above: the label is inside the box, not straddling its edge.
    near_top = draw_detections(image, _dets([[w // 2, 10, w // 2 + 300, 200]], [3]), count=False)
    assert not _changed(near_top[:7], image[:7]).any()


def test_detections_empty_and_bad_image():
    image = _grey()
    np.testing.assert_array_equal(draw_detections(image, _dets([], []), count=False), image)
    with pytest.raises(TypeError, match="float32"):
        draw_detections(image.astype(np.float32), _dets([], []))


def _crowd(n: int = 40) -> Detections:
    rng = np.random.default_rng(0)
    xy = rng.uniform([0, 0], [W - 120, H - 90], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 120, (n, 2))], axis=1)
    return _dets(boxes, rng.integers(0, len(NAMES), n), rng.uniform(0.3, 1.0, n))  # unsorted: placement sorts


def test_labels_never_overlap_and_the_best_boxes_are_named_first():
    dets = _crowd()
    spots = place_labels(dets, (H, W, 3))
    placed = [(k, r) for k, r in enumerate(spots) if r is not None]
    assert 5 < len(placed) < len(dets)  # crowded: some boxes keep only their outline
    for i, (_, a) in enumerate(placed):
        assert 0 <= a[0] and a[0] + a[2] <= W and 0 <= a[1] and a[1] + a[3] <= H  # inside the image
        for _, b in placed[i + 1:]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
    assert spots[int(np.argmax(dets.scores))] is not None  # the best box chose first: it always has room
    # a spot already taken (the count's corner) is avoided as well
    corner = (0, 0, W, H // 2)
    below = place_labels(dets, (H, W, 3), [corner])
    assert any(r is not None for r in below) and all(r is None or r[1] >= H // 2 for r in below)


def test_the_count_says_how_many_boxes_in_the_top_right_corner():
    image = _grey()
    counted = [draw_detections(image, _dets([[300, 300, 400, 400]] * n, [1] * n)) for n in (0, 1, 2)]
    plain = draw_detections(image, _dets([[300, 300, 400, 400]] * 2, [1] * 2), count=False)
    changed = _changed(counted[2], plain)
    ys, xs = np.nonzero(changed)
    assert ys.size and ys.max() < 40 and xs.min() > W // 2  # only the top-right corner
    assert _changed(counted[0], image).any()  # "0 detections": the head ran and found nothing
    corner = (slice(0, 40), slice(W // 2, W))
    assert _changed(counted[0][corner], counted[1][corner]).any() and _changed(counted[1][corner],
                                                                              counted[2][corner]).any()


# --- segmentation --------------------------------------------------------------------------------------------


def _textured() -> np.ndarray:
    yy, xx = np.indices((H, W))
    return np.stack([(xx * 7) % 251, (yy * 3) % 241, (xx + yy) % 233], axis=-1).astype(np.uint8)


def _blend(image: np.ndarray, lab: np.ndarray, alpha: float, background: int | None) -> np.ndarray:
    """Independent float64 reference for the blend formula."""
    colours = palette(len(NAMES)).astype(np.float64)[lab]
    blended = np.rint((1 - alpha) * image.astype(np.float64) + alpha * colours).astype(np.uint8)
    paint = np.ones(lab.shape, bool) if background is None else lab != background
    return np.where(paint[..., None], blended, image)


def _l_shape() -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[40:440, 40:120] = 1  # vertical bar
    lab[360:440, 40:600] = 1  # horizontal bar: centroid ~(327, 233) is outside both
    return lab


def _ring() -> np.ndarray:
    yy, xx = np.indices((H, W))
    r = np.hypot(yy - 240, xx - 320)
    return ((r > 110) & (r < 220)).astype(np.uint8)  # centroid at the centre of the hole


@pytest.mark.parametrize("make", [_l_shape, _ring])
def test_segmentation_name_inside_region_not_at_centroid(make):
    lab = make()
    image = _textured()
    before = image.copy()
    out = draw_segmentation(image, SemanticLabels(lab, NAMES), alpha=0.5, background=0, show_legend=False)
    np.testing.assert_array_equal(image, before)
    text = _changed(out, _blend(image, lab, 0.5, 0))  # pixels the name label changed
    assert text.sum() > 100
    assert lab[text].all(), "every pixel of the name label must lie inside the region"
    ys, xs = np.nonzero(lab)
    ty, tx = np.nonzero(text)
    assert ys.min() <= ty.min() and ty.max() <= ys.max() and xs.min() <= tx.min() and tx.max() <= xs.max()
    cy, cx = ys.mean(), xs.mean()
    assert lab[round(cy), round(cx)] == 0  # the shapes really have their centroid outside
    assert np.hypot(ty - cy, tx - cx).min() > 40


def test_segmentation_blend_values_and_background():
    lab = np.zeros((H, W), np.uint8)
    lab[100:110, 200:210] = 7  # too small to be named: only the blend changes pixels
    image = _textured()
    out = draw_segmentation(image, SemanticLabels(lab, NAMES), alpha=0.25, background=0, show_legend=False)
    np.testing.assert_array_equal(out, _blend(image, lab, 0.25, 0))  # 0.25 is exact in float32 as well
    y, x = 105, 205
    expected = np.rint(0.75 * image[y, x].astype(np.float64) + 0.25 * palette(8)[7]).astype(np.uint8)
    np.testing.assert_array_equal(out[y, x], expected)
    # Other alphas are computed in float32 (OpenCV): within one level of the exact value.
    out = draw_segmentation(image, SemanticLabels(lab, NAMES), alpha=0.3, background=0, show_legend=False)
    assert np.abs(out.astype(int) - _blend(image, lab, 0.3, 0)).max() <= 1
    np.testing.assert_array_equal(out[300, 300], image[300, 300])  # background untouched

    everything = draw_segmentation(image, SemanticLabels(np.zeros((H, W), np.uint8), NAMES), background=None)
    np.testing.assert_array_equal(everything[-5, -5], np.rint(0.5 * image[-5, -5] + 0.5 * palette(1)[0]))


def test_segmentation_uint16_and_validation():
    names = tuple(f"c{i}" for i in range(300))
    lab = np.full((H, W), 299, np.uint16)
    out = draw_segmentation(_grey(), SemanticLabels(lab, names), alpha=1.0, background=None)
    np.testing.assert_array_equal(out[-1, -1], palette(300)[299])
    with pytest.raises(ValueError, match=r"\(240, 320\)"):
        draw_segmentation(_grey(), SemanticLabels(np.zeros((240, 320), np.uint8), NAMES))
    with pytest.raises(ValueError, match="1.5"):
        draw_segmentation(_grey(), SemanticLabels(np.zeros((H, W), np.uint8), NAMES), alpha=1.5)
    with pytest.raises(ValueError, match="200"):
        draw_segmentation(_grey(), SemanticLabels(np.full((H, W), 200, np.uint8), NAMES[:10]))


def _classes_map(areas: dict[int, int]) -> np.ndarray:
    """A label map holding each class of ``areas`` on that many pixels (row-major runs), the rest class 0."""
    flat = np.zeros(H * W, np.uint8)
    start = 0
    for c, area in areas.items():
        flat[start:start + area] = c
        start += area
    return np.random.default_rng(1).permutation(flat).reshape(H, W)  # scattered: no region gets a name


def test_the_legend_lists_exactly_the_classes_present_largest_first():
    areas = {5: 900, 17: 30000, 3: 1, 120: 4500, 64: 12000, 9: 2, 33: 70}
    labels = SemanticLabels(_classes_map(areas), NAMES)
    key = legend(labels)
    assert {c for c, _ in key.entries} == set(np.unique(labels.labels).tolist()) - {0}  # background is not painted
    assert [c for c, _ in key.entries] == sorted(areas, key=areas.get, reverse=True) and key.more == 0
    assert all(name == NAMES[c] for c, name in key.entries)
    assert {c for c, _ in legend(labels, background=None).entries} == {0, *areas}
    assert legend(SemanticLabels(np.zeros((4, 4), np.uint8), NAMES)).entries == ()

    capped = legend(labels, rows=4)
    assert [c for c, _ in capped.entries] == [17, 64, 120] and capped.more == 4  # 3 rows and "+4 more"
    assert legend(labels, rows=7) == key


def test_the_legend_shows_each_class_colour_in_the_top_left_corner():
    areas = {5: 900, 17: 30000, 120: 4500}
    labels = SemanticLabels(_classes_map(areas), NAMES)
    image = _grey()
    with_key = draw_segmentation(image, labels)
    changed = _changed(with_key, draw_segmentation(image, labels, show_legend=False))
    ys, xs = np.nonzero(changed)
    assert ys.max() < H // 3 and xs.max() < W // 3  # three rows in the corner
    corner = with_key[: ys.max() + 1, : xs.max() + 1].reshape(-1, 3)
    for c in areas:
        assert (corner == palette(len(NAMES))[c]).all(axis=-1).sum() > 20, f"swatch of class {c}"
    many = SemanticLabels(_classes_map({c: 3000 for c in range(1, 100)}), NAMES)
    small = draw_segmentation(_grey(120, 160), SemanticLabels(many.labels[:120, :160].copy(), NAMES))
    assert _changed(small[80:], _grey(40, 160)).mean() > 0.3  # the blend below the capped legend


# --- depth ---------------------------------------------------------------------------------------------------


def _ramp(lo: float = 1.0, hi: float = 5.0) -> np.ndarray:
    return np.tile(np.linspace(lo, hi, W, dtype=np.float32), (H, 1))


def test_depth_near_bright_invalid_black_rgb_order():
    d = _ramp()
    d[0, 0], d[0, 1], d[0, 2], d[0, 3] = np.nan, np.inf, 0.0, -1.0
    out = draw_depth(DepthMap(d))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :4], 0)
    near, far = out[100, 20], out[100, 600]
    assert _luma(near) > _luma(far) + 100
    assert near[0] > near[2]  # INFERNO's near end is yellow in RGB (it would be cyan-ish if BGR leaked through)
    assert far.any()  # the far end is dark but not black: black only means invalid
    lumas = [_luma(out[100, x]) for x in range(20, 600, 40)]
    assert all(a > b for a, b in zip(lumas, lumas[1:]))


def test_depth_range_default_percentiles_and_explicit():
    d = _ramp(1.0, 3.0)
    d[::10, ::10] = 1000.0  # 1% outliers must not squash the scene into one colour
    out = draw_depth(DepthMap(d))
    mid = _luma(out[101, W // 2 + 1])
    assert _luma(out[101, 1]) > mid + 50 and mid > _luma(out[101, W - 2]) + 50

    values = np.array([0.5, 1.0, 2.0, 3.0, 4.0], np.float32)
    d = np.repeat(np.repeat(values[None], 40, 0), W // 5, 1)
    d = np.pad(d, ((0, H - 40), (0, 0)), constant_values=2.0)
    out = draw_depth(DepthMap(d), vmin=1.0, vmax=3.0)
    px = [out[10, W // 5 * i + 10] for i in range(5)]
    np.testing.assert_array_equal(px[0], px[1])  # clipped at vmin
    np.testing.assert_array_equal(px[3], px[4])  # clipped at vmax
    assert _luma(px[1]) > _luma(px[2]) > _luma(px[3])
    with pytest.raises(ValueError, match="vmin=3.0"):
        draw_depth(DepthMap(d), vmin=3.0, vmax=1.0)


_INFERNO = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_INFERNO),
                        cv2.COLOR_BGR2RGB)[0]  # (256, 3) RGB


@pytest.mark.parametrize("kind", ["metric", "relative", "inverse"])
@pytest.mark.parametrize("fixed", [None, (1.5, 4.0)])
def test_the_depth_bar_numbers_are_the_range_the_colours_used(kind, fixed, monkeypatch):
    d = _ramp(1.0, 5.0)
    d[::10, ::10] = 1e4  # 1% outliers: the percentiles must ignore them
    depth = DepthMap(d, "m" if kind == "metric" else "", kind)
    bar = depth_bar(depth, *(fixed or (None, None)))
    values = d[d > 0]
    lo, hi = fixed or np.percentile(values[:: max(1, values.size // 100_000)], (2, 98))
    assert (bar.vmin, bar.vmax) == pytest.approx((lo, hi), rel=1e-6)
    assert bar.chosen == ("fixed" if fixed else "2nd-98th percentile")
    near, far = (bar.vmax, bar.vmin) if kind == "inverse" else (bar.vmin, bar.vmax)  # inverse: larger is nearer
    assert (bar.near, bar.far) == (near, far)

    drawn = []
    monkeypatch.setattr(depth_drawing.cv2, "putText", lambda img, text, *a, **k: drawn.append(text))
    out = draw_depth(depth, *(fixed or (None, None)))
    unit = " m" if kind == "metric" else ""
    assert drawn == [f"near {near:.3g}{unit}", f"far {far:.3g}{unit}", f"{kind} depth ({unit.strip() or 'no unit'})",
                     f"range: {bar.chosen}"] == list(bar.texts)
    # every colour of a row is the one [bar.vmin, bar.vmax] gives its value: near the brightest, far the darkest
    t = np.clip((d[1].astype(np.float64) - bar.vmin) / (bar.vmax - bar.vmin), 0, 1)
    index = np.rint(40 + 215 * (t if kind == "inverse" else 1 - t)).astype(int)
    np.testing.assert_array_equal(out[1], _INFERNO[index])
    ends = (40, 255) if kind == "inverse" else (255, 40)  # the smallest value (left) and the largest (right)
    assert (index[0], index[-1]) == ends  # both lie beyond the range: its ends' colours


def test_depth_bar_chosen_range_and_its_box():
    d = _ramp()
    assert depth_bar(DepthMap(d), vmin=2.0).chosen == "fixed to 98th percentile"
    assert depth_bar(DepthMap(d), vmax=4.0).chosen == "2nd percentile to fixed"
    flat = depth_bar(DepthMap(np.full((H, W), 2.0, np.float32)))
    assert flat.vmin == 2.0 and flat.vmax > 2.0  # a flat wall still gets a usable span
    assert depth_bar(DepthMap(np.zeros((H, W), np.float32))).texts[:2] == ("near 0", "far 1")  # nothing valid
    invalid = DepthMap(np.zeros((H, W), np.float32))  # all black, so only the bar can change
    bar = draw_depth(invalid, vmin=1.0, vmax=3.0)
    ys, xs = np.nonzero(bar.any(axis=-1))
    assert ys.min() > H // 2 and xs.min() > W // 2  # the bottom-right corner
    for other in (draw_depth(invalid, vmin=1.0, vmax=7.0), draw_depth(invalid, vmin=1.5, vmax=3.0),
                  draw_depth(DepthMap(invalid.depth, "m", "metric"), vmin=1.0, vmax=3.0)):
        changed = _changed(other, bar)
        assert changed.any() and not changed[: ys.min()].any()
    narrow = draw_depth(DepthMap(_ramp()[:, :90].copy(), "m", "metric"))  # text shrinks to fit
    assert narrow.shape == (H, 90, 3)


def test_depth_tiny_and_all_invalid():
    assert draw_depth(DepthMap(np.full((3, 3), np.nan, np.float32))).shape == (3, 3, 3)
    out = draw_depth(DepthMap(np.zeros((H, W), np.float32)))
    assert not out[:100, :100].any()


# --- banner, dispatch, composite -----------------------------------------------------------------------------


def test_the_banner_is_a_red_strip_added_above_the_image():
    image = _textured()
    out = add_banner(image, "RANDOM WEIGHTS - output is meaningless")
    np.testing.assert_array_equal(image, _textured())
    strip = out.shape[0] - H
    assert out.shape == (H + strip, W, 3) and 15 < strip < 60
    np.testing.assert_array_equal(out[strip:], image)  # the whole picture, nothing painted over it
    np.testing.assert_array_equal(out[1, -2], [200, 0, 0])
    white = (out[:strip] > 230).all(axis=-1)
    assert white.sum() > 50 and white[:, :3].sum() == 0  # text, with a margin
    long = add_banner(_grey(120, 160), "RANDOM WEIGHTS - output is meaningless")  # shrunk, not cut off
    assert (long[:, -3:] > 230).all(axis=-1).sum() == 0


def test_every_overlay_gets_the_banner_above_and_only_the_asked_for_ones_are_drawn():
    image = _textured()
    results = {"det": _dets([[300, 100, 500, 250]], [2]), "depth": DepthMap(_ramp())}
    notice = "RANDOM WEIGHTS - output is meaningless"
    strip = add_banner(image, notice).shape[0] - H
    drawn = draw_overlays(image, results, heads=["det"], combined=True, notice=notice)
    assert list(drawn.heads) == ["det"]
    np.testing.assert_array_equal(drawn.heads["det"][strip:], draw_detections(image, results["det"]))
    np.testing.assert_array_equal(drawn.combined[strip:], composite(image, results))
    nothing = draw_overlays(image, results)
    assert nothing.combined is None and nothing.heads == {}


def test_the_kind_table_draws_each_result_and_names_an_unknown_type():
    image = _grey()
    det = _dets([[100, 80, 300, 200]], [5])
    np.testing.assert_array_equal(result_kinds.draw(image, det), draw_detections(image, det))
    depth = DepthMap(_ramp()[::2, ::2].copy())  # other size: resized to the image
    assert result_kinds.draw(image, depth).shape == image.shape

    class Mystery:
        pass

    with pytest.raises(TypeError, match=r"Mystery.*result_kinds\.register"):
        result_kinds.draw(image, Mystery())
    with pytest.raises(TypeError, match="needs a ResultKind"):
        result_kinds.register(Mystery)
    with pytest.raises(ValueError, match="built in"):
        result_kinds.register(ResultKind(Mystery, "depth"))  # a built-in task stays the built-in's


@pytest.fixture
def heat_kind(monkeypatch):
    """A plug-in result kind, registered for one test only."""
    monkeypatch.setattr(result_kinds, "BY_TYPE", dict(result_kinds.BY_TYPE))
    monkeypatch.setattr(result_kinds, "BY_TASK", dict(result_kinds.BY_TASK))

    class Heat:
        def __init__(self, value: int) -> None:
            self.value = value

    def draw_heat(image: np.ndarray, result: Heat) -> np.ndarray:
        return np.full_like(image, result.value)

    result_kinds.register(ResultKind(Heat, "heat", draw=draw_heat))
    return Heat


def test_a_registered_kind_is_drawn_as_a_panel_of_the_composite(heat_kind):
    image = _grey()
    np.testing.assert_array_equal(result_kinds.draw(image, heat_kind(7)), np.full_like(image, 7))
    out = composite(image, {"heat": heat_kind(7)})
    assert out.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(out[:H // 2, W:], 7)  # the panel, away from its caption
    np.testing.assert_array_equal(out[:, :W], image)  # nothing overlaid on the camera image
    assert _changed(out[-40:, W:W + 80], np.full((40, 80, 3), 7, np.uint8)).any()  # caption
    assert result_kinds.check_result("heat", heat_kind(1)) is None
    assert "set task: heat" in result_kinds.check_result("embedding", heat_kind(1))


def test_a_registered_kind_with_a_layer_is_painted_over_the_image_in_layer_order(heat_kind, monkeypatch):
    image = _textured()
    det = _dets([[300, 100, 500, 250]], [2])
    layered = ResultKind(heat_kind, "heat", draw=lambda img, r: np.full_like(img, r.value), layer=2)
    result_kinds.register(layered)
    out = composite(image, {"heat": heat_kind(9), "det": det})
    assert out.shape == image.shape  # no panel: it is a layer
    assert (out[: H - 40] == 9).all()  # layer 2 over the boxes (layer 1), whatever the order given
    result_kinds.register(ResultKind(heat_kind, "heat", draw=layered.draw, layer=0))
    out = composite(image, {"heat": heat_kind(9), "det": det})
    assert _changed(out, np.full_like(out, 9))[100:250, 300:500].any()  # now the boxes are on top


def test_composite_layout():
    image = _textured()
    lab = _l_shape()
    det = _dets([[300, 100, 500, 250]], [2])
    seg = SemanticLabels(lab, NAMES)
    depth = DepthMap(_ramp())

    np.testing.assert_array_equal(composite(image, {}), image)
    assert composite(image, {}) is not image

    both = composite(image, {"seg": seg, "det": det})
    assert both.shape == (H, W, 3)
    expected = draw_detections(draw_segmentation(image, seg), det)
    same = ~_changed(both, expected)
    assert same[: H - 40].all()  # only the bottom-left caption differs
    assert not same[H - 40:, :200].all()

    panels = composite(image, {"det": det, "depth": depth, "seg": seg})
    assert panels.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(panels[: H - 40, W:], draw_depth(depth)[: H - 40])

    warned = composite(image, {"depth": depth}, notice="RANDOM WEIGHTS - output is meaningless")
    assert warned.shape[1:] == (2 * W, 3) and warned.shape[0] > H  # the banner adds rows above
    np.testing.assert_array_equal(warned[warned.shape[0] - H:], composite(image, {"depth": depth}))
    np.testing.assert_array_equal(warned[1, 2 * W - 2], [200, 0, 0])  # banner spans the whole composite
    np.testing.assert_array_equal(composite(image, {}, notice="x")[1, -2], [200, 0, 0])


def test_a_detection_label_keeps_off_the_segmentation_s_class_name_in_a_composite():
    # A band of class 7 just above a box: the band's name sits where the box's label would go first.
    lab = np.zeros((H, W), np.uint8)
    lab[30:56, 200:520] = 7
    seg, det = SemanticLabels(lab, NAMES), _dets([[220, 60, 480, 200]], [3], [0.9])
    heads = "seg + det"
    taken = [caption_box((H, W, 3), heads)]
    seg_only = draw_segmentation(_grey(), seg, taken=taken)
    names = [rect for rect in taken[1:] if rect[0] > 150]  # the band's name (the legend is at the left edge)
    assert names, taken
    both = composite(_grey(), {"seg": seg, "det": det})
    for x, y, w, h in names:
        np.testing.assert_array_equal(both[y:y + h, x:x + w], seg_only[y:y + h, x:x + w])  # nothing drawn over it
    spot = place_labels(det, (H, W, 3), taken)[0]
    assert spot is not None and spot[1] >= 60  # the label moved inside the box's top edge


def test_the_depth_bar_covers_little_of_a_small_panel():
    black = draw_depth(DepthMap(np.zeros((240, 320), np.float32), "m", "metric"), vmin=0.5, vmax=12.0)
    ys, xs = np.nonzero(black.any(axis=-1))  # only the bar is drawn on an all-invalid map
    share = (np.ptp(ys) + 1) * (np.ptp(xs) + 1) / (240 * 320)
    assert share <= depth_drawing._BAR_SHARE * 1.2, share  # its text shrinks, down to a readable floor
