"""Apply an audit result (from the callback or from ``/carrierAudit/get``): one function for both.

``pending → passed | rejected`` only. The same result again is a successful no-op; a result
that disagrees with a state already decided, or arrives for an audit that moved on (e.g. was
re-submitted), is refused and changes nothing. A callback names no cycle of its record: its
"rejected" decides only an audit's first cycle (docs/decisions.md#callback-replay).
"""

from __future__ import annotations

from enum import StrEnum

from verifyfeed.models.carrier_audit import UpstreamAuditStatus
from verifyfeed.models.records import Audit, AuditStatus
from verifyfeed.ports import Services


class TransitionOutcome(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"  # replay of a result we already hold
    STILL_PENDING = "still_pending"  # upstream says 0: nothing to do
    # a callback's "rejected" for a re-submitted audit, which may be a retry of an earlier cycle's:
    UNCONFIRMED = "unconfirmed"  # pending: the poller confirms it with /carrierAudit/get
    EARLIER_CYCLE = "earlier_cycle"  # passed since: it is an earlier cycle's
    CONFLICT = "conflict"  # the audit is in a state this result cannot move
    UNKNOWN_RECORD = "unknown_record"


FIRST_CYCLE = 1

_DECIDED = {
    UpstreamAuditStatus.PASSED: AuditStatus.PASSED,
    UpstreamAuditStatus.REJECTED: AuditStatus.REJECTED,
}


def apply_audit_result(
    services: Services,
    record_id: int,
    status: UpstreamAuditStatus,
    remarks: str | None,
    *,
    cycle: int | None = None,
) -> TransitionOutcome:
    """Two DynamoDB calls when the result applies: the record item, then the conditional write.

    ``cycle``: the audit's cycle the result is known to be of (the poller's: the audit as it read it
    before asking /carrierAudit/get). ``None``, a callback's: a "rejected" then applies only in the
    first cycle; a "passed" in any, since every earlier cycle ended rejected.
    """
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
    only_in = cycle if cycle is not None or target == AuditStatus.PASSED else FIRST_CYCLE
    applied, audit = audits.decide_record(
        audit_key, record_id, target, (remarks or "")[:2000], services.clock.now(), only_in
    )
    if applied:
        return TransitionOutcome.APPLIED
    return _not_applied(record_id, target, audit, from_callback=cycle is None)


def _not_applied(
    record_id: int, target: AuditStatus, audit: Audit | None, *, from_callback: bool
) -> TransitionOutcome:
    """Why a result did not apply, from the audit as the refused write found it."""
    if audit is None or audit.record_id != record_id:
        return TransitionOutcome.UNKNOWN_RECORD
    if audit.status == target:
        return TransitionOutcome.ALREADY_APPLIED
    if from_callback and target == AuditStatus.REJECTED:
        if audit.status == AuditStatus.PENDING and audit.cycle != FIRST_CYCLE:
            return TransitionOutcome.UNCONFIRMED
        if audit.status == AuditStatus.PASSED and audit.cycle > FIRST_CYCLE:
            return TransitionOutcome.EARLIER_CYCLE
    return TransitionOutcome.CONFLICT
