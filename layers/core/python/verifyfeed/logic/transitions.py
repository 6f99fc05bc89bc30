"""Apply an audit result (from the callback or from ``/carrierAudit/get``): one function for both.

``pending → passed | rejected`` only. The same result again is a successful no-op; a result
that disagrees with a state already decided, or arrives for an audit that moved on (e.g. was
re-submitted), is refused and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from verifyfeed.models.carrier_audit import UpstreamAuditStatus
from verifyfeed.models.records import AuditStatus
from verifyfeed.ports import Services


class TransitionOutcome(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"  # replay of a result we already hold
    STILL_PENDING = "still_pending"  # upstream says 0: nothing to do
    CONFLICT = "conflict"  # the audit is in a state this result cannot move
    UNKNOWN_RECORD = "unknown_record"


_DECIDED = {
    UpstreamAuditStatus.PASSED: AuditStatus.PASSED,
    UpstreamAuditStatus.REJECTED: AuditStatus.REJECTED,
}


def apply_audit_result(
    services: Services,
    record_id: int,
    status: UpstreamAuditStatus,
    remarks: str | None,
    body_digest: str | None = None,
) -> TransitionOutcome:
    """Two DynamoDB calls when the result applies: the record item, then the conditional write."""
    audits = services.audits
    audit_key = audits.key_for_record(record_id)
    if audit_key is None:
        return TransitionOutcome.UNKNOWN_RECORD
    if status == UpstreamAuditStatus.PENDING:
        audit = audits.get(audit_key)
        if audit is None or audit.record_id != record_id:
            return TransitionOutcome.UNKNOWN_RECORD
        return TransitionOutcome.STILL_PENDING
    target = _DECIDED[status]
    applied, audit = audits.decide_record(
        audit_key, record_id, target, (remarks or "")[:2000], services.clock.now(), body_digest
    )
    if applied:
        return TransitionOutcome.APPLIED
    if audit is None or audit.record_id != record_id:
        return TransitionOutcome.UNKNOWN_RECORD
    if audit.status == target:
        return TransitionOutcome.ALREADY_APPLIED
    return TransitionOutcome.CONFLICT
