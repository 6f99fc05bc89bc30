"""The lost-repair room of the splitter: rows normalised, hashed, deduplicated across the file and
against the resend ledger, chunked into batches of at most BATCH_MAX_RECORDS and staged as the file
is read; the ledger is committed and the batches released only once the whole file is valid
(docs/decisions.md#all-or-nothing, #resend-ledger)."""

from __future__ import annotations

from verifyfeed.clock import china_time
from verifyfeed.ingest.readers import RowSource
from verifyfeed.logic.ledger import (
    NEVER_SENT_JOBS,
    LedgerConflict,
    LedgerSession,
    file_fingerprint,
    ledger_key,
    window_start,
)
from verifyfeed.logic.repair_batches import RejectRow, split_repair_rows
from verifyfeed.logic.reports import RejectionLog
from verifyfeed.logic.split_context import DryRunPlan, FileSplit
from verifyfeed.logic.staging import BatchStager, DryRunCounter, Stager, release_batches
from verifyfeed.models.records import Job, JobCounts, JobStatus
from verifyfeed.pii import mask_id, mask_name, mask_phone
from verifyfeed.ports import LedgerBusy, Services, SplitSuperseded
from verifyfeed.reasons import Reason
from verifyfeed.rules.authcode import validate_auth_code
from verifyfeed.rules.errors import RuleViolation


class LostRepairSplit:
    """The ``Intake`` of a lost-repair file."""

    def __init__(self, split: FileSplit) -> None:
        self.split = split
        self.ledger = _ledger_session(split)
        self.stager: Stager = (
            DryRunCounter(split.services)
            if split.dry_run
            else BatchStager(split.services, split.job, split.run, split.resuming, self.ledger)
        )

    def identical_to(self) -> Job | None:
        if self.ledger is None or not self.ledger.prior or self.split.dry_run:
            return None
        return _identical_split(self.split, self.ledger)

    def read(self, rows: RowSource) -> JobCounts:
        settings = self.split.services.settings
        counts = split_repair_rows(
            rows,
            legacy=settings.legacy_id_policy,
            batch_size=settings.batch_max_records,
            auth_codes=settings.auth_code_uniqueness,
            reject=repair_rejects(self.split.rejections),
            emit=self.stager,
            ledger=self.ledger,
        )
        self.stager.wait()  # every staged body and record written: the file is read and validated
        self.stager.drop_leftovers()
        return counts

    def discard(self) -> int:
        return self.stager.discard()

    def abandon(self) -> None:
        self.stager.abandon()

    def plan(self, counts: JobCounts) -> DryRunPlan:
        records = self.stager.records
        return DryRunPlan(
            counts, {"batches": len(self.stager.staged), "records_charged_if_accepted": records}, records
        )

    def submit(self, counts: JobCounts) -> JobCounts:
        """The file's records go into the resend ledger before any is released; when an overlapping
        split recorded some first (or held the lock too long), what was staged is discarded and the
        split starts over (``LedgerConflict``) or the event is retried (``LedgerBusy``)."""
        ledger = self.ledger
        if ledger is None:
            return counts
        services = self.split.services
        try:
            ledger.commit(services.clock.now(), services.settings.ledger_lock_seconds)
        except (LedgerConflict, LedgerBusy):
            self.stager.discard()
            raise
        dropped = self.split.dropped
        if dropped.etag:
            fingerprint = file_fingerprint(ledger.key, dropped.etag, dropped.size)
            services.ledger.record_fingerprint(fingerprint, self.split.job_id, ledger.today)
        return counts

    def release(self) -> bool:
        return release_batches(self.split.services, self.split.job, self.split.run)


def _ledger_session(split: FileSplit) -> LedgerSession | None:
    """The resend ledger for this run of the split, None when RESEND_WINDOW is off."""
    services = split.services
    settings = services.settings
    now = services.clock.now()
    first_day = window_start(settings.resend_window, now, services.blackout)
    if first_day is None:
        return None
    return LedgerSession(
        store=services.ledger,
        jobs=services.jobs,
        key=ledger_key(services.secrets.identity_pepper()),
        job=split.job,
        first_day=first_day,
        today=china_time(now).date(),
        blobs=services.blobs,
        bucket=settings.ingest_bucket,
        prior=not split.resend,
        write=not split.dry_run,
        lookback_days=settings.resend_lookback_days,
        run=split.run,
        owner_check=lambda: _still_owns(services, split.job_id, split.run),
    )


def _still_owns(services: Services, job_id: str, run: int) -> None:
    """SplitSuperseded unless ``run`` still owns the split (the ledger asks under its lock)."""
    job = services.jobs.get_job(job_id)
    if job is None or job.status != JobStatus.SPLITTING or job.split_run != run:
        raise SplitSuperseded(job_id)


def _identical_split(split: FileSplit, ledger: LedgerSession) -> Job | None:
    """The job that split a file with this one's content within the window (S3 ETag and size)."""
    dropped, services = split.dropped, split.services
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


def repair_rejects(rejections: RejectionLog) -> RejectRow:
    """The ``reject`` of ``split_repair_rows`` for a job: masked values into the rejected-rows report."""

    def reject(number: int, why: Reason, values: dict[str, object], first_row: int | None) -> None:
        rejections.add(number, why, _masked_repair_row(values), first_row)

    return reject


def _masked_repair_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "id_number": mask_id(values.get("id_number")),
        "used_phone": mask_phone(values.get("used_phone")),
        "auth_code": _report_auth_code(values.get("auth_code")),
    }


def _report_auth_code(raw: object) -> str:
    """A valid authCode is shown as is; anything else is masked like an ID number (a column mix-up
    puts ID or phone numbers here, and reports never hold those in the clear)."""
    try:
        code = validate_auth_code(raw)
    except RuleViolation:
        return mask_id(raw)
    return mask_id(code) if code.isdigit() and len(code) >= 11 else code
