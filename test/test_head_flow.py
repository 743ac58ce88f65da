"""The optical-flow head: the reference vectors, the engine's streams, and a learnt shift recovered.

LiteFlowHead has no published weights; `../shared/vectors/flow.pt` holds seeded random ones and the
original class's outputs (flow head spec §8).
"""

from __future__ import annotations

import copy
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from jsonschema import Draft202012Validator

from dinov3_ros import messages
from dinov3_ros.messages import raw_array
from dinov3_ros.topics import frame_messages
from dinov3_toolkit import result_kinds
from dinov3_toolkit.drawing import flow_to_rgb
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.heads import FlowField, FlowTargets
from dinov3_toolkit.templates.head_flow.loss import FlowL1
from dinov3_toolkit.templates.head_flow.model import (
    LiteFlowHead,
    local_correlation,
    to_original_pixels,
)
from dinov3_toolkit.offline.records import SCHEMA_PATH, RunOutput
from dinov3_toolkit.offline.sources import SourceFrame
from dinov3_toolkit.overlays import FrameOverlays

from conftest import load_vector, search_weights_only_in
from tolerances import perturb_one_element_, rounding_atol

SMALL = {"in_channels": 384, "proj_channels": 32, "radius": 2, "fusion_channels": 32, "fusion_layers": 1,
         "convex_up": 16, "refinement_layers": 1}


@pytest.fixture(scope="module")
def vectors():
    return load_vector("flow")


@pytest.fixture(scope="module")
def reference(vectors) -> LiteFlowHead:
    config = {k: v for k, v in vectors["config"].items() if k != "out_size"}
    head = LiteFlowHead(**config).eval()
    head.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in vectors["state_dict_fp16"].items()})
    return head


def test_the_layout_is_the_published_one(reference, vectors):
    state = reference.state_dict()
    assert list(state) == list(vectors["state_dict_fp16"])  # names and order: a published file loads strictly
    assert len(state) == 135
    assert sum(p.numel() for p in reference.parameters()) == 3_567_839


# Layers on the longest path to the refined low-res flow: proj; fuse_in's depthwise, pointwise and two SE
# convs; 3 trunk blocks of 6; the flow head's 3; refine's 2 + 2 x 6 + 1. Its longest dot product is
# fuse_in's pointwise conv over [f1, f2, |f1 - f2|, correlation] = 3 x 256 + 81 channels. The convex
# upsampler adds a 9-term mix, and its mask head a 3x3 conv over 320 channels.
COARSE_REDUCTION, COARSE_DEPTH = 3 * 256 + 81, 41
OUT_REDUCTION, OUT_DEPTH = 320 * 3 * 3, COARSE_DEPTH + 1


@torch.no_grad()
def _assert_reproduces_the_reference(head: LiteFlowHead, vectors) -> None:
    want = vectors["caseC_corr"]  # 16-channel dot products of unit vectors
    torch.testing.assert_close(local_correlation(vectors["caseC_x"], vectors["caseC_y"], 4), want, rtol=0,
                               atol=rounding_atol(want, reduction=16))
    flow, _ = head.coarse(vectors["feat1"], vectors["feat2"])  # (previous, current)
    want = vectors["flow_lowres_refined_A"]
    torch.testing.assert_close(flow, want, rtol=0,
                               atol=rounding_atol(want, reduction=COARSE_REDUCTION, depth=COARSE_DEPTH))
    want = vectors["out"]
    torch.testing.assert_close(head([vectors["feat2"]], [vectors["feat1"]]), want, rtol=0,
                               atol=rounding_atol(want, reduction=OUT_REDUCTION, depth=OUT_DEPTH))
    out_b = head([vectors["caseB_feat2"]], [vectors["caseB_feat1"]])  # 128 x 128, to a 100 x 150 frame
    want = vectors["caseB_out"]  # scaled and resampled bilinearly: two more layers
    torch.testing.assert_close(to_original_pixels(out_b, tuple(vectors["caseB_out_size"])), want, rtol=0,
                               atol=rounding_atol(want, reduction=OUT_REDUCTION, depth=OUT_DEPTH + 2))


@pytest.mark.reference
def test_the_reference_vectors_are_reproduced(reference, vectors):
    _assert_reproduces_the_reference(reference, vectors)


@pytest.mark.reference
# Only the last layers: with these random weights the trunk washes its input out. The stored output
# moves by 7e-7 (rounding, 7 u * max) when the previous frame's maps are zeroed, the frames swapped, or
# proj1 changed by 1% of its norm, so no tolerance can see a bug before the flow head in these vectors.
@pytest.mark.parametrize(("name", "bug"), [
    ("refine.1.net.5.pw.weight", perturb_one_element_),  # the trunk's last pointwise conv in refine
    ("flow_head.1.weight", perturb_one_element_),
    ("refine.2.weight", perturb_one_element_),
    ("convex_upsampler.mask_head.2.weight", perturb_one_element_),
    ("refine.2.weight", lambda w: w.copy_(w.flip(0))),  # u and v swapped
    ("flow_head.1.bias", torch.Tensor.zero_),  # a missing bias
])
def test_reference_comparison_catches_a_one_weight_bug(reference, vectors, name, bug):
    head = copy.deepcopy(reference)
    with torch.no_grad():
        bug(head.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_reproduces_the_reference(head, vectors)


def test_the_colour_wheel_is_the_middlebury_one(vectors):
    flow = vectors["caseD_flow"].numpy()
    np.testing.assert_array_equal(flow_to_rgb(flow), vectors["caseD_img_rgb_default"].numpy())
    np.testing.assert_array_equal(flow_to_rgb(flow, min_motion=3)[..., ::-1], vectors["caseD_img_bgr_min3"].numpy())


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, tmp_path_factory.mktemp("no-weights"))
        return Engine.create(backbone="vits16", device="cpu", size=128, heads=["flow", "depth"], random_weights=True)


def textured(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    noise = np.random.default_rng(seed).random((h // 8, w // 8, 3)).astype(np.float32)
    return (cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def test_a_stream_gives_flow_from_its_second_frame_and_says_why_not_before(engine):
    first = engine(textured(), stream="cam", stamp_ns=10**9)
    assert first.results["flow"].flow is None and "first frame of stream 'cam'" in first.results["flow"].reason
    assert first.results["depth"].depth.shape == (96, 128)  # the other heads run as usual
    second = engine(textured(1), stream="cam", stamp_ns=10**9 + 10**8)
    assert second.results["flow"].flow.shape == (96, 128, 2) and not second.errors
    other = engine(textured(), stream="cam2", stamp_ns=10**9 + 10**8)  # streams are kept apart
    assert other.results["flow"].flow is None
    back = engine(textured(), stream="cam", stamp_ns=10**9)
    assert back.results["flow"].flow is None and "time went back 0.100 s" in back.results["flow"].reason
    assert engine(textured(), stream="cam", stamp_ns=10**9 + 10**7).results["flow"].flow is not None
    gap = engine(textured(), stream="cam", stamp_ns=5 * 10**9)
    assert "a gap of 3.990 s" in gap.results["flow"].reason
    engine.forget_streams()
    assert engine(textured(), stream="cam", stamp_ns=5 * 10**9 + 1).results["flow"].flow is None


def test_flow_is_recorded_drawn_and_published_as_32fc2(engine, tmp_path):
    engine.forget_streams()
    frames = [engine(textured(i), stream="s", stamp_ns=i * 10**8) for i in range(2)]
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    with RunOutput(tmp_path, overlays="none") as output:
        for i, frame in enumerate(frames):
            output.write(SourceFrame(i, f"f{i}", f"f{i}.png", i * 10**8, textured(i)), frame, None)
    records = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    for record in records:
        validator.validate(record)
    assert records[0]["heads"]["flow"]["file"] is None and "first frame" in records[0]["heads"]["flow"]["reason"]
    saved = np.load(tmp_path / records[1]["heads"]["flow"]["file"])
    np.testing.assert_array_equal(saved, frames[1].results["flow"].flow)

    for frame in frames:  # a panel either way: the flow with its legend, or why there is none
        assert result_kinds.draw(textured(), frame.results["flow"]).shape == (96, 128, 3)

    M = messages.bag_messages("jazzy")
    header = messages.make_header(M, 3, 4, "cam")
    first = frame_messages(M, header, frames[0], FrameOverlays(), wanted=lambda topic: True)
    assert "flow/flow" not in first  # nothing to publish on the first frame
    msg = frame_messages(M, header, frames[1], FrameOverlays(), wanted=lambda topic: True)["flow/flow"]
    assert msg.encoding == "32FC2" and (msg.header.stamp.sec, msg.header.frame_id) == (3, "cam")
    np.testing.assert_array_equal(raw_array(msg), frames[1].results["flow"].flow)


def test_a_trained_head_recovers_a_known_shift(engine):
    """Overfit one pair: a textured frame and the same frame moved by (3, -2) pixels."""
    shift = (3.0, -2.0)  # (u, v): right 3, up 2
    before = textured(7, 120, 160)[12:108, 16:144]  # 96 x 128
    after = textured(7, 120, 160)[14:110, 13:141]  # content moved right by 3 and up by 2
    maps = [engine.extractor(image).maps for image in (before, after)]
    torch.manual_seed(0)
    head = LiteFlowHead(**SMALL)
    loss = FlowL1(head)
    target = FlowTargets(np.broadcast_to(np.array(shift, np.float32), (96, 128, 2)).copy())
    encoded = loss.encode(target, (96, 128), (128, 128), tuple(maps[0][0].shape[-2:]))
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    features = [maps[1][0].clone()], [maps[0][0].clone()]  # (current, previous); out of inference mode
    for _ in range(150):
        value = loss(head(*features), [encoded])["loss"]
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    def end_point_error(model: LiteFlowHead) -> float:
        engine.heads["flow"].model = model.eval()
        engine.forget_streams()
        engine(before, stream="pair", stamp_ns=0)
        flow = engine(after, stream="pair", stamp_ns=10**8).results["flow"].flow
        return float(np.hypot(flow[..., 0] - shift[0], flow[..., 1] - shift[1]).mean())

    trained = end_point_error(head)
    torch.manual_seed(1)
    untrained = end_point_error(LiteFlowHead(**SMALL))
    print(f"mean end-point error: trained {trained:.3f} px, untrained {untrained:.3f} px")
    assert trained <= 1.0 < untrained


def test_the_flow_loss_counts_known_pixels_in_output_grid_pixels():
    head = LiteFlowHead(**{**SMALL, "convex_up": 4})
    flow = np.full((8, 12, 2), np.nan, np.float32)
    flow[:4] = (6.0, -3.0)  # the top half known: 6 px right, 3 up in the 12 x 8 original
    encoded = FlowL1(head).encode(FlowTargets(flow), (8, 12), (32, 32), (2, 3))  # output grid 8 x 12
    assert encoded.shape == (3, 8, 12)
    assert encoded[2, :3].all() and not encoded[2, 5:].any()
    torch.testing.assert_close(encoded[:2, 0, 0], torch.tensor([6.0, -3.0]))
    perfect = encoded[None, :2].clone()
    assert FlowL1(head)(perfect, [encoded])["loss"] == 0
    assert FlowL1(head)(perfect + 1, [encoded])["loss"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="FlowL1: outputs must be"):
        FlowL1(head)(perfect[:, :1], [encoded])


def test_a_flow_result_without_flow_must_say_why():
    with pytest.raises(ValueError, match="needs the reason"):
        FlowField(None)
    with pytest.raises(ValueError, match=r"\(H, W, 2\) float32"):
        FlowField(np.zeros((4, 4, 3), np.float32))


def test_unstamped_and_repeated_stamps_still_pair_and_a_new_frame_size_starts_anew(engine):
    engine.forget_streams()
    for _ in range(2):  # a driver that stamps nothing sends 0
        last = engine(textured(), stream="raw", stamp_ns=0)
    assert last.results["flow"].flow is not None
    assert engine(textured(), stream="raw", stamp_ns=0).results["flow"].flow is not None  # the same stamp again
    resized = engine(textured(h=64, w=128), stream="raw", stamp_ns=0).results["flow"]
    assert resized.flow is None and "the frame size changed" in resized.reason  # stretch hides it from the maps


def test_a_frame_in_flight_during_forget_streams_is_not_kept(engine):
    engine.forget_streams()
    original = engine._previous

    def forgotten_meanwhile(*args):  # the node deactivating while the worker runs this frame
        engine.forget_streams()
        return original(*args)

    engine._previous = forgotten_meanwhile
    try:
        engine(textured(), stream="cam", stamp_ns=1)
    finally:
        engine._previous = original
    assert engine(textured(), stream="cam", stamp_ns=2).results["flow"].flow is None  # nothing was kept


def test_a_temporal_heads_failure_on_a_first_frame_is_that_heads_alone(engine, monkeypatch):
    engine.forget_streams()
    monkeypatch.setattr(engine.heads["flow"].model, "first_result", lambda reason: 1 / 0)
    frame = engine(textured(), stream="x", stamp_ns=1)
    assert "ZeroDivisionError" in str(frame.errors["flow"]) and "depth" in frame.results


def test_records_of_a_flow_with_non_finite_values_stay_json():
    flow = np.full((4, 4, 2), np.nan, np.float32)
    flow[0, 0] = (3.0, 4.0)
    assert result_kinds.record(FlowField(flow), "flow/a.npy") == {
        "type": "flow", "file": "flow/a.npy", "reason": None, "mean_px": 5.0, "max_px": 5.0}
    assert result_kinds.record(FlowField(np.full((2, 2, 2), np.inf, np.float32)), None)["max_px"] is None


def test_a_stream_gap_must_be_positive_and_a_temporal_head_must_say_what_a_first_frame_gives(tmp_path):
    from dinov3_toolkit.errors import ConfigError
    from dinov3_toolkit.heads import HeadError, load_manifest
    from dinov3_toolkit.heads.loader import TEMPLATES_DIR, import_head_class

    with pytest.raises(ConfigError, match=r"stream_gap_s must be a finite number in \[0.001, 3600\] s, got nan"):
        Engine.create(backbone="vits16", device="cpu", size=32, heads=["flow"], random_weights=True,
                      stream_gap_s=float("nan"))
    folder = tmp_path / "head_myflow"
    shutil.copytree(TEMPLATES_DIR / "head_flow", folder)
    model = folder / "model.py"
    model.write_text(model.read_text().replace("def first_result(", "def _unused("))
    with pytest.raises(HeadError, match="is temporal but defines no first_result"):
        import_head_class(load_manifest(folder))
