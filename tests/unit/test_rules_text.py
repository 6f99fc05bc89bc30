"""rules.text, rules.hashing, rules.errors."""

from __future__ import annotations

import hashlib
import sys
import unicodedata

import pytest

from verifyfeed.rules.errors import RowRejected, RuleViolation
from verifyfeed.rules.hashing import is_sha256_hex, sha256_hex
from verifyfeed.rules.text import CF_RANGES, clean, clean_verbatim


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  abc \t", "abc"),
        ("１２３ＡＢＣ", "123ABC"),  # full-width digits and letters
        ("\u3000张三\u3000", "张三"),  # ideographic space
        ("\u00a0x\u00a0", "x"),  # no-break space
        ("\u200b110\u200d105\ufeff", "110105"),  # zero-width characters and BOM
        ("a\u00adb", "ab"),  # soft hyphen
        ("\u202e张三\u202c", "张三"),  # bidi override
        ("a，b", "a,b"),  # full-width comma
        (12345, "12345"),
        (1.5, "1.5"),
    ],
)
def test_clean(raw: object, expected: str) -> None:
    assert clean(raw) == expected


def test_clean_keeps_inner_spaces_and_ascii_untouched() -> None:
    assert clean(" John  Smith ") == "John  Smith"


def test_clean_verbatim_skips_nfkc() -> None:
    assert clean_verbatim(" 照片（1）.jpg\u200b ") == "照片（1）.jpg"
    assert clean("照片（1）.jpg") == "照片(1).jpg"


def test_cf_table_is_complete_for_this_runtime() -> None:
    # the tests run on the runtime's Python (tests/unit/test_template.py checks it), so this is
    # Lambda's unicodedata: a runtime move with a newer Unicode fails here until the table follows
    expected = {cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"}
    table = {cp for lo, hi in CF_RANGES for cp in range(lo, hi + 1)}
    assert table == expected


def test_sha256_hex_matches_hashlib() -> None:
    assert sha256_hex("11010519491231002X") == hashlib.sha256(b"11010519491231002X").hexdigest()
    assert sha256_hex("张三") == hashlib.sha256("张三".encode()).hexdigest()
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 64, True),
        ("A" * 64, True),
        ("0123456789abcdefABCDEF" * 2 + "0" * 20, True),
        ("a" * 63, False),
        ("a" * 65, False),
        ("g" * 64, False),
        ("a" * 63 + "\n", False),
        ("", False),
    ],
)
def test_is_sha256_hex(text: str, expected: bool) -> None:
    assert is_sha256_hex(text) is expected


def test_rule_violation_shape() -> None:
    exc = RuleViolation("phone.format")
    assert isinstance(exc, ValueError)
    assert exc.rule == "phone.format" and exc.field == ""
    assert str(exc) == "phone.format: phone: must be an 11-digit mainland mobile number"
    moved = exc.in_field("used_phone")
    assert moved.field == "used_phone"
    assert moved.rule == "phone.format"
    assert str(moved) == "phone.format: used_phone: must be an 11-digit mainland mobile number"
    # the column as the customer's header names it, in both languages
    named = moved.reason({"used_phone": "曾用手机号（选填）"})
    assert named.code == "phone.format"
    assert named.zh == "曾用手机号（选填）不是 11 位中国大陆手机号"
    assert named.en == "曾用手机号（选填）: must be an 11-digit mainland mobile number"


def test_a_rule_outside_the_catalogue_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match="no catalogue entry"):
        RuleViolation("phone.too_pretty")


def test_row_rejected_lists_all() -> None:
    first = RuleViolation("usage.value", "usage")
    second = RuleViolation("phone.missing", "phone")
    exc = RowRejected([first, second])
    assert isinstance(exc, ValueError)
    assert exc.violations == [first, second]
    assert exc.rules == ["usage.value", "phone.missing"]
    assert str(exc) == f"{first}; {second}"
