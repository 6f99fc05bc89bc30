"""rules.authcode and rules.plate."""

from __future__ import annotations

import pytest

from verifyfeed.rules.authcode import validate_auth_code
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.plate import PROVINCES, normalize_plate


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("authCode1", "authCode1"),  # case preserved
        ("AbC123", "AbC123"),
        (" HT2023001 ", "HT2023001"),
        ("ＨＴ２０２３", "HT2023"),  # full-width
        ("a" * 16, "a" * 16),
        ("0" * 16, "0" * 16),
        (12345, "12345"),  # a number cell
        (12345.0, "12345"),
        (123456789012345, "123456789012345"),  # 15 digits: exact in Excel
    ],
)
def test_auth_code_accepts(raw: object, expected: str) -> None:
    assert validate_auth_code(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (None, "auth_code.missing"),
        ("", "auth_code.missing"),
        (" \u200b ", "auth_code.missing"),
        ("a" * 17, "auth_code.format"),
        ("HT-2023-001", "auth_code.format"),
        ("HT 2023", "auth_code.format"),
        ("合同1", "auth_code.format"),
        ("abc_1", "auth_code.format"),
        ("ａｂｃ＿１", "auth_code.format"),
        (-123, "auth_code.format"),
        (12.5, "auth_code.excel_number"),
        (1234567890123456, "auth_code.excel_number"),  # 16 digits: Excel may have rounded it
        (1.234567890123456e15, "auth_code.excel_number"),
    ],
)
def test_auth_code_rejects(raw: object, rule: str) -> None:
    with pytest.raises(RuleViolation) as info:
        validate_auth_code(raw)
    assert info.value.rule == rule
    if isinstance(raw, str) and raw.strip():
        assert raw not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("京A12345", "京A12345"),
        ("京a12345", "京A12345"),
        (" 京A·12345 ", "京A12345"),
        ("京A-12345", "京A12345"),
        ("京 A 12345", "京A12345"),
        ("京A.12345", "京A12345"),
        ("粤BX1234", "粤BX1234"),
        ("粤B·D12345", "粤BD12345"),  # new energy, small vehicle
        ("粤BDF1234", "粤BDF1234"),
        ("沪A12345D", "沪A12345D"),  # new energy, large vehicle
        ("沪A12345F", "沪A12345F"),
        ("粤B1234挂", "粤B1234挂"),  # trailer
        ("粤B12345挂", "粤B12345挂"),  # lenient: 5 before the suffix
        ("粤Z1234港", "粤Z1234港"),
        ("粤Z1234澳", "粤Z1234澳"),
        ("京A1234学", "京A1234学"),
        ("京A0001警", "京A0001警"),
        ("京I12345", "京I12345"),  # issuing letter: all of A–Z
        ("京Ａ１２３４５", "京A12345"),  # full-width
    ],
)
def test_plate_accepts(raw: str, expected: str) -> None:
    assert normalize_plate(raw) == expected


# the current numbering of small new-energy plates: D A B C E pure electric, F G H J K the others
@pytest.mark.parametrize("first", list("DABCEFGHJK"))
@pytest.mark.parametrize("second", ["0", "9", "A", "H", "J", "N", "P", "Z"])
def test_small_new_energy_plates(first: str, second: str) -> None:
    assert normalize_plate(f"粤B {first}{second}·1234") == f"粤B{first}{second}1234"


@pytest.mark.parametrize("first", [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "DABCEFGHJK"])
def test_small_new_energy_plates_other_first_letters_rejected(first: str) -> None:
    with pytest.raises(RuleViolation) as info:
        normalize_plate(f"粤B{first}A1234")
    assert info.value.rule == "plate.format"


@pytest.mark.parametrize("last", ["D", "F"])
def test_large_new_energy_plates(last: str) -> None:
    assert normalize_plate(f"沪A 12345 {last}") == f"沪A12345{last}"


@pytest.mark.parametrize("province", list(PROVINCES))
def test_every_province(province: str) -> None:
    assert normalize_plate(f"{province}A12345") == f"{province}A12345"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "京A1234",  # too short
        "京A123456",  # 6 digits without D/F
        "京AI2345",  # I in the serial
        "京AO2345",
        "A12345",  # no province
        "港A12345",  # not a province abbreviation
        "京1A2345",
        "京AD12345X",
        "沪A1234D5",  # large new energy needs 5 digits then D/F
        "沪A12345G",
        "沪A12345A",  # the new first letters are for small vehicles only
        "沪A12345K",
        "粤BF1A234",  # small new energy: the last four are digits
        "粤BDI1234",  # I and O are not serial characters
        "粤BDO1234",
        "粤BL12345",  # L is not a new-energy letter
        "粤BD123456",  # 9 characters
        "粤BAB12345",
        "粤B123挂",
        "京A12345挂学",
        "京A12_45",
    ],
)
def test_plate_rejects(raw: object) -> None:
    with pytest.raises(RuleViolation) as info:
        normalize_plate(raw)
    assert info.value.rule == "plate.format"
