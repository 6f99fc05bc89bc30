"""rules.names: lost-repair names and carrier-audit owner names."""

from __future__ import annotations

import pytest

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.names import validate_owner_name, validate_repair_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("张三", "张三"),
        (" 欧阳娜娜 ", "欧阳娜娜"),
        ("John Smith", "John Smith"),
        ("O'Brien", "O'Brien"),
        ("Mary-Jane Watson", "Mary-Jane Watson"),
        ("J.R.R. Tolkien", "J.R.R. Tolkien"),
        ("Martin Luther King Jr.", "Martin Luther King Jr."),
        ("买买提·艾力", "买买提·艾力"),
        ("买买提•艾力", "买买提·艾力"),  # bullet normalised
        ("买买提・艾力", "买买提·艾力"),  # katakana middle dot normalised
        ("Zoe\u0308", "Zoë"),  # NFKC composes
        ("हिन्दी", "हिन्दी"),  # combining marks (Mn, Mc) inside
        ("Ｊｏｈｎ", "John"),  # full-width
        ("𠀀三", "𠀀三"),  # CJK extension B
        ("\u200b张三", "张三"),
        ("a" * 30, "a" * 30),
        ("张" * 30, "张" * 30),
        ("张　三", "张三"),  # a full-width space between two CJK characters goes
        ("张 \u3000 三", "张三"),
        ("张\t三", "张三"),
        ("欧阳　娜娜　", "欧阳娜娜"),
        ("\u00a0张\u00a0三\u00a0", "张三"),  # no-break spaces (NFKC: spaces)
        ("买买提 · 艾力", "买买提·艾力"),  # around a middle dot between CJK characters
        ("买买提 ・ 艾力", "买买提·艾力"),
        ("さとう　はなこ", "さとうはなこ"),  # kana
        ("김 민준", "김민준"),  # Hangul
        ("John   Smith", "John Smith"),  # other runs collapse to one space
        ("John\u3000Smith", "John Smith"),
        ("John\t \tSmith", "John Smith"),
        ("张 John", "张 John"),  # one CJK neighbour is not enough
        ("Jean · Pierre", "Jean · Pierre"),
        ("张" * 15 + "　" * 20 + "张" * 15, "张" * 30),  # the limit applies after squeezing
        ("a" + " " * 40 + "b", "a b"),
        ("𠀀" * 15, "𠀀" * 15),  # 30 UTF-16 code units
        ("𠀀" + "张" * 28, "𠀀" + "张" * 28),
    ],
)
def test_repair_name_accepts(raw: str, expected: str) -> None:
    assert validate_repair_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (None, "name.missing"),
        ("", "name.missing"),
        ("  ", "name.missing"),
        ("a" * 31, "name.length"),
        ("张" * 31, "name.length"),
        ("𠀀" * 16, "name.length"),  # 16 characters, 32 UTF-16 code units
        ("𠀀" + "张" * 29, "name.length"),  # 30 characters, 31 code units
        ("张 " * 31, "name.length"),  # 31 characters once the spaces between them are gone
        ("a " * 16, "name.length"),  # 31 characters: "a a ... a"
        ("李\r\n四", "name.characters"),  # a line break is not a space: two names in one cell?
        ("=HYPERLINK(1)", "name.characters"),
        ("+张三", "name.characters"),
        ("-张三", "name.characters"),
        ("@SUM", "name.characters"),
        ("张三😀", "name.characters"),  # emoji
        ("😀", "name.characters"),
        ("张三1", "name.characters"),
        ("John_Smith", "name.characters"),
        ("张三,李四", "name.characters"),
        ("'John", "name.characters"),
        ("·张三", "name.characters"),
        ("John-", "name.characters"),
        ("John'", "name.characters"),
        (12345, "name.characters"),
    ],
)
def test_repair_name_rejects(raw: object, rule: str) -> None:
    with pytest.raises(RuleViolation) as info:
        validate_repair_name(raw)
    assert info.value.rule == rule
    if isinstance(raw, str) and raw.strip():
        assert raw.strip() not in str(info.value)


def test_repair_name_inner_newline_rejected() -> None:
    with pytest.raises(RuleViolation) as info:
        validate_repair_name("李\n四")
    assert info.value.rule == "name.characters"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("张三", "张三"),
        ("张", "张"),
        ("买买提·艾力", "买买提·艾力"),
        ("买买提•艾力", "买买提·艾力"),
        ("买买提・艾力", "买买提·艾力"),
        ("买买提‧艾力", "买买提·艾力"),
        ("买买提･艾力", "买买提·艾力"),  # half-width katakana dot (NFKC → U+30FB → ·)
        ("阿·买买提·艾力", "阿·买买提·艾力"),
        ("㐀三", "㐀三"),  # extension A
        ("𠀀三", "𠀀三"),  # extension B (outside the BMP)
        ("𪜀", "𪜀"),  # extension C
        ("\u3000张三 ", "张三"),
        ("张" * 20, "张" * 20),
    ],
)
def test_owner_name_accepts(raw: str, expected: str) -> None:
    assert validate_owner_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (None, "name.missing"),
        ("", "name.missing"),
        ("张" * 21, "name.length"),
        ("Zhang San", "name.characters"),
        ("张 三", "name.characters"),
        ("张三a", "name.characters"),
        ("·张三", "name.characters"),
        ("张三·", "name.characters"),
        ("张··三", "name.characters"),
        ("张.三", "name.characters"),
        ("张三😀", "name.characters"),
        ("=张三", "name.characters"),
        ("〇", "name.characters"),
        ("张三1", "name.characters"),
    ],
)
def test_owner_name_rejects(raw: object, rule: str) -> None:
    with pytest.raises(RuleViolation) as info:
        validate_owner_name(raw, "driverName")
    exc = info.value
    assert exc.rule == rule
    assert exc.field == "driverName"
    assert exc.message.startswith("driverName: ")
    if isinstance(raw, str) and raw:
        assert raw not in str(exc)


def test_owner_name_default_field() -> None:
    with pytest.raises(RuleViolation) as info:
        validate_owner_name("Zhang")
    assert info.value.field == "name"
    assert str(info.value).startswith("name.characters: name: ")
