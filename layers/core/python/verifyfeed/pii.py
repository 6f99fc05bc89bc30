"""Masking personal data for logs, reports and stored records.

ID numbers, phone numbers and names never leave this system in the clear except towards
upstream. Masks keep just enough to let an operator match a row with the source file.
"""

from __future__ import annotations


def _mask(value: str, keep_head: int, keep_tail: int) -> str:
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    tail = value[len(value) - keep_tail :] if keep_tail else ""
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + tail


def mask_id(value: object) -> str:
    """``110105199003071234`` → ``110*************34``."""
    return _mask(_text(value), 3, 2)


def mask_phone(value: object) -> str:
    """``13812345678`` → ``138******78``."""
    return _mask(_text(value), 3, 2)


def mask_name(value: object) -> str:
    """``张三丰`` → ``张**``."""
    return _mask(_text(value), 1, 0)


def mask_generic(value: object) -> str:
    return _mask(_text(value), 1, 1)


def _text(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 64 else text[:64]


def spreadsheet_safe(cell: str) -> str:
    """Neutralise CSV/formula injection: a cell Excel would evaluate gets a leading quote."""
    if cell and cell[0] in "=+-@\t\r":
        return "'" + cell
    return cell
