"""verifyfeed._fastsplit, the splitter's C fast path (layers/core/native/fastsplit.c): its SHA-256
against hashlib, its dedupe table (``SeenKeys``), what ``take_plain`` accepts and where it stops, and
the build.

Whole files are compared with the rules and the pure-Python path in test_repair_batches.py; here
are the edges of the C function itself.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

# not built: this module fails to import, loudly (`make native` builds it; `make test` does)
from verifyfeed import _fastsplit
from verifyfeed.config import LegacyIdPolicy
from verifyfeed.logic import repair_batches
from verifyfeed.logic.repair_batches import _RECORD_JSON, PySeenKeys, _json_str, _take_plain_py
from verifyfeed.rules.idcard import check_digit
from verifyfeed.rules.lost_repair import repair_fields

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "layers" / "core" / "native" / "build.py"
COLUMNS = (0, 1, 2, 3)


def an_id(seq: int, birth: str = "19900101") -> str:
    first17 = f"110105{birth}{seq % 1000:03d}"
    return first17 + check_digit(first17)


def test_the_c_fast_path_is_built_and_used_by_default() -> None:
    # `make test` builds it (make native); without it the splitter is correct but 2x slower
    assert repair_batches.NATIVE
    assert isinstance(_fastsplit.SHA_NI, bool)


@pytest.mark.parametrize("portable", [False, True], ids=["cpu", "portable"])
def test_sha256_is_hashlibs_for_every_length_around_the_block_edges(portable: bool) -> None:
    rng = random.Random(5)
    for size in [*range(0, 200), 1000, 4096, 65_537]:
        for _ in range(3):
            data = rng.randbytes(size)
            assert _fastsplit.sha256(data, portable) == hashlib.sha256(data).digest(), size


def test_seen_keys_keep_the_first_row_and_grow() -> None:
    seen = _fastsplit.SeenKeys()
    keys = [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(5000)]  # grows past 1024 slots
    for row, key in enumerate(keys, start=2):
        assert seen.first(key) == 0
        seen.mark(key, row)
    seen.mark(keys[0], 999_999)  # a key already seen keeps its first row
    assert len(seen) == 5000
    assert [seen.first(key) for key in keys] == list(range(2, 5002))
    assert seen.first(b"ABC") == 0
    seen.mark(b"ABC", 7)  # a short key (an authCode) is its own key, not a prefix of another
    assert seen.first(b"ABC") == 7 and seen.first(b"ABCD") == 0 and seen.first(b"AB") == 0


@pytest.mark.parametrize("key", [b"", b"x" * 17, "text"])
def test_seen_keys_refuse_keys_that_are_not_1_to_16_bytes(key: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        _fastsplit.SeenKeys().first(key)  # type: ignore[arg-type]


def test_seen_keys_refuse_row_zero() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        _fastsplit.SeenKeys().mark(b"k", 0)


def test_seen_keys_folding_case_compare_ascii_letters_ignoring_case() -> None:
    folding, exact = _fastsplit.SeenKeys(fold_case=True), _fastsplit.SeenKeys()
    assert folding.fold_case is True and exact.fold_case is False
    for seen in (folding, exact):
        seen.mark(b"ab1Z", 3)
    assert folding.first(b"AB1z") == folding.first(b"ab1Z") == folding.first(b"AB1Z") == 3
    assert exact.first(b"AB1z") == 0 and exact.first(b"ab1Z") == 3
    assert folding.first(b"ab1") == 0  # still the whole key
    py = PySeenKeys(fold_case=True)
    py.mark(b"ab1Z", 3)
    assert py.first(b"AB1z") == 3 and py.first(b"ab1") == 0


@pytest.mark.parametrize("fold", [True, False], ids=["ignoring-case", "exact"])
@pytest.mark.parametrize("take", ["c", "python"])
def test_codes_differing_only_in_case_are_left_to_the_caller_when_folding(fold: bool, take: str) -> None:
    block = clean_rows(4)
    block[1][3], block[2][3], block[3][3] = "k0", "K0X", "k0x"  # rows 3, 5 repeat rows 2, 4 but for case
    if take == "c":
        ids, codes, function = (
            _fastsplit.SeenKeys(),
            _fastsplit.SeenKeys(fold_case=fold),
            _fastsplit.take_plain,
        )
    else:
        ids, codes, function = PySeenKeys(), PySeenKeys(fold), _take_plain_py  # type: ignore[assignment]
    records: list[bytes] = []
    numbers = [2, 3, 4, 5]
    stop = function(block, 0, COLUMNS, numbers, ids, codes, records, 100)  # type: ignore[arg-type]
    if fold:
        assert stop == 1 and len(records) == 1  # "k0" is "K0": a duplicate for the rules to report
        assert function(block, 2, COLUMNS, numbers, ids, codes, records, 100) == 3  # type: ignore[arg-type]
        assert codes.first(b"k0") == 2
    else:
        assert stop == 4 and len(records) == 4
        assert codes.first(b"k0") == 3
    assert records[0].endswith(b'"authCode":"K0"}')  # sent as written


def clean_rows(count: int) -> list[list[str]]:
    names = ["张三", "王小明", "Li", "欧阳娜娜"]
    return [
        [names[i % 4], an_id(i, f"{19800101 + i % 28:08d}"), "" if i % 3 else f"139{i:08d}", f"K{i}"]
        for i in range(count)
    ]


def take_all(
    take: object, block: list[list[str]], limit: int = 1000
) -> tuple[list[int], list[bytes], object, object]:
    """Call a take function over the whole block like the splitter does, skipping refused rows."""
    c = take is _fastsplit.take_plain
    ids = _fastsplit.SeenKeys() if c else PySeenKeys()
    codes = _fastsplit.SeenKeys() if c else PySeenKeys()
    numbers = list(range(2, len(block) + 2))
    records: list[bytes] = []
    stops: list[int] = []
    index = 0
    while index < len(block):
        index = take(block, index, COLUMNS, numbers, ids, codes, records, limit)  # type: ignore[operator]
        if index < len(block) and len(records) < limit:
            stops.append(index)
            index += 1
    return stops, records, ids, codes


def test_a_clean_block_is_taken_in_one_call_with_the_records_python_builds() -> None:
    block = clean_rows(1000)
    ids, codes, records = _fastsplit.SeenKeys(), _fastsplit.SeenKeys(), []
    numbers = list(range(2, 1002))
    assert _fastsplit.take_plain(block, 0, COLUMNS, numbers, ids, codes, records, 5000) == 1000
    py_stops, py_records, _, _ = take_all(_take_plain_py, block, 5000)
    assert py_stops == [] and records == py_records
    assert len(ids) == len(codes) == 1000
    assert ids.first(hashlib.sha256(block[7][1].encode()).digest()[:16]) == 9


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (0, "·热合曼"),  # a middle dot must stand between letters
        (0, "阿卜杜·"),
        (0, "阿卜杜•热合曼"),  # a look-alike dot: the rules normalise it
        (0, "Zoë"),  # a letter outside ASCII and the CJK block
        (0, "John Smith"),
        (0, "张" * 31),
        (0, ""),
        (0, "𠀀"),  # beyond the BMP
        (1, "11010519900101007x "),
        (1, "110105199002290014"),  # 29 February
        (1, "11010519900101001"),  # 17 digits
        (1, "110105190001010018 "),
        (2, " 13900000000"),
        (2, "139 0000 0000 "),
        (2, "+86 139 0000 000"),
        (2, "+87 139 0000 0000"),
        (2, "+86 139 0000 0000 1"),
        (2, "86-13900000000"[:13]),
        (2, "12900000000"),
        (2, "1390000000"),
        (3, "K" * 17),
        (3, "K-1"),
        (3, "Ｋ1"),
    ],
)
def test_take_plain_stops_at_every_row_it_does_not_accept(column: int, value: str) -> None:
    block = clean_rows(20)
    block[10][column] = value
    stops, records, ids, codes = take_all(_fastsplit.take_plain, block)
    assert stops == [10]
    assert len(records) == 19 and len(ids) == len(codes) == 19  # the stopped row marked nothing seen


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (0, "阿卜杜·热合曼"),
        (0, "Abdu·Rahman"),
        (1, "11010519900101007x"),  # a lower-case check character: hashed upper-cased
        (2, "+86 139 0000 0000"),
        (2, "(+86)139-0000-0000"),
        (2, "0086 13900000000"),
        (2, "86 139 0000 0000"),
        (2, "139 0000 0000"),
        (2, "139\t0000\t0000"),
    ],
)
def test_take_plain_accepts_what_the_rules_normalise_cheaply_with_their_record(
    column: int, value: str
) -> None:
    block = clean_rows(20)
    block[10][column] = value
    stops, records, _, _ = take_all(_fastsplit.take_plain, block)
    assert stops == []
    name, idcode, phone, code = repair_fields(
        dict(zip(["name", "id_number", "used_phone", "auth_code"], block[10], strict=True)),
        LegacyIdPolicy.CONVERT,
    )
    expected = _RECORD_JSON % (_json_str(name)[1:-1], idcode.encode(), phone.encode(), code.encode())
    assert records[10] == expected
    if column != 0:  # names are sent as they are; ID numbers and phones only hashed
        assert value not in records[10].decode()


def test_take_plain_leaves_duplicates_to_the_caller_unmarked() -> None:
    block = clean_rows(10)
    block.append([block[3][0], block[3][1], "", "NEW1"])  # same ID as row 3
    block.append(["李四", an_id(900), "", block[4][3]])  # same code as row 4
    block.append(["李四", an_id(900), "", "NEW2"])  # the ID of the row before: it marked nothing seen
    stops, records, ids, _ = take_all(_fastsplit.take_plain, block)
    assert stops == [10, 11]
    assert len(records) == 11 and ids.first(hashlib.sha256(an_id(900).encode()).digest()[:16]) == 14


def test_take_plain_stops_right_after_filling_the_batch() -> None:
    block = clean_rows(300)
    ids, codes, records = _fastsplit.SeenKeys(), _fastsplit.SeenKeys(), [b"x"] * 90
    numbers = list(range(2, 302))
    assert _fastsplit.take_plain(block, 0, COLUMNS, numbers, ids, codes, records, 100) == 10
    assert len(records) == 100
    records.clear()
    assert _fastsplit.take_plain(block, 10, COLUMNS, numbers, ids, codes, records, 100) == 110


def test_take_plain_without_a_phone_column() -> None:
    block = [[name, id_number, code] for name, id_number, _, code in clean_rows(50)]
    records: list[bytes] = []
    args = (list(range(2, 52)), _fastsplit.SeenKeys(), _fastsplit.SeenKeys(), records, 1000)
    assert _fastsplit.take_plain(block, 0, (0, 1, -1, 2), *args) == 50
    assert all(b'"usedPhone":""' in record for record in records)


def test_take_plain_refuses_malformed_arguments() -> None:
    block = clean_rows(3)
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    with pytest.raises(ValueError, match="differ in length"):
        _fastsplit.take_plain(block, 0, COLUMNS, [2, 3], *seen, [], 10)
    with pytest.raises(TypeError):
        _fastsplit.take_plain([("a", "b", "c", "d")], 0, COLUMNS, [2], *seen, [], 10)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _fastsplit.take_plain(block, 0, COLUMNS, [2, 3, 4], PySeenKeys(), PySeenKeys(), [], 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start at 1"):
        _fastsplit.take_plain(block, 0, COLUMNS, [0, 3, 4], *seen, [], 10)
    # a short row (fewer cells than the columns need) is left to the caller
    assert _fastsplit.take_plain([["张三"]], 0, COLUMNS, [2], *seen, [], 10) == 0


BAD_COLUMNS = [(-5, 1, 2, 3), (0, -1, 2, 3), (0, 1, 2, -2), (0, 1, -2, 3), (-(2**62), 1, 2, 3)]


@pytest.mark.parametrize("columns", BAD_COLUMNS, ids=str)
def test_take_plain_refuses_column_indices_that_are_not_cells(columns: tuple[int, int, int, int]) -> None:
    # C indexes the row with them unchecked: a negative one read before the row's cells (a crash)
    block = clean_rows(3)
    records: list[bytes] = []
    with pytest.raises(ValueError, match="cell indices"):
        _fastsplit.take_plain(
            block, 0, columns, [2, 3, 4], _fastsplit.SeenKeys(), _fastsplit.SeenKeys(), records, 10
        )
    assert records == []


@pytest.mark.parametrize("columns", BAD_COLUMNS, ids=str)
def test_take_lines_refuses_column_indices_that_are_not_cells(columns: tuple[int, int, int, int]) -> None:
    lines = lines_of(clean_rows(3))
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    with pytest.raises(ValueError, match="cell indices"):
        _fastsplit.take_lines(lines, 0, 2, ",", 4, 4096, columns, *seen, [], 10)


@pytest.mark.parametrize(
    ("start", "limit", "error"),
    [(-1, 10, "start"), (4, 10, "start"), (2**40, 10, "start"), (0, 0, "limit"), (0, -3, "limit")],
)
def test_take_functions_refuse_a_start_or_limit_they_cannot_honour(
    start: int, limit: int, error: str
) -> None:
    block = clean_rows(3)
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    with pytest.raises(ValueError, match=error):
        _fastsplit.take_plain(block, start, COLUMNS, [2, 3, 4], *seen, [], limit)
    with pytest.raises(ValueError, match=error):
        _fastsplit.take_lines(lines_of(block), start, 2, ",", 4, 4096, COLUMNS, *seen, [], limit)
    # the edges are fine: start at the end takes nothing, a limit of 1 takes one row
    assert _fastsplit.take_plain(block, 3, COLUMNS, [2, 3, 4], *seen, [], 1) == 3
    assert _fastsplit.take_plain(block, 0, COLUMNS, [2, 3, 4], *seen, [], 1) == 1


def test_take_functions_refuse_one_table_for_both_seen_keys() -> None:
    # one table for ID digests and codes would let a code hide an ID number (and fill a slot twice)
    block, same = clean_rows(3), _fastsplit.SeenKeys()
    with pytest.raises(ValueError, match="two SeenKeys"):
        _fastsplit.take_plain(block, 0, COLUMNS, [2, 3, 4], same, same, [], 10)
    with pytest.raises(ValueError, match="two SeenKeys"):
        _fastsplit.take_lines(lines_of(block), 0, 2, ",", 4, 4096, COLUMNS, same, same, [], 10)
    assert len(same) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"first": 0},
        {"first": -7},
        {"first": sys.maxsize},  # first + index would overflow
        {"delimiter": ",,"},
        {"delimiter": ""},
        {"lines": [b"bytes, not str"]},
        {"ids": None},
        {"columns": (0, 1, 2)},
        {"columns": ("0", 1, 2, 3)},
        {"width": 2**70},
    ],
    ids=str,
)
def test_take_lines_refuses_other_arguments_it_cannot_trust(bad: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "lines": lines_of(clean_rows(3)),
        "start": 0,
        "first": 2,
        "delimiter": ",",
        "width": 4,
        "max_chars": 4096,
        "columns": COLUMNS,
        "ids": _fastsplit.SeenKeys(),
        "codes": _fastsplit.SeenKeys(),
        "records": [],
        "limit": 10,
    }
    arguments.update(bad)
    with pytest.raises((ValueError, TypeError, OverflowError)):
        _fastsplit.take_lines(*arguments.values())  # type: ignore[arg-type]


@pytest.mark.parametrize("delimiter", ['"', "\r", "\n", "\x00"])
def test_take_lines_leaves_lines_with_a_quote_or_line_break_delimiter_to_the_reader(delimiter: str) -> None:
    # a file's "sep=" line may name any character; only the csv reader knows what a quote then means
    lines = [delimiter.join(row) + "\n" for row in clean_rows(3)]
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 1, 2, delimiter, 4, 4096, COLUMNS, *seen, records, 10) == 1
    assert records == [] and len(seen[0]) == 0


def test_the_layer_build_makes_one_stable_abi_module_lambdas_glibc_can_load(tmp_path: Path) -> None:
    # what layers/core/Makefile runs for `sam build`: the runtime's CPython (3.13) on x86_64 here
    run = subprocess.run(
        [sys.executable, str(BUILD), "--lambda", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    (built,) = tmp_path.glob("_fastsplit*.so")
    assert "built" in run.stdout
    # the limited API only: a macro or function outside it would be an implicit declaration here
    assert run.stderr == ""
    assert built.name == "_fastsplit.abi3.so"  # no interpreter version in it: 3.11 and later load it
    spec = importlib.util.spec_from_file_location("native_build", BUILD)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    versions = build._glibc_versions(built)
    assert versions and max(versions) <= build.GLIBC_MAX  # the python3.13 runtime (AL2023) has 2.34


def test_the_source_returns_no_singleton_without_a_reference_of_its_own() -> None:
    # CPython 3.13.0's headers define Py_RETURN_NONE (TRUE, FALSE) as a bare `return Py_None`, right
    # only where None is immortal (3.12+): the abi3 module built with them crashed python3.11
    # ("deallocating None") after enough calls. Here (3.13) the leak cannot be seen: the source is.
    source = (ROOT / "layers/core/native/fastsplit.c").read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("*", "/*")))
    assert not any(f"Py_RETURN_{name}" in code for name in ("NONE", "TRUE", "FALSE", "NOTIMPLEMENTED"))
    assert "return Py_NewRef(Py_None);" in code


def test_the_module_imported_is_the_stable_abi_build_for_cpython_3_11_and_later() -> None:
    # one file for every supported Python: what the layer ships is what runs here (make native)
    assert Path(_fastsplit.__file__).name == "_fastsplit.abi3.so"
    assert _fastsplit.LIMITED_API == 0x030B0000
    assert sys.version_info >= (3, 11)


def test_every_cjk_unified_ideograph_is_a_letter_as_the_fast_path_assumes() -> None:
    # fastsplit.c takes U+4E00..U+9FFF as letters without asking Python (the limited API has no
    # Py_UNICODE_ISALPHA): true since Unicode 14.0 (Python 3.11), and assigned letters stay letters
    assert all(chr(code).isalpha() for code in range(0x4E00, 0xA000))
    block = clean_rows(3)
    block[1][0] = "\u4e00\u9fff\u9ffd"  # the block's first and last ideographs
    stops, records, _, _ = take_all(_fastsplit.take_plain, block)
    assert stops == [] and records == take_all(_take_plain_py, block)[1]
    assert records[1].startswith('{"name":"\u4e00\u9fff\u9ffd"'.encode())


def test_take_lines_reads_a_line_with_characters_beyond_the_bmp_in_a_column_it_ignores() -> None:
    # the line is read as UCS-4: a 4-byte character elsewhere in it does not change the name
    rows = [[name, id_number, phone, code, "𠀀 备注"] for name, id_number, phone, code in clean_rows(5)]
    lines = [",".join(row) + "\r\n" for row in rows]
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 0, 2, ",", 5, 4096, COLUMNS, *seen, records, 100) == 5
    assert records == take_all(_take_plain_py, [row[:4] for row in rows])[1]


def test_take_lines_reads_a_line_longer_than_its_stack_buffer() -> None:
    # over 1024 characters a line is copied to the heap (PyUnicode_AsUCS4Copy), and read the same
    rows = [[name, id_number, phone, code, "备注" * 700] for name, id_number, phone, code in clean_rows(4)]
    lines = [",".join(row) + "\n" for row in rows]
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 0, 2, ",", 5, 4096, COLUMNS, *seen, records, 100) == 4
    assert records == take_all(_take_plain_py, [row[:4] for row in rows])[1]
    lines[2] = lines[2].replace("备注", '备"注', 1)  # a quote far into a long line
    records.clear()
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 0, 2, ",", 5, 4096, COLUMNS, *seen, records, 100) == 2


def lines_of(rows: list[list[str]], delimiter: str = ",", end: str = "\r\n") -> list[str]:
    return [delimiter.join(row) + end for row in rows]


@pytest.mark.parametrize(("delimiter", "end"), [(",", "\r\n"), ("\t", "\n"), (";", "\r"), (",", "")])
def test_take_lines_splits_lines_itself_into_the_records_take_plain_makes(delimiter: str, end: str) -> None:
    rows = clean_rows(300)
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    taken = _fastsplit.take_lines(
        lines_of(rows, delimiter, end), 0, 2, delimiter, 4, 4096, COLUMNS, *seen, records, 1000
    )
    assert taken == 300
    _, expected, _, _ = take_all(_fastsplit.take_plain, rows)
    assert records == expected and seen[0].first(hashlib.sha256(rows[5][1].encode()).digest()[:16]) == 7


@pytest.mark.parametrize(
    "line",
    [
        '"张三",110105199001010011,,K1\r\n',  # a quote: the csv reader decides
        "张三,110105199001010011,,K1,extra\r\n",  # more cells than the header
        "张三,110105199001010011,K1\r\n",  # fewer
        "\r\n",  # blank
        "张三,110105199001010011,,K1\r\r\n",
        "张三,１10105199001010011,,K1\r\n",  # a full-width digit
        "张三,110105199001010011,13900000000" + " " * 5000 + ",K1\r\n",  # over max_field_chars
    ],
)
def test_take_lines_stops_at_every_line_it_cannot_split_plainly(line: str) -> None:
    lines = lines_of(clean_rows(20))
    lines[10] = line
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 0, 2, ",", 4, 4096, COLUMNS, *seen, records, 1000) == 10
    assert _fastsplit.take_lines(lines, 11, 2, ",", 4, 4096, COLUMNS, *seen, records, 1000) == 20
    assert len(records) == 19 and len(seen[0]) == 19


def test_take_lines_with_ignored_columns_and_no_phone() -> None:
    rows = [[code, "备注,不要", id_number, name] for name, id_number, _, code in clean_rows(50)]
    lines = [f"{a};{b};{c};{d}\n" for a, b, c, d in rows]
    records: list[bytes] = []
    seen = (_fastsplit.SeenKeys(), _fastsplit.SeenKeys())
    assert _fastsplit.take_lines(lines, 0, 2, ";", 4, 4096, (3, 2, -1, 0), *seen, records, 1000) == 50
    assert records[0].startswith('{"name":"张三"'.encode()) and b'"usedPhone":""' in records[0]


@pytest.mark.parametrize("seed", range(4))
def test_every_row_c_accepts_from_mutated_input_is_what_the_rules_make_of_it(seed: int) -> None:
    """Property: whatever C accepts — from cells or from raw lines — the rules accept too, with the
    same record; rows it refuses are left to the rules (so nothing is lost either way)."""
    rng = random.Random(seed)
    names = ["张三", "王小明", "Li", "阿卜杜·热合曼", "Abdu·Rahman"]
    noise = [*',;\t" xX·é𠀀\x00\r+-()', "", "1", "８"]
    fields = ["name", "id_number", "used_phone", "auth_code"]
    accepted = 0
    for _ in range(150):
        rows = [
            [
                rng.choice(names),
                an_id(rng.randrange(1000), f"{19800101 + rng.randrange(28):08d}"),
                rng.choice(["", f"139{rng.randrange(10**8):08d}", "+86 139 0000 0000", "(+86)139-0000-0000"]),
                f"K{rng.randrange(10**6)}",
            ]
            for _ in range(rng.randrange(1, 30))
        ]
        for row in rows:
            if rng.random() < 0.4:
                column = rng.randrange(4)
                text = row[column]
                at = rng.randrange(len(text) + 1)
                row[column] = text[:at] + rng.choice(noise) + text[at + rng.randrange(2) :]
        delimiter = rng.choice(",;\t")
        lines = [delimiter.join(row) + rng.choice(["\r\n", "\n", ""]) for row in rows]
        for from_lines in (False, True):
            ids, codes, records = _fastsplit.SeenKeys(), _fastsplit.SeenKeys(), []
            taken: list[int] = []
            index = 0
            while index < len(rows):
                before = len(records)
                if from_lines:
                    stop = _fastsplit.take_lines(
                        lines, index, 2, delimiter, 4, 4096, COLUMNS, ids, codes, records, 10**6
                    )
                else:
                    numbers = list(range(2, len(rows) + 2))
                    stop = _fastsplit.take_plain(rows, index, COLUMNS, numbers, ids, codes, records, 10**6)
                assert len(records) - before == stop - index  # it takes a run of rows, then stops
                taken += range(index, stop)
                index = stop + 1
            for row_index, record in zip(taken, records, strict=True):
                cells = (
                    next(csv.reader([lines[row_index]], delimiter=delimiter))
                    if from_lines
                    else rows[row_index]
                )
                name, idcode, phone, code = repair_fields(
                    dict(zip(fields, cells, strict=True)), LegacyIdPolicy.CONVERT
                )
                assert record == _RECORD_JSON % (
                    _json_str(name)[1:-1],
                    idcode.encode(),
                    phone.encode(),
                    code.encode(),
                )
            accepted += len(records)
    assert accepted > 1000  # the mutations leave most rows valid: the accept path was exercised
