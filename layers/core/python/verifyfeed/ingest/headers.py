"""Header row → canonical fields: which column of a file holds which field of its kind.

``map_header`` gives a ``HeaderMap`` (or refuses missing or doubled columns), ``detect_kind`` the
kind a header belongs to, ``normalize_header`` the key a cell is matched by; the synonym tables are
``LOST_REPAIR_ALIASES`` and ``CARRIER_AUDIT_ALIASES``. Customers' sheets name columns in other words
and with annotations, and a wrong column would be sent: docs/decisions.md#header-synonyms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.models.carrier_audit import AUDIT_FIELDS, AUDIT_REQUIRED
from verifyfeed.models.lost_repair import RepairRow
from verifyfeed.models.records import JobKind
from verifyfeed.pii import mask_id
from verifyfeed.reasons import reason
from verifyfeed.rules.text import clean

LOST_REPAIR_FIELDS: tuple[str, ...] = tuple(RepairRow.model_fields)
LOST_REPAIR_REQUIRED = tuple(n for n, f in RepairRow.model_fields.items() if f.is_required())

CARRIER_AUDIT_FIELDS = (
    *AUDIT_FIELDS,
    "reference",  # the caller's own reference for an audit (decisions.md#audit-identity)
    "recordId",  # a rejected audit's record id: the row corrects it through /update
)
CARRIER_AUDIT_REQUIRED = AUDIT_REQUIRED

_IGNORED_LABEL_MAX = 40

_SEPARATORS = re.compile(r"[\s_\-]+")
_DECORATION = re.compile(r"^\*+|[*:]+$")
# after NFKC (clean), full-width （）［］｛｝ are ASCII; 【】〔〕〈〉《》〖〗 stay as they are
_ANNOTATION = re.compile(
    r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}|【[^【】]*】|〔[^〔〕]*〕|〈[^〈〉]*〉|《[^《》]*》|〖[^〖〗]*〗"
)
_BRACKETS = re.compile(r"[()\[\]{}【】〔〕〈〉《》〖〗]")
_DIGIT_RUN = re.compile(r"\d{6,}")


def normalize_header(cell: object) -> str:
    """The key a header cell is matched by: ``"ID No"``, ``"id_no"``, ``"*身份证号（必填）"`` all give
    a key of the alias tables (annotations, separators and decoration removed:
    docs/decisions.md#header-synonyms)."""
    text = clean(cell).lower()
    bare = _ANNOTATION.sub("", text)
    if not _SEPARATORS.sub("", bare).strip("*:"):  # the label is all annotation: "(姓名)"
        bare = _BRACKETS.sub("", text)
    return _DECORATION.sub("", _SEPARATORS.sub("", bare))


def column_label(cell: object) -> str:
    """A header cell as reports and logs show it: cleaned, cut to 40 characters, and masked when
    it holds a run of 6 or more digits (then it is more likely a value than a label)."""
    label = clean(cell)[:_IGNORED_LABEL_MAX]
    return mask_id(label) if _DIGIT_RUN.search(label) else label


def _labels(aliases: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """field → the label the spec gives it (its first synonym), as customers know it."""
    return {field: names[0] for field, names in aliases.items()}


def _table(aliases: Mapping[str, Sequence[str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for field, names in aliases.items():
        for name in (field, *names):
            key = normalize_header(name)
            assert table.get(key, field) == field, f"alias {name!r} maps to two fields"
            table[key] = field
    return table


# field → its labels, the spec's first; nothing that could name another person's data (联系人电话)
_LOST_REPAIR_NAMES: Mapping[str, Sequence[str]] = {
    "name": ("姓名", "名字", "客户姓名", "失联人姓名", "真实姓名", "fullname"),
    "id_number": (
        "身份证号",
        "身份证号码",
        "身份证",
        "证件号码",
        "证件号",
        "身份证件号码",
        "居民身份证号码",
        "失联人身份证号",
        "失联人身份证号码",
        "客户身份证号",
        "客户身份证号码",
        "idcard",
        "idcardno",
        "idcode",
        "idno",
        "idnumber",
        "id",
    ),
    "used_phone": (
        "曾用手机号",
        "曾用手机号码",
        "曾用号码",
        "曾用电话",
        "原手机号",
        "原手机号码",
        "手机号",
        "手机号码",
        "手机",
        "联系电话",
        "电话号码",
        "失联人手机号",
        "失联人手机号码",
        "usedphone",
        "phone",
        "mobile",
    ),
    "auth_code": (
        "授权码",
        "授权编号",
        "合同编号",
        "合同号",
        "协议编号",
        "authcode",
        "auth",
        "contractno",
    ),
}
LOST_REPAIR_ALIASES = _table(_LOST_REPAIR_NAMES)

# the spec's English names (matched in any case, as every key) and its 中文名称 labels
_CARRIER_AUDIT_NAMES: Mapping[str, Sequence[str]] = {
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
    "reference": ("业务编号", "参考号", "ref"),
    "recordId": ("核验记录id", "record_id", "record id", "记录id", "核验记录编号"),
}
CARRIER_AUDIT_ALIASES = _table(_CARRIER_AUDIT_NAMES)

_KINDS: Mapping[JobKind, tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]] = {
    JobKind.LOST_REPAIR: (LOST_REPAIR_ALIASES, LOST_REPAIR_FIELDS, LOST_REPAIR_REQUIRED),
    JobKind.CARRIER_AUDIT: (CARRIER_AUDIT_ALIASES, CARRIER_AUDIT_FIELDS, CARRIER_AUDIT_REQUIRED),
}
_SPEC_LABELS: Mapping[JobKind, Mapping[str, str]] = {
    JobKind.LOST_REPAIR: _labels(_LOST_REPAIR_NAMES),
    JobKind.CARRIER_AUDIT: _labels(_CARRIER_AUDIT_NAMES),
}


def aliases_for(kind: JobKind) -> Mapping[str, str]:
    """Normalised header text → canonical field for ``kind``."""
    return _KINDS[kind][0]


def spec_label(kind: JobKind, field: str) -> str:
    """The label the spec gives ``field`` of ``kind`` (姓名, 车老板身份证号 ...): what a reason calls
    a column the customer's file does not have."""
    return _SPEC_LABELS[kind].get(field, field)


def spec_labels(kind: JobKind) -> Mapping[str, str]:
    """Every field of ``kind`` → its spec label."""
    return _SPEC_LABELS[kind]


def required_fields(kind: JobKind) -> tuple[str, ...]:
    """The fields a row of ``kind`` must have: name, id_number, auth_code for lost repair."""
    return _KINDS[kind][2]


def required_labels(kind: JobKind) -> tuple[str, ...]:
    """The spec labels of ``kind``'s required columns: 姓名, 身份证号, 授权码 for lost repair."""
    return tuple(spec_label(kind, f) for f in _KINDS[kind][2])


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Where each canonical field sits in a row.

    ``columns``: column index (0-based) → field, in column order. ``labels``: field → the label of
    its column as the file has it (``column_label``). ``ignored``: labels of non-blank header cells
    that map to no field. ``width``: index of the last non-blank header cell + 1. ``row``: the
    header's row number (1 unless title rows were skipped); ``title_rows``: the numbers of the
    non-blank rows above it, skipped as titles. ``sheet``: the worksheet read, for a workbook.
    """

    kind: JobKind
    columns: Mapping[int, str]
    ignored: tuple[str, ...] = ()
    width: int = 0
    row: int = 1
    title_rows: tuple[int, ...] = ()
    labels: Mapping[str, str] = _field(default_factory=dict)
    sheet: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.columns.values())

    def label(self, name: str) -> str:
        """The customer's label of field ``name``; the spec's when the file has no such column."""
        return self.labels.get(name) or spec_label(self.kind, name)

    def all_labels(self) -> dict[str, str]:
        """Every field of the kind → ``label``."""
        return {name: self.label(name) for name in spec_labels(self.kind)}

    @property
    def notes(self) -> tuple[str, ...]:
        """What an operator should know about the header, for the report (no cell values)."""
        if not self.title_rows:
            return ()
        rows = ", ".join(map(str, self.title_rows))
        return (reason("note.title_rows", rows=rows, header=self.row).bilingual(),)

    def facts(self) -> dict[str, object]:
        """The header as the job's report shows it (``ignored_columns``, ``header_row``, ``notes``;
        ``sheet``, the worksheet read, for a workbook)."""
        facts: dict[str, object] = {
            "header_row": self.row,
            "ignored_columns": list(self.ignored),
            "notes": list(self.notes),
        }
        if self.sheet:
            facts["sheet"] = self.sheet
        return facts


def map_header(cells: Sequence[object], kind: JobKind) -> HeaderMap:
    """Where each field of ``kind`` sits in the header ``cells``, or ``FileRejected``: the required
    columns missing (``header.missing_columns``), by the labels the customer knows (``spec_label``),
    or a field two columns map to, with both columns' labels (``header.duplicate_columns``: two
    synonyms in one header are ambiguous, we never guess which one is meant)."""
    table, order, required = _KINDS[kind]
    columns: dict[int, str] = {}
    labels: dict[str, list[str]] = {}  # field → the labels of every column that maps to it
    ignored: list[str] = []
    width = 0
    for index, cell in enumerate(cells):
        key = normalize_header(cell)
        if not key:
            continue
        width = index + 1
        field = table.get(key)
        if field is None:
            ignored.append(column_label(cell))
            continue
        if field not in labels:
            columns[index] = field
        labels.setdefault(field, []).append(column_label(cell))
    seen = set(labels)
    duplicated = [f for f in order if len(labels.get(f, ())) > 1]
    if duplicated:
        columns_of = tuple(
            reason("header.labels", field=spec_label(kind, f), labels=tuple(labels[f])) for f in duplicated
        )
        raise FileRejected("header.duplicate_columns", columns=columns_of, where="")
    missing = [f for f in required if f not in seen]
    if missing:
        raise FileRejected(
            "header.missing_columns", columns=tuple(spec_label(kind, f) for f in missing), where=""
        )
    return HeaderMap(
        kind=kind,
        columns=columns,
        ignored=tuple(ignored),
        width=width,
        labels={f: names[0] for f, names in labels.items()},
    )


def is_unlabelled(cells: Sequence[object], kind: JobKind | None) -> bool:
    """No cell is a column label of ``kind`` (of either kind when ``None``): a title row, or data."""
    tables = [aliases_for(kind)] if kind is not None else [LOST_REPAIR_ALIASES, CARRIER_AUDIT_ALIASES]
    return not any(normalize_header(cell) in table for cell in cells for table in tables)


def detect_kind(cells: Sequence[object]) -> JobKind | None:
    """Carrier-audit when the header maps ``usage`` and ``idCard``, lost-repair when it maps
    ``id_number`` and ``auth_code``, else ``None``."""
    keys = {normalize_header(cell) for cell in cells}
    audit = {CARRIER_AUDIT_ALIASES[k] for k in keys if k in CARRIER_AUDIT_ALIASES}
    if {"usage", "idCard"} <= audit:
        return JobKind.CARRIER_AUDIT
    repair = {LOST_REPAIR_ALIASES[k] for k in keys if k in LOST_REPAIR_ALIASES}
    if {"id_number", "auth_code"} <= repair:
        return JobKind.LOST_REPAIR
    return None
