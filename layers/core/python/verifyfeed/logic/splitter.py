"""Split a dropped file into upstream work.

One S3 object version is one job (``job_id`` derives from bucket, key and version), so the same
event delivered twice finds the job already there and stops; a splitter that died midway is
resumed (batch ids are deterministic and every write is conditional). Every row read ends up
accepted or rejected with a catalogued reason in the job's own reports (``logic/reports.py``:
``reports/<key>/<job id>.rejected.csv`` and beside it).

**A file is all or nothing** (docs/decisions.md#all-or-nothing): nothing is sent upstream until
the whole file has been read and validated, so a file rejected midway (a damaged workbook, a
decoding error, a cap exceeded) charges nothing.

Lost-repair rows are normalised and hashed, deduplicated across the whole file (a later row with
an ``idcode`` or ``authCode`` already seen names the first row), and chunked into batches of at
most ``BATCH_MAX_RECORDS``. Each batch is *staged* while the file is read — its records in S3
(``claims/<job>/<seq>.r<run>.json``, written by a few threads while parsing goes on), its record
``staged`` — and *released* (its message queued, ten per ``SendMessageBatch``) once the file has
been read to the end. A file rejected after some batches were staged discards them (records
``discarded``, claims deleted). The same event may reach two invocations: each *run* of the split
takes the job over (``JobRepository.take_split``), and a run taken over writes nothing more — it
stages, keeps, discards, records, finishes and rejects nothing (docs/decisions.md#all-or-nothing).
Carrier-audit rows are validated in a first pass; only a file read to the end has its audits
reserved in the audits table and queued for ``add`` or (a rejected audit re-dropped) ``update``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from verifyfeed.clock import china_time
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, SourceRow, open_rows
from verifyfeed.logic.ledger import (
    NEVER_SENT_JOBS,
    LedgerConflict,
    LedgerSession,
    file_fingerprint,
    ledger_key,
    window_start,
)
from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.repair_batches import NATIVE, RejectRow, RepairBatch, split_repair_rows
from verifyfeed.logic.reports import (
    NO_HEADER,
    RejectionLog,
    ReportPaths,
    job_report_key,
    write_header_facts,
    write_rows_facts,
    write_summary,
)
from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.models.ids import TREE_BASE, batch_id, claim_key, iso
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import (
    REOPENABLE_JOB_STATUSES,
    Audit,
    AuditStatus,
    Batch,
    BatchStatus,
    Job,
    JobCounts,
    JobKind,
    JobStatus,
    Reservation,
    correctable,
)
from verifyfeed.pii import Keyed, mask_id, mask_name, mask_object_key, mask_phone
from verifyfeed.ports import BlobError, LedgerBusy, Services, SplitSuperseded
from verifyfeed.reasons import Reason, reason
from verifyfeed.rules.authcode import validate_auth_code
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected, RuleViolation
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.threads import submit

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
    # "split", "released" (an interrupted release finished), "duplicate", "superseded" (another run
    # took the split over), "rejected", "duplicate_file", "dry_run", "ignored"
    outcome: str
    counts: JobCounts
    # this run recorded the file's outcome (split and released it, or rejected it): its rows are
    # counted in the metrics once, whichever of two runs of one split got there
    record_metrics: bool = False


def is_dry_run(key: str, services: Services) -> bool:
    prefix = services.settings.dry_run_prefix
    return bool(prefix) and key.startswith(prefix)


def kind_for_key(key: str, services: Services) -> JobKind | None:
    settings = services.settings
    if is_dry_run(key, services):
        key = key.removeprefix(settings.dry_run_prefix)
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
            return _split(services, dropped, job, rejections, resuming)
        except LedgerConflict:  # an overlapping file committed first: read this one again
            logger.info("splitting again after a ledger conflict", extra={**log_extra, "attempt": attempt})
            resuming = True
        except SplitSuperseded:  # the same event reached another invocation, which finishes the job
            logger.info("another run of this split took it over; this one stops", extra=log_extra)
            return SplitResult(job_id, "superseded", JobCounts())
        finally:
            rejections.close()
    raise LedgerBusy(f"{_LEDGER_ATTEMPTS} overlapping splits in a row committed first; the event is retried")


def _split_done(services: Services, job: Job) -> SplitResult:
    """The file has been split (or refused) already: a release that was interrupted is finished —
    what the last run staged and is still ``staged`` is queued — else it is the same event again."""
    log_extra = {"job_id": job.job_id, "key": mask_object_key(job.key), "status": job.status.value}
    if job.kind == JobKind.LOST_REPAIR and job.status in REOPENABLE_JOB_STATUSES and not job.released_at:
        logger.info("resuming an interrupted release", extra=log_extra)
        first = release_batches(services, job, job.split_run)
        return SplitResult(job.job_id, "released", job.counts(), record_metrics=first)
    logger.info("duplicate S3 event: job exists", extra=log_extra)
    return SplitResult(job.job_id, "duplicate", job.counts())


_LEDGER_ATTEMPTS = 3


def is_resend(key: str, services: Services) -> bool:
    """A file under RESEND_PREFIX: the operator's override of the resend ledger."""
    prefix = services.settings.resend_prefix
    return bool(prefix) and key.startswith(prefix)


def _ledger_session(
    services: Services, job: Job, run: int, dry_run: bool, resend: bool
) -> LedgerSession | None:
    """The resend ledger for a lost-repair split's ``run``, None when RESEND_WINDOW is off."""
    settings = services.settings
    now = services.clock.now()
    first_day = window_start(settings.resend_window, now, services.blackout)
    if first_day is None or job.kind != JobKind.LOST_REPAIR:
        return None
    return LedgerSession(
        store=services.ledger,
        jobs=services.jobs,
        key=ledger_key(services.secrets.identity_pepper()),
        job=job,
        first_day=first_day,
        today=china_time(now).date(),
        blobs=services.blobs,
        bucket=settings.ingest_bucket,
        prior=not resend,
        write=not dry_run,
        lookback_days=settings.resend_lookback_days,
        run=run,
        owner_check=lambda: _still_owns(services, job.job_id, run),
    )


def _still_owns(services: Services, job_id: str, run: int) -> None:
    """SplitSuperseded unless ``run`` still owns the split (the ledger asks under its lock)."""
    job = services.jobs.get_job(job_id)
    if job is None or job.status != JobStatus.SPLITTING or job.split_run != run:
        raise SplitSuperseded(job_id)


def _identical_split(services: Services, dropped: DroppedObject, ledger: LedgerSession) -> Job | None:
    """The job that split a file with this one's content within the window (S3 ETag and size)."""
    if not dropped.etag:
        return None
    found = services.ledger.fingerprint(file_fingerprint(ledger.key, dropped.etag, dropped.size))
    if found is None or found.get("job_id") in (None, ledger.job.job_id):
        return None
    other = services.jobs.get_job(str(found["job_id"]))
    if other is None or other.status in NEVER_SENT_JOBS:
        return None
    if str(found.get("day", "")) >= ledger.first_day.isoformat():
        return other
    # split before the window: the same file only if that split charged or held within it
    if not ledger.may_count(other) or not ledger.live_roots(other.job_id)[0]:
        return None
    return other


def _split(
    services: Services, dropped: DroppedObject, job: Job, rejections: RejectionLog, resuming: bool
) -> SplitResult:
    job_id = job.job_id
    run = services.jobs.take_split(job_id)
    if run is None:  # another run finished the split meanwhile
        raise SplitSuperseded(job_id)
    log_extra = {"job_id": job_id, "key": mask_object_key(dropped.key), "split_run": run}
    paths = ReportPaths.for_job(job, services.settings.reports_prefix)
    header: dict[str, object] = NO_HEADER
    dry_run = is_dry_run(dropped.key, services)
    ledger = _ledger_session(services, job, run, dry_run, is_resend(dropped.key, services))
    if ledger is not None and ledger.prior and not dry_run:
        same = _identical_split(services, dropped, ledger)
        if same is not None:
            return _duplicate_file(services, dropped, job, run, same, paths)
    stager = _DryRunCounter(services) if dry_run else _BatchStager(services, job, run, resuming, ledger)
    settings = services.settings
    try:
        if dropped.key.endswith("/"):
            raise FileRejected("file.folder")
        if dropped.size == 0:
            raise FileRejected("file.empty")
        if dropped.size > settings.max_file_bytes:
            raise FileRejected("file.too_large", size=f"{dropped.size:,}", max=f"{settings.max_file_bytes:,}")
        stream = services.blobs.open(dropped.bucket, dropped.key, dropped.version_id or None)
        rows = open_rows(stream, dropped.filename, job.kind, sheet=services.settings.xlsx_sheet)
        _check_sheet_rows(rows, job.kind, settings)
        rejections.use_header(rows.header)
        header = rows.header.facts()
        # before the job can settle, whose report copies them (logic/reports.py)
        write_header_facts(services.blobs, dropped.bucket, paths.header, header)
        if job.kind == JobKind.LOST_REPAIR:
            counts = _split_lost_repair(services, job, rows, rejections, stager, ledger)
            stager.wait()  # every staged body and record written: the file is read and validated
            stager.drop_leftovers()
            audits: list[CarrierAuditMessage] = []
        else:
            counts, audits = _validate_carrier_audits(services, job, rows, rejections)
        read_facts = rows.facts()
        if read_facts != header:  # summary rows skipped as the rows were read: noted beside the titles
            header = read_facts
            write_header_facts(services.blobs, dropped.bucket, paths.header, header)
    except FileRejected as exc:
        discarded = stager.discard()
        counts = JobCounts()
        services.jobs.reject_job(job_id, exc.reason, counts, services.clock.now(), run=run)
        rejections.upload(services.blobs, dropped.bucket, paths)
        rejected = services.jobs.get_job(job_id)
        assert rejected is not None
        if header is NO_HEADER:  # status reads them: "rejected before its header was read"
            write_header_facts(services.blobs, dropped.bucket, paths.header, header)
        nothing_sent = {
            **paths.files(job.kind),
            "sent_upstream": 0,  # all or nothing: no row of a rejected file is sent, nothing charged
            "batches_staged_then_discarded": discarded,
        }
        write_summary(
            services.blobs, dropped.bucket, paths, rejected, nothing_sent, header, rejections.facts(), exc.why
        )
        services.jobs.set_report_key(job_id, paths.summary)
        logger.warning(
            "file rejected; nothing sent",
            extra={**log_extra, "reason": exc.reason, "reason_code": exc.code, "discarded": discarded},
        )
        return SplitResult(job_id, "rejected", counts, record_metrics=True)
    except BaseException:
        stager.abandon()  # no staging write goes on after this invocation has failed
        raise

    if dry_run:
        return _finish_dry_run(services, dropped, job, run, counts, audits, stager, rejections, header, paths)
    if ledger is not None:
        _commit_ledger(services, dropped, ledger, stager)
    if job.kind == JobKind.CARRIER_AUDIT:  # the whole file is valid as a file: reserve and queue
        counts = _submit_carrier_audits(services, job, counts, audits, rejections)
    rejections.upload(services.blobs, dropped.bucket, paths)
    # before the job can settle, whose report copies them
    write_rows_facts(services.blobs, dropped.bucket, paths, rejections.facts())
    services.jobs.finish_split(job_id, counts, services.clock.now(), run)
    first = release_batches(services, job, run) if job.kind == JobKind.LOST_REPAIR else True
    settle_job(services, job_id)
    logger.info(
        "file split",
        extra={
            **log_extra,
            **counts.model_dump(),
            "rejected_by_code": rejections.by_code,
            "header_row": header["header_row"],
            "ignored_columns": header["ignored_columns"],  # column labels, never cell values
            "fast_path": "c" if NATIVE else "python",  # the C extension is in the layer or not
        },
    )
    return SplitResult(job_id, "split", counts, record_metrics=first)


def _check_sheet_rows(rows: RowSource, kind: JobKind, settings: Any) -> None:
    """A workbook's sheet spanning more rows below its header than the file may have is refused
    before its first row is read (a CSV file is counted as it is read)."""
    if rows.sheet_rows is None:
        return
    if kind == JobKind.LOST_REPAIR:
        setting, cap = "MAX_ROWS_PER_FILE", settings.max_rows_per_file
    else:
        setting, cap = "MAX_AUDIT_ROWS_PER_FILE", settings.max_audit_rows_per_file
    if rows.sheet_rows - rows.header.row > cap:
        rows.close()
        raise FileRejected("file.too_many_rows", setting=setting, max=f"{cap:,}")


# ---- lost repair ---------------------------------------------------------------------------


def _masked_repair_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "id_number": mask_id(values.get("id_number")),
        "used_phone": mask_phone(values.get("used_phone")),
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

    def reject(number: int, why: Reason, values: dict[str, object], first_row: int | None) -> None:
        rejections.add(number, why, _masked_repair_row(values), first_row)

    return reject


class _BatchStager:
    """The ``emit`` of ``split_repair_rows`` for a run of a job's split: stage each batch — its
    records in S3, its record ``staged`` — on a few threads while the parsing goes on. Nothing is
    sent from here.

    A body is named after the run (``claims/<job>/<seq>.r<run>.json``): a run taken over whose write
    was still in flight never overwrites the body of a batch a later run released. A resumed split
    (the job was still ``splitting``: nothing was released) keeps the batches an earlier run staged
    from the same resend ledger (``Batch.ledger_snapshot``), which then carry this run, and stages
    the others again — the ledger moved since, and with it what each batch holds — then discards the
    earlier runs' batches beyond its own (``drop_leftovers``). Every write is fenced by the run
    (``JobRepository``): one refused means a later run took the split over, ``SplitSuperseded``.
    """

    # each staging is two round trips (the body to S3, the record to DynamoDB): in AWS tens of
    # milliseconds, so four threads could not keep up with the row loop (docs/performance.md)
    THREADS = 16

    def __init__(
        self, services: Services, job: Job, run: int, resuming: bool, ledger: LedgerSession | None = None
    ) -> None:
        self.services = services
        self.job = job
        self.run = run
        self.resuming = resuming
        self.ledger = ledger
        self.staged: list[int] = []  # seqs staged (or kept) by this run
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._rows = 0

    def claim_key(self, seq: int) -> str:
        return claim_key(self.services.settings.claims_prefix, self.job.job_id, seq, self.run)

    def _count(self, batch: RepairBatch) -> None:
        """The batch's accepted rows against MAX_ROWS_PER_FILE (checked as the file is read)."""
        self._rows += batch.count
        cap = self.services.settings.max_rows_per_file
        if self._rows > cap:
            raise FileRejected("file.too_many_rows", setting="MAX_ROWS_PER_FILE", max=f"{cap:,}")

    def __call__(self, batch: RepairBatch) -> None:
        self._count(batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="stage")
        still: list[Future[None]] = []
        for future in self._pending:
            if future.done():
                future.result()  # a failed staging write stops the split here
            else:
                still.append(future)
        while len(still) > 2 * self.THREADS:  # bounded memory: parsing waits for the writers
            still.pop(0).result()
        self._pending = still
        self.staged.append(batch.seq)
        self._pending.append(submit(self._pool, self._stage, batch))

    def _stage(self, batch: RepairBatch) -> None:
        jobs = self.services.jobs
        job_id = self.job.job_id
        snapshot = self.ledger.snapshot if self.ledger is not None else ""
        existing = jobs.get_batch(job_id, batch.seq) if self.resuming else None
        if (
            existing is not None
            and existing.status == BatchStatus.STAGED
            and existing.ledger_snapshot == snapshot
            and existing.record_count == batch.count
            and jobs.keep_staged(existing, self.run)
        ):
            return  # staged by an earlier run from the same ledger: the same records, this run's now
        key = self.claim_key(batch.seq)
        self.services.blobs.put(self.job.bucket, key, batch.records_json)
        staged = Batch(
            job_id=job_id,
            seq=batch.seq,
            batch_id=batch_id(job_id, batch.seq),
            status=BatchStatus.STAGED,
            record_count=batch.count,
            claim_bucket=self.job.bucket,
            claim_key=key,
            updated_at=iso(self.services.clock.now()),
            ledger_snapshot=snapshot,
            split_run=self.run,
        )
        if not jobs.stage_batch(staged):  # a later run staged or kept it: this one was taken over
            self._delete_quietly([key])
            raise SplitSuperseded(job_id)
        if existing is not None and existing.claim_key not in ("", key):
            self._delete_quietly([existing.claim_key])  # the earlier run's body, read by no record now

    def _delete_quietly(self, keys: list[str]) -> None:
        """Bodies no record names: deleted now, else left to the claims/ lifecycle rule."""
        try:
            self.services.blobs.delete_many(self.job.bucket, keys)
        except BlobError as exc:
            logger.warning(
                "staged bodies no batch names were not deleted; the lifecycle rule will",
                extra={"job_id": self.job.job_id, "error": type(exc).__name__},
            )

    def wait(self) -> None:
        """Every staging write done (the first error, if any, raised here)."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def abandon(self) -> None:
        """The split failed: let the writes in flight finish (or fail) before the error leaves, so
        none lands after the invocation has ended (a thawed sandbox would run it in the next one)."""
        pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(Exception):  # the split's own error is the one that matters
                future.result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def drop_leftovers(self) -> int:
        """A resumed split: discard the staged batches of earlier runs that this run did not stage
        again (it made fewer: more of its rows were found in the ledger)."""
        if not self.resuming:
            return 0
        mine = set(self.staged)
        return self._discard({b.seq for b in self.services.jobs.batches(self.job.job_id)} - mine)

    def discard(self) -> int:
        """The file was rejected: this run's staged batches become ``discarded``, their bodies are
        deleted. A batch a later run staged or kept is not this run's to discard."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - a staging write failed too; discard what was written
            logger.warning("a staging write failed while the file was being rejected")
        return self._discard(set(self.staged))

    def _discard(self, seqs: set[int]) -> int:
        now = self.services.clock.now()
        jobs = self.services.jobs
        staged = {b.seq: b.claim_key for b in jobs.batches(self.job.job_id) if b.status == BatchStatus.STAGED}
        discarded = [
            s for s in sorted(seqs & staged.keys()) if jobs.discard_staged(self.job.job_id, s, now, self.run)
        ]
        self.services.blobs.delete_many(self.job.bucket, [staged[s] for s in discarded if staged[s]])
        return len(discarded)


class _DryRunCounter(_BatchStager):
    """The ``emit`` of a dry run: counts the batches and records a real drop would send, writes
    nothing (no body in S3, no batch record) and sends nothing."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.staged = []
        self.records = 0
        self._rows = 0

    def __call__(self, batch: RepairBatch) -> None:
        self._count(batch)
        self.staged.append(batch.seq)
        self.records += batch.count

    def wait(self) -> None:
        return None

    def discard(self) -> int:
        return 0

    def drop_leftovers(self) -> int:
        return 0

    def abandon(self) -> None:
        return None


def _finish_dry_run(
    services: Services,
    dropped: DroppedObject,
    job: Job,
    run: int,
    counts: JobCounts,
    audits: list[CarrierAuditMessage],
    stager: _BatchStager,
    rejections: RejectionLog,
    header: dict[str, object],
    paths: ReportPaths,
) -> SplitResult:
    """Report what a real drop of this file would do and cost; the job ends ``dry_run``."""
    settings = services.settings
    if job.kind == JobKind.LOST_REPAIR:
        assert isinstance(stager, _DryRunCounter)
        would = {"batches": len(stager.staged), "records_charged_if_accepted": stager.records}
        charged = stager.records
    else:
        counts = JobCounts(
            rows_read=counts.rows_read,
            rows_accepted=len(audits),
            rows_rejected=counts.rows_read - len(audits),
            batches_total=len(audits),
        )
        would = {"audits_submitted": len(audits)}
        charged = 0  # the carrier-audit seed states no price
    rejections.upload(services.blobs, dropped.bucket, paths)
    now = services.clock.now()
    services.jobs.finish_split(job.job_id, counts, now, run)
    services.jobs.set_job_status(job.job_id, JobStatus.DRY_RUN, {JobStatus.UPLOADING}, now)
    done = services.jobs.get_job(job.job_id)
    assert done is not None
    cost: dict[str, object] | None = None
    if settings.price_per_record is not None and job.kind == JobKind.LOST_REPAIR:
        cost = {
            "price_per_record": settings.price_per_record,
            "currency": settings.price_currency,
            "amount": round(charged * settings.price_per_record, 2),
        }
    extra: dict[str, object] = {
        **paths.files(job.kind),
        "dry_run": True,
        "sent_upstream": 0,
        "would_send": would,
        "cost_if_all_accepted": cost,
    }
    write_summary(services.blobs, dropped.bucket, paths, done, extra, header, rejections.facts())
    services.jobs.set_report_key(job.job_id, paths.summary)
    logger.info(
        "dry run: nothing sent",
        extra={"job_id": job.job_id, "key": mask_object_key(dropped.key), **counts.model_dump(), **would},
    )
    return SplitResult(job.job_id, "dry_run", counts)


def release_batches(services: Services, job: Job, run: int) -> bool:
    """Queue the message of every batch of the file that ``run`` staged or kept and that is still
    ``staged`` (``SendMessageBatch``, ten at a time), then mark the job released: True when this
    call marked it. Two runs may release one job (one finishing the split, one finishing what looks
    like an interrupted release): a message queued twice is harmless, the uploader's send lease and
    its "already settled" check make a second delivery a no-op."""
    bodies = [
        LostRepairBatchMessage(
            job_id=job.job_id,
            batch_id=batch.batch_id,
            seq=batch.seq,
            claim_bucket=batch.claim_bucket or job.bucket,
            claim_key=batch.claim_key,
        ).model_dump_json(exclude_none=True)
        for batch in services.jobs.batches(job.job_id)
        if batch.status == BatchStatus.STAGED and batch.split_run == run and batch.seq < TREE_BASE
    ]
    services.queue.send_all(bodies)
    return services.jobs.mark_released(job.job_id, services.clock.now())


def _split_lost_repair(
    services: Services,
    job: Job,
    rows: RowSource,
    rejections: RejectionLog,
    stager: _BatchStager,
    ledger: LedgerSession | None,
) -> JobCounts:
    return split_repair_rows(
        rows,
        legacy=services.settings.legacy_id_policy,
        batch_size=services.settings.batch_max_records,
        auth_codes=services.settings.auth_code_uniqueness,
        reject=repair_rejects(rejections),
        emit=stager,
        ledger=ledger,
    )


def _commit_ledger(
    services: Services, dropped: DroppedObject, ledger: LedgerSession, stager: _BatchStager
) -> None:
    """Record the file's records in the resend ledger before any is released; when an overlapping
    split recorded some first (or held the lock too long), discard what was staged: nothing of this
    file has left, and the split starts over (or the event is retried)."""
    try:
        ledger.commit(services.clock.now(), services.settings.ledger_lock_seconds)
    except (LedgerConflict, LedgerBusy):
        stager.discard()
        raise
    if dropped.etag:
        fingerprint = file_fingerprint(ledger.key, dropped.etag, dropped.size)
        services.ledger.record_fingerprint(fingerprint, ledger.job.job_id, ledger.today)


def _duplicate_file(
    services: Services, dropped: DroppedObject, job: Job, run: int, same: Job, paths: ReportPaths
) -> SplitResult:
    """The file is identical to one split within the resend window: not read, nothing sent."""
    day = china_time(datetime.fromisoformat(same.created_at)).date().isoformat()
    why = reason(
        "file.identical",
        file=same.key.rsplit("/", 1)[-1],
        date=day,
        job=same.job_id,
        prefix=services.settings.resend_prefix,
    )
    now = services.clock.now()
    services.jobs.reject_job(job.job_id, why.en, JobCounts(), now, status=JobStatus.DUPLICATE, run=run)
    done = services.jobs.get_job(job.job_id)
    assert done is not None
    extra = {"identical_to": {"job_id": same.job_id, "key": same.key, "split_on": day}, "sent_upstream": 0}
    write_summary(services.blobs, dropped.bucket, paths, done, extra, NO_HEADER, refused=why)
    services.jobs.set_report_key(job.job_id, paths.summary)
    logger.warning(
        "identical file: nothing sent",
        extra={"job_id": job.job_id, "key": mask_object_key(dropped.key), "identical_to": same.job_id},
    )
    return SplitResult(job.job_id, "duplicate_file", JobCounts())


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
        "idCard": mask_id(values.get("idCard")),
        "phone": mask_phone(values.get("phone")),
    }


def _validate_carrier_audits(
    services: Services, job: Job, rows: Iterable[SourceRow], rejections: RejectionLog
) -> tuple[JobCounts, list[CarrierAuditMessage]]:
    """The first pass: every row validated and deduplicated within the file, nothing written
    upstream or to the audits table (a file rejected midway leaves no trace but its report).

    The rows are read first; then the audits table is asked, for all of them at once (100 keys a
    request: ``AuditStore.find_keys``), which key each identity is stored under; then the rows
    are taken in order, the rejections written in row order as before."""
    cap = services.settings.max_audit_rows_per_file
    rejected: list[tuple[int, Reason | list[Reason], dict[str, str]]] = []
    checked: list[tuple[SourceRow, AuditParams, str, tuple[str, ...]]] = []
    order: list[tuple[bool, int]] = []  # (a valid row?, its index in checked or rejected), row order
    read = 0
    pepper = services.secrets.identity_pepper()  # once per file: rotation is picked up by the next

    def reject(number: int, why: Reason | list[Reason], values: dict[str, object]) -> None:
        order.append((False, len(rejected)))
        rejected.append((number, why, _masked_audit_row(values)))

    def settle() -> list[CarrierAuditMessage]:
        keys = services.audits.find_keys([candidates for *_, candidates in checked])
        seen: dict[str, int] = {}
        valid: list[CarrierAuditMessage] = []
        for is_valid, index in order:
            if not is_valid:
                rejections.add(*rejected[index])
                continue
            row, params, explicit, _ = checked[index]
            key = keys[index]
            if key in seen:
                masked = _masked_audit_row(row.values)
                rejections.add(row.number, reason("duplicate.audit", first_row=seen[key]), masked, seen[key])
                continue
            seen[key] = row.number
            valid.append(
                CarrierAuditMessage(
                    job_id=job.job_id,
                    audit_key=key,
                    row=row.number,
                    params=params,
                    update_record_id=int(explicit) if explicit else None,
                )
            )
        return valid

    try:
        for row in rows:
            read += 1
            if read > cap:
                raise FileRejected("file.too_many_rows", setting="MAX_AUDIT_ROWS_PER_FILE", max=f"{cap:,}")
            if row.problem is not None:
                reject(row.number, reason("row.unreadable", problem=row.problem), row.values)
                continue
            try:
                params = validate_audit_row(row.values)
            except RowRejected as exc:
                reject(row.number, [v.reason() for v in exc.violations], row.values)
                continue
            explicit = str(row.values.get("recordId") or "").strip()
            # a correction of the rejected audit with this record id (decisions.md#audit-correction)
            if explicit:
                if not (explicit.isascii() and explicit.isdigit() and int(explicit) > 0):
                    reject(row.number, reason("record_id.value", column="recordId"), row.values)
                    continue
                candidates: tuple[str, ...] = (f"record:{int(explicit)}",)  # resolved in the second pass
            else:
                reference = str(row.values.get("reference") or "").strip()
                candidates = audit_keys(
                    params, reference, pepper, legacy=services.settings.audit_legacy_lookup
                )
            order.append((True, len(checked)))
            checked.append((row, params, explicit, candidates))
    except FileRejected:
        settle()  # the report of a rejected file lists the rows rejected before it stopped, as before
        raise
    return JobCounts(rows_read=read), settle()


def _correction_target(services: Services, job: Job, message: CarrierAuditMessage) -> Reason | Audit:
    """The audit a row with a record id corrects — rejected, or failed (its /update was refused) —
    or why there is none."""
    record_id = message.update_record_id
    key = services.audits.key_for_record(record_id) if record_id else None
    current = services.audits.get(key) if key else None
    why: Reason | None = None
    if current is None or current.record_id != record_id:
        why = reason("why.no_such_record")
    elif not correctable(current) and not (current.job_id == job.job_id and current.row == message.row):
        why = reason("why.not_rejected", status=_status(current.status))
    if why is None:
        assert current is not None
        return current
    return reason("record_id.not_correctable", column="recordId", record_id=record_id or 0, why=why)


def _status(status: AuditStatus) -> Reason:
    return reason(f"audit_status.{status.value}")


def _submit_carrier_audits(
    services: Services,
    job: Job,
    counts: JobCounts,
    audits: list[CarrierAuditMessage],
    rejections: RejectionLog,
) -> JobCounts:
    """The second pass, for a file read to the end: reserve each audit and queue it.

    A resumed split (same job, same row) is recognised whatever the audit's status is now: an audit
    still ``submitting`` is queued again (the submit lease makes that safe), one that has moved on
    is counted as accepted and not sent again — ``failed`` included, which only an operator
    re-drives.
    """
    accepted: list[CarrierAuditMessage] = []
    to_send: list[str] = []
    pepper = services.secrets.identity_pepper()
    for message in audits:
        params = message.params
        now = services.clock.now()
        if message.update_record_id is not None:  # a correction: it updates that rejected audit
            target = _correction_target(services, job, message)
            if isinstance(target, Reason):
                masked_row = {
                    "name": mask_name(params.name),
                    "idCard": mask_id(params.idCard),
                    "phone": mask_phone(params.phone),
                }
                rejections.add(message.row, target, masked_row)
                continue
            message = message.model_copy(update={"audit_key": target.audit_key})
        audit = Audit(
            audit_key=message.audit_key,
            job_id=job.job_id,
            row=message.row,
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
            and current.row == message.row
        )
        masked = {
            "name": audit.owner_name_masked,
            "idCard": audit.id_card_masked,
            "phone": audit.phone_masked,
        }
        if reservation == Reservation.DUPLICATE and not resumed:
            rejections.add(
                message.row, reason("duplicate.audit_exists", status=_status(current.status)), masked
            )
            continue
        if resumed and current.status != AuditStatus.SUBMITTING:
            accepted.append(message)  # submitted by the interrupted run: not sent again
            continue
        update_id = (
            current.record_id
            if reservation == Reservation.UPDATE or (resumed and current.record_id)
            else None
        )
        queued = message.model_copy(update={"update_record_id": update_id})
        accepted.append(queued)
        to_send.append(queued.model_dump_json())
    services.queue.send_all(to_send)
    n = len(accepted)
    return JobCounts(
        rows_read=counts.rows_read, rows_accepted=n, rows_rejected=counts.rows_read - n, batches_total=n
    )
