"""What ``dinov3 run`` leaves on disk: a JSON record per frame, label PNGs, depth arrays and overlays.

Layout of the output folder::

    frames.jsonl            one JSON record per frame, one per line (schema: frame_record.schema.json)
    overlays/<name>.jpg     the overlay of each image (image sources)
    overlay.mp4             the overlay video (video and camera sources)
    labels/<name>_<head>.png  class index per pixel, 8- or 16-bit PNG, lossless
    depth/<name>_<head>.npy   float32 (H, W) depth, ``numpy.load`` reads it
    flow/<name>_<head>.npy    float32 (H, W, 2) optical flow (u, v) in pixels, from the previous frame

Every record names what ran on random weights (``random_weights``): a record copied
away from its run still says when its results are meaningless.

JSON Lines because a long run can be stopped at any moment: every line already
written is a complete record, and the file is valid up to the last one. Paths in
records are relative to the output folder, so the folder can be moved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .. import result_kinds
from ..engine import FrameResult
from ..errors import ConfigError, OutputError, OutputTaken
from .runner import FrameWriter
from .sources import SourceFrame

SCHEMA_PATH = Path(__file__).resolve().parent / "frame_record.schema.json"
RECORDS_FILE = "frames.jsonl"
OVERLAY_VIDEO = "overlay.mp4"


def check_run_folder(folder: str | Path, overwrite: bool) -> None:
    """Raise if ``folder`` holds an earlier run and ``overwrite`` is not set (checked before a model loads)."""
    if (Path(folder) / RECORDS_FILE).exists() and not overwrite:
        raise OutputTaken(
            f"{folder} holds an earlier run ({RECORDS_FILE}); pass --overwrite to replace it, or choose another --out"
        )


def frame_record(item: SourceFrame, frame: FrameResult, files: dict[str, str], overlay: dict | None, *,
                 random_weights: Sequence[str] = ()) -> dict:
    """The JSON record of one frame; ``files`` maps head names to the label/depth file written for them,
    ``random_weights`` lists what ran on random weights (``Engine.random_weights``)."""
    height, width = frame.image_size
    t = frame.timings
    return {
        "frame": item.index,
        "name": item.name,
        "source": item.origin,
        "stamp": {"sec": item.stamp_ns // 10**9, "nanosec": item.stamp_ns % 10**9},
        "frame_id": item.frame_id,
        "width": width,
        "height": height,
        "heads": {name: result_kinds.record(result, files.get(name)) for name, result in frame.results.items()},
        "errors": {name: str(error) for name, error in frame.errors.items()},
        "overlay": overlay,
        "random_weights": list(random_weights),
        "timings_ms": {
            "preprocess": _ms(t.preprocess),
            "backbone": _ms(t.backbone),
            "heads": {name: _ms(s) for name, s in t.heads.items()},
            "postprocess": {name: _ms(s) for name, s in t.postprocess.items()},
            "total": _ms(t.total),
        },
    }


def _output_dirs() -> set[str]:
    """The folders a run writes, removed by ``overwrite``: overlays and every kind's saved arrays."""
    return {"overlays"} | {kind.saved.folder for kind in result_kinds.BY_TYPE.values() if kind.saved}


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


class RunOutput(FrameWriter):
    """Writes one frame at a time into ``folder`` (see the module docstring for the layout).

    ``overlays`` is ``"images"`` (one jpg per frame), ``"video"`` (one mp4 at
    ``fps``) or ``"none"``. ``random_weights`` (``Engine.random_weights``) goes into
    every record. Each record line is flushed as soon as its files are
    written, so an interrupted run leaves only complete frames behind.
    """

    def __init__(self, folder: str | Path, *, overlays: str = "images", fps: float = 10.0,
                 overwrite: bool = False, random_weights: Sequence[str] = ()) -> None:
        if overlays not in ("images", "video", "none"):
            raise ConfigError(f"overlays must be 'images', 'video' or 'none', got {overlays!r}")
        check_run_folder(folder, overwrite)
        self.folder = Path(folder)
        if overwrite:  # only what a run writes; anything else in the folder stays
            (self.folder / OVERLAY_VIDEO).unlink(missing_ok=True)
            for name in _output_dirs():
                shutil.rmtree(self.folder / name, ignore_errors=True)
        self.overlays = overlays
        self.fps = fps
        self.random_weights = list(random_weights)
        self.frames = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._records = (self.folder / RECORDS_FILE).open("w", encoding="utf-8")
        except OSError as e:  # --out names a file, or a folder this user cannot write
            raise OutputError(f"cannot write the run's outputs into {self.folder}: {e}") from e
        self._video: cv2.VideoWriter | None = None
        self._video_size: tuple[int, int] = (0, 0)  # (H, W) of the video, set by its first frame
        self._video_frames = 0

    @property
    def wants_overlay(self) -> bool:
        return self.overlays != "none"

    def write(self, item: SourceFrame, frame: FrameResult, overlay: np.ndarray | None) -> None:
        files = {}
        for name, result in frame.results.items():
            kind = result_kinds.kind_of(result)
            if kind is not None and kind.saved is not None and (array := kind.saved.array(result)) is not None:
                files[name] = self._save(f"{kind.saved.folder}/{item.name}_{name}{kind.saved.suffix}", array)
        record = frame_record(item, frame, files, self._write_overlay(item, overlay),
                              random_weights=self.random_weights)
        self._records.write(json.dumps(record, allow_nan=False) + "\n")
        self._records.flush()
        self.frames += 1

    def _save(self, relative: str, array: np.ndarray) -> str:
        path = self.folder / relative
        path.parent.mkdir(exist_ok=True)
        if path.suffix == ".npy":
            np.save(path, array)
        elif not cv2.imwrite(str(path), array):
            raise OutputError(f"cannot write {path}")
        return relative

    def _write_overlay(self, item: SourceFrame, overlay: np.ndarray | None) -> dict | None:
        if overlay is None or self.overlays == "none":
            return None
        bgr = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
        if self.overlays == "images":
            return {"file": self._save(f"overlays/{item.name}.jpg", bgr), "frame": None}
        if self._video is None:
            height, width = bgr.shape[:2]
            path = self.folder / OVERLAY_VIDEO
            self._video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._video.isOpened():
                raise OutputError(f"cannot write video {path} (OpenCV has no mp4v encoder here)")
            self._video_size = (height, width)
        if bgr.shape[:2] != self._video_size:  # a camera that changed resolution mid-run
            bgr = cv2.resize(bgr, self._video_size[::-1], interpolation=cv2.INTER_AREA)
        self._video.write(bgr)
        self._video_frames += 1
        return {"file": OVERLAY_VIDEO, "frame": self._video_frames - 1}

    def close(self) -> None:
        self._records.close()
        if self._video is not None:
            self._video.release()

    def describe(self) -> str:
        """What was written where, for the closing summary."""
        return f"{self.frames} record(s) in {(self.folder / RECORDS_FILE).resolve()}"
