"""The README's and docs/*.md's shell blocks: the runnable ones run as written, every other command is checked.

The convention is in docs/development.md ("Runnable docs"): `<!-- runnable -->` on the line before a
```bash fence runs the block here, on a machine without weights; every `dinov3 ...` line anywhere is
parsed by the real argument parser, so a renamed or removed option fails here, not on a user's robot.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from doc_pages import PAGES, ROOT, RUNNABLE, ShellBlock, prose, shell_blocks
from dinov3_ros.cli import build_parser
from dinov3_ros.parameters import PARAMS_BY_NAME
from dinov3_toolkit.heads.loader import discover

BLOCKS = shell_blocks()
VENV_BIN = os.path.dirname(sys.executable)  # the venv the suite runs in: its dinov3 is the one under test
TIMEOUT_S = 900  # a ceiling for a hung command, never a timing: each runnable block takes seconds
# Where weights could be found besides the repository's weights/ folder: a runnable block sees none of them.
WEIGHT_PLACES = ("DINOV3_WEIGHTS_DIR", "TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")
# Other tools' commands, shown for a ROS workspace or an export: not ours to check (test_colcon.py builds
# the package as the install lines do).
EXTERNAL = {"mkdir", "cd", "git", "rosdep", "python3", "touch", "source", "pip", "trtexec", "rviz2"}
SEPARATORS = {"&&", "||", ";", "|"}


def _ids(blocks: list[ShellBlock]) -> list[str]:
    return [b.id for b in blocks]


@pytest.fixture(scope="module")
def run_block(tmp_path_factory):
    """Run a block once per module (a later test may look at what it wrote): its output and its folder."""
    done: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}

    def run(block: ShellBlock) -> tuple[subprocess.CompletedProcess, Path]:
        if block.id not in done:
            folder = tmp_path_factory.mktemp("block")
            home, work = folder / "home", folder / "work"
            home.mkdir()
            work.mkdir()
            env = {k: v for k, v in os.environ.items() if k not in WEIGHT_PLACES}
            env.update(HOME=str(home), PATH=os.pathsep.join([VENV_BIN, env.get("PATH", "")]))
            done[block.id] = (subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=work, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                             timeout=TIMEOUT_S), work)
        return done[block.id]
    return run


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runnable], ids=_ids([b for b in BLOCKS if b.runnable]))
def test_runnable_block(block, run_block):
    """The block, as written, in a fresh folder, with no weights to be found: it must exit 0."""
    result, _ = run_block(block)
    assert result.returncode == 0, (f"{block.id} exited with {result.returncode}:\n{block.text}"
                                    f"--- output ---\n{result.stdout}")


def test_the_training_example_learns_what_its_page_says(run_block):
    """docs/training.md's first block trains a detector that visibly works: map50 well above an untrained
    head's (near 0) on the scenes it held out, without a warning about too few of them."""
    block = next(b for b in BLOCKS if b.runnable and b.page.name == "training.md")
    result, work = run_block(block)
    assert result.returncode == 0, result.stdout
    metrics = json.loads((work / "heads" / "head_shapes" / "report" / "metrics.json").read_text())
    assert metrics["images"] == 13 and metrics["map50"] >= 0.5, metrics  # the page says: near 0.9
    assert not re.search(r"only \d+ validation image", result.stdout)  # FEW_VAL_IMAGES: 13 are enough
    assert "map50 0.9" in " ".join(prose(block.page).split())


def test_every_runnable_mark_is_on_a_bash_block():
    """A mark before anything but a ```bash fence would silently run nothing."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() == RUNNABLE:
                assert number < len(lines) and lines[number] == "```bash", (
                    f"{page.relative_to(ROOT)}:{number}: {RUNNABLE} must be followed by a ```bash fence")


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block, each as its words: continuations joined, comments dropped, split at
    `&&`, `;` and pipes, leading VAR=value assignments dropped."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True  # words end at blanks (and at ;&|), as in the shell
        words = []
        for token in [*lexer, ";"]:
            if token in SEPARATORS:
                if words:
                    found.append(words)
                words = []
            elif words or not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", token):
                words.append(token)
    return found


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return sub.choices


def _parse_dinov3(argv: list[str]) -> str:
    """'' when the real parser accepts ``argv``, else what it printed."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        return err.getvalue() or f"exit {e.code}"
    return ""


@functools.cache
def _node_params() -> set[str]:
    manifests, _ = discover(templates=True)
    return set(PARAMS_BY_NAME) | {f"{name}.{p}" for name, m in manifests.items() for p in m.params}


@functools.cache
def _launch_arguments() -> set[str]:
    return set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', (ROOT / "launch" / "dinov3.launch.py").read_text()))


@functools.cache
def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def problems(words: list[str]) -> list[str]:
    """Why a documented command would not work as shown ([] when it would, or is another tool's)."""
    tool = os.path.basename(words[0])
    if tool == "dinov3":
        error = _parse_dinov3(words[1:])
        return [f"`{shlex.join(words)}`: {error.strip()}"] if error else []
    if tool == "torchrun":
        if words[words.index("-m") + 1:words.index("-m") + 2] != ["dinov3_ros.cli"]:
            return [f"`{shlex.join(words)}` runs no dinov3 module"]
        return problems(["dinov3", *words[words.index("-m") + 2:]])
    if tool == "make":
        targets = [w for w in words[1:] if "=" not in w]
        return [f"make target {t!r} is not in the Makefile" for t in targets if t not in _make_targets()]
    if tool == "ros2" and words[1] == "launch":
        if words[2:4] != ["dinov3_ros", "dinov3.launch.py"]:
            return []  # another package's launch file (foxglove_bridge)
        names = [w.split(":=")[0] for w in words[4:]]
        return [f"launch argument {n!r} is not declared in launch/dinov3.launch.py"
                for n in names if n not in _launch_arguments()]
    if tool == "ros2" and words[1:2] in (["param"], ["lifecycle"]) and len(words) > 3:
        node, name = words[3], words[4] if words[1] == "param" and len(words) > 4 else None
        wrong = [] if node == "/dinov3/dinov3_node" else [f"`{shlex.join(words)}`: the node is /dinov3/dinov3_node"]
        return wrong + ([f"node parameter {name!r} does not exist"] if name and name not in _node_params() else [])
    if tool == "dinov3_node":
        params = [words[i + 1].split(":=")[0] for i, w in enumerate(words) if w == "-p"]
        return [f"node parameter {p!r} does not exist" for p in params if p not in _node_params()]
    if tool in EXTERNAL or tool == "ros2":
        return []
    return [f"`{tool}` is not a command the docs test knows: check it here or add it to EXTERNAL"]


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_shell_block_commands_exist_as_shown(block):
    """Every command of every block, run or not: options, targets, launch arguments and parameters exist."""
    found = [p for words in commands(block.text) for p in problems(words)]
    assert not found, f"{block.id}:\n" + "\n".join(found)


def test_inline_dinov3_commands_name_real_subcommands_and_options():
    """`dinov3 run --head-dir` in the text: `run` is a subcommand and `--head-dir` one of its options."""
    subcommands = _subcommands()
    wrong = []
    for page in PAGES:
        for span in re.findall(r"`(dinov3 [^`]+)`", prose(page)):
            words = span.split()
            if not re.fullmatch(r"[a-z]+", words[1]):
                continue  # `dinov3 ...`, `dinov3 COMMAND`: a placeholder, not a command
            if words[1] not in subcommands:
                wrong.append(f"{page.relative_to(ROOT)}: `{span}`: no subcommand {words[1]!r}")
                continue
            known = subcommands[words[1]]._option_string_actions
            wrong += [f"{page.relative_to(ROOT)}: `{span}`: {words[1]} has no option {w.split('=')[0]}"
                      for w in words[2:] if w.startswith("-") and w.split("=")[0] not in known]
    assert not wrong, "\n".join(wrong)


def test_the_command_checker_refuses_what_does_not_exist():
    """The checks above can fail: a stale option, target, launch argument or parameter is caught."""
    assert problems(["dinov3", "run", "shots/", "--no-such-option"])
    assert problems(["dinov3", "eval", "h", "--data", "d", "--param", "score_threshold=0.3"])  # the old form
    assert not problems(["dinov3", "eval", "h", "--data", "d", "--param", "detection.score_threshold=0.3"])
    assert not problems(["dinov3", "run", "s", "--heads", "detection,depth"])
    assert problems(["make", "no-such-target"]) and not problems(["make", "TORCH=torch==2.5.1", "demo"])
    assert problems(["ros2", "launch", "dinov3_ros", "dinov3.launch.py", "camera:=/x"])
    assert problems(["ros2", "param", "set", "/dinov3/dinov3_node", "detection.no_such", "1"])
    assert problems(["dinov3_node", "--ros-args", "-p", "no_such:=1"])
    assert problems(["ros2", "param", "set", "/dinov3_node", "detection.score_threshold", "0.4"])
    assert problems(["curl", "x"])
    assert commands("A=1 dinov3 run x \\\n  --out y   # note\nmake demo && make test\n") == [
        ["dinov3", "run", "x", "--out", "y"], ["make", "demo"], ["make", "test"]]


def test_every_relative_link_and_picture_names_a_file_that_exists():
    """A section moved between pages keeps its links working (they are relative to the page)."""
    missing = [f"{page.relative_to(ROOT)}: {link}" for page in PAGES
               for link in re.findall(r"\]\(([^)#\s]+)[^)]*\)", prose(page))
               if "://" not in link and not (page.parent / link).exists()]
    assert not missing, "\n".join(missing)
