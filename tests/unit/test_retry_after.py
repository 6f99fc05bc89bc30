"""``Retry-After`` as the upstream client reads it (RFC 9110 §10.2.3): delay-seconds or an HTTP-date,
measured against the client's clock; anything else is no ``Retry-After`` at all (the backoff applies)."""

from __future__ import annotations

from datetime import datetime

import pytest

from verifyfeed.upstream.client import retry_after_seconds

NOW = datetime.fromisoformat("2026-11-25T10:00:00+08:00")  # 02:00:00 GMT


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120),
        ("0", 0),
        (" 30 ", 30),  # surrounding whitespace is not part of the field value
        ("Wed, 25 Nov 2026 02:01:30 GMT", 90),  # IMF-fixdate
        ("Wednesday, 25-Nov-26 02:01:30 GMT", 90),  # obsolete RFC 850 format
        ("Wed Nov 25 02:01:30 2026", 90),  # obsolete asctime format (GMT by definition)
        ("Wed, 25 Nov 2026 02:01:30 +0000", 90),
        ("Wed, 25 Nov 2026 02:00:00 GMT", 0),  # now
        ("Wed, 25 Nov 2026 01:00:00 GMT", 0),  # in the past: at once
        ("Wed, 25 Nov 2026 02:00:00 +0000", 0),
        ("Wed, 25 Nov 2026 02:00:00.5 GMT", None),
        ("", None),
        (None, None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("12 34", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: int | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def test_a_date_a_fraction_of_a_second_ahead_is_a_whole_second() -> None:
    """Rounded up: never earlier than the upstream asked."""
    now = datetime.fromisoformat("2026-11-25T02:01:29.250000+00:00")
    assert retry_after_seconds("Wed, 25 Nov 2026 02:01:30 GMT", now) == 1
