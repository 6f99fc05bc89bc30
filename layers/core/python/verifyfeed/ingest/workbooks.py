"""Workbooks (.xlsx, .xlsm, strict OOXML, .xlsb, .xls, WPS .et, .ods) opened with python-calamine,
guarded against bombs by size, not ratio (docs/decisions.md#workbooks).

``identify`` tells a zip's or OLE2 file's workbook format, ``open_book`` opens it, ``SheetGuard``
checks each sheet before calamine loads it. Why the guard: calamine loads a whole sheet at once, in
Rust, into a dense grid, so a 5 KB workbook with cells at A1 and XFD1048576 asks for 512 GiB and
aborts the process.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from typing import IO
from xml.sax.saxutils import unescape

from python_calamine import CalamineError, CalamineWorkbook, PasswordError

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.formats import check_workbook

MAX_EXPANDED_BYTES = 512 * 1024 * 1024  # the parts one sheet needs, expanded (XML, shared strings)
MAX_CELLS = 10_000_000  # rows × columns of the used area of the sheet read (about 32 bytes each)
MAX_DECLARED_BYTES = 4 * 1024 * 1024 * 1024  # the sizes the zip directory declares, all members together
ODS_MAX_ROWS = 1_048_576  # calamine gives no row of an .ods sheet past this one, and says nothing
_SMALL_PART_BYTES = 16 * 1024 * 1024  # workbook.xml and its relationships, parsed here
_CHUNK = 1024 * 1024

_OLE2_NAMES = (  # directory entry names, UTF-16LE, as an OLE2 file stores them
    ("EncryptedPackage", "password"),
    ("WordDocument", "Word (.doc)"),
    ("PowerPoint Document", "PowerPoint (.ppt)"),
)
# the r="..." of a cell (column letters, row digits) or of a row (digits), whatever its position
_CELL_COLUMN = re.compile(rb" r=\"([A-Z]{1,3})\d")
_ROW_NUMBER = re.compile(rb" r=\"[A-Z]{0,3}(\d{1,7})\"")
_SHEET = re.compile(r"<(?:\w+:)?sheet\s[^>]*>")
_RELATIONSHIP = re.compile(r"<(?:\w+:)?Relationship\s[^>]*>")
_ATTRIBUTE = re.compile(r"(?:\w+:)?(\w+)=\"([^\"]*)\"")
_BIG_ROW = re.compile(rb" r=\"[A-Z]{0,3}\d{7}")
_NARROW = MAX_CELLS // 999_999  # columns a sheet of 6-digit rows may have within MAX_CELLS
# ODS: a row repeated (its body: up to the end of the row), and the repetitions of its cells
_ODS_REPEATED_ROW = re.compile(
    rb"<table:table-row[^>]*number-rows-repeated=\"(\d+)\"[^>]*>(.*?)</table:table-row>", re.S
)
_ODS_REPEATED_CELLS = re.compile(rb"number-columns-repeated=\"(\d+)\"")
_ODS_TABLE = re.compile(rb"<table:table table:name=\"([^\"]*)\"")
_ODS_CARRY = 64 * 1024  # a repeated row cut by a chunk boundary is seen whole with the next chunk


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + letter - 64
    return number


def identify(file: IO[bytes], start: int, ole2: bool) -> str:
    """The workbook format of a zip (``ole2=False``) or OLE2 file at ``start`` — ``"xlsx"``, ``"xlsb"``,
    ``"ods"`` or ``"xls"`` — or ``FileRejected`` saying what it is instead: a Word or PowerPoint
    document, a plain archive, a password-protected workbook (Office encrypts one into an OLE2 file
    holding an ``EncryptedPackage`` stream)."""
    file.seek(start)
    if ole2:
        return _identify_ole2(file)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise FileRejected("file.zip_damaged") from None
    with archive:
        if sum(member.file_size for member in archive.infolist()) > MAX_DECLARED_BYTES:
            raise FileRejected("file.zip_bomb_size", mb=MAX_DECLARED_BYTES // (1024 * 1024))
        return check_workbook(archive)


def _identify_ole2(file: IO[bytes]) -> str:
    """.xls (and WPS .et, the same BIFF8 in the same container) unless the directory names an
    encrypted package or a Word or PowerPoint stream. The directory may sit anywhere in the file:
    the whole file is searched (bytes.find, GB/s; uploads are at most MAX_FILE_BYTES)."""
    needles = [(name.encode("utf-16-le"), what) for name, what in _OLE2_NAMES]
    keep = max(len(needle) for needle, _ in needles)
    tail = b""
    while chunk := file.read(_CHUNK):
        window = tail + chunk
        for needle, what in needles:
            if needle in window:
                if what == "password":
                    raise FileRejected("file.password")
                raise FileRejected("file.office_document", format=what)
        tail = window[-keep:]
    return "xls"


def open_book(file: IO[bytes], fmt: str) -> CalamineWorkbook:
    """calamine's workbook; ``FileRejected`` for a password, or a file calamine cannot read."""
    try:
        return CalamineWorkbook.from_filelike(file)
    except PasswordError:
        raise FileRejected("file.password") from None
    except (CalamineError, OSError, ValueError):
        raise FileRejected("file.workbook_unreadable", format=FORMAT_NAMES[fmt]) from None


FORMAT_NAMES = {"xlsx": ".xlsx", "xlsb": ".xlsb", "ods": ".ods", "xls": ".xls"}


class SheetGuard:
    """Bomb checks for the sheets of one workbook, before calamine loads one. The parts calamine will
    parse (the shared strings, the sheet's XML or .xlsb binary part, an .ods's ``content.xml``) are
    streamed through zlib, stopping as soon as more than ``MAX_EXPANDED_BYTES`` came out
    (``file.zip_bomb_size``); an XML sheet's cell references are read on the way, and a sheet whose
    rows × columns up to its last cell exceed ``MAX_CELLS`` is ``file.sheet_too_large``. A .xls
    (BIFF8) is not checked: at most 65,536 × 256 cells by its format, and ``MAX_FILE_BYTES`` like
    any upload."""

    def __init__(self, file: IO[bytes], start: int, fmt: str) -> None:
        self.fmt = fmt
        self._archive: zipfile.ZipFile | None = None
        self._parts: dict[str, str] = {}  # sheet name → its part (xlsx)
        self._shared = 0  # the shared strings' expanded size
        if fmt == "xls":
            return
        file.seek(start)
        self._archive = zipfile.ZipFile(file)
        if fmt == "xlsx":
            self._parts = self._sheet_parts()

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()

    def check_book(self) -> None:
        """What calamine parses when it opens the workbook, before it does: the shared strings
        (.xlsx, .xlsb); every sheet of an .ods (content.xml holds them all)."""
        archive = self._archive
        if archive is None:
            return
        if self.fmt == "ods":
            self._check_ods()
            return
        names = set(archive.namelist())
        for name in ("xl/sharedStrings.xml", "xl/sharedStrings.bin"):
            if name in names:
                self._shared += self._expand(name, MAX_EXPANDED_BYTES - self._shared)

    def check(self, sheet: str) -> None:
        """The sheet ``sheet``, before calamine loads it (``check_book`` first)."""
        archive = self._archive
        if archive is None or self.fmt == "ods":
            return
        names = set(archive.namelist())
        budget = MAX_EXPANDED_BYTES - self._shared
        part = self._parts.get(sheet)
        if self.fmt == "xlsb" or part is None or part not in names:
            # .xlsb, or a sheet this module cannot place: every worksheet part counts against the cap
            for name in sorted(names):
                if name.startswith("xl/worksheets/") and not name.endswith(".rels"):
                    budget -= self._expand(name, budget)
            return
        self._check_xml_sheet(sheet, part, budget)

    def _expand(self, name: str, budget: int, scan: re.Pattern[bytes] | None = None) -> int:
        """The expanded size of member ``name``, streamed; ``file.zip_bomb_size`` past ``budget``."""
        assert self._archive is not None
        total = 0
        try:
            with self._archive.open(name) as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > budget:
                        raise FileRejected("file.zip_bomb_size", mb=MAX_EXPANDED_BYTES // (1024 * 1024))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError):
            raise FileRejected("file.zip_damaged") from None
        return total

    def _check_xml_sheet(self, sheet: str, part: str, budget: int) -> None:
        """Expanded size within ``budget``; used area within ``MAX_CELLS``. The first pass reads only
        the column letters and looks for a 7-digit row: a sheet at most ``_NARROW`` columns wide
        whose rows all have 6 digits cannot exceed the cap (all but wide sheets stop there); else a
        second pass reads every row number."""
        right, big = self._scan(part, budget, rows=False)
        if right <= _NARROW and not big:
            return
        right, bottom = self._scan(part, budget, rows=True)
        if bottom * right > MAX_CELLS:
            self._too_large(sheet, bottom, right)

    def _scan(self, part: str, budget: int, *, rows: bool) -> tuple[int, int]:
        """(the rightmost column, the last row — or whether a 7-digit row occurs) of ``part``."""
        assert self._archive is not None
        total = right = bottom = 0
        columns: set[bytes] = set()
        carry = b""
        try:
            with self._archive.open(part) as member:
                while True:
                    chunk = member.read(_CHUNK)
                    total += len(chunk)
                    if total > budget:
                        raise FileRejected("file.zip_bomb_size", mb=MAX_EXPANDED_BYTES // (1024 * 1024))
                    # a reference cut by the chunk boundary is read whole with the next chunk
                    cut = chunk.rfind(b"<") if chunk else len(chunk)
                    text, carry = carry + chunk[:cut], chunk[cut:]
                    columns.update(_CELL_COLUMN.findall(text))
                    if rows:
                        numbers = set(_ROW_NUMBER.findall(text))
                        bottom = max(bottom, *map(int, numbers)) if numbers else bottom
                    elif not bottom and _BIG_ROW.search(text):
                        bottom = 1
                    if not chunk:
                        break
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError):
            raise FileRejected("file.zip_damaged") from None
        if columns:
            right = max(map(_column_number, columns))
        return right, bottom

    def _check_ods(self) -> None:
        """content.xml holds every sheet: its expanded size, and no row holding a value repeated
        over more than ``MAX_CELLS`` cells (an ODS row may declare that it repeats a million times,
        each of its cells thousands of times; LibreOffice writes such rows for the empty rest of a
        sheet, which holds no value and costs nothing). calamine has a cap of its own, 100M cells."""
        assert self._archive is not None
        total = 0
        carry = b""
        name = ""  # the sheet (table) the last chunk ended in
        try:
            with self._archive.open("content.xml") as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > MAX_EXPANDED_BYTES:
                        raise FileRejected("file.zip_bomb_size", mb=MAX_EXPANDED_BYTES // (1024 * 1024))
                    text = carry + chunk
                    table = name
                    for match in _ODS_REPEATED_ROW.finditer(text):
                        body = match[2]
                        if b"office:value" not in body and b"<text:p" not in body:
                            continue
                        repeats = [int(n) for n in _ODS_REPEATED_CELLS.findall(body)]
                        width = sum(repeats) + body.count(b"<table:table-cell") - len(repeats)
                        if int(match[1]) * max(width, 1) > MAX_CELLS:
                            tables = _ODS_TABLE.findall(text, 0, match.start())
                            table = tables[-1].decode("utf-8", "replace") if tables else table
                            self._too_large(unescape(table), int(match[1]), width)
                    tables = _ODS_TABLE.findall(text)
                    name = tables[-1].decode("utf-8", "replace") if tables else name
                    carry = text[-_ODS_CARRY:]
        except KeyError:
            raise FileRejected("file.workbook_unreadable", format=".ods") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError):
            raise FileRejected("file.zip_damaged") from None

    @staticmethod
    def _too_large(sheet: str, rows: int, columns: int) -> None:
        raise FileRejected(
            "file.sheet_too_large",
            sheet=sheet,
            rows=f"{rows:,}",
            columns=f"{columns:,}",
            max=f"{MAX_CELLS:,}",
        )

    def _sheet_parts(self) -> dict[str, str]:
        """Sheet name → zip member, from xl/workbook.xml and its relationships (transitional or
        strict OOXML: namespace prefixes are ignored). Read with regular expressions, not an XML
        parser: nothing here expands entities."""
        try:
            book = self._small_part("xl/workbook.xml")
            rels = self._small_part("xl/_rels/workbook.xml.rels")
        except KeyError:
            return {}
        targets: dict[str, str] = {}
        for element in _RELATIONSHIP.findall(rels):
            attributes = dict(_ATTRIBUTE.findall(element))
            targets[attributes.get("Id", "")] = attributes.get("Target", "")
        parts: dict[str, str] = {}
        for element in _SHEET.findall(book):
            attributes = dict(_ATTRIBUTE.findall(element))
            target = targets.get(attributes.get("id", ""), "")
            if target:
                name = unescape(attributes.get("name", ""), {"&quot;": '"', "&apos;": "'"})
                parts[name] = target.lstrip("/") if target.startswith("/") else "xl/" + target
        return parts

    def _small_part(self, name: str) -> str:
        assert self._archive is not None
        with self._archive.open(name) as member:
            data = member.read(_SMALL_PART_BYTES + 1)
        if len(data) > _SMALL_PART_BYTES:
            raise FileRejected("file.zip_bomb_size", mb=MAX_EXPANDED_BYTES // (1024 * 1024))
        return data.decode("utf-8", "replace")
