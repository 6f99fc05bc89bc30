"""One carrier-audit row → ``AuditParams`` (spec: shared/spec/carrier_audit.md): ``validate_audit_row``
checks every rule and raises ``RowRejected`` listing *all* violations in field order, so a user
fixes a row once; each field's rules are in its validator's docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.models.carrier_audit import AUDIT_FIELDS, AUDIT_REQUIRED, FILENAME_FIELDS, AuditParams
from verifyfeed.rules.errors import RowRejected, RuleViolation
from verifyfeed.rules.idcard import normalize_id_number
from verifyfeed.rules.names import validate_owner_name
from verifyfeed.rules.phone import normalize_mobile
from verifyfeed.rules.plate import normalize_plate
from verifyfeed.rules.text import clean, clean_verbatim

FILENAME_MAX = 255
ATTACHMENTS_MAX = 9
USAGES = frozenset({"1", "2", "3"})
REQUIRED_BY_USAGE: Mapping[str, tuple[str, ...]] = {
    "1": ("driverName", "driverIdCard", "attachmentFileUrls"),
    "2": ("carLicensePlate", "drivingLicenseFilename", "attachmentFileUrls"),
    "3": ("carLicensePlate", "drivingLicenseFilename", "attachmentFileUrls"),
}

_BAD_FILENAME_CHAR = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")


def _present(raw: object) -> bool:
    if raw is None:
        return False
    if type(raw) is str:
        return clean(raw) != ""
    if isinstance(raw, list | tuple):
        return len(raw) > 0
    return True


def _filename(raw: object, field: str) -> str:
    """A ``*Filename`` (or one attachment): kept verbatim (``clean`` minus NFKC: a file name must keep
    matching the stored file), at most 255 characters, no ``/`` or ``\\``, no control characters,
    not ``.`` or ``..`` — ``filename.length`` / ``filename.characters``."""
    name = clean_verbatim(raw)
    if len(name) > FILENAME_MAX:
        raise RuleViolation("filename.length", field, max=FILENAME_MAX)
    if _BAD_FILENAME_CHAR.search(name) is not None or name in (".", ".."):
        raise RuleViolation("filename.characters", field)
    return name


def _attachments(raw: object) -> str:
    """``attachmentFileUrls``: file names separated by ``,`` (full-width ``，`` is normalised; a JSON
    array of strings is accepted too), 1..9 of them, none empty, each a valid ``_filename`` —
    ``attachments.count`` / ``attachments.empty`` / ``filename.*``. Returned joined by ``,``."""
    field = "attachmentFileUrls"
    if isinstance(raw, list | tuple):
        parts = [clean_verbatim(part) for part in raw]
    else:
        parts = [part.strip() for part in clean_verbatim(raw).replace("，", ",").split(",")]
    if len(parts) > ATTACHMENTS_MAX:
        raise RuleViolation("attachments.count", field, max=ATTACHMENTS_MAX)
    if "" in parts:
        raise RuleViolation("attachments.empty", field)
    return ",".join(_filename(part, field) for part in parts)


def _usage(raw: object) -> str:
    """``"1"``, ``"2"`` or ``"3"`` (an ``int`` 1..3 is accepted; ``1.0`` is not) — ``usage.missing``
    / ``usage.value``."""
    if type(raw) is int:
        usage = str(raw)
    elif raw is None or type(raw) is str:
        usage = clean(raw)
        if not usage:
            raise RuleViolation("usage.missing", "usage")
    else:
        usage = ""
    if usage not in USAGES:
        raise RuleViolation("usage.value", "usage")
    return usage


def _id_card(raw: object) -> str:
    """``idCard`` and ``driverIdCard``: legacy 15-digit numbers *rejected* (the spec demands 18
    characters) — ``id_number.*``."""
    return normalize_id_number(raw, LegacyIdPolicy.REJECT)


def _required_phone(raw: object) -> str:
    """``phone``: required — ``phone.*``."""
    return normalize_mobile(raw, required=True)


def _owner(field: str) -> Callable[[object], str]:
    """``name`` and ``driverName``: ``validate_owner_name`` — ``name.*``."""
    return lambda raw: validate_owner_name(raw, field)


def _file(field: str) -> Callable[[object], str]:
    return lambda raw: _filename(raw, field)


_SPECIFIC: Mapping[str, Callable[[object], str]] = {
    "name": _owner("name"),
    "idCard": _id_card,
    "phone": _required_phone,
    "driverName": _owner("driverName"),
    "driverIdCard": _id_card,
    "carLicensePlate": normalize_plate,
    "attachmentFileUrls": _attachments,
}
# field → validator, for every field of AuditParams but usage, in its order: a ``*Filename`` is a
# file name; a new field without a validator here fails at import. Violations of validators that
# do not know the field get it attached.
_VALIDATORS: tuple[tuple[str, Callable[[object], str]], ...] = tuple(
    (field, _file(field) if field in FILENAME_FIELDS else _SPECIFIC[field])
    for field in AUDIT_FIELDS
    if field != "usage"
)
_ALWAYS = frozenset(AUDIT_REQUIRED) - {"usage"}


def validate_audit_row(row: Mapping[str, object]) -> AuditParams:
    """``AuditParams`` with normalised values and ``None`` for absent optional fields, from the spec's
    field names in ``row`` (missing keys and empty values count as absent; unknown keys such as
    ``reference`` are ignored); else ``RowRejected`` with every violation, each one's ``field`` the
    spec field. ``REQUIRED_BY_USAGE``: usage 1 requires ``driverName``, ``driverIdCard`` and
    ``attachmentFileUrls``, usage 2 and 3 ``carLicensePlate``, ``drivingLicenseFilename`` and
    ``attachmentFileUrls`` — ``usage.conditional`` naming the missing field. An optional field that
    *is* present is validated whatever the usage (``carLicensePlate`` by ``normalize_plate`` —
    ``plate.format``)."""
    violations: list[RuleViolation] = []
    values: dict[str, str | None] = {}
    get = row.get

    usage: str | None
    try:
        usage = _usage(get("usage"))
    except RuleViolation as exc:
        violations.append(exc)
        usage = None
    required = REQUIRED_BY_USAGE.get(usage or "", ())

    for field, validate in _VALIDATORS:
        raw = get(field)
        if field not in _ALWAYS and not _present(raw):
            values[field] = None
            if field in required:
                violations.append(
                    RuleViolation("usage.conditional", field, usage_column="usage", usage=usage or "")
                )
            continue
        try:
            values[field] = validate(raw)
        except RuleViolation as exc:
            violations.append(exc if exc.field else exc.in_field(field))
            values[field] = None

    if violations:
        raise RowRejected(violations)
    values["usage"] = usage
    return AuditParams.model_validate(values)
