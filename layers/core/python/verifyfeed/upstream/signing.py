"""Callback signatures (docs/decisions.md#callback-sign).

The spec says only that the callback carries a ``sign`` header. Default scheme ``hmac-sha256``:
``sign`` is the lower-case hex HMAC-SHA256 of the **raw** request body, keyed with a shared secret.
Verification compares in constant time against every active secret (current and, during a
rotation, previous). Schemes are pluggable: register another ``SignScheme`` under a name and set
``CALLBACK_SIGN_SCHEME``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

SignScheme = Callable[[bytes, bytes], str]  # (secret, raw body) -> expected header value


def _hmac_sha256(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


SCHEMES: dict[str, SignScheme] = {"hmac-sha256": _hmac_sha256}


def sign_body(body: bytes, secret: str, scheme: str = "hmac-sha256") -> str:
    return SCHEMES[scheme](secret.encode(), body)


def verify_sign(
    body: bytes, presented: str | None, secrets: Sequence[str], scheme: str = "hmac-sha256"
) -> bool:
    if not presented:
        return False
    presented_b = presented.strip().lower().encode()
    ok = False
    for secret in secrets:
        if not secret:
            continue
        expected = SCHEMES[scheme](secret.encode(), body).encode()
        ok |= hmac.compare_digest(expected, presented_b)  # no early exit: same time whichever matches
    return ok
