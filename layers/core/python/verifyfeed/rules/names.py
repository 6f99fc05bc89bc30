"""Person names.

``validate_repair_name(raw)`` — the lost-repair ``name`` (sent in plain text, ≤ 30 characters):
after ``clean``, 1..30 characters of letters of any script (Unicode L*), combining marks (M*),
and the separators middle dot ``·``, space, apostrophe, hyphen and period. Dot look-alikes
(``•`` U+2022, ``・`` U+30FB, ``‧`` U+2027, ``∙`` U+2219, ``⋅`` U+22C5, ``･`` U+FF65) are accepted
and normalised to U+00B7 ``·``, the form household registers use for ethnic-minority names.
The first character must be a letter (which also rules out spreadsheet formula starts
``= + - @``); separators may not end the name, except a period (``Jr.``). Emoji, digits and
other symbols are refused. Rules: ``name.missing``, ``name.length``, ``name.characters``.

``validate_owner_name(raw, field="name")`` — carrier-audit names (``name``, ``driverName``):
1..20 characters, CJK unified ideographs only (basic block, extension A, and extensions B..H
beyond the BMP) plus the middle dot that separates the parts of ethnic-minority names. Dot
look-alikes are normalised to U+00B7 as above; a dot may not start or end the name nor be
doubled; ``〇`` and spaces are refused. Same rule codes; messages start with ``field`` and
the violation's ``field`` is set.

Both return the cleaned, dot-normalised name.
"""

from __future__ import annotations

import re
import unicodedata

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.text import clean

REPAIR_NAME_MAX = 30
OWNER_NAME_MAX = 20

_REPAIR_SEPARATORS = frozenset("· '-.")
_FORMULA_START = frozenset("=+-@")
_category = unicodedata.category

_DOT = "\u00b7"
_DOT_VARIANTS = str.maketrans(dict.fromkeys("\u2022\u30fb\u2027\u2219\u22c5\uff65\u0387", _DOT))
_HAN = (
    "\u3400-\u4dbf"  # extension A
    "\u4e00-\u9fff"  # unified ideographs
    "\U00020000-\U000323af"  # extensions B..H (SMP/TIP; Python strings hold them without surrogates)
)
_OWNER_NAME = re.compile(f"[{_HAN}]+(?:{_DOT}[{_HAN}]+)*")

_MISSING = "required value is empty"
_FORMULA = "must not start with =, +, - or @"


def validate_repair_name(raw: object) -> str:
    name = clean(raw)
    if not name:
        raise RuleViolation("name.missing", _MISSING)
    if len(name) > REPAIR_NAME_MAX:
        raise RuleViolation("name.length", f"must be at most {REPAIR_NAME_MAX} characters")
    if name.isalpha():
        return name
    name = name.translate(_DOT_VARIANTS)
    if name[0] in _FORMULA_START:
        raise RuleViolation("name.characters", _FORMULA)
    if not name[0].isalpha():
        raise RuleViolation("name.characters", "must start with a letter")
    for char in name:
        if not (char.isalpha() or char in _REPAIR_SEPARATORS or _category(char)[0] == "M"):
            raise RuleViolation("name.characters", "may contain only letters, spaces and the marks · ' - .")
    if name[-1] in _REPAIR_SEPARATORS and name[-1] != ".":
        raise RuleViolation("name.characters", "must not end with a separator")
    return name


def validate_owner_name(raw: object, field: str = "name") -> str:
    name = clean(raw)
    if not name:
        raise RuleViolation("name.missing", f"{field}: required value is empty", field)
    name = name.translate(_DOT_VARIANTS)
    if len(name) > OWNER_NAME_MAX:
        raise RuleViolation("name.length", f"{field}: must be at most {OWNER_NAME_MAX} characters", field)
    if _OWNER_NAME.fullmatch(name) is None:
        if name[0] in _FORMULA_START:
            raise RuleViolation("name.characters", f"{field}: {_FORMULA}", field)
        raise RuleViolation(
            "name.characters",
            f"{field}: only Chinese characters and the middle dot · between them are allowed",
            field,
        )
    return name
