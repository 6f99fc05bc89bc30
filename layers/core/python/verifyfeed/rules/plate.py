"""Vehicle licence plates (GA 36): ``normalize_plate`` gives the compact form (``粤BD12345``) or
raises ``plate.format``. Why an 8-character plate must have a new-energy serial:
docs/decisions.md#plates.
"""

from __future__ import annotations

import re

from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.text import clean

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

_SERIAL = "[A-HJ-NP-Z0-9]"
_PLATE = re.compile(
    f"[{PROVINCES}][A-Z]"
    f"(?:{_SERIAL}{{5}}"  # regular
    f"|{_SERIAL}{{4,5}}[挂学警港澳]"  # special use
    f"|[ABCDEFGHJK]{_SERIAL}[0-9]{{4}}"  # new energy, small vehicle
    f"|[0-9]{{5}}[DF])"  # new energy, large vehicle
)
_DROP = str.maketrans("", "", " .-·•・‧∙⋅")


def normalize_plate(raw: object) -> str:
    """The value cleaned, upper-cased, without spaces, dots (``.``, ``·`` and look-alikes) and
    hyphens, when it is one of:

    - a regular plate: province abbreviation + letter A–Z + 5 characters of digits and letters
      other than I and O (``京A12345``, ``粤BX1234``);
    - a special-use plate: province + letter + 4 or 5 such characters + 挂/学/警/港/澳
      (``粤B1234挂``; GA 36 uses 4, 5 is tolerated);
    - a new-energy plate (GA 36 as amended; 8 characters: province + letter + 6), current
      numbering: small vehicles a first serial letter ``D``, ``A``, ``B``, ``C`` or ``E`` (pure
      electric) or ``F``, ``G``, ``H``, ``J`` or ``K`` (other new energy), then a letter other than
      I and O or a digit, then 4 digits (``粤BD12345``, ``粤BAF1234``, ``京AK00001``); large
      vehicles 5 digits then ``D`` or ``F`` (``沪A12345D``). Any other 8-character plate is refused.

    The letter after the province may be any of A–Z (issuing codes vary and include letters the
    serial excludes). Anything else, an empty value too, raises ``RuleViolation("plate.format")``."""
    plate = clean(raw).upper().translate(_DROP)
    if _PLATE.fullmatch(plate) is None:
        raise RuleViolation("plate.format")
    return plate
