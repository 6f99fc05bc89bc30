"""Plain-text output: tables, a progress bar on stderr, a confirmation prompt. No dependencies."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import IO

from verifyfeed.clock import china_time


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters are two wide."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(width(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def when(value: str | datetime | None) -> str:
    """An ISO instant as ``YYYY-MM-DD HH:MM`` China time (the time every rule of the system uses)."""
    if not value:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return china_time(at).strftime("%Y-%m-%d %H:%M")


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProgressBar:
    """``label [#########.........] 12/30`` redrawn in place on a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, stream: IO[str], enabled: bool | None = None) -> None:
        self.total = max(0, total)
        self.done = 0
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self._drawn = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.total = max(self.total, self.done)  # a queue's message count is approximate
        self.draw()

    def draw(self, cells: int = 30) -> None:
        if not self.enabled:
            return
        filled = cells if self.total == 0 else cells * self.done // self.total
        bar = "#" * filled + "." * (cells - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def confirm(question: str, stdin: IO[str], stderr: IO[str]) -> bool:
    """Ask on stderr, read one line from stdin; only ``y``/``yes`` is a yes (end of input is a no)."""
    stderr.write(f"{question} [y/N] ")
    stderr.flush()
    answer = stdin.readline()
    if not answer:
        stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
