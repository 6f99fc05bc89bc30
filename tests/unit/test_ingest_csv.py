"""ingest.readers on CSV: encodings, line ends, quoting, damaged rows, whole-file rejections."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import CHUNK_BYTES, RowSource, SourceRow, open_rows
from verifyfeed.models.records import JobKind
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.idcard import check_digit
from verifyfeed.rules.lost_repair import normalize_repair_row

LR = JobKind.LOST_REPAIR
HEADER_CN = "姓名,身份证号,曾用手机号,授权码"


def problem(row: SourceRow) -> str | None:
    """The English text of the reader's problem with the row, if any."""
    return None if row.problem is None else row.problem.en


def an_id(seq: int) -> str:
    first17 = f"110105{19800101 + seq % 28:08d}{seq % 1000:03d}"
    return first17 + check_digit(first17)


def read(
    tmp_path: Path, data: bytes, name: str = "upload.csv", kind: JobKind | None = None, **options: int
) -> tuple[RowSource, list[SourceRow]]:
    path = tmp_path / name
    path.write_bytes(data)
    with path.open("rb") as stream:
        source = open_rows(stream, name, kind, **options)
        rows = list(source)
    return source, rows


def rejected(tmp_path: Path, data: bytes, name: str = "upload.csv", kind: JobKind | None = None) -> str:
    with pytest.raises(FileRejected) as info:
        read(tmp_path, data, name, kind)
    return info.value.reason


def test_utf8_chinese_header(tmp_path: Path) -> None:
    text = f"{HEADER_CN}\n张三,{an_id(1)},13800138000,A1\n李四,{an_id(2)},,A2\n"
    source, rows = read(tmp_path, text.encode())
    assert (source.kind, source.format, source.encoding) == (LR, "csv", "utf-8")
    assert source.header.columns == {0: "name", 1: "id_number", 2: "used_phone", 3: "auth_code"}
    assert rows == [
        SourceRow(2, {"name": "张三", "id_number": an_id(1), "used_phone": "13800138000", "auth_code": "A1"}),
        SourceRow(3, {"name": "李四", "id_number": an_id(2), "used_phone": "", "auth_code": "A2"}),
    ]


def test_utf8_bom(tmp_path: Path) -> None:
    text = f"{HEADER_CN}\r\n张三,{an_id(1)},,A1\r\n"
    source, rows = read(tmp_path, codecs.BOM_UTF8 + text.encode())
    assert source.encoding == "utf-8-sig"
    assert source.header.columns[0] == "name"  # the BOM did not stick to the first header
    assert [r.values["name"] for r in rows] == ["张三"]


def test_gbk(tmp_path: Path) -> None:
    text = f"{HEADER_CN}\r\n张三,{an_id(1)},,A1\r\n欧阳娜娜,{an_id(2)},,A2\r\n"
    source, rows = read(tmp_path, text.encode("gbk"))
    assert source.encoding == "gb18030"
    assert [r.values["name"] for r in rows] == ["张三", "欧阳娜娜"]
    assert all(r.problem is None for r in rows)


def test_gb18030_four_byte_character(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n𠀀三,{an_id(1)},,A1\n".encode("gb18030")
    assert "𠀀".encode("gb18030") in data and len("𠀀".encode("gb18030")) == 4
    source, rows = read(tmp_path, data)
    assert source.encoding == "gb18030"
    assert rows[0].values["name"] == "𠀀三"
    assert rows[0].problem is None


def test_invalid_bytes_flag_only_their_row_utf8(tmp_path: Path) -> None:
    good = [f"张{i},{an_id(i)},,A{i}\n".encode() for i in range(5)]
    bad = b"\xe5\xbc\xff,110105198001010011,,B1\n"  # a UTF-8 sequence broken by 0xFF
    data = f"{HEADER_CN}\n".encode() + good[0] + good[1] + bad + good[2] + good[3]
    source, rows = read(tmp_path, data)
    assert source.encoding == "utf-8"
    assert [r.number for r in rows] == [2, 3, 4, 5, 6]
    assert [problem(r) for r in rows] == [None, None, "encoding: invalid byte sequence for utf-8", None, None]
    assert [r.values["name"] for r in rows if r.problem is None] == ["张0", "张1", "张2", "张3"]


def test_invalid_bytes_flag_only_their_row_gbk(tmp_path: Path) -> None:
    data = (
        f"{HEADER_CN}\n张三,{an_id(1)},,A1\n".encode("gbk")
        + b"\xff\xff,x,,B\n"
        + f"李四,{an_id(2)},,A2\n".encode("gbk")
    )
    source, rows = read(tmp_path, data)
    assert source.encoding == "gb18030"
    assert [problem(r) for r in rows] == [None, "encoding: invalid byte sequence for gb18030", None]
    assert rows[2].values["name"] == "李四"


def test_ascii_start_then_gbk_decides_late(tmp_path: Path) -> None:
    ascii_rows = "".join(f"name{i},{an_id(i)},,A{i}\n" for i in range(6000))
    assert len(ascii_rows) > 2 * CHUNK_BYTES
    data = ("name,id_number,used_phone,auth_code\n" + ascii_rows).encode() + f"张三,{an_id(1)},,Z1\n".encode(
        "gbk"
    )
    source, rows = read(tmp_path, data)
    assert source.encoding == "gb18030"
    assert len(rows) == 6001
    assert rows[-1] == SourceRow(
        6002, {"name": "张三", "id_number": an_id(1), "used_phone": "", "auth_code": "Z1"}
    )
    assert all(r.problem is None for r in rows)


def test_utf16_unicode_text(tmp_path: Path) -> None:
    text = f"姓名\t身份证号\t授权码\r\n张三\t{an_id(1)}\tA1\r\n"
    source, rows = read(tmp_path, text.encode("utf-16"), name="export.txt")
    assert source.encoding == "utf-16"
    assert rows == [SourceRow(2, {"name": "张三", "id_number": an_id(1), "auth_code": "A1"})]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_ends(tmp_path: Path, newline: str) -> None:
    lines = [
        HEADER_CN,
        f"张三,{an_id(1)},,A1",
        "",
        f"李四,{an_id(2)},,A2",
        '"王\n五",x,,A3',
        f"赵六,{an_id(3)},,A4",
    ]
    _, rows = read(tmp_path, newline.join(lines).encode())
    # blank line 3 skipped but counted; the quoted field keeps its newline and is one row
    assert [r.number for r in rows] == [2, 4, 5, 6]
    assert [r.values["name"] for r in rows] == ["张三", "李四", "王\n五", "赵六"]
    assert all(r.problem is None for r in rows)


@pytest.mark.parametrize("terminator", [b"\r\n", b"\r", b"\n"])
def test_line_end_split_across_chunks(tmp_path: Path, terminator: bytes) -> None:
    header = b"name,id_number,auth_code" + terminator
    row = b"n,1,a" + terminator
    count = (CHUNK_BYTES - len(header)) // len(row) - 1
    body = header + row * count
    pad = CHUNK_BYTES - len(body) - len(b"p,1,") - 1  # the last chunk byte is the CR (or LF)
    body += b"p,1," + b"x" * pad + terminator
    assert body[CHUNK_BYTES - 1 : CHUNK_BYTES] == terminator[:1]
    body += row * 3
    _, rows = read(tmp_path, body)
    assert len(rows) == count + 4
    assert [r.number for r in rows] == list(range(2, count + 6))
    assert all(r.problem is None for r in rows)


def test_quoted_multiline_counts_records(tmp_path: Path) -> None:
    data = b'name,id,auth\n"Smith, John","1\n2\n3","x""y"\nnext,2,b\n'
    _, rows = read(tmp_path, data)
    assert rows == [
        SourceRow(2, {"name": "Smith, John", "id_number": "1\n2\n3", "auth_code": 'x"y'}),
        SourceRow(3, {"name": "next", "id_number": "2", "auth_code": "b"}),
    ]


def test_one_megabyte_field(tmp_path: Path) -> None:
    big = "A" * 1_000_000
    data = f"{HEADER_CN}\n张三,{an_id(1)},,A1\n李四,{an_id(2)},,{big}\n王五,{an_id(3)},,A3\n".encode()
    _, rows = read(tmp_path, data)
    assert [r.number for r in rows] == [2, 3, 4]
    assert [problem(r) for r in rows] == [None, "value longer than 4096 characters", None]
    assert rows[2].values["name"] == "王五"


def test_field_over_max_field_chars(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n张三,{an_id(1)},,{'A' * 101}\n李四,{an_id(2)},,{'A' * 100}\n".encode()
    _, rows = read(tmp_path, data, max_field_chars=100)
    assert [problem(r) for r in rows] == ["value longer than 100 characters", None]


def test_big_field_accepted_when_allowed(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n张三,{an_id(1)},,{'A' * 1_000_000}\n".encode()
    _, rows = read(tmp_path, data, max_field_chars=2_000_000)
    assert rows[0].problem is None
    assert rows[0].values["auth_code"] == "A" * 1_000_000


def test_overlong_line_is_cut(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n张三,{an_id(1)},,{'A' * (3 * 1024 * 1024)}\n李四,{an_id(2)},,A2\n".encode()
    _, rows = read(tmp_path, data)
    assert [r.number for r in rows] == [2, 3]
    assert problem(rows[0]) == f"line longer than {1024 * 1024} characters"
    assert rows[1] == SourceRow(
        3, {"name": "李四", "id_number": an_id(2), "used_phone": "", "auth_code": "A2"}
    )


def test_nul(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n张\x00三,{an_id(1)},,A1\n李四,{an_id(2)},,A2\n".encode()
    _, rows = read(tmp_path, data)
    assert [problem(r) for r in rows] == ["contains NUL characters", None]


def test_truncated_quote(tmp_path: Path) -> None:
    data = f'{HEADER_CN}\n张三,{an_id(1)},,A1\n李四,"{an_id(2)}'.encode()
    _, rows = read(tmp_path, data)
    assert rows[0].problem is None
    assert rows[1].number == 3
    assert problem(rows[1]) == "unterminated quoted field at the end of the file (file truncated?)"


def test_malformed_quote(tmp_path: Path) -> None:
    data = f'{HEADER_CN}\n"张三"x,{an_id(1)},,A1\n李四,{an_id(2)},,A2\n'.encode()
    _, rows = read(tmp_path, data)
    assert rows[0].problem is not None and rows[0].problem.code == "problem.bad_quote"
    assert rows[0].problem.en.startswith("malformed quoting")
    assert rows[0].problem.zh == "引号用法不对：右引号后面必须是分隔符或换行"
    assert rows[1] == SourceRow(
        3, {"name": "李四", "id_number": an_id(2), "used_phone": "", "auth_code": "A2"}
    )


@pytest.mark.parametrize(
    "data", [b"name,id_number,auth_code", b"name,id_number,auth_code\r\n", b"\n\nname,id,auth\n\n"]
)
def test_header_only(tmp_path: Path, data: bytes) -> None:
    source, rows = read(tmp_path, data)
    assert rows == []
    assert source.kind is LR
    assert set(source.header.fields) == {"name", "id_number", "auth_code"}


def test_empty_file(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"") == "file is empty"


def test_blank_file(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"\r\n \n\t\n", kind=LR) == "file has no header row"


def test_missing_column(tmp_path: Path) -> None:
    # the customer's column names, in both languages
    with pytest.raises(FileRejected) as info:
        read(tmp_path, "姓名,身份证号\n张三,1\n".encode(), kind=LR)
    assert (info.value.code, info.value.reason) == (
        "header.missing_columns",
        "missing required column(s): 授权码",
    )
    assert info.value.zh == "缺少必需的列：授权码"


def test_a_header_naming_no_column_is_no_header(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"a,b,c\n1,2,3\n").startswith(
        "no header row (text or data without column names)"
    )
    assert rejected(tmp_path, b"a,b,c\n1,2,3\n", kind=LR).endswith(
        "names the columns of a lost-repair file (姓名, 身份证号, 授权码)"
    )


def test_a_header_of_neither_kind_cannot_tell_the_kind(tmp_path: Path) -> None:
    with pytest.raises(FileRejected) as info:
        read(tmp_path, "姓名,身份证号,备注\n张三,1,x\n".encode())
    assert info.value.code == "header.kind_unknown"
    assert info.value.reason.startswith("cannot tell lost-repair from carrier-audit by the header")


def test_wrong_kind_given(tmp_path: Path) -> None:
    with pytest.raises(FileRejected) as info:
        read(tmp_path, "姓名,身份证号,授权码\n".encode(), kind=JobKind.CARRIER_AUDIT)
    assert info.value.code == "header.other_kind"
    assert info.value.reason == (
        "the header is that of a lost-repair file, not of a carrier-audit file (which has the columns "
        "核验场景, 车老板姓名, 车老板身份证号, 车老板手机号)"
    )
    assert info.value.zh.startswith("表头是失联修复文件的列名，而不是车老板核验文件的")


def test_undecodable_header(tmp_path: Path) -> None:
    data = "姓名,身份证号".encode() + b"\xff" + ",授权码\n张三,1,A\n".encode()
    assert rejected(tmp_path, data) == "the header is not valid utf-8 text"


def test_extra_column_ignored(tmp_path: Path) -> None:
    data = f"备注,Name,ID Number,Auth Code,Remark\nvip,张三,{an_id(1)},A1,x\n".encode()
    source, rows = read(tmp_path, data)
    assert source.header.ignored == ("备注", "Remark")
    assert rows == [SourceRow(2, {"name": "张三", "id_number": an_id(1), "auth_code": "A1"})]


def test_extra_cells_and_short_rows(tmp_path: Path) -> None:
    data = (
        f"{HEADER_CN}\n"
        f"张三,{an_id(1)},,A1,,\n"  # trailing empty cells: fine
        f"李四,{an_id(2)},,A2,oops,\n"  # an unquoted comma shifted something
        f"王五,{an_id(3)}\n"  # short: the rest is absent
    ).encode()
    _, rows = read(tmp_path, data)
    assert [problem(r) for r in rows] == [None, "row has 5 cells but the header has 4", None]
    assert rows[2].values == {"name": "王五", "id_number": an_id(3), "used_phone": None, "auth_code": None}


@pytest.mark.parametrize(
    "data",
    [
        "name\tid_number\tauth_code\n张三\t{id}\tA1\n",
        "name;id_number;auth_code\n张三;{id};A1\n",
        "sep=;\nname;id_number;auth_code\n张三;{id};A1\n",
        "sep=\t\nname\tid_number\tauth_code\n张三\t{id}\tA1\n",
    ],
)
def test_delimiters(tmp_path: Path, data: str) -> None:
    _, rows = read(tmp_path, data.format(id=an_id(1)).encode())
    assert rows == [SourceRow(2, {"name": "张三", "id_number": an_id(1), "auth_code": "A1"})]


def test_comma_wins_over_semicolon(tmp_path: Path) -> None:
    _, rows = read(tmp_path, f"name,id_number,auth_code\nA;B,{an_id(1)},A1\n".encode())
    assert rows[0].values["name"] == "A;B"


def test_ole2_content_is_read_as_a_workbook_whatever_the_name(tmp_path: Path) -> None:
    # .xls is read since issue 26 (tests/unit/test_ingest_workbooks.py); this one is no workbook
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600
    assert rejected(tmp_path, ole2, name="old.xls").startswith("not a readable .xls workbook")
    assert rejected(tmp_path, ole2, name="renamed.csv").startswith("not a readable .xls workbook")
    # Excel's "save as web page", named .xls: said for what it is
    assert rejected(tmp_path, b"<html>table</html>", name="export.xls").startswith("a web page (HTML)")


def test_unknown_extension_sniffed_as_csv(tmp_path: Path) -> None:
    source, rows = read(tmp_path, f"name,id,auth\n张三,{an_id(1)},A1\n".encode(), name="upload.bin")
    assert source.format == "csv"
    assert len(rows) == 1


def test_carrier_audit_csv(tmp_path: Path) -> None:
    data = "核验场景,车老板姓名,车老板身份证号,车老板手机号,车牌号\n2,李四,x,13900139000,粤BD12345\n".encode(
        "gbk"
    )
    source, rows = read(tmp_path, data)
    assert source.kind is JobKind.CARRIER_AUDIT
    assert rows[0].values == {
        "usage": "2",
        "name": "李四",
        "idCard": "x",
        "phone": "13900139000",
        "carLicensePlate": "粤BD12345",
    }


class Trickle:
    """A non-seekable stream that returns short reads and fails on read-everything calls."""

    def __init__(self, data: bytes, step: int = 1000) -> None:
        self._data = data
        self._pos = 0
        self._step = step
        self.largest_request = 0

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        assert 0 < size <= CHUNK_BYTES, "the reader must stream in bounded chunks"
        self.largest_request = max(self.largest_request, size)
        part = self._data[self._pos : self._pos + min(size, self._step)]
        self._pos += len(part)
        return part

    @property
    def consumed(self) -> int:
        return self._pos


def test_streams_without_reading_everything() -> None:
    data = (
        "name,id_number,auth_code\n" + "".join(f"张{i},{an_id(i)},A{i}\n" for i in range(100_000))
    ).encode()
    assert len(data) > 3_000_000
    stream = Trickle(data)
    source = open_rows(cast(BinaryIO, stream), "big.csv", None)
    assert stream.consumed <= CHUNK_BYTES
    first = next(source)
    assert first.number == 2
    assert stream.consumed <= 2 * CHUNK_BYTES
    rest = list(source)
    assert len(rest) == 99_999
    assert rest[-1].number == 100_001
    assert stream.consumed == len(data)


def test_rows_feed_the_rules(tmp_path: Path) -> None:
    data = f"{HEADER_CN}\n张三,{an_id(1)},138 0013 8000,A1\n李四,1.10105E+17,,A2\n".encode()
    _, rows = read(tmp_path, data)
    record = normalize_repair_row(rows[0].values, LegacyIdPolicy.CONVERT)
    assert record.authCode == "A1"
    with pytest.raises(RuleViolation) as info:
        normalize_repair_row(rows[1].values, LegacyIdPolicy.CONVERT)
    assert info.value.rule == "id_number.excel_number"


# ---- title rows above the header ----------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        "2026年12月失联名单\n",  # a merged cell saved as CSV: one cell
        "2026年12月失联名单,,,\n",  # ... or with the empty cells of the merge
        "2026年12月失联名单\n\n制表: 运营部,,,\n",  # two title rows and a blank one
    ],
)
def test_title_rows_above_the_header_are_skipped_with_a_note(tmp_path: Path, title: str) -> None:
    text = f"{title}{HEADER_CN}\n张三,{an_id(1)},,A1\n"
    source, rows = read(tmp_path, text.encode())
    header_row = title.count("\n") + 1
    assert source.header.row == header_row
    assert source.header.columns == {0: "name", 1: "id_number", 2: "used_phone", 3: "auth_code"}
    assert [r.number for r in rows] == [header_row + 1]
    assert rows[0].values["name"] == "张三"
    titles = source.header.title_rows
    assert titles == ((1,) if title.count("\n") < 3 else (1, 3))
    assert source.header.notes == (
        f"row(s) {', '.join(map(str, titles))} above the header (row {header_row}) skipped as a title"
        f" / 表头（第 {header_row} 行）上方的第 {', '.join(map(str, titles))} 行为标题，已跳过",
    )
    assert "失联名单" not in source.header.notes[0]  # a title may hold anything: never copied


def test_a_title_line_does_not_decide_the_delimiter(tmp_path: Path) -> None:
    text = f"名单\n{HEADER_CN.replace(',', chr(9))}\n张三\t{an_id(1)}\t\tA1\n"
    source, rows = read(tmp_path, text.encode(), name="upload.tsv")
    assert source.delimiter == "\t" and source.header.row == 2
    assert rows[0].values["auth_code"] == "A1"


def test_a_header_below_a_title_keeps_its_own_problem(tmp_path: Path) -> None:
    with pytest.raises(FileRejected) as info:
        read(tmp_path, f"名单\n姓名,身份证号\n张三,{an_id(1)}\n".encode(), kind=LR)
    assert info.value.reason == "missing required column(s): 授权码 (header in row 2)"
    assert info.value.zh == "缺少必需的列：授权码（表头在第 2 行）"


def test_without_a_header_in_the_first_rows_the_file_has_none(tmp_path: Path) -> None:
    data_rows = "".join(f"张三,{an_id(i)},,A{i}\n" for i in range(10))
    with pytest.raises(FileRejected) as info:
        read(tmp_path, data_rows.encode(), kind=LR)
    assert info.value.code == "header.not_found"
    assert info.value.reason == (
        "no header row (text or data without column names): none of the first 6 row(s) names the "
        "columns of a lost-repair file (姓名, 身份证号, 授权码)"
    )
    assert (
        info.value.zh
        == "找不到表头（没有列名的文本或数据）：前 6 行都没有失联修复文件的列名（姓名、身份证号、授权码）"
    )
    assert an_id(0) not in info.value.reason
    titles = [f"标题{i}\n" for i in range(6)]  # one title row too many
    assert rejected(tmp_path, f"{''.join(titles)}{HEADER_CN}\n".encode(), kind=LR).startswith("no header row")
    assert read(tmp_path, f"{''.join(titles[1:])}{HEADER_CN}\n".encode())[0].header.row == 6


def test_a_first_row_with_a_known_label_is_the_header_even_when_broken(tmp_path: Path) -> None:
    reason = rejected(tmp_path, f"姓名,备注\n{HEADER_CN}\n".encode(), kind=LR)
    assert reason == "missing required column(s): 身份证号, 授权码"
