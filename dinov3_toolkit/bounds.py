"""The bounds of every numeric setting, defined once: the `dinov3` command and the node both read them.

Why a table: a value with no bounds fails far from where it was typed. A ``--rate`` of 1e-300
overflows a timestamp several frames later, ``--rate inf`` stamps every frame alike, a ``--size`` of
10^6 asks for terabytes before anything says why. Each ``Bound`` refuses such a value where it is
given, naming the setting, the range and the unit. NaN and inf are refused everywhere: NaN compares
false with every limit, so a plain ``low <= x <= high`` test would let it through.

The limits are generous, chosen to be well inside what can work, not to second-guess a user:
``test/test_bounds.py`` keeps the CLI options and the node's parameters on this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


class OutOfBounds(ConfigError):
    """A numeric setting that is not a finite number within its bounds (a ``ValueError`` too)."""


@dataclass(frozen=True)
class Bound:
    """A closed range ``[low, high]``; ``integer`` values only, and multiples of ``multiple`` if above 1."""

    low: float
    high: float
    unit: str = ""
    integer: bool = False
    multiple: int = 1

    def describe(self) -> str:
        """``an integer in [16, 4096] px, a multiple of 16`` (for help texts and errors)."""
        kind = "an integer" if self.integer else "a finite number"
        low, high = (f"{v:g}" for v in (self.low, self.high))
        text = f"{kind} in [{low}, {high}]" + (f" {self.unit}" if self.unit else "")
        return text + (f", a multiple of {self.multiple}" if self.multiple > 1 else "")

    def check(self, name: str, value: Any) -> int | float:
        """``value`` as an int or float if it is within bounds, else ``OutOfBounds`` naming ``name``."""
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            raise self._refuse(name, repr(value))  # 3.0 for a count is refused: it would stay a float
        # Python compares an int of any size with the limits exactly (float() of a 400-digit int would overflow).
        if ((isinstance(value, float) and not math.isfinite(value)) or not self.low <= value <= self.high
                or (self.multiple > 1 and value % self.multiple)):
            raise self._refuse(name, f"{value:g}" if isinstance(value, float) else str(value))
        return value if self.integer else float(value)

    def parse(self, name: str, text: str) -> int | float:
        """A typed value from ``text`` (a command-line option), checked; ``name`` may be empty there."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise self._refuse(name, repr(text)) from None
        return self.check(name, value)

    def _refuse(self, name: str, got: str) -> OutOfBounds:
        got = got if len(got) <= 40 else f"{got[:30]}... ({len(got)} characters)"
        return OutOfBounds(f"{name} must be {self.describe()}, got {got}".lstrip())


_SECONDS_IN_AN_HOUR = 3600.0

BOUNDS: dict[str, Bound] = {
    # The engine and the node.
    "size": Bound(16, 4096, "px", integer=True, multiple=16),  # network input side; 4096 is 65,536 patches
    "stream_gap": Bound(0.001, _SECONDS_IN_AN_HOUR, "s"),
    "frame_timeout": Bound(0.0, _SECONDS_IN_AN_HOUR, "s (0: never)"),
    "diagnostics_period": Bound(0.1, 60.0, "s"),
    # Offline runs: 0.01 Hz keeps a million frames' stamps inside ROS's 32-bit seconds; 1 kHz, 1 ms apart.
    "rate": Bound(0.01, 1000.0, "Hz"),
    "frame_side": Bound(1, 16384, "px", integer=True),  # bench --frame: a camera frame's width or height
    "rounds": Bound(1, 100_000, integer=True),
    "warmup": Bound(0, 10_000, integer=True),
    "depth": Bound(1, 64, "blocks", integer=True),  # the largest backbone has 40
    "frames": Bound(1, 100_000, integer=True),  # soak: frames to run
    "sample_every": Bound(1, 100_000, integer=True),  # soak: frames between memory samples
    # Training.
    "epochs": Bound(1, 100_000, integer=True),
    "batch": Bound(1, 65_536, integer=True),
    "lr": Bound(1e-12, 10.0),
    "weight_decay": Bound(0.0, 10.0),
    "clip": Bound(0.0, 1e6, "(0: off)"),
    "augment": Bound(0.0, 1.0, "(a probability)"),
    "augment_epochs": Bound(0, 100_000, integer=True),
    "seed": Bound(0, 2**32 - 1, integer=True),
    "workers": Bound(0, 256, integer=True),
    "val_fraction": Bound(0.01, 0.9),
    # Synthetic data sets.
    "images": Bound(1, 100_000, integer=True),
    "image_side": Bound(16, 4096, "px", integer=True),
}
