"""Our own records in DynamoDB.

Jobs table (single table): a job item (``pk=JOB#<job_id>``, ``sk=JOB``) and one item per batch
(``sk=BATCH#<seq>``). Audits table: one item per audit (``pk=AUDIT#<audit_key>``), with
indexes by upstream record id and by status. No item holds a plaintext ID or phone number.

The job and batch models build their validators on first use (``defer_build``): the callback
imports this module for ``Audit`` and never reads a job or a batch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field


class JobKind(StrEnum):
    LOST_REPAIR = "lost-repair"
    CARRIER_AUDIT = "carrier-audit"


class JobStatus(StrEnum):
    SPLITTING = "splitting"  # the splitter is reading the file
    UPLOADING = "uploading"  # batches are queued / being sent
    DEFERRED = "deferred"  # every unsettled batch waits for the blackout to end
    COMPLETED = "completed"  # every batch settled, all succeeded
    COMPLETED_WITH_ERRORS = "completed_with_errors"  # settled, some failed or unknown
    REJECTED = "rejected"  # the file as a whole was refused (header, encoding, size)
    DRY_RUN = "dry_run"  # read, validated and reported like a real drop; nothing sent, nothing staged
    DUPLICATE = "duplicate"  # identical to a file split within the resend window: not read, nothing sent


# the job statuses an operator's re-drive (of a batch or an audit) may take back to ``uploading``:
# the file has been split, and its job is open or settled
REOPENABLE_JOB_STATUSES = (
    JobStatus.UPLOADING,
    JobStatus.DEFERRED,
    JobStatus.COMPLETED,
    JobStatus.COMPLETED_WITH_ERRORS,
)

# a job nothing more happens to without the blackout's end or an operator
SETTLED_JOB_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.COMPLETED_WITH_ERRORS,
        JobStatus.REJECTED,
        JobStatus.DEFERRED,
        JobStatus.DRY_RUN,
        JobStatus.DUPLICATE,
    }
)
# settled statuses whose summary report is written right after the status (logic/progress.py)
REPORTED_JOB_STATUSES = SETTLED_JOB_STATUSES - {JobStatus.DEFERRED}


class BatchStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # a worker holds the send lease
    RETRY = "retry"  # a transient failure; SQS will redeliver
    DEFERRED = "deferred"  # blackout; the poller re-drives it
    SUCCEEDED = "succeeded"  # state "1": charged
    FAILED = "failed"  # state "0" too often, or retries exhausted
    UNKNOWN = "unknown"  # the request may have reached upstream; held for an operator
    STAGED = "staged"  # body in S3, no message yet: released once the whole file has been read
    DISCARDED = "discarded"  # staged, then its file was rejected: never sent
    # state "0" for a batch of more than one record (docs/decisions.md#state-0): answered, not
    # charged, waiting for the other batches of its generation before it is split or failed
    REFUSED = "refused"
    BISECTED = "bisected"  # refused, then split in two child batches that carry its records on

    @property
    def settled(self) -> bool:
        return self in (
            BatchStatus.SUCCEEDED,
            BatchStatus.FAILED,
            BatchStatus.UNKNOWN,
            BatchStatus.DISCARDED,
            BatchStatus.BISECTED,
        )


class AuditStatus(StrEnum):
    SUBMITTING = "submitting"  # queued for add/update
    PENDING = "pending"  # upstream status 0
    PASSED = "passed"  # upstream status 1
    REJECTED = "rejected"  # upstream status 2
    FAILED = "failed"  # add/update refused by upstream
    UNKNOWN = "unknown"  # add/update answer lost; held for an operator


# an audit still on its way: being submitted, or awaiting the upstream's decision
OPEN_AUDIT_STATUSES = (AuditStatus.SUBMITTING, AuditStatus.PENDING)


class Redrive(BaseModel):
    """An operator's re-drive of a batch, or re-submission of an audit (``verifyfeed redrive``)."""

    at: str  # when (ISO)
    by: str  # who: the caller's AWS identity (its ARN), or the local user
    was: str  # the status it was taken from: ``failed`` (never charged) or ``unknown`` (maybe charged)


class JobCounts(BaseModel):
    model_config = ConfigDict(defer_build=True)

    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_already_uploaded: int = 0  # of rows_rejected: sent by an earlier file within the resend window
    batches_total: int = 0
    batches_succeeded: int = 0
    batches_failed: int = 0
    batches_deferred: int = 0
    batches_unknown: int = 0
    batches_bisected: int = 0  # refused and split: their records are counted in their children

    @property
    def batches_settled(self) -> int:
        return self.batches_succeeded + self.batches_failed + self.batches_unknown + self.batches_bisected

    def counts(self) -> JobCounts:
        """The counts alone (of a ``Job``: without its key, bucket, status...)."""
        return JobCounts.model_validate(self.model_dump(include=set(JobCounts.model_fields)))

    @property
    def batches_open(self) -> int:
        """Batches neither settled nor deferred: queued, being sent, or waiting to be retried."""
        return max(0, self.batches_total - self.batches_settled - self.batches_deferred)


class Job(JobCounts):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    job_id: str
    kind: JobKind
    bucket: str
    key: str
    version: str = ""
    status: JobStatus
    reason: str = ""
    created_at: str
    updated_at: str = ""
    report_key: str = ""
    released_at: str = ""  # lost repair: when every staged batch's message had been sent
    split_run: int = 0  # the run of the split that owns it (JobRepository.take_split)
    # batches (or audits) an operator re-drove from ``unknown``: each may have been charged (or
    # created upstream) twice, whatever the job's status says since
    unknown_redrives: int = 0


class Batch(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    job_id: str
    seq: int
    batch_id: str
    status: BatchStatus
    record_count: int
    attempts: int = 0
    state0_count: int = 0
    lease_until: str = ""
    last_error: str = ""
    upstream_code: str = ""
    upstream_desc: str = ""
    serial_no: str = ""
    upstream_envelope: str = ""  # JSON: every top-level scalar of the answer (UnifiedResponse.scalars)
    claim_bucket: str = ""
    claim_key: str = ""
    updated_at: str = ""
    redrives: int = Field(0, description="times an operator re-drove it (verifyfeed redrive)")
    redriven: list[Redrive] = Field(default_factory=list, description="who re-drove it, when, from what")
    # the resend ledger as the split that staged it read it (logic.ledger.LedgerSession.snapshot):
    # a resumed split keeps a staged batch only when it reads the same ledger
    ledger_snapshot: str = ""
    split_run: int = 0  # the run of the split that staged or kept it (JobRepository.take_split)
    # a child of a bisection (docs/decisions.md#state-0): the batch it was split from (0: a batch of
    # the file itself), how many splits down from the file's batch, and, for a one-record batch the
    # upstream refused, which record (its authCode as the rejected-rows report shows it)
    parent_seq: int = 0
    depth: int = 0
    refused_record: str = ""


class BatchFields(TypedDict, total=False):
    """What a transition records on a batch besides its status, lease and counts (``transition``)."""

    last_error: str
    upstream_code: str
    upstream_desc: str
    serial_no: str
    upstream_envelope: str
    claim_bucket: str
    claim_key: str
    refused_record: str


class Audit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audit_key: str
    job_id: str
    row: int
    usage: str
    owner_name_masked: str
    id_card_masked: str
    id_card_digest: str
    phone_masked: str
    plate: str = ""
    status: AuditStatus
    record_id: int | None = None
    remarks: str = ""
    version: int = Field(0, description="bumped on every transition; conditional writes check it")
    lease_until: str = ""  # a worker is calling add/update until then
    submitted_at: str = ""
    updated_at: str = ""
    last_error: str = ""
    polls: int = 0  # /carrierAudit/get calls the poller made for it
    poll_error: str = ""  # why the last one gave no result ("" = it answered "still pending")
    resubmissions: int = Field(0, description="times an operator re-submitted it from unknown")
    redriven: list[Redrive] = Field(default_factory=list, description="who re-submitted it, and when")
    # which submission of its record id the audit awaits or was decided in: 1 after /add, one more
    # each time an /update makes it pending again (0: never pending, or pending before cycles were
    # counted). A callback names no cycle: docs/decisions.md#callback-replay
    cycle: int = 0


class Reservation(StrEnum):
    """What a file row gets for its audit (``AuditRepository.reserve``)."""

    ADD = "add"  # new audit: send /carrierAudit/add
    UPDATE = "update"  # a rejected audit re-dropped: send /carrierAudit/update
    DUPLICATE = "duplicate"  # pending, passed or in flight: refuse the row


def reservation_over(existing: Audit) -> Reservation:
    """A row for an audit already stored: rejected, or failed holding a record (its /update was
    refused: the record is still rejected upstream) → UPDATE of that record; failed or rejected
    without a record → ADD again; pending, passed or in flight → DUPLICATE."""
    if not correctable(existing):
        return Reservation.DUPLICATE
    return Reservation.UPDATE if existing.record_id else Reservation.ADD


def correctable(audit: Audit) -> bool:
    """A row may be sent again for it (docs/decisions.md#audit-correction): rejected upstream, or
    refused when submitted (a failed /add, or a failed /update of a rejected record)."""
    return audit.status in (AuditStatus.REJECTED, AuditStatus.FAILED)


_ROW_FIELDS = (
    "job_id",
    "row",
    "usage",
    "owner_name_masked",
    "id_card_masked",
    "id_card_digest",
    "phone_masked",
    "plate",
)


def resubmitted(row: Audit, submitted_at: str) -> dict[str, Any]:
    """What a re-reserved audit takes from the new row (a correction may change the ID number),
    with its remarks, last error and lease cleared."""
    return {
        **{name: getattr(row, name) for name in _ROW_FIELDS},
        "remarks": "",
        "last_error": "",
        "lease_until": "",
        "submitted_at": submitted_at,
    }


def next_cycle(audit: Audit, to: AuditStatus, record_id: int | None) -> int | None:
    """The cycle a submission's settlement starts, or ``None`` (it starts none): pending under a
    new record id → 1; pending again under the record id the audit holds (an /update) → one more."""
    if to != AuditStatus.PENDING or record_id is None:
        return None
    return max(audit.cycle, 1) + 1 if record_id == audit.record_id else 1


def settlement_counter(to: AuditStatus) -> str:
    """The job counter a submission's settlement moves (an audit counts as a batch of its job)."""
    return {AuditStatus.PENDING: "batches_succeeded", AuditStatus.FAILED: "batches_failed"}.get(
        to, "batches_unknown"
    )
