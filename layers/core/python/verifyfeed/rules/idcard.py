"""Resident identity card numbers (GB 11643-1999): ``normalize_id_number`` gives the upper-cased
18-character number or a ``RuleViolation`` (``id_number.*``); ``check_digit``, ``is_valid_id18`` and,
for hot loops, ``is_plain_id18``. Why an Excel number is refused and a 15-digit one converted:
docs/decisions.md#excel-numbers, #legacy-id.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.text import clean

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_BIRTH_CACHE_MAX = 100_000

_ID18 = re.compile(r"[0-9]{17}[0-9X]")
_DIGITS17 = re.compile(r"[0-9]{17}")
# 18 characters whose date part needs no calendar: years 1900-2099, days every such month has
_PLAIN_ID18 = re.compile(
    r"[0-9]{6}(?:19|20)[0-9]{2}"
    r"(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)|02(?:0[1-9]|1[0-9]|2[0-8]))"
    r"[0-9]{3}[0-9X]"
).fullmatch
_ID_CHARS = re.compile(r"[0-9]+X?")
_EXCEL_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:E[+-]?[0-9]+)?")


def _weighted(first17: str) -> str:
    # WEIGHTS[i] == 2**(17-i) % 11, and 13 ≡ 2 (mod 11): reading the digits as a base-13 number
    # yields Σ d·2**(16-i) mod 11 in one C call — ten times faster than a weighted sum in Python.
    # Callers guarantee 17 ASCII digits (int() would also accept a-c).
    return _CHECK_CHARS[2 * int(first17, 13) % 11]


def check_digit(first17: str) -> str:
    """The check character for 17 ASCII digits (``ValueError`` otherwise)."""
    if _DIGITS17.fullmatch(first17) is None:
        raise ValueError("check_digit needs exactly 17 ASCII digits")
    return _weighted(first17)


_birth_ok: dict[str, bool] = {}


def _valid_birth(yyyymmdd: str) -> bool:
    # about 40k distinct birth dates occur in practice; remembering them saves three int() calls
    # and a date() per row. The cap keeps adversarial input from growing the memo without bound.
    known = _birth_ok.get(yyyymmdd)
    if known is not None:
        return known
    year = int(yyyymmdd[:4])
    try:
        valid = year >= 1900 and date(year, int(yyyymmdd[4:6]), int(yyyymmdd[6:8])) is not None
    except ValueError:
        valid = False
    if len(_birth_ok) < _BIRTH_CACHE_MAX:
        _birth_ok[yyyymmdd] = valid
    return valid


def is_valid_id18(value: str) -> bool:
    """``True`` for an already normalised 18-character number: 17 digits, a digit or upper-case
    ``X``, a real birth date with year ≥ 1900, and a matching check digit."""
    return (
        _ID18.fullmatch(value) is not None
        and _valid_birth(value[6:14])
        and _weighted(value[:17]) == value[17]
    )


def is_plain_id18(text: str) -> bool:
    """A quick sufficient test that ``normalize_clean_id(text)`` is ``text`` itself: 17 ASCII
    digits, the matching digit or upper-case ``X``, and a birth date in 1900-2099 that is valid in
    every year (one regular expression, no calendar). ``False`` means "ask ``normalize_clean_id``":
    an invalid number, but also a lower-case ``x``, a 29 February or a year from 2100 on."""
    return _PLAIN_ID18(text) is not None and _CHECK_CHARS[2 * int(text[:17], 13) % 11] == text[17]


def normalize_id_number(raw: object, legacy: LegacyIdPolicy = LegacyIdPolicy.CONVERT) -> str:
    """The upper-cased 18-character number (a lower-case ``x`` accepted; a 15-digit number with
    policy ``CONVERT`` becomes the 18-digit one: ``19`` inserted after the 6-digit region code,
    check digit appended), or ``RuleViolation``:

    ``id_number.missing``       empty after ``clean``
    ``id_number.excel_number``  a number (int/float) or its text form (``1.10101E+17``,
                                ``110101199003077000.0``): Excel keeps 15 significant digits,
                                so the real number is already lost
    ``id_number.format``        other characters than digits and a final X
    ``id_number.legacy_15``     15-digit number and the policy is ``REJECT``
    ``id_number.length``        neither 15 nor 18 characters
    ``id_number.birth_date``    the date part is not a calendar date with year ≥ 1900
    ``id_number.check_digit``   the check digit does not match

    Future birth dates are *not* rejected: the rules are pure and never read the clock."""
    if raw is None:
        raise RuleViolation("id_number.missing")
    if type(raw) is not str:
        if isinstance(raw, int | float | Decimal):
            raise RuleViolation("id_number.excel_number")
        raise RuleViolation("id_number.format")
    return normalize_clean_id(clean(raw), legacy)


def normalize_clean_id(text: str, legacy: LegacyIdPolicy = LegacyIdPolicy.CONVERT) -> str:
    """``normalize_id_number`` for text that already went through ``clean``."""
    if len(text) == 18:
        if text[17] == "x":
            text = text[:17] + "X"
        if _ID18.fullmatch(text) is not None:
            if not _valid_birth(text[6:14]):
                raise RuleViolation("id_number.birth_date")
            if _weighted(text[:17]) != text[17]:
                raise RuleViolation("id_number.check_digit")
            return text
    if not text:
        raise RuleViolation("id_number.missing")
    upper = text.upper()
    if "E+" in upper or (("." in upper or "E" in upper) and _EXCEL_NUMBER.fullmatch(upper)):
        raise RuleViolation("id_number.excel_number")
    if _ID_CHARS.fullmatch(upper) is None:
        raise RuleViolation("id_number.format")
    if len(upper) == 15 and upper.isdigit():
        if legacy is LegacyIdPolicy.REJECT:
            raise RuleViolation("id_number.legacy_15")
        first17 = upper[:6] + "19" + upper[6:15]
        if not _valid_birth(first17[6:14]):
            raise RuleViolation("id_number.birth_date")
        return first17 + _weighted(first17)
    raise RuleViolation("id_number.length")
