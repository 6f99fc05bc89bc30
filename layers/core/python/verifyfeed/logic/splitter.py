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
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.streaming import S3Object

from verifyfeed import aws
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import SourceRow, open_rows
from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.reports import RejectionLog, report_keys, write_summary
from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.models.lost_repair import RepairRecord
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
from verifyfeed.pii import mask_id, mask_name, mask_phone
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected, RuleViolation
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.rules.lost_repair import normalize_repair_row
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
    log_extra = {"job_id": job_id, "key": dropped.key}
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
    log_extra = {"job_id": job_id, "key": dropped.key}
    summary_key, rejected_key = report_keys(services.settings.reports_prefix, dropped.key)
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
        write_summary(dropped.bucket, summary_key, rejected, {"rejected_rows_report": rejected_key})
        services.jobs.set_report_key(job_id, summary_key)
        logger.warning("file rejected", extra={**log_extra, "reason": exc.reason})
        return SplitResult(job_id, "rejected", counts)

    rejections.upload(dropped.bucket, rejected_key)
    services.jobs.finish_split(job_id, counts, services.clock.now())
    settle_job(services, job_id)
    logger.info(
        "file split", extra={**log_extra, **counts.model_dump(), "rejected_by_rule": rejections.by_rule}
    )
    return SplitResult(job_id, "split", counts)


# ---- lost repair ---------------------------------------------------------------------------


def _masked_repair_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "id_number": mask_id(values.get("id_number")),
        "phone": mask_phone(values.get("used_phone")),
        "auth_code": str(values.get("auth_code") or "")[:32],
    }


class _BatchSender:
    def __init__(self, services: Services, job: Job) -> None:
        self.services = services
        self.job = job
        self.seq = 0
        self.records: list[RepairRecord] = []
        self.encoded_bytes = 0

    def add(self, record: RepairRecord) -> None:
        self.records.append(record)
        if len(self.records) >= self.services.settings.batch_max_records:
            self.flush()

    def flush(self) -> None:
        if not self.records:
            return
        self.seq += 1
        settings = self.services.settings
        bid = batch_id(self.job.job_id, self.seq)
        message = LostRepairBatchMessage(
            job_id=self.job.job_id, batch_id=bid, seq=self.seq, records=self.records
        )
        body = message.model_dump_json(exclude_none=True)
        if len(body.encode()) > settings.message_max_bytes:
            # claim check: the batch body goes to S3, the message carries a pointer
            claim_key = f"{settings.claims_prefix}{self.job.job_id}/{self.seq:05d}.json"
            aws.s3().put_object(
                Bucket=self.job.bucket,
                Key=claim_key,
                Body=json.dumps([r.model_dump() for r in self.records], ensure_ascii=False).encode(),
                ContentType="application/json",
            )
            message = LostRepairBatchMessage(
                job_id=self.job.job_id,
                batch_id=bid,
                seq=self.seq,
                claim_bucket=self.job.bucket,
                claim_key=claim_key,
            )
            body = message.model_dump_json(exclude_none=True)
        self.services.jobs.put_batch_if_absent(
            Batch(
                job_id=self.job.job_id,
                seq=self.seq,
                batch_id=bid,
                status=BatchStatus.QUEUED,
                record_count=len(self.records),
                updated_at=iso(self.services.clock.now()),
            )
        )
        aws.sqs().send_message(QueueUrl=settings.work_queue_url, MessageBody=body)
        self.records = []


def _split_lost_repair(
    services: Services, job: Job, rows: Iterable[SourceRow], rejections: RejectionLog
) -> JobCounts:
    legacy = services.settings.legacy_id_policy
    seen_id: dict[str, int] = {}
    seen_auth: dict[str, int] = {}
    sender = _BatchSender(services, job)
    read = accepted = 0
    for row in rows:
        read += 1
        if row.problem is not None:
            rejections.add(row.number, "row.unreadable", row.problem, _masked_repair_row(row.values))
            continue
        try:
            record = normalize_repair_row(row.values, legacy)
        except RuleViolation as exc:
            rejections.add(row.number, exc.rule, exc.message, _masked_repair_row(row.values))
            continue
        first = seen_id.get(record.idcode)
        if first is not None:
            rejections.add(
                row.number,
                "duplicate.id_number",
                f"same ID number as row {first}",
                _masked_repair_row(row.values),
                first,
            )
            continue
        first = seen_auth.get(record.authCode)
        if first is not None:
            rejections.add(
                row.number,
                "duplicate.auth_code",
                f"same authCode as row {first}",
                _masked_repair_row(row.values),
                first,
            )
            continue
        seen_id[record.idcode] = row.number
        seen_auth[record.authCode] = row.number
        sender.add(record)
        accepted += 1
    sender.flush()
    return JobCounts(
        rows_read=read, rows_accepted=accepted, rows_rejected=read - accepted, batches_total=sender.seq
    )


# ---- carrier audit -------------------------------------------------------------------------


def audit_key_for(params: AuditParams, reference: str) -> str:
    """The identity of an audit: the caller's reference, else usage + owner ID + plate or driver ID."""
    if reference:
        return sha256_hex(f"ref\n{reference}")
    subject = params.carLicensePlate or params.driverIdCard or ""
    return sha256_hex(f"{params.usage}\n{params.idCard}\n{subject}")


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
        key = audit_key_for(params, reference)
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
            id_card_digest=sha256_hex(params.idCard),
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
