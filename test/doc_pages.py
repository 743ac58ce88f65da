"""The README and docs/*.md as the tests read them: a section's text by its heading, and the shell blocks.

The reference moved from one long README into docs/ pages; tests that check what the docs say
find a section by its title wherever it lives, so moving a section again breaks no test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
RUNNABLE = "<!-- runnable -->"  # on the line before a ```bash fence: test_docs.py runs the block
_FENCE = re.compile(r"^(```|~~~)(\S*)")
_HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")


@dataclass(frozen=True)
class ShellBlock:
    """A ```bash block: its page, the line of its opening fence (1-based), its text, whether it is marked runnable."""

    page: Path
    line: int
    text: str
    runnable: bool

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _lines_outside_code(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, inside a fenced block) for every line; the fences themselves count as inside."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m[1]
            out.append((number, line, True))
        elif fence is not None and line.startswith(fence):
            fence = None
            out.append((number, line, True))
        else:
            out.append((number, line, fence is not None))
    return out


def section(title: str) -> str:
    """The text under the heading ``title`` (any level), up to the next heading of its level or above.

    Exactly one page must have that heading: a section shown twice, or lost, is a docs bug.
    """
    found = []
    for page in PAGES:
        lines = _lines_outside_code(page.read_text(encoding="utf-8"))
        for i, (_, line, code) in enumerate(lines):
            m = None if code else _HEADING.match(line)
            if m and m[2] == title:
                level, body = len(m[1]), []
                for _, later, later_code in lines[i + 1:]:
                    h = None if later_code else _HEADING.match(later)
                    if h and len(h[1]) <= level:
                        break
                    body.append(later)
                found.append((page, "\n".join(body)))
    assert len(found) == 1, (f"heading {title!r} is on {len(found)} of the pages "
                             f"{[str(p.relative_to(ROOT)) for p in PAGES]}: {[str(p) for p, _ in found]}")
    return found[0][1]


def prose(page: Path) -> str:
    """A page's text outside its fenced code blocks."""
    return "\n".join(line for _, line, code in _lines_outside_code(page.read_text(encoding="utf-8")) if not code)


def shell_blocks() -> list[ShellBlock]:
    """Every ```bash (or ```sh, ```shell) block of the README and docs pages, in page order."""
    blocks = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        start = None
        for i, line in enumerate(lines):
            if start is None and (m := _FENCE.match(line)):
                start = (i, m[2] in ("bash", "sh", "shell"))
            elif start is not None and line.startswith("```"):
                first, shell = start
                if shell:
                    runnable = first > 0 and lines[first - 1].strip() == RUNNABLE
                    blocks.append(ShellBlock(page, first + 1, "\n".join(lines[first + 1:i]) + "\n", runnable))
                start = None
    return blocks
