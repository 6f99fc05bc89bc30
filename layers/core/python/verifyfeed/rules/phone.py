"""Mainland China mobile numbers: ``normalize_mobile`` gives the 11 digits or a ``RuleViolation``
(``phone.*``); ``is_plain_mobile`` is a fast path's test. Why a number cell is accepted here and not
for an ID number: ``normalize_mobile``'s docstring, docs/decisions.md#excel-numbers.
"""

from __future__ import annotations

import re

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.text import clean

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_SEPARATORS = str.maketrans("", "", " -()\t")


def is_plain_mobile(text: str) -> bool:
    """Whether ``text`` already is what ``normalize_mobile`` returns: exactly 11 ASCII digits, ``1[3-9]…``."""
    return len(text) == 11 and text.isascii() and text.isdigit() and text[0] == "1" and text[1] in "3456789"


def normalize_mobile(raw: object, required: bool) -> str:
    """The 11 digits (``1[3-9]`` + 9 digits), or ``RuleViolation``:

    - absent (``None`` or empty after ``clean``): ``""`` when not ``required``, else ``phone.missing``;
    - spaces, tabs, dashes and parentheses are removed (``138 0013 8000``, ``(+86) 138-0013-8000``);
    - a leading ``+86``, ``0086`` or ``86`` is removed when exactly 11 digits remain;
    - anything else: ``phone.format``.

    A spreadsheet cell holding a phone as a number arrives as ``int`` (or a float with an integral
    value). Unlike ID numbers, 11 digits fit a double exactly and phones never start with 0, so
    nothing can have been lost: such values are checked like text. ``bool`` and non-integral
    floats are ``phone.format``."""
    if raw is None:
        text = ""
    elif type(raw) is str:
        text = clean(raw)
    elif type(raw) is int:
        text = str(raw)
    elif type(raw) is float and raw.is_integer():
        text = str(int(raw))
    else:
        raise RuleViolation("phone.format")
    if not text:
        if required:
            raise RuleViolation("phone.missing")
        return ""
    if len(text) != 11:
        text = text.translate(_SEPARATORS)
        if len(text) == 14 and text.startswith("+86"):
            text = text[3:]
        elif len(text) == 15 and text.startswith("0086"):
            text = text[4:]
        elif len(text) == 13 and text.startswith("86"):
            text = text[2:]
    if _MOBILE.fullmatch(text) is None:
        raise RuleViolation("phone.format")
    return text
