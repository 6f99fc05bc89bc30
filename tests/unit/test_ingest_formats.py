"""What a file is, before anything of it is uploaded or read as rows (ingest/formats.py, and
``detect_file``, the one detection the splitter, ``verifyfeed drop`` and the local runner share):
a file that is not a spreadsheet is refused saying what it is, a header problem shows as itself,
and only a header that names columns of neither kind is "cannot tell the kind"."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import pytest
from openpyxl import Workbook

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import detect_file
from verifyfeed.models.records import JobKind

LR, CA = JobKind.LOST_REPAIR, JobKind.CARRIER_AUDIT
HEADER = "姓名,身份证号,曾用手机号,授权码\n"
README = b"# verifyfeed\n\nDrop a sheet into lost-repair/, then run `verifyfeed status`.\nThat is all.\n"


def refusal(data: bytes, name: str, kind: JobKind | None = None) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        detect_file(io.BytesIO(data), name, kind)
    return info.value


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return out.getvalue()


def tarred() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        body = HEADER.encode()
        info = tarfile.TarInfo("list.csv")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return out.getvalue()


def workbook(rows: list[list[str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "code", "english"),
    [
        (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
            "名单.pdf",
            "file.pdf",
            "a PDF document, not a spreadsheet",
        ),
        (b"%PDF-1.4\n", "list.csv", "file.pdf", "a PDF document"),  # the content decides, not the name
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "scan.png", "file.image", "a PNG image, not a spreadsheet"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "photo.jpg", "file.image", "a JPEG image"),
        (b"GIF89a\x01\x00\x01\x00", "x.gif", "file.image", "a GIF image"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "x.webp", "file.image", "a WebP image"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "IMG_0001.HEIC", "file.image", "a HEIC image"),
        (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00", "x.bmp", "file.image", "a BMP image"),
        (
            gzip.compress(HEADER.encode()),
            "list.csv.gz",
            "file.archive",
            "a gzip archive, not an .xlsx workbook",
        ),
        (b"Rar!\x1a\x07\x01\x00", "list.rar", "file.archive", "a RAR archive"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "list.7z", "file.archive", "a 7z archive"),
        (tarred(), "list.tar", "file.archive", "a tar archive"),
        (
            zipped({"list.csv": HEADER.encode()}),
            "list.zip",
            "file.archive",
            "a zip archive, not an .xlsx workbook",
        ),
        (zipped({"list.csv": HEADER.encode()}), "list.xlsx", "file.archive", "a zip archive"),
        (
            zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}),
            "list.docx",
            "file.office_document",
            "a Word (.docx) document, not a spreadsheet",
        ),
        (
            zipped({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"}),
            "list.pptx",
            "file.office_document",
            "a PowerPoint (.pptx) document",
        ),
        (
            zipped({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"}),
            "list.ods",
            "file.workbook_unreadable",  # an .ods is read (issue 26): this one has no sheet to read
            "not a readable .ods workbook",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600,
            "list.doc",
            "file.office_document",
            "a Word (.doc)",
        ),
        (b"\xef\xbb\xbf<!DOCTYPE html><html><table>", "list.xls", "file.html", "a web page (HTML)"),
        (b'<?xml version="1.0"?><Workbook>', "list.xml", "file.xml", "an XML file"),
        (b"{\\rtf1\\ansi hello}", "list.rtf", "file.office_document", "a RTF document"),
        (
            b"\x7fELF\x02\x01\x01" + b"\x00" * 100 + bytes(range(256)) * 8,
            "list.bin",
            "file.binary",
            "binary data, neither a spreadsheet nor text",
        ),
        (b"", "list.csv", "file.empty", "file is empty"),
        (b"", "list.xlsx", "file.empty", "file is empty"),
    ],
)
def test_a_file_that_is_not_a_spreadsheet_is_refused_saying_what_it_is(
    data: bytes, name: str, code: str, english: str
) -> None:
    for kind in (None, LR, CA):  # whether the kind is given or not: never "cannot tell the kind"
        exc = refusal(data, name, kind)
        assert (exc.code, exc.reason[: len(english)]) == (code, english)
        assert exc.zh and exc.zh != exc.reason


def test_a_readme_is_text_without_a_header_not_a_file_of_unknown_kind() -> None:
    exc = refusal(README, "README.md")
    assert exc.code == "header.not_found_either"
    assert exc.reason.startswith(
        "no header row (text or data without column names): none of the first 3 row(s)"
    )
    assert exc.zh.startswith("找不到表头（没有列名的文本或数据）：前 3 行")
    given = refusal(README, "README.md", LR)
    assert given.code == "header.not_found" and given.reason.endswith("(姓名, 身份证号, 授权码)")


@pytest.mark.parametrize("kind", [None, LR])
def test_a_header_problem_shows_as_itself_with_or_without_the_kind(kind: JobKind | None) -> None:
    data = "姓名,身份证号,手机号,曾用手机号,授权码\n张三,1,,,A1\n".encode()
    exc = refusal(data, "list.csv", kind)
    assert exc.code == "header.duplicate_columns"
    assert exc.reason.startswith("more than one column for: 曾用手机号 (手机号, 曾用手机号)")
    sheet = workbook([["姓名", "身份证号", "授权码", "合同编号"], ["张三", "1", "A1", "A1"]])
    assert refusal(sheet, "list.xlsx", kind).reason.startswith(
        "more than one column for: 授权码 (授权码, 合同编号)"
    )


def test_only_a_header_of_neither_kind_cannot_tell_and_the_kind_given_then_decides() -> None:
    data = "姓名,身份证号,备注\n张三,1,x\n".encode()
    assert refusal(data, "list.csv").code == "header.kind_unknown"
    assert refusal(data, "list.csv", LR).reason == "missing required column(s): 授权码"
    assert refusal(data, "list.csv", CA).code == "header.not_found"  # no carrier-audit column at all


@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (HEADER.encode(), "list.csv", LR),
        (("\ufeff" + HEADER).encode("utf-16"), "list.txt", LR),  # Excel's "Unicode text": NULs, not binary
        (HEADER.encode("gbk"), "名单", LR),
        (workbook([["2026年12月名单"], ["姓名", "身份证号", "授权码"]]), "list.xlsx", LR),
        (workbook([["核验场景", "车老板姓名", "车老板身份证号", "车老板手机号"]]), "audits.bin", CA),
        (b'{"usage": "2", "name": "x", "idCard": "1", "phone": "1"}\n', "audits.jsonl", CA),
    ],
)
def test_a_spreadsheet_is_detected_whatever_its_name_and_encoding(
    data: bytes, name: str, kind: JobKind
) -> None:
    assert detect_file(io.BytesIO(data), name) is kind
    assert detect_file(io.BytesIO(data), name, kind) is kind
