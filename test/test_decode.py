"""Decode: every supported Image encoding and CompressedImage format gives back the RGB pixels it was made from.

Messages are built from a known non-square RGB image, with row padding filled with garbage (so a
reader that ignores ``step`` fails) and big-endian 16-bit data. The expected pixels never come from
OpenCV: lossless encodings must match exactly; yuv is made with the BT.601 formula and bayer by
sampling the ROS colour pattern, see their builders for the tolerances.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from dinov3_ros.messages.images import (
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    DecodeError,
    compressed_to_rgb,
    image_to_rgb,
    raw_array,
    to_rgb,
)

H, W = 6, 10
_rng = np.random.default_rng(4)
RGB = _rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
ALPHA = _rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
GREY = _rng.integers(0, 256, (H, W), dtype=np.uint8)
GREY16 = _rng.integers(0, 65536, (H, W), dtype=np.uint16)
# 4:2:2 shares chroma between horizontal pixel pairs, so each pair gets one colour.
PAIRS = np.repeat(_rng.integers(0, 256, (H, W // 2, 3), dtype=np.uint8), 2, axis=1)
# Bayer samples one colour per pixel; two flat regions keep demosaicing exact away from their edge.
BAYER_LEFT, BAYER_RIGHT = (200, 100, 30), (40, 220, 120)
BAYER_RGB = np.concatenate([np.full((H, 6, 3), BAYER_LEFT, np.uint8), np.full((H, W - 6, 3), BAYER_RIGHT, np.uint8)], 1)
BAYER_EDGE = [5, 6]  # columns whose 3x3 neighbourhood straddles the two regions
PAD_BYTE = 0xEE


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 studio-range Y, Cb, Cr (what camera yuv422 carries), rounded to uint8."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, cb, cr))


def _yuv422_rows(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, 2W) bytes in ``order`` ("UYVY" or "YUYV") for an image whose pixel pairs share a colour."""
    y, u, v = _yuv(rgb)
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u[:, 0::2], "V": v[:, 0::2]}
    names = ["U", "Y0", "V", "Y1"] if order == "UYVY" else ["Y0", "U", "Y1", "V"]
    return np.stack([planes[n] for n in names], axis=-1).reshape(rgb.shape[0], -1)


def _bayer_rows(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W) mosaic: ``pattern`` (e.g. "rggb") names the 2x2 block at the top-left, row by row, as ROS does."""
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return mosaic


@dataclass
class Case:
    """One Image message's payload: ``rows`` (H, W*bytes per pixel) before padding and byte order."""

    id: str
    encoding: str
    rows: np.ndarray
    expected: np.ndarray
    pad: int = 0  # bytes of garbage after each row
    bigendian: bool = False
    atol: int = 0
    ignore_columns: list[int] = field(default_factory=list)

    def payload(self) -> tuple[bytes, int]:
        rows = self.rows
        if rows.dtype == np.uint16:
            rows = rows.astype(">u2" if self.bigendian else "<u2")
        rows = np.ascontiguousarray(rows).view(np.uint8).reshape(H, -1)
        padded = np.concatenate([rows, np.full((H, self.pad), PAD_BYTE, np.uint8)], axis=1)
        return padded.tobytes(), padded.shape[1]


def _grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _cases() -> list[Case]:
    bgr, bgra = RGB[..., ::-1], np.concatenate([RGB[..., ::-1], ALPHA], axis=2)
    rgba = np.concatenate([RGB, ALPHA], axis=2)
    top_byte = _grey3((GREY16 >> 8).astype(np.uint8))
    cases = [
        Case("rgb8-pad2px", "rgb8", RGB.reshape(H, -1), RGB, pad=6),
        Case("rgb8-pad1byte", "rgb8", RGB.reshape(H, -1), RGB, pad=1),
        Case("bgr8", "bgr8", bgr.reshape(H, -1), RGB),
        Case("rgba8-pad1px", "rgba8", rgba.reshape(H, -1), RGB, pad=4),
        Case("bgra8-pad3byte", "bgra8", bgra.reshape(H, -1), RGB, pad=3),
        Case("mono8-pad2", "mono8", GREY, _grey3(GREY), pad=2),
        Case("mono16-le-pad2px", "mono16", GREY16, top_byte, pad=4),
        Case("mono16-be", "mono16", GREY16, top_byte, bigendian=True),
        Case("mono16-be-pad3byte", "mono16", GREY16, top_byte, pad=3, bigendian=True),
        Case("16UC1", "16UC1", GREY16, top_byte),
        Case("16UC1-be-pad2", "16UC1", GREY16, top_byte, pad=2, bigendian=True),
    ]
    # yuv: the test's BT.601 encode rounds Y/Cb/Cr to integers, and OpenCV decodes in fixed point:
    # together at most ~2 levels per channel, so 3 is tight enough to catch swapped U/V or Y/UV order.
    for encoding, order, pad in [("yuv422", "UYVY", 4), ("uyvy", "UYVY", 0),
                                 ("yuv422_yuy2", "YUYV", 0), ("yuyv", "YUYV", 8)]:
        cases.append(Case(f"{encoding}-pad{pad}", encoding, _yuv422_rows(PAIRS, order), PAIRS, pad=pad, atol=3))
    # bayer: bilinear demosaicing of a flat region gives that region's colour exactly; only the
    # two columns next to the regions' edge mix colours.
    for pattern, pad in [("rggb", 2), ("bggr", 0), ("gbrg", 1), ("grbg", 4)]:
        cases.append(Case(f"bayer_{pattern}8-pad{pad}", f"bayer_{pattern}8", _bayer_rows(BAYER_RGB, pattern),
                          BAYER_RGB, pad=pad, ignore_columns=BAYER_EDGE))
    return cases


CASES = _cases()
CONTAINERS = {
    "bytes": bytes,
    "array": lambda b: array.array("B", b),  # what rclpy gives
    "list": list,
    "numpy": lambda b: np.frombuffer(b, np.uint8).copy(),  # what rosbags gives
}


def _message(case: Case, container=bytes) -> SimpleNamespace:
    data, step = case.payload()
    return SimpleNamespace(header=None, height=H, width=W, encoding=case.encoding,
                           is_bigendian=int(case.bigendian), step=step, data=container(data))


def _check(rgb: np.ndarray, case: Case) -> None:
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    keep = [c for c in range(W) if c not in case.ignore_columns]
    diff = np.abs(rgb.astype(int) - case.expected.astype(int))[:, keep]
    assert diff.max() <= case.atol, f"{case.id}: max diff {diff.max()} > {case.atol}"


def test_every_supported_encoding_has_a_case():
    assert {c.encoding for c in CASES} == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("container", CONTAINERS.values(), ids=CONTAINERS.keys())
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_image_to_rgb(case, container):
    _check(image_to_rgb(_message(case, container)), case)


def test_bayer_patterns_are_told_apart():
    """Decoding a mosaic with any other pattern gives other colours, so the pattern table can't be off."""
    mosaic = next(c for c in CASES if c.encoding == "bayer_rggb8")
    for other in ("bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"):
        wrong = image_to_rgb(_message(Case("x", other, mosaic.rows, BAYER_RGB, pad=mosaic.pad)))
        assert np.abs(wrong.astype(int) - BAYER_RGB)[:, :4].max() > 50, other


def test_yuv_orders_are_told_apart():
    uyvy = next(c for c in CASES if c.encoding == "yuv422")
    wrong = image_to_rgb(_message(Case("x", "yuv422_yuy2", uyvy.rows, PAIRS, pad=uyvy.pad)))
    assert np.abs(wrong.astype(int) - PAIRS).max() > 20


def test_raw_array_honours_step_and_byte_order():
    case = next(c for c in CASES if c.id == "mono16-be-pad3byte")
    pixels = raw_array(_message(case))
    assert pixels.shape == (H, W) and pixels.dtype == np.uint16 and pixels.dtype.isnative
    np.testing.assert_array_equal(pixels, GREY16)
    rgb8 = next(c for c in CASES if c.id == "rgb8-pad1byte")
    np.testing.assert_array_equal(raw_array(_message(rgb8)), RGB)


def test_raw_array_is_a_view_and_the_rgb_result_is_not():
    """No copy on the way in; the image handed on owns its memory, so nobody writes into a message."""
    msg = _message(Case("rgb8", "rgb8", RGB.reshape(H, -1), RGB), CONTAINERS["numpy"])  # unpadded: a view could pass
    assert np.shares_memory(raw_array(msg), msg.data)
    rgb = image_to_rgb(msg)
    assert not np.shares_memory(rgb, msg.data) and rgb.flags.writeable


# -- real message classes ---------------------------------------------------------------------------------------


@pytest.fixture(params=["ROS2_HUMBLE", "ROS2_JAZZY"])
def typestore(request):
    typesys = pytest.importorskip("rosbags.typesys", reason="rosbags provides the real sensor_msgs classes")
    return typesys.get_typestore(getattr(typesys.Stores, request.param))


def _header(typestore) -> Any:
    time = typestore.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2)
    return typestore.types["std_msgs/msg/Header"](stamp=time, frame_id="camera")


def _cdr_round_trip(typestore, msg, msgtype: str):
    """As a message comes out of a bag: data is then a numpy view into the serialised buffer."""
    return typestore.deserialize_cdr(typestore.serialize_cdr(msg, msgtype), msgtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rosbags_image(typestore, case):
    data, step = case.payload()
    msgtype = "sensor_msgs/msg/Image"
    msg = typestore.types[msgtype](header=_header(typestore), height=H, width=W, encoding=case.encoding,
                                   is_bigendian=int(case.bigendian), step=step, data=np.frombuffer(data, np.uint8))
    _check(image_to_rgb(msg), case)
    _check(image_to_rgb(_cdr_round_trip(typestore, msg, msgtype)), case)


def test_rosbags_compressed_image(typestore):
    msgtype = "sensor_msgs/msg/CompressedImage"
    data = np.frombuffer(_encode(".png", RGB[..., ::-1]), np.uint8)
    msg = typestore.types[msgtype](header=_header(typestore), format="png", data=data)
    np.testing.assert_array_equal(compressed_to_rgb(msg), RGB)
    np.testing.assert_array_equal(compressed_to_rgb(_cdr_round_trip(typestore, msg, msgtype)), RGB)


# -- the cv_bridge path -----------------------------------------------------------------------------------------


class SpyBridge:
    """Counts passthrough reads; delegates to a real CvBridge, or reads like one when ``inner`` is None."""

    def __init__(self, inner=None):
        self.inner, self.calls = inner, 0

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        assert desired_encoding == "passthrough"
        self.calls += 1
        return raw_array(msg).copy() if self.inner is None else self.inner.imgmsg_to_cv2(msg, desired_encoding)


# cv_bridge is bypassed where it is known to misread: aliases it doesn't know, padding that isn't
# whole pixels, big-endian 16-bit data (numpy 2 removed the call it uses) and list data.
BRIDGE_READS = {"rgb8-pad2px": True, "rgb8-pad1byte": False, "rgba8-pad1px": True, "bgra8-pad3byte": False,
                "mono16-le-pad2px": True, "mono16-be": False, "yuv422-pad4": True, "yuyv-pad8": False,
                "uyvy-pad0": False, "yuv422_yuy2-pad0": True, "bayer_gbrg8-pad1": True}


@pytest.mark.parametrize("case_id", BRIDGE_READS)
def test_bridge_is_used_where_it_reads_correctly(case_id):
    case = next(c for c in CASES if c.id == case_id)
    spy = SpyBridge()
    _check(image_to_rgb(_message(case, CONTAINERS["array"]), bridge=spy), case)
    assert spy.calls == int(BRIDGE_READS[case_id])
    spy_list = SpyBridge()
    image_to_rgb(_message(case, list), bridge=spy_list)
    assert spy_list.calls == 0


def test_bridge_failure_is_a_decode_error():
    class Broken:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            raise TypeError("Unrecognized image encoding")

    with pytest.raises(DecodeError) as info:
        image_to_rgb(_message(CASES[0]), bridge=Broken())
    assert info.value.kind == "cv_bridge failed"


def test_bridge_path_validates_before_calling_the_bridge():
    msg = _message(CASES[0])
    msg.data = msg.data[:-1]
    spy = SpyBridge()
    with pytest.raises(DecodeError) as info:
        image_to_rgb(msg, bridge=spy)
    assert info.value.kind == "data size mismatch" and spy.calls == 0


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_image_to_rgb_with_cv_bridge(case):
    """The node's own path, wherever cv_bridge is installed."""
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is only installed in a ROS 2 environment")
    spy = SpyBridge(cv_bridge.CvBridge())
    msg = _message(case, CONTAINERS["array"])  # rclpy messages carry array.array('B')
    _check(image_to_rgb(msg, bridge=spy), case)
    if case.id in BRIDGE_READS:
        assert spy.calls == int(BRIDGE_READS[case.id])


# -- CompressedImage --------------------------------------------------------------------------------------------


def _encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


def _compressed(fmt: str, data) -> SimpleNamespace:
    return SimpleNamespace(header=None, format=fmt, data=data)


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", ""])
@pytest.mark.parametrize("container", CONTAINERS.values(), ids=CONTAINERS.keys())
def test_png_is_exact(fmt, container):
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(fmt, container(_encode(".png", RGB[..., ::-1])))), RGB)


def test_png_alpha_grey_and_16bit():
    bgra = np.concatenate([RGB[..., ::-1], ALPHA], axis=2)
    np.testing.assert_array_equal(compressed_to_rgb(_compressed("png", _encode(".png", bgra))), RGB)
    np.testing.assert_array_equal(compressed_to_rgb(_compressed("mono8; png compressed mono8",
                                                                _encode(".png", GREY))), _grey3(GREY))
    np.testing.assert_array_equal(compressed_to_rgb(_compressed("mono16; png compressed mono16",
                                                                _encode(".png", GREY16))),
                                  _grey3((GREY16 >> 8).astype(np.uint8)))


def _smooth(h: int = 32, w: int = 48) -> np.ndarray:
    """Gradients: jpeg keeps them within a few levels, unlike noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), 255 - xx * 255 // (w - 1)], -1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_within_tolerance(fmt):
    """Lossy, so compare within 8 levels (quality 95 on smooth gradients); a channel swap would be off by ~250."""
    rgb = _smooth()
    out = compressed_to_rgb(_compressed(fmt, _encode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 8


def test_grey_jpeg():
    grey = _smooth()[..., 0]
    out = compressed_to_rgb(_compressed("mono8; jpeg compressed mono8", _encode(".jpg", grey)))
    assert np.abs(out.astype(int) - _grey3(grey)).max() <= 8


# -- errors -----------------------------------------------------------------------------------------------------


def _raises(kind: str, fn, *args) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        fn(*args)
    assert info.value.kind == kind and isinstance(info.value, ValueError)
    return info.value


def _bad(**fields) -> SimpleNamespace:
    msg = _message(CASES[0])  # rgb8, step 36
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def test_unknown_encoding_names_it_and_the_supported_ones():
    error = _raises("unsupported encoding 'xyz'", image_to_rgb, _bad(encoding="xyz"))
    assert "xyz" in str(error) and "rgb8" in str(error) and "bayer_grbg8" in str(error)


@pytest.mark.parametrize(("fields", "kind"), [
    ({"data": bytes(36 * H - 1)}, "data size mismatch"),
    ({"data": bytes(36 * H + 36)}, "data size mismatch"),
    ({"step": 29}, "step too small"),
    ({"width": 0}, "empty image"),
    ({"height": 0, "data": b""}, "empty image"),
    ({"data": "not bytes"}, "bad data type"),
    ({"data": np.zeros(36 * H, np.float32)}, "bad data type"),
    ({"data": [300] * (36 * H)}, "bad data type"),
], ids=["short", "long", "step", "width0", "height0", "str", "float-array", "list>255"])
def test_malformed_image(fields, kind):
    error = _raises(kind, image_to_rgb, _bad(**fields))
    assert "rgb8" in str(error) or kind == "bad data type"


def test_odd_width_yuv():
    msg = SimpleNamespace(height=2, width=3, encoding="yuv422", is_bigendian=0, step=6, data=bytes(12))
    _raises("odd width", image_to_rgb, msg)


def test_to_rgb_checks_the_array_against_the_encoding():
    _raises("array shape mismatch", to_rgb, RGB, "mono8")
    _raises("array shape mismatch", to_rgb, GREY, "mono16")
    _raises("array shape mismatch", to_rgb, RGB[..., :2], "rgb8")
    np.testing.assert_array_equal(to_rgb(GREY[..., None], "mono8"), _grey3(GREY))  # (H, W, 1) is fine


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"text, no picture"], ids=["empty", "zeros", "text"])
def test_undecodable_compressed(data):
    error = _raises("undecodable compressed data", compressed_to_rgb, _compressed("png", data))
    assert "png" in str(error)


def test_truncated_compressed_is_corrupt_not_decoded():
    """Checked before decoding (dinov3_toolkit.compressed_integrity; more in test_compressed_integrity.py)."""
    error = _raises("corrupt compressed data", compressed_to_rgb, _compressed("png", _encode(".png", RGB)[:40]))
    assert "png" in str(error) and str(error).endswith("truncated")


@pytest.mark.parametrize("fmt", ["h264", "16UC1; compressedDepth png"])
def test_unsupported_compressed_format(fmt):
    error = _raises(f"unsupported compressed format '{fmt}'", compressed_to_rgb,
                    _compressed(fmt, _encode(".png", RGB)))
    assert all(name in str(error) for name in SUPPORTED_COMPRESSED_FORMATS)
