"""Where offline frames come from: image files (a file, a folder or a glob), a video file or a camera.

``open_source(spec)`` picks the kind from the text a user typed and returns an
iterable of ``SourceFrame`` (RGB uint8, a name for output files, a stamp). A
file that cannot be read does not end the run: it arrives as a frame with
``error`` set and no pixels, so the caller can report it and go on. A jpeg/png
file whose data is damaged (``compressed_integrity``) is such a file, even where
OpenCV would decode part of it. A video that ends before the frame count its
file declares says so in ``shortfall`` once it has been read to its end.
"""

from __future__ import annotations

import glob
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..compressed_integrity import CorruptImage, check_compressed
from ..errors import Dinov3Error

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_FRAME_ID = "camera"
_MAX_CAMERA_INDEX = 9999  # /dev/video<N>


class SourceError(Dinov3Error, ValueError):
    """A source that cannot be opened at all (no such file, no image in a folder, no camera)."""


@dataclass
class SourceFrame:
    """One input frame. ``rgb`` is None exactly when ``error`` says why it could not be read."""

    index: int  # 0, 1, ... in source order, also for frames that failed
    name: str  # unique within the source; output files are named after it
    origin: str  # the file, or "video.mp4#12" / "camera 0#12", for the JSON record
    stamp_ns: int  # when the frame was taken (images: run start + index / rate)
    rgb: np.ndarray | None
    error: str | None = None
    frame_id: str = DEFAULT_FRAME_ID


class ImageFiles:
    """Still images, in sorted order; each is one frame, stamped ``rate`` frames per second apart."""

    shortfall: str | None = None  # never set: every file arrives as a frame, an unreadable one with its error

    def __init__(self, paths: list[Path], rate: float = 10.0) -> None:
        self.paths = paths
        self.fps = rate
        self.names = _unique_names(paths)
        self.total = len(paths)

    def __iter__(self) -> Iterator[SourceFrame]:
        start = time.time_ns()
        for index, (path, name) in enumerate(zip(self.paths, self.names)):
            stamp = start + round(index * 1e9 / self.fps)
            try:
                rgb, error = read_rgb(path), None
            except ValueError as e:
                rgb, error = None, str(e)
            yield SourceFrame(index, name, str(path), stamp, rgb, error)

    def close(self) -> None:
        pass


class VideoFrames:
    """A video file or a camera, read with OpenCV; video frames keep their time in the file.

    OpenCV skips frames it cannot decode and stops at the first it cannot read past, so a
    truncated or damaged file gives fewer frames than it declares. When that happens,
    ``shortfall`` says so with both counts (and it is logged as a warning). A camera declares
    no count. Where a container does not store its count (mkv, webm) OpenCV estimates it
    from duration x frame rate, which is exact for constant-rate files.
    """

    def __init__(self, capture: cv2.VideoCapture, label: str, *, camera: bool) -> None:
        self.capture = capture
        self.label = label
        self.kind = "camera" if camera else "video"
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else 30.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.total = None if camera or count <= 0 else count  # frames, when known (for the progress bar)
        self.shortfall: str | None = None  # set when the video ended before ``total`` frames

    def __iter__(self) -> Iterator[SourceFrame]:
        start = time.time_ns()
        stem = Path(self.label).stem if self.kind == "video" else self.label.replace(" ", "")
        index = 0
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                if self.total is not None and index < self.total:
                    self.shortfall = (f"video {self.label} ended after {index} of {self.total} declared "
                                      "frames: the file is truncated or damaged")
                    log.warning("%s", self.shortfall)
                return
            if self.kind == "camera":
                stamp = time.time_ns()
            else:
                stamp = start + round(self.capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB)
            yield SourceFrame(index, f"{stem}_{index:06d}", f"{self.label}#{index}", stamp, rgb)
            index += 1

    def close(self) -> None:
        self.capture.release()


def open_source(spec: str, *, rate: float = 10.0) -> ImageFiles | VideoFrames:
    """What ``spec`` names: a camera index (``0``), a video file, an image file, a folder or a glob.

    An existing file or folder wins over a camera index (a folder may be called ``2024``).
    """
    if re.fullmatch(r"[0-9]+", spec) and not Path(spec).exists():
        if int(spec) > _MAX_CAMERA_INDEX:  # OpenCV takes a C int, and no machine has that many cameras
            raise SourceError(f"camera index {spec} is out of range (0..{_MAX_CAMERA_INDEX}), and no file {spec} "
                              "exists")
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            raise SourceError(f"camera {spec} cannot be opened (is it connected, and is it /dev/video{spec}?)")
        return VideoFrames(capture, f"camera {spec}", camera=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"folder {path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        return ImageFiles(paths, rate)
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            capture = cv2.VideoCapture(str(path))
            if not capture.isOpened():
                raise SourceError(f"video {path} cannot be opened by OpenCV (unknown codec or not a video)")
            return VideoFrames(capture, str(path), camera=False)
        return ImageFiles([path], rate)
    if not glob.has_magic(spec):
        raise SourceError(f"{spec} is no file, folder, glob or camera index")
    matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not matches:
        raise SourceError(f"no files match {spec}")
    return ImageFiles(matches, rate)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), whatever its channels and depth; a ``ValueError`` naming the file if
    it cannot be used (missing, unreadable, damaged jpeg/png, or an image OpenCV refuses, e.g. one too large)."""
    try:
        data = np.fromfile(path, np.uint8) if Path(path).is_file() else None
    except OSError as e:  # no read permission, an I/O error: this file is skipped, the run goes on
        raise ValueError(f"cannot read image {path}: {e.strerror or e}") from e
    if data is not None:
        try:
            check_compressed(data)
        except CorruptImage as e:
            raise ValueError(f"cannot use image {path}: {e}") from e
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    except cv2.error as e:  # OpenCV raises for what it refuses outright (a header claiming 60000x60000 pixels)
        raise ValueError(f"cannot decode image {path}: OpenCV refused it ({e.err or e})") from e
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems, with ``_2``, ``_3``... added where two files share one (a glob over several folders)."""
    names: dict[str, None] = {}  # insertion-ordered, with set-speed lookups
    for path in paths:
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}_{n}"
        names[name] = None
    return list(names)
