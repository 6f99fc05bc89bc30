"""The lost-repair ``authCode``: ``validate_auth_code`` gives 1..16 ASCII letters or digits, case
preserved, or a ``RuleViolation`` (``auth_code.*``). Why a code is unique regardless of case:
docs/decisions.md#auth-code-case.
"""

from __future__ import annotations

import re

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.text import clean

AUTH_CODE_MAX = 16
_EXACT_DIGITS = 15

_AUTH_CODE = re.compile(r"[A-Za-z0-9]{1,16}")


def validate_auth_code(raw: object) -> str:
    """1..16 ASCII letters or digits (case preserved, after ``clean``), or ``RuleViolation``:

    - ``auth_code.missing``       empty;
    - ``auth_code.format``        any other character (hyphens, spaces inside, Chinese) or > 16;
    - ``auth_code.excel_number``  a number with more than 15 digits, or a non-integral number:
      Excel keeps only 15 significant digits, so such a value cannot be the code that was typed.

    Numbers of up to 15 digits (``int`` or an integral ``float``) are accepted as their decimal
    text. They cannot carry leading zeros: a code typed as ``00123`` into a number-formatted cell
    arrives as ``123`` and is sent so; only a column formatted as text keeps them."""
    if isinstance(raw, str) or raw is None:
        code = clean(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        if isinstance(raw, float) and not raw.is_integer():
            raise RuleViolation("auth_code.excel_number")
        code = str(int(raw))
        if len(code.lstrip("-")) > _EXACT_DIGITS:
            raise RuleViolation("auth_code.excel_number")
    else:
        code = clean(raw)
    if not code:
        raise RuleViolation("auth_code.missing")
    if _AUTH_CODE.fullmatch(code) is None:
        raise RuleViolation("auth_code.format", max=AUTH_CODE_MAX)
    return code
