"""Submitting audits (add/update) is guarded like a charged batch: a submit lease on the record,
so redelivery, concurrency and a worker that died mid-call never create a second upstream audit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import SettingsFactory, drain_queue
from tests.integration.test_splitter import AUDIT_HEADER, audit_row, csv_bytes, put, split
from verifyfeed.clock import FixedClock
from verifyfeed.logic.uploader import Delivery, RetryLater, submit_audit
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import AuditStatus, JobStatus
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration
_n = iter(range(5000, 10**6, 10))


def queued_audit(services: Services, **over: str) -> CarrierAuditMessage:
    key = f"carrier-audit/submit-{uuid.uuid4().hex[:6]}.csv"
    result = split(
        services, put(services, key, csv_bytes([audit_row("2", next(_n), **over)], header=AUDIT_HEADER))
    )
    [message] = [
        CarrierAuditMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    return message


def adds(sandbox: SandboxHandle) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add" and e.accepted])


def status(services: Services, message: CarrierAuditMessage) -> AuditStatus:
    audit = services.audits.get(message.audit_key)
    assert audit is not None
    return audit.status


def test_redelivery_after_success_adds_nothing(services: Services, sandbox: SandboxHandle) -> None:
    message = queued_audit(services)
    assert submit_audit(services, message, Delivery()) == "pending"
    assert submit_audit(services, message, Delivery(receive_count=2)) == "pending"
    assert adds(sandbox) == 1


def test_transient_error_releases_the_lease_and_retries(services: Services, sandbox: SandboxHandle) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "status_code": 429, "count": 1})
    with pytest.raises(RetryLater):
        submit_audit(services, message, Delivery())
    audit = services.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.SUBMITTING and audit.lease_until == ""
    assert submit_audit(services, message, Delivery(receive_count=2)) == "pending"
    assert adds(sandbox) == 1


@pytest.mark.parametrize("phase", ["before", "after"])
def test_a_5xx_on_add_is_held_a_second_add_would_be_a_second_audit(
    services: Services, sandbox: SandboxHandle, phase: str
) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "status_code": 502, "phase": phase, "count": 1})
    assert submit_audit(services, message, Delivery()) == "unknown"
    assert submit_audit(services, message, Delivery(receive_count=2)) == "unknown"
    assert adds(sandbox) == (1 if phase == "after" else 0)
    assert len([e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add"]) == 1


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirected_add_is_not_followed_and_fails_without_an_audit_upstream(
    services: Services, sandbox: SandboxHandle, status: int
) -> None:
    """A followed 307/308 would re-send the add, ID and phone numbers in clear, to the Location."""
    message = queued_audit(services)
    moved = sandbox.url + "/carrierAudit/add?moved=1"
    sandbox.set_faults({"endpoint": "audit_add", "redirect_to": moved, "status_code": status, "count": 1})
    assert submit_audit(services, message, Delivery()) == "failed"
    assert submit_audit(services, message, Delivery(receive_count=2)) == "failed"
    (entry,) = [e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add"]
    assert (entry.http_status, entry.processed) == (status, False)
    assert sandbox.audits() == []
    audit = services.audits.get(message.audit_key)
    assert audit is not None and f"HTTP {status} redirect to {moved}, not followed" in audit.last_error


def test_add_answering_the_id_as_a_string_is_pending(services: Services, sandbox: SandboxHandle) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "answer": "data_as_string", "count": 1})
    assert submit_audit(services, message, Delivery()) == "pending"
    audit = services.audits.get(message.audit_key)
    (record,) = [a for a in sandbox.audits() if a.id == (audit.record_id if audit else None)]
    assert audit is not None and audit.record_id == record.id


def test_lost_answer_is_unknown_and_not_resent(services: Services, sandbox: SandboxHandle) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "reset": True, "phase": "after", "count": 1})
    assert submit_audit(services, message, Delivery()) == "unknown"
    assert submit_audit(services, message, Delivery(receive_count=2)) == "unknown"
    assert adds(sandbox) == 1  # upstream did create it once; we did not create a second
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


def test_worker_that_died_mid_call_is_held_not_resent(
    services: Services, sandbox: SandboxHandle, clock: FixedClock
) -> None:
    message = queued_audit(services)
    audit = services.audits.get(message.audit_key)
    assert audit is not None
    services.audits.take_lease(audit, clock.now(), clock.now() + timedelta(seconds=60))
    with pytest.raises(RetryLater, match="lease"):
        submit_audit(services, message, Delivery(receive_count=2))
    clock.move_to(clock.now() + timedelta(seconds=61))
    assert submit_audit(services, message, Delivery(receive_count=3)) == "unknown"
    assert adds(sandbox) == 0


def test_refused_by_upstream_fails_with_the_reason(services: Services, sandbox: SandboxHandle) -> None:
    message = queued_audit(services)
    broken = message.model_copy(update={"params": message.params.model_copy(update={"phone": "12345"})})
    assert submit_audit(services, broken, Delivery()) == "failed"
    audit = services.audits.get(message.audit_key)
    assert audit is not None and audit.last_error.startswith("upstream code 10002")
    assert adds(sandbox) == 0


def test_update_answering_false_is_flagged_not_pending(services: Services, sandbox: SandboxHandle) -> None:
    """``/update`` answers ``data: true`` when it updated; ``false`` means it did not."""
    message = queued_audit(services)
    update = message.model_copy(update={"update_record_id": 4242})
    sandbox.set_faults({"endpoint": "audit_update", "answer": "update_false", "count": 1})
    assert submit_audit(services, update, Delivery()) == "failed"
    audit = services.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.FAILED
    assert "not updated" in audit.last_error


def test_a_503_with_retry_after_is_retried_after_that_delay(
    services: Services, sandbox: SandboxHandle
) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "status_code": 503, "retry_after": "300", "count": 1})
    with pytest.raises(RetryLater) as raised:
        submit_audit(services, message, Delivery())
    assert raised.value.delay_s == 300
    assert status(services, message) == AuditStatus.SUBMITTING
    assert submit_audit(services, message, Delivery(receive_count=2)) == "pending"
    assert adds(sandbox) == 1


# ---- the last delivery settles the audit (SQS dead-letters the message after it) ---------------------

LAST = Delivery(receive_count=8, max_receive_count=8)


def test_the_last_delivery_fails_an_audit_still_refused_by_429(
    services: Services, sandbox: SandboxHandle
) -> None:
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "status_code": 429})
    assert submit_audit(services, message, LAST) == "failed"
    assert adds(sandbox) == 0


def test_the_last_delivery_holds_an_audit_another_worker_is_submitting(
    services: Services, sandbox: SandboxHandle, clock: FixedClock
) -> None:
    message = queued_audit(services)
    audit = services.audits.get(message.audit_key)
    assert audit is not None
    services.audits.take_lease(audit, clock.now(), clock.now() + timedelta(seconds=60))
    assert submit_audit(services, message, LAST) == "unknown"
    held = services.audits.get(message.audit_key)
    assert held is not None and held.status == AuditStatus.UNKNOWN and "lease" in held.last_error
    assert sandbox.ledger() == []
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


def test_the_last_delivery_under_the_resend_policy_holds_a_lost_add(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(UNKNOWN_OUTCOME_POLICY="resend"), clock)
    message = queued_audit(services)
    sandbox.set_faults({"endpoint": "audit_add", "reset": True, "phase": "after", "count": 1})
    assert submit_audit(services, message, LAST) == "unknown"
    assert adds(sandbox) == 1  # the add went through: a second one would be a second audit
