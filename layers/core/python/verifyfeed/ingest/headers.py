"""Header row → canonical fields.

``normalize_header(cell)``: ``clean`` + lower-case, whitespace, ``_`` and ``-`` removed, and
leading ``*`` / trailing ``*``, ``:`` or ``(必填)`` (full-width too) stripped — so ``"ID No"``,
``"id_no"``, ``"*身份证号（必填）"`` all reduce to a key of the alias tables below.

Lost-repair fields (``LOST_REPAIR_FIELDS``; required ``name``, ``id_number``, ``auth_code``):
Chinese and English aliases such as 姓名/name, 身份证号/idcard/idcode, 曾用手机号/usedphone/phone,
授权码/合同编号/authcode. Carrier-audit fields (``CARRIER_AUDIT_FIELDS``; required ``usage``,
``name``, ``idCard``, ``phone``): the spec's English names (any case) and its 中文名称 labels
(核验场景, 车老板姓名, 车老板身份证号, ...), plus an optional caller ``reference``.

``map_header(cells, kind)`` returns a ``HeaderMap`` (column index → field, the labels of ignored
unknown columns, the header width) or raises ``FileRejected`` naming missing required fields or
a field given by two columns. ``detect_kind(cells)`` says which kind a header belongs to:
carrier-audit when it maps ``usage`` and ``idCard``, lost-repair when it maps ``id_number`` and
``auth_code``, else ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.models.records import JobKind
from verifyfeed.rules.text import clean

LOST_REPAIR_FIELDS = ("name", "id_number", "used_phone", "auth_code")
LOST_REPAIR_REQUIRED = ("name", "id_number", "auth_code")

CARRIER_AUDIT_FIELDS = (
    "usage",
    "name",
    "idCard",
    "phone",
    "idCardFrontFilename",
    "idCardBackFilename",
    "driverName",
    "driverIdCard",
    "driverIdCardFrontFilename",
    "driverIdCardBackFilename",
    "carLicensePlate",
    "drivingLicenseFilename",
    "attachmentFileUrls",
    "reference",
)
CARRIER_AUDIT_REQUIRED = ("usage", "name", "idCard", "phone")

_IGNORED_LABEL_MAX = 40

_SEPARATORS = re.compile(r"[\s_\-]+")
_DECORATION = re.compile(r"^\*+|(?:\*|:|\(必填\))+$")


def normalize_header(cell: object) -> str:
    key = _SEPARATORS.sub("", clean(cell).lower())
    return _DECORATION.sub("", key)


def _table(aliases: Mapping[str, Sequence[str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for field, names in aliases.items():
        for name in (field, *names):
            key = normalize_header(name)
            assert table.get(key, field) == field, f"alias {name!r} maps to two fields"
            table[key] = field
    return table


LOST_REPAIR_ALIASES = _table(
    {
        "name": ("姓名", "名字", "客户姓名", "fullname"),
        "id_number": (
            "身份证号",
            "身份证号码",
            "身份证",
            "证件号码",
            "证件号",
            "idcard",
            "idcode",
            "idno",
            "id",
        ),
        "used_phone": (
            "曾用手机号",
            "曾用手机号码",
            "曾用号码",
            "手机号",
            "手机号码",
            "usedphone",
            "phone",
            "mobile",
        ),
        "auth_code": ("授权码", "合同编号", "合同号", "authcode", "auth"),
    }
)

CARRIER_AUDIT_ALIASES = _table(
    {
        "usage": ("核验场景",),
        "name": ("车老板姓名",),
        "idCard": ("车老板身份证号", "车老板身份证号码"),
        "phone": ("车老板手机号", "车老板手机号码"),
        "idCardFrontFilename": ("车老板身份证正面照 Filename", "车老板身份证正面照"),
        "idCardBackFilename": ("车老板身份证背面照 Filename", "车老板身份证背面照"),
        "driverName": ("司机姓名",),
        "driverIdCard": ("司机身份证号", "司机身份证号码"),
        "driverIdCardFrontFilename": ("司机身份证正面照 Filename", "司机身份证正面照"),
        "driverIdCardBackFilename": ("司机身份证背面照 Filename", "司机身份证背面照"),
        "carLicensePlate": ("车牌号", "车牌号码"),
        "drivingLicenseFilename": ("行驶证主副页照 Filename", "行驶证主副页照"),
        "attachmentFileUrls": (
            "证明材料 Filename列表,多个文件用“,”隔开",
            "证明材料 Filename列表",
            "证明材料",
        ),
        "reference": ("ref", "业务编号", "参考号"),
    }
)

_KINDS: Mapping[JobKind, tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]] = {
    JobKind.LOST_REPAIR: (LOST_REPAIR_ALIASES, LOST_REPAIR_FIELDS, LOST_REPAIR_REQUIRED),
    JobKind.CARRIER_AUDIT: (CARRIER_AUDIT_ALIASES, CARRIER_AUDIT_FIELDS, CARRIER_AUDIT_REQUIRED),
}


def aliases_for(kind: JobKind) -> Mapping[str, str]:
    """Normalised header text → canonical field for ``kind``."""
    return _KINDS[kind][0]


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Where each canonical field sits in a row.

    ``columns``: column index (0-based) → field, in column order. ``ignored``: labels of
    non-blank header cells that map to no field (cleaned, cut to 40 characters). ``width``:
    index of the last non-blank header cell + 1.
    """

    kind: JobKind
    columns: Mapping[int, str]
    ignored: tuple[str, ...] = ()
    width: int = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.columns.values())


def map_header(cells: Sequence[object], kind: JobKind) -> HeaderMap:
    table, order, required = _KINDS[kind]
    columns: dict[int, str] = {}
    seen: set[str] = set()
    duplicated: list[str] = []
    ignored: list[str] = []
    width = 0
    for index, cell in enumerate(cells):
        key = normalize_header(cell)
        if not key:
            continue
        width = index + 1
        field = table.get(key)
        if field is None:
            ignored.append(clean(cell)[:_IGNORED_LABEL_MAX])
        elif field in seen:
            duplicated.append(field)
        else:
            seen.add(field)
            columns[index] = field
    if duplicated:
        names = ", ".join(f for f in order if f in duplicated)
        raise FileRejected(f"more than one column for: {names}")
    missing = [f for f in required if f not in seen]
    if missing:
        raise FileRejected(f"missing required column(s): {', '.join(missing)}")
    return HeaderMap(kind=kind, columns=columns, ignored=tuple(ignored), width=width)


def detect_kind(cells: Sequence[object]) -> JobKind | None:
    keys = {normalize_header(cell) for cell in cells}
    audit = {CARRIER_AUDIT_ALIASES[k] for k in keys if k in CARRIER_AUDIT_ALIASES}
    if {"usage", "idCard"} <= audit:
        return JobKind.CARRIER_AUDIT
    repair = {LOST_REPAIR_ALIASES[k] for k in keys if k in LOST_REPAIR_ALIASES}
    if {"id_number", "auth_code"} <= repair:
        return JobKind.LOST_REPAIR
    return None
