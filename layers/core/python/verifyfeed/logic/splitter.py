"""Split a dropped file into upstream work.

One S3 object version is one job (``job_id`` derives from bucket, key and version), so the same
event delivered twice finds the job already there and stops; a splitter that died midway is
resumed (batch ids are deterministic and every write is conditional). Every row read ends up
accepted or rejected with a reason in ``reports/<key>.rejected.csv``.

Lost-repair rows are normalised and hashed, deduplicated across the whole file (a later row with
an ``idcode`` or ``authCode`` already seen names the first row), and chunked into batches of at
most ``BATCH_MAX_RECORDS``; a batch whose message would exceed SQS's limit travels as a claim
check (the body in S3, a pointer in the message). Carrier-audit rows are validated and each is
reserved in the audits table, then queued for ``add`` or (a rejected audit re-dropped) ``update``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.streaming import S3Object

from verifyfeed import aws
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, SourceRow, open_rows
from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.repair_batches import NATIVE, RejectRow, RepairBatch, split_repair_rows
from verifyfeed.logic.reports import (
    NO_HEADER,
    RejectionLog,
    header_key,
    report_keys,
    write_header_facts,
    write_summary,
)
from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import (
    Audit,
    AuditStatus,
    Batch,
    BatchStatus,
    Job,
    JobCounts,
    JobKind,
    JobStatus,
)
from verifyfeed.pii import Keyed, mask_id, mask_name, mask_object_key, mask_phone
from verifyfeed.rules.authcode import validate_auth_code
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected, RuleViolation
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.secrets import identity_pepper
from verifyfeed.services import Services
from verifyfeed.store.audits import Reservation
from verifyfeed.store.jobs import batch_id, iso

logger = Logger(child=True)


@dataclass(frozen=True)
class DroppedObject:
    """One ``ObjectCreated`` record of an S3 event, key already URL-decoded."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str = ""
    sequencer: str = ""

    @classmethod
    def from_event_record(cls, record: dict[str, Any]) -> DroppedObject:
        s3 = record["s3"]
        obj = s3["object"]
        return cls(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(obj["key"]),  # S3 events URL-encode keys, spaces as "+"
            size=int(obj.get("size", 0)),
            etag=str(obj.get("eTag", "")),
            version_id=str(obj.get("versionId") or ""),
            sequencer=str(obj.get("sequencer", "")),
        )

    @property
    def job_id(self) -> str:
        identity = self.version_id or self.sequencer or self.etag
        return hashlib.sha256(f"{self.bucket}\n{self.key}\n{identity}".encode()).hexdigest()[:24]

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class SplitResult:
    job_id: str
    outcome: str  # "split", "duplicate", "rejected", "ignored"
    counts: JobCounts


def kind_for_key(key: str, services: Services) -> JobKind | None:
    settings = services.settings
    if key.startswith(settings.lost_repair_prefix):
        return JobKind.LOST_REPAIR
    if key.startswith(settings.carrier_audit_prefix):
        return JobKind.CARRIER_AUDIT
    return None


def split_object(services: Services, dropped: DroppedObject) -> SplitResult:
    kind = kind_for_key(dropped.key, services)
    job_id = dropped.job_id
    log_extra = {"job_id": job_id, "key": mask_object_key(dropped.key)}
    if kind is None:
        logger.info("object outside the ingest prefixes ignored", extra=log_extra)
        return SplitResult(job_id, "ignored", JobCounts())
    now = services.clock.now()
    job = Job(
        job_id=job_id,
        kind=kind,
        bucket=dropped.bucket,
        key=dropped.key,
        version=dropped.version_id,
        status=JobStatus.SPLITTING,
        created_at=iso(now),
        updated_at=iso(now),
    )
    if not services.jobs.create_job(job):
        existing = services.jobs.get_job(job_id)
        if existing is not None and existing.status != JobStatus.SPLITTING:
            logger.info(
                "duplicate S3 event: job exists", extra={**log_extra, "status": existing.status.value}
            )
            return SplitResult(job_id, "duplicate", existing)
        logger.info("resuming an interrupted split", extra=log_extra)

    rejections = RejectionLog()
    try:
        return _split(services, dropped, job, rejections)
    finally:
        rejections.close()


def _split(services: Services, dropped: DroppedObject, job: Job, rejections: RejectionLog) -> SplitResult:
    job_id = job.job_id
    log_extra = {"job_id": job_id, "key": mask_object_key(dropped.key)}
    summary_key, rejected_key = report_keys(services.settings.reports_prefix, dropped.key)
    facts_key = header_key(services.settings.reports_prefix, dropped.key)
    header: dict[str, object] = NO_HEADER
    try:
        if dropped.key.endswith("/"):
            raise FileRejected("the key is a folder placeholder, not a file")
        if dropped.size == 0:
            raise FileRejected("file is empty")
        stream = S3Object(
            bucket=dropped.bucket,
            key=dropped.key,
            version_id=dropped.version_id or None,
            boto3_client=aws.s3(),
        )
        rows = open_rows(stream, dropped.filename, job.kind, sheet=services.settings.xlsx_sheet)
        header = rows.header.facts()
        # before the job can settle, whose report copies them (logic/reports.py)
        write_header_facts(dropped.bucket, facts_key, header)
        if job.kind == JobKind.LOST_REPAIR:
            counts = _split_lost_repair(services, job, rows, rejections)
        else:
            counts = _split_carrier_audits(services, job, rows, rejections)
    except FileRejected as exc:
        counts = JobCounts()
        services.jobs.reject_job(job_id, exc.reason, counts, services.clock.now())
        rejections.upload(dropped.bucket, rejected_key)
        rejected = services.jobs.get_job(job_id)
        assert rejected is not None
        if header is NO_HEADER:  # replaces the facts of an earlier upload of the same key
            write_header_facts(dropped.bucket, facts_key, header)
        write_summary(dropped.bucket, summary_key, rejected, {"rejected_rows_report": rejected_key}, header)
        services.jobs.set_report_key(job_id, summary_key)
        logger.warning("file rejected", extra={**log_extra, "reason": exc.reason})
        return SplitResult(job_id, "rejected", counts)

    rejections.upload(dropped.bucket, rejected_key)
    services.jobs.finish_split(job_id, counts, services.clock.now())
    settle_job(services, job_id)
    logger.info(
        "file split",
        extra={
            **log_extra,
            **counts.model_dump(),
            "rejected_by_rule": rejections.by_rule,
            "header_row": header["header_row"],
            "ignored_columns": header["ignored_columns"],  # column labels, never cell values
            "fast_path": "c" if NATIVE else "python",  # the C extension is in the layer or not
        },
    )
    return SplitResult(job_id, "split", counts)


# ---- lost repair ---------------------------------------------------------------------------


def _masked_repair_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "id_number": mask_id(values.get("id_number")),
        "phone": mask_phone(values.get("used_phone")),
        "auth_code": _report_auth_code(values.get("auth_code")),
    }


def _report_auth_code(raw: object) -> str:
    """A valid authCode is shown as is. Anything else is masked like an ID number: a column
    mix-up puts ID or phone numbers here, and reports never hold those in the clear."""
    try:
        code = validate_auth_code(raw)
    except RuleViolation:
        return mask_id(raw)
    return mask_id(code) if code.isdigit() and len(code) >= 11 else code


def repair_rejects(rejections: RejectionLog) -> RejectRow:
    """The ``reject`` of ``split_repair_rows`` for a job: masked values into the rejected-rows report."""

    def reject(number: int, rule: str, reason: str, values: dict[str, object], first_row: int | None) -> None:
        rejections.add(number, rule, reason, _masked_repair_row(values), first_row)

    return reject


class _BatchSender:
    """The ``emit`` of ``split_repair_rows`` for a job: record the batch (``queued``), then queue
    its message — inline, or as a claim check (the records in S3) when it would not fit."""

    def __init__(self, services: Services, job: Job) -> None:
        self.services = services
        self.job = job

    def __call__(self, batch: RepairBatch) -> None:
        settings = self.services.settings
        job_id = self.job.job_id
        bid = batch_id(job_id, batch.seq)
        encoded = batch.message_body(job_id)
        body = encoded.decode()
        if len(encoded) > settings.message_max_bytes:
            claim_key = f"{settings.claims_prefix}{job_id}/{batch.seq:05d}.json"
            aws.s3().put_object(
                Bucket=self.job.bucket,
                Key=claim_key,
                Body=batch.records_json,
                ContentType="application/json",
            )
            message = LostRepairBatchMessage(
                job_id=job_id, batch_id=bid, seq=batch.seq, claim_bucket=self.job.bucket, claim_key=claim_key
            )
            body = message.model_dump_json(exclude_none=True)
        self.services.jobs.put_batch_if_absent(
            Batch(
                job_id=job_id,
                seq=batch.seq,
                batch_id=bid,
                status=BatchStatus.QUEUED,
                record_count=batch.count,
                updated_at=iso(self.services.clock.now()),
            )
        )
        aws.sqs().send_message(QueueUrl=settings.work_queue_url, MessageBody=body)


def _split_lost_repair(services: Services, job: Job, rows: RowSource, rejections: RejectionLog) -> JobCounts:
    return split_repair_rows(
        rows,
        legacy=services.settings.legacy_id_policy,
        batch_size=services.settings.batch_max_records,
        auth_codes=services.settings.auth_code_uniqueness,
        reject=repair_rejects(rejections),
        emit=_BatchSender(services, job),
    )


# ---- carrier audit -------------------------------------------------------------------------


def audit_keys(
    params: AuditParams, reference: str, pepper: Keyed, *, legacy: bool = False
) -> tuple[str, ...]:
    """The keys an audit may be stored under, the one to write first: its identity (the caller's
    reference, else usage + owner ID + plate or driver ID) digested under the current pepper, then
    under the previous one, then (``legacy``) as the bare SHA-256 audits were keyed by before
    (docs/decisions.md#audit-identity); a new audit is written under the first only."""
    if reference:
        identity = f"ref\n{reference}"
    else:
        subject = params.carLicensePlate or params.driverIdCard or ""
        identity = f"{params.usage}\n{params.idCard}\n{subject}"
    return pepper.candidates(identity) + ((sha256_hex(identity),) if legacy else ())


def _masked_audit_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "id_number": mask_id(values.get("idCard")),
        "phone": mask_phone(values.get("phone")),
    }


def _split_carrier_audits(
    services: Services, job: Job, rows: Iterable[SourceRow], rejections: RejectionLog
) -> JobCounts:
    seen: dict[str, int] = {}
    read = accepted = 0
    pepper = identity_pepper(services.settings)  # once per file: rotation is picked up by the next
    for row in rows:
        read += 1
        if row.problem is not None:
            rejections.add(row.number, "row.unreadable", row.problem, _masked_audit_row(row.values))
            continue
        try:
            params = validate_audit_row(row.values)
        except RowRejected as exc:
            rules = "; ".join(v.rule for v in exc.violations)
            reasons = "; ".join(str(v) for v in exc.violations)
            rejections.add(row.number, rules, reasons, _masked_audit_row(row.values))
            continue
        reference = str(row.values.get("reference") or "").strip()
        key = services.audits.find_key(
            audit_keys(params, reference, pepper, legacy=services.settings.audit_legacy_lookup)
        )
        if key in seen:
            rejections.add(
                row.number,
                "duplicate.audit",
                f"same audit as row {seen[key]}",
                _masked_audit_row(row.values),
                seen[key],
            )
            continue
        seen[key] = row.number
        now = services.clock.now()
        audit = Audit(
            audit_key=key,
            job_id=job.job_id,
            row=row.number,
            usage=params.usage,
            owner_name_masked=mask_name(params.name),
            id_card_masked=mask_id(params.idCard),
            id_card_digest=pepper.digest(params.idCard),
            phone_masked=mask_phone(params.phone),
            plate=params.carLicensePlate or "",
            status=AuditStatus.SUBMITTING,
            updated_at=iso(now),
        )
        reservation, current = services.audits.reserve(audit, now)
        resumed = (
            reservation == Reservation.DUPLICATE
            and current.job_id == job.job_id
            and current.row == row.number
            and current.status == AuditStatus.SUBMITTING
        )
        if reservation == Reservation.DUPLICATE and not resumed:
            rejections.add(
                row.number,
                "duplicate.audit_exists",
                f"an audit for this owner and vehicle is already {current.status.value}",
                _masked_audit_row(row.values),
            )
            continue
        update_id = (
            current.record_id
            if reservation == Reservation.UPDATE or (resumed and current.record_id)
            else None
        )
        message = CarrierAuditMessage(
            job_id=job.job_id, audit_key=key, row=row.number, params=params, update_record_id=update_id
        )
        aws.sqs().send_message(
            QueueUrl=services.settings.work_queue_url, MessageBody=message.model_dump_json()
        )
        accepted += 1
    return JobCounts(
        rows_read=read, rows_accepted=accepted, rows_rejected=read - accepted, batches_total=accepted
    )
