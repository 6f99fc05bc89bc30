"""rules.phone."""

from __future__ import annotations

import pytest

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.phone import normalize_mobile

PHONE = "13800138000"


@pytest.mark.parametrize(
    "raw",
    [
        PHONE,
        " 13800138000 ",
        "138 0013 8000",
        "138-0013-8000",
        "(138)00138000",
        "+8613800138000",
        "+86 138 0013 8000",
        "(+86) 138-0013-8000",
        "0086 13800138000",
        "0086-138-0013-8000",
        "8613800138000",
        "１３８００１３８０００",  # full-width
        "＋８６１３８００１３８０００",
        "\u200b13800138000",
        13800138000,  # a number cell
        13800138000.0,
    ],
)
def test_accepts(raw: object) -> None:
    assert normalize_mobile(raw, required=True) == PHONE


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_all_mobile_prefixes(prefix: str) -> None:
    number = prefix + "012345678"
    assert normalize_mobile(number, required=True) == number


@pytest.mark.parametrize(
    "raw",
    [
        "12800138000",  # second digit 2
        "10800138000",
        "23800138000",
        "1380013800",  # 10 digits
        "138001380001",  # 12 digits
        "+8513800138000",  # wrong country
        "861380013800",  # 86 + 10 digits
        "+86+8613800138000",
        "1380013800O",  # letter O
        "138.0013.8000",  # dots are not separators
        "010-12345678",  # landline
        "138001380０0x",
        13800138000.5,
        1380013800,
        True,
        ["13800138000"],
    ],
)
def test_rejects_format(raw: object) -> None:
    with pytest.raises(RuleViolation) as info:
        normalize_mobile(raw, required=False)
    assert info.value.rule == "phone.format"
    if isinstance(raw, str):
        assert raw not in str(info.value)


@pytest.mark.parametrize("raw", [None, "", "   ", "\u200b"])
def test_absent(raw: object) -> None:
    assert normalize_mobile(raw, required=False) == ""
    with pytest.raises(RuleViolation) as info:
        normalize_mobile(raw, required=True)
    assert info.value.rule == "phone.missing"
