"""Stream rows out of an uploaded file: CSV, a workbook (.xlsx .xlsm .xlsb .xls .et .ods) or JSON Lines.

``open_rows`` gives a ``RowSource`` of ``SourceRow``s (``fast_rows`` for hot loops); ``detect_file``
and ``detect_path`` give the kind, or the refusal. One reader for every format, so that a row
number, a row problem and a refusal mean the same whatever the customer saved: the contract (row
numbers, values, problems, refusals, CSV encoding and delimiters) is docs/ingest.md.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.formats import sniff
from verifyfeed.ingest.headers import (
    HeaderMap,
    aliases_for,
    detect_kind,
    is_unlabelled,
    map_header,
    normalize_header,
    required_fields,
    required_labels,
)
from verifyfeed.models.records import JobKind
from verifyfeed.reasons import Reason, reason

CHUNK_BYTES = 64 * 1024
MIN_LINE_CAP = 1024 * 1024
SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
TITLE_ROWS_MAX = 5  # non-blank rows above the header that may be skipped as titles

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


# Line breaks that str.splitlines honours but CSV does not; their presence forces the slow split.
_ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # one `in` each: 10x faster than a regex scan
_CSV_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_BREAK = re.compile(r"[\r\n]")
_SEP_DIRECTIVE = re.compile(r"sep=(.)")

# Row flags raised by the line generator while the csv reader pulls the lines of one record.
_REPLACED = 1
_NUL = 2
_LONG_LINE = 4

_BLOCK_ROWS = 256  # clean CSV rows per block of ``RowSource.fast_rows``


@dataclass(slots=True)
class SourceRow:
    """One row: ``number`` as a spreadsheet shows it, ``values`` (canonical field → raw value, as the
    format gives it) and ``problem``, set when the reader could not read the row faithfully
    (docs/ingest.md#rows, #row-problems)."""

    number: int
    values: dict[str, object]
    problem: Reason | None = None


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Lines of a CSV file that are one record each: no quote character, no undecodable byte, no
    NUL, no over-long line, in file order; ``lines[i]`` (its terminator kept) is row ``first + i``.
    ``RowSource.line_items`` gives what the csv reader would have made of them."""

    first: int
    lines: list[str]


# A closing total row's label, whitespace removed: 合计 / 总计 / 小计 (a colon, a count may follow:
# 合计：共 8 人), or 共 N 人 / 条 / 名 (共计 too); half- or full-width digits, a trailing colon.
_COUNT = r"[0-9０-９][0-9０-９,，]{0,9}"
_SUMMARY_LABEL = re.compile(
    rf"(?:[合总小]计[:：]?(?:共计?)?(?:{_COUNT}[人条名]?)?|共计?{_COUNT}[人条名])[:：]?"
)
SUMMARY_NOTES_MAX = 10  # summary rows named one by one in the notes; the rest are counted


def summary_label(value: object) -> str | None:
    """``value`` as a summary row's label (its whitespace collapsed) when it is one: 合计, 共 8 人."""
    if type(value) is not str or ("计" not in value and "共" not in value):
        return None
    words = value.split()
    return " ".join(words) if _SUMMARY_LABEL.fullmatch("".join(words)) else None


def _empty(value: object) -> bool:
    return value is None or (type(value) is str and not value.strip())


class _Summaries:
    """The closing total rows of a file (a summary label in the name column or the first column,
    every other required cell empty): the reader skips them as it skips blank rows — they are no
    data row — and keeps their numbers and labels for the notes."""

    __slots__ = ("columns", "count", "found", "required", "required_names")

    def __init__(self, header: HeaderMap) -> None:
        where = {field: index for index, field in header.columns.items()}
        self.columns = tuple(dict.fromkeys((where["name"], 0)))  # the name column, the first column
        self.required_names = required_fields(header.kind)
        self.required = tuple(where[field] for field in self.required_names if field in where)
        self.found: list[tuple[int, str]] = []  # (row, label), the first SUMMARY_NOTES_MAX
        self.count = 0

    def may_hold(self, block: Sequence[Sequence[Any]]) -> bool:
        """Whether a block of rows may hold a summary row (a 计 or 共 in a label column): one test for
        the block, so that clean blocks stay blocks."""
        for index in self.columns:
            try:
                text = "\n".join(map(itemgetter(index), block))
            except (TypeError, IndexError):  # a workbook's number or date; a short row
                text = "\n".join(
                    [row[index] for row in block if len(row) > index and type(row[index]) is str]
                )
            if "计" in text or "共" in text:
                return True
        return False

    def skip(self, number: int, cells: Sequence[Any]) -> bool:
        """Whether row ``number`` is a summary row (then noted)."""
        count = len(cells)
        for index in self.columns:
            label = summary_label(cells[index] if index < count else None)
            if label is not None and all(_empty(cells[i]) for i in self.required if i != index and i < count):
                self.note(number, label)
                return True
        return False

    def skip_values(
        self, number: int, candidates: Iterable[tuple[str | None, object]], values: dict[str, object]
    ) -> bool:
        """``skip`` for JSON Lines: ``candidates`` are (field or ``None``, value) of the name and the
        first key, ``values`` the row's fields."""
        for field, value in candidates:
            label = summary_label(value)
            if label is not None and all(
                _empty(values.get(name)) for name in self.required_names if name != field
            ):
                self.note(number, label)
                return True
        return False

    def note(self, number: int, label: str) -> None:
        self.count += 1
        if len(self.found) < SUMMARY_NOTES_MAX:
            self.found.append((number, label))

    def notes(self) -> tuple[str, ...]:
        notes = [reason("note.summary_row", row=row, label=label).bilingual() for row, label in self.found]
        if self.count > len(self.found):
            notes.append(reason("note.summary_rows_more", rows=self.count - len(self.found)).bilingual())
        return tuple(notes)


# What ``RowSource.fast_rows`` yields: a ``SourceRow``; a block of clean CSV rows as
# ``(numbers, cells)``: their row numbers and their raw cells, in file order; or a ``LineBlock``.
CellBlock = tuple[list[int], list[list[str]]]
FastRow = SourceRow | CellBlock | LineBlock


class RowSource(Iterator[SourceRow]):
    """The rows of one file, plus what was learnt opening it: ``kind``, ``format`` (``"csv"``,
    ``"xlsx"``, ``"xlsb"``, ``"xls"``, ``"ods"``, ``"jsonl"``), ``encoding`` (``None`` for a workbook),
    ``header`` (a ``HeaderMap``; ``header.sheet`` names a workbook's sheet read) and ``sheet_rows``.

    Call ``close()`` (or use ``with``) to release a workbook early; the caller owns the stream."""

    def __init__(
        self,
        kind: JobKind,
        format: str,
        encoding: str | None,
        header: HeaderMap,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self.format = format
        self.encoding = encoding
        self.header = header
        # SourceRows, and (CSV) blocks of clean rows that ``__next__`` turns into SourceRows
        self._rows: Iterator[FastRow] = iter(())
        self._pending: list[SourceRow] = []  # the rest of a block, reversed
        self._pick = _row_picker(header)
        self._summaries = _Summaries(header)
        self._close = close
        self._line_blocks = False  # CSV: whether fast_rows yields LineBlocks
        self.delimiter = ","  # CSV: the delimiter in use
        self.max_field_chars = 0  # CSV: the longest value a row may have
        self.sheet_rows: int | None = None  # workbooks: the rows the sheet read spans, header included

    def __next__(self) -> SourceRow:
        while not self._pending:
            row = next(self._rows)
            if isinstance(row, SourceRow):
                return row
            items = self.line_items(row) if isinstance(row, LineBlock) else (row,)
            pick = self._pick
            pending: list[SourceRow] = []
            for item in items:
                if isinstance(item, SourceRow):
                    pending.append(item)
                elif not isinstance(item, LineBlock):
                    pending += [SourceRow(number, pick(cells)) for number, cells in zip(*item, strict=True)]
            pending.reverse()
            self._pending = pending
        return self._pending.pop()

    @property
    def summary_rows(self) -> tuple[tuple[int, str], ...]:
        """The summary rows skipped so far, (row number, label): the first ``SUMMARY_NOTES_MAX``."""
        return tuple(self._summaries.found)

    @property
    def notes(self) -> tuple[str, ...]:
        """What an operator should know about the file, for the report: the header's notes (title
        rows skipped), then the summary rows skipped so far — complete once every row is read."""
        return self.header.notes + self._summaries.notes()

    def facts(self) -> dict[str, object]:
        """``header.facts()`` with ``notes``: once the rows are read, the summary rows too."""
        return {**self.header.facts(), "notes": list(self.notes)}

    def line_items(self, block: LineBlock) -> Iterator[SourceRow | CellBlock]:
        """What the csv reader makes of ``block``'s lines: blocks of clean rows and ``SourceRow``s,
        exactly as ``fast_rows`` would have yielded them had the lines gone through it."""
        reader = csv.reader(block.lines, delimiter=self.delimiter, strict=True)
        width, pick, max_chars = self.header.width, self._pick, self.max_field_chars
        summaries = self._summaries
        numbers: list[int] = []
        cells_block: list[list[str]] = []
        number = block.first - 1
        while True:
            try:
                for cells in reader:
                    number += 1
                    if len(cells) == width:
                        numbers.append(number)
                        cells_block.append(cells)
                        continue
                    if cells_block:
                        yield from _settle(numbers, cells_block, pick, max_chars, summaries)
                        numbers, cells_block = [], []
                    item = _lone_row(number, cells, width, pick, max_chars, None, summaries)
                    if item is not None:
                        yield item
                break
            except csv.Error as exc:  # e.g. a value over the csv module's field limit
                if cells_block:
                    yield from _settle(numbers, cells_block, pick, max_chars, summaries)
                    numbers, cells_block = [], []
                number += 1
                yield SourceRow(number, {}, _csv_error_problem(exc, max_chars))
        if cells_block:
            yield from _settle(numbers, cells_block, pick, max_chars, summaries)

    def fast_rows(self, *, lines: bool = False) -> Iterator[FastRow]:
        """The same rows, for loops where a dict per row costs too much (the splitter's, whose C
        fast path takes the blocks). Rows the reader has nothing to say about come in blocks
        ``(numbers, cells)`` — their row numbers and raw cells, indexed like ``header.columns``:
        CSV rows that have no problem, are not blank and have exactly ``header.width`` cells, none
        over ``max_field_chars``; workbook rows whose header cells are all non-blank text
        (``_workbook_rows``). With ``lines=True``, whole 64 KiB CSV chunks without a quote, a bad
        byte, a NUL or an odd line break bypass the csv reader as a ``LineBlock`` of raw lines
        (one record each; small files never have one), which the caller may split itself or hand
        to ``line_items``. Every other row, and every JSON Lines row, is the ``SourceRow``
        iterating would give. Iterate one way or the other, not both."""
        self._line_blocks = lines
        return self._rows

    def close(self) -> None:
        """Stop the rows (later ``next`` raises ``StopIteration``) and release the file's resources."""
        rows, self._rows = self._rows, iter(())
        self._pending = []
        close, self._close = self._close, None
        if isinstance(rows, Generator):
            rows.close()
        if close is not None:
            close()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_rows(
    stream: IO[bytes],
    filename: str,
    kind: JobKind | None,
    *,
    sheet: str = "",
    max_field_chars: int = 4096,
) -> RowSource:
    """The rows of ``stream`` after its header, blank and summary rows skipped. The file's content
    picks the reader (``formats.sniff``), ``kind=None`` detects the kind from the header, and
    ``sheet`` names a workbook's sheet; a whole-file problem raises ``FileRejected``
    (docs/ingest.md#refusals). The header's title rows are in ``header.title_rows``."""
    start = stream.tell() if stream.seekable() else 0
    sample = _read_up_to(stream, CHUNK_BYTES)
    reader = sniff(sample, filename)
    if reader == "workbook":
        return _open_workbook(stream, start, sample, kind, sheet, max_field_chars)
    if reader == "jsonl":
        return _open_jsonl(stream, sample, kind, max_field_chars)
    return _open_csv(stream, sample, kind, max_field_chars)


def detect_file(stream: IO[bytes], filename: str, kind: JobKind | None = None, *, sheet: str = "") -> JobKind:
    """The kind of an uploaded file, read as the splitter reads it (its content, then its header,
    title rows skipped), or ``FileRejected`` saying why the splitter would refuse it: what the file
    is when it is not a spreadsheet, its header's own problem, or — ``kind`` not given — that the
    header does not tell (``header.kind_unknown``). Reads the header, not the rows."""
    with open_rows(stream, filename, kind, sheet=sheet) as source:
        return source.kind


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    # raw and network streams may return short reads before EOF
    parts: list[bytes] = []
    got = 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _resolve_kind(cells: Sequence[object], kind: JobKind | None) -> JobKind:
    if kind is not None:
        return kind
    detected = detect_kind(cells)
    if detected is None:
        raise FileRejected(
            "header.kind_unknown",
            repair_columns=required_labels(JobKind.LOST_REPAIR),
            audit_columns=required_labels(JobKind.CARRIER_AUDIT),
        )
    return detected


def _no_header(rows: int, kind: JobKind | None) -> FileRejected:
    """None of the first ``rows`` non-blank rows names a column: a text or sheet without a header."""
    if kind is None:
        return FileRejected(
            "header.not_found_either",
            rows=rows,
            repair_columns=required_labels(JobKind.LOST_REPAIR),
            audit_columns=required_labels(JobKind.CARRIER_AUDIT),
        )
    return FileRejected(
        "header.not_found", rows=rows, kind=reason(f"kind.{kind.value}"), columns=required_labels(kind)
    )


def _find_header(
    next_row: Callable[[], tuple[int, Sequence[object]] | None], kind: JobKind | None
) -> HeaderMap:
    """The header among the first non-blank rows ``next_row`` gives as (number, cells): the first
    row, or the first row with a recognised label after up to ``TITLE_ROWS_MAX`` rows without
    one (titles). A row with a recognised label is the header: its problem is raised as is; a row
    of the other kind's labels is said to be one (``header.other_kind``). When no row has a label,
    the file has no header (``header.not_found``): a text, or a sheet of data."""
    found = next_row()
    if found is None:
        raise FileRejected("header.no_row")
    titles: list[int] = []
    while found is not None:
        number, cells = found
        if not is_unlabelled(cells, kind):
            try:
                header = map_header(cells, _resolve_kind(cells, kind))
            except FileRejected as exc:
                if titles and exc.code in _HEADER_IN_ROW:  # a header below title rows, not a valid one
                    raise FileRejected.of(
                        exc.why.with_params(where=reason("header.in_row", row=number))
                    ) from None
                raise
            return replace(header, row=number, title_rows=tuple(titles))
        if kind is not None and (other := detect_kind(cells)) is not None:
            # the other kind's header: said as such, never skipped as a title
            raise FileRejected(
                "header.other_kind",
                found=reason(f"kind.{other.value}"),
                kind=reason(f"kind.{kind.value}"),
                columns=required_labels(kind),
            )
        titles.append(number)
        if len(titles) > TITLE_ROWS_MAX:
            break
        found = next_row()
    raise _no_header(len(titles), kind)


_HEADER_IN_ROW = frozenset({"header.missing_columns", "header.duplicate_columns"})


def _is_blank(cells: Sequence[object]) -> bool:
    return all(value is None or (type(value) is str and not value.strip()) for value in cells)


def _value_problem(values: dict[str, object], max_field_chars: int) -> Reason | None:
    for value in values.values():
        if type(value) is str:
            if len(value) > max_field_chars:
                return reason("problem.value_too_long", max=max_field_chars)
            if "\x00" in value:
                return _NUL_PROBLEM
    return None


_NUL_PROBLEM = reason("problem.nul")


def _row_picker(header: HeaderMap, empty: str | None = "") -> Callable[[Sequence[Any]], dict[str, object]]:
    """A function cells → {field: value}; missing trailing cells give ``None``. With ``empty=None``
    an empty cell ``""`` gives ``None`` too (workbooks: an empty cell, a merged cell outside its
    anchor, a formula never calculated — as openpyxl gave them)."""
    columns = tuple(header.columns.items())
    needed = max(index for index, _ in columns) + 1

    if empty is None:

        def pick_cells(cells: Sequence[Any]) -> dict[str, object]:
            count = len(cells)
            values: dict[str, object] = {}
            for index, field in columns:
                value = cells[index] if index < count else None
                values[field] = None if value == "" else value
            return values

        return pick_cells

    def pick(cells: Sequence[Any]) -> dict[str, object]:
        if len(cells) >= needed:
            return {field: cells[index] for index, field in columns}
        count = len(cells)
        return {field: cells[index] if index < count else None for index, field in columns}

    return pick


# --------------------------------------------------------------------------------------- CSV


def _guess_encoding(data: bytes) -> str:
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, False)
    bad = text.count("\ufffd")
    if bad == 0:
        return "utf-8"
    good = len(text) - len(text.encode("ascii", "ignore")) - bad
    return "utf-8" if good >= 2 * bad else "gb18030"


@dataclass(frozen=True, slots=True)
class _Chunk:
    lines: list[str]  # complete lines, terminators kept
    dirty: bool  # some line may carry a flag (U+FFFD, NUL): pulled through ``_flagged``
    plain: bool  # one record per line: no quote, nothing dirty, no cut or odd line break


class _CsvText:
    """Decodes the byte stream chunk by chunk and yields CSV lines (terminators kept).

    While the csv reader pulls the lines of one record, ``flags`` collects what those lines
    carried (U+FFFD from bad bytes, NUL, a cut over-long line); the row loop reads and clears it.
    """

    __slots__ = (
        "_chunks",
        "_queued",
        "_sample",
        "_source",
        "_stream",
        "encoding",
        "fed",
        "flags",
        "line_cap",
    )

    def __init__(self, stream: IO[bytes], sample: bytes, line_cap: int) -> None:
        self._stream = stream
        self._sample = sample
        self.line_cap = line_cap
        self._source: RowSource | None = None
        self.flags = 0
        self.fed = 0  # lines handed to the csv reader so far (compare ``reader.line_num``)
        self._chunks: Iterator[_Chunk] = self._chunk_lines()
        self._queued: _Chunk | None = None
        self.encoding: str | None = None
        if sample.startswith(_UTF8_BOM):
            self.encoding = "utf-8-sig"
        elif sample.startswith(_UTF16_BOMS):
            self.encoding = "utf-16"
        elif not sample.isascii():
            self.encoding = _guess_encoding(sample)

    @property
    def reported_encoding(self) -> str:
        # pure ASCII so far: valid UTF-8, and what we will report unless non-ASCII bytes say otherwise
        return self.encoding or "utf-8"

    def attach(self, source: RowSource) -> None:
        self._source = source

    def _decide(self, chunk: bytes) -> str:
        self.encoding = _guess_encoding(chunk)
        if self._source is not None:
            self._source.encoding = self.encoding
        return self.encoding

    def _texts(self) -> Iterator[str]:
        read = self._stream.read
        decode: Callable[[bytes, bool], str] | None = None
        if self.encoding is not None:
            decode = codecs.getincrementaldecoder(self.encoding)("replace").decode
        chunk = self._sample
        self._sample = b""
        while chunk:
            if decode is None:
                if chunk.isascii():
                    yield chunk.decode("ascii")
                    chunk = read(CHUNK_BYTES)
                    continue
                decode = codecs.getincrementaldecoder(self._decide(chunk))("replace").decode
            yield decode(chunk, False)
            chunk = read(CHUNK_BYTES)
        if decode is not None:
            tail = decode(b"", True)
            if tail:
                yield tail

    def lines(self) -> Iterator[str]:
        """The csv reader's input: the lines of the chunks handed to it. A C-level chain, so no
        generator resumes per line; the next chunk is taken only when the reader asks for a line
        past the last one (mid-record, or at a boundary when no chunk was queued)."""
        return chain.from_iterable(self._feed())

    def _feed(self) -> Iterator[Iterable[str]]:
        while True:
            chunk = self._queued
            if chunk is None:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return
            self._queued = None
            self.fed += len(chunk.lines)
            yield self._flagged(chunk.lines) if chunk.dirty else chunk.lines

    def next_chunk(self) -> _Chunk | None:
        """For the row loop, when the reader stands at a record boundary with every line handed
        to it read (``reader.line_num == fed``): the next chunk, to read as lines or to ``queue``."""
        return next(self._chunks, None)

    def queue(self, chunk: _Chunk) -> None:
        """Hand ``chunk`` to the csv reader: its lines come next."""
        self._queued = chunk

    def _flagged(self, lines: list[str]) -> Iterator[str]:
        for line in lines:
            if "\ufffd" in line:
                self.flags |= _REPLACED
            if "\x00" in line:
                self.flags |= _NUL
            yield line

    def _chunk_lines(self) -> Iterator[_Chunk]:
        """The lines of each chunk; flags are raised as the line carrying them is pulled."""
        cap = self.line_cap
        carry = ""  # the unfinished last line of the previous chunk (or one ending in a bare CR)
        carry_long = False  # carry is (the start of) a line longer than ``cap``
        skipping = False  # carry was cut; the rest of that line is being discarded
        for text in self._texts():
            if skipping:
                found = _BREAK.search(text)
                if found is None:
                    continue
                text = text[found.start() :]
                skipping = False
            if carry:
                text = carry + text
            first_long = carry_long
            odd = any(char in text for char in _ODD_BREAKS)
            pieces = _CSV_LINE.findall(text) if odd else text.splitlines(True)
            carry, carry_long = "", False
            if pieces[-1][-1] != "\n":
                carry = pieces.pop()
                carry_long = first_long and not pieces
                if len(carry) > cap:
                    carry_long = True
                    if carry[-1] != "\r":  # not a complete line waiting for a possible LF
                        carry, skipping = carry[:cap], True
                if not pieces:
                    continue
            if first_long:
                self.flags |= _LONG_LINE
            dirty = "\ufffd" in text or "\x00" in text
            yield _Chunk(pieces, dirty, not (dirty or first_long or odd or '"' in text))
        if carry:
            if carry_long:
                self.flags |= _LONG_LINE
            yield _Chunk([carry], True, False)


def _csv_error_problem(exc: csv.Error, max_field_chars: int) -> Reason:
    message = str(exc)
    if "field larger than field limit" in message:
        return reason("problem.value_too_long", max=max_field_chars)
    if "unexpected end of data" in message:
        return reason("problem.unterminated_quote")
    if "expected after" in message:
        return reason("problem.bad_quote")
    return reason("problem.malformed_csv")


def _sniff_delimiter(sample: bytes, encoding: str | None) -> tuple[str, bool]:
    """(delimiter, whether the first line is an Excel ``sep=X`` directive)."""
    head = sample.decode(encoding or "utf-8", "replace")
    for line in head.splitlines():
        if not line.strip():
            continue
        directive = _SEP_DIRECTIVE.fullmatch(line)
        if directive is not None:
            return directive.group(1), True
        if "," not in line:
            if "\t" in line:
                return "\t", False
            if ";" in line:
                return ";", False
            continue  # no delimiter at all: a title line above the header says nothing
        return ",", False
    return ",", False


def _open_csv(stream: IO[bytes], sample: bytes, kind: JobKind | None, max_field_chars: int) -> RowSource:
    """CSV, streamed in 64 KiB chunks, never read whole (docs/ingest.md#csv). The ``csv`` module's
    global field-size limit is raised to at least ``max_field_chars + 1``; a field over it is a row
    problem, not a crash."""
    if csv.field_size_limit() <= max_field_chars:
        csv.field_size_limit(max_field_chars + 1)
    text = _CsvText(stream, sample, max(MIN_LINE_CAP, 16 * max_field_chars))
    lines = text.lines()
    delimiter, directive = _sniff_delimiter(sample, text.encoding)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)

    number = 0

    def next_row() -> tuple[int, list[str]] | None:
        nonlocal number, directive
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return None
            except csv.Error:
                raise FileRejected("header.invalid_csv") from None
            if directive and not _is_blank(cells):
                directive = False
                if delimiter.join(cells) == "sep=" + delimiter:
                    continue  # Excel hides this line, so it is not a row
            number += 1
            if text.flags & _REPLACED:
                raise FileRejected("header.encoding", encoding=text.reported_encoding)
            if text.flags:
                raise FileRejected("header.unreadable")
            if not _is_blank(cells):
                return number, cells

    header = _find_header(next_row, kind)
    resolved = header.kind
    source = RowSource(resolved, "csv", text.reported_encoding, header)
    source.delimiter = delimiter
    source.max_field_chars = max_field_chars
    text.attach(source)
    source._rows = _csv_rows(reader, text, source, number, max_field_chars)
    return source


def _flag_problem(flags: int, source: RowSource, line_cap: int) -> Reason:
    if flags & _REPLACED:
        return reason("problem.encoding", encoding=source.encoding or "utf-8")
    if flags & _NUL:
        return _NUL_PROBLEM
    return reason("problem.line_too_long", max=line_cap)


def _settle(
    numbers: list[int],
    block: list[list[str]],
    pick: Callable[[Sequence[Any]], dict[str, object]],
    max_chars: int,
    summaries: _Summaries,
) -> Iterator[SourceRow | CellBlock]:
    """Rows of the header's width with no flag: the block as it is when none is blank, a summary
    row or has an over-long value (one test for all), else row by row."""
    joined = list(map("".join, block))
    if (
        all(joined)
        and not any(map(str.isspace, joined))
        and max(map(len, joined)) <= max_chars
        and not summaries.may_hold(block)
    ):
        yield numbers, block
        return
    strip = str.strip
    for row_number, cells in zip(numbers, block, strict=True):
        if not any(map(strip, cells)) or summaries.skip(row_number, cells):
            continue
        if max(map(len, cells)) > max_chars:
            yield SourceRow(row_number, pick(cells), reason("problem.value_too_long", max=max_chars))
        else:
            yield [row_number], [cells]


def _lone_row(
    number: int,
    cells: list[str],
    width: int,
    pick: Callable[[Sequence[Any]], dict[str, object]],
    max_chars: int,
    flag_problem: Reason | None,
    summaries: _Summaries,
) -> SourceRow | None:
    """A row that cannot join a block (flagged, or not the header's width); ``None`` when blank or
    a summary row."""
    if not any(map(str.strip, cells)):
        return None
    if flag_problem is None and summaries.skip(number, cells):
        return None
    problem = flag_problem
    if problem is None:
        if len(cells) > width and any(map(str.strip, cells[width:])):
            used = len(cells)
            while not cells[used - 1].strip():
                used -= 1
            problem = reason("problem.extra_cells", cells=used, width=width)
        elif max(map(len, cells)) > max_chars:
            problem = reason("problem.value_too_long", max=max_chars)
    return SourceRow(number, pick(cells), problem)


def _csv_rows(
    reader: Any,  # a csv reader over ``text.lines()``
    text: _CsvText,
    source: RowSource,
    number: int,
    max_field_chars: int,
) -> Iterator[FastRow]:
    header = source.header
    width = header.width
    pick = _row_picker(header)
    summaries = source._summaries
    line_cap = text.line_cap
    numbers: list[int] = []
    block: list[list[str]] = []

    def settle() -> Iterator[SourceRow | CellBlock]:
        return _settle(numbers, block, pick, max_field_chars, summaries)

    while True:
        try:
            if source._line_blocks and reader.line_num == text.fed:
                # a record boundary with every line handed over read: plain chunks skip the reader
                chunk = text.next_chunk()
                while chunk is not None and chunk.plain:
                    if block:
                        yield from settle()
                        numbers, block = [], []
                    yield LineBlock(number + 1, chunk.lines)
                    number += len(chunk.lines)
                    chunk = text.next_chunk()
                if chunk is None:
                    break
                text.queue(chunk)
            for cells in reader:
                number += 1
                if not text.flags and len(cells) == width:
                    numbers.append(number)
                    block.append(cells)
                    if len(block) >= _BLOCK_ROWS:
                        yield from settle()
                        numbers, block = [], []
                else:
                    if block:
                        yield from settle()
                        numbers, block = [], []
                    flags = text.flags
                    text.flags = 0
                    item = _lone_row(
                        number,
                        cells,
                        width,
                        pick,
                        max_field_chars,
                        _flag_problem(flags, source, line_cap) if flags else None,
                        summaries,
                    )
                    if item is not None:
                        yield item
                if reader.line_num == text.fed and source._line_blocks:
                    break
            else:
                break
        except csv.Error as exc:
            if block:
                yield from settle()
                numbers, block = [], []
            number += 1
            flags, text.flags = text.flags, 0
            problem = (
                _flag_problem(flags, source, line_cap) if flags else _csv_error_problem(exc, max_field_chars)
            )
            yield SourceRow(number, {}, problem)
    if block:
        yield from settle()


# -------------------------------------------------------------------------------------- XLSX


def _seekable_copy(
    stream: IO[bytes], start: int, sample: bytes
) -> tuple[IO[bytes], Callable[[], None] | None]:
    if stream.seekable():
        stream.seek(start)
        return stream, None
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - closed by RowSource
    spool.write(sample)
    shutil.copyfileobj(stream, spool, CHUNK_BYTES)
    spool.seek(0)
    return spool, spool.close


def _open_workbook(
    stream: IO[bytes],
    start: int,
    sample: bytes,
    kind: JobKind | None,
    sheet: str,
    max_field_chars: int,
) -> RowSource:
    """A workbook of any format through python-calamine (``ingest/workbooks.py``): the sheet chosen,
    its bombs checked before it is loaded, its header found; the rows streamed from the loaded sheet.
    A seekable stream is read in place; a non-seekable one is spooled to a temporary file first."""
    from verifyfeed.ingest import workbooks  # python-calamine: only functions that read workbooks load it

    file, release = _seekable_copy(stream, start, sample)
    origin = 0 if release is not None else start
    book: Any = None
    guard: workbooks.SheetGuard | None = None

    def close() -> None:
        # idempotent, so the row generator and RowSource.close may each call it
        nonlocal book, guard
        if book is not None:
            book.close()
            book = None
        if guard is not None:
            guard.close()
            guard = None
        if release is not None:
            release()

    try:
        fmt = workbooks.identify(file, origin, sample.startswith(_OLE2))
        guard = workbooks.SheetGuard(file, origin, fmt)
        guard.check_book()
        file.seek(origin)
        book = workbooks.open_book(file, fmt)
        chosen = _choose_sheet(book, guard, sheet, kind, workbooks)
    except BaseException:
        close()
        raise
    name, data, rows, header, number = chosen
    source = RowSource(header.kind, fmt, None, replace(header, sheet=name), close)
    source._pick = _row_picker(header, empty=None)
    source.sheet_rows = int(data.end[0]) + 1 if data.end else 0
    if fmt == "ods" and source.sheet_rows >= workbooks.ODS_MAX_ROWS:  # rows past it would be lost
        close()
        raise FileRejected("file.ods_row_limit", sheet=name, max=f"{workbooks.ODS_MAX_ROWS:,}")
    source._rows = _workbook_rows(
        rows, source.header, number, max_field_chars, close, _offset(data), source._summaries
    )
    return source


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# a header problem that says the sheet has the wrong columns, rather than no list at all
_WRONG_COLUMNS = frozenset({"header.missing_columns", "header.duplicate_columns", "header.other_kind"})

_Chosen = tuple[str, Any, Iterator[list[Any]], HeaderMap, int]


def _choose_sheet(book: Any, guard: Any, sheet: str, kind: JobKind | None, workbooks: Any) -> _Chosen:
    """The sheet to read: ``sheet`` when named; else the one visible worksheet whose header
    matches (hidden sheets, chart and macro sheets ignored), or ``file.sheets_ambiguous`` naming
    every visible sheet that matches. When none matches, the most telling refusal: a sheet with the
    wrong columns over one without a header, named when the workbook has several sheets."""
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    if sheet:
        if sheet not in book.sheet_names:
            raise FileRejected("file.sheet_missing", sheet=repr(sheet))
        candidates = [sheet]
    else:
        candidates = [
            meta.name
            for meta in book.sheets_metadata
            if meta.visible == SheetVisibleEnum.Visible and meta.typ == SheetTypeEnum.WorkSheet
        ]
        if not candidates:
            raise FileRejected("file.no_worksheet")
    found: list[_Chosen] = []
    refusals: list[tuple[str, FileRejected]] = []
    for name in candidates:
        guard.check(name)
        try:
            data = book.get_sheet_by_name(name)
        except Exception:  # noqa: BLE001 - calamine's XML, zip and format errors
            raise FileRejected("file.sheet_damaged", sheet=name) from None
        try:
            rows, header, number = _sheet_header(data, kind)
        except FileRejected as exc:
            refusals.append((name, exc))
            continue
        found.append((name, data, rows, header, number))
    if len(found) > 1:
        raise FileRejected("file.sheets_ambiguous", sheets=tuple(name for name, *_ in found))
    if found:
        return found[0]
    name, refusal = next(((n, e) for n, e in refusals if e.code in _WRONG_COLUMNS), refusals[0])
    if (
        len(book.sheet_names) > 1
        and "where" in dict(refusal.why.params)
        and not dict(refusal.why.params)["where"]
    ):
        raise FileRejected.of(refusal.why.with_params(where=reason("header.in_sheet", sheet=name))) from None
    raise refusal


def _sheet_header(data: Any, kind: JobKind | None) -> tuple[Iterator[list[Any]], HeaderMap, int]:
    """A loaded sheet's rows, its header, and the number of the last row read to find it."""
    rows: Iterator[list[Any]] = iter(data.iter_rows())
    offset = _offset(data)
    number = 0

    def next_row() -> tuple[int, Sequence[object]] | None:
        nonlocal number
        for cells in rows:
            number += 1
            if not _is_blank(cells):
                return number, [""] * offset + cells if offset else cells
        return None

    header = _find_header(next_row, kind)
    return rows, header, number


def _offset(data: Any) -> int:
    """Columns left of the sheet's used area: calamine's rows start at its first used column."""
    start = data.start
    return int(start[1]) if start else 0


def _workbook_rows(
    rows: Iterator[list[Any]],
    header: HeaderMap,
    number: int,
    max_field_chars: int,
    close: Callable[[], None],
    offset: int,
    summaries: _Summaries,
) -> Iterator[FastRow]:
    """The rows after the header, ``_BLOCK_ROWS`` at a time: when every row of a block has its
    header's cells as non-blank text within ``max_field_chars`` and without NUL, and no row is a
    summary row, the block as it is (``(numbers, cells)``, cells indexed like ``header.columns``);
    else row by row, each such row in a block of its own and any other non-blank row that is not a
    summary row as a ``SourceRow`` (empty cells ``None``)."""
    pick = _row_picker(header, empty=None)
    getter = itemgetter(*header.columns)  # two columns at least: every kind requires three
    pad = [""] * offset
    try:
        while chunk := list(islice(rows, _BLOCK_ROWS)):
            if offset:
                chunk = [pad + cells for cells in chunk]
            numbers = list(range(number + 1, number + 1 + len(chunk)))
            number += len(chunk)
            try:
                joined: list[str] | None = list(map("".join, map(getter, chunk)))
            except TypeError:  # a number, a date or a boolean among the header's cells
                joined = None
            if (
                joined is not None
                and all(joined)
                and not any(map(str.isspace, joined))
                and max(map(len, joined)) <= max_field_chars
                and "\x00" not in "".join(joined)
                and not summaries.may_hold(chunk)
            ):
                yield numbers, chunk
                continue
            for row_number, cells in zip(numbers, chunk, strict=True):
                if summaries.skip(row_number, cells):
                    continue
                picked = getter(cells)
                if all(type(value) is str for value in picked):
                    text = "".join(picked)
                    if text and not text.isspace() and len(text) <= max_field_chars and "\x00" not in text:
                        yield [row_number], [cells]
                        continue
                if _is_blank(cells):
                    continue
                values = pick(cells)
                yield SourceRow(row_number, values, _value_problem(values, max_field_chars))
    finally:
        close()  # idempotent: RowSource.close may call it again


# ------------------------------------------------------------------------------- JSON Lines


def _byte_lines(stream: IO[bytes], sample: bytes, cap: int) -> Iterator[tuple[bytes, bool]]:
    """(line without its LF, cut) pairs; a line over ``cap`` bytes is cut and flagged."""
    carry = b""
    skipping = False
    chunk = sample
    read = stream.read
    while chunk:
        if skipping:
            at = chunk.find(b"\n")
            if at < 0:
                chunk = read(CHUNK_BYTES)
                continue
            skipping = False
            yield carry, True
            carry = b""
            chunk = chunk[at + 1 :]
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for part in parts:
            yield part, False
        if len(carry) > cap:
            carry, skipping = carry[:cap], True
        chunk = read(CHUNK_BYTES)
    if carry or skipping:
        yield carry, skipping


def _parse_json_line(line: bytes) -> tuple[dict[str, Any] | None, Reason | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, reason("problem.encoding", encoding="utf-8")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None, reason("problem.invalid_json")
    if not isinstance(parsed, dict):
        return None, reason("problem.not_json_object")
    return parsed, None


def _open_jsonl(stream: IO[bytes], sample: bytes, kind: JobKind | None, max_field_chars: int) -> RowSource:
    """JSON Lines: the keys of the first object are the header (docs/ingest.md#json-lines)."""
    if sample.startswith(_UTF8_BOM):
        sample = sample[len(_UTF8_BOM) :]
    lines = _byte_lines(stream, sample, max(MIN_LINE_CAP, 16 * max_field_chars))
    number = 0
    first: dict[str, Any] | None = None
    for line, cut in lines:
        number += 1
        if not line.strip():
            continue
        first, problem = _parse_json_line(line)
        if first is None or cut:
            raise FileRejected("file.jsonl_first_line", problem=problem or reason("problem.too_long"))
        break
    if first is None:
        raise FileRejected("file.no_json_object")
    if is_unlabelled(list(first), kind):
        raise _no_header(1, kind)
    resolved = _resolve_kind(list(first), kind)
    header = replace(map_header(list(first), resolved), row=number)  # the keys of the first object
    source = RowSource(resolved, "jsonl", "utf-8", header)
    source._rows = _jsonl_rows(first, number, lines, resolved, max_field_chars, source._summaries)
    return source


def _jsonl_rows(
    first: dict[str, Any],
    first_number: int,
    lines: Iterator[tuple[bytes, bool]],
    kind: JobKind,
    max_field_chars: int,
    summaries: _Summaries,
) -> Iterator[SourceRow]:
    aliases = aliases_for(kind)
    keys: dict[str, str | None] = {}  # raw key → field; keys repeat on every line

    def to_row(number: int, obj: dict[str, Any]) -> SourceRow:
        values: dict[str, object] = {}
        doubled: str | None = None
        for key, value in obj.items():
            field = keys.get(key, "")
            if field == "":
                field = aliases.get(normalize_header(key))
                if len(keys) < 1024:
                    keys[key] = field
            if field is None:
                continue
            if field in values:
                doubled = field
            values[field] = value
        problem = (
            reason("problem.duplicate_key", field=doubled)
            if doubled
            else _value_problem(values, max_field_chars)
        )
        return SourceRow(number, values, problem)

    yield to_row(first_number, first)
    number = first_number
    for line, cut in lines:
        number += 1
        if cut:
            yield SourceRow(
                number, {}, reason("problem.line_too_long_bytes", max=max(MIN_LINE_CAP, 16 * max_field_chars))
            )
            continue
        if not line.strip():
            continue
        obj, problem = _parse_json_line(line)
        if obj is None:
            yield SourceRow(number, {}, problem)
            continue
        row = to_row(number, obj)
        if row.problem is None and obj:
            first_key = next(iter(obj))  # the first column
            candidates = (("name", row.values.get("name")), (keys.get(first_key) or None, obj[first_key]))
            if summaries.skip_values(number, candidates, row.values):
                continue
        yield row


def detect_path(path: Path, kind: JobKind | None = None, *, sheet: str = "") -> JobKind:
    """``detect_file`` on a local file, for what uploads one (the operators' ``drop``, the local
    stack): a header that does not tell is read as the kind of the file's folder
    (``samples/lost-repair/``) when it is in one. Raises ``FileRejected`` (``header.kind_unknown``
    included) and ``OSError`` when the file cannot be read."""

    def detect(as_kind: JobKind | None) -> JobKind:
        with path.open("rb") as stream:
            return detect_file(stream, path.name, as_kind, sheet=sheet)

    try:
        return detect(kind)
    except FileRejected as exc:
        folder = path.parent.name
        if kind is None and exc.code == "header.kind_unknown" and folder in {k.value for k in JobKind}:
            return detect(JobKind(folder))
        raise
