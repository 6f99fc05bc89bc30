"""ingest.readers on XLSX: sheets, merged cells, formulas, numbers, zip bombs."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from openpyxl import Workbook

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest import workbooks
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, SourceRow, open_rows
from verifyfeed.models.records import JobKind
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.idcard import check_digit
from verifyfeed.rules.lost_repair import normalize_repair_row

ID1 = "11010519491231002X"
ID2 = "11010519800101001" + check_digit("11010519800101001")
ID_AS_NUMBER = 110105198001010011


def problem(row: SourceRow) -> str | None:
    """The English text of the reader's problem with the row, if any."""
    return None if row.problem is None else row.problem.en


def build(path: Path) -> Path:
    workbook = Workbook()
    data = workbook.active
    assert data is not None
    data.title = "名单"
    data.append(["姓名", "身份证号", "曾用手机号", "授权码", "备注"])
    data.append(["张三", ID1, "13800138000", "A1", "vip"])  # row 2
    data.append(["李四", ID_AS_NUMBER, 13900139000, "A2", None])  # row 3: numbers, as Excel stores them
    data.append([None, None, None, None, None])  # row 4: blank
    data.append(["王五", ID2, None, '=CONCAT("A","3")', None])  # row 5: formula never calculated
    data.append(["赵六", ID2, None, "A4", None])  # row 6: name merged down into row 7
    data.append([None, ID1, None, "A5", datetime(2024, 1, 2)])  # row 7
    data.merge_cells("A6:A7")
    other = workbook.create_sheet("carrier")
    other.sheet_state = "hidden"  # ignored unless named: a hidden sheet is never chosen
    other.append(["usage", "name", "idCard", "phone"])
    other.append([1, "张三", ID1, "13800138000"])
    workbook.create_sheet("empty")
    workbook.save(path)
    return path


def read(path: Path, kind: JobKind | None = None, **options: object) -> tuple[RowSource, list[SourceRow]]:
    with path.open("rb") as stream:
        source = open_rows(stream, path.name, kind, **options)  # type: ignore[arg-type]
        rows = list(source)
    return source, rows


def rejected(path: Path, **options: object) -> str:
    with pytest.raises(FileRejected) as info:
        read(path, **options)
    return info.value.reason


@pytest.fixture
def workbook_path(tmp_path: Path) -> Path:
    return build(tmp_path / "upload.xlsx")


def test_first_sheet(workbook_path: Path) -> None:
    source, rows = read(workbook_path)
    assert (source.kind, source.format, source.encoding) == (JobKind.LOST_REPAIR, "xlsx", None)
    assert source.header.ignored == ("备注",)
    assert [r.number for r in rows] == [2, 3, 5, 6, 7]
    assert rows[0] == SourceRow(
        2, {"name": "张三", "id_number": ID1, "used_phone": "13800138000", "auth_code": "A1"}
    )
    assert all(r.problem is None for r in rows)


def test_numbers_are_not_stringified(workbook_path: Path) -> None:
    _, rows = read(workbook_path)
    values = rows[1].values
    # written as a number, read back as one (openpyxl, like Excel, keeps it as a float here)
    assert isinstance(values["id_number"], int | float)
    assert values["id_number"] == pytest.approx(ID_AS_NUMBER)
    assert values["used_phone"] == 13900139000
    with pytest.raises(RuleViolation) as info:
        normalize_repair_row(values, LegacyIdPolicy.CONVERT)
    assert info.value.rule == "id_number.excel_number"


def test_formula_without_cached_value_is_empty(workbook_path: Path) -> None:
    _, rows = read(workbook_path)
    assert rows[2].values["auth_code"] is None
    with pytest.raises(RuleViolation) as info:
        normalize_repair_row(rows[2].values, LegacyIdPolicy.CONVERT)
    assert info.value.rule == "auth_code.missing"


def test_merged_cells_give_none_outside_the_anchor(workbook_path: Path) -> None:
    _, rows = read(workbook_path)
    assert rows[3].values["name"] == "赵六"
    assert rows[4].values["name"] is None


def test_sheet_by_name(workbook_path: Path) -> None:
    source, rows = read(workbook_path, sheet="carrier")
    assert source.kind is JobKind.CARRIER_AUDIT
    assert rows == [SourceRow(2, {"usage": 1, "name": "张三", "idCard": ID1, "phone": "13800138000"})]


def test_missing_sheet(workbook_path: Path) -> None:
    assert rejected(workbook_path, sheet="nope") == "the workbook has no sheet named 'nope'"


def test_empty_sheet(workbook_path: Path) -> None:
    assert rejected(workbook_path, sheet="empty", kind=JobKind.LOST_REPAIR) == "file has no header row"


def test_header_only_and_leading_blank_rows(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["B3"] = "name"
    sheet["C3"] = "id_number"
    sheet["D3"] = "auth_code"
    path = tmp_path / "header.xlsx"
    workbook.save(path)
    source, rows = read(path)
    assert rows == []
    assert source.header.columns == {1: "name", 2: "id_number", 3: "auth_code"}


def test_long_string_value(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "id_number", "auth_code"])
    sheet.append(["张三", ID1, "A" * 5000])
    path = tmp_path / "long.xlsx"
    workbook.save(path)
    _, rows = read(path)
    assert problem(rows[0]) == "value longer than 4096 characters"


def test_non_seekable_stream_is_spooled(workbook_path: Path) -> None:
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    stream = OneWay(workbook_path.read_bytes())
    source = open_rows(cast(BinaryIO, stream), "upload.xlsx", None)
    assert [r.number for r in source] == [2, 3, 5, 6, 7]


def test_zip_content_is_xlsx_whatever_the_name(workbook_path: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "upload.csv"
    renamed.write_bytes(workbook_path.read_bytes())
    source, _ = read(renamed)
    assert source.format == "xlsx"


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_bytes(b"name,id,auth\n")
    assert rejected(path) == "not a valid .xlsx file (it is not a zip archive)"


def test_damaged_zip(workbook_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.xlsx"
    path.write_bytes(workbook_path.read_bytes()[:2000])
    assert rejected(path) == "not a valid .xlsx file (the zip archive is damaged)"


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "other.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    assert rejected(path) == (
        "a zip archive, not an .xlsx workbook: unpack it and upload the .xlsx or CSV file inside"
    )


def _rezip(source: Path, target: Path, member: str, content: bytes, level: int = 6) -> None:
    """``source`` with ``member`` replaced by ``content`` (deflated at ``level``)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            body = content if info.filename == member else old.read(info.filename)
            new.writestr(info.filename, body, compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)


def test_a_real_workbook_that_compresses_far_more_than_100_to_1_is_read(
    workbook_path: Path, tmp_path: Path
) -> None:
    # spreadsheet XML of repeated cells compresses that well (cell references are optional, and
    # writers that leave them out repeat each row byte for byte): the old 100:1 cap refused these
    with zipfile.ZipFile(workbook_path) as archive:
        head = archive.read("xl/worksheets/sheet1.xml").split(b"<sheetData>")[0]
    row = f'<row><c t="inlineStr"><is><t>张三</t></is></c><c t="inlineStr"><is><t>{ID1}</t></is></c>'
    row += '<c t="inlineStr"><is><t>A1</t></is></c></row>'
    header = (
        '<row><c t="inlineStr"><is><t>name</t></is></c><c t="inlineStr"><is><t>id_number</t></is></c>'
        '<c t="inlineStr"><is><t>auth_code</t></is></c></row>'
    )
    xml = head + b"<sheetData>" + (header + row * 30_000).encode() + b"</sheetData></worksheet>"
    path = tmp_path / "repetitive.xlsx"
    _rezip(workbook_path, path, "xl/worksheets/sheet1.xml", xml, level=9)
    member = zipfile.ZipFile(path).getinfo("xl/worksheets/sheet1.xml")
    assert member.file_size > 1024 * 1024
    assert member.file_size > 121 * member.compress_size
    _, rows = read(path)
    assert len(rows) == 30_000 and rows[-1].number == 30_001
    assert rows[0] == SourceRow(2, {"name": "张三", "id_number": ID1, "auth_code": "A1"})


def test_a_zip_bomb_in_the_sheet_stops_early_at_the_size_cap(
    workbook_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(workbook_path) as archive:
        head = archive.read("xl/worksheets/sheet1.xml").split(b"<sheetData>")[0] + b"<sheetData>"
    _rezip(workbook_path, path, "xl/worksheets/sheet1.xml", head + b" " * (64 * 1024 * 1024), level=9)
    assert path.stat().st_size < 200_000
    monkeypatch.setattr(workbooks, "MAX_EXPANDED_BYTES", 8 * 1024 * 1024)
    streamed: list[int] = []
    real_open = zipfile.ZipFile.open

    def counting_open(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        member = real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]
        real_read = member.read

        def read(size: int = -1) -> bytes:
            data = real_read(size)
            streamed.append(len(data))
            return data

        member.read = read  # type: ignore[method-assign]
        return member

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    loaded: list[str] = []
    monkeypatch.setattr(
        workbooks.CalamineWorkbook, "get_sheet_by_name", lambda self, name: loaded.append(name), raising=False
    )
    with pytest.raises(FileRejected) as info, workbook_path.open("rb"):
        read(path)
    assert info.value.reason == "decompression bomb: more than 8 MB uncompressed"
    assert sum(streamed) <= 10 * 1024 * 1024  # stopped at the cap, not at the 64 MB end
    assert loaded == []  # calamine never loaded it


def test_a_directory_declaring_gigabytes_is_refused_before_anything_is_expanded(tmp_path: Path) -> None:
    path = tmp_path / "large.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(3):
            archive.writestr(f"xl/media/image{index}.bin", os.urandom(1024))
    blob = bytearray(path.read_bytes())
    position = 0
    patched = 0
    while (position := blob.find(b"PK\x01\x02", position)) >= 0:
        blob[position + 24 : position + 28] = (2000 * 1024 * 1024).to_bytes(4, "little")  # 2 GB each
        position += 4
        patched += 1
    assert patched == 3
    path.write_bytes(bytes(blob))
    assert rejected(path) == "decompression bomb: more than 4096 MB uncompressed"


def test_a_sheet_member_that_expands_beyond_its_declared_size_is_refused(
    workbook_path: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lying.xlsx"
    blob = bytearray(workbook_path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    position = blob.find(b"PK\x01\x02")  # the central directory entry of the sheet
    while blob[position + 46 : position + 46 + len(name)] != name:
        position = blob.find(b"PK\x01\x02", position + 4)
    blob[position + 24 : position + 28] = (100).to_bytes(4, "little")  # declares 100 bytes
    path.write_bytes(bytes(blob))
    assert rejected(path) == "not a valid .xlsx file (the zip archive is damaged)"


def test_the_size_cap_applies_to_real_workbooks(workbook_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read(workbook_path)  # a few KB: fine
    monkeypatch.setattr(workbooks, "MAX_EXPANDED_BYTES", 1000)
    assert rejected(workbook_path).startswith("decompression bomb: more than")


def test_a_sparse_sheet_whose_grid_would_take_gigabytes_is_refused_before_it_is_loaded(
    tmp_path: Path,
) -> None:
    # calamine fills the grid between the first and the last cell: A1 and XFD1048576 in a 5 KB
    # workbook ask it for 512 GiB, and the allocation failure aborts the process
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "名单"
    sheet.append(["name", "id_number", "auth_code"])
    sheet["XFD1048576"] = "x"
    path = tmp_path / "sparse.xlsx"
    workbook.save(path)
    assert path.stat().st_size < 10_000
    assert rejected(path) == (
        "the worksheet 名单 spans 1,048,576 rows × 16,384 columns, more than 10,000,000 cells: "
        "delete the unused rows and columns, or split the file"
    )


@pytest.mark.parametrize(("far", "read_it"), [("J999999", True), ("K999999", False), ("A1000001", True)])
def test_the_grid_cap_counts_rows_times_columns(tmp_path: Path, far: str, read_it: bool) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "id_number", "auth_code"])
    sheet.append(["张三", ID1, "A1"])
    sheet[far] = "x"
    path = tmp_path / "far.xlsx"
    workbook.save(path)
    if read_it:
        source, rows = read(path)
        assert rows[0].number == 2 and rows[-1].number == int(far.lstrip("ABCDEFGHIJK"))
        assert source.sheet_rows == rows[-1].number
    else:
        assert rejected(path).startswith("the worksheet Sheet spans 999,999 rows × 11 columns")


def test_a_damaged_worksheet_is_refused_before_any_row(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "id_number", "auth_code"])
    for index in range(5000):
        sheet.append(["张三", ID1, f"A{index}"])
    good = tmp_path / "good.xlsx"
    workbook.save(good)
    with zipfile.ZipFile(good) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml")
    damaged = tmp_path / "cut.xlsx"
    _rezip(good, damaged, "xl/worksheets/sheet1.xml", xml[: len(xml) * 2 // 3])  # the XML cut short
    seen: list[SourceRow] = []
    with damaged.open("rb") as stream, pytest.raises(FileRejected) as info:
        seen.extend(open_rows(stream, damaged.name, None))
    assert seen == []  # calamine reads the whole sheet first: no row of a damaged one is given
    assert (info.value.code, info.value.reason) == (
        "file.sheet_damaged",
        "the worksheet Sheet is damaged and cannot be read",
    )


def test_close_releases_the_workbook(workbook_path: Path) -> None:
    with workbook_path.open("rb") as stream, open_rows(stream, "upload.xlsx", None) as source:
        assert next(source).number == 2
    with pytest.raises(StopIteration):
        next(source)


def test_a_merged_title_row_above_the_header_is_skipped(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["2026年12月失联名单", None, None, None])
    sheet.merge_cells("A1:D1")
    sheet.append(["姓名", "身份证号", "曾用手机号（选填）", "授权码", "备注"])
    sheet.append(["张三", ID1, "13800138000", "A1", "x"])
    path = tmp_path / "title.xlsx"
    workbook.save(path)
    source, rows = read(path)
    assert (source.kind, source.header.row, source.header.title_rows) == (JobKind.LOST_REPAIR, 2, (1,))
    assert source.header.ignored == ("备注",)
    assert rows == [
        SourceRow(3, {"name": "张三", "id_number": ID1, "used_phone": "13800138000", "auth_code": "A1"})
    ]
