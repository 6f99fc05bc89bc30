"""SHA-256 helpers: ``sha256_hex(text)`` digests the UTF-8 bytes and returns lower-case hex;
``is_sha256_hex(text)`` tells whether ``text`` is exactly 64 hex digits (either case).

The bare SHA-256 of an ID or phone number is the lost-repair upstream's wire format, never what we
store: a stored digest is keyed (``verifyfeed.pii.keyed_digest``, docs/decisions.md#personal-data)."""

from __future__ import annotations

import hashlib
import re

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_sha256 = hashlib.sha256


def sha256_hex(text: str) -> str:
    return _sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and _HEX64.fullmatch(text) is not None
