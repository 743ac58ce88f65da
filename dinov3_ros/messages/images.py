"""sensor_msgs/Image and CompressedImage, both directions, over one encoding table.

Camera messages -> RGB uint8 (H, W, 3) is the node's one decode path: ``raw_array`` reads the
pixels of an Image exactly as sent (row padding in ``step``, ``is_bigendian``), ``to_rgb`` turns
them into RGB with OpenCV, ``image_to_rgb`` is the two together (optionally reading through
cv_bridge), and ``compressed_to_rgb`` does the same for jpeg/png ``CompressedImage``. Messages are
duck-typed: rclpy messages, rosbags typestore messages and plain objects with the same fields all
work, and ``data`` may be bytes, ``array.array('B')``, a list or a uint8 numpy array.

Results -> Image: ``labels_to_msg`` (mono8/mono16), ``depth_to_msg`` (32FC1), ``flow_to_msg``
(32FC2) and ``rgb_to_msg``
(overlays) write through the same table, in the array's own byte order with ``is_bigendian``
saying which, as cv_bridge does; ``raw_array`` reads them back.

Every decoding problem raises ``DecodeError``; its ``kind`` is a short stable string so the node
can log each kind of problem once instead of once per frame. A jpeg/png payload whose container is
damaged (truncated, a failed CRC: ``dinov3_toolkit.compressed_integrity``) is "corrupt compressed
data" and is never decoded, even where OpenCV would return part of a picture: the frame is skipped.

16-bit images (mono16, 16UC1 and 16-bit png) keep their top byte (``>> 8``): a full-range 16-bit
camera then looks like its 8-bit counterpart. Depth-like 16UC1 data (millimetres) looks dark this
way, which is honest: it is not a colour image.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dinov3_toolkit.compressed_integrity import CorruptImage, check_compressed
from dinov3_toolkit.errors import Dinov3Error
from dinov3_toolkit.results import DepthMap, FlowField, SemanticLabels

from .backend import ConversionError, MessageBackend, copy_header


@dataclass(frozen=True)
class _Layout:
    """How one encoding lays out a pixel, and the OpenCV conversion that makes it RGB."""

    channels: int
    dtype: type[np.generic]  # of one channel: uint8, uint16 or float32
    to_rgb: int | None  # cv2.COLOR_* code; None: no colour conversion (rgb8, 16-bit mono)
    even_width: bool = False  # 4:2:2 chroma is shared by pixel pairs
    camera: bool = True  # a camera frame the node reads; False: an output encoding only (32FC1 depth)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def pixel_bytes(self) -> int:
        return self.channels * self.itemsize


_MONO16 = _Layout(1, np.uint16, None)
# ROS names a Bayer pattern by its first two rows from the top-left; OpenCV's constants name the
# 2x2 block starting at the second row and column, so ROS rggb is OpenCV "BG" (as cv_bridge maps it).
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, np.uint8, None),
    "bgr8": _Layout(3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, np.uint8, cv2.COLOR_GRAY2RGB),
    "mono16": _MONO16,
    "16UC1": _MONO16,
    "yuv422": _Layout(2, np.uint8, cv2.COLOR_YUV2RGB_UYVY, even_width=True),  # ROS yuv422 is UYVY
    "uyvy": _Layout(2, np.uint8, cv2.COLOR_YUV2RGB_UYVY, even_width=True),
    "yuv422_yuy2": _Layout(2, np.uint8, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    "yuyv": _Layout(2, np.uint8, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    "bayer_rggb8": _Layout(1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Layout(1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Layout(1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Layout(1, np.uint8, cv2.COLOR_BayerGB2RGB),
    "32FC1": _Layout(1, np.float32, None, camera=False),
    "32FC2": _Layout(2, np.float32, None, camera=False),  # optical flow: u, v per pixel
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(name for name, layout in _LAYOUTS.items() if layout.camera)
SUPPORTED_COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")

# Aliases some drivers send that sensor_msgs (and so cv_bridge on Humble) does not define.
_NOT_IN_SENSOR_MSGS = frozenset({"uyvy", "yuyv"})
# What cv2.imdecode(IMREAD_UNCHANGED) returns, named as the Image encoding with the same layout.
_DECODED_ENCODINGS = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint16), 1): "mono16",
                      (np.dtype(np.uint8), 3): "bgr8", (np.dtype(np.uint8), 4): "bgra8"}
_HOST_BIG_ENDIAN = sys.byteorder == "big"


class DecodeError(Dinov3Error, ValueError):
    """A camera message that cannot become an RGB image; ``kind`` is stable across frames, for log-once."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _layout(encoding: str, *, camera: bool = True) -> _Layout:
    """The layout of ``encoding``; with ``camera``, only of the encodings a camera frame may have."""
    layout = _LAYOUTS.get(encoding)
    if layout is None or (camera and not layout.camera):
        raise DecodeError(f"unsupported encoding '{encoding}'",
                          f"supported encodings are {', '.join(SUPPORTED_ENCODINGS)}")
    return layout


def _bytes_of(data: Any) -> np.ndarray:
    """``msg.data`` as a flat uint8 array, without copying where the container allows."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise DecodeError("bad data type", f"data must hold uint8 bytes, got a numpy array of {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        values = np.asarray(data)  # checked before the cast: numpy 1.x wraps 300 to 44 silently
        if values.size == 0:
            return np.zeros(0, np.uint8)
        if values.dtype.kind not in "iu" or values.ndim != 1 or values.min() < 0 or values.max() > 255:
            raise DecodeError("bad data type", "data must be a flat sequence of ints in 0..255")
        return values.astype(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    raise DecodeError("bad data type",
                      f"data must be bytes, array.array('B'), a list or a uint8 numpy array, got {type(data).__name__}")


def _check_layout(msg: Any, layout: _Layout, size: int) -> None:
    """The header must describe exactly ``size`` bytes of whole rows, as sensor_msgs/Image requires."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise DecodeError("empty image", f"'{msg.encoding}' image is {width}x{height}; both sides must be > 0")
    if step < width * layout.pixel_bytes:
        raise DecodeError("step too small", f"'{msg.encoding}' rows of {width} pixels need step >= "
                          f"{width * layout.pixel_bytes} bytes, got step {step}")
    if size != step * height:
        raise DecodeError("data size mismatch", f"'{msg.encoding}' {width}x{height} with step {step} needs "
                          f"step*height = {step * height} bytes of data, got {size}")
    if layout.even_width and width % 2:
        raise DecodeError("odd width", f"'{msg.encoding}' shares chroma between pixel pairs, so width must be "
                          f"even, got {width}")


def raw_array(msg: Any) -> np.ndarray:
    """The pixels of an Image as sent: (H, W) for one channel, else (H, W, C); native byte order.

    A view into ``msg.data`` where possible (8-bit data, or wider data already in the host's byte
    order), so treat it as read-only. Row padding (``step``) is skipped, not copied. Reads every
    encoding of the table: camera frames and this package's own outputs (32FC1 depth).
    """
    layout = _layout(msg.encoding, camera=False)
    buf = _bytes_of(msg.data)
    _check_layout(msg, layout, buf.size)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(layout.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    # np.ndarray with explicit strides reads padded rows on any numpy (view() needs contiguity on numpy < 1.23)
    pixels = np.ndarray(shape=(height, width, layout.channels), dtype=dtype, buffer=buf,
                        strides=(step, layout.pixel_bytes, layout.itemsize))
    if not dtype.isnative:
        pixels = pixels.astype(dtype.newbyteorder("="))  # (H, W, C) byte-swapped copy
    return pixels[..., 0] if layout.channels == 1 else pixels


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an array laid out as ``raw_array`` returns it; always a new array."""
    layout = _layout(encoding)
    if pixels.ndim == 3 and layout.channels == 1 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    expected_ndim = 2 if layout.channels == 1 else 3
    if (pixels.ndim != expected_ndim or (expected_ndim == 3 and pixels.shape[2] != layout.channels)
            or pixels.dtype.kind != "u" or pixels.dtype.itemsize != layout.itemsize):
        shape = "(H, W)" if layout.channels == 1 else f"(H, W, {layout.channels})"
        raise DecodeError("array shape mismatch", f"'{encoding}' needs a {shape} {np.dtype(layout.dtype).name} "
                          f"array, got {pixels.shape} {pixels.dtype}")
    if layout.itemsize == 2:
        pixels = (pixels >> 8).astype(np.uint8)  # keep the top byte; see the module docstring
        code = cv2.COLOR_GRAY2RGB
    else:
        code = layout.to_rgb
    if code is None:
        return np.array(pixels, dtype=np.uint8, order="C")  # copy: never hand out a view into the message
    try:
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    except cv2.error as e:
        raise DecodeError("conversion failed", f"OpenCV could not convert '{encoding}' {pixels.shape}: {e}") from e


def _bridge_reads(msg: Any, layout: _Layout) -> bool:
    """Whether cv_bridge's passthrough reads this message correctly; elsewhere ``raw_array`` does it.

    cv_bridge does not know the yuyv/uyvy aliases on Humble, misreads rows padded by a non-whole
    number of pixels (it divides step by the pixel size), converts lists with the pixel dtype, and
    byte-swaps with ``ndarray.newbyteorder``, which numpy 2 removed.
    """
    foreign_order = bool(msg.is_bigendian) != _HOST_BIG_ENDIAN  # cv_bridge swaps with a numpy-1-only call
    return (msg.encoding not in _NOT_IN_SENSOR_MSGS and int(msg.step) % layout.pixel_bytes == 0
            and not isinstance(msg.data, (list, tuple)) and not foreign_order)


def image_to_rgb(msg: Any, *, bridge: Any = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a ``sensor_msgs/Image``; the node's path.

    With a cv_bridge ``CvBridge`` the raw pixels come from its passthrough conversion, except for
    the messages it is known to misread (see ``_bridge_reads``). The header is validated first
    either way, so both paths fail with the same ``DecodeError`` kinds.
    """
    layout = _layout(msg.encoding)
    if bridge is None or not _bridge_reads(msg, layout):
        return to_rgb(raw_array(msg), msg.encoding)
    _check_layout(msg, layout, _bytes_of(msg.data).size)
    try:
        pixels = bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    except (TypeError, ValueError) as e:  # CvBridgeError is a TypeError
        raise DecodeError("cv_bridge failed", f"cv_bridge could not read '{msg.encoding}': {e}") from e
    except Exception:  # e.g. a cv_bridge built for numpy 1 under numpy 2: our own reader is exact too
        return to_rgb(raw_array(msg), msg.encoding)
    return to_rgb(np.asarray(pixels), msg.encoding)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a jpeg or png ``sensor_msgs/CompressedImage``.

    ``format`` is what image_transport writes ("jpeg", "png", "rgb8; jpeg compressed bgr8"); an
    empty one is decoded by content. The payload is a standard jpeg/png whatever the original
    encoding was, so OpenCV's BGR(A)/grey result is all that needs converting. A damaged payload
    is rejected before decoding (see the module docstring).
    """
    fmt = str(msg.format)
    lowered = fmt.lower()
    if "compresseddepth" in lowered or (lowered and not any(n in lowered for n in ("jpeg", "jpg", "png"))):
        raise DecodeError(f"unsupported compressed format '{fmt}'",
                          f"supported formats are {', '.join(SUPPORTED_COMPRESSED_FORMATS)} "
                          "(as image_transport's 'compressed' plugin writes them)")
    buf = _bytes_of(msg.data)
    try:
        check_compressed(buf)
    except CorruptImage as e:
        raise DecodeError("corrupt compressed data", f"'{fmt}' payload of {buf.size} bytes: {e}") from e
    image = None
    if buf.size:
        try:
            image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        except cv2.error as e:
            raise DecodeError("undecodable compressed data", f"'{fmt}' payload of {buf.size} bytes: {e}") from e
    if image is None:
        readable = " or ".join(SUPPORTED_COMPRESSED_FORMATS)
        raise DecodeError("undecodable compressed data",
                          f"'{fmt}' payload of {buf.size} bytes is not a readable {readable}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    encoding = _DECODED_ENCODINGS.get((image.dtype, channels))
    if encoding is None:
        raise DecodeError("undecodable compressed data", f"'{fmt}' decoded to {channels}-channel {image.dtype}; "
                          "expected 8-bit grey/BGR/BGRA or 16-bit grey")
    return to_rgb(image, encoding)


# ---- results -> Image ---------------------------------------------------------------------------


def labels_to_msg(M: MessageBackend, labels: SemanticLabels, header: Any) -> Any:
    """sensor_msgs/Image of class indices: mono8 up to 256 classes, mono16 above."""
    encoding = "mono8" if labels.labels.dtype == np.uint8 else "mono16"  # SemanticLabels allows only these two
    return _image_msg(M, labels.labels, encoding, header)


def depth_to_msg(M: MessageBackend, depth: DepthMap, header: Any) -> Any:
    """sensor_msgs/Image 32FC1; the message has no unit field, so ``depth.unit`` travels elsewhere."""
    return _image_msg(M, depth.depth, "32FC1", header)


def rgb_to_msg(M: MessageBackend, rgb: np.ndarray, header: Any) -> Any:
    """sensor_msgs/Image rgb8, for overlays."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"rgb8 images must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    return _image_msg(M, rgb, "rgb8", header)


def flow_to_msg(M: MessageBackend, flow: FlowField, header: Any) -> Any | None:
    """sensor_msgs/Image 32FC2 (u, v in pixels, from the previous frame), or None when the frame has no flow."""
    return None if flow.flow is None else _image_msg(M, flow.flow, "32FC2", header)


def _image_msg(M: MessageBackend, pixels: np.ndarray, encoding: str, header: Any) -> Any:
    height, width = pixels.shape[:2]
    channels = _LAYOUTS[encoding].channels
    return M.new(
        "sensor_msgs/msg/Image",
        header=copy_header(M, header),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(_is_bigendian(pixels.dtype)),
        step=width * channels * pixels.dtype.itemsize,
        data=M.uint8_sequence(pixels),
    )


def _is_bigendian(dtype: np.dtype) -> bool:
    return dtype.byteorder == ">" or (dtype.byteorder == "=" and _HOST_BIG_ENDIAN)
