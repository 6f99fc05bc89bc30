"""Split a dropped file into upstream work: one S3 object version is one job; the file is read by
its kind's room (``lost_repair_split``, ``audit_intake``), and nothing leaves until the whole file
has been read and validated (docs/decisions.md#all-or-nothing). Every row ends accepted or rejected
with a catalogued reason in the job's reports (``logic/reports.py``)."""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger

from verifyfeed.clock import china_time
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, open_rows
from verifyfeed.logic.audit_intake import CarrierAuditIntake
from verifyfeed.logic.ledger import LedgerConflict
from verifyfeed.logic.lost_repair_split import LostRepairSplit
from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.repair_batches import NATIVE
from verifyfeed.logic.reports import (
    NO_HEADER,
    RejectionLog,
    job_report_key,
    write_header_facts,
    write_rows_facts,
    write_summary,
)
from verifyfeed.logic.split_context import (
    DroppedObject,
    FileSplit,
    Intake,
    SplitOutcome,
    SplitResult,
    is_dry_run,
    is_resend,
    kind_for_key,
)
from verifyfeed.logic.staging import release_batches
from verifyfeed.models.ids import iso
from verifyfeed.models.records import REOPENABLE_JOB_STATUSES, Job, JobCounts, JobKind, JobStatus
from verifyfeed.pii import mask_object_key
from verifyfeed.ports import LedgerBusy, Services, SplitSuperseded
from verifyfeed.reasons import Reason, reason

__all__ = [
    "DroppedObject",
    "SplitOutcome",
    "SplitResult",
    "is_dry_run",
    "is_resend",
    "kind_for_key",
    "split_object",
]

logger = Logger(child=True)

_LEDGER_ATTEMPTS = 3


def split_object(services: Services, dropped: DroppedObject) -> SplitResult:
    """The job of ``dropped``, created or resumed, split by one run; the same event again finds it
    done. A run taken over by another run of the same event stops (``SplitSuperseded``)."""
    kind = kind_for_key(dropped.key, services)
    job_id = dropped.job_id
    log_extra = {"job_id": job_id, "key": mask_object_key(dropped.key)}
    if kind is None:
        logger.info("object outside the ingest prefixes ignored", extra=log_extra)
        return SplitResult(job_id, SplitOutcome.IGNORED, JobCounts())
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
        report_key=job_report_key(services.settings.reports_prefix, dropped.key, job_id),
    )
    resuming = False
    if not services.jobs.create_job(job):
        existing = services.jobs.get_job(job_id)
        if existing is not None and existing.status != JobStatus.SPLITTING:
            return _split_done(services, existing)
        logger.info("resuming an interrupted split", extra=log_extra)
        resuming = True
        job = existing or job  # its report_key says where its reports go (a job written before has none)

    for attempt in range(1, _LEDGER_ATTEMPTS + 1):
        rejections = RejectionLog(kind)
        try:
            run = services.jobs.take_split(job_id)
            if run is None:  # another run finished the split meanwhile
                raise SplitSuperseded(job_id)
            return _split(FileSplit.begin(services, dropped, job, run, resuming, rejections))
        except LedgerConflict:  # an overlapping file committed first: read this one again
            logger.info("splitting again after a ledger conflict", extra={**log_extra, "attempt": attempt})
            resuming = True
        except SplitSuperseded:  # the same event reached another invocation, which finishes the job
            logger.info("another run of this split took it over; this one stops", extra=log_extra)
            return SplitResult(job_id, SplitOutcome.SUPERSEDED, JobCounts())
        finally:
            rejections.close()
    raise LedgerBusy(f"{_LEDGER_ATTEMPTS} overlapping splits in a row committed first; the event is retried")


def _split_done(services: Services, job: Job) -> SplitResult:
    """A release that was interrupted is finished (what the last run staged is queued); else this
    is the same event again."""
    log_extra = {"job_id": job.job_id, "key": mask_object_key(job.key), "status": job.status.value}
    if job.kind == JobKind.LOST_REPAIR and job.status in REOPENABLE_JOB_STATUSES and not job.released_at:
        logger.info("resuming an interrupted release", extra=log_extra)
        first = release_batches(services, job, job.split_run)
        return SplitResult(job.job_id, SplitOutcome.RELEASED, job.counts(), record_metrics=first)
    logger.info("duplicate S3 event: job exists", extra=log_extra)
    return SplitResult(job.job_id, SplitOutcome.DUPLICATE, job.counts())


def _intake(split: FileSplit) -> Intake:
    return LostRepairSplit(split) if split.job.kind == JobKind.LOST_REPAIR else CarrierAuditIntake(split)


def _split(split: FileSplit) -> SplitResult:
    """Read the file through its room; reject it whole, report a dry run, or submit and release."""
    intake = _intake(split)
    same = intake.identical_to()
    if same is not None:
        return _duplicate_file(split, same)
    header: dict[str, object] = NO_HEADER
    try:
        rows = _open(split)
        split.rejections.use_header(rows.header)
        header = rows.header.facts()
        # before the job can settle, whose report copies them (logic/reports.py)
        write_header_facts(split.services.blobs, split.bucket, split.paths.header, header)
        counts = intake.read(rows)
        read_facts = rows.facts()
        if read_facts != header:  # summary rows skipped as the rows were read: noted beside the titles
            header = read_facts
            write_header_facts(split.services.blobs, split.bucket, split.paths.header, header)
    except FileRejected as exc:
        return _reject_file(split, intake, exc, header)
    except BaseException:
        intake.abandon()  # no staging write goes on after this invocation has failed
        raise
    if split.dry_run:
        return _finish_dry_run(split, intake, counts, header)
    return _finish(split, intake, counts, header)


def _open(split: FileSplit) -> RowSource:
    """The file's rows, after the checks that need no row read (``FileRejected``)."""
    dropped, settings = split.dropped, split.services.settings
    if dropped.key.endswith("/"):
        raise FileRejected("file.folder")
    if dropped.size == 0:
        raise FileRejected("file.empty")
    if dropped.size > settings.max_file_bytes:
        raise FileRejected("file.too_large", size=f"{dropped.size:,}", max=f"{settings.max_file_bytes:,}")
    stream = split.services.blobs.open(dropped.bucket, dropped.key, dropped.version_id or None)
    rows = open_rows(stream, dropped.filename, split.job.kind, sheet=settings.xlsx_sheet)
    _check_sheet_rows(rows, split)
    return rows


def _check_sheet_rows(rows: RowSource, split: FileSplit) -> None:
    """A workbook's sheet spanning more rows below its header than the file may have is refused
    before its first row is read (a CSV file is counted as it is read)."""
    if rows.sheet_rows is None:
        return
    settings = split.services.settings
    if split.job.kind == JobKind.LOST_REPAIR:
        setting, cap = "MAX_ROWS_PER_FILE", settings.max_rows_per_file
    else:
        setting, cap = "MAX_AUDIT_ROWS_PER_FILE", settings.max_audit_rows_per_file
    if rows.sheet_rows - rows.header.row > cap:
        rows.close()
        raise FileRejected("file.too_many_rows", setting=setting, max=f"{cap:,}")


def _finish(split: FileSplit, intake: Intake, counts: JobCounts, header: dict[str, object]) -> SplitResult:
    services, job_id = split.services, split.job_id
    counts = intake.submit(counts)
    split.rejections.upload(services.blobs, split.bucket, split.paths)
    # before the job can settle, whose report copies them
    write_rows_facts(services.blobs, split.bucket, split.paths, split.rejections.facts())
    services.jobs.finish_split(job_id, counts, services.clock.now(), split.run)
    first = intake.release()
    settle_job(services, job_id)
    logger.info(
        "file split",
        extra={
            **split.log_extra,
            **counts.model_dump(),
            "rejected_by_code": split.rejections.by_code,
            "header_row": header["header_row"],
            "ignored_columns": header["ignored_columns"],  # column labels, never cell values
            "fast_path": "c" if NATIVE else "python",  # the C extension is in the layer or not
        },
    )
    return SplitResult(job_id, SplitOutcome.SPLIT, counts, record_metrics=first)


def _reject_file(
    split: FileSplit, intake: Intake, exc: FileRejected, header: dict[str, object]
) -> SplitResult:
    """The file is refused as a whole: what was staged is discarded, nothing is sent."""
    services, job_id, paths = split.services, split.job_id, split.paths
    discarded = intake.discard()
    services.jobs.reject_job(job_id, exc.reason, JobCounts(), services.clock.now(), run=split.run)
    split.rejections.upload(services.blobs, split.bucket, paths)
    if header is NO_HEADER:  # status reads them: "rejected before its header was read"
        write_header_facts(services.blobs, split.bucket, paths.header, header)
    nothing_sent = {
        **paths.files(split.job.kind),
        "sent_upstream": 0,  # all or nothing: no row of a rejected file is sent, nothing charged
        "batches_staged_then_discarded": discarded,
    }
    _summarise(split, nothing_sent, header, split.rejections.facts(), exc.why)
    logger.warning(
        "file rejected; nothing sent",
        extra={**split.log_extra, "reason": exc.reason, "reason_code": exc.code, "discarded": discarded},
    )
    return SplitResult(job_id, SplitOutcome.REJECTED, JobCounts(), record_metrics=True)


def _finish_dry_run(
    split: FileSplit, intake: Intake, counts: JobCounts, header: dict[str, object]
) -> SplitResult:
    """Report what a real drop of this file would do and cost; the job ends ``dry_run``."""
    services, job = split.services, split.job
    settings = services.settings
    plan = intake.plan(counts)
    split.rejections.upload(services.blobs, split.bucket, split.paths)
    now = services.clock.now()
    services.jobs.finish_split(job.job_id, plan.counts, now, split.run)
    services.jobs.set_job_status(job.job_id, JobStatus.DRY_RUN, {JobStatus.UPLOADING}, now)
    cost: dict[str, object] | None = None
    if settings.price_per_record is not None and job.kind == JobKind.LOST_REPAIR:
        cost = {
            "price_per_record": settings.price_per_record,
            "currency": settings.price_currency,
            "amount": round(plan.records_charged * settings.price_per_record, 2),
        }
    extra: dict[str, object] = {
        **split.paths.files(job.kind),
        "dry_run": True,
        "sent_upstream": 0,
        "would_send": plan.would_send,
        "cost_if_all_accepted": cost,
    }
    _summarise(split, extra, header, split.rejections.facts())
    logger.info(
        "dry run: nothing sent", extra={**split.log_extra, **plan.counts.model_dump(), **plan.would_send}
    )
    return SplitResult(job.job_id, SplitOutcome.DRY_RUN, plan.counts)


def _duplicate_file(split: FileSplit, same: Job) -> SplitResult:
    """The file is identical to one split within the resend window: not read, nothing sent."""
    services, job_id = split.services, split.job_id
    day = china_time(datetime.fromisoformat(same.created_at)).date().isoformat()
    why = reason(
        "file.identical",
        file=same.key.rsplit("/", 1)[-1],
        date=day,
        job=same.job_id,
        prefix=services.settings.resend_prefix,
    )
    services.jobs.reject_job(
        job_id, why.en, JobCounts(), services.clock.now(), status=JobStatus.DUPLICATE, run=split.run
    )
    extra = {"identical_to": {"job_id": same.job_id, "key": same.key, "split_on": day}, "sent_upstream": 0}
    _summarise(split, extra, NO_HEADER, refused=why)
    logger.warning("identical file: nothing sent", extra={**split.log_extra, "identical_to": same.job_id})
    return SplitResult(job_id, SplitOutcome.DUPLICATE_FILE, JobCounts())


def _summarise(
    split: FileSplit,
    extra: dict[str, object],
    header: dict[str, object],
    rows: dict[str, object] | None = None,
    refused: Reason | None = None,
) -> None:
    """The summary of a job that ended at the split (rejected, dry run, identical file), from its
    record as now written; the job then names it."""
    services = split.services
    job = services.jobs.get_job(split.job_id)
    assert job is not None
    write_summary(services.blobs, split.bucket, split.paths, job, extra, header, rows, refused)
    services.jobs.set_report_key(split.job_id, split.paths.summary)
