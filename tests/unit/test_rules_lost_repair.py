"""rules.lost_repair: one row → RepairRecord."""

from __future__ import annotations

import hashlib

import pytest

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.lost_repair import normalize_repair_row

ID = "11010519491231002X"
ID_DIGEST = hashlib.sha256(ID.encode()).hexdigest()
PHONE_DIGEST = hashlib.sha256(b"13800138000").hexdigest()


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "张三",
        "id_number": ID,
        "used_phone": "13800138000",
        "auth_code": "authCode1",
    }
    base.update(overrides)
    return base


def normalize(values: dict[str, object], legacy: LegacyIdPolicy = LegacyIdPolicy.CONVERT) -> RepairRecord:
    record = normalize_repair_row(values, legacy)
    # built with model_construct: prove it would also pass full validation
    assert RepairRecord.model_validate(record.model_dump()) == record
    return record


def test_valid_row() -> None:
    record = normalize(row())
    assert record.model_dump() == {
        "name": "张三",
        "idcode": ID_DIGEST,
        "usedPhone": PHONE_DIGEST,
        "authCode": "authCode1",
    }


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"id_number": "11010519491231002x"}, "idcode", ID_DIGEST),  # hashed upper-cased
        ({"id_number": "１１０１０５１９４９１２３１００２ｘ"}, "idcode", ID_DIGEST),
        ({"id_number": "110105491231002"}, "idcode", ID_DIGEST),  # legacy converted, then hashed
        ({"id_number": ID_DIGEST.upper()}, "idcode", ID_DIGEST),  # pre-hashed
        ({"id_number": f" {ID_DIGEST}\u200b"}, "idcode", ID_DIGEST),
        ({"used_phone": "+86 138-0013-8000"}, "usedPhone", PHONE_DIGEST),
        ({"used_phone": 13800138000}, "usedPhone", PHONE_DIGEST),
        ({"used_phone": PHONE_DIGEST.upper()}, "usedPhone", PHONE_DIGEST),  # pre-hashed
        ({"used_phone": ""}, "usedPhone", ""),
        ({"used_phone": None}, "usedPhone", ""),
        ({"name": " John Smith "}, "name", "John Smith"),
        ({"auth_code": 20230001}, "authCode", "20230001"),
    ],
)
def test_normalised_values(overrides: dict[str, object], field: str, expected: str) -> None:
    assert getattr(normalize(row(**overrides)), field) == expected


def test_missing_optional_key() -> None:
    values = row()
    del values["used_phone"]
    assert normalize(values).usedPhone == ""


def first_rule(values: dict[str, object], legacy: LegacyIdPolicy = LegacyIdPolicy.CONVERT) -> str:
    with pytest.raises(RuleViolation) as info:
        normalize_repair_row(values, legacy)
    for value in values.values():
        if isinstance(value, str) and len(value) >= 4:
            assert value.strip() not in str(info.value)
    return info.value.rule


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"name": ""}, "name.missing"),
        ({"name": "=cmd"}, "name.characters"),
        ({"name": "a" * 31}, "name.length"),
        ({"id_number": None}, "id_number.missing"),
        ({"id_number": 110105194912310020}, "id_number.excel_number"),
        ({"id_number": 1.10105194912310e17}, "id_number.excel_number"),
        ({"id_number": "1.10105E+17"}, "id_number.excel_number"),
        ({"id_number": ID[:17] + "1"}, "id_number.check_digit"),
        ({"id_number": "a" * 63}, "id_number.format"),  # almost a digest
        ({"used_phone": "12345"}, "phone.format"),
        ({"used_phone": "b" * 63}, "phone.format"),
        ({"auth_code": ""}, "auth_code.missing"),
        ({"auth_code": "HT-1"}, "auth_code.format"),
    ],
)
def test_rejections(overrides: dict[str, object], rule: str) -> None:
    assert first_rule(row(**overrides)) == rule


def test_legacy_policy_reject() -> None:
    assert first_rule(row(id_number="110105491231002"), LegacyIdPolicy.REJECT) == "id_number.legacy_15"


def test_first_violation_in_field_order() -> None:
    everything_wrong = {"name": "", "id_number": "x", "used_phone": "1", "auth_code": "-"}
    assert first_rule(everything_wrong) == "name.missing"
    assert first_rule({**everything_wrong, "name": "张三"}) == "id_number.format"
    assert first_rule({**everything_wrong, "name": "张三", "id_number": ID}) == "phone.format"
    assert (
        first_rule({"name": "张三", "id_number": ID, "used_phone": "", "auth_code": "-"})
        == "auth_code.format"
    )


def test_empty_row() -> None:
    assert first_rule({}) == "name.missing"
