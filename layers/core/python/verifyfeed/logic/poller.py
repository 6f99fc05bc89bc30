"""The scheduled sweep: re-drive deferred batches (each message sent before the batch leaves
``deferred``), then poll the audits whose callback never came, least recently polled first, each on
its own, until the Lambda's time runs short (docs/decisions.md#poller). Results go through
``transitions.apply_audit_result``, as the callback's do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aws_lambda_powertools import Logger

from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.transitions import apply_audit_result
from verifyfeed.models.ids import iso
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, BatchStatus, JobStatus
from verifyfeed.ports import Services, StaleTransition
from verifyfeed.upstream.client import Answered, CallOutcome, parse_audit_result

logger = Logger(child=True)

# what one more item may take at most: an upstream call (connect + read timeout) and a few writes
_ITEM_MARGIN_S = 5.0


@dataclass
class PollReport:
    audits_checked: int = 0
    audits_settled: int = 0
    audit_errors: int = 0
    batches_redriven: int = 0
    audits_pending: int = 0  # after this run: the AuditsPending metric
    audits_unknown: int = 0  # after this run: the AuditsUnknown metric
    jobs_stuck: int = 0  # splitting or uploading for longer than STUCK_JOB_SECONDS: JobsStuck
    stopped_early: bool = False  # the Lambda's time ran short: the rest waits for the next run
    outcomes: dict[str, int] = field(default_factory=dict)


def poll(services: Services, seconds_left: Callable[[], float] | None = None) -> PollReport:
    """``seconds_left``: how long the invocation may still run (the Lambda context's remaining time)."""
    margin = _ITEM_MARGIN_S + services.settings.connect_timeout_s + services.settings.read_timeout_s
    started = time.monotonic()

    def time_is_short() -> bool:
        left = seconds_left() if seconds_left else 900.0 - (time.monotonic() - started)
        return left < margin

    report = PollReport()
    _redrive_deferred(services, report, time_is_short)
    _poll_audits(services, report, time_is_short)
    report.audits_pending = services.audits.count_with_status(AuditStatus.PENDING)
    report.audits_unknown = services.audits.count_with_status(AuditStatus.UNKNOWN)
    report.jobs_stuck = _stuck_jobs(services)
    logger.info("poll finished", extra=report.__dict__)
    return report


def _poll_audits(services: Services, report: PollReport, time_is_short: Callable[[], bool]) -> None:
    settings = services.settings
    older_than = services.clock.now() - timedelta(seconds=settings.poll_pending_age_seconds)
    for audit in services.audits.with_status(AuditStatus.PENDING, older_than, settings.poll_max_items):
        if audit.record_id is None:
            continue
        if time_is_short():
            report.stopped_early = True
            return
        report.audits_checked += 1
        log = {"job_id": audit.job_id, "record_id": audit.record_id}
        try:
            outcome_of_get = services.upstream.audit_get(audit.record_id)
            result = parse_audit_result(outcome_of_get)
            if result is None or result.id != audit.record_id:
                why = _why(outcome_of_get) if result is None else "answered about another record id"
                report.audit_errors += 1
                services.audits.mark_polled(audit, services.clock.now(), error=why)
                logger.warning("carrierAudit/get gave no result", extra={**log, "answer": why})
                continue
            # of the cycle read above: applied only if the audit has not gone pending again since
            outcome = apply_audit_result(
                services, result.id, result.upstream_status, result.remarks, cycle=audit.cycle
            )
            if outcome.value == "still_pending":
                services.audits.mark_polled(audit, services.clock.now())
        except Exception as exc:  # one audit's trouble is that audit's: the run goes on
            report.audit_errors += 1
            logger.exception("polling an audit failed", extra={**log, "error": type(exc).__name__})
            continue
        report.outcomes[outcome.value] = report.outcomes.get(outcome.value, 0) + 1
        if outcome.value == "applied":
            report.audits_settled += 1


_OPEN_JOBS = (JobStatus.SPLITTING, JobStatus.UPLOADING)


def _stuck_jobs(services: Services) -> int:
    """Recent jobs still splitting or uploading long after their last change."""
    cutoff = iso(services.clock.now() - timedelta(seconds=services.settings.stuck_job_seconds))
    recent = services.jobs.list_jobs(services.settings.poll_max_items * 5)
    return sum(1 for j in recent if j.status in _OPEN_JOBS and (j.updated_at or j.created_at) < cutoff)


def _why(outcome: CallOutcome) -> str:
    if isinstance(outcome, Answered):
        if outcome.response.ok:
            return "success code with a data field that is not an audit result"
        return f"code {outcome.response.code}: {outcome.response.message}"[:200]
    return outcome.reason


def _redrive_deferred(services: Services, report: PollReport, time_is_short: Callable[[], bool]) -> None:
    """After the blackout, queue each deferred batch's message, then mark it ``queued``."""
    now = services.clock.now()
    if services.blackout.is_blacked_out(now):
        return
    for batch in services.jobs.batches_with_status(BatchStatus.DEFERRED, services.settings.poll_max_items):
        if time_is_short():
            report.stopped_early = True
            return
        message = LostRepairBatchMessage.for_batch(batch, generation=int(now.timestamp()))
        services.queue.send(message.model_dump_json())
        report.batches_redriven += 1
        try:  # bookkeeping: the uploader may already have taken the batch from "deferred"
            services.jobs.transition(batch, BatchStatus.QUEUED, now)
        except StaleTransition:
            continue
        settle_job(services, batch.job_id)
