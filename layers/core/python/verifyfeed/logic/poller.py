"""The scheduled sweep: settle audits whose callback never came, re-drive deferred batches.

Bounded work per run (``POLL_MAX_ITEMS``); an upstream error on one audit does not stop the
others. Results go through ``transitions.apply_audit_result``, the same code as the callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aws_lambda_powertools import Logger

from verifyfeed import aws
from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.transitions import apply_audit_result
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, BatchStatus
from verifyfeed.services import Services
from verifyfeed.store.jobs import StaleTransition
from verifyfeed.upstream.client import Answered, CallOutcome, parse_audit_result

logger = Logger(child=True)


@dataclass
class PollReport:
    audits_checked: int = 0
    audits_settled: int = 0
    audit_errors: int = 0
    batches_redriven: int = 0
    audits_pending: int = 0  # after this run: the AuditsPending metric
    outcomes: dict[str, int] = field(default_factory=dict)


def poll(services: Services) -> PollReport:
    report = PollReport()
    _poll_audits(services, report)
    _redrive_deferred(services, report)
    report.audits_pending = services.audits.count_with_status(AuditStatus.PENDING)
    logger.info("poll finished", extra=report.__dict__)
    return report


def _poll_audits(services: Services, report: PollReport) -> None:
    settings = services.settings
    older_than = services.clock.now() - timedelta(seconds=settings.poll_pending_age_seconds)
    for audit in services.audits.with_status(AuditStatus.PENDING, older_than, settings.poll_max_items):
        if audit.record_id is None:
            continue
        report.audits_checked += 1
        outcome_of_get = services.upstream.audit_get(audit.record_id)
        result = parse_audit_result(outcome_of_get)
        if result is None:
            report.audit_errors += 1
            logger.warning(
                "carrierAudit/get gave no result",
                extra={"job_id": audit.job_id, "record_id": audit.record_id, "answer": _why(outcome_of_get)},
            )
            continue
        outcome = apply_audit_result(services, result.id, result.upstream_status, result.remarks)
        report.outcomes[outcome.value] = report.outcomes.get(outcome.value, 0) + 1
        if outcome.value == "applied":
            report.audits_settled += 1


def _why(outcome: CallOutcome) -> str:
    if isinstance(outcome, Answered):
        return f"code {outcome.response.code}: {outcome.response.message}"[:200]
    return outcome.reason


def _redrive_deferred(services: Services, report: PollReport) -> None:
    """After the blackout, put deferred batches back on the queue (as ``queued``)."""
    now = services.clock.now()
    if services.blackout.is_blacked_out(now):
        return
    for batch in services.jobs.batches_with_status(BatchStatus.DEFERRED, services.settings.poll_max_items):
        try:
            queued = services.jobs.transition(batch, BatchStatus.QUEUED, now)
        except StaleTransition:
            continue
        message = LostRepairBatchMessage(
            job_id=queued.job_id,
            batch_id=queued.batch_id,
            seq=queued.seq,
            claim_bucket=queued.claim_bucket,
            claim_key=queued.claim_key,
            generation=int(now.timestamp()),
        )
        aws.sqs().send_message(
            QueueUrl=services.settings.work_queue_url, MessageBody=message.model_dump_json()
        )
        settle_job(services, queued.job_id)
        report.batches_redriven += 1
