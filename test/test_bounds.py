"""One bounds table for every numeric setting: the `dinov3` options and the node's parameters refuse the same values."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dinov3_ros.cli.command import build_parser, main
from dinov3_ros.parameters import NODE_PARAMS, check_node_param
from dinov3_toolkit.bounds import BOUNDS, Bound, OutOfBounds
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.training.trainer import TrainOptions


def _bounded_options() -> list[tuple[str, str, str]]:
    """(subcommand, option, bound name) of every option whose type comes from ``BOUNDS``."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, parser in subparsers.choices.items():
        for action in parser._actions:
            if getattr(action.type, "__name__", None) in BOUNDS and action.option_strings:
                found.append((command, action.option_strings[-1], action.type.__name__))
    return found


BOUNDED = _bounded_options()
REQUIRED = {"run": ["x"], "bag": ["x", "--out", "o"], "train": ["h", "--data", "d", "--out", "o"],
            "eval": ["h", "--data", "d"], "synth": ["o"]}


def test_every_numeric_option_reads_the_table():
    """No numeric option of any subcommand escapes the table (an int/float type would mean no bounds)."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    loose = [f"{command} {action.option_strings[-1]}" for command, parser in subparsers.choices.items()
             for action in parser._actions if action.type in (int, float)]
    assert loose == []
    assert {"--rate", "--size", "--stream-gap", "--epochs", "--lr", "--rounds"} <= {o for _, o, _ in BOUNDED}


@pytest.mark.parametrize("command, option, name", BOUNDED, ids=[f"{c} {o}" for c, o, _ in BOUNDED])
def test_options_refuse_nan_inf_and_out_of_range(command, option, name, capsys):
    bound = BOUNDS[name]
    for text in ("nan", "inf", "-inf", repr(bound.low - 1), repr(bound.high * 2 + 1), "ten"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([command, *REQUIRED.get(command, []), f"{option}={text}"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}: must be {bound.describe()}" in err, err
    for value in (bound.low, bound.high):
        text = str(int(value)) if bound.integer else repr(float(value))
        args = build_parser().parse_args([command, *REQUIRED.get(command, []), f"{option}={text}"])
        assert getattr(args, option.lstrip("-").replace("-", "_")) == value


@pytest.mark.parametrize("argv, message", [
    (["--rate", "1e-300"], "--rate: must be a finite number in [0.01, 1000] Hz, got 1e-300"),
    (["--rate", "inf"], "--rate: must be a finite number in [0.01, 1000] Hz, got inf"),
    (["--size", "1000000"], "--size: must be an integer in [16, 4096] px, a multiple of 16, got 1000000"),
    (["--size", "650"], "a multiple of 16, got 650"),
    (["--stream-gap", "nan"], "--stream-gap: must be a finite number in [0.001, 3600] s, got nan"),
])
def test_the_probe_s_values_are_refused_before_anything_runs(argv, message, capsys, tmp_path):
    """The values that once overflowed a timestamp, stamped every frame alike or asked for terabytes."""
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path), "--out", str(tmp_path / "out"), *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_node_parameters_take_their_bounds_from_the_table():
    numeric = [p for p in NODE_PARAMS if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)]
    assert {p.name for p in numeric} == {"image_size", "frame_timeout", "stream_gap", "diagnostics_period"}
    for p in numeric:
        assert p.bound in BOUNDS.values(), p.name
        assert (p.min, p.max) == (p.bound.low, p.bound.high)
        for bad in (math.nan, math.inf, -math.inf, p.bound.high + 16):
            with pytest.raises(ValueError, match=f"{p.name} must be"):
                check_node_param(p.name, type(p.default)(bad) if math.isfinite(bad) else bad)
    assert BOUNDS["size"] is next(p.bound for p in numeric if p.name == "image_size")


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", math.nan), ("lr", math.inf), ("clip", -1.0),
                                          ("augment", 1.5), ("workers", -1), ("seed", 2**32), ("batch", 2.5)])
def test_training_options_use_the_table_too(field, value):
    with pytest.raises(ConfigError, match=f"{field} must be"):
        TrainOptions(**{field: value})


@settings(max_examples=300, deadline=None)
@given(bound=st.sampled_from(sorted(BOUNDS.items())),
       text=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                      st.text(max_size=12)))
def test_parse_gives_a_value_within_bounds_or_a_named_refusal(bound, text):
    name, b = bound
    try:
        value = b.parse(name, text)
    except OutOfBounds as e:
        assert str(e).startswith(f"{name} must be {b.describe()}, got ")
        return
    assert math.isfinite(value) and b.low <= value <= b.high
    assert isinstance(value, int) if b.integer else isinstance(value, float)
    assert b.multiple == 1 or value % b.multiple == 0


def test_a_bound_refuses_what_is_no_number():
    bound = Bound(0, 1)
    for value in (True, "0.5", None, [0.5]):
        with pytest.raises(OutOfBounds, match="x must be a finite number in"):
            bound.check("x", value)


def test_a_count_is_an_int_and_a_huge_one_is_refused_not_overflowed():
    """float() of a 400-digit int overflows; 3.0 epochs would stay a float and fail far from where it was set."""
    with pytest.raises(OutOfBounds, match=r"size must be an integer .* got 1000000000.*\(401 characters\)"):
        BOUNDS["size"].parse("size", "1" + "0" * 400)
    with pytest.raises(OutOfBounds, match="epochs must be an integer in"):
        TrainOptions(epochs=3.0)
    assert BOUNDS["size"].check("size", 64) == 64 and type(BOUNDS["lr"].check("lr", 1)) is float
