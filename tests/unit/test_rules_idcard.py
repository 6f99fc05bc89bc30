"""rules.idcard: GB 11643 check digits, 15→18 conversion, Excel damage."""

from __future__ import annotations

import random

import pytest

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.idcard import WEIGHTS, check_digit, is_valid_id18, normalize_id_number

STANDARD_EXAMPLE = "11010519491231002X"  # the example printed in GB 11643-1999


def naive_check_digit(first17: str) -> str:
    # written independently of the module: the textbook formula, digit by digit
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


def make_id(region: str = "110105", birth: str = "19900307", seq: str = "123") -> str:
    first17 = region + birth + seq
    return first17 + naive_check_digit(first17)


def test_weights_are_the_standard_ones() -> None:
    standard = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    assert tuple(2 ** (17 - i) % 11 for i in range(17)) == standard
    assert standard == WEIGHTS


@pytest.mark.parametrize(
    ("first17", "digit"),
    [
        ("11010519491231002", "X"),  # GB 11643 example
        ("44052418800101001", "4"),  # widely published example (born 1880)
        ("11010119900307803", naive_check_digit("11010119900307803")),
    ],
)
def test_check_digit_known(first17: str, digit: str) -> None:
    assert check_digit(first17) == digit


def test_check_digit_agrees_with_naive_formula() -> None:
    rng = random.Random(11643)
    for _ in range(5000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        assert check_digit(first17) == naive_check_digit(first17)
    for first17 in ("0" * 17, "9" * 17, "1" + "0" * 16, "0" * 16 + "1"):
        assert check_digit(first17) == naive_check_digit(first17)


def test_birth_date_memo_is_consistent() -> None:
    good, bad = make_id(birth="19880229"), make_id(birth="19890229")
    for _ in range(3):
        assert is_valid_id18(good)
        assert not is_valid_id18(bad)


@pytest.mark.parametrize("bad", ["", "1" * 16, "1" * 18, "1101051949123100X", "１" * 17])
def test_check_digit_refuses_non_17_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="17"):
        check_digit(bad)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (STANDARD_EXAMPLE, True),
        (make_id(), True),
        (make_id(birth="20000229"), True),  # leap day
        ("11010519491231002x", False),  # normalised form only: upper-case X
        (STANDARD_EXAMPLE[:17] + "1", False),  # wrong check digit
        (make_id(birth="19000229"), False),  # 1900 is not a leap year
        (make_id(birth="18991231"), False),  # before 1900
        (make_id(birth="19901301"), False),  # month 13
        ("44052418800101001" + "4", False),  # valid check digit, year 1880
        ("1101051949123100", False),
    ],
)
def test_is_valid_id18(value: str, valid: bool) -> None:
    assert is_valid_id18(value) is valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (STANDARD_EXAMPLE, STANDARD_EXAMPLE),
        ("11010519491231002x", STANDARD_EXAMPLE),  # lower-case x
        (" 11010519491231002X\t", STANDARD_EXAMPLE),
        ("１１０１０５１９４９１２３１００２Ｘ", STANDARD_EXAMPLE),  # full-width
        ("１１０１０５１９４９１２３１００２ｘ", STANDARD_EXAMPLE),
        ("\u200b11010519491231002X\ufeff", STANDARD_EXAMPLE),  # zero-width space and BOM
        (make_id(), make_id()),
    ],
)
def test_normalize_accepts(raw: str, expected: str) -> None:
    assert normalize_id_number(raw) == expected


def test_legacy_15_converts() -> None:
    # 15-digit form of the standard example: drop "19" and the check digit
    legacy = "110105491231002"
    assert normalize_id_number(legacy) == STANDARD_EXAMPLE
    assert normalize_id_number(legacy, LegacyIdPolicy.CONVERT) == STANDARD_EXAMPLE
    converted = normalize_id_number("440524800101001")
    assert converted == "44052419800101001" + naive_check_digit("44052419800101001")
    assert is_valid_id18(converted)


def rule_of(raw: object, legacy: LegacyIdPolicy = LegacyIdPolicy.CONVERT) -> str:
    with pytest.raises(RuleViolation) as info:
        normalize_id_number(raw, legacy)
    return info.value.rule


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (None, "id_number.missing"),
        ("", "id_number.missing"),
        ("  \u3000", "id_number.missing"),
        (110105194912310020, "id_number.excel_number"),  # int from a spreadsheet
        (1.10105194912310e17, "id_number.excel_number"),  # float from a spreadsheet
        ("1.10101E+17", "id_number.excel_number"),
        ("1.10101e+17", "id_number.excel_number"),
        ("1.1010519491231E17", "id_number.excel_number"),
        ("110101199003077000.0", "id_number.excel_number"),
        ("11010519491231E+5", "id_number.excel_number"),
        ("11010519491231002Y", "id_number.format"),
        ("110105 19491231002X", "id_number.format"),
        ("110105-19491231-002X", "id_number.format"),
        ("X1010519491231002", "id_number.format"),
        ("张三", "id_number.format"),
        ("1101051949123100", "id_number.length"),  # 16
        ("11010519491231002", "id_number.length"),  # 17
        ("110105194912310021X", "id_number.length"),  # 19
        ("11010549123100X", "id_number.length"),  # 15 with X: not a legacy number
        (make_id(birth="19901301")[:17] + "0", "id_number.birth_date"),
        (make_id(birth="19900230"), "id_number.birth_date"),
        (make_id(birth="18991231"), "id_number.birth_date"),
        ("11010519491231002" + "1", "id_number.check_digit"),
        ("110105491331002", "id_number.birth_date"),  # legacy with month 13
    ],
)
def test_normalize_rejects(raw: object, rule: str) -> None:
    assert rule_of(raw) == rule


def test_birth_date_checked_before_check_digit() -> None:
    bad_date = "11010519901301123"
    assert rule_of(bad_date + naive_check_digit(bad_date)) == "id_number.birth_date"


def test_legacy_15_rejected_by_policy() -> None:
    assert rule_of("110105491231002", LegacyIdPolicy.REJECT) == "id_number.legacy_15"


def test_other_non_strings_are_format_errors() -> None:
    assert rule_of(["11010519491231002X"]) == "id_number.format"


@pytest.mark.parametrize(
    "raw",
    ["11010519491231002" + "1", "110105199013011234", "1101051949123100", "110105491231002", "1.10105E+17"],
)
def test_messages_never_contain_the_value(raw: str) -> None:
    for legacy in LegacyIdPolicy:
        try:
            normalize_id_number(raw, legacy)
        except RuleViolation as exc:
            assert raw not in str(exc)
            assert raw[:6] not in str(exc)
            assert raw[-6:] not in str(exc)
