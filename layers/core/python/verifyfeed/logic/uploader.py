"""Send queued work upstream exactly once.

Lost-repair batches are charged on ``state`` "1", so the send is guarded by the batch record:

1. A settled batch (succeeded / failed / unknown) is never sent again: redelivery is a no-op.
2. In the blackout the batch is parked as ``deferred`` (the message is consumed; the poller
   re-drives it after the window) instead of being spun in retries.
3. Before sending, the worker takes a *lease* (``queued|retry|deferred → sending``, conditional).
   A second delivery of the same message meanwhile sees a live lease and backs off.
4. A ``sending`` record whose lease has expired means a worker died (Lambda timeout) after the
   request may have left: with ``UNKNOWN_OUTCOME_POLICY=hold`` it is flagged ``unknown`` and
   held for an operator rather than paid for twice (docs/decisions.md#unknown-outcome).
5. The answer decides: ``state`` "1" (or 1) → succeeded (with the platform serial number);
   ``state`` "0" for a batch of several records → refused, and split in halves until the records
   the upstream refuses are isolated (``logic.bisection``, docs/decisions.md#state-0); ``state``
   "0" for a file's batch of one record, or a refusal code → retried a bounded number of times,
   then failed; never sent, 429 or 503 → retried after the ``Retry-After`` the upstream gave
   (bounded), else with exponential backoff and jitter; anything that may follow a charge — any
   other 5xx or a lost answer after sending, a success code whose ``data`` cannot be read,
   ``state`` "1" under a failure code — → unknown, held for an operator, never resent on its own
   (docs/decisions.md#unknown-outcome).
6. The message's last delivery (SQS dead-letters it after ``QUEUE_MAX_RECEIVE_COUNT``) never
   leaves the batch waiting for another: what would be retried is settled instead — failed, or
   unknown when a request of it may have been charged.

Powertools idempotency sits in front (the handler) to make a redelivered success cheap; this
lease is what makes a timed-out attempt safe, which idempotency alone does not.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Unpack

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field, TypeAdapter

from verifyfeed.config import UnknownOutcomePolicy
from verifyfeed.logic import bisection
from verifyfeed.logic.progress import settle_job
from verifyfeed.models.envelope import UnifiedResponse
from verifyfeed.models.ids import claim_key as claim_key_for
from verifyfeed.models.ids import tree_position
from verifyfeed.models.lost_repair import RepairRecord, VerifyState
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import Audit, AuditStatus, Batch, BatchFields, BatchStatus
from verifyfeed.models.wire import WireInt
from verifyfeed.ports import BlobError, Blobs, JobMissing, Services, StaleAudit, StaleTransition, StoreError
from verifyfeed.upstream.client import Answered, CallOutcome, HttpError, NotSent, Unknown

logger = Logger(child=True)
metrics = Metrics()

# Upstream codes that mean "the monthly window is closed" rather than "your data is bad".
BLACKOUT_CODES = frozenset({"10027"})


class RetryLater(Exception):
    """Leave the message on the queue; make it visible again after ``delay_s``."""

    def __init__(self, reason: str, delay_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


@dataclass(frozen=True)
class Delivery:
    """What SQS tells us about this delivery of the message, and how long the invocation may run."""

    receive_count: int = 1
    max_receive_count: int = 8
    seconds_left: Callable[[], float] | None = None  # the Lambda context's remaining time

    @property
    def last(self) -> bool:
        """SQS dead-letters the message after this delivery: nothing retried comes back."""
        return self.receive_count >= self.max_receive_count


SETTLE_RESERVE_S = 2.0  # stop retrying a settle this long before the invocation's deadline


class SettleFailed(Exception):
    """The answer to a charged call could not be recorded before the invocation's time ran out."""


def backoff_seconds(services: Services, attempt: int) -> int:
    """Exponential backoff with full jitter, capped (SQS visibility allows at most 12 h)."""
    settings = services.settings
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempt - 1))
    return int(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security


def retry_delay(services: Services, outcome: CallOutcome, attempt: int) -> int:
    """How long the message waits for its next delivery: what the upstream's ``Retry-After`` asked
    (at most ``RETRY_AFTER_MAX_SECONDS``), else the backoff."""
    if isinstance(outcome, HttpError) and outcome.retry_after_s is not None:
        return min(outcome.retry_after_s, services.settings.retry_after_max_seconds)
    return backoff_seconds(services, attempt)


def load_records(blobs: Blobs, message: LostRepairBatchMessage) -> list[RepairRecord]:
    """The batch's records: inline, or its body in ``claims/`` (``BlobError`` when unreadable)."""
    if message.records is not None:
        return message.records
    assert message.claim_bucket and message.claim_key
    body = blobs.get(message.claim_bucket, message.claim_key)
    return [RepairRecord.model_validate(r) for r in json.loads(body)]


def upload_batch(services: Services, message: LostRepairBatchMessage, delivery: Delivery) -> str:
    """Process one lost-repair batch message; returns the batch status it left the batch in."""
    jobs = services.jobs
    settings = services.settings
    log = {"job_id": message.job_id, "batch_id": message.batch_id}
    batch = jobs.get_batch(message.job_id, message.seq)
    if batch is None:
        raise RetryLater("batch record not found yet", 5)
    if batch.status.settled or batch.status == BatchStatus.REFUSED:
        logger.info("batch already answered; redelivery ignored", extra={**log, "status": batch.status.value})
        _advance_tree(services, batch)  # in case the run that answered it died before its tree moved on
        settle_job(services, batch.job_id)  # ... or before the job
        return batch.status.value
    now = services.clock.now()

    if batch.status == BatchStatus.SENDING:
        lease_until = datetime.fromisoformat(batch.lease_until) if batch.lease_until else now
        if lease_until > now:
            if delivery.last:
                return _hold_on_last_delivery(services, batch, message, delivery)
            raise RetryLater(
                "another worker holds the send lease", int((lease_until - now).total_seconds()) + 1
            )
        if settings.unknown_outcome_policy == UnknownOutcomePolicy.HOLD:
            _settle(
                services,
                batch,
                BatchStatus.UNKNOWN,
                message,
                last_error="a send attempt ended without a recorded answer",
            )
            logger.warning("send attempt died mid-flight; batch held as unknown", extra=log)
            return BatchStatus.UNKNOWN.value

    if services.blackout.is_blacked_out(now):
        if batch.status != BatchStatus.DEFERRED:
            _defer(services, batch, message)
        logger.info(
            "blackout: batch deferred", extra={**log, "resumes_at": str(services.blackout.resumes_at(now))}
        )
        return BatchStatus.DEFERRED.value

    # everything the call needs, before the lease: a body or credentials that cannot be read must
    # not turn into a lease that expires into a false "unknown"
    try:
        records = load_records(services.blobs, message)
    except BlobError as exc:
        if not exc.missing:
            raise
        _settle(
            services, batch, BatchStatus.FAILED, message, last_error="the batch body is missing: nothing sent"
        )
        logger.error("batch body missing; failed without sending", extra=log)
        return BatchStatus.FAILED.value
    services.upstream.ready()

    lease = now + timedelta(seconds=settings.send_lease_seconds)
    try:
        sending = jobs.transition(batch, BatchStatus.SENDING, now, lease_until=lease, count_attempt=True)
    except StaleTransition as exc:
        if delivery.last:  # whoever moved it carries it on: a sender settles it, a re-drive queued it
            return _status_now(services, message)
        raise RetryLater("batch changed while claiming it", 2) from exc
    if batch.status == BatchStatus.DEFERRED:
        settle_job(services, batch.job_id)  # the job may leave "deferred"

    outcome = services.upstream.upload_lost_repair(records)
    metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=_elapsed(outcome))
    return _apply_upload_outcome(services, sending, message, outcome, delivery, len(records))


def _elapsed(outcome: CallOutcome) -> float:
    return outcome.elapsed_ms


def _apply_upload_outcome(
    services: Services,
    batch: Batch,
    message: LostRepairBatchMessage,
    outcome: CallOutcome,
    delivery: Delivery,
    record_count: int,
) -> str:
    settings = services.settings
    log = {"job_id": batch.job_id, "batch_id": batch.batch_id, "attempt": batch.attempts}
    if isinstance(outcome, Answered):
        response = outcome.response
        state = _verify_state(response)
        logger.info(  # the record of what upstream said, before anything is settled
            "upstream answered",
            extra={
                **log,
                "code": response.code,
                "state": None if state is None else state.state,
                "serial_no": response.serialNo,
                "envelope": response.scalars(),
            },
        )
        if response.ok and state is None:  # success code, unreadable data: may have been charged
            outcome = Unknown(
                reason=f"upstream code {response.code} with a data field that is not a state",
                elapsed_ms=outcome.elapsed_ms,
            )
        elif not response.ok and state is not None and state.charged:  # contradicts itself
            outcome = Unknown(
                reason=f"upstream code {response.code} with state 1 (charged): {response.message}"[:500],
                elapsed_ms=outcome.elapsed_ms,
            )
        elif response.ok and state is not None and state.charged:
            _settle(
                services,
                batch,
                BatchStatus.SUCCEEDED,
                message,
                seconds_left=delivery.seconds_left,
                upstream_code=response.code,
                upstream_desc=state.desc,
                serial_no=response.serialNo or "",
                upstream_envelope=json.dumps(response.scalars(), ensure_ascii=False),
            )
            logger.info("batch uploaded", extra={**log, "serial_no": response.serialNo})
            return BatchStatus.SUCCEEDED.value
        elif response.code in BLACKOUT_CODES:
            _defer(services, batch, message, last_error=f"upstream {response.code}: {response.message}")
            return BatchStatus.DEFERRED.value
        else:  # state 0, or a refusal code: not charged
            desc = state.desc if state is not None else response.message
            reason = f"upstream code {response.code}, state {state.state if state else '-'}: {desc}"
            answer = {
                "upstream_code": response.code,
                "upstream_desc": desc,
                "upstream_envelope": json.dumps(response.scalars(), ensure_ascii=False),
            }
            split = settings.state0_bisect_max_calls > 0 and (record_count > 1 or bisection.in_tree(batch))
            if response.ok and state is not None and split:
                _refuse(services, batch, message, delivery, last_error=reason, **answer)
                logger.warning("batch refused", extra={**log, "reason": reason, "records": record_count})
                return BatchStatus.REFUSED.value
            attempts_spent = batch.state0_count + 1 >= settings.state0_max_attempts
            if attempts_spent or bisection.in_tree(batch) or delivery.last:
                _settle(
                    services,
                    batch,
                    BatchStatus.FAILED,
                    message,
                    seconds_left=delivery.seconds_left,
                    last_error=reason,
                    count_state0=True,
                    **answer,
                )
                logger.warning("batch failed", extra={**log, "reason": reason})
                return BatchStatus.FAILED.value
            _transition(services, batch, BatchStatus.RETRY, last_error=reason, count_state0=True)
            raise RetryLater(reason, backoff_seconds(services, batch.state0_count + 1))

    if isinstance(outcome, Unknown) and settings.unknown_outcome_policy == UnknownOutcomePolicy.HOLD:
        _settle(
            services,
            batch,
            BatchStatus.UNKNOWN,
            message,
            last_error=outcome.reason,
            seconds_left=delivery.seconds_left,
        )
        logger.warning(
            "answer lost after sending; batch held as unknown", extra={**log, "reason": outcome.reason}
        )
        return BatchStatus.UNKNOWN.value

    reason = outcome.reason
    permanent = isinstance(outcome, HttpError) and not outcome.retryable
    if permanent:
        reason = f"{outcome.reason} (not retryable)"
    if delivery.last or permanent:
        # a lost answer (retried under the resend policy) may have been charged; the rest was not
        to = BatchStatus.UNKNOWN if isinstance(outcome, Unknown) else BatchStatus.FAILED
        _settle(
            services,
            batch,
            to,
            message,
            seconds_left=delivery.seconds_left,
            last_error=f"{reason}; gave up after {batch.attempts} attempts",
        )
        logger.warning(f"batch {to.value}: retries spent", extra={**log, "reason": reason})
        return to.value
    _transition(services, batch, BatchStatus.RETRY, last_error=reason)
    assert isinstance(outcome, NotSent | HttpError | Unknown)
    raise RetryLater(reason, retry_delay(services, outcome, delivery.receive_count))


def _hold_on_last_delivery(
    services: Services, batch: Batch, message: LostRepairBatchMessage, delivery: Delivery
) -> str:
    """The last delivery finds another worker's send lease: that worker's request may have left,
    and no delivery comes after this one to see the lease run out. Held as unknown (unless the
    lease holder settles it meanwhile: that stands)."""
    try:
        _settle(
            services,
            batch,
            BatchStatus.UNKNOWN,
            message,
            seconds_left=delivery.seconds_left,
            last_error="another worker held the send lease on the message's last delivery",
        )
    except StaleTransition:
        return _status_now(services, message)
    logger.warning(
        "send lease held on the last delivery; batch held as unknown",
        extra={"job_id": batch.job_id, "batch_id": batch.batch_id},
    )
    return BatchStatus.UNKNOWN.value


def _status_now(services: Services, message: LostRepairBatchMessage) -> str:
    batch = services.jobs.get_batch(message.job_id, message.seq)
    return batch.status.value if batch else "missing"


def _claim(services: Services, batch: Batch, message: LostRepairBatchMessage) -> tuple[str, str]:
    """Where the batch body is in S3: the message's claim check, else written now under ``claims/``."""
    if message.claim_key is not None:
        return message.claim_bucket or services.settings.ingest_bucket, message.claim_key
    claim_bucket = services.settings.ingest_bucket
    claim_key = claim_key_for(services.settings.claims_prefix, batch.job_id, batch.seq)
    records = load_records(services.blobs, message)
    body = json.dumps([r.model_dump() for r in records], ensure_ascii=False).encode()
    services.blobs.put(claim_bucket, claim_key, body)
    return claim_bucket, claim_key


def _defer(services: Services, batch: Batch, message: LostRepairBatchMessage, last_error: str = "") -> None:
    """Park the batch until the blackout ends; its body goes to S3 so the poller can re-drive it."""
    claim_bucket, claim_key = _claim(services, batch, message)
    _transition(
        services,
        batch,
        BatchStatus.DEFERRED,
        claim_bucket=claim_bucket,
        claim_key=claim_key,
        last_error=last_error,
    )
    metrics.add_metric(name="BatchesDeferred", unit=MetricUnit.Count, value=1)
    settle_job(services, batch.job_id)


def _verify_state(response: UnifiedResponse) -> VerifyState | None:
    if isinstance(response.data, dict):
        try:
            return VerifyState.model_validate(response.data)
        except ValueError:
            return None
    return None


def _transition(
    services: Services,
    batch: Batch,
    to: BatchStatus,
    *,
    count_state0: bool = False,
    **fields: Unpack[BatchFields],
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
    to: BatchStatus,
    message: LostRepairBatchMessage,
    *,
    count_state0: bool = False,
    seconds_left: Callable[[], float] | None = None,
    **fields: Unpack[BatchFields],
) -> None:
    if to in (BatchStatus.FAILED, BatchStatus.UNKNOWN):
        fields.update(_keep_body(services, batch, message))
    _with_retries(
        lambda: _transition(services, batch, to, count_state0=count_state0, **fields),
        what=f"settling batch {batch.batch_id} as {to.value}",
        seconds_left=seconds_left,
    )
    metrics.add_metric(name=_SETTLED_METRIC[to], unit=MetricUnit.Count, value=1)
    if to == BatchStatus.SUCCEEDED:
        _drop_claims(services, batch, message)
    _advance_tree(services, batch)
    settle_job(services, batch.job_id)


def _refuse(
    services: Services,
    batch: Batch,
    message: LostRepairBatchMessage,
    delivery: Delivery,
    **fields: Unpack[BatchFields],
) -> None:
    """``state`` "0" for a batch that is split rather than retried whole: recorded ``refused`` (with
    its body kept under ``claims/``, which its halves are cut from), then its tree moves on."""
    fields.update(_keep_body(services, batch, message))
    _with_retries(
        lambda: _transition(services, batch, BatchStatus.REFUSED, count_state0=True, **fields),
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
    invocation has time; when it still fails, an error log and the ``SettleFailures`` metric
    (alarmed) are the trail, and the error goes on to SQS. A stale transition is not retried, nor
    a job that is not there (``JobMissing``: nothing was written, and waiting cannot bring it back)."""
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
    """The message is consumed once the batch settles: keep its body in S3 (``claims/``, 14 days)
    so that an operator can re-drive a failed or unknown batch (``verifyfeed redrive``).

    Best effort: the settlement is the record of what happened and must not wait on S3.
    """
    try:
        claim_bucket, claim_key = _claim(services, batch, message)
    except BlobError as exc:
        logger.warning(
            "batch body not kept; it cannot be re-driven",
            extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "error": type(exc).__name__},
        )
        return {}
    return {"claim_bucket": claim_bucket, "claim_key": claim_key}


def _drop_claims(services: Services, batch: Batch, message: LostRepairBatchMessage) -> None:
    """A succeeded batch is never sent again: its body in ``claims/`` (the wire digests of its ID and
    phone numbers, and names) is deleted at once, every version of it, rather than left to the
    lifecycle rule. Best effort, after the settlement: what is left expires with ``claims/``."""
    places = {(message.claim_bucket, message.claim_key), (batch.claim_bucket, batch.claim_key)}
    for bucket, key in places:
        if not key or not key.startswith(services.settings.claims_prefix):
            continue
        try:
            services.blobs.delete_every_version(bucket or services.settings.ingest_bucket, key)
        except BlobError as exc:
            logger.warning(
                "claim of a succeeded batch not deleted; the lifecycle rule will",
                extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "error": type(exc).__name__},
            )


# ---- carrier audits ------------------------------------------------------------------------


def submit_audit(services: Services, message: CarrierAuditMessage, delivery: Delivery) -> str:
    """``add`` (or ``update``) one audit; the answer's record id moves it to pending.

    Guarded like a batch: a submit lease on the audit record, so a worker that died mid-call
    (its lease expired) leads to ``unknown`` under the hold policy instead of a second upstream
    audit record.
    """
    audits = services.audits
    settings = services.settings
    log = {"job_id": message.job_id, "row": message.row}  # not the audit key: a digest of the ID number
    audit = audits.get(message.audit_key)
    if audit is None or audit.status != AuditStatus.SUBMITTING or audit.job_id != message.job_id:
        logger.info("audit no longer awaiting submission; redelivery ignored", extra=log)
        return audit.status.value if audit else "missing"
    now = services.clock.now()
    try:
        if audit.lease_until:
            lease_until = datetime.fromisoformat(audit.lease_until)
            if lease_until > now:
                if delivery.last:  # no delivery comes after this one to see the lease run out
                    return _settle_audit(
                        services,
                        audit,
                        AuditStatus.UNKNOWN,
                        error="another worker holds the submit lease on the message's last delivery",
                    )
                raise RetryLater(
                    "another worker holds the submit lease", int((lease_until - now).total_seconds()) + 1
                )
            if settings.unknown_outcome_policy == UnknownOutcomePolicy.HOLD:
                return _settle_audit(
                    services,
                    audit,
                    AuditStatus.UNKNOWN,
                    error="a submit attempt ended without a recorded answer",
                )
        audit = audits.take_lease(audit, now, now + timedelta(seconds=settings.send_lease_seconds))
        if message.update_record_id is not None:
            outcome = services.upstream.audit_update(message.update_record_id, message.params)
        else:
            outcome = services.upstream.audit_add(message.params)
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=_elapsed(outcome))
        if isinstance(outcome, Answered):
            response = outcome.response
            if not response.ok:
                error = f"upstream code {response.code}: {response.message}"[:500]
                return _settle_audit(services, audit, AuditStatus.FAILED, error=error)
            record_id = message.update_record_id
            if record_id is not None and response.data is not True:
                # /update answers data true when it updated; false (or anything else): it did not
                error = f"update answered data {str(response.data)[:20]}: not updated"
                return _settle_audit(services, audit, AuditStatus.FAILED, error=error)
            if record_id is None:
                record_id = _record_id(response.data)
            if record_id is None:  # a success code but no readable id: an audit may exist upstream
                return _settle_audit(
                    services, audit, AuditStatus.UNKNOWN, error="add answered without a readable record id"
                )
            logger.info("audit submitted", extra={**log, "record_id": record_id})
            return _settle_audit(services, audit, AuditStatus.PENDING, record_id=record_id)
        if isinstance(outcome, Unknown) and (
            settings.unknown_outcome_policy == UnknownOutcomePolicy.HOLD or delivery.last
        ):  # under the resend policy too once no delivery is left: an audit may exist upstream
            return _settle_audit(services, audit, AuditStatus.UNKNOWN, error=outcome.reason)
        permanent = isinstance(outcome, HttpError) and not outcome.retryable
        if permanent or delivery.last:
            return _settle_audit(services, audit, AuditStatus.FAILED, error=f"{outcome.reason}; gave up")
        audits.release_lease(audit, services.clock.now())
    except StaleAudit:
        logger.info("audit moved meanwhile; nothing to do", extra=log)
        return "stale"
    raise RetryLater(outcome.reason, retry_delay(services, outcome, delivery.receive_count))


_RECORD_ID: TypeAdapter[int] = TypeAdapter(Annotated[WireInt, Field(ge=1)])


def _record_id(data: object) -> int | None:
    """``/add``'s ``data``: the record id, a ``long`` (read as a number or a numeric string)."""
    try:
        return _RECORD_ID.validate_python(data)
    except ValueError:
        return None


def _settle_audit(
    services: Services, audit: Audit, to: AuditStatus, *, record_id: int | None = None, error: str = ""
) -> str:
    services.audits.settle_submission(audit, to, services.clock.now(), record_id=record_id, error=error)
    settle_job(services, audit.job_id)
    return to.value
