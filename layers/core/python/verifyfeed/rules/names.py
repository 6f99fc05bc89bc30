"""Person names: ``validate_repair_name`` (lost repair, sent in plain text) and
``validate_owner_name`` (carrier audits), each returning the cleaned, dot-normalised name or raising
``name.missing``, ``name.length`` or ``name.characters``. Why names are squeezed and counted as they
are: docs/decisions.md#name-spaces, #name-length.
"""

from __future__ import annotations

import re
import unicodedata

from verifyfeed.reasons import reason
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
_CJK = (
    f"{_HAN}"
    "\u2e80-\u2fdf"  # radicals
    "\u3040-\u30ff"  # kana
    "\u3100-\u312f"  # bopomofo
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # compatibility ideographs
)
_SPACES = re.compile("[ \t]+")
_CJK_GAP = re.compile(f"(?<=[{_CJK}{_DOT}])[ \t]+(?=[{_CJK}])|(?<=[{_CJK}])[ \t]+(?={_DOT})")

_FORMULA = reason("detail.formula_start")


def utf16_length(text: str) -> int:
    """The length in UTF-16 code units, which the 30 limit counts: what a Java or JavaScript
    upstream counts."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def squeeze_name_spaces(name: str) -> str:
    """A run of spaces or tabs between two CJK characters (Han ideographs, kana, Hangul — or a middle
    dot next to one) removed, since full-width spaces pad names in Chinese sheets (``张　三`` →
    ``张三``); any other run made one space (``John   Smith`` → ``John Smith``). Line breaks are not
    spaces: a name with one stays refused (two names in one cell)."""
    if " " not in name and "\t" not in name:
        return name
    return _SPACES.sub(" ", _CJK_GAP.sub("", name))


def validate_repair_name(raw: object) -> str:
    """The lost-repair ``name`` (≤ 30 characters): after ``clean`` and ``squeeze_name_spaces``, 1..30
    characters counted in UTF-16 code units (``utf16_length``: a character beyond the BMP, such as
    𠀀, counts 2), of letters of any script (Unicode L*), combining marks (M*) and the separators
    middle dot ``·``, space, apostrophe, hyphen and period. Dot look-alikes (``•`` U+2022, ``・``
    U+30FB, ``‧`` U+2027, ``∙`` U+2219, ``⋅`` U+22C5, ``･`` U+FF65) become U+00B7 ``·``, the form
    household registers use for ethnic-minority names. The first character must be a letter
    (which also rules out the formula starts ``= + - @``); a separator may not end the name, except
    a period (``Jr.``). Emoji, digits and other symbols are refused."""
    name = clean(raw)
    if not name:
        raise RuleViolation("name.missing")
    if not name.isalpha():
        name = squeeze_name_spaces(name.translate(_DOT_VARIANTS))
    if utf16_length(name) > REPAIR_NAME_MAX:
        raise RuleViolation("name.length", max=REPAIR_NAME_MAX, note=reason("note.utf16"))
    if name.isalpha():
        return name
    if name[0] in _FORMULA_START:
        raise RuleViolation("name.characters", detail=_FORMULA)
    if not name[0].isalpha():
        raise RuleViolation("name.characters", detail=reason("detail.letter_first"))
    for char in name:
        if not (char.isalpha() or char in _REPAIR_SEPARATORS or _category(char)[0] == "M"):
            raise RuleViolation("name.characters", detail=reason("detail.repair_name_characters"))
    if name[-1] in _REPAIR_SEPARATORS and name[-1] != ".":
        raise RuleViolation("name.characters", detail=reason("detail.separator_last"))
    return name


def validate_owner_name(raw: object, field: str = "name") -> str:
    """A carrier-audit name (``name``, ``driverName``; the violation's ``field``): 1..20 characters,
    CJK unified ideographs only (basic block, extension A, and extensions B..H beyond the BMP) plus
    the middle dot between the parts of ethnic-minority names. Dot look-alikes become U+00B7 as for
    ``validate_repair_name``; a dot may not start or end the name nor be doubled; ``〇`` and spaces
    are refused."""
    name = clean(raw)
    if not name:
        raise RuleViolation("name.missing", field)
    name = name.translate(_DOT_VARIANTS)
    if len(name) > OWNER_NAME_MAX:
        raise RuleViolation("name.length", field, max=OWNER_NAME_MAX, note="")
    if _OWNER_NAME.fullmatch(name) is None:
        if name[0] in _FORMULA_START:
            raise RuleViolation("name.characters", field, detail=_FORMULA)
        raise RuleViolation("name.characters", field, detail=reason("detail.owner_name_characters"))
    return name
