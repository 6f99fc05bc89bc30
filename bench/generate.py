"""Synthetic lost-repair files: valid ID numbers (GB 11643 check digits), mobiles, Chinese names,
authorisation codes, about 2% invalid rows and 1% duplicates, deterministic for a given size.

``write_repair_csv(path, rows)`` writes a UTF-8 CSV (CRLF line ends, as Excel writes them) with the
header 姓名,身份证号,曾用手机号,授权码 and returns what was planted (``Planted``) so a run can check
its counts. Unique values come from bijections of the row index (no sets, no collisions), so a
1M-row file takes a few seconds.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

HEADER = ("姓名", "身份证号", "曾用手机号", "授权码")

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_REGIONS = (
    "110101", "110105", "120103", "310104", "310115", "320102", "330106", "340104",
    "350203", "370102", "410105", "420106", "430104", "440305", "440106", "450103",
    "500103", "510107", "520102", "530102", "610113", "620102", "650102", "210202",
)  # fmt: skip
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥"
    "玲芬飞鹏斌宇浩凯健俊帆帅旭宁龙林欣怡梓涵子轩"
)
_MINORITY = ("阿卜杜·热合曼", "买买提·艾力", "古丽·努尔", "扎西·多吉")
_DAYS = 365 * 55  # birth dates 1950-01-01 .. about 2004
_SEQ = 1000
_SPACE = len(_REGIONS) * _DAYS * _SEQ
_MIX = 2_654_435_761  # odd, coprime with _SPACE: i ↦ i·_MIX mod _SPACE is a bijection


@dataclass(frozen=True)
class Planted:
    rows: int
    invalid: int
    duplicates: int

    @property
    def valid(self) -> int:
        return self.rows - self.invalid - self.duplicates


def check_char(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _birth_dates() -> list[str]:
    from datetime import date, timedelta

    start = date(1950, 1, 1)
    return [(start + timedelta(days=d)).strftime("%Y%m%d") for d in range(_DAYS)]


def _id_number(i: int, dates: list[str]) -> str:
    n = (i * _MIX) % _SPACE
    n, seq = divmod(n, _SEQ)
    region, day = divmod(n, _DAYS)
    first17 = f"{_REGIONS[region]}{dates[day]}{seq:03d}"
    return first17 + check_char(first17)


def _auth_code(i: int) -> str:
    return f"C{(i * 0x9E3779B1) & 0xFFFFFFFF:08X}{i % 97:02d}"  # unique: odd multiplier mod 2**32


def _invalid(rng: random.Random, name: str, id_number: str, phone: str, code: str) -> list[str]:
    kind = rng.randrange(8)
    if kind == 0:  # wrong check digit
        last = id_number[-1]
        return [name, id_number[:-1] + ("0" if last != "0" else "1"), phone, code]
    if kind == 1:  # Excel turned the ID into a number
        return [name, f"{int(id_number[:17]) / 10:.5E}".replace("E+", "E+"), phone, code]
    if kind == 2:  # impossible birth date
        return [name, id_number[:10] + "1332" + id_number[14:], phone, code]
    if kind == 3:  # landline instead of a mobile
        return [name, id_number, "021" + phone[3:], code]
    if kind == 4:  # authCode with a hyphen
        return [name, id_number, phone, code[:4] + "-" + code[4:]]
    if kind == 5:  # empty name
        return ["", id_number, phone, code]
    if kind == 6:  # formula injection in the name
        return ["=HYPERLINK(1)", id_number, phone, code]
    return [name, id_number[:16], phone, code]  # too short


def write_repair_csv(path: Path, rows: int, seed: int = 20260101) -> Planted:
    rng = random.Random(seed)
    dates = _birth_dates()
    invalid = duplicates = 0
    kept: list[tuple[str, str]] = []  # (ID, code) of some valid rows, to duplicate later
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i in range(rows):
            roll = rng.random()
            if roll < 0.01 and kept:
                duplicates += 1
                id_number, code = kept[rng.randrange(len(kept))]
                if rng.random() < 0.5:
                    writer.writerow([_name(rng), id_number, "", _auth_code(10_000_000 + i)])
                else:
                    writer.writerow([_name(rng), _id_number(10_000_000 + i, dates), "", code])
                continue
            name = _name(rng)
            id_number = _id_number(i, dates)
            if id_number[-1] == "X" and rng.random() < 0.2:
                id_number = id_number[:-1] + "x"
            phone = _phone(rng)
            code = _auth_code(i)
            if roll < 0.03:
                invalid += 1
                writer.writerow(_invalid(rng, name, id_number, phone or "13800138000", code))
                continue
            if len(kept) < 10_000 and rng.random() < 0.05:
                kept.append((id_number.upper(), code))
            writer.writerow([name, id_number, phone, code])
    return Planted(rows=rows, invalid=invalid, duplicates=duplicates)


def _name(rng: random.Random) -> str:
    if rng.random() < 0.002:
        return rng.choice(_MINORITY)
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(_SURNAMES) + given


def _phone(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return ""
    number = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    if roll < 0.21:
        return f"+86 {number[:3]} {number[3:7]} {number[7:]}"
    return number


_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="名单" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
        'Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
        'Target="sharedStrings.xml"/></Relationships>'
    ),
}


def write_repair_xlsx(csv_path: Path, path: Path) -> None:
    """The rows of ``csv_path`` (``write_repair_csv``) as an .xlsx workbook shaped as Excel saves
    one: one sheet, every value a text cell (the ID column formatted as text) held in the shared
    strings table, deflated. Written directly, not through a spreadsheet library: a 1M-row workbook
    takes seconds, not minutes."""
    import zipfile
    from xml.sax.saxutils import escape

    strings: dict[str, int] = {}
    rows: list[str] = []
    with csv_path.open(encoding="utf-8", newline="") as file:
        for number, cells in enumerate(csv.reader(file), start=1):
            parts = []
            for column, value in zip("ABCD", cells, strict=False):
                if value:
                    index = strings.setdefault(value, len(strings))
                    parts.append(f'<c r="{column}{number}" t="s"><v>{index}</v></c>')
            rows.append(f'<row r="{number}">{"".join(parts)}</row>')
    head = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    )
    shared = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        f'uniqueCount="{len(strings)}">'
        + "".join(f"<si><t>{escape(text)}</t></si>" for text in strings)
        + "</sst>"
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, body in _XLSX_PARTS.items():
            archive.writestr(name, body)
        archive.writestr("xl/sharedStrings.xml", shared)
        archive.writestr("xl/worksheets/sheet1.xml", head + "".join(rows) + "</sheetData></worksheet>")


_ODS_MIMETYPE = "application/vnd.oasis.opendocument.spreadsheet"
_ODS_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
    'manifest:version="1.3">'
    '<manifest:file-entry manifest:full-path="/" manifest:version="1.3" '
    f'manifest:media-type="{_ODS_MIMETYPE}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)
_ODS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3">'
    '<office:body><office:spreadsheet><table:table table:name="名单">'
    '<table:table-column table:number-columns-repeated="4"/>'
)
_ODS_TAIL = "</table:table></office:spreadsheet></office:body></office:document-content>"
_ODS_EMPTY = "<table:table-cell/>"
_ODS_STRING = '<table:table-cell office:value-type="string"><text:p>%s</text:p></table:table-cell>'


def write_repair_ods(csv_path: Path, path: Path) -> None:
    """The rows of ``csv_path`` (``write_repair_csv``) as an .ods spreadsheet: the zip's first member
    ``mimetype``, stored; ``META-INF/manifest.xml``; one table 名单 in ``content.xml``, every value a
    string cell (``office:value-type="string"``, the text in a ``<text:p>``), an empty cell
    ``<table:table-cell/>`` — what LibreOffice writes less its styles, settings and ``calcext:``
    attributes, which calamine does not read. Written directly, as the .xlsx is (LibreOffice is not
    on the bench machine, and no library is needed), and streamed: a 1M-row sheet is never in
    memory whole."""
    import zipfile
    from xml.sax.saxutils import escape

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), _ODS_MIMETYPE, compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
        with (
            csv_path.open(encoding="utf-8", newline="") as file,
            archive.open("content.xml", "w", force_zip64=True) as content,
        ):
            content.write(_ODS_HEAD.encode())
            rows: list[str] = []
            for cells in csv.reader(file):
                parts = [_ODS_STRING % escape(value) if value else _ODS_EMPTY for value in cells]
                rows.append(f"<table:table-row>{''.join(parts)}</table:table-row>")
                if len(rows) >= 4096:
                    content.write("".join(rows).encode())
                    rows.clear()
            content.write(("".join(rows) + _ODS_TAIL).encode())
