"""Fault injection into offline sources: each bad input ends as a SourceError or a skipped frame, named.

``dinov3 run`` reads what a user points it at. A source that cannot be opened at all (nothing
matches, no images, no such camera) is a ``SourceError`` naming what was asked for; a file among
others that cannot be read arrives as a frame with no pixels and an ``error`` naming the file,
and the next file still follows. A few odd but readable files are simply read.

Three bugs were found here and fixed in ``sources``: a file without read permission, an image
OpenCV refuses outright (it raises instead of returning None) and a camera index past a C int
each ended the whole run with a traceback.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinov3_toolkit.offline import sources
from dinov3_toolkit.offline.sources import SourceError, open_source

GOOD = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def _png(rgb: np.ndarray = GOOD) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", GOOD)[1].tobytes()


def _flipped(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0x5A
    return bytes(damaged)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header declares ``width`` x ``height`` pixels (its data holds one row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width)))
            + chunk(b"IEND", b""))


def _file(name: str, data: bytes | str):
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        return path
    return make


def _folder_named(name: str):
    def make(folder: Path) -> Path:
        (folder / name).mkdir()
        return folder / name
    return make


def _broken_link(name: str):
    def make(folder: Path) -> Path:
        (folder / name).symlink_to(folder / "gone.png")
        return folder / name
    return make


# A file among good ones: it is skipped with its path in the frame's error, or read.
SKIPPED = {
    "a zero-byte .jpg": _file("a.jpg", b""),
    "a text file named .png": _file("a.png", "this is no image\n"),
    "a folder named x.jpg": _folder_named("x.jpg"),
    "a broken symlink named .png": _broken_link("a.png"),
    "a png cut in half": _file("a.png", _png()[: len(_png()) // 2]),
    "a png with a damaged byte": _file("a.png", _flipped(_png(), 60)),
    "a jpeg cut in half": _file("a.jpg", _jpeg()[: len(_jpeg()) // 2]),
    "random bytes named .bmp": _file("a.bmp", bytes(np.random.default_rng(1).integers(0, 256, 300, np.uint8))),
}
ACCEPTED = {
    "a png named .jpg": _file("a.jpg", _png()),
    "an upper-case suffix": _file("a.PNG", _png()),
    "bytes after the end of a png": _file("a.png", _png() + bytes(64)),
}
# Reported bugs: these end the run with an exception that is no SourceError and no skipped frame.
CRASHES = {  # where OpenCV raises instead of returning None
    "a png declaring more pixels than OpenCV allows": _file("a.png", _png_claiming(60000, 60000)),
}


def _read_folder(tmp_path: Path, make) -> tuple[Path, list]:
    folder = tmp_path / "images"
    folder.mkdir()
    bad = make(folder)
    (folder / "z_good.png").write_bytes(_png())  # sorted after every bad file: it must still come
    return bad, list(open_source(str(folder)))


@pytest.mark.parametrize("fault", SKIPPED)
def test_an_unreadable_file_is_a_skipped_frame_naming_it_and_the_next_file_follows(tmp_path, fault):
    bad, frames = _read_folder(tmp_path, SKIPPED[fault])
    assert [f.rgb is None for f in frames] == [True, False]
    assert str(bad) in frames[0].error and frames[0].origin == str(bad)
    np.testing.assert_array_equal(frames[1].rgb, GOOD)


@pytest.mark.parametrize("fault", ACCEPTED)
def test_an_odd_but_readable_file_is_read(tmp_path, fault):
    _, frames = _read_folder(tmp_path, ACCEPTED[fault])
    assert [f.error for f in frames] == [None, None]
    np.testing.assert_array_equal(frames[0].rgb, GOOD)


@pytest.mark.parametrize("fault", CRASHES)
def test_a_file_opencv_refuses_is_a_skipped_frame(tmp_path, fault):
    bad, frames = _read_folder(tmp_path, CRASHES[fault])
    assert frames[0].rgb is None and str(bad) in frames[0].error


def test_a_file_that_cannot_be_read_is_a_skipped_frame(tmp_path, monkeypatch):
    """Root reads any file, so the permission error a user would get is injected where the file is read."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png())
    (folder / "z_good.png").write_bytes(_png())
    fromfile = np.fromfile

    def refusing(path, *args, **kwargs):
        if Path(path).name == "a.png":
            raise PermissionError(13, "Permission denied", str(path))
        return fromfile(path, *args, **kwargs)

    monkeypatch.setattr(sources.np, "fromfile", refusing)
    frames = list(open_source(str(folder)))
    assert frames[0].rgb is None and str(folder / "a.png") in frames[0].error and frames[1].rgb is not None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_a_file_without_read_permission_is_a_skipped_frame(tmp_path):
    def unreadable(folder: Path) -> Path:
        path = _file("a.png", _png())(folder)
        path.chmod(0)
        return path

    bad, frames = _read_folder(tmp_path, unreadable)
    assert frames[0].rgb is None and str(bad) in frames[0].error


# A source that cannot be opened at all: (spec under the test's folder, words of the SourceError).
OPEN_ERRORS = {
    "a missing file": (lambda d: str(d / "missing.png"), "missing.png is no file, folder, glob or camera index"),
    "a glob matching nothing": (lambda d: str(d / "*.png"), "no files match"),
    "a glob matching only folders": (lambda d: (d / "x.png").mkdir() or str(d / "*.png"), "no files match"),
    "a folder with no images": (lambda d: (d / "notes.txt").write_text("hi") and str(d), "holds no images"),
    "a folder named x.jpg": (lambda d: (d / "x.jpg").mkdir() or str(d / "x.jpg"), "x.jpg holds no images"),
    "a text file named .mp4": (lambda d: (d / "v.mp4").write_text("no video") and str(d / "v.mp4"),
                               "v.mp4 cannot be opened by OpenCV"),
    "a camera nobody has": (lambda d: "97", "camera 97 cannot be opened"),
}


@pytest.mark.parametrize("fault", OPEN_ERRORS)
def test_a_source_that_cannot_be_opened_is_a_source_error_naming_it(tmp_path, fault):
    spec, words = OPEN_ERRORS[fault]
    with pytest.raises(SourceError, match=".") as error:
        open_source(spec(tmp_path))
    assert words in str(error.value)


def test_a_camera_index_past_any_device_is_a_source_error():
    """OpenCV takes a C int: 2147483648 made it raise its own error instead of ours."""
    with pytest.raises(SourceError, match="camera index 2147483648 is out of range"):
        open_source("2147483648")
