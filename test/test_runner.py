"""The offline loop: every readable frame through the engine to every writer, past bad frames, until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import time

import cv2
import numpy as np
import pytest

from dinov3_toolkit.engine import Engine
from dinov3_toolkit.overlays import composite
from dinov3_toolkit.offline.records import RECORDS_FILE, RunOutput
from dinov3_toolkit.offline.runner import FrameWriter, RunSummary, run_frames
from dinov3_toolkit.offline.sources import SourceFrame, open_source

HEADS = ["detection", "segmentation", "depth"]


@pytest.fixture(scope="module")
def engine(tiny_engine):
    return tiny_engine


class Recorder(FrameWriter):
    """A FrameWriter that keeps what it was given; ``during_write`` runs inside each write."""

    def __init__(self, wants_overlay: bool = True, during_write=None) -> None:
        self.wants_overlay = wants_overlay
        self.during_write = during_write
        self.written: list[tuple[SourceFrame, object, np.ndarray | None]] = []
        self.completed: list[int] = []  # frames whose write ran to its end

    def write(self, item, frame, overlay) -> None:
        self.written.append((item, frame, overlay))
        if self.during_write is not None:
            self.during_write(item)
        self.completed.append(item.index)

    def close(self) -> None:
        pass  # nothing to finish: it keeps frames in memory

    def describe(self) -> str:
        return f"{len(self.written)} frame(s) in memory"


def frames(n: int, unreadable: tuple[int, ...] = ()) -> list[SourceFrame]:
    out = []
    for i in range(n):
        if i in unreadable:
            out.append(SourceFrame(i, f"f{i}", f"/data/f{i}.png", i, None, f"cannot read image /data/f{i}.png"))
        else:
            rgb = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            out.append(SourceFrame(i, f"f{i}", f"/data/f{i}.png", i, rgb))
    return out


def send_sigint() -> None:
    """SIGINT to this process; the sleeps let Python run the handler here, in the main thread."""
    assert signal.getsignal(signal.SIGINT) != signal.default_int_handler, "run_frames installed no handler"
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(20):
        time.sleep(0.001)


class InterruptAt:
    """The engine, except that its ``at``-th call raises KeyboardInterrupt (a Ctrl-C inside the model)."""

    def __init__(self, engine: Engine, at: int) -> None:
        self.engine, self.at, self.calls = engine, at, 0

    def __call__(self, rgb, **stream):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.engine(rgb, **stream)


def test_every_readable_frame_goes_once_to_every_writer_with_its_overlay(engine):
    source = frames(3)
    drawn, plain = Recorder(wants_overlay=True), Recorder(wants_overlay=False)
    summary = run_frames(engine, source, [drawn, plain], total=3, notice="RANDOM WEIGHTS", progress=False)
    assert summary.frames == 3 and not summary.interrupted and not summary.skipped and not summary.head_errors
    assert summary.seconds > 0 and summary.model_seconds > 0
    for writer in (drawn, plain):
        assert [item.index for item, _, _ in writer.written] == [0, 1, 2]
    for (item, frame, overlay), (_, same_frame, same_overlay) in zip(drawn.written, plain.written):
        assert same_frame is frame and same_overlay is overlay  # one engine run and one overlay per frame
        assert sorted(frame.results) == sorted(HEADS) and frame.image_size == (48, 64)
        expected = composite(item.rgb, frame.results, notice="RANDOM WEIGHTS")
        assert overlay.shape == expected.shape and overlay.shape[1] == 2 * 64  # the depth panel to the right
        assert np.array_equal(overlay, expected)
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler  # handlers restored


def test_no_overlay_is_drawn_when_no_writer_wants_one(engine):
    writer = Recorder(wants_overlay=False)
    summary = run_frames(engine, frames(2), [writer], progress=False)
    assert summary.frames == 2 and [overlay for _, _, overlay in writer.written] == [None, None]


def test_unreadable_frames_are_skipped_and_listed(engine):
    writer = Recorder()
    summary = run_frames(engine, frames(4, unreadable=(1, 2)), [writer], progress=False)
    assert [item.index for item, _, _ in writer.written] == [0, 3]
    assert summary.frames == 2 and not summary.interrupted
    assert summary.skipped == [f"/data/f{i}.png: cannot read image /data/f{i}.png" for i in (1, 2)]
    text = "\n".join(summary.lines())
    assert "2 unreadable frame(s) skipped, first: /data/f1.png" in text


def test_a_failing_head_is_counted_and_the_frame_is_written_with_the_others(engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("depth head exploded")

    monkeypatch.setattr(engine.heads["depth"].model, "forward", broken)
    writer = Recorder()
    summary = run_frames(engine, frames(3), [writer], progress=False)
    assert summary.frames == 3 and dict(summary.head_errors) == {"depth": 3}
    for item, frame, overlay in writer.written:
        assert sorted(frame.results) == ["detection", "segmentation"]
        assert list(frame.errors) == ["depth"] and "depth head exploded" in str(frame.errors["depth"])
        assert overlay.shape == (48, 64, 3)  # no depth panel this time
    assert "head depth failed on 3 frame(s)" in summary.lines()


def test_keyboard_interrupt_inside_the_engine_stops_after_the_frames_written(engine):
    writer = Recorder()
    summary = run_frames(InterruptAt(engine, at=3), frames(5), [writer], progress=False)
    assert summary.interrupted and summary.frames == 2
    assert [item.index for item, _, _ in writer.written] == [0, 1]
    assert "stopped by Ctrl-C" in summary.lines()[0]
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_ctrl_c_during_a_write_finishes_that_frame_then_stops(engine):
    """The first Ctrl-C arrives while frame 2 is being written: it is written whole, and no frame follows."""

    def ctrl_c_on_frame_2(item):
        if item.index == 1:
            send_sigint()

    writer = Recorder(during_write=ctrl_c_on_frame_2)
    summary = run_frames(engine, frames(5), [writer], progress=False)
    assert summary.interrupted and summary.frames == 2
    assert [item.index for item, _, _ in writer.written] == [0, 1] and writer.completed == [0, 1]
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_a_second_ctrl_c_during_a_write_still_lets_that_write_finish(engine):
    """Ctrl-C twice inside frame 2's write: the write completes, then the run stops at once."""

    def twice_on_frame_2(item):
        if item.index == 1:
            send_sigint()
            send_sigint()

    first, second = Recorder(during_write=twice_on_frame_2), Recorder()
    summary = run_frames(engine, frames(5), [first, second], progress=False)
    assert summary.interrupted
    assert first.completed == [0, 1] and second.completed == [0, 1]  # both writers got frame 2 whole
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_a_frame_written_before_a_forced_stop_is_counted(engine):
    def twice_on_frame_2(item):
        if item.index == 1:
            send_sigint()
            send_sigint()

    writer = Recorder(during_write=twice_on_frame_2)
    summary = run_frames(engine, frames(5), [writer], progress=False)
    assert writer.completed == [0, 1]
    assert summary.frames == len(writer.completed)


def test_summary_lines_report_rate_and_skipped_frames():
    summary = RunSummary(frames=4, skipped=["a.png: broken"], seconds=2.0, model_seconds=0.5)
    lines = summary.lines()
    assert lines[0] == "4 frame(s) in 2.0 s: 2.00 frames/s"
    assert "model time 125.0 ms per frame" in lines
    assert "1 unreadable frame(s) skipped, first: a.png: broken" in lines
    assert RunSummary().fps == 0.0 and "0.00 frames/s" in RunSummary().lines()[0]


def test_a_folder_with_a_broken_file_runs_into_records(engine, tmp_path):
    """open_source -> run_frames -> RunOutput: the broken file is skipped, the others get records."""
    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(["a.png", "c.png"]):
        rgb = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        assert cv2.imwrite(str(images / name), rgb)
    (images / "b.png").write_bytes(b"not a png")
    source = open_source(str(images))
    with RunOutput(tmp_path / "out", overlays="none") as output:
        summary = run_frames(engine, source, [output], total=source.total, progress=False)
    assert summary.frames == 2 and len(summary.skipped) == 1 and "b.png" in summary.skipped[0]
    records = [json.loads(line) for line in (tmp_path / "out" / RECORDS_FILE).read_text().splitlines()]
    assert [(r["frame"], r["name"]) for r in records] == [(0, "a"), (2, "c")]
