"""Every workbook format a customer sends, through the one reader (ingest/readers.py over
python-calamine, ingest/workbooks.py): the same rows give the same records from each.

The fixtures under tests/fixtures/workbooks/ were written once and committed (CI needs none of the
writers): ``people.openpyxl.xlsx`` by openpyxl — a 说明 (instructions) sheet first, the list on
名单 below a merged title row, a hidden sheet 旧名单 with another list; ``people.xls``,
``people.ods`` and ``people.libreoffice.xlsx`` by LibreOffice Calc converting it;
``people.et`` is ``people.xls`` under WPS's extension (WPS's .et is the same BIFF8 in the same
OLE2 container); ``people.xlsxwriter.xlsx`` by XlsxWriter in its streaming ``constant_memory``
mode (inline strings); ``people.strict.xlsx`` is the openpyxl file with the strict OOXML
namespaces (purl.oclc.org) — LibreOffice cannot write strict, so it was rewritten by hand;
``people.password.xlsx`` is the openpyxl file encrypted with the password "secret" by
msoffcrypto-tool, as Excel's "Encrypt with Password" stores it.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from tests.reports import TITLE_ROW_NOTE
from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import detect_file, open_rows
from verifyfeed.models.records import JobCounts, JobKind
from verifyfeed.rules.errors import RowRejected
from verifyfeed.rules.lost_repair import repair_fields

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workbooks"
FORMATS = {
    "people.openpyxl.xlsx": "xlsx",
    "people.libreoffice.xlsx": "xlsx",
    "people.xlsxwriter.xlsx": "xlsx",
    "people.strict.xlsx": "xlsx",
    "people.xls": "xls",
    "people.et": "xls",
    "people.ods": "ods",
}


SUMMARY_NOTE = "row 7 (合计) skipped as a summary row / 第 7 行（合计）为汇总行，已跳过"


def records(name: str) -> list[tuple[int, object]]:
    """(row number, the record the rules make of it — or the codes of the rules it breaks); the
    fixture's closing 合计 row (row 7) is skipped with a note."""
    out: list[tuple[int, object]] = []
    with (FIXTURES / name).open("rb") as stream, open_rows(stream, name, JobKind.LOST_REPAIR) as source:
        assert source.notes == (TITLE_ROW_NOTE,)
        for row in source:
            assert row.problem is None
            try:
                out.append((row.number, repair_fields(row.values, LegacyIdPolicy.CONVERT)))
            except RowRejected as exc:
                out.append((row.number, sorted(v.rule for v in exc.violations)))
            except Exception as exc:  # noqa: BLE001 - RuleViolation: one rule
                out.append((row.number, getattr(exc, "rule", type(exc).__name__)))
        assert source.summary_rows == ((7, "合计"),)
        assert source.facts()["notes"] == [
            TITLE_ROW_NOTE,
            SUMMARY_NOTE,
        ]
    return out


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_gives_the_same_records(name: str) -> None:
    expected = records("people.openpyxl.xlsx")
    assert [number for number, _ in expected] == [3, 4, 6]  # 5 is blank, 7 the summary row
    assert records(name) == expected
    # the phone typed as a number (row 3) and as text (row 6) both arrive as their digits
    numbers = dict(expected)
    assert isinstance(numbers[3], tuple) and numbers[3][0] == "张三"
    assert numbers[3][2] and numbers[6][2]  # hashed phones


@pytest.mark.parametrize(("name", "fmt"), sorted(FORMATS.items()))
def test_the_visible_sheet_whose_header_matches_is_read_and_named(name: str, fmt: str) -> None:
    with (FIXTURES / name).open("rb") as stream, open_rows(stream, name, None) as source:
        assert (source.format, source.kind) == (fmt, JobKind.LOST_REPAIR)
        # 说明 comes first and has no header; 旧名单 matches but is hidden
        assert source.header.sheet == "名单"
        assert source.header.facts()["sheet"] == "名单"
        assert (source.header.row, source.header.title_rows) == (2, (1,))


def test_the_detected_kind_is_the_same_for_every_format() -> None:
    for name in FORMATS:
        assert detect_file(io.BytesIO((FIXTURES / name).read_bytes()), name) is JobKind.LOST_REPAIR


def test_a_hidden_sheet_is_read_when_named() -> None:
    name = "people.xls"
    with (FIXTURES / name).open("rb") as stream, open_rows(stream, name, None, sheet="旧名单") as source:
        rows = list(source)
    assert source.header.sheet == "旧名单" and [r.values["name"] for r in rows] == ["赵六"]


def test_a_password_protected_workbook_is_refused_naming_the_password() -> None:
    data = (FIXTURES / "people.password.xlsx").read_bytes()
    assert data.startswith(b"\xd0\xcf\x11\xe0")  # Office stores an encrypted workbook in OLE2
    for name in ("people.xlsx", "people.xls", "upload"):
        with pytest.raises(FileRejected) as info:
            detect_file(io.BytesIO(data), name)
        assert info.value.code == "file.password"
        assert "password" in info.value.reason and "密码" in info.value.zh


def _book(sheets: dict[str, list[list[object]]], hidden: tuple[str, ...] = ()) -> bytes:
    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
        if title in hidden:
            sheet.sheet_state = "hidden"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HEADER = ["姓名", "身份证号", "授权码"]
ROW = ["张三", "11010519491231002X", "A1"]


def test_several_matching_sheets_are_refused_naming_them() -> None:
    data = _book({"说明": [["x"]], "一月": [HEADER, ROW], "二月": [HEADER, ROW], "三月": [HEADER]}, ("三月",))
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(data), "list.xlsx", JobKind.LOST_REPAIR)
    assert info.value.code == "file.sheets_ambiguous"
    assert info.value.reason.startswith("more than one worksheet holds a list (一月, 二月)")
    assert "一月、二月" in info.value.zh


def test_when_no_sheet_matches_the_sheet_with_the_wrong_columns_is_named() -> None:
    data = _book({"说明": [["填写说明"]], "名单": [["姓名", "身份证号"], ROW[:2]]})
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(data), "list.xlsx", JobKind.LOST_REPAIR)
    assert info.value.reason == "missing required column(s): 授权码 (worksheet 名单)"
    assert info.value.zh == "缺少必需的列：授权码（工作表 名单）"


def test_an_ole2_file_that_is_not_a_workbook_says_what_it_is() -> None:
    word = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600) + "WordDocument".encode("utf-16-le") + bytes(100)
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(word), "list.xls")
    assert info.value.reason.startswith("a Word (.doc) document, not a spreadsheet")
    junk = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096)
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(junk), "list.xls")
    assert info.value.reason.startswith("not a readable .xls workbook")


def test_an_ods_row_repeating_a_value_over_millions_of_cells_is_refused_before_calamine_opens_it() -> None:
    source = FIXTURES / "people.ods"
    with zipfile.ZipFile(source) as archive:
        members = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    content = members["content.xml"]
    at = content.index(b"</table:table-row>") + len(b"</table:table-row>")  # in the first sheet, 说明
    bomb = (
        b'<table:table-row table:number-rows-repeated="100000"><table:table-cell '
        b'table:number-columns-repeated="1000" office:value-type="string"><text:p>x</text:p>'
        b"</table:table-cell></table:table-row>"
    )
    members["content.xml"] = content[:at] + bomb + content[at:]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(out.getvalue()), "list.ods")
    assert info.value.reason.startswith(
        "the worksheet 说明 spans 100,000 rows × 1,000 columns, more than 10,000,000 cells"
    )
    # LibreOffice's own repeated rows (the empty rest of each sheet) hold no value: read as before
    assert b'number-rows-repeated="1048' in content


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_the_bench_workbooks_give_the_csv_s_batches_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    """``make bench`` compares the same rows as CSV, .xlsx and .ods (bench/generate.py writes the
    workbooks itself): the splitter's core must make the same batches of each."""
    from bench.generate import write_repair_csv, write_repair_ods, write_repair_xlsx
    from verifyfeed.logic.repair_batches import RepairBatch, split_repair_rows

    source = tmp_path / "people.csv"
    planted = write_repair_csv(source, 1500)
    book = tmp_path / f"people.{fmt}"
    (write_repair_xlsx if fmt == "xlsx" else write_repair_ods)(source, book)

    def batches(path: Path) -> tuple[JobCounts, list[bytes]]:
        made: list[RepairBatch] = []
        with path.open("rb") as stream, open_rows(stream, path.name, None) as rows:
            counts = split_repair_rows(
                rows, legacy=LegacyIdPolicy.CONVERT, batch_size=500, reject=lambda *_: None, emit=made.append
            )
        return counts, [batch.records_json for batch in made]

    expected = batches(source)
    assert expected[0].rows_accepted == planted.valid
    assert batches(book) == expected


def _ods_with_long_list(extra: int) -> bytes:
    """people.ods with the last row of its list (sheet 名单, without its empty cells to the right)
    repeated ``extra`` more times and one row after them: an ODS row may say it repeats, so a
    million-row sheet fits in a few kilobytes."""
    source = FIXTURES / "people.ods"
    with zipfile.ZipFile(source) as archive:
        members = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    content = members["content.xml"]
    sheet = content.index('table:name="名单"'.encode())
    rest = content.index(b'<table:table-row table:style-name="ro1" table:number-rows-repeated="1048', sheet)
    total = content.rindex(b"<table:table-row", sheet, rest)  # 合计 (a summary row), after the list
    last = content.rindex(b"<table:table-row", sheet, total)  # the list's last row, as LibreOffice wrote it
    row = re.sub(rb'<table:table-cell table:number-columns-repeated="\d+"/>', b"", content[last:total])
    repeated = row.replace(
        b"<table:table-row", b'<table:table-row table:number-rows-repeated="%d"' % extra, 1
    )
    after = row.replace(b"<text:p>", b"<text:p>9", 1)  # one more row, different from the repeated one
    members["content.xml"] = content[:total] + repeated + after + content[total:]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return out.getvalue()


def test_an_ods_sheet_reaching_the_readers_row_limit_is_refused_rather_than_cut_short() -> None:
    """calamine returns no row of an .ods sheet past row 1,048,576 and says nothing: a longer sheet
    would lose its last rows silently, so a sheet reaching that row is refused, naming the limit."""
    body = _ods_with_long_list(1_048_600)
    with pytest.raises(FileRejected) as info:
        open_rows(io.BytesIO(body), "list.ods", JobKind.LOST_REPAIR)
    assert info.value.code == "file.ods_row_limit"
    assert info.value.reason.startswith("the worksheet 名单 reaches the 1,048,576-row limit of .ods reading")
    assert info.value.why.zh.startswith("工作表 名单 达到了 .ods 文件 1,048,576 行的读取上限")
    # a long list below the limit is read to its last row (the 合计 below it is skipped)
    with open_rows(io.BytesIO(_ods_with_long_list(1000)), "list.ods", JobKind.LOST_REPAIR) as rows:
        read = list(rows)
    assert [row.values["name"] for row in read[-1001:]] == ["王五"] * 1000 + ["9王五"]
    assert rows.sheet_rows is not None and read[-1].number == rows.sheet_rows - 1
