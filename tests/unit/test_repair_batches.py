"""logic.repair_batches: the splitter's pure core, and the fast paths it rests on
(``RowSource.fast_rows``, ``is_plain_repair_row``, ``is_plain_id18``, ``is_plain_mobile``).

Every fast path must give exactly what the plain path gives, so most tests compare the two: the
core against a reference written the obvious way (``normalize_repair_row`` per ``SourceRow``,
two dicts), on files mixing valid, invalid, duplicate and oddly formatted rows — and each such
test runs twice, with the C fast path (``verifyfeed._fastsplit``) and with its pure-Python
reference (``_take_plain_py``).
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from verifyfeed.config import AuthCodeUniqueness, LegacyIdPolicy
from verifyfeed.ingest.readers import LineBlock, RowSource, SourceRow, open_rows
from verifyfeed.logic.repair_batches import RepairBatch, split_repair_rows
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import JobCounts, JobKind
from verifyfeed.reasons import Reason
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.rules.idcard import check_digit, is_plain_id18, normalize_clean_id
from verifyfeed.rules.lost_repair import is_plain_repair_row, normalize_repair_row, repair_fields
from verifyfeed.rules.phone import is_plain_mobile, normalize_mobile

HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]
Rejection = tuple[int, str, str, int | None]  # row, code, English reason, first row


def an_id(seq: int, birth: str = "") -> str:
    first17 = f"110105{birth or f'{19600101 + seq % 28:08d}'}{seq % 1000:03d}"
    return first17 + check_digit(first17)


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def source(tmp_path: Path, data: bytes) -> RowSource:
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    return open_rows(io.BytesIO(data), path.name, JobKind.LOST_REPAIR)


@pytest.fixture(params=[True, False], ids=["c", "python"])
def native(request: pytest.FixtureRequest) -> bool:
    """Run the test with the C fast path, then with the pure-Python one."""
    return bool(request.param)


def run_core(
    rows: RowSource, batch_size: int = 1000, *, native: bool
) -> tuple[JobCounts, list[RepairBatch], list[Rejection], list[dict[str, object]]]:
    batches: list[RepairBatch] = []
    rejections: list[Rejection] = []
    values_seen: list[dict[str, object]] = []

    def reject(number: int, why: Reason, values: dict[str, object], first: int | None) -> None:
        rejections.append((number, why.code, why.en, first))
        values_seen.append(values)

    counts = split_repair_rows(
        rows,
        legacy=LegacyIdPolicy.CONVERT,
        batch_size=batch_size,
        reject=reject,
        emit=batches.append,
        native=native,
    )
    return counts, batches, rejections, values_seen


def run_reference(
    rows: RowSource, batch_size: int = 1000, *, exact_codes: bool = False
) -> tuple[list[list[RepairRecord]], list[Rejection], list[dict[str, object]]]:
    """The splitter's loop as it was written before the fast paths (authCodes compared ignoring
    case unless ``exact_codes``)."""
    seen_id: dict[str, int] = {}
    seen_auth: dict[str, int] = {}
    batches: list[list[RepairRecord]] = [[]]
    rejections: list[Rejection] = []
    values_seen: list[dict[str, object]] = []
    for row in rows:
        if row.problem is not None:
            rejections.append((row.number, "row.unreadable", f"row cannot be read: {row.problem.en}", None))
            values_seen.append(row.values)
            continue
        try:
            record = normalize_repair_row(row.values, LegacyIdPolicy.CONVERT)
        except RuleViolation as exc:
            rejections.append((row.number, exc.rule, exc.reason().en, None))
            values_seen.append(row.values)
            continue
        first = seen_id.get(record.idcode)
        if first is not None:
            rejections.append((row.number, "duplicate.id_number", f"id_number: same as row {first}", first))
            values_seen.append(row.values)
            continue
        code = record.authCode if exact_codes else record.authCode.upper()
        first = seen_auth.get(code)
        if first is not None:
            reason = f"auth_code: same as row {first}" + ("" if exact_codes else " (letter case ignored)")
            rejections.append((row.number, "duplicate.auth_code", reason, first))
            values_seen.append(row.values)
            continue
        seen_id[record.idcode] = row.number
        seen_auth[code] = row.number
        if len(batches[-1]) == batch_size:
            batches.append([])
        batches[-1].append(record)
    return [b for b in batches if b], rejections, values_seen


def records_of(batch: RepairBatch) -> list[RepairRecord]:
    return [RepairRecord.model_validate(r) for r in json.loads(batch.records_json)]


def assert_same_as_reference(
    tmp_path: Path, data: bytes, batch_size: int = 1000, *, native: bool
) -> JobCounts:
    counts, batches, rejections, values = run_core(source(tmp_path, data), batch_size, native=native)
    ref_batches, ref_rejections, ref_values = run_reference(source(tmp_path, data), batch_size)
    assert [records_of(b) for b in batches] == ref_batches
    assert [(b.seq, b.count) for b in batches] == [(i + 1, len(b)) for i, b in enumerate(ref_batches)]
    assert rejections == ref_rejections
    assert values == ref_values  # the reports mask the same raw values
    accepted = sum(len(b) for b in ref_batches)
    assert counts == JobCounts(
        rows_read=accepted + len(ref_rejections),
        rows_accepted=accepted,
        rows_rejected=len(ref_rejections),
        batches_total=len(ref_batches),
    )
    return counts


def messy_rows(count: int, seed: int) -> list[list[str]]:
    """Valid rows mixed with every kind of trouble, and with values the fast path leaves alone."""
    rng = random.Random(seed)
    rows: list[list[str]] = []
    for i in range(count):
        name = rng.choice(
            ["张三", "李四", "王小明", "阿卜杜·热合曼", "John Smith", "Zoë", "ＡＢＣ", "张\u200b三"]
        )
        id_number = an_id(i, rng.choice(["", "", "", "19920229", "20000229", "19000101"]))
        phone = rng.choice(
            ["", "13800138000", f"139{i:08d}", "+86 138 0013 8000", "(+86)13800138000", " 13800138000"]
        )
        code = f"K{i:07d}"
        trouble = rng.randrange(40)
        if trouble == 0:
            id_number = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")  # check digit
        elif trouble == 1:
            id_number = id_number.replace("X", "x")
        elif trouble == 2:
            id_number = "".join(chr(ord(c) + 0xFEE0) for c in id_number)  # full-width
        elif trouble == 3:
            id_number = f" {id_number} "
        elif trouble == 4:
            id_number = sha256_hex(id_number).upper()  # pre-hashed
        elif trouble == 5:
            id_number = id_number[:6] + id_number[8:17]  # 15-digit legacy
        elif trouble == 6:
            id_number = "1.10105E+17"
        elif trouble == 7 and rows:
            id_number = rng.choice(rows)[1]  # duplicate ID (maybe of a rejected row)
        elif trouble == 8 and rows:
            code = rng.choice(rows)[3]  # duplicate code
        elif trouble == 9:
            code = "A-1"
        elif trouble == 10:
            code = f" {code}"
        elif trouble == 11:
            code = "Ｋ" + code[1:]  # full-width letter
        elif trouble == 12:
            name = "=cmd"
        elif trouble == 13:
            name = ""
        elif trouble == 14:
            name = "张" * 31
        elif trouble == 15:
            phone = "02112345678"
        elif trouble == 16:
            id_number = id_number[:10] + "0231" + id_number[14:]  # 31 February
        rows.append([name, id_number, phone, code])
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_core_matches_the_reference_on_messy_files(tmp_path: Path, seed: int, native: bool) -> None:
    rows = messy_rows(1500, seed)
    counts = assert_same_as_reference(tmp_path, csv_bytes(rows), batch_size=400, native=native)
    assert counts.rows_read == 1500 and 0 < counts.rows_rejected < 1500


def test_core_matches_the_reference_with_reader_problems_and_odd_rows(tmp_path: Path, native: bool) -> None:
    good = messy_rows(900, 7)
    lines = [",".join(row) for row in good]
    lines[10] = ""  # blank: skipped, keeps its number
    lines[11] = "  ,  , , "  # blank with spaces
    lines[20] = lines[20] + ",extra"  # more cells than the header
    lines[30] = "李四," + an_id(30)  # short row: no phone nor code
    lines[40] = '"王五","' + an_id(40) + '",,"K0000040"'  # quoted
    lines[50] = '"多\n行",' + an_id(50) + ",,K0000050"  # a quoted field across two lines
    lines[60] = "赵六," + an_id(60) + ",," + "K" * 5000  # over max_field_chars
    data = ("\r\n".join([",".join(HEADER), *lines]) + "\r\n").encode()
    data = data.replace(b"K0000070", b"K\xff\xfe0070")  # bytes that are not UTF-8
    assert_same_as_reference(tmp_path, data, batch_size=256, native=native)


def test_file_without_a_phone_column(tmp_path: Path, native: bool) -> None:
    rows = [[name, id_number, code] for name, id_number, _, code in messy_rows(600, 3)]
    assert_same_as_reference(tmp_path, csv_bytes(rows, header=["姓名", "身份证号", "授权码"]), native=native)


@pytest.mark.parametrize("exact", [False, True], ids=["ignoring-case", "exact"])
def test_auth_codes_are_unique_ignoring_case_by_default(tmp_path: Path, native: bool, exact: bool) -> None:
    codes = ["Ab1", "aB1", "AB1", "x9", "X9", "K2"] + [f"F{i}" for i in range(2000)] + ["k2"]
    data = csv_bytes([["张三", an_id(i), "", code] for i, code in enumerate(codes)])
    assert len(data) > 65536  # the last rows come in a LineBlock: the C take over lines sees them
    rejections: list[Rejection] = []
    batches: list[RepairBatch] = []
    split_repair_rows(
        source(tmp_path, data),
        legacy=LegacyIdPolicy.CONVERT,
        batch_size=1000,
        reject=lambda number, why, values, first: rejections.append((number, why.code, why.en, first)),
        emit=batches.append,
        native=native,
        auth_codes=AuthCodeUniqueness.EXACT if exact else AuthCodeUniqueness.IGNORE_CASE,
    )
    sent = [r.authCode for b in batches for r in records_of(b)]
    if exact:
        assert sent == codes and rejections == []
    else:
        assert sent == ["Ab1", "x9", "K2", *codes[6:-1]]  # the first spelling is sent
        assert rejections == [
            (3, "duplicate.auth_code", "auth_code: same as row 2 (letter case ignored)", 2),
            (4, "duplicate.auth_code", "auth_code: same as row 2 (letter case ignored)", 2),
            (6, "duplicate.auth_code", "auth_code: same as row 5 (letter case ignored)", 5),
            (len(codes) + 1, "duplicate.auth_code", "auth_code: same as row 7 (letter case ignored)", 7),
        ]
    ref_batches, ref_rejections, _ = run_reference(source(tmp_path, data), exact_codes=exact)
    assert [records_of(b) for b in batches] == ref_batches
    assert rejections == ref_rejections


def test_columns_in_another_order_with_ignored_ones(tmp_path: Path, native: bool) -> None:
    rows = [[code, "x", phone, name, id_number] for name, id_number, phone, code in messy_rows(600, 4)]
    assert_same_as_reference(
        tmp_path, csv_bytes(rows, header=["授权码", "备注", "手机号", "姓名", "身份证号"]), native=native
    )


def test_batches_of_at_most_batch_size_in_file_order(tmp_path: Path, native: bool) -> None:
    rows = [["张三", an_id(i, f"{19500101 + i % 28:08d}"), "", f"C{i:05d}"] for i in range(2500)]
    counts, batches, rejections, _ = run_core(source(tmp_path, csv_bytes(rows)), native=native)
    assert rejections == []
    assert [(b.seq, b.count) for b in batches] == [(1, 1000), (2, 1000), (3, 500)]
    assert [r.authCode for b in batches for r in records_of(b)] == [f"C{i:05d}" for i in range(2500)]
    assert counts.batches_total == 3 and counts.rows_accepted == 2500


def test_message_body_is_byte_for_byte_the_pydantic_message(tmp_path: Path, native: bool) -> None:
    rows = [
        ["张三", an_id(1), "13800138000", "A1"],
        ["阿卜杜·热合曼", an_id(2), "", "A2"],  # slow path: middle dot
        ["John O'Neil-Smith Jr.", an_id(3), "+86 139 0000 0000", "A3"],  # slow path: separators
        ["Zoë", sha256_hex(an_id(4)).upper(), "", "a4"],  # pre-hashed ID
        ["𠀀𠀁", an_id(5), "13900000005", "A5"],  # beyond the BMP
    ]
    _, batches, rejections, _ = run_core(source(tmp_path, csv_bytes(rows)), native=native)
    assert rejections == []
    (batch,) = batches
    job_id = "0123456789abcdef01234567"
    message = LostRepairBatchMessage(
        job_id=job_id, batch_id=f"{job_id}#00001", seq=1, records=records_of(batch)
    )
    assert batch.message_body(job_id) == message.model_dump_json(exclude_none=True).encode()
    assert LostRepairBatchMessage.model_validate_json(batch.message_body(job_id)) == message


# ---- the fast tests give exactly what the rules give ---------------------------------------------


def id_samples() -> list[str]:
    rng = random.Random(11)
    samples = [an_id(i, birth) for i in range(200) for birth in ("", "19000101", "20240229", "21000101")]
    samples += [an_id(1, "19000229"), an_id(1, "18991231"), an_id(1, "20230229"), an_id(2, "19991301")]
    for base in list(samples):
        samples.append(base[:-1] + rng.choice("0123456789Xx"))
        samples.append(base.lower())
        samples.append(" " + base)
        samples.append(base[:17])
        samples.append("".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in base))
        samples.append(base[:5] + "a" + base[6:])
        samples.append(base[:5] + "٣" + base[6:])  # an Arabic-Indic digit: isdigit() but not ASCII
    return samples


def test_is_plain_id18_only_passes_numbers_the_rules_return_unchanged() -> None:
    passed = 0
    for text in id_samples():
        if is_plain_id18(text):
            passed += 1
            assert normalize_clean_id(text) == text, text
    assert passed >= 400
    assert is_plain_id18(an_id(7)) and not is_plain_id18(an_id(7, "20240229"))  # left to the rules


@pytest.mark.parametrize(
    "text",
    [
        "13800138000",
        "12800138000",
        "1380013800",
        "138001380000",
        "+8613800138000",
        "1380013800a",
        "١٣٨٠٠١٣٨٠٠٠",
        "",
    ],
)
def test_is_plain_mobile_is_exactly_normalize_returning_the_same_text(text: str) -> None:
    try:
        same = normalize_mobile(text, required=True) == text
    except RuleViolation:
        same = False
    assert is_plain_mobile(text) == same


def test_is_plain_repair_row_implies_repair_fields_returns_the_values() -> None:
    rows = messy_rows(3000, 99)
    plain = 0
    for name, id_number, phone, code in rows:
        if not is_plain_repair_row(name, id_number, phone, code):
            continue
        plain += 1
        values = {"name": name, "id_number": id_number, "used_phone": phone, "auth_code": code}
        expected = (name, sha256_hex(id_number), sha256_hex(phone) if phone else "", code)
        assert repair_fields(values, LegacyIdPolicy.CONVERT) == expected
    assert 200 < plain < 3000


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("张三", True),
        ("Zoë", True),
        ("Zoe\u0308", False),
        ("张\u200b三", False),
        ("ＡＢＣ", False),
        ("张" * 31, False),
        ("𠀀" * 15, True),  # 30 UTF-16 code units
        ("𠀀" * 16, False),  # 16 characters but 32 code units: name.length
        ("张　三", False),  # padded: the rules squeeze it
    ],
)
def test_names_the_fast_path_leaves_to_the_rules(name: str, plain: bool) -> None:
    assert is_plain_repair_row(name, an_id(1), "", "A1") is plain


# ---- RowSource.fast_rows ------------------------------------------------------------------------


def test_fast_rows_are_the_rows_in_blocks(tmp_path: Path) -> None:
    good = [["张三", an_id(i), "", f"K{i}"] for i in range(700)]
    lines = [",".join(row) for row in good]
    lines[5] = ""
    lines[6] = " , , , "
    lines[100] = lines[100] + ",more"
    lines[200] = "李四"
    lines[300] = "王五,1," + "9" * 5000 + ",K"
    data = ("\n".join([",".join(HEADER), *lines]) + "\n").encode()
    expected = list(source(tmp_path, data))
    flattened: list[SourceRow] = []
    blocks = 0
    for item in source(tmp_path, data).fast_rows():
        if isinstance(item, SourceRow):  # a row the reader had something to say about
            flattened.append(item)
            continue
        blocks += 1
        numbers, cells = item
        assert len(numbers) == len(cells) and all(len(c) == 4 for c in cells)
        fields = ["name", "id_number", "used_phone", "auth_code"]
        flattened += [
            SourceRow(n, dict(zip(fields, c, strict=True))) for n, c in zip(numbers, cells, strict=True)
        ]
    assert flattened == expected
    assert blocks >= 4


# ---- LineBlocks: whole 64 KiB chunks without quotes skip the csv reader ------------------------


def big_file(seed: int, rows: int = 7000) -> bytes:
    """Several 64 KiB chunks: mostly plain lines, with quoted fields (some across lines, so across
    chunk ends too), blank and short lines, extra cells, over-long values and CR-only line ends."""
    rng = random.Random(seed)
    lines: list[str] = []
    for i, (name, id_number, phone, code) in enumerate(messy_rows(rows, seed)):
        roll = rng.randrange(400)
        if roll == 0:
            lines.append(f'"{name}\r\n续",{id_number},{phone},{code}')  # a record across two lines
        elif roll == 1:
            lines.append(f'"{name}",{id_number},"{phone}",{code}')
        elif roll == 2:
            lines.append("")
        elif roll == 3:
            lines.append(" , ,, ")
        elif roll == 4:
            lines.append(f"{name},{id_number}")
        elif roll == 5:
            lines.append(f"{name},{id_number},{phone},{code},extra")
        elif roll == 6:
            lines.append(f"{name},{id_number},{phone},{code}{'K' * 5000}")
        elif roll == 7:
            lines.append(f"{name},{id_number},{phone},{code}\r")  # a CR line end, then CRLF
        else:
            lines.append(f"{name},{id_number},{phone},{code}")
        if i > 0 and i % 1500 == 0:  # a quote-free stretch long enough for whole plain chunks
            lines.extend(",".join(row) for row in messy_rows(1200, seed + i) if '"' not in "".join(row))
    return ("\r\n".join([",".join(HEADER), *lines]) + "\r\n").encode()


def expand(rows: RowSource, items: list[object]) -> list[SourceRow]:
    fields = ["name", "id_number", "used_phone", "auth_code"]
    out: list[SourceRow] = []
    for item in items:
        parts = list(rows.line_items(item)) if isinstance(item, LineBlock) else [item]
        for part in parts:
            if isinstance(part, SourceRow):
                out.append(part)
            else:
                numbers, cells = part  # type: ignore[misc]
                out += [
                    SourceRow(n, dict(zip(fields, c, strict=True)))
                    for n, c in zip(numbers, cells, strict=True)
                ]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_line_blocks_give_the_rows_the_csv_reader_gives(tmp_path: Path, seed: int) -> None:
    data = big_file(seed)
    assert len(data) > 6 * 64 * 1024
    expected = list(source(tmp_path, data))
    fast = source(tmp_path, data)
    items = list(fast.fast_rows(lines=True))
    line_blocks = [item for item in items if isinstance(item, LineBlock)]
    assert len(line_blocks) >= 2  # the quote-free stretches
    assert expand(fast, items) == expected
    # and the rows are those an independent parse of the whole text finds
    parsed = list(csv.reader(io.StringIO(data.decode(), newline="")))
    by_number = {row.number: row for row in expected}
    assert len(parsed) - 1 >= len(expected)
    for row in expected[:50] + expected[-50:]:
        if row.problem is None:
            cells = parsed[row.number - 1]
            assert list(row.values.values()) == [cells[i] if i < len(cells) else None for i in range(4)]
    assert max(by_number) == len(parsed)


def test_line_blocks_only_when_asked_and_not_for_dirty_chunks(tmp_path: Path) -> None:
    rows = [["张三", an_id(i, f"{19700101 + i % 28:08d}"), "", f"C{i:05d}"] for i in range(6000)]
    data = csv_bytes(rows)
    assert all(not isinstance(item, LineBlock) for item in source(tmp_path, data).fast_rows())
    assert any(isinstance(item, LineBlock) for item in source(tmp_path, data).fast_rows(lines=True))
    dirty = data.replace(b"C00100", b"C\xff0100").replace(b"C05000", b"C\xff5000")  # bad bytes spread out
    items = list(source(tmp_path, dirty).fast_rows(lines=True))
    problems = [item for item in items if isinstance(item, SourceRow) and item.problem]
    assert [row.number for row in problems] == [102, 5002]
    assert all("\ufffd" not in line for item in items if isinstance(item, LineBlock) for line in item.lines)


@pytest.mark.parametrize("seed", range(3))
def test_core_matches_the_reference_on_big_files(tmp_path: Path, seed: int, native: bool) -> None:
    counts = assert_same_as_reference(tmp_path, big_file(seed), batch_size=700, native=native)
    assert counts.rows_read > 7000 and counts.rows_rejected > 100


def test_the_pure_core_imports_no_aws_sdk() -> None:
    """repair_batches is the splitter's pure core (issue 17): ids and time stamps come from
    models.ids, so neither botocore nor boto3 is loaded with it."""
    import subprocess
    import sys

    code = (
        "import sys, verifyfeed.logic.repair_batches;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
