"""Personal data in logs, reports and stored records: masks (``mask_*``) and keyed digests
(``keyed_digest``, ``Keyed``): ID numbers, phone numbers and names never leave this system in the
clear except towards upstream. Why every stored digest is keyed, and the masks' rules:
docs/decisions.md#personal-data.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


def _mask(value: str, keep_head: int, keep_tail: int) -> str:
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    tail = value[len(value) - keep_tail :] if keep_tail else ""
    return value[:keep_head] + "*" * (len(value) - keep_head - keep_tail) + tail


def _mask_tail(value: str) -> str:
    """Only the last 4 characters, and at most half of the value."""
    return _mask(value, 0, min(4, len(value) // 2))


def mask_id(value: object) -> str:
    """``110105199003071234`` → ``**************1234``."""
    return _mask_tail(_text(value))


def mask_phone(value: object) -> str:
    """``13812345678`` → ``*******5678``."""
    return _mask_tail(_text(value))


def mask_name(value: object) -> str:
    """``张三丰`` → ``张**``."""
    return _mask(_text(value), 1, 0)


def mask_generic(value: object) -> str:
    return _mask(_text(value), 1, 1)


def mask_object_key(key: str) -> str:
    """An S3 object key for a log line: its first folder and its extension only — file names often
    carry people's names. ``lost-repair/2026/张三名单.csv`` → ``lost-repair/*.csv``; the job id
    (every log line's ``correlation_id``) says which file it was."""
    folder, _, rest = key.partition("/")
    if not rest:
        folder, rest = "", key
    name = rest.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1] if "." in name[1:] else ""
    masked = "*." + extension if extension.isascii() and extension.isalnum() and len(extension) <= 5 else "*"
    return f"{folder}/{masked}" if folder else masked


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


def keyed_digest(value: str, pepper: bytes) -> str:
    """HMAC-SHA256 of ``value`` (UTF-8) keyed with ``pepper``, lower-case hex: the only digest of an
    ID or phone number we may store. Normalise ``value`` first (an ID number upper-cased)."""
    if not pepper:
        raise ValueError("a keyed digest needs a non-empty pepper")
    return hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, repr=False)
class Keyed:
    """The identity pepper: ``current`` for everything written, ``previous`` (while rotating) so that
    a look-up still finds what was written before the rotation."""

    current: bytes
    previous: bytes = b""

    def __post_init__(self) -> None:
        if not self.current:
            raise ValueError("the identity pepper has no current value")

    def digest(self, value: str) -> str:
        """The digest to store for ``value``: under the current pepper."""
        return keyed_digest(value, self.current)

    def candidates(self, value: str) -> tuple[str, ...]:
        """What a look-up of ``value`` tries, in order: the current digest, then the previous one."""
        current = self.digest(value)
        if not self.previous or self.previous == self.current:
            return (current,)
        return current, keyed_digest(value, self.previous)

    def __repr__(self) -> str:  # never the pepper itself, in a log or a traceback
        return f"Keyed(previous={'set' if self.previous else 'none'})"
