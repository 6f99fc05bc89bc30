"""What an uploaded file is, from its first bytes: content decides, not the name (a PDF called
``list.csv`` is a PDF), so a wrong file is refused saying what it is (docs/decisions.md#file-detection).

``sniff`` picks the reader or refuses the file; ``check_workbook`` tells a workbook zip's format.
Nothing here reads more than the sample the readers take anyway (64 KiB) or the zip's directory.
"""

from __future__ import annotations

import codecs
import zipfile

from verifyfeed.ingest.errors import FileRejected

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first; an empty archive
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF"}
_ARCHIVES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_BINARY_PROBE = 4096
_BINARY_SHARE = 0.05  # control bytes text never holds (a damaged row may have one), share of the probe
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1a\x1b")

_CSV_EXTENSIONS = frozenset({".csv", ".txt", ".tsv"})
_XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xlsb"})
_JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
_WORD_EXTENSIONS = {".doc": "Word (.doc)", ".ppt": "PowerPoint (.ppt)", ".pps": "PowerPoint (.pps)"}


def extension(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[1].lower() if "." in base else ""


def sniff(sample: bytes, filename: str) -> str:
    """The reader for a spreadsheet — ``"workbook"`` (zip content, and OLE2 content not named as a
    Word or PowerPoint file: ``ingest/workbooks.py`` tells which workbook, or what else, it is),
    ``"jsonl"`` (by extension) or ``"csv"`` (any other text, whatever the name) — or
    ``FileRejected`` saying what the file is instead (``file.empty``, ``file.pdf`` …)."""
    if not sample:
        raise FileRejected("file.empty")
    ext = extension(filename)
    if sample.startswith(_OLE2_MAGIC):  # Office 97-2003 (.xls, WPS .et), and any encrypted Office file
        if ext in _WORD_EXTENSIONS:
            raise FileRejected("file.office_document", format=_WORD_EXTENSIONS[ext])
        return "workbook"
    if sample.startswith(_ZIP_MAGICS):
        return "workbook"
    _refuse_known_binary(sample)
    text = _text_head(sample)
    if text.startswith(("<!doctype html", "<html")):
        raise FileRejected("file.html")
    if text.startswith("<?xml"):
        raise FileRejected("file.xml")
    if text.startswith("{\\rtf"):
        raise FileRejected("file.office_document", format="RTF")
    if ext in _XLSX_EXTENSIONS:
        raise FileRejected("file.xlsx_not_zip")
    if ext in _JSONL_EXTENSIONS:
        return "jsonl"
    return "csv"


def _refuse_known_binary(sample: bytes) -> None:
    if sample.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        raise FileRejected("file.pdf")
    for magic, name in _IMAGES:
        if sample.startswith(magic):
            raise FileRejected("file.image", format=name)
    if sample.startswith(b"BM") and sample[6:10] == b"\x00\x00\x00\x00":  # BMP: reserved bytes are 0
        raise FileRejected("file.image", format="BMP")
    if sample.startswith(b"RIFF") and sample[8:12] == b"WEBP":
        raise FileRejected("file.image", format="WebP")
    if sample[4:8] == b"ftyp" and sample[8:12] in _HEIF_BRANDS:
        raise FileRejected("file.image", format=_HEIF_BRANDS[sample[8:12]])
    for magic, name in _ARCHIVES:
        if sample.startswith(magic):
            raise FileRejected("file.archive", format=name)
    if sample[257:262] == b"ustar":
        raise FileRejected("file.archive", format="tar")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return  # Excel's "Unicode text": every other byte of ASCII text is a NUL
    probe = sample[:_BINARY_PROBE]
    if len(probe) - len(probe.translate(None, _CONTROL)) > _BINARY_SHARE * len(probe):
        raise FileRejected("file.binary")


def _text_head(sample: bytes) -> str:
    """The start of the file as lower-case text, BOM and leading blanks removed (markup checks)."""
    head = sample[:256]
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, "ignore").lstrip().lower()
    return head.decode("latin-1").lstrip().lower()


def check_workbook(archive: zipfile.ZipFile) -> str:
    """``"xlsx"`` (``xl/workbook.xml``: .xlsx, .xlsm, strict OOXML), ``"xlsb"`` (``xl/workbook.bin``)
    or ``"ods"``; otherwise ``FileRejected``: a Word or PowerPoint document, another OpenDocument
    file, or just an archive."""
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "xl/workbook.bin" in names:
        return "xlsb"
    if "word/document.xml" in names:
        raise FileRejected("file.office_document", format="Word (.docx)")
    if any(name.startswith("ppt/") for name in names):
        raise FileRejected("file.office_document", format="PowerPoint (.pptx)")
    if "mimetype" in names:
        try:
            mimetype = archive.read("mimetype")[:100]
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            mimetype = b""
        if mimetype.startswith(b"application/vnd.oasis.opendocument.spreadsheet"):
            return "ods"
        if mimetype.startswith(b"application/vnd.oasis.opendocument"):
            raise FileRejected("file.office_document", format="OpenDocument")
    raise FileRejected("file.archive", format="zip")
