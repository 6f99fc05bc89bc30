"""The wire contracts the sandbox checks, written here on their own (issue: an independent oracle).

Nothing in this module comes from ``verifyfeed``: it is written from ``shared/spec/*.md`` and
``docs/decisions.md`` (where the spec is silent), so that a bug in the product's own signing,
``authinfo`` or blackout code makes a test fail instead of agreeing with itself.

- China time: UTC+8 all year.
- Blackout (lost-repair only): no request from 00:00 on day ``start_day`` of a month (China time);
  requests resume at 00:00 on day ``resume_day`` of the following month (decisions.md#blackout).
- ``authinfo`` (decisions.md#authinfo): ``{"apiId", "timestamp" (ms), "nonce", "sign"}``, ``sign`` =
  hex HMAC-SHA256 keyed with the API key of ``apiId=…&nonce=…&timestamp=…``. The carrier-audit
  API carries the same four values as request headers by default, or as a top-level ``authinfo``
  key next to the level-1 fields (decisions.md#audit-auth).
- Callback ``sign`` header (decisions.md#callback-sign): hex HMAC-SHA256 of the raw body, keyed
  with the callback secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

CHINA = timezone(timedelta(hours=8))
AUTH_FIELDS = ("apiId", "timestamp", "nonce", "sign")


def china(at: datetime) -> datetime:
    return at.astimezone(CHINA)


def blackout_resumes_at(now: datetime, start_day: int, resume_day: int) -> datetime | None:
    """When requests may be sent again, if ``now`` is inside the monthly blackout; else None.

    Walks the calendar month by month in China time: the window that began in this month (if it
    has a day ``start_day``) or in the previous one may still be running.
    """
    local = china(now)
    year, month = local.year, local.month
    for back in (0, 1):
        y, m = (year, month - back) if month - back >= 1 else (year - 1, 12)
        try:
            begins = datetime(y, m, start_day, tzinfo=CHINA)
        except ValueError:  # no such day this month (31 in April): no blackout that month
            continue
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        ends = datetime(ny, nm, resume_day, tzinfo=CHINA)
        if begins <= local < ends:
            return ends
    return None


def _hmac_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def expected_auth_sign(api_key: str, api_id: str, nonce: str, timestamp: str) -> str:
    return _hmac_hex(api_key, f"apiId={api_id}&nonce={nonce}&timestamp={timestamp}".encode())


def check_auth(
    values: Mapping[str, Any] | None, api_id: str, api_key: str, now: datetime, max_skew_s: float
) -> str | None:
    """Why these ``authinfo`` values are refused, or None when they prove the caller."""
    if not isinstance(values, Mapping):
        return "authinfo missing"
    got = {name: values.get(name) for name in AUTH_FIELDS}
    if any(not isinstance(v, str) or not v for v in got.values()):
        return "authinfo needs apiId, timestamp, nonce and sign as non-empty strings"
    if not hmac.compare_digest(str(got["apiId"]), api_id):
        return "unknown apiId"
    timestamp = str(got["timestamp"])
    if not timestamp.isdigit():
        return "timestamp is not milliseconds since the epoch"
    sent = datetime.fromtimestamp(int(timestamp) / 1000, tz=UTC)
    if abs((now - sent).total_seconds()) > max_skew_s:
        return "timestamp outside the allowed skew"
    expected = expected_auth_sign(api_key, api_id, str(got["nonce"]), timestamp)
    if not hmac.compare_digest(expected, str(got["sign"]).lower()):
        return "sign does not match"
    return None


def auth_from_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The four ``authinfo`` values from request headers (names case-insensitive), if any is there."""
    lowered = {k.lower(): v for k, v in headers.items()}
    found = {name: lowered.get(name.lower(), "") for name in AUTH_FIELDS}
    return found if any(found.values()) else None


def callback_sign(body: bytes, secret: str) -> str:
    return _hmac_hex(secret, body)
