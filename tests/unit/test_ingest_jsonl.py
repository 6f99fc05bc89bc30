"""ingest.readers on JSON Lines (carrier-audit intake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, SourceRow, open_rows
from verifyfeed.models.records import JobKind
from verifyfeed.rules.carrier_audit import validate_audit_row

CA = JobKind.CARRIER_AUDIT
ID = "11010519491231002X"
OWNER = {"usage": "2", "name": "李四", "idCard": ID, "phone": "13900139000"}


def problem(row: SourceRow) -> str | None:
    """The English text of the reader's problem with the row, if any."""
    return None if row.problem is None else row.problem.en


def line(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def read(
    tmp_path: Path, data: bytes, name: str = "audits.jsonl", **options: int
) -> tuple[RowSource, list[SourceRow]]:
    path = tmp_path / name
    path.write_bytes(data)
    with path.open("rb") as stream:
        source = open_rows(stream, name, None, **options)
        return source, list(source)


def rejected(tmp_path: Path, data: bytes) -> str:
    with pytest.raises(FileRejected) as info:
        read(tmp_path, data)
    return info.value.reason


def test_objects_become_rows(tmp_path: Path) -> None:
    full = {
        **OWNER,
        "carLicensePlate": "粤BD12345",
        "drivingLicenseFilename": "license.jpg",
        "attachmentFileUrls": ["a.pdf", "b.pdf"],
        "reference": "R-1",
        "comment": "ignored",
    }
    data = line(full) + b"\n" + line({**full, "usage": 3, "phone": 13900139000}) + b"  \r\n"
    source, rows = read(tmp_path, data)
    assert (source.kind, source.format, source.encoding) == (CA, "jsonl", "utf-8")
    assert source.header.ignored == ("comment",)
    assert source.header.row == 1
    assert [r.number for r in rows] == [1, 3]
    assert rows[0].values == {k: v for k, v in full.items() if k != "comment"}
    assert rows[1].values["usage"] == 3 and rows[1].values["phone"] == 13900139000  # JSON types kept
    params = validate_audit_row(rows[0].values)
    assert params.attachmentFileUrls == "a.pdf,b.pdf"
    assert validate_audit_row(rows[1].values).usage == "3"


def test_keys_use_header_aliases(tmp_path: Path) -> None:
    data = line({"核验场景": "1", "车老板姓名": "张三", "车老板身份证号": ID, "车老板手机号": "13800138000"})
    data += line({"USAGE": "2", "Name": "李四", "id_card": ID, "phone": "13900139000"})
    _, rows = read(tmp_path, data, name="audits.ndjson")
    assert [sorted(r.values) for r in rows] == [["idCard", "name", "phone", "usage"]] * 2
    assert rows[1].values["usage"] == "2"


def test_bad_lines_are_row_problems(tmp_path: Path) -> None:
    data = (
        line(OWNER)
        + b"{not json\n"
        + b"[1, 2]\n"
        + b'"text"\n'
        + b'{"name": "\xff"}\n'
        + line({**OWNER, "name": "a\u0000b"})
        + line({**OWNER, "usage": "1", "核验场景": "2"})
        + line({**OWNER, "name": "x" * 5000})
        + b"[" * 100_000
        + b"\n"
        + line(OWNER)
    )
    _, rows = read(tmp_path, data)
    assert [(r.number, problem(r)) for r in rows] == [
        (1, None),
        (2, "invalid JSON"),
        (3, "line is not a JSON object"),
        (4, "line is not a JSON object"),
        (5, "encoding: invalid byte sequence for utf-8"),
        (6, "contains NUL characters"),
        (7, "more than one key for usage"),
        (8, "value longer than 4096 characters"),
        (9, "invalid JSON"),
        (10, None),
    ]
    assert all(r.values == {} for r in rows[1:5])


def test_overlong_line(tmp_path: Path) -> None:
    huge = line({**OWNER, "name": "x" * (2 * 1024 * 1024)})
    _, rows = read(tmp_path, line(OWNER) + huge + line(OWNER))
    assert [r.number for r in rows] == [1, 2, 3]
    assert problem(rows[1]) == f"line longer than {1024 * 1024} bytes"
    assert rows[2].problem is None


def test_bom_and_missing_final_newline(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + line(OWNER) + json.dumps(OWNER).encode()
    _, rows = read(tmp_path, data)
    assert len(rows) == 2
    assert rows[1].values["name"] == "李四"


def test_first_line_defines_the_header(tmp_path: Path) -> None:
    assert rejected(tmp_path, line({"usage": "1", "name": "张三"})).startswith("cannot tell lost-repair")
    assert rejected(tmp_path, line({"a": "1"})).startswith("no header row")
    assert (
        rejected(tmp_path, b"[1]\n" + line(OWNER))
        == "the first line is not a JSON object (line is not a JSON object)"
    )
    assert rejected(tmp_path, b"\n\n") == "file has no JSON object"
    assert rejected(tmp_path, b"") == "file is empty"


def test_the_header_row_is_the_first_objects_line(tmp_path: Path) -> None:
    source, _ = read(tmp_path, b"\n  \n" + line(OWNER) + b"\n")
    assert source.header.row == 3
