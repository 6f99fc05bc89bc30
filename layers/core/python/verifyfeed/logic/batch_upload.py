"""Send one lost-repair batch upstream at most once: read, decide (``batch_decisions``), then do —
every decision is applied by ``apply``. Each call may charge: a send lease guards it, and an answer
that may follow a charge is held, never resent (docs/decisions.md#upload-decisions)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from verifyfeed.logic import bisection
from verifyfeed.logic.batch_decisions import (
    BODY_MISSING,
    Decision,
    Defer,
    Redelivered,
    Refuse,
    Retry,
    Send,
    Settle,
    Wait,
    before_send,
    on_answer,
    verify_state,
)
from verifyfeed.logic.delivery import Delivery, RetryLater, backoff_seconds
from verifyfeed.logic.progress import settle_job
from verifyfeed.models.ids import claim_key, tree_position
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchFields, BatchStatus
from verifyfeed.ports import BlobError, Blobs, JobMissing, Services, StaleTransition, StoreError
from verifyfeed.upstream.client import Answered, CallOutcome

logger = Logger(child=True)
metrics = Metrics()

SETTLE_RESERVE_S = 2.0  # stop retrying a settle this long before the invocation's deadline


class SettleFailed(Exception):
    """The answer to a charged call could not be recorded before the invocation's time ran out."""


def load_records(blobs: Blobs, message: LostRepairBatchMessage) -> list[RepairRecord]:
    """The batch's records: inline, or its claim-check body in ``claims/`` (``BlobError`` when
    unreadable)."""
    if message.records is not None:
        return message.records
    assert message.claim_bucket and message.claim_key
    body = blobs.get(message.claim_bucket, message.claim_key)
    return [RepairRecord.model_validate(r) for r in json.loads(body)]


def upload_batch(services: Services, message: LostRepairBatchMessage, delivery: Delivery) -> str:
    """Process one lost-repair batch message; returns the batch status it left the batch in."""
    batch = services.jobs.get_batch(message.job_id, message.seq)
    if batch is None:
        raise RetryLater("batch record not found yet", 5)
    now = services.clock.now()
    decision = before_send(batch, now, services.blackout.resumes_at(now), delivery, services.settings)
    if not isinstance(decision, Send):
        return apply(services, batch, message, delivery, decision)

    # everything the call needs, before the lease: a body or credentials that cannot be read must
    # not turn into a lease that expires into a false "unknown"
    try:
        records = load_records(services.blobs, message)
    except BlobError as exc:
        if not exc.missing:
            raise
        return apply(services, batch, message, delivery, BODY_MISSING)
    services.upstream.ready()

    lease = now + timedelta(seconds=services.settings.send_lease_seconds)
    try:
        sending = services.jobs.transition(
            batch, BatchStatus.SENDING, now, lease_until=lease, count_attempt=True
        )
    except StaleTransition as exc:
        if delivery.last:  # whoever moved it carries it on: a sender settles it, a re-drive queued it
            return _status_now(services, message)
        raise RetryLater("batch changed while taking its send lease", 2) from exc
    if batch.status == BatchStatus.DEFERRED:
        settle_job(services, batch.job_id)  # the job may leave "deferred"

    outcome = services.upstream.upload_lost_repair(records)
    metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=outcome.elapsed_ms)
    _log_answer(sending, outcome)
    decision = on_answer(outcome, sending, len(records), delivery, services.settings)
    return apply(services, sending, message, delivery, decision)


def apply(
    services: Services, batch: Batch, message: LostRepairBatchMessage, delivery: Delivery, decision: Decision
) -> str:
    """Do what was decided for ``batch``; returns the status it is left in (``RetryLater``: come back)."""
    log = {"job_id": batch.job_id, "batch_id": batch.batch_id, "attempt": batch.attempts}
    match decision:
        case Redelivered():
            logger.info(
                "batch already answered; redelivery ignored", extra={**log, "status": batch.status.value}
            )
            _advance_tree(services, batch)  # in case the run that answered it died before its tree moved on
            settle_job(services, batch.job_id)  # ... or before the job
            return batch.status.value
        case Wait(reason=reason, delay_s=delay_s):
            raise RetryLater(reason, delay_s)
        case Defer():
            if batch.status != BatchStatus.DEFERRED:
                _defer(services, batch, message, decision.last_error)
            if decision.resumes_at is not None:
                logger.info("blackout: batch deferred", extra={**log, "resumes_at": str(decision.resumes_at)})
            return BatchStatus.DEFERRED.value
        case Settle():
            try:
                _settle(
                    services, batch, message, decision, delivery.seconds_left if decision.in_time else None
                )
            except StaleTransition:
                if not decision.contested:
                    raise
                return _status_now(services, message)
            say = {"info": logger.info, "warning": logger.warning, "error": logger.error}[decision.log_level]
            say(decision.log, extra={**log, **decision.log_extra})
            return decision.to.value
        case Refuse():
            _refuse(services, batch, message, delivery, decision.fields)
            reason = decision.fields.get("last_error", "")
            logger.warning("batch refused", extra={**log, "reason": reason, "records": decision.records})
            return BatchStatus.REFUSED.value
        case Retry():
            fields: BatchFields = {"last_error": decision.reason}
            _transition(services, batch, BatchStatus.RETRY, fields, count_state0=decision.count_state0)
            delay = decision.retry_after_s
            raise RetryLater(
                decision.reason,
                backoff_seconds(services.settings, decision.attempt) if delay is None else delay,
            )


def _log_answer(batch: Batch, outcome: CallOutcome) -> None:
    """The record of what upstream said, before anything is settled."""
    if not isinstance(outcome, Answered):
        return
    response = outcome.response
    state = verify_state(response)
    logger.info(
        "upstream answered",
        extra={
            "job_id": batch.job_id,
            "batch_id": batch.batch_id,
            "attempt": batch.attempts,
            "code": response.code,
            "state": None if state is None else state.state,
            "serial_no": response.serialNo,
            "envelope": response.scalars(),
        },
    )


def _status_now(services: Services, message: LostRepairBatchMessage) -> str:
    batch = services.jobs.get_batch(message.job_id, message.seq)
    return batch.status.value if batch else "missing"


def _claim_check(services: Services, batch: Batch, message: LostRepairBatchMessage) -> tuple[str, str]:
    """Where the batch's claim-check body is in S3 (bucket, key): the message's claim check, else
    written now under ``claims/``."""
    if message.claim_key is not None:
        return message.claim_bucket or services.settings.ingest_bucket, message.claim_key
    bucket = services.settings.ingest_bucket
    key = claim_key(services.settings.claims_prefix, batch.job_id, batch.seq)
    records = load_records(services.blobs, message)
    body = json.dumps([r.model_dump() for r in records], ensure_ascii=False).encode()
    services.blobs.put(bucket, key, body)
    return bucket, key


def _defer(services: Services, batch: Batch, message: LostRepairBatchMessage, last_error: str) -> None:
    """Park the batch until the blackout ends; its body goes to S3 so the poller can re-drive it."""
    bucket, key = _claim_check(services, batch, message)
    fields: BatchFields = {"claim_bucket": bucket, "claim_key": key, "last_error": last_error}
    _transition(services, batch, BatchStatus.DEFERRED, fields)
    metrics.add_metric(name="BatchesDeferred", unit=MetricUnit.Count, value=1)
    settle_job(services, batch.job_id)


def _transition(
    services: Services, batch: Batch, to: BatchStatus, fields: BatchFields, *, count_state0: bool = False
) -> Batch:
    return services.jobs.transition(batch, to, services.clock.now(), count_state0=count_state0, fields=fields)


_SETTLED_METRIC = {
    BatchStatus.SUCCEEDED: "BatchesUploaded",
    BatchStatus.FAILED: "BatchesFailed",
    BatchStatus.UNKNOWN: "BatchesUnknown",
}


def _settle(
    services: Services,
    batch: Batch,
    message: LostRepairBatchMessage,
    settle: Settle,
    seconds_left: Callable[[], float] | None,
) -> None:
    fields = settle.fields.copy()
    if settle.to in (BatchStatus.FAILED, BatchStatus.UNKNOWN):
        fields.update(_keep_body(services, batch, message))
    _with_retries(
        lambda: _transition(services, batch, settle.to, fields, count_state0=settle.count_state0),
        what=f"settling batch {batch.batch_id} as {settle.to.value}",
        seconds_left=seconds_left,
    )
    metrics.add_metric(name=_SETTLED_METRIC[settle.to], unit=MetricUnit.Count, value=1)
    if settle.to == BatchStatus.SUCCEEDED:
        _delete_claim_checks(services, batch, message)
    _advance_tree(services, batch)
    settle_job(services, batch.job_id)


def _refuse(
    services: Services, batch: Batch, message: LostRepairBatchMessage, delivery: Delivery, fields: BatchFields
) -> None:
    """Recorded ``refused`` with its body kept under ``claims/`` (its halves are cut from it), then
    its tree moves on."""
    fields = fields.copy()
    fields.update(_keep_body(services, batch, message))
    _with_retries(
        lambda: _transition(services, batch, BatchStatus.REFUSED, fields, count_state0=True),
        what=f"recording batch {batch.batch_id} as refused",
        seconds_left=delivery.seconds_left,
    )
    metrics.add_metric(name="BatchesRefused", unit=MetricUnit.Count, value=1)
    bisection.advance(services, batch.job_id, tree_position(batch.seq)[0])
    settle_job(services, batch.job_id)


def _advance_tree(services: Services, batch: Batch) -> None:
    """A batch of a bisection answered: the rest of its tree may be decided or sent now."""
    if bisection.in_tree(batch) or batch.status in (BatchStatus.REFUSED, BatchStatus.BISECTED):
        bisection.advance(services, batch.job_id, tree_position(batch.seq)[0])


def _with_retries(write: Callable[[], object], what: str, seconds_left: Callable[[], float] | None) -> None:
    """A settling write, tried again (backoff 0.1 s doubling, at most 2 s) for as long as the
    invocation has time; then an error log and the alarmed ``SettleFailures`` metric, and the error
    goes on to SQS. Neither a stale transition nor ``JobMissing`` is retried: waiting cannot help."""
    pause = 0.1
    while True:
        try:
            write()
            return
        except StoreError as exc:
            left = seconds_left() if seconds_left else 0.0
            if isinstance(exc, JobMissing) or left - pause < SETTLE_RESERVE_S:
                metrics.add_metric(name="SettleFailures", unit=MetricUnit.Count, value=1)
                logger.error(
                    f"{what} failed; the answer is logged above", extra={"error": type(exc).__name__}
                )
                raise SettleFailed(what) from exc
            time.sleep(pause)
            pause = min(2.0, pause * 2)


def _keep_body(services: Services, batch: Batch, message: LostRepairBatchMessage) -> BatchFields:
    """Keep the body of a batch that settles failed or unknown in S3 as a claim check (``claims/``,
    14 days), for a re-drive (``verifyfeed redrive``). Best effort: the settlement must not wait on
    S3."""
    try:
        bucket, key = _claim_check(services, batch, message)
    except BlobError as exc:
        logger.warning(
            "batch body not kept; it cannot be re-driven",
            extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "error": type(exc).__name__},
        )
        return {}
    return {"claim_bucket": bucket, "claim_key": key}


def _delete_claim_checks(services: Services, batch: Batch, message: LostRepairBatchMessage) -> None:
    """Delete a succeeded batch's claim-check bodies (digests and names) at once, every version;
    best effort: what is left expires with ``claims/``."""
    places = {(message.claim_bucket, message.claim_key), (batch.claim_bucket, batch.claim_key)}
    for bucket, key in places:
        if not key or not key.startswith(services.settings.claims_prefix):
            continue
        try:
            services.blobs.delete_every_version(bucket or services.settings.ingest_bucket, key)
        except BlobError as exc:
            logger.warning(
                "claim check of a succeeded batch not deleted; the lifecycle rule will",
                extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "error": type(exc).__name__},
            )
