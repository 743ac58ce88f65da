"""Offline frame sources: image files (file, folder, glob), a video file and a camera index."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dinov3_toolkit.offline.sources import ImageFiles, SourceError, VideoFrames, open_source, read_rgb


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Save an RGB array (PNG: lossless) so that a correct reader gives back exactly ``rgb``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def pattern(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_a_single_image_file_is_one_rgb_frame(tmp_path):
    rgb = pattern(0)
    rgb[0, 0] = (255, 0, 0)  # a pure red pixel: a BGR/RGB mix-up shows as blue
    path = write_image(tmp_path / "street.png", rgb)
    source = open_source(str(path))
    assert isinstance(source, ImageFiles) and source.total == 1
    frames = list(source)
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.index, frame.name, frame.origin, frame.error) == (0, "street", str(path), None)
    assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (12, 16, 3)
    assert np.array_equal(frame.rgb, rgb)
    assert tuple(frame.rgb[0, 0]) == (255, 0, 0)


def test_a_folder_gives_its_images_in_sorted_order_and_ignores_other_files(tmp_path):
    for i, name in enumerate(["c.png", "a.png", "b.PNG", "d.bmp"]):
        write_image(tmp_path / name, pattern(i))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "clip.mp4").write_bytes(b"videos are not read from folders")
    write_image(tmp_path / "sub" / "inner.png", pattern(9))  # subfolders are not entered
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFiles) and source.total == 4
    frames = list(source)
    assert [f.name for f in frames] == ["a", "b", "c", "d"]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [Path(f.origin).name for f in frames] == ["a.png", "b.PNG", "c.png", "d.bmp"]
    # each frame holds its own file's pixels (c.png was written from pattern(0))
    assert np.array_equal(frames[2].rgb, pattern(0)) and np.array_equal(frames[0].rgb, pattern(1))


def test_a_quoted_glob_is_expanded_by_the_source(tmp_path):
    """The shell did not expand it (quoted), so open_source must."""
    for name in ["x2.png", "x1.png", "y1.png"]:
        write_image(tmp_path / name, pattern(0))
    (tmp_path / "x3.txt").write_text("matches no image pattern below")
    source = open_source(str(tmp_path / "x*.png"))
    assert isinstance(source, ImageFiles)
    assert [f.name for f in source] == ["x1", "x2"]


def test_a_glob_over_folders_keeps_names_unique(tmp_path):
    """Two folders holding img.png: output files are named after frames, so the names must differ."""
    write_image(tmp_path / "a" / "img.png", pattern(1))
    write_image(tmp_path / "a" / "img_2.png", pattern(2))  # already holds the first suffix one would pick
    write_image(tmp_path / "b" / "img.png", pattern(3))
    frames = list(open_source(str(tmp_path / "*" / "img*.png")))
    names = [f.name for f in frames]
    assert len(names) == 3 and len(set(names)) == 3
    assert names[:2] == ["img", "img_2"]
    assert names[2].startswith("img_") and Path(frames[2].origin).parent.name == "b"
    assert np.array_equal(frames[2].rgb, pattern(3))


def test_an_unreadable_file_is_a_frame_with_an_error_and_the_next_file_follows(tmp_path):
    write_image(tmp_path / "a.png", pattern(1))
    (tmp_path / "b.png").write_bytes(b"\x89PNG but truncated")
    (tmp_path / "c.jpg").write_bytes(b"")  # empty file
    write_image(tmp_path / "d.png", pattern(4))
    frames = list(open_source(str(tmp_path)))
    assert [f.name for f in frames] == ["a", "b", "c", "d"]
    assert [f.rgb is None for f in frames] == [False, True, True, False]
    for bad in frames[1:3]:
        assert bad.error and f"{bad.name}." in bad.error and bad.origin in bad.error
    assert frames[0].error is None and frames[3].error is None
    assert frames[3].index == 3 and np.array_equal(frames[3].rgb, pattern(4))


def test_sources_that_cannot_be_opened_raise_source_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match=r"folder .*empty holds no images"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match=r"missing\.png is no file, folder, glob or camera index"):
        open_source(str(tmp_path / "missing.png"))
    with pytest.raises(SourceError, match=r"no files match .*\*\.png"):
        open_source(str(tmp_path / "empty" / "*.png"))
    assert issubclass(SourceError, ValueError)  # callers may catch it as a bad argument


def test_a_camera_index_that_cannot_be_opened_raises_source_error():
    with pytest.raises(SourceError, match=r"camera 97 cannot be opened"):
        open_source("97")


def test_image_stamps_are_spaced_by_one_over_rate(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"f{i}.png", pattern(i))
    frames = list(open_source(str(tmp_path), rate=4.0))
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
    assert np.array_equal(np.diff(stamps), [250_000_000] * 3)
    assert frames[0].frame_id == "camera"


def test_grayscale_and_16_bit_images_come_out_as_rgb_uint8(tmp_path):
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray)
    deep = np.full((12, 16, 3), 200 * 256 + 77, dtype=np.uint16)  # 16-bit colour, high byte 200
    deep[..., 2] = 10 * 256  # BGR order on disk: red is channel 2
    assert cv2.imwrite(str(tmp_path / "deep.png"), deep)
    deep_gray = np.full((12, 16), 65535, dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "deep_gray.png"), deep_gray)

    frames = {f.name: f.rgb for f in open_source(str(tmp_path))}
    for rgb in frames.values():
        assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)
    assert all(np.array_equal(frames["gray"][..., c], gray) for c in range(3))
    assert tuple(frames["deep"][0, 0]) == (10, 200, 200)
    assert np.all(frames["deep_gray"] == 255)


def test_read_rgb_rejects_missing_files_and_non_images(tmp_path):
    with pytest.raises(ValueError, match="nothing.png"):
        read_rgb(tmp_path / "nothing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ValueError, match="text.png"):
        read_rgb(tmp_path / "text.png")


# Seven distinct solid colours (RGB); the codec keeps solid colours within a few levels.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]


def write_video(path: Path, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV has no mp4v encoder here")
    for rgb in COLOURS:
        writer.write(np.full((48, 64, 3), rgb[::-1], dtype=np.uint8))  # VideoWriter takes BGR
    writer.release()
    return path


def test_a_video_file_gives_its_frames_in_order_as_rgb(tmp_path):
    path = write_video(tmp_path / "clip.mp4")
    source = open_source(str(path))
    assert isinstance(source, VideoFrames) and source.kind == "video"
    assert source.total == 7 and source.fps == pytest.approx(10.0)
    try:
        frames = list(source)
    finally:
        source.close()
    assert len(frames) == 7
    assert [f.name for f in frames] == [f"clip_{i:06d}" for i in range(7)]
    assert [f.origin for f in frames] == [f"{path}#{i}" for i in range(7)]
    assert [f.index for f in frames] == list(range(7))
    for frame, colour in zip(frames, COLOURS):
        assert frame.error is None and frame.rgb.dtype == np.uint8 and frame.rgb.shape == (48, 64, 3)
        mean = frame.rgb.reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colour).max() < 12, (frame.name, mean, colour)  # RGB order, not BGR
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
    assert np.all(np.diff(stamps) > 0)
    # video time, not wall time: frames sit 1/fps apart in the file
    assert np.allclose(np.diff(stamps), 1e8, atol=2e6)


def test_a_file_with_a_video_suffix_that_is_no_video_raises_source_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 20)
    with pytest.raises(SourceError, match=r"broken\.mp4 cannot be opened"):
        open_source(str(tmp_path / "broken.mp4"))


def test_an_existing_folder_named_like_a_camera_index_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").mkdir()
    cv2.imwrite(str(tmp_path / "2024" / "shot.png"), np.zeros((8, 8, 3), np.uint8))
    source = open_source("2024")
    assert isinstance(source, ImageFiles) and source.names == ["shot"]
    with pytest.raises(SourceError, match="camera 2025 cannot be opened"):
        open_source("2025")
