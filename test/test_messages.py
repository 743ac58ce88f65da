"""Result -> message conversion against the real ROS 2 schemas, for Humble and Jazzy.

rosbags carries each distro's message definitions and serialises CDR exactly as
ROS does, so every message here is checked field by field against its
definition, written to CDR, read back identical, and converted back to the
result it came from, bit for bit. The rclpy backend is checked in CI against
stand-in classes that apply rclpy's field rules, and against real rclpy
messages wherever ROS is installed.
"""

from __future__ import annotations

import array
import dataclasses
import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from message_readers import msg_to_detections, msg_to_label_info

from dinov3_ros.messages import (
    DISTROS,
    ConversionError,
    DecodeError,
    Level,
    Status,
    bag_messages,
    depth_to_msg,
    detections_to_annotations,
    detections_to_msg,
    diagnostics_to_msg,
    image_to_rgb,
    label_info_to_msg,
    labels_to_msg,
    make_header,
    raw_array,
    rgb_to_msg,
    ros_messages,
)
from dinov3_ros.vision_msgs_defs import VISION_MSGS
from dinov3_toolkit.heads.loader import BUILTIN_DIR
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels

_HEADS = BUILTIN_DIR
DETECTION_NAMES = tuple((_HEADS / "head_detection" / "class_names.txt").read_text().splitlines())
SEGMENTATION_NAMES = tuple((_HEADS / "head_segmentation" / "class_names.txt").read_text().splitlines())
MANY_NAMES = tuple(f"class_{i}" for i in range(300))  # more than 256: labels become uint16
STAMP = (1_700_000_123, 456_789_012)
FRAME = "camera_color_optical_frame"
LITTLE = int(sys.byteorder == "big")  # the is_bigendian our native-order arrays get

# RIHS01 type hashes that Jazzy's own build of vision_msgs 4.1.1 generates (rosidl
# idl__description.c). They cover every field name, type and order of the type and of
# all types it uses, so equal hashes mean our registered definitions are the real ones.
JAZZY_TYPE_HASHES = {
    "vision_msgs/msg/Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "vision_msgs/msg/LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "vision_msgs/msg/VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
}
VISION_MSGS_FIELDS = {
    "vision_msgs/msg/Detection2DArray": ["header", "detections"],
    "vision_msgs/msg/Detection2D": ["header", "results", "bbox", "id"],
    "vision_msgs/msg/ObjectHypothesisWithPose": ["hypothesis", "pose"],
    "vision_msgs/msg/ObjectHypothesis": ["class_id", "score"],
    "vision_msgs/msg/BoundingBox2D": ["center", "size_x", "size_y"],
    "vision_msgs/msg/Pose2D": ["position", "theta"],
    "vision_msgs/msg/Point2D": ["x", "y"],
    "vision_msgs/msg/LabelInfo": ["header", "class_map", "threshold"],
    "vision_msgs/msg/VisionClass": ["class_id", "class_name"],
}


def _rosbags_interfaces():
    return pytest.importorskip("rosbags.interfaces", reason="the conversion tests need rosbags (pip install '.[test]')")


@pytest.fixture(params=DISTROS)
def bag(request):
    _rosbags_interfaces()
    return bag_messages(request.param)


@pytest.fixture
def header(bag):
    return make_header(bag, *STAMP, FRAME)


# ---- results to convert -------------------------------------------------------------------------


def sample_detections(class_names: tuple[str, ...] = DETECTION_NAMES) -> Detections:
    boxes = np.array(
        [
            [0.1, 0.3, 1000.7, 700.9],  # fractional pixels whose float32 width and height would round
            [0.0, 0.0, 1280.0, 720.0],  # the whole 1280x720 image
            [33.3, 44.4, 33.3, 44.4],  # empty: no width, no height
        ],
        np.float32,
    )
    return Detections(
        boxes=boxes,
        scores=np.array([0.9, 0.5, 0.05], np.float32),
        labels=np.array([17, 0, 79], np.int64),
        class_names=class_names,
    )


def sample_labels(class_names: tuple[str, ...]) -> SemanticLabels:
    rng = np.random.default_rng(len(class_names))
    dtype = np.uint8 if len(class_names) <= 256 else np.uint16
    labels = rng.integers(0, len(class_names), (37, 53)).astype(dtype)  # non-square
    labels[0, 0] = len(class_names) - 1
    return SemanticLabels(labels=labels, class_names=class_names)


def sample_depth() -> DepthMap:
    depth = np.random.default_rng(1).random((24, 40), dtype=np.float32) * 10
    depth[0, :5] = [np.nan, np.inf, -0.0, 1e-42, np.finfo(np.float32).max]  # NaN, inf, signed zero, subnormal
    return DepthMap(depth=depth, unit="m")


def sample_rgb() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (17, 46, 3), dtype=np.uint8)[:, ::2]  # a non-contiguous view


# ---- checks against the rosbags schema ----------------------------------------------------------

_INT_RANGES = {t: (np.iinfo(t).min, np.iinfo(t).max) for t in ("int8", "int16", "int32", "int64")} | {
    t: (np.iinfo(t).min, np.iinfo(t).max) for t in ("uint8", "uint16", "uint32", "uint64")
} | {"byte": (0, 255), "char": (0, 255)}


def assert_matches_schema(typestore, msg, where: str = "msg") -> None:
    """Every field of ``msg``'s definition is set, with the Python type rosbags reads back for it."""
    nodetype = _rosbags_interfaces().Nodetype
    _, fields = typestore.fielddefs[msg.__msgtype__]
    for name, (kind, desc) in fields:
        value = getattr(msg, name)
        path = f"{where}.{name}"
        if kind == nodetype.NAME:
            assert getattr(value, "__msgtype__", None) == desc, f"{path}: expected a {desc}, got {value!r}"
            assert_matches_schema(typestore, value, path)
        elif kind == nodetype.BASE:
            _assert_scalar(desc[0], value, path)
        else:  # ARRAY (fixed length) or SEQUENCE
            (item_kind, item_desc), length = desc
            if item_kind == nodetype.NAME:
                assert isinstance(value, list), f"{path}: expected a list of {item_desc}, got {type(value)}"
                for i, item in enumerate(value):
                    assert getattr(item, "__msgtype__", None) == item_desc, f"{path}[{i}] is not a {item_desc}"
                    assert_matches_schema(typestore, item, f"{path}[{i}]")
            else:
                assert isinstance(value, np.ndarray), f"{path}: expected a {item_desc[0]} array, got {type(value)}"
                assert value.dtype == np.dtype(item_desc[0]), f"{path}: dtype {value.dtype}, expected {item_desc[0]}"
                if kind == nodetype.ARRAY:
                    assert value.shape == (length,), f"{path}: shape {value.shape}, expected ({length},)"


def _assert_scalar(base: str, value, path: str) -> None:
    if base == "string":
        assert type(value) is str, f"{path}: expected str, got {type(value)}"
    elif base in ("float32", "float64"):
        assert type(value) is float, f"{path}: expected float, got {type(value)}"
    elif base == "bool":
        assert type(value) is bool, f"{path}: expected bool, got {type(value)}"
    else:
        low, high = _INT_RANGES[base]
        assert type(value) is int and low <= value <= high, f"{path}: expected a {base} int, got {value!r}"


def assert_same(a, b, where: str = "msg") -> None:
    """Identical content: same message types, same Python types, arrays equal byte for byte."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert a.tobytes() == b.tobytes(), f"{where}: array bytes differ"
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "__msgtype__"):
        assert a.__msgtype__ == b.__msgtype__, where
        for field in dataclasses.fields(a):
            assert_same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def cdr_round_trip(bag, msg):
    """Check ``msg`` against its schema, write it to CDR, read it back, and check nothing changed."""
    assert_matches_schema(bag.typestore, msg)
    raw = bag.typestore.serialize_cdr(msg, msg.__msgtype__)
    back = bag.typestore.deserialize_cdr(raw, msg.__msgtype__)
    assert_same(msg, back)
    return back


def assert_header(msg) -> None:
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (*STAMP, FRAME)


# ---- the registered vision_msgs definitions -----------------------------------------------------


@pytest.mark.parametrize("typename", sorted(JAZZY_TYPE_HASHES))
def test_vision_msgs_definitions_hash_like_jazzys_build(bag, typename):
    assert bag.typestore.hash_rihs01(typename) == JAZZY_TYPE_HASHES[typename]


def installed_type_hash(typename: str) -> str:
    """The RIHS01 hash of ``pkg/msg/Name`` as the installed package's build recorded it; skips where there is none."""
    package = typename.split("/")[0]
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed (`make ros` generates it)")
    # <prefix>/lib/pythonX.Y/site-packages/<pkg>/__init__.py -> <prefix>/share/<pkg>/msg/<Name>.json
    path = Path(spec.origin).parents[4] / "share" / f"{typename}.json"
    if not path.is_file():
        pytest.skip(f"{path} not found: type descriptions exist from Jazzy on")
    return {h["type_name"]: h["hash_string"] for h in json.loads(path.read_text())["type_hashes"]}[typename]


@pytest.mark.parametrize("typename", sorted(JAZZY_TYPE_HASHES))
def test_the_vision_msgs_the_node_imports_hash_like_jazzys_build(typename):
    """The vision_msgs that `make test` generates (or a ROS install provides) is the real one, field for field."""
    assert installed_type_hash(typename) == JAZZY_TYPE_HASHES[typename]


def test_vision_msgs_field_lists(bag):
    assert set(VISION_MSGS_FIELDS) <= set(VISION_MSGS)
    for typename, names in VISION_MSGS_FIELDS.items():
        assert [name for name, _ in bag.typestore.fielddefs[typename][1]] == names, typename


def test_unknown_distro_is_named():
    with pytest.raises(ValueError, match="'rolling'.*humble.*jazzy"):
        bag_messages("rolling")


# ---- detections ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["name", "index"])
def test_detections_survive_cdr_and_convert_back(bag, header, mode):
    det = sample_detections()
    back = cdr_round_trip(bag, detections_to_msg(bag, det, header, class_id=mode))

    assert_header(back)
    assert len(back.detections) == 3
    for d in back.detections:
        assert_header(d)
    expected_ids = [det.class_names[i] for i in det.labels] if mode == "name" else ["17", "0", "79"]
    assert [d.results[0].hypothesis.class_id for d in back.detections] == expected_ids
    again = msg_to_detections(back, det.class_names, class_id=mode)
    assert again.boxes.tobytes() == det.boxes.tobytes()  # float32 -> float64 centre/size -> float32 is exact
    assert again.scores.tobytes() == det.scores.tobytes()
    np.testing.assert_array_equal(again.labels, det.labels)
    assert again.class_names == det.class_names


def test_no_detections_is_an_empty_array(bag, header):
    det = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), DETECTION_NAMES)
    back = cdr_round_trip(bag, detections_to_msg(bag, det, header))
    assert back.detections == []
    assert_header(back)
    assert msg_to_detections(back, DETECTION_NAMES).boxes.shape == (0, 4)


def test_box_centre_and_size_in_input_pixels(bag, header):
    det = Detections(
        boxes=np.array([[10, 20, 50, 100], [7, 9, 7, 9]], np.float32),
        scores=np.array([0.75, 0.5], np.float32),
        labels=np.array([1, 2], np.int64),
        class_names=("a", "b", "c"),
    )
    box, point = detections_to_msg(bag, det, header).detections
    assert (box.bbox.center.position.x, box.bbox.center.position.y) == (30.0, 60.0)
    assert (box.bbox.size_x, box.bbox.size_y, box.bbox.center.theta) == (40.0, 80.0, 0.0)
    assert (point.bbox.center.position.x, point.bbox.center.position.y) == (7.0, 9.0)
    assert (point.bbox.size_x, point.bbox.size_y) == (0.0, 0.0)
    assert box.id == ""  # no tracking, so no track id
    (result,) = box.results
    assert (result.hypothesis.class_id, result.hypothesis.score) == ("b", 0.75)
    pose = result.pose.pose
    assert (pose.position.x, pose.position.y, pose.position.z) == (0.0, 0.0, 0.0)
    assert (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w) == (0.0, 0.0, 0.0, 1.0)
    assert result.pose.covariance.tobytes() == np.zeros(36).tobytes()


def test_detection_errors_name_the_problem(bag, header):
    det = sample_detections()
    with pytest.raises(ValueError, match=r"one of \('name', 'index'\), got 'label'"):
        detections_to_msg(bag, det, header, class_id="label")
    few = Detections(det.boxes, det.scores, det.labels, class_names=DETECTION_NAMES[:20])
    with pytest.raises(ConversionError, match=r"20 class names.*\[79\]"):
        detections_to_msg(bag, few, header)

    msg = detections_to_msg(bag, det, header)
    with pytest.raises(ConversionError, match="detection 0 has class_id 'horse', which is no class name of the 2"):
        msg_to_detections(msg, ("person", "car"))
    msg.detections[1].bbox.center.theta = 0.5
    with pytest.raises(ConversionError, match="detection 1 is rotated"):
        msg_to_detections(msg, DETECTION_NAMES)
    msg.detections[0].results.clear()
    with pytest.raises(ConversionError, match="detection 0 has no hypothesis"):
        msg_to_detections(msg, DETECTION_NAMES)


# ---- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_names", "encoding", "dtype"),
    [(SEGMENTATION_NAMES, "mono8", np.uint8), (MANY_NAMES, "mono16", np.uint16)],
    ids=["mono8", "mono16"],
)
def test_label_images_survive_cdr(bag, header, class_names, encoding, dtype):
    labels = sample_labels(class_names)
    back = cdr_round_trip(bag, labels_to_msg(bag, labels, header))
    assert_header(back)
    assert (back.encoding, back.height, back.width, back.is_bigendian) == (encoding, 37, 53, LITTLE)
    assert back.step == 53 * np.dtype(dtype).itemsize
    pixels = raw_array(back)
    assert pixels.dtype == dtype
    np.testing.assert_array_equal(pixels, labels.labels)
    assert pixels.max() == len(class_names) - 1  # 299 in mono16: values above 255 survive


def test_depth_image_survives_cdr_bit_for_bit(bag, header):
    depth = sample_depth()
    back = cdr_round_trip(bag, depth_to_msg(bag, depth, header))
    assert (back.encoding, back.height, back.width, back.step) == ("32FC1", 24, 40, 160)
    pixels = raw_array(back)
    assert pixels.dtype == np.float32 and pixels.tobytes() == depth.depth.tobytes()  # NaN, -0.0, subnormal too


def test_rgb_image_survives_cdr(bag, header):
    rgb = sample_rgb()
    back = cdr_round_trip(bag, rgb_to_msg(bag, rgb, header))
    assert (back.encoding, back.height, back.width, back.step) == ("rgb8", 17, 23, 69)
    np.testing.assert_array_equal(raw_array(back), rgb)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5, 3), np.float32)]
)
def test_rgb_builder_names_what_it_expects(bad):
    with pytest.raises(ConversionError, match=r"\(H, W, 3\) uint8, got"):
        rgb_to_msg(None, bad, None)


def test_image_reader_honours_step_and_byte_order():
    values = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000 + 7  # high bytes differ from low bytes
    padded = np.zeros((3, 4 * 2 + 6), np.uint8)  # each row padded by 6 bytes
    padded[:, :8] = values.astype(">u2").view(np.uint8).reshape(3, 8)
    msg = SimpleNamespace(encoding="mono16", height=3, width=4, step=14, is_bigendian=1, data=padded.tobytes())
    pixels = raw_array(msg)
    assert pixels.dtype == np.uint16 and pixels.dtype.isnative
    np.testing.assert_array_equal(pixels, values)

    rgb = sample_rgb()
    rows = np.zeros((17, 23 * 3 + 1), np.uint8)
    rows[:, :69] = rgb.reshape(17, 69)
    msg = SimpleNamespace(encoding="rgb8", height=17, width=23, step=70, is_bigendian=0, data=rows.tobytes())
    np.testing.assert_array_equal(raw_array(msg), rgb)


def test_image_reader_errors_name_the_problem():
    """One reader for camera frames and our own outputs, so one set of errors (DecodeError kinds)."""
    base = dict(height=2, width=3, is_bigendian=0)
    with pytest.raises(DecodeError, match="unsupported encoding '8UC3'"):
        raw_array(SimpleNamespace(encoding="8UC3", step=9, data=bytes(18), **base))
    with pytest.raises(DecodeError, match="step too small: 'mono16' rows of 3 pixels need step >= 6"):
        raw_array(SimpleNamespace(encoding="mono16", step=5, data=bytes(10), **base))
    with pytest.raises(DecodeError, match="data size mismatch: 'mono8' 3x2 with step 3 needs step\\*height = 6"):
        raw_array(SimpleNamespace(encoding="mono8", step=3, data=bytes(5), **base))
    with pytest.raises(DecodeError, match="unsupported encoding '32FC1'"):  # an output, not a camera frame
        image_to_rgb(SimpleNamespace(encoding="32FC1", step=12, data=bytes(24), **base))


# ---- class names and diagnostics ----------------------------------------------------------------


def test_label_info_survives_cdr(bag, header):
    assert len(SEGMENTATION_NAMES) == 134
    back = cdr_round_trip(bag, label_info_to_msg(bag, SEGMENTATION_NAMES, header, threshold=0.3))
    assert_header(back)
    assert [c.class_id for c in back.class_map] == list(range(134))
    assert back.threshold == float(np.float32(0.3))  # a float32 field: built as subscribers will read it
    assert msg_to_label_info(back) == (SEGMENTATION_NAMES, float(np.float32(0.3)))


def test_label_info_reader_needs_ids_0_to_n(bag, header):
    msg = label_info_to_msg(bag, ("a", "b", "c"), header)
    msg.class_map[1].class_id = 7
    with pytest.raises(ConversionError, match=r"0\.\.2 once each.*\[0, 2, 7\]"):
        msg_to_label_info(msg)


def test_diagnostics_survive_cdr(bag, header):
    statuses = [
        Status("dinov3_node: input", "cuda:0", Level.OK, "30.0 Hz in", {"rate_hz": "30.0", "dropped": "0"}),
        ("dinov3_node: detection", "cuda:0", Level.WARN, "slow", {"latency_ms": "85.1"}),  # a plain tuple works too
    ]
    back = cdr_round_trip(bag, diagnostics_to_msg(bag, header, statuses))
    assert_header(back)
    assert [(s.name, s.hardware_id, s.level, s.message) for s in back.status] == [
        ("dinov3_node: input", "cuda:0", 0, "30.0 Hz in"),
        ("dinov3_node: detection", "cuda:0", 1, "slow"),
    ]
    assert [(kv.key, kv.value) for kv in back.status[0].values] == [("rate_hz", "30.0"), ("dropped", "0")]


def test_diagnostics_errors_name_the_problem(bag, header):
    with pytest.raises(ConversionError, match="'x' has level 7; expected one of \\[0, 1, 2, 3\\]"):
        diagnostics_to_msg(bag, header, [("x", "", 7, "", {})])
    with pytest.raises(ConversionError, match="'x' values must be str -> str.*'rate': 'float'"):
        diagnostics_to_msg(bag, header, [("x", "", Level.OK, "", {"rate": 29.97})])


# ---- the rclpy backend --------------------------------------------------------------------------


def _rclpy_like_modules(typestore) -> dict[str, types.ModuleType]:
    """Stand-ins for ``<pkg>.msg`` modules whose classes check fields as rclpy's generated setters do.

    Stricter in two ways that are our own contract: every field must be given, and
    ``uint8[]`` / ``float64[N]`` fields must take rclpy's fast forms (``array.array("B")``,
    a numpy float64 array) rather than lists it would check element by element.
    """
    nodetype = _rosbags_interfaces().Nodetype
    classes: dict[str, type] = {}

    def check(kind, desc, value) -> bool:
        if kind == nodetype.NAME:
            return isinstance(value, classes[desc])
        if kind == nodetype.BASE:
            base = desc[0]
            if base == "byte":
                return isinstance(value, bytes) and len(value) == 1
            python_type = {"string": str, "float32": float, "float64": float, "bool": bool}.get(base, int)
            in_range = python_type is not int or _INT_RANGES[base][0] <= value <= _INT_RANGES[base][1]
            return isinstance(value, python_type) and in_range
        (item_kind, item_desc), length = desc
        if item_kind == nodetype.NAME:
            return isinstance(value, list) and all(isinstance(v, classes[item_desc]) for v in value)
        if kind == nodetype.SEQUENCE and item_desc[0] == "uint8":
            return isinstance(value, array.array) and value.typecode == "B"
        if kind == nodetype.ARRAY:
            return isinstance(value, np.ndarray) and value.dtype == np.dtype(item_desc[0]) and value.size == length
        return False

    def init(self, **fields):
        expected = [name for name, _ in self._fields]
        assert sorted(fields) == sorted(expected), f"{self._typename}: got fields {sorted(fields)}, expected {expected}"
        for name, (kind, desc) in self._fields:
            value = fields[name]
            assert check(kind, desc, value), f"rclpy would reject {type(value).__name__} for {self._typename}.{name}"
            setattr(self, name, value)

    modules = {}
    for typename, (_, fields) in typestore.fielddefs.items():
        package, kind, name = typename.split("/")
        if kind == "msg":
            classes[typename] = type(name, (), {"__init__": init, "_typename": typename, "_fields": fields})
            module = modules.setdefault(package, types.ModuleType(f"{package}.msg"))
            setattr(module, name, classes[typename])
    return modules


@pytest.fixture
def rclpy_like(monkeypatch):
    _rosbags_interfaces()
    for package, module in _rclpy_like_modules(bag_messages("humble").typestore).items():
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
        monkeypatch.setitem(sys.modules, f"{package}.msg", module)
    return ros_messages()


def _build_everything(M, header) -> dict:
    return {
        "detections": detections_to_msg(M, sample_detections(), header),
        "mono8": labels_to_msg(M, sample_labels(SEGMENTATION_NAMES), header),
        "mono16": labels_to_msg(M, sample_labels(MANY_NAMES), header),
        "depth": depth_to_msg(M, sample_depth(), header),
        "rgb": rgb_to_msg(M, sample_rgb(), header),
        "label_info": label_info_to_msg(M, SEGMENTATION_NAMES, header, threshold=0.3),
        "diagnostics": diagnostics_to_msg(M, header, [("n", "hw", Level.ERROR, "m", {"k": "v"})]),
    }


def _assert_converts_back(msgs: dict) -> None:
    det = sample_detections()
    assert msg_to_detections(msgs["detections"], DETECTION_NAMES).boxes.tobytes() == det.boxes.tobytes()
    np.testing.assert_array_equal(raw_array(msgs["mono8"]), sample_labels(SEGMENTATION_NAMES).labels)
    np.testing.assert_array_equal(raw_array(msgs["mono16"]), sample_labels(MANY_NAMES).labels)
    assert raw_array(msgs["depth"]).tobytes() == sample_depth().depth.tobytes()
    np.testing.assert_array_equal(raw_array(msgs["rgb"]), sample_rgb())
    assert msg_to_label_info(msgs["label_info"])[0] == SEGMENTATION_NAMES


def test_ros_backend_gives_rclpy_the_field_types_it_accepts(rclpy_like):
    header = make_header(rclpy_like, np.int64(STAMP[0]), np.uint32(STAMP[1]), FRAME)  # numpy ints become ints
    msgs = _build_everything(rclpy_like, header)  # the stand-in classes check every field
    _assert_converts_back(msgs)
    assert msgs["diagnostics"].status[0].level == b"\x02"
    assert isinstance(msgs["rgb"].data, array.array) and len(msgs["rgb"].data) == 17 * 23 * 3


def test_ros_backend_with_real_rclpy_messages():
    for package in ("vision_msgs", "sensor_msgs", "diagnostic_msgs"):
        pytest.importorskip(f"{package}.msg", reason=f"ROS 2 {package} is not installed (source a ROS 2 setup)")
    M = ros_messages()
    msgs = _build_everything(M, make_header(M, *STAMP, FRAME))
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy is not installed")
    msgs = {k: serialization.deserialize_message(serialization.serialize_message(m), type(m)) for k, m in msgs.items()}
    for msg in msgs.values():
        assert_header(msg)
    _assert_converts_back(msgs)


def test_ros_backend_gives_rclpy_the_annotation_field_types_it_accepts(rclpy_like):
    header = make_header(rclpy_like, np.int64(STAMP[0]), np.uint32(STAMP[1]), FRAME)
    msg = detections_to_annotations(rclpy_like, sample_detections(), header, (720, 1280))  # stand-ins check fields
    assert len(msg.points) == len(msg.texts) == 3


def test_annotations_with_real_rclpy_messages():
    pytest.importorskip("foxglove_msgs.msg", reason="foxglove_msgs is not installed (`make ros` generates it)")
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy is not installed")
    M = ros_messages()
    msg = detections_to_annotations(M, sample_detections(), make_header(M, *STAMP, FRAME), (720, 1280))
    back = serialization.deserialize_message(serialization.serialize_message(msg), type(msg))
    assert back == msg
    best = back.points[-1]  # drawn last, on top
    x1, y1, x2, y2 = sample_detections().boxes[0].astype(np.float64)
    assert [(p.x, p.y) for p in best.points] == [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    assert (best.timestamp.sec, best.timestamp.nanosec) == STAMP
