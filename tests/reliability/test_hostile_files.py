"""Hostile files through the splitter *handler* (an S3 notification, URL-encoded key, over moto),
then every accepted row through the uploader to the sandbox.

For every case: the handler does not crash, the job says what happened (a file-level reason, or a
rule and a reason for every rejected row), ``rows read = accepted + rejected`` in the job, in the
summary report and in the rejected-rows report, every accepted row reaches upstream exactly once,
no report cell is a live spreadsheet formula, and no plaintext ID or phone number is stored.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openpyxl
import pytest

from local.lambda_context import new_context
from sandbox.server import SandboxHandle
from tests.integration.conftest import drain_queue
from tests.reliability.support import (
    cn_name,
    drop,
    find_pii,
    mobile,
    person_id,
    read_object,
    repair_row,
)
from tests.reports import csv_rows
from verifyfeed.logic.reports import ReportPaths
from verifyfeed.logic.uploader import Delivery, load_records, submit_audit, upload_batch
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import JobStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services
from verifyfeed.store.blobs import S3Blobs

pytestmark = pytest.mark.integration

HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]
UNREADABLE = "row.unreadable"


def csv_bytes(
    rows: list[list[str]], header: list[str] | None = HEADER, encoding: str = "utf-8", newline: str = "\r\n"
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def people(base: int, count: int) -> list[list[str]]:
    return [repair_row(base + i, phone=i % 2 == 0) for i in range(count)]


def workbook_bytes(build: Callable[[openpyxl.Workbook], None]) -> bytes:
    book = openpyxl.Workbook()
    build(book)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def sheet_of(book: openpyxl.Workbook) -> Any:
    sheet = book.active
    assert sheet is not None
    return sheet


# ---- the cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    data: Callable[[], bytes]
    read: int
    accepted: int
    rules: dict[str, int] = field(default_factory=dict)  # rejected rows by rule: exact
    reason: str = ""  # set: the whole file is rejected with a reason containing this
    ext: str = "csv"
    key: str = ""  # a key of its own (spaces, "+", a folder)
    kind: str = "lost-repair"
    check: Callable[[SandboxHandle], None] | None = None  # what upstream must have received

    @property
    def rejected_rows(self) -> int:
        return self.read - self.accepted


def _names_upstream(expected: list[str]) -> Callable[[SandboxHandle], None]:
    def check(sandbox: SandboxHandle) -> None:
        assert sorted(r.name for r in sandbox.accepted_records()) == sorted(expected)

    return check


def _idcodes_upstream(expected: list[str]) -> Callable[[SandboxHandle], None]:
    def check(sandbox: SandboxHandle) -> None:
        assert sorted(r.idcode for r in sandbox.accepted_records()) == sorted(sha256_hex(i) for i in expected)

    return check


def _phones_upstream(rows: list[list[str]]) -> Callable[[SandboxHandle], None]:
    """Upstream got each row's former phone (hashed) or "" — the phone column was mapped."""

    def check(sandbox: SandboxHandle) -> None:
        sent = {r.idcode: r.usedPhone for r in sandbox.accepted_records()}
        assert sent == {sha256_hex(r[1]): sha256_hex(r[2]) if r[2] else "" for r in rows}
        assert any(sent.values())

    return check


def _zip_of_a_csv() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("名单.csv", csv_bytes(people(680, 2)))
    return out.getvalue()


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def _header_only() -> bytes:
    return csv_bytes([])


def _bom_header_without_newline() -> bytes:
    return codecs.BOM_UTF8 + ",".join(HEADER).encode()


def _missing_column() -> bytes:
    return csv_bytes([r[:3] for r in people(100, 2)], header=HEADER[:3])


def _duplicate_column() -> bytes:
    return csv_bytes([[*r, r[1]] for r in people(110, 2)], header=[*HEADER, "身份证号码"])


def _data_row_first() -> bytes:
    return csv_bytes(people(120, 3), header=None)


def _extra_columns() -> bytes:
    return csv_bytes([[*r, "备注", "x"] for r in people(130, 3)], header=[*HEADER, "备注", "channel"])


def _title_row_and_annotated_header() -> bytes:
    header = ["序号", "姓名（必填）", "身份证号码【必填】", "曾用手机号（选填）", "授权码(合同编号)"]
    rows = [["2026年12月失联名单", "", "", "", ""], header] + [
        [str(i), *r] for i, r in enumerate(people(170, 3))
    ]
    return csv_bytes(rows, header=None)


def _two_phone_columns() -> bytes:
    return csv_bytes([[*r, r[2]] for r in people(180, 2)], header=[*HEADER, "联系电话"])


def _extra_cells() -> bytes:
    rows = people(140, 3) + [[*r, "多余", "cells"] for r in people(150, 2)]
    return csv_bytes(rows)


def _missing_cells() -> bytes:
    return csv_bytes(people(160, 2) + [r[:2] for r in people(170, 2)])


def _gbk() -> bytes:
    return csv_bytes(people(190, 4), encoding="gbk")


FOUR_BYTE_NAMES = ["𠮷田", "王𡈼", "𪚥𫝀"]  # outside GBK: four bytes each in GB18030


def _gb18030_four_byte() -> bytes:
    assert all(len(ch.encode("gb18030")) == 4 for ch in "𠮷𡈼𪚥𫝀")
    rows = [[name, person_id(200 + i), "", f"G{i:03d}"] for i, name in enumerate(FOUR_BYTE_NAMES)]
    return csv_bytes(rows + people(210, 2), encoding="gb18030")


def _invalid_utf8() -> bytes:
    good = csv_bytes(people(220, 4))
    bad = people(230, 1)[0]
    line = f"{bad[0]}".encode() + b"\xff\xfe\xfd," + ",".join(bad[1:]).encode() + b"\r\n"
    return good + line


def _invalid_gb18030() -> bytes:
    good = csv_bytes(people(240, 4), encoding="gb18030")
    bad = people(250, 1)[0]
    return good + bad[0].encode("gb18030") + b"\xff," + ",".join(bad[1:]).encode() + b"\r\n"


def _newlines(newline: str) -> Callable[[], bytes]:
    return lambda: csv_bytes(people(260 + 10 * len(newline), 3), newline=newline)


def _mixed_newlines() -> bytes:
    a, b, c = (",".join(r).encode() for r in people(290, 3))
    return ",".join(HEADER).encode() + b"\r" + a + b"\n" + b + b"\r\n" + c


def _quoted_newlines() -> bytes:
    odd = people(300, 2)
    odd[0][0] = "张\n三"
    odd[1][0] = "李,四"
    return csv_bytes(people(310, 2) + odd)


def _one_megabyte_field() -> bytes:
    big = people(320, 1)[0]
    big[0] = "大" * (1024 * 1024)
    return csv_bytes([*people(330, 2), big])


def _long_name() -> bytes:
    row = people(340, 1)[0]
    row[0] = "长" * 100_000
    return csv_bytes([row, *people(350, 2)])


ZERO_WIDTH_ID = person_id(364)


def _emoji_zero_width() -> bytes:
    rows = people(360, 4)
    rows[0][0] = "张😀"
    rows[1][0] = "👨\u200d👩\u200d👧"
    rows[2][0] = "李\u200b四"
    rows[3][1] = ZERO_WIDTH_ID[:6] + "\u200b" + ZERO_WIDTH_ID[6:] + "\ufeff"
    rows[3][3] = "K\u200d364"
    return csv_bytes(rows)


FULL_WIDTH_ID = person_id(370)


def _full_width() -> bytes:
    def wide(text: str) -> str:
        return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)

    return csv_bytes([["王五", wide(FULL_WIDTH_ID), wide(mobile(370)), wide("F370")]])


def _formula_injection() -> bytes:
    rows = people(380, 6)
    rows[0][0] = '=HYPERLINK("http://x.cn","点")'
    rows[1][0] = "+1+cmd|' /C calc'!A0"
    rows[2][0] = "-2+3"
    rows[3][0] = "@SUM(A1:A9)"
    rows[4][3] = "=1+2"
    rows[5][1] = "=1+1"
    return csv_bytes(rows)


def _nul_bytes() -> bytes:
    rows = people(390, 4)
    rows[0][0] = "张\x00三"
    rows[1][1] = rows[1][1][:9] + "\x00" + rows[1][1][9:]
    return csv_bytes(rows)


def _truncated_in_quotes() -> bytes:
    cut = people(400, 1)[0]
    return csv_bytes(people(410, 2)) + f'"{cut[0]},{cut[1]}'.encode()


def _truncated_mid_character() -> bytes:
    cut = people(420, 1)[0]
    return csv_bytes(people(430, 2)) + f"{cut[1][:3]},".encode() + "张".encode()[:2]


def _xlsx_sheets() -> bytes:
    def build(book: openpyxl.Workbook) -> None:
        first = sheet_of(book)
        first.title = "名单"
        first.append(HEADER)
        for row in people(440, 3):
            first.append(row)
        second = book.create_sheet("其他")
        second.append(HEADER)
        for row in people(450, 5):
            second.append(row)
        book.create_sheet("空")

    return workbook_bytes(build)


def _xlsx_merged() -> bytes:
    def build(book: openpyxl.Workbook) -> None:
        sheet = sheet_of(book)
        sheet.append(HEADER)
        for row in people(460, 4):
            sheet.append(row)
        sheet.merge_cells("A2:A3")  # row 3 loses its name
        sheet.merge_cells("C4:D4")  # row 4 loses its authCode
        sheet.merge_cells("B5:C5")  # row 5 loses its phone (optional)

    return workbook_bytes(build)


def _xlsx_formulas() -> bytes:
    def build(book: openpyxl.Workbook) -> None:
        sheet = sheet_of(book)
        sheet.append(HEADER)
        rows = people(470, 4)
        rows[0][1] = f'="{rows[0][1]}"'  # never calculated: no cached value
        rows[1][0] = '=CONCAT("张","三")'
        rows[2][3] = '=CONCAT("A","1")'
        for row in rows:
            sheet.append(row)

    return workbook_bytes(build)


def _xlsx_numbers() -> bytes:
    def build(book: openpyxl.Workbook) -> None:
        sheet = sheet_of(book)
        sheet.append(HEADER)
        rows: list[list[object]] = [list(r) for r in people(480, 4)]
        rows[0][1] = int(str(rows[0][1]).replace("X", "0"))  # an ID stored as a number
        rows[1][1] = float(str(rows[1][1]).replace("X", "0"))
        rows[2][2] = int(mobile(482))  # a phone stored as a number: its digits are intact
        rows[3][3] = 48300  # an authCode stored as a number
        for row in rows:
            sheet.append(row)

    return workbook_bytes(build)


def _xlsx_bomb_ratio() -> bytes:
    """A zip bomb in the sheet itself: its XML expands past the 512 MiB cap (from about 0.5 MB)."""
    base = workbook_bytes(lambda book: sheet_of(book).append(HEADER))
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                target.writestr(info.filename, source.read(info.filename))
                continue
            head = source.read(info.filename).split(b"<sheetData>")[0] + b"<sheetData>"
            with target.open(info.filename, "w", force_zip64=True) as member:
                member.write(head)
                for _ in range(33):
                    member.write(b" " * (16 * 1024 * 1024))
    return out.getvalue()


def _xlsx_bomb_total() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(3):
            archive.writestr(f"xl/media/image{index}.bin", b"\x01" * 1024)
    blob = bytearray(out.getvalue())
    position = 0
    while (position := blob.find(b"PK\x01\x02", position)) >= 0:  # lie in the central directory
        blob[position + 24 : position + 28] = (2000 * 1024 * 1024).to_bytes(4, "little")  # 6 GB in all
        position += 4
    return bytes(blob)


def _many_duplicates() -> bytes:
    rows = [repair_row(500 + i % 20) for i in range(2000)]
    for i, row in enumerate(rows):
        row[3] = f"D{i:07d}"
    reused_auth = [[cn_name(600 + i), person_id(600 + i), "", "D0000000"] for i in range(10)]
    return csv_bytes(rows + reused_auth)


def _utf16_tabs() -> bytes:
    return csv_bytes(people(620, 3), newline="\r\n").decode().replace(",", "\t").encode("utf-16")


def _columns_swapped() -> bytes:
    return csv_bytes([[r[0], r[3], r[2], r[1]] for r in people(630, 3)])


def _phone_as_auth_code() -> bytes:
    return csv_bytes([[r[0], r[1][:10], "", mobile(690 + i)] for i, r in enumerate(people(690, 2))])


def _jsonl() -> bytes:
    keys = ["name", "id_number", "used_phone", "auth_code"]
    good = [json.dumps(dict(zip(keys, r, strict=True)), ensure_ascii=False) for r in people(640, 2)]
    return "\n".join([*good, '{"name": "半行', "[1, 2, 3]", ""]).encode()


def _sep_directive() -> bytes:
    return b"sep=;\r\n" + csv_bytes(people(650, 3)).replace(b",", b";")


AUDIT_HEADER = [
    "usage",
    "name",
    "idCard",
    "phone",
    "carLicensePlate",
    "drivingLicenseFilename",
    "attachmentFileUrls",
]


def _audit_rows(base: int = 700) -> bytes:
    def row(n: int, **over: str) -> list[str]:
        values = {
            "usage": "2",
            "name": "张三",
            "idCard": person_id(n),
            "phone": mobile(n),
            "carLicensePlate": f"京A{n % 100000:05d}",
            "drivingLicenseFilename": "dl.jpg",
            "attachmentFileUrls": "a.jpg,b.jpg",
        }
        values.update(over)
        return [values[h] for h in AUDIT_HEADER]

    rows = [
        row(base + 0),
        row(base + 1),
        row(base + 2, name="张\x00三"),
        row(base + 3, name="=HYPERLINK(1)"),
        row(base + 4, name="张😀"),
        row(base + 5, usage="9"),
        row(base + 6, idCard=person_id(base + 6)[:-1] + ("0" if person_id(base + 6)[-1] != "0" else "1")),
        row(base + 0),  # the same audit again
    ]
    return csv_bytes(rows, header=AUDIT_HEADER)


CASES = [
    Case("zero_byte_csv", lambda: b"", 0, 0, reason="file is empty"),
    Case("zero_byte_xlsx", lambda: b"", 0, 0, reason="file is empty", ext="xlsx"),
    Case("blank_lines_only", lambda: b"\r\n   \r\n\t,,\r\n", 0, 0, reason="no header row"),
    Case("header_only", _header_only, 0, 0),
    Case("header_only_bom_no_newline", _bom_header_without_newline, 0, 0),
    Case("missing_required_column", _missing_column, 0, 0, reason="missing required column(s): 授权码"),
    Case("duplicate_column", _duplicate_column, 0, 0, reason="more than one column for: 身份证号"),
    Case(
        "title_row_and_annotated_header",
        _title_row_and_annotated_header,
        3,
        3,
        check=_phones_upstream(people(170, 3)),
    ),
    Case(
        "two_phone_columns",
        _two_phone_columns,
        0,
        0,
        reason="more than one column for: 曾用手机号 (曾用手机号, 联系电话)",
    ),
    Case("data_row_instead_of_header", _data_row_first, 0, 0, reason="no header row (text or data without"),
    Case("extra_columns", _extra_columns, 3, 3),
    Case("extra_cells_in_rows", _extra_cells, 5, 3, {UNREADABLE: 2}),
    Case("missing_cells", _missing_cells, 4, 2, {"auth_code.missing": 2}),
    Case("utf8_bom", lambda: codecs.BOM_UTF8 + csv_bytes(people(180, 4)), 4, 4),
    Case("gbk", _gbk, 4, 4, check=_names_upstream([r[0] for r in people(190, 4)])),
    Case(
        "gb18030_four_byte_characters",
        _gb18030_four_byte,
        5,
        5,
        check=_names_upstream(FOUR_BYTE_NAMES + [r[0] for r in people(210, 2)]),
    ),
    Case("invalid_utf8_bytes", _invalid_utf8, 5, 4, {UNREADABLE: 1}),
    Case("invalid_gb18030_bytes", _invalid_gb18030, 5, 4, {UNREADABLE: 1}),
    Case("cr_line_ends", _newlines("\r"), 3, 3),
    Case("lf_line_ends", _newlines("\n"), 3, 3),
    Case("crlf_line_ends", _newlines("\r\n"), 3, 3),
    Case("mixed_line_ends_no_final_newline", _mixed_newlines, 3, 3),
    Case("quoted_fields_with_newline_and_comma", _quoted_newlines, 4, 2, {"name.characters": 2}),
    Case("one_megabyte_field", _one_megabyte_field, 3, 2, {UNREADABLE: 1}),
    Case("name_of_100000_characters", _long_name, 3, 2, {UNREADABLE: 1}),
    Case(
        "emoji_and_zero_width",
        _emoji_zero_width,
        4,
        2,
        {"name.characters": 2},
        check=_idcodes_upstream([person_id(362), ZERO_WIDTH_ID]),
    ),
    Case("full_width_digits", _full_width, 1, 1, check=_idcodes_upstream([FULL_WIDTH_ID])),
    Case(
        "formula_injection",
        _formula_injection,
        6,
        0,
        {"name.characters": 4, "auth_code.format": 1, "id_number.format": 1},
    ),
    Case("nul_bytes", _nul_bytes, 4, 2, {UNREADABLE: 2}),
    Case("truncated_inside_quotes", _truncated_in_quotes, 3, 2, {UNREADABLE: 1}),
    Case("truncated_mid_character", _truncated_mid_character, 3, 2, {UNREADABLE: 1}),
    Case(
        "xlsx_several_sheets",
        _xlsx_sheets,
        0,
        0,
        reason="more than one worksheet holds a list (名单, 其他)",
        ext="xlsx",
    ),
    Case("xlsx_merged_cells", _xlsx_merged, 4, 2, {"name.missing": 1, "auth_code.missing": 1}, ext="xlsx"),
    Case(
        "xlsx_formulas",
        _xlsx_formulas,
        4,
        1,
        {"id_number.missing": 1, "name.missing": 1, "auth_code.missing": 1},
        ext="xlsx",
    ),
    Case("xlsx_numbers", _xlsx_numbers, 4, 2, {"id_number.excel_number": 2}, ext="xlsx"),
    Case("xlsx_decompression_bomb", _xlsx_bomb_ratio, 0, 0, reason="decompression bomb", ext="xlsx"),
    Case("xlsx_bomb_lying_sizes", _xlsx_bomb_total, 0, 0, reason="decompression bomb", ext="xlsx"),
    Case("xlsx_that_is_csv", lambda: csv_bytes(people(660, 2)), 0, 0, reason="not a zip", ext="xlsx"),
    # not spreadsheets at all: refused saying what they are (issue 25), whatever their name
    Case("pdf_named_csv", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", 0, 0, reason="a PDF document"),
    Case("png_scan", lambda: b"\x89PNG\r\n\x1a\n" + bytes(64), 0, 0, reason="a PNG image", ext="png"),
    Case("zip_of_a_csv", _zip_of_a_csv, 0, 0, reason="a zip archive, not an .xlsx workbook", ext="xlsx"),
    Case("word_document", _docx, 0, 0, reason="a Word (.docx) document", ext="docx"),
    Case("readme", lambda: b"# list\n\nSee the sheet, row 3.\n", 0, 0, reason="no header row", ext="md"),
    Case(
        "xlsx_damaged_zip",
        lambda: b"PK\x03\x04" + bytes(range(256)) * 8,
        0,
        0,
        reason="zip archive is damaged",
        ext="xlsx",
    ),
    Case(
        "xls_binary",
        lambda: codecs.decode("d0cf11e0a1b11ae1", "hex") + b"\0" * 4096,
        0,
        0,
        reason="not a readable .xls workbook",
        ext="xls",
    ),
    Case(
        "key_with_space_chinese_and_plus",
        lambda: csv_bytes(people(670, 2)),
        2,
        2,
        key="lost-repair/客户 名单+v2 (终版).csv",
    ),
    Case(
        "folder_placeholder_key",
        lambda: b"",
        0,
        0,
        reason="folder placeholder",
        key="lost-repair/新建 文件夹/",
    ),
    Case(
        "many_duplicates",
        _many_duplicates,
        2010,
        20,
        {"duplicate.id_number": 1980, "duplicate.auth_code": 10},
    ),
    Case("utf16_tab_separated", _utf16_tabs, 3, 3, ext="txt"),
    Case("columns_swapped", _columns_swapped, 3, 0, {"id_number.format": 3}),
    Case("phone_in_auth_code_column", _phone_as_auth_code, 2, 0, {"id_number.length": 2}),
    Case("jsonl_bad_lines", _jsonl, 4, 2, {UNREADABLE: 2}, ext="jsonl"),
    Case("excel_sep_directive", _sep_directive, 3, 3),
    Case(
        "carrier_audit_hostile_rows",
        _audit_rows,
        8,
        2,
        {
            UNREADABLE: 1,
            "name.characters": 2,
            "usage.value": 1,
            "id_number.check_digit": 1,
            "duplicate.audit": 1,
        },
        kind="carrier-audit",
    ),
]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def unzipped(workbook: bytes) -> str:
    """The text of every part of a workbook (its cells are in compressed XML)."""
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case: Case, services: Services, sandbox: SandboxHandle, splitter_handler: Any) -> None:
    bucket = services.settings.ingest_bucket
    queue = services.settings.work_queue_url
    drain_queue(queue)
    key = case.key or f"{case.kind}/{case.id}-{uuid.uuid4().hex[:6]}.{case.ext}"
    data = case.data()
    event = drop(bucket, key, data)

    reply = splitter_handler(event, new_context("splitter", 900, 1024))  # no crash: it returns

    [entry] = reply["jobs"]
    job = services.jobs.get_job(entry["job_id"])
    assert job is not None and job.key == key
    assert (job.rows_read, job.rows_accepted, job.rows_rejected) == (
        case.read,
        case.accepted,
        case.rejected_rows,
    )
    assert job.rows_read == job.rows_accepted + job.rows_rejected
    if case.reason:
        assert entry["outcome"] == "rejected" and job.status == JobStatus.REJECTED
        assert case.reason in job.reason, job.reason
    else:
        assert entry["outcome"] == "split", job.reason

    # the rejected-rows report: one line per rejected row, each with a code and a reason in both
    # languages; the same rows in the workbook, every cell text (none a formula)
    paths = ReportPaths.for_job(job, services.settings.reports_prefix)
    raw_report = read_object(bucket, paths.rejected)
    assert raw_report is not None and raw_report.startswith(codecs.BOM_UTF8)
    report = csv_rows(raw_report)
    assert len(report) == job.rows_rejected
    assert all(r["code"] and r["zh"] and r["en"] and int(r["row"]) >= 2 for r in report)
    assert Counter(r["code"] for r in report) == Counter(case.rules)
    assert not [cell for r in report for cell in r.values() if cell.startswith(FORMULA_START)]
    raw_book = read_object(bucket, paths.workbook)
    assert raw_book is not None
    book = openpyxl.load_workbook(io.BytesIO(raw_book))
    cells = [c for row in book.worksheets[0].iter_rows(min_row=2) for c in row]
    assert book.worksheets[0].max_row - 1 == job.rows_rejected
    assert {c.data_type for c in cells if c.value is not None} <= {"s", "n"}  # text, and row numbers

    # every accepted row reaches upstream exactly once
    messages = [m for m in drain_queue(queue) if m.get("job_id") == job.job_id]
    if case.kind == "lost-repair":
        batches = [LostRepairBatchMessage.model_validate(m) for m in messages]
        staged = [load_records(S3Blobs(), b) for b in batches]  # the bodies, staged in S3 (all or nothing)
        assert sum(len(records) for records in staged) == case.accepted
        for batch in batches:
            assert upload_batch(services, batch, Delivery()) == "succeeded"
        counts = sandbox.record_counts()
        assert len(counts) == case.accepted and set(counts.values()) <= {1}
        assert set(counts) == {r.idcode for records in staged for r in records}
    else:
        audits = [CarrierAuditMessage.model_validate(m) for m in messages]
        assert len(audits) == case.accepted
        assert [submit_audit(services, a, Delivery()) for a in audits] == ["pending"] * case.accepted
        adds = [e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add" and e.accepted]
        assert len(adds) == case.accepted
    if case.check is not None:
        case.check(sandbox)

    job = services.jobs.get_job(job.job_id)
    assert job is not None
    if not case.reason:
        assert job.status == JobStatus.COMPLETED, job.status
    summary_raw = read_object(bucket, paths.summary)
    assert summary_raw is not None, "every settled job has its summary report"
    summary = json.loads(summary_raw)
    assert summary["status"] == job.status.value and summary["reason"] == job.reason
    assert summary["headline"]["zh"] and summary["headline"]["en"]
    if case.reason:
        assert summary["reason_code"] and summary["reason_zh"]
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_rejected"] == case.read

    # no plaintext ID or phone number in what we stored
    stored = [job.model_dump_json(), raw_report.decode("utf-8-sig"), summary_raw.decode(), unzipped(raw_book)]
    stored += [a.model_dump_json() for a in services.audits.scan_all() if a.job_id == job.job_id]
    assert find_pii("\n".join(stored)) == []


def test_the_matrix_is_complete() -> None:
    """The issue asks for at least 30 hostile files, each kind it names covered."""
    ids = {c.id for c in CASES}
    assert len(ids) == len(CASES) >= 30
    for needed in (
        "zero_byte",
        "header_only",
        "missing_required",
        "extra_c",
        "bom",
        "gbk",
        "gb18030",
        "invalid_",
        "cr_line",
        "lf_line",
        "crlf_line",
        "quoted",
        "megabyte",
        "100000",
        "emoji",
        "full_width",
        "formula",
        "nul",
        "truncated",
        "sheets",
        "merged",
        "formulas",
        "numbers",
        "bomb",
        "space_chinese_and_plus",
        "folder",
        "duplicates",
    ):
        assert any(needed in i for i in ids), needed
