"""One lost-repair row → ``RepairRecord`` (``normalize_repair_row``), or its four values as a tuple
for the splitter's hot loop (``repair_fields``, with ``is_plain_repair_row`` its fast path's test).
The first broken rule is raised: a lost-repair row is either sent or rejected, and one reason is
enough to fix it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.rules.authcode import AUTH_CODE_MAX, validate_auth_code
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.hashing import is_sha256_hex, sha256_hex
from verifyfeed.rules.idcard import is_plain_id18, normalize_clean_id, normalize_id_number
from verifyfeed.rules.names import REPAIR_NAME_MAX, utf16_length, validate_repair_name
from verifyfeed.rules.phone import is_plain_mobile, normalize_mobile
from verifyfeed.rules.text import clean

_construct = RepairRecord.model_construct
_is_normalized = unicodedata.is_normalized


def _id_digest(raw: object, legacy: LegacyIdPolicy) -> str:
    """``idcode``: a value that already is a 64-hex SHA-256 digest is taken as pre-hashed
    (lower-cased); otherwise ``normalize_id_number(raw, legacy)`` and the SHA-256 of that
    upper-cased number."""
    if type(raw) is not str:
        return sha256_hex(normalize_id_number(raw, legacy))
    text = clean(raw)
    if len(text) == 64 and is_sha256_hex(text):
        return text.lower()
    return sha256_hex(normalize_clean_id(text, legacy))


def _phone_digest(raw: object) -> str:
    """``usedPhone``, optional: a 64-hex digest is taken as pre-hashed, otherwise ``normalize_mobile``
    and its SHA-256; ``""`` when absent."""
    if type(raw) is str:
        text = clean(raw)
        if len(text) == 64 and is_sha256_hex(text):
            return text.lower()
        raw = text
    phone = normalize_mobile(raw, required=False)
    return sha256_hex(phone) if phone else ""


def is_plain_repair_row(name: str, id_number: str, used_phone: str, auth_code: str) -> bool:
    """A quick sufficient test that ``repair_fields`` returns these CSV values unchanged (the ID
    number hashed, the phone hashed unless empty): a name of letters only, already in NFKC form,
    of at most 30 UTF-16 code units;
    an 18-digit ID number passing ``is_plain_id18``; an empty or plain 11-digit mobile; an ASCII
    alphanumeric code of at most 16. ``False`` means "ask ``repair_fields``", not "invalid"."""
    return (
        name.isalpha()
        and len(name) <= REPAIR_NAME_MAX
        and (name.isascii() or (_is_normalized("NFKC", name) and utf16_length(name) <= REPAIR_NAME_MAX))
        and is_plain_id18(id_number)
        and (not used_phone or is_plain_mobile(used_phone))
        and len(auth_code) <= AUTH_CODE_MAX
        and auth_code.isalnum()
        and auth_code.isascii()
    )


def repair_fields(row: Mapping[str, object], legacy: LegacyIdPolicy) -> tuple[str, str, str, str]:
    """``normalize_repair_row`` without the model: ``(name, idcode, usedPhone, authCode)``, which the
    splitter's hot loop serialises itself."""
    get = row.get
    name = validate_repair_name(get("name"))
    idcode = _id_digest(get("id_number"), legacy)
    try:
        used_phone = _phone_digest(get("used_phone"))
    except RuleViolation as exc:  # the phone rules' subject is "phone"; here the field is used_phone
        raise exc.in_field("used_phone") from None
    auth_code = validate_auth_code(get("auth_code"))
    return name, idcode, used_phone, auth_code


def normalize_repair_row(row: Mapping[str, object], legacy: LegacyIdPolicy) -> RepairRecord:
    """The record to upload from the canonical fields ``name`` (``validate_repair_name``, sent in
    plain text), ``id_number``, ``used_phone`` and ``auth_code`` (``validate_auth_code``) of ``row``
    (raw values: ``str``, ``int``, ``float`` or ``None``; a missing key counts as ``None``). The first
    broken rule is raised as ``RuleViolation``, fields checked in that order, its ``field`` set where
    the rule's subject is not the field. Built with ``model_construct``: every value was just
    validated, and pydantic validation per row would dominate the cost of a 1M-row file."""
    name, idcode, used_phone, auth_code = repair_fields(row, legacy)
    return _construct(name=name, idcode=idcode, usedPhone=used_phone, authCode=auth_code)
