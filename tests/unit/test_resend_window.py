"""The resend window (docs/decisions.md#resend-ledger) and the ledger's keys, without AWS."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import date, datetime

import pytest

from verifyfeed.clock import Blackout
from verifyfeed.logic.ledger import file_fingerprint, key_fingerprint, ledger_key, window_start
from verifyfeed.logic.repair_batches import NATIVE, PySeenKeys
from verifyfeed.models.ledger import LedgerEntry
from verifyfeed.pii import Keyed


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "first_day"),
    [
        ("2026-12-15T12:00:00+08:00", date(2026, 11, 27)),  # dropped 27-30 Nov were sent in December
        ("2026-12-01T00:00:00+08:00", date(2026, 11, 27)),
        ("2026-12-26T23:59:59+08:00", date(2026, 11, 27)),
        ("2026-12-28T09:00:00+08:00", date(2026, 11, 27)),  # in the blackout: December's still counts
        ("2027-01-02T09:00:00+08:00", date(2026, 12, 27)),
        ("2026-12-31T16:30:00+00:00", date(2026, 12, 27)),  # UTC evening = 1 January 00:30 China time
        ("2027-03-10T09:00:00+08:00", date(2027, 2, 27)),
    ],
)
def test_the_monthly_cycle_starts_on_the_previous_blackout_day(now: str, first_day: date) -> None:
    assert window_start("month", at(now), Blackout(27, 1)) == first_day


def test_a_blackout_day_missing_from_a_month_starts_the_cycle_on_the_first() -> None:
    # a blackout from the 31st: November has none, so December's cycle starts on 1 December
    assert window_start("month", at("2026-12-10T09:00:00+08:00"), Blackout(31, 1)) == date(2026, 12, 1)


def test_a_late_resume_day_still_counts_the_whole_previous_cycle() -> None:
    # blackout 27 Nov - 3 Dec: on 2 December the cycle that is still to be sent began on 27 October
    assert window_start("month", at("2026-12-02T09:00:00+08:00"), Blackout(27, 3)) == date(2026, 10, 27)
    assert window_start("month", at("2026-12-04T09:00:00+08:00"), Blackout(27, 3)) == date(2026, 11, 27)


def test_n_days_and_off() -> None:
    now = at("2026-12-10T01:00:00+08:00")
    assert window_start("1d", now, Blackout()) == date(2026, 12, 10)
    assert window_start("30d", now, Blackout()) == date(2026, 11, 11)
    assert window_start("off", now, Blackout()) is None


def test_ledger_keys_are_hmacs_of_the_idcode_digest_in_c_and_python() -> None:
    key = ledger_key(Keyed(current=b"pepper"))
    assert key == hmac.digest(b"pepper", b"verifyfeed resend ledger v1", "sha256")
    tables = [PySeenKeys(hmac_key=key)]
    if NATIVE:
        from verifyfeed import _fastsplit

        tables.append(_fastsplit.SeenKeys(False, key))
    for _ in range(200):
        digest = os.urandom(32)
        expected = hmac.new(key, digest, hashlib.sha256).digest()[:16]
        assert [t.key(digest) for t in tables] == [expected] * len(tables)
        assert expected != digest[:16]
    assert PySeenKeys().key(b"d" * 32) == b"d" * 16  # unkeyed (no ledger): the digest's first bytes


def test_export_groups_the_file_rows_by_batch_and_leaves_the_ledger_out() -> None:
    tables = [PySeenKeys(hmac_key=b"k")]
    if NATIVE:
        from verifyfeed import _fastsplit

        tables.append(_fastsplit.SeenKeys(False, b"k"))
    results = []
    for table in tables:
        table.mark_many(b"L" * 16 + b"M" * 16, 1 << 40)  # prior uploads: never exported
        for row in (1, 2, 4, 5, 9, 12):  # rows 3, 6-8, 10-11 were rejected
            table.mark(bytes([row]) * 16, row)
        keys, counts = table.export([4, 9, 12], 1 << 40)
        assert counts == [3, 2, 1]
        groups = [keys[:48], keys[48:80], keys[80:]]
        results.append([sorted(g[i : i + 16][0] for i in range(0, len(g), 16)) for g in groups])
    assert results[0] == [[1, 2, 4], [5, 9], [12]]
    assert all(r == results[0] for r in results)


def test_a_ledger_object_round_trips_and_refuses_a_truncated_body() -> None:
    entry = LedgerEntry("job", key_fingerprint(b"k"), ((1, 2), (3, 1)), b"a" * 16 + b"b" * 16 + b"c" * 16)
    again = LedgerEntry.decode(entry.encode())
    assert again == entry
    assert list(again.batch_keys()) == [(1, b"a" * 16 + b"b" * 16), (3, b"c" * 16)]
    with pytest.raises(ValueError, match="truncated"):
        LedgerEntry.decode(entry.encode()[:-1])


def test_file_fingerprints_are_keyed_and_ignore_etag_quotes() -> None:
    assert file_fingerprint(b"k", '"abc"', 10) == file_fingerprint(b"k", "abc", 10)
    assert file_fingerprint(b"k", "abc", 10) != file_fingerprint(b"other", "abc", 10)
    assert file_fingerprint(b"k", "abc", 10) != file_fingerprint(b"k", "abc", 11)
