"""Damaged jpeg/png data is found before decoding and skipped: still files, CompressedImage messages, bags."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from bag_fixtures import COMPRESSED, InputFrame, M, write_bag

from dinov3_ros import messages
from dinov3_ros.cli import main
from dinov3_ros.messages import images
from dinov3_ros.messages.images import DecodeError, compressed_to_rgb
from dinov3_toolkit.compressed_integrity import CorruptImage, check_compressed
from dinov3_toolkit.offline.sources import open_source, read_rgb

_rng = np.random.default_rng(7)
NOISE = _rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # noise: many 0xFF bytes inside JPEG image data
_yy, _xx = np.mgrid[0:40, 0:56]
SMOOTH = np.stack([_xx * 4, _yy * 6, 255 - _xx * 4], -1).astype(np.uint8)  # jpeg keeps it within a few levels

JPEG_OPTIONS = {"baseline": [], "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                "restarts": [cv2.IMWRITE_JPEG_RST_INTERVAL, 2], "optimized": [cv2.IMWRITE_JPEG_OPTIMIZE, 1]}
# Every channel layout OpenCV writes: grey, BGR, BGRA (png only), 16-bit grey and colour (png only).
PNG_PICTURES = {"grey": NOISE[..., 0], "bgr": NOISE, "bgra": np.concatenate([NOISE, NOISE[..., :1]], 2),
                "grey16": NOISE[..., 0].astype(np.uint16) * 257, "bgr16": NOISE.astype(np.uint16) * 257}


def encode(ext: str, image: np.ndarray, options: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, options or [])
    assert ok
    return buf.tobytes()


def problem(data: bytes) -> str | None:
    """What ``check_compressed`` says is wrong with ``data``; None when it passes."""
    try:
        check_compressed(np.frombuffer(data, np.uint8))
    except CorruptImage as e:
        return str(e)
    return None


def message(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(header=None, format=fmt, data=data)


# ---- whole files pass, and decode as before ----------------------------------------------------------------------


@pytest.mark.parametrize("options", JPEG_OPTIONS.values(), ids=JPEG_OPTIONS.keys())
@pytest.mark.parametrize("picture", ["grey", "bgr"])
def test_whole_jpegs_pass_and_decode(options, picture):
    image = SMOOTH[..., 0] if picture == "grey" else SMOOTH
    data = encode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95, *options])
    assert problem(data) is None
    assert problem(encode(".jpg", NOISE, options)) is None  # noise: 0xFF 0x00 stuffing all through the data
    rgb = compressed_to_rgb(message(data))
    expected = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    assert np.abs(rgb.astype(int) - expected).max() <= 8


@pytest.mark.parametrize("picture", PNG_PICTURES.values(), ids=PNG_PICTURES.keys())
def test_whole_pngs_pass_and_decode_exactly(picture, tmp_path):
    data = encode(".png", picture)
    assert problem(data) is None
    path = tmp_path / "whole.png"
    path.write_bytes(data)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(read_rgb(path), expected)
    if picture.dtype == np.uint8 or picture.ndim == 2:  # compressed_to_rgb reads no 16-bit colour png
        assert compressed_to_rgb(message(data, "png")).shape == (*picture.shape[:2], 3)


def test_the_bundled_sample_photos_pass():
    from dinov3_ros.cli import sample_images

    for path in sample_images():
        assert problem(path.read_bytes()) is None, path


def test_other_data_is_left_to_the_decoder():
    for data in (b"", b"\xff\xd8", b"\x89PNG", b"BM" + bytes(60), encode(".bmp", NOISE)):
        assert problem(data) is None


# ---- bytes after the end: accepted ---------------------------------------------------------------------------


@pytest.mark.parametrize("tail", [bytes(4096), b"garbage \xff\xd8\xff\xe0 and a marker"], ids=["zeros", "garbage"])
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_bytes_after_the_end_are_accepted_and_the_picture_is_unchanged(ext, tail):
    """Drivers pad frames to a fixed buffer size; phones append a preview: decoders stop at the end marker."""
    data = encode(ext, NOISE)
    assert problem(data + tail) is None
    np.testing.assert_array_equal(compressed_to_rgb(message(data + tail, ext[1:])), compressed_to_rgb(message(data)))


# ---- truncated and corrupt data -----------------------------------------------------------------------------


@pytest.mark.parametrize("options", JPEG_OPTIONS.values(), ids=JPEG_OPTIONS.keys())
def test_a_jpeg_cut_anywhere_is_truncated(options):
    data = encode(".jpg", NOISE, options)
    for cut in range(3, len(data) - 1, 7):
        assert problem(data[:cut]) is not None, cut
        assert problem(data[:cut] + bytes(256)) is not None, cut  # cut, then padded to a fixed buffer size
    assert problem(data[:-2]) == "JPEG ends before its end-of-image marker: truncated"
    assert problem(data[: len(data) // 2]) == "JPEG ends before its end-of-image marker: truncated"
    assert problem(data[:5]).endswith(": truncated")  # inside the first segment's length


def test_a_jpeg_cut_and_followed_by_the_next_frame_is_corrupt():
    """A driver that lost the end of one frame and went on with the next: two start markers in one payload."""
    data = encode(".jpg", NOISE)
    spliced = data[: len(data) // 2] + data
    assert "unexpected SOI marker" in problem(spliced) and problem(spliced).endswith(": corrupt")


def test_a_jpeg_whose_segment_length_is_broken_is_corrupt():
    data = bytearray(encode(".jpg", NOISE))
    assert data[2:4] == b"\xff\xe0"  # the APP0 (JFIF) segment, 16 bytes long
    data[4:6] = b"\x00\x01"  # a length below the 2 bytes of the length field itself
    assert problem(bytes(data)) == "JPEG APP0 segment at byte 2 declares 1 bytes (at least 2): corrupt"
    data[4:6] = b"\x00\x12"  # two bytes too long: the next segment starts inside the quantisation table's
    assert "no marker at byte 22" in problem(bytes(data))


def test_a_png_with_a_flipped_byte_fails_its_crc():
    data = bytearray(encode(".png", NOISE))
    data[len(data) // 2] ^= 0x01
    assert problem(bytes(data)) == "PNG IDAT chunk at byte 33 fails its CRC check: corrupt"


def test_a_png_cut_anywhere_is_truncated():
    data = encode(".png", NOISE)
    for cut in range(8, len(data), 97):
        assert problem(data[:cut]).endswith(": truncated"), cut
    assert problem(data[:-12]) == "PNG ends before its IEND chunk: truncated"
    assert problem(data[:45]) == "PNG ends inside its IDAT chunk at byte 33: truncated"


def test_a_png_whose_chunks_are_out_of_order_or_unreadable_is_corrupt():
    data = encode(".png", NOISE)
    text = b"tEXtk\x00v"
    chunk = len(text[4:]).to_bytes(4, "big") + text + zlib.crc32(text).to_bytes(4, "big")
    assert problem(data[:8] + chunk + data[8:]) == "PNG starts with a tEXt chunk instead of IHDR: corrupt"
    assert "no chunk at byte 33" in problem(data[:33] + b"\x00\x00\x00\x04\x00\x01\x02\x03" + data[41:])


# ---- both decode paths skip it ------------------------------------------------------------------------------


def test_compressed_to_rgb_rejects_damage_as_corrupt_compressed_data():
    data = encode(".jpg", NOISE)
    with pytest.raises(DecodeError) as info:
        compressed_to_rgb(message(data[: len(data) // 2], "rgb8; jpeg compressed bgr8"))
    assert info.value.kind == "corrupt compressed data"
    assert str(info.value) == (f"corrupt compressed data: 'rgb8; jpeg compressed bgr8' payload of {len(data) // 2} "
                               "bytes: JPEG ends before its end-of-image marker: truncated")
    flipped = bytearray(encode(".png", NOISE))
    flipped[-20] ^= 0x80
    with pytest.raises(DecodeError, match="CRC") as info:
        compressed_to_rgb(message(bytes(flipped), "png"))
    assert info.value.kind == "corrupt compressed data"


def test_a_damaged_payload_never_reaches_the_decoder(monkeypatch):
    """OpenCV 4's libjpeg decodes a truncated JPEG into a half-grey picture, warning only on stderr."""
    calls = []

    def half_grey(buf, flags):
        calls.append(buf.size)
        return np.full((40, 56, 3), 128, np.uint8)

    monkeypatch.setattr(images.cv2, "imdecode", half_grey)
    data = encode(".jpg", NOISE)
    with pytest.raises(DecodeError, match="truncated"):
        compressed_to_rgb(message(data[:-100]))
    assert calls == []
    compressed_to_rgb(message(data))
    assert calls == [len(data)]


def test_read_rgb_names_the_file_and_what_is_wrong(tmp_path):
    data = encode(".jpg", NOISE)
    (tmp_path / "cut.jpg").write_bytes(data[:-50])
    with pytest.raises(ValueError) as info:
        read_rgb(tmp_path / "cut.jpg")
    assert str(info.value) == (f"cannot use image {tmp_path / 'cut.jpg'}: "
                               "JPEG ends before its end-of-image marker: truncated")


def test_a_damaged_still_file_arrives_as_a_skipped_frame_and_the_next_follows(tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(".jpg", NOISE)[:-50])
    flipped = bytearray(encode(".png", NOISE))
    flipped[100] ^= 0x04
    (tmp_path / "b.png").write_bytes(bytes(flipped))
    (tmp_path / "c.png").write_bytes(encode(".png", NOISE))
    frames = list(open_source(str(tmp_path)))
    assert [f.rgb is None for f in frames] == [True, True, False]
    assert "a.jpg" in frames[0].error and frames[0].error.endswith("truncated")
    assert "b.png" in frames[1].error and frames[1].error.endswith("fails its CRC check: corrupt")


def jpeg_frame(index: int, data: bytes) -> InputFrame:
    msg = M.new(COMPRESSED, header=messages.make_header(M, 1, index, "cam"), format="jpeg",
                data=np.frombuffer(data, np.uint8))
    return InputFrame("/camera/image_raw/compressed", COMPRESSED, 10**9 + index, 10**9 + index, "cam", NOISE,
                      bytes(M.typestore.serialize_cdr(msg, COMPRESSED)))


def test_dinov3_bag_skips_a_truncated_jpeg_frame_with_the_reason_and_exits_1(tmp_path, capsys, no_weights):
    data = encode(".jpg", NOISE)
    frames = [jpeg_frame(0, data), jpeg_frame(1, data[:-100]), jpeg_frame(2, data)]
    source = write_bag(tmp_path / "in", "mcap", frames)
    code = main(["bag", str(source), "--out", str(tmp_path / "out"), "--quiet", "--random-weights", "--heads",
                 "depth", "--backbone", "vits16", "--device", "cpu", "--size", "32"])
    out = capsys.readouterr().out
    assert code == 1
    reason = (f"1 unreadable frame(s) skipped, first: {source}:/camera/image_raw/compressed#1: corrupt compressed "
              f"data: 'jpeg' payload of {len(data) - 100} bytes: JPEG ends before its end-of-image marker: truncated")
    assert reason in out.splitlines()
    assert f"2 frame(s) in bag {(tmp_path / 'out').resolve()}" in out

