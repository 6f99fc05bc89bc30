"""Vehicle licence plates (GA 36).

``normalize_plate(raw)`` cleans the value, upper-cases it and removes spaces, dots (``.``, ``·``
and look-alikes) and hyphens, then accepts:

- regular plates: province abbreviation + letter A–Z + 5 characters of digits and letters
  other than I and O (``京A12345``, ``粤BX1234``);
- special-use plates: province + letter + 4 or 5 such characters + 挂/学/警/港/澳
  (``粤B1234挂``; GA 36 uses 4, 5 is tolerated);
- new-energy plates (GA 36 as amended for new-energy vehicles; 8 characters: province + letter
  + 6), in the current numbering:

  - small vehicles: a first serial letter ``D``, ``A``, ``B``, ``C`` or ``E`` (pure electric) or
    ``F``, ``G``, ``H``, ``J`` or ``K`` (other new energy), then a letter other than I and O or a
    digit, then 4 digits (``粤BD12345``, ``粤BAF1234``, ``京AK00001``);
  - large vehicles: 5 digits then ``D`` or ``F`` (``沪A12345D``).

  Any other 8-character plate is refused: the serial is the only thing that tells a new-energy
  plate from a mistyped regular one (decisions.md#plates).

The letter after the province is accepted from all of A–Z (issuing codes vary and include
letters the serial excludes). Returns the compact form (``粤BD12345``) or raises
``RuleViolation("plate.format", ...)``, also for an empty value.
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
    plate = clean(raw).upper().translate(_DROP)
    if _PLATE.fullmatch(plate) is None:
        raise RuleViolation("plate.format")
    return plate
