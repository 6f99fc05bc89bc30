"""Submit one carrier audit (``/carrierAudit/add`` or ``/update``); the answer's record id moves it
to pending. Guarded like a batch, by a submit lease: a second add would be a second audit upstream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field, TypeAdapter

from verifyfeed.config import UnknownOutcomePolicy
from verifyfeed.logic.delivery import Delivery, LeaseHeld, LeaseLapsed, RetryLater, read_lease, retry_delay
from verifyfeed.logic.progress import settle_job
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus
from verifyfeed.models.wire import WireInt
from verifyfeed.ports import Services, StaleAudit
from verifyfeed.upstream.client import Answered, CallOutcome, HttpError, Unknown

logger = Logger(child=True)
metrics = Metrics()


def submit_audit(services: Services, message: CarrierAuditMessage, delivery: Delivery) -> str:
    """Submit the audit unless it was already; returns the status it left the audit in (or "stale")."""
    audits = services.audits
    settings = services.settings
    log = {"job_id": message.job_id, "row": message.row}  # not the audit key: a digest of the ID number
    audit = audits.get(message.audit_key)
    if audit is None or audit.status != AuditStatus.SUBMITTING or audit.job_id != message.job_id:
        logger.info("audit no longer awaiting submission; redelivery ignored", extra=log)
        return audit.status.value if audit else "missing"
    now = services.clock.now()
    try:
        if audit.lease_until:
            policy = settings.unknown_outcome_policy
            match read_lease(datetime.fromisoformat(audit.lease_until), now, delivery, policy):
                case LeaseHeld(last_delivery=True):
                    error = "another worker holds the submit lease on the message's last delivery"
                    return _settle_audit(services, audit, AuditStatus.UNKNOWN, error=error)
                case LeaseHeld(wait_s=wait_s):
                    raise RetryLater("another worker holds the submit lease", wait_s)
                case LeaseLapsed():
                    error = "a submit attempt ended without a recorded answer"
                    return _settle_audit(services, audit, AuditStatus.UNKNOWN, error=error)
        audit = audits.take_lease(audit, now, now + timedelta(seconds=settings.send_lease_seconds))
        if message.update_record_id is not None:
            outcome = services.upstream.audit_update(message.update_record_id, message.params)
        else:
            outcome = services.upstream.audit_add(message.params)
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=outcome.elapsed_ms)
        settle = on_answer(outcome, message.update_record_id, delivery, settings.unknown_outcome_policy)
        if settle is not None:
            if settle.to == AuditStatus.PENDING:
                logger.info("audit submitted", extra={**log, "record_id": settle.record_id})
            return _settle_audit(services, audit, settle.to, record_id=settle.record_id, error=settle.error)
        audits.release_lease(audit, services.clock.now())
    except StaleAudit:
        logger.info("audit moved meanwhile; nothing to do", extra=log)
        return "stale"
    assert not isinstance(outcome, Answered)  # an answer always settles
    raise RetryLater(outcome.reason, retry_delay(settings, outcome, delivery.receive_count))


@dataclass(frozen=True)
class SettleAudit:
    """The submission ends: ``pending`` under ``record_id``, ``failed`` (no audit upstream) or
    ``unknown`` (an audit may exist upstream: held for an operator)."""

    to: AuditStatus
    error: str = ""
    record_id: int | None = None


def on_answer(
    outcome: CallOutcome, update_record_id: int | None, delivery: Delivery, policy: UnknownOutcomePolicy
) -> SettleAudit | None:
    """What the answer to an add (or an update of ``update_record_id``) decides; ``None``: nothing
    took effect, the lease is released and the message retried. Pure: no I/O, no clock."""
    if isinstance(outcome, Answered):
        response = outcome.response
        if not response.ok:
            return SettleAudit(AuditStatus.FAILED, f"upstream code {response.code}: {response.message}"[:500])
        if update_record_id is not None and response.data is not True:
            # /update answers data true when it updated; false (or anything else): it did not
            error = f"update answered data {str(response.data)[:20]}: not updated"
            return SettleAudit(AuditStatus.FAILED, error)
        record_id = update_record_id if update_record_id is not None else _record_id(response.data)
        if record_id is None:  # a success code but no readable id: an audit may exist upstream
            return SettleAudit(AuditStatus.UNKNOWN, "add answered without a readable record id")
        return SettleAudit(AuditStatus.PENDING, record_id=record_id)
    if isinstance(outcome, Unknown) and (policy == UnknownOutcomePolicy.HOLD or delivery.last):
        # under the resend policy too once no delivery is left: an audit may exist upstream
        return SettleAudit(AuditStatus.UNKNOWN, outcome.reason)
    if (isinstance(outcome, HttpError) and not outcome.retryable) or delivery.last:
        return SettleAudit(AuditStatus.FAILED, f"{outcome.reason}; gave up")
    return None


_RECORD_ID: TypeAdapter[int] = TypeAdapter(Annotated[WireInt, Field(ge=1)])


def _record_id(data: object) -> int | None:
    """``/add``'s ``data``: the record id, a ``long`` (read as a number or a numeric string)."""
    try:
        return _RECORD_ID.validate_python(data)
    except ValueError:
        return None


def _settle_audit(
    services: Services, audit: Audit, to: AuditStatus, *, record_id: int | None = None, error: str = ""
) -> str:
    services.audits.settle_submission(audit, to, services.clock.now(), record_id=record_id, error=error)
    settle_job(services, audit.job_id)
    return to.value
