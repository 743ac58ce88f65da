"""A video that ends before the frames it declares: a warning with both counts, a summary line, exit 1."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinov3_ros.cli import main
from dinov3_toolkit.offline.runner import RunSummary
from dinov3_toolkit.offline.sources import VideoFrames

TINY = ["--backbone", "vits16", "--device", "cpu", "--size", "32", "--heads", "depth", "--random-weights", "--quiet"]
FRAMES = 6


def write_mjpg_avi(path: Path, frames: int = FRAMES) -> Path:
    """An MJPG AVI: its header declares the frame count, and its frames stay readable when the file is cut."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV has no MJPG AVI writer here")
    for i in range(frames):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        frame[i % 48] = 255  # every frame differs
        writer.write(frame)
    writer.release()
    return path


class FakeCapture:
    """A capture declaring ``declared`` frames whose read() fails from frame ``fails_at`` on."""

    def __init__(self, declared: int, fails_at: int) -> None:
        self.declared, self.fails_at, self.reads = declared, fails_at, 0

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_COUNT: float(self.declared), cv2.CAP_PROP_FPS: 10.0}.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.reads > self.fails_at:
            return False, None
        return True, np.zeros((4, 6, 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_read_that_fails_mid_video_sets_the_shortfall_and_warns(caplog):
    source = VideoFrames(FakeCapture(declared=5, fails_at=3), "clip.mp4", camera=False)
    with caplog.at_level(logging.WARNING, logger="dinov3_toolkit.offline.sources"):
        assert [f.index for f in source] == [0, 1, 2]
    expected = "video clip.mp4 ended after 3 of 5 declared frames: the file is truncated or damaged"
    assert source.shortfall == expected
    assert [r.getMessage() for r in caplog.records] == [expected]


@pytest.mark.parametrize(("declared", "fails_at", "camera"), [(5, 5, False), (3, 5, False), (0, 2, False),
                                                              (5, 2, True)],
                         ids=["all-declared", "more-than-declared", "no-count", "camera"])
def test_no_shortfall_when_every_declared_frame_came_or_none_was_declared(declared, fails_at, camera, caplog):
    source = VideoFrames(FakeCapture(declared, fails_at), "0" if camera else "clip.mp4", camera=camera)
    with caplog.at_level(logging.WARNING):
        assert len(list(source)) == fails_at
    assert source.shortfall is None and not caplog.records


def test_a_video_left_before_its_end_has_no_shortfall():
    """Stopping early (Ctrl-C) is the reader's choice, not a damaged file."""
    source = VideoFrames(FakeCapture(declared=5, fails_at=3), "clip.mp4", camera=False)
    frames = iter(source)
    next(frames)
    frames.close()
    assert source.shortfall is None


def test_the_summary_names_the_shortfall():
    text = "video v.avi ended after 2 of 9 declared frames: the file is truncated or damaged"
    assert RunSummary(frames=2, seconds=1.0, shortfall=text).lines()[-1] == text
    assert not any("declared" in line for line in RunSummary(frames=2, seconds=1.0).lines())


def test_a_complete_video_runs_with_no_warning_and_exit_0(tmp_path, capsys, caplog, no_weights):
    video = write_mjpg_avi(tmp_path / "whole.avi")
    with caplog.at_level(logging.WARNING, logger="dinov3_toolkit.offline.sources"):
        assert main(["run", str(video), *TINY, "--out", str(tmp_path / "out")]) == 0
    assert not [r for r in caplog.records if r.name == "dinov3_toolkit.offline.sources"]
    assert "declared" not in capsys.readouterr().out
    assert len((tmp_path / "out" / "frames.jsonl").read_text().splitlines()) == FRAMES


def test_a_truncated_video_warns_with_both_counts_says_so_at_the_end_and_exits_1(tmp_path, capsys, caplog,
                                                                                no_weights):
    whole = write_mjpg_avi(tmp_path / "whole.avi").read_bytes()
    video = tmp_path / "cut.avi"
    frames_start = whole.index(b"movi")  # the header (which declares every frame) stays whole
    video.write_bytes(whole[: frames_start + (len(whole) - frames_start) // 2])
    with caplog.at_level(logging.WARNING, logger="dinov3_toolkit.offline.sources"):
        assert main(["run", str(video), *TINY, "--out", str(tmp_path / "out")]) == 1
    written = len((tmp_path / "out" / "frames.jsonl").read_text().splitlines())
    assert 0 < written < FRAMES  # the frames that came were processed
    expected = f"video {video} ended after {written} of {FRAMES} declared frames: the file is truncated or damaged"
    assert [r.getMessage() for r in caplog.records if r.name == "dinov3_toolkit.offline.sources"] == [expected]
    summary = capsys.readouterr().out.split(f"{written} frame(s) in ", 1)[1]  # the closing summary
    assert expected in summary.splitlines()
