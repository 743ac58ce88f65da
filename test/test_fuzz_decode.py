"""Fuzzing the decode path: any Image or CompressedImage gives RGB of its size or a DecodeError, nothing else.

A camera driver, a bag or a rogue publisher can put anything in a message's fields. Whatever
they hold (encodings known or not, sizes and steps that disagree, either byte order, every data
container ROS or rosbags uses and some they do not), ``image_to_rgb`` and ``raw_array`` either
return pixels of the size the header declares or raise a ``DecodeError`` with a ``kind``, the
node's log-once key. Results written as Images (labels, depth, flow, overlays) read back bit for
bit, through CDR too. Random or damaged bytes as a CompressedImage are RGB or a DecodeError.
"""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dinov3_ros.messages import (
    SUPPORTED_ENCODINGS,
    DecodeError,
    bag_messages,
    compressed_to_rgb,
    depth_to_msg,
    flow_to_msg,
    image_to_rgb,
    labels_to_msg,
    make_header,
    raw_array,
    rgb_to_msg,
)
from dinov3_toolkit.results import DepthMap, FlowField, SemanticLabels

# Bytes per pixel of each encoding, written out here rather than read from the module under test.
CAMERA = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "16UC1": 2, "yuv422": 2, "uyvy": 2,
          "yuv422_yuy2": 2, "yuyv": 2, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1}
OUTPUTS = {"32FC1": 4, "32FC2": 8}  # this package's own outputs: raw_array reads them, image_to_rgb refuses them
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
            "32FC2": 2}  # the others have one channel
UNKNOWN = ["", "RGB8", "rgb16", "8UC3", "bgr8 ", "jpeg", "16SC1", "bayer_rggb16", "64FC1"]
PAIRED = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv"}  # 4:2:2: width must be even
M = bag_messages("jazzy")
HEADER = make_header(M, 12, 34, "camera")

# What a message's data can be: the containers rclpy, rosbags and plain Python give, and some nobody should.
CONTAINERS = {
    "bytes": bytes, "bytearray": bytearray, "memoryview": memoryview, "array": lambda b: array.array("B", b),
    "list": list, "tuple": tuple, "numpy": lambda b: np.frombuffer(b, np.uint8).copy(),
    "numpy-2d": lambda b: np.frombuffer(b, np.uint8).reshape(1, -1),
    "numpy-readonly": lambda b: np.frombuffer(b, np.uint8),
}
WRONG_CONTAINERS = {
    "numpy-uint16": lambda b: np.frombuffer(b[: len(b) // 2 * 2], np.uint16), "str": lambda b: b.decode("latin-1"),
    "none": lambda b: None, "floats": lambda b: [float(x) for x in b], "ints-over-255": lambda b: [x + 256 for x in b],
    "negative-ints": lambda b: [-1 - x for x in b], "nested-list": lambda b: [list(b)],
}


def check_decode_error(error: DecodeError) -> None:
    """A DecodeError the node can log once per kind: a non-empty kind that starts its message."""
    assert isinstance(error.kind, str) and error.kind and str(error).startswith(error.kind)


@st.composite
def well_formed(draw, encodings=tuple(CAMERA)) -> tuple[SimpleNamespace, bytes]:
    """A message whose header describes its data exactly, with random row padding, byte order and container."""
    encoding = draw(st.sampled_from(encodings))
    pixel = {**CAMERA, **OUTPUTS}[encoding]
    height = draw(st.integers(1, 9))
    width = draw(st.integers(1, 6)) * (2 if encoding in PAIRED else 1)
    step = width * pixel + draw(st.integers(0, 5))
    data = draw(st.binary(min_size=step * height, max_size=step * height))
    container = draw(st.sampled_from(sorted(CONTAINERS)))
    msg = SimpleNamespace(header=HEADER, height=height, width=width, encoding=encoding, step=step,
                          is_bigendian=draw(st.sampled_from([0, 1])), data=CONTAINERS[container](data))
    return msg, data


@st.composite
def anything(draw) -> SimpleNamespace:
    """A message whose fields need not agree: any encoding, size, step, byte order, data length and container."""
    encoding = draw(st.sampled_from([*CAMERA, *OUTPUTS, *UNKNOWN]))
    pixel = {**CAMERA, **OUTPUTS}.get(encoding, 3)
    side = st.one_of(st.integers(1, 8), st.integers(-3, 0), st.sampled_from([2**31 - 1, 2**32 + 1, 2**63]))
    height, width = draw(side), draw(side)
    step = draw(st.one_of(st.integers(-2, 3).map(lambda pad: width * pixel + pad), st.integers(-5, 80),
                          st.sampled_from([2**31, 2**64])))
    exact = step * height if 0 <= step * height <= 2048 else 0
    size = draw(st.one_of(st.just(exact), st.integers(0, 300), st.sampled_from([max(exact - 1, 0), exact + 1])))
    data = draw(st.binary(min_size=size, max_size=size))
    containers = {**CONTAINERS, **WRONG_CONTAINERS}
    container = draw(st.sampled_from(sorted(containers)))
    return SimpleNamespace(header=HEADER, height=height, width=width, encoding=encoding, step=step,
                           is_bigendian=draw(st.sampled_from([0, 1, 2, True, False])), data=containers[container](data))


def test_every_encoding_is_fuzzed():
    assert set(CAMERA) == set(SUPPORTED_ENCODINGS)


@examples(300)
@given(msg=anything())
def test_any_image_message_is_rgb_of_its_declared_size_or_a_decode_error(msg):
    try:
        rgb = image_to_rgb(msg)
    except DecodeError as e:
        check_decode_error(e)
    else:
        assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    try:
        pixels = raw_array(msg)
    except DecodeError as e:
        check_decode_error(e)
    else:
        channels = CHANNELS.get(msg.encoding, 1)
        assert pixels.shape == ((msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels))
        assert pixels.dtype.isnative


@examples(200)
@given(case=well_formed())
def test_a_well_formed_camera_message_always_decodes(case):
    msg, _ = case
    rgb = image_to_rgb(msg)
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8


@examples(200)
@given(case=well_formed(encodings=(*CAMERA, *OUTPUTS)))
def test_raw_array_reads_exactly_the_bytes_of_each_row_in_the_declared_byte_order(case):
    msg, data = case
    pixel = {**CAMERA, **OUTPUTS}[msg.encoding]
    channels = CHANNELS.get(msg.encoding, 1)
    item = pixel // channels
    rows = np.frombuffer(data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * pixel]  # padding dropped
    # compared as unsigned integers of the pixel's width: bits, not values, so NaN payloads must survive too
    sent = rows.copy().view(f"{'>' if msg.is_bigendian else '<'}u{item}").astype(f"=u{item}")
    pixels = raw_array(msg)
    assert pixels.dtype.isnative and pixels.dtype.itemsize == item
    assert pixels.dtype.kind == ("f" if msg.encoding in OUTPUTS else "u")
    np.testing.assert_array_equal(pixels.reshape(msg.height, msg.width, -1).view(f"u{item}"),
                                  sent.reshape(msg.height, msg.width, -1))


def _strided(draw, array_: np.ndarray) -> np.ndarray:
    """The array itself, or a view of every other row and column of a bigger one (not contiguous)."""
    if not draw(st.booleans()):
        return array_
    bigger = np.repeat(np.repeat(array_, 2, axis=0), 2, axis=1)
    return bigger[::2, ::2]


def _read_back(msg) -> np.ndarray:
    """``msg`` written to CDR and read back, then its pixels, as a subscriber gets them."""
    typestore = M.typestore
    again = typestore.deserialize_cdr(typestore.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert (again.header.stamp.sec, again.header.stamp.nanosec, again.header.frame_id) == (12, 34, "camera")
    return raw_array(again)


sides = st.tuples(st.integers(1, 12), st.integers(1, 12))


@examples(60)
@given(shape=sides, classes=st.sampled_from([1, 2, 256, 257, 65536]), data=st.data())
def test_labels_round_trip_through_a_message(shape, classes, data):
    dtype = np.uint8 if classes <= 256 else np.uint16
    labels = data.draw(hnp.arrays(dtype, shape, elements=st.integers(0, classes - 1)))
    labels = _strided(data.draw, labels)
    names = tuple(f"c{i}" for i in range(classes))
    back = _read_back(labels_to_msg(M, SemanticLabels(labels, names), HEADER))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)


floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@examples(60)
@given(shape=sides, data=st.data())
def test_depth_and_flow_round_trip_bit_for_bit(shape, data):
    depth = _strided(data.draw, data.draw(hnp.arrays(np.float32, shape, elements=floats)))
    back = _read_back(depth_to_msg(M, DepthMap(depth, "m"), HEADER))
    np.testing.assert_array_equal(back.view(np.uint32), np.ascontiguousarray(depth).view(np.uint32))
    flow = _strided(data.draw, data.draw(hnp.arrays(np.float32, (*shape, 2), elements=floats)))
    back = _read_back(flow_to_msg(M, FlowField(flow), HEADER))
    np.testing.assert_array_equal(back.view(np.uint32), np.ascontiguousarray(flow).view(np.uint32))
    assert flow_to_msg(M, FlowField(None, "first frame"), HEADER) is None


@examples(60)
@given(shape=sides, data=st.data())
def test_rgb_round_trips_and_decodes_to_itself(shape, data):
    rgb = _strided(data.draw, data.draw(hnp.arrays(np.uint8, (*shape, 3))))
    msg = rgb_to_msg(M, rgb, HEADER)
    np.testing.assert_array_equal(_read_back(msg), rgb)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


FORMATS = ["jpeg", "png", "", "PNG", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8", "h264",
           "16UC1; compressedDepth png", "jpg"]


@examples(200)
@given(fmt=st.one_of(st.sampled_from(FORMATS), st.text(max_size=12)),
       data=st.one_of(st.binary(max_size=300), st.binary(max_size=40).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
                      st.binary(max_size=40).map(lambda b: b"\xff\xd8\xff" + b)),
       container=st.sampled_from(sorted(CONTAINERS)))
def test_random_bytes_as_a_compressed_image_are_rgb_or_a_decode_error(fmt, data, container):
    try:
        rgb = compressed_to_rgb(SimpleNamespace(header=HEADER, format=fmt, data=CONTAINERS[container](data)))
    except DecodeError as e:
        check_decode_error(e)
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and min(rgb.shape[:2]) >= 1


@st.composite
def encoded(draw) -> tuple[np.ndarray, bytes, str]:
    """A random picture (grey, BGR or BGRA; 8 or 16 bits) written as png or jpeg by OpenCV, and the RGB it shows."""
    shape = draw(sides)
    layout = draw(st.sampled_from(["grey", "bgr", "bgra", "grey16"]))
    fmt = "png" if layout in ("bgra", "grey16") else draw(st.sampled_from(["png", "jpeg"]))
    dtype = np.uint16 if layout == "grey16" else np.uint8
    channels = {"grey": (), "grey16": (), "bgr": (3,), "bgra": (4,)}[layout]
    picture = draw(hnp.arrays(dtype, (*shape, *channels)))
    ok, buf = cv2.imencode(f".{fmt}", picture)
    assert ok
    grey = (picture >> 8).astype(np.uint8) if layout == "grey16" else picture
    expected = np.repeat(grey[..., None], 3, axis=2) if not channels else picture[..., 2::-1]
    return expected, buf.tobytes(), fmt


@examples(80)
@given(case=encoded())
def test_a_png_decodes_exactly_and_a_jpeg_to_its_size(case):
    expected, data, fmt = case
    rgb = compressed_to_rgb(SimpleNamespace(header=HEADER, format=fmt, data=data))
    assert rgb.shape == expected.shape and rgb.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(rgb, expected)


fraction = st.floats(0, 1, exclude_max=True)


@examples(150)
@given(case=encoded(), cut=fraction, flips=st.lists(st.tuples(fraction, st.integers(1, 255)), max_size=3))
def test_a_truncated_or_damaged_compressed_image_is_rgb_or_a_decode_error(case, cut, flips):
    _, data, fmt = case
    damaged = bytearray(data[: int(len(data) * cut)] if not flips else data)
    for where, mask in flips:
        damaged[int(len(damaged) * where)] ^= mask
    try:
        rgb = compressed_to_rgb(SimpleNamespace(header=HEADER, format=fmt, data=bytes(damaged)))
    except DecodeError as e:
        check_decode_error(e)
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@pytest.mark.parametrize("container", sorted(WRONG_CONTAINERS))
def test_data_of_the_wrong_kind_is_a_bad_data_type_error(container):
    msg = SimpleNamespace(header=HEADER, height=2, width=2, encoding="mono8", step=2, is_bigendian=0,
                          data=WRONG_CONTAINERS[container](bytes(range(1, 5))))
    with pytest.raises(DecodeError) as error:
        image_to_rgb(msg)
    assert error.value.kind == "bad data type"
