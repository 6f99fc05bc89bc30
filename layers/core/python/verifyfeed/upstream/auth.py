"""Building and checking ``authinfo`` (docs/decisions.md#authinfo).

The spec links the ``authinfo`` fields to a page we do not have. We send
``{"apiId", "timestamp", "nonce", "sign"}`` where ``sign`` is the lower-case hex
HMAC-SHA256, keyed with the API key, of ``"apiId={apiId}&nonce={nonce}&timestamp={timestamp}"``;
the key itself never travels. ``AUTHINFO_SCHEME=static`` sends ``apiId`` and ``apiKey`` as they are,
for an upstream that wants that instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from verifyfeed.models.envelope import AuthInfo


@dataclass(frozen=True)
class Credentials:
    api_id: str
    api_key: str

    def __repr__(self) -> str:  # never print the key
        return f"Credentials(api_id={self.api_id!r}, api_key='***')"


def _string_to_sign(api_id: str, nonce: str, timestamp: str) -> bytes:
    return f"apiId={api_id}&nonce={nonce}&timestamp={timestamp}".encode()


def authinfo_sign(api_key: str, api_id: str, nonce: str, timestamp: str) -> str:
    return hmac.new(api_key.encode(), _string_to_sign(api_id, nonce, timestamp), hashlib.sha256).hexdigest()


def build_authinfo(credentials: Credentials, now: datetime, scheme: str = "hmac-sha256") -> AuthInfo:
    timestamp = str(int(now.timestamp() * 1000))
    nonce = secrets.token_hex(16)
    if scheme == "static":
        return AuthInfo(
            apiId=credentials.api_id, timestamp=timestamp, nonce=nonce, sign="", apiKey=credentials.api_key
        )
    if scheme != "hmac-sha256":
        raise ValueError(f"unknown AUTHINFO_SCHEME {scheme!r}")
    sign = authinfo_sign(credentials.api_key, credentials.api_id, nonce, timestamp)
    return AuthInfo(apiId=credentials.api_id, timestamp=timestamp, nonce=nonce, sign=sign)


def verify_authinfo(info: AuthInfo, credentials: Credentials, now: datetime, max_skew_s: int = 300) -> bool:
    """What the upstream (our sandbox) checks: the right apiId, a fresh timestamp, a valid sign."""
    if not hmac.compare_digest(info.apiId, credentials.api_id):
        return False
    try:
        sent_ms = int(info.timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() * 1000 - sent_ms) > max_skew_s * 1000:
        return False
    expected = authinfo_sign(credentials.api_key, info.apiId, info.nonce, info.timestamp)
    return hmac.compare_digest(expected, info.sign)
