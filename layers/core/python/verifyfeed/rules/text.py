"""``clean``: the canonical text form every rule starts from, and ``clean_verbatim`` for values that
must keep their exact characters.
"""

from __future__ import annotations

import unicodedata

# Every code point of category Cf in Unicode 15.1 (Python 3.13, the runtime's). A literal table
# instead of a scan of all 1.1M code points at import keeps Lambda cold starts fast; a unit test
# checks the table against ``unicodedata`` so a runtime upgrade cannot silently leave gaps.
CF_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # U+13439..U+1343F: Egyptian hieroglyph format controls, Unicode 15.0
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)

_DROP_CF: dict[int, None] = {cp: None for lo, hi in CF_RANGES for cp in range(lo, hi + 1)}

_normalize = unicodedata.normalize


def clean(value: object) -> str:
    """``None`` → ``""``; other non-strings → ``str(value)``, then: NFKC normalisation, so full-width
    digits, letters and punctuation (``１２３``, ``ＡＢＣ``, ``，``) become their ASCII forms and U+3000
    / U+00A0 become ordinary spaces; format characters (category Cf: zero-width space U+200B, BOM
    U+FEFF, soft hyphen, bidi controls, ...) removed, since they are invisible in spreadsheets yet
    break exact matching; surrounding whitespace stripped. Pure-ASCII input only needs ``strip()``:
    that fast path covers almost every ID, phone and code."""
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if text.isascii():
        return text.strip()
    return _normalize("NFKC", text).translate(_DROP_CF).strip()


def clean_verbatim(value: object) -> str:
    """``clean`` without NFKC, for values that must keep their exact characters, such as file names
    that refer to files stored elsewhere (``照片（1）.jpg``)."""
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if text.isascii():
        return text.strip()
    return text.translate(_DROP_CF).strip()
