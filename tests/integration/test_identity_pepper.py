"""Stored digests of ID numbers are keyed with the stack's pepper (docs/decisions.md#personal-data).

The pepper secret is the stack's (created from the template in moto, ``{"current", "previous"}``
as while rotating): an audit is written under the current pepper, found under the previous one
(written before the rotation) and, read-only, under the bare SHA-256 audits had before keyed
digests; nothing is ever written under a bare digest.
"""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.integration.conftest import (
    IDENTITY_PEPPER,
    PREVIOUS_IDENTITY_PEPPER,
    SettingsFactory,
    drain_queue,
    fake_id,
)
from tests.integration.test_splitter import AUDIT_HEADER, audit_row, csv_bytes, put, rejected_rows, split
from verifyfeed.clock import FixedClock
from verifyfeed.models.records import Audit, AuditStatus
from verifyfeed.pii import keyed_digest
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration
_n = iter(range(1_600_000, 1_680_000, 10))  # fake_id is distinct below 1.68M; no other test draws here


def identity(n: int) -> str:
    """What ``audit_row("2", n)`` is identified by: usage, owner ID number, plate."""
    return f"2\n{fake_id(n)}\n京A12345"


def drop(services: Services, n: int) -> tuple[str, str]:
    key = f"carrier-audit/pepper-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes([audit_row("2", n)], header=AUDIT_HEADER)))
    drain_queue(services.settings.work_queue_url)
    return key, result.job_id


def test_the_audit_key_and_id_digest_are_keyed_with_the_current_pepper(services: Services) -> None:
    n = next(_n)
    _, job_id = drop(services, n)
    current = keyed_digest(identity(n), IDENTITY_PEPPER.encode())
    audit = services.audits.get(current)
    assert audit is not None and audit.job_id == job_id
    assert audit.id_card_digest == keyed_digest(fake_id(n), IDENTITY_PEPPER.encode())
    assert audit.id_card_digest != sha256_hex(fake_id(n))
    assert services.audits.get(sha256_hex(identity(n))) is None  # no bare digest written
    assert services.audits.get(keyed_digest(identity(n), PREVIOUS_IDENTITY_PEPPER.encode())) is None
    assert audit.id_card_masked == "*" * 14 + fake_id(n)[-4:]  # the last 4, nothing else
    assert audit.phone_masked == "*" * 7 + f"139{n:08d}"[-4:]


def test_an_audit_written_under_the_previous_pepper_is_found_after_the_rotation(
    services: Services, make_settings: SettingsFactory, clock: FixedClock
) -> None:
    n = next(_n)
    # before the rotation: the pepper that is now "previous" was the only one
    before = build_services(
        make_settings(IDENTITY_PEPPER_PARAM="", IDENTITY_PEPPER=PREVIOUS_IDENTITY_PEPPER), clock
    )
    drop(before, n)
    old_key = keyed_digest(identity(n), PREVIOUS_IDENTITY_PEPPER.encode())
    assert services.audits.get(old_key) is not None
    # after: the same audit dropped again is the same audit (a duplicate), not a new one
    key, _ = drop(services, n)
    assert [r["code"] for r in rejected_rows(services, key)] == ["duplicate.audit_exists"]
    assert services.audits.get(keyed_digest(identity(n), IDENTITY_PEPPER.encode())) is None


def test_an_audit_keyed_by_a_bare_sha256_before_the_change_is_found_but_never_written(
    services: Services, make_settings: SettingsFactory, clock: FixedClock
) -> None:
    n = next(_n)
    legacy_key = sha256_hex(identity(n))
    legacy = Audit(
        audit_key=legacy_key,
        job_id="legacy-job",
        row=2,
        usage="2",
        owner_name_masked="张*",
        id_card_masked="110*************" + fake_id(n)[-2:],
        id_card_digest=sha256_hex(fake_id(n)),
        phone_masked="139******00",
        plate="京A12345",
        status=AuditStatus.SUBMITTING,
        updated_at="2026-11-25T02:00:00.000+00:00",
    )
    services.audits.reserve(legacy, clock.now())
    try:
        key, _ = drop(services, n)
        assert [r["code"] for r in rejected_rows(services, key)] == ["duplicate.audit_exists"]
        assert services.audits.get(keyed_digest(identity(n), IDENTITY_PEPPER.encode())) is None
        # with the legacy look-up off (once no legacy audit is left) it is not found: a new audit
        without = build_services(make_settings(AUDIT_LEGACY_LOOKUP="false"), clock)
        key, _ = drop(without, n)
        assert rejected_rows(without, key) == []
        assert without.audits.get(keyed_digest(identity(n), IDENTITY_PEPPER.encode())) is not None
    finally:  # the PII scan (tests/reliability/test_pii.py) must not meet this planted bare digest
        boto3.client("dynamodb").delete_item(
            TableName=services.settings.audits_table, Key={"pk": {"S": f"AUDIT#{legacy_key}"}}
        )
