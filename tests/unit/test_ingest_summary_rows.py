"""Summary rows (issue 26, item 3): a closing total row — 合计, 总计, 小计, 共 N 人 / 条 — in the name
column or the first column, every other required cell empty, is skipped by the reader like a blank
row and named in the notes (row and label, no other cell); a row with a summary label and a required
value is a data row. Every format, and both fast paths of the splitter's core (the C one and its
Python reference), whose blocks must never carry a summary row to the rules."""

from __future__ import annotations

import csv
import io
import json

import pytest
from openpyxl import Workbook

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest.readers import CHUNK_BYTES, SUMMARY_NOTES_MAX, RowSource, open_rows, summary_label
from verifyfeed.logic.repair_batches import RepairBatch, split_repair_rows
from verifyfeed.models.records import JobKind
from verifyfeed.reasons import Reason
from verifyfeed.rules.idcard import check_digit

LR, CA = JobKind.LOST_REPAIR, JobKind.CARRIER_AUDIT
HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]


def an_id(seq: int) -> str:
    first17 = f"110105{19600101 + seq % 28:08d}{seq % 1000:03d}"
    return first17 + check_digit(first17)


def person(seq: int) -> list[str]:
    return [f"张{'三四五六七'[seq % 5]}", an_id(seq), "", f"K{seq}"]


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def xlsx_bytes(rows: list[list[object]], header: list[str] = HEADER) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def note(row: int, label: str) -> str:
    return f"row {row} ({label}) skipped as a summary row / 第 {row} 行（{label}）为汇总行，已跳过"


def read_all(data: bytes, name: str, kind: JobKind | None = LR) -> tuple[RowSource, list[int]]:
    with open_rows(io.BytesIO(data), name, kind) as source:
        numbers = [row.number for row in source]
    return source, numbers


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("合计", "合计"),
        ("  合　计 ", "合 计"),  # spaces, a full-width one, collapsed
        ("总计：", "总计："),
        ("小计:", "小计:"),
        ("共 8 人", "共 8 人"),
        ("共８人", "共８人"),  # full-width digits
        ("共 1,024 条", "共 1,024 条"),
        ("合计：共 3 人", "合计：共 3 人"),
        ("共计 12 人：", "共计 12 人："),
    ],
)
def test_a_summary_label_is_recognised(value: str, label: str) -> None:
    assert summary_label(value) == label


@pytest.mark.parametrize(
    "value", ["张三", "共", "计", "合计人数以外", "共 8", "8 人", "共 12345678901 人", "", None, 8.0]
)
def test_anything_else_is_no_summary_label(value: object) -> None:
    assert summary_label(value) is None


def test_csv_summary_rows_are_skipped_and_noted_by_their_row_and_label() -> None:
    rows = [
        person(1),
        person(2),
        ["合计", "", "", ""],
        [" 共 2 人：", "", "13800138000", ""],
        ["", "", "", ""],
    ]
    source, numbers = read_all(csv_bytes(rows), "list.csv")
    assert numbers == [2, 3]
    assert source.summary_rows == ((4, "合计"), (5, "共 2 人："))
    assert source.notes == (note(4, "合计"), note(5, "共 2 人："))
    assert source.facts()["notes"] == [note(4, "合计"), note(5, "共 2 人：")]
    assert "13800138000" not in "".join(source.notes)  # the optional cell it had is never copied


def test_a_short_csv_line_and_a_label_in_the_first_column_are_summary_rows() -> None:
    header = ["序号", *HEADER]
    data = csv_bytes([["1", *person(1)], ["合计", "", "", "", "", "备注"]], header)
    data += "总计\r\n".encode()  # one cell only: not the header's width
    source, numbers = read_all(data, "list.csv")
    assert numbers == [2]
    assert source.summary_rows == ((3, "合计"), (4, "总计"))


def test_a_summary_label_beside_a_required_value_is_a_data_row() -> None:
    rows = [person(1), ["合计", an_id(9), "", ""], ["小计", "", "", "K9"]]
    source, numbers = read_all(csv_bytes(rows), "list.csv")
    assert numbers == [2, 3, 4]
    assert source.summary_rows == () and source.notes == ()


def test_a_label_in_the_first_column_needs_the_name_empty_too() -> None:
    header = ["序号", *HEADER]
    source, numbers = read_all(csv_bytes([["合计", "张三", "", "", ""]], header), "list.csv")
    assert numbers == [2] and source.summary_rows == ()


def test_the_notes_name_the_first_summary_rows_and_count_the_rest() -> None:
    rows: list[list[str]] = []
    for seq in range(SUMMARY_NOTES_MAX + 3):
        rows += [person(seq), ["小计", "", "", ""]]
    source, numbers = read_all(csv_bytes(rows), "list.csv")
    assert len(numbers) == SUMMARY_NOTES_MAX + 3
    assert len(source.summary_rows) == SUMMARY_NOTES_MAX
    assert source.notes[-1] == "3 more summary row(s) skipped / 另有 3 个汇总行已跳过"
    assert source.notes[0] == note(3, "小计")


def test_xlsx_summary_rows_are_skipped_whatever_the_empty_cells_hold() -> None:
    rows: list[list[object]] = [
        [*person(1)],
        ["合计", None, None, None],
        ["共 1 人", "", "", "", 1],  # a count beside it, in a column without a header
        ["合计", 110105196001010011, None, "K9"],  # an ID stored as a number: a data row
    ]
    source, numbers = read_all(xlsx_bytes(rows), "list.xlsx")
    assert numbers == [2, 5]
    assert source.summary_rows == ((3, "合计"), (4, "共 1 人"))


def test_a_workbook_block_of_clean_rows_never_carries_a_summary_row() -> None:
    """300 clean rows make a block the fast path takes whole; the 合计 row inside it, its other
    cells empty strings (what calamine gives a text cell typed empty), must not be in it."""
    rows: list[list[object]] = [person(seq) for seq in range(300)]
    rows.insert(100, ["合计", "", "", ""])
    with open_rows(io.BytesIO(xlsx_bytes(rows)), "list.xlsx", LR) as source:
        numbers: list[int] = []
        for item in source.fast_rows():
            assert not isinstance(item, tuple) or all(cells[0] != "合计" for cells in item[1])
            numbers += item[0] if isinstance(item, tuple) else [item.number]  # type: ignore[union-attr]
    assert 102 not in numbers and len(numbers) == 300
    assert source.summary_rows == ((102, "合计"),)


def test_json_lines_summary_rows_are_skipped() -> None:
    lines = [
        {"name": "张三", "id_number": an_id(1), "auth_code": "K1"},
        {"name": "合计", "id_number": "", "auth_code": None},
        {"序号": "共 1 人", "name": ""},
        {"name": "合计", "id_number": an_id(2), "auth_code": ""},
    ]
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    source, numbers = read_all(data, "list.jsonl")
    assert numbers == [1, 4]
    assert source.summary_rows == ((2, "合计"), (3, "共 1 人"))


def test_a_carrier_audit_summary_row_needs_every_required_cell_empty() -> None:
    header = ["核验场景", "车老板姓名", "车老板身份证号", "车老板手机号"]
    rows = [["1", "张三", an_id(1), "13800138000"], ["", "合计", "", ""], ["1", "合计", "", ""]]
    source, numbers = read_all(csv_bytes(rows, header), "audits.csv", CA)
    assert numbers == [2, 4]  # row 4 has a usage: a data row
    assert source.summary_rows == ((3, "合计"),)


@pytest.fixture(params=[True, False], ids=["c", "python"])
def native(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_the_core_counts_add_up_without_the_summary_rows(native: bool) -> None:
    """Enough rows for whole 64 KiB chunks of plain lines (the C fast path's ``LineBlock``s); the
    summary rows among them, at the end and in the middle, are neither accepted nor rejected."""
    rows = [person(seq) for seq in range(4000)]
    rows.insert(1500, ["小计", "", "", ""])
    rows += [["合计", "", "", ""], ["共 4000 人", "", "", ""], ["合计", an_id(5000), "", ""]]
    data = csv_bytes(rows)
    assert len(data) > 2 * CHUNK_BYTES
    rejected: list[tuple[int, str]] = []
    batches: list[RepairBatch] = []

    def reject(number: int, why: Reason, values: dict[str, object], first: int | None) -> None:
        rejected.append((number, why.code))

    with open_rows(io.BytesIO(data), "list.csv", LR) as source:
        counts = split_repair_rows(
            source,
            legacy=LegacyIdPolicy.CONVERT,
            batch_size=1000,
            reject=reject,
            emit=batches.append,
            native=native,
        )
    assert source.summary_rows == ((1502, "小计"), (4003, "合计"), (4004, "共 4000 人"))
    # 4000 people and the 合计 row with an ID number, which the rules reject (no authCode)
    assert counts.rows_read == 4001 == counts.rows_accepted + counts.rows_rejected
    assert counts.rows_accepted == sum(batch.count for batch in batches) == 4000
    assert rejected == [(4005, "auth_code.missing")]
