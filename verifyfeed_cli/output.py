"""Plain-text output on rich: tables that fit the screen, a progress bar on stderr, a confirmation.

A table fits ``Screen.width`` (the terminal's, else ``$COLUMNS``, else 80) by dropping its least
important columns and cutting its long ones with an ellipsis; ``--wide`` shows every column whole.
Widths are terminal cells: a CJK character takes two (rich's ``cell_len``).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from verifyfeed.clock import china_time

GAP = 2  # cells between two columns
NARROWEST = 40  # a screen narrower than this is taken as this wide


@dataclass(frozen=True)
class Screen:
    """Where text goes: ``width`` cells a line; ``wide``: every column, nothing cut."""

    width: int = 80
    wide: bool = False

    @classmethod
    def of(cls, stream: IO[str], wide: bool = False) -> Screen:
        """The terminal's width when ``stream`` is one, else ``$COLUMNS``, else 80."""
        columns = shutil.get_terminal_size((80, 24)).columns if _isatty(stream) else _env_columns()
        return cls(max(NARROWEST, columns), wide)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _env_columns() -> int:
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) > 0 else 80


@dataclass(frozen=True)
class Col:
    """A table column. ``drop``: 0 always shown, else dropped (highest first) when the table does not
    fit; ``cut``: the narrowest it may be cut to with an ellipsis (0: never cut)."""

    header: str
    drop: int = 0
    cut: int = 0
    middle: bool = False  # cut in the middle (a file name's end tells files apart), else at the end


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters are two wide."""
    return cell_len(text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def table(
    columns: Sequence[Col | str], rows: Sequence[Sequence[object]], screen: Screen | None = None
) -> str:
    """``rows`` under ``columns``, fitted to ``screen`` (None: every column whole). Columns that did
    not fit are named in a last line."""
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [["" if c is None else " ".join(str(c).split()) for c in row] for row in rows]
    natural = [max([width(col.header)] + [width(row[i]) for row in cells]) for i, col in enumerate(cols)]
    shown, widths = _fit(cols, natural, screen)
    grid = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        padding=(0, GAP // 2),
        header_style=None,
        highlight=False,
    )
    for i in shown:
        grid.add_column(cols[i].header, width=widths[i], no_wrap=True, overflow="ellipsis")
    for row in cells:
        grid.add_row(*(cut_middle(row[i], widths[i]) if cols[i].middle else row[i] for i in shown))
    out = io.StringIO()
    console = Console(
        file=out,
        width=sum(widths[i] for i in shown) + GAP * len(shown),
        color_system=None,
        force_terminal=False,
        emoji=False,
        highlight=False,
        markup=False,
        legacy_windows=False,
    )
    console.print(grid)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    hidden = [cols[i].header for i in range(len(cols)) if i not in shown]
    if hidden:
        lines.append(
            f"(not shown, to fit {screen.width if screen else 0} columns: {', '.join(hidden)}; --wide)"
        )
    return "\n".join(lines)


def _fit(cols: list[Col], natural: list[int], screen: Screen | None) -> tuple[list[int], list[int]]:
    """The columns shown and each one's width: every column whole on a wide screen; else drop the
    most droppable columns until the rest fit at their narrowest, then cut the widest cuttable ones."""
    shown = list(range(len(cols)))
    widths = list(natural)
    if screen is None or screen.wide:
        return shown, widths

    def narrowest(i: int) -> int:
        return min(natural[i], max(cols[i].cut, width(cols[i].header))) if cols[i].cut else natural[i]

    def needed(indexes: list[int]) -> int:
        return sum(narrowest(i) for i in indexes) + GAP * (len(indexes) - 1)

    while needed(shown) > screen.width:
        droppable = [i for i in shown if cols[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
    excess = sum(natural[i] for i in shown) + GAP * (len(shown) - 1) - screen.width
    while excess > 0:
        cuttable = [i for i in shown if widths[i] > narrowest(i)]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        step = min(excess, widths[widest] - narrowest(widest))
        widths[widest] -= step
        excess -= step
    return shown, widths


def cut_middle(text: str, columns: int) -> str:
    """``text`` in at most ``columns`` cells, its middle replaced by ``…`` when it is longer."""
    if width(text) <= columns:
        return text
    keep = max(0, columns - 1)
    head = _cells_from_start(text, (keep + 1) // 2)
    tail = _cells_from_start(text[::-1], keep - width(head))[::-1]
    return f"{head}…{tail}"


def _cells_from_start(text: str, columns: int) -> str:
    taken, used = [], 0
    for char in text:
        used += width(char)
        if used > columns:
            break
        taken.append(char)
    return "".join(taken)


def line(label: str, value: str, aside: str, screen: Screen) -> list[str]:
    """``label value  (aside)`` on one line when it fits the screen, else ``aside`` on the next line,
    under the value (a command to copy is never broken)."""
    one = f"{label}{value}  ({aside})"
    if screen.wide or width(one) <= screen.width:
        return [one]
    return [f"{label}{value}", " " * width(label) + aside]


def when(value: str | datetime | None) -> str:
    """An ISO instant as ``YYYY-MM-DD HH:MM`` China time (the time every rule of the system uses)."""
    if not value:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return china_time(at).strftime("%Y-%m-%d %H:%M")


class ProgressBar:
    """A rich progress bar on ``stream`` (stderr) when it is a terminal; silent otherwise. The total
    may be an estimate (a queue's message count): it grows to what was done."""

    def __init__(self, total: int, label: str, stream: IO[str], enabled: bool | None = None) -> None:
        self.total = max(0, total)
        self.done = 0
        self.enabled = _isatty(stream) if enabled is None else enabled
        self._progress: Progress | None = None
        if self.enabled:
            console = Console(file=stream, force_terminal=True, color_system=None, highlight=False)
            self._progress = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(label, total=self.total)
            self._progress.start()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.total = max(self.total, self.done)  # a queue's message count is approximate
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=self.total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress = None


def confirm(question: str, stdin: IO[str], stderr: IO[str]) -> bool:
    """Ask on stderr, read one line from stdin; only ``y``/``yes`` is a yes (end of input is a no)."""
    stderr.write(f"{question} [y/N] ")
    stderr.flush()
    answer = stdin.readline()
    if not answer:
        stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
