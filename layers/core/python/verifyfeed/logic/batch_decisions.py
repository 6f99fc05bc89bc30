"""What to do with a lost-repair batch, decided from values alone: before it is sent (``before_send``)
and on the upstream's answer (``on_answer``). No I/O, no clock: ``batch_upload`` reads, then applies
the decision in one place. The rules, in order: docs/decisions.md#upload-decisions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from verifyfeed.config import Settings, UnknownOutcomePolicy
from verifyfeed.logic.bisection import in_tree
from verifyfeed.logic.delivery import Delivery, LeaseHeld, LeaseLapsed, read_lease, retry_after
from verifyfeed.models.envelope import UnifiedResponse
from verifyfeed.models.lost_repair import VerifyState
from verifyfeed.models.records import Batch, BatchFields, BatchStatus
from verifyfeed.upstream.client import Answered, CallOutcome, HttpError, NotSent, Unknown

# Upstream codes that mean "the monthly window is closed" rather than "your data is bad".
BLACKOUT_CODES = frozenset({"10027"})


@dataclass(frozen=True)
class Send:
    """Take the send lease and call the upstream."""


@dataclass(frozen=True)
class Redelivered:
    """Answered already (settled or refused): nothing is sent; its tree and job are moved on."""


@dataclass(frozen=True)
class Wait:
    """Nothing written: the message comes back after ``delay_s``."""

    reason: str
    delay_s: int


@dataclass(frozen=True)
class Defer:
    """The blackout: parked ``deferred`` (its body kept); the poller sends it after the window."""

    last_error: str = ""
    resumes_at: datetime | None = field(default=None, compare=False)  # for the log


@dataclass(frozen=True)
class Settle:
    """The batch ends: ``succeeded`` (charged), ``failed`` (not charged) or ``unknown`` (it may have
    been charged: held for an operator, never resent on its own)."""

    to: BatchStatus
    fields: BatchFields
    count_state0: bool = False
    # the write is retried while the invocation has time (an answer that must not be lost)
    in_time: bool = True
    # another worker may settle it first: what it recorded stands
    contested: bool = False
    log: str = field(default="", compare=False)
    log_extra: dict[str, Any] = field(default_factory=dict, compare=False)
    log_level: Literal["info", "warning", "error"] = field(default="warning", compare=False)


@dataclass(frozen=True)
class Refuse:
    """``state`` "0" for a batch that may be split: recorded ``refused``; ``bisection`` decides its
    tree (docs/decisions.md#state-0)."""

    fields: BatchFields
    records: int


@dataclass(frozen=True)
class Retry:
    """Not charged and worth another try: ``retry``, and the message comes back after the upstream's
    ``Retry-After`` or, without one, the backoff for ``attempt``."""

    reason: str
    attempt: int
    retry_after_s: int | None = None
    count_state0: bool = False


Decision = Redelivered | Wait | Defer | Settle | Refuse | Retry

LEASE_HELD_ON_LAST_DELIVERY = Settle(
    BatchStatus.UNKNOWN,
    {"last_error": "another worker held the send lease on the message's last delivery"},
    contested=True,
    log="send lease held on the last delivery; batch held as unknown",
)
LEASE_LAPSED = Settle(
    BatchStatus.UNKNOWN,
    {"last_error": "a send attempt ended without a recorded answer"},
    in_time=False,
    log="send attempt died mid-flight; batch held as unknown",
)
BODY_MISSING = Settle(
    BatchStatus.FAILED,
    {"last_error": "the batch body is missing: nothing sent"},
    in_time=False,
    log="batch body missing; failed without sending",
    log_level="error",
)


def before_send(
    batch: Batch, now: datetime, resumes_at: datetime | None, delivery: Delivery, settings: Settings
) -> Decision | Send:
    """``resumes_at``: the end of the blackout ``now`` falls in, or ``None`` outside it."""
    if batch.status.settled or batch.status == BatchStatus.REFUSED:
        return Redelivered()
    if batch.status == BatchStatus.SENDING:
        lease_until = datetime.fromisoformat(batch.lease_until) if batch.lease_until else now
        match read_lease(lease_until, now, delivery, settings.unknown_outcome_policy):
            case LeaseHeld(last_delivery=True):
                return LEASE_HELD_ON_LAST_DELIVERY
            case LeaseHeld(wait_s=wait_s):
                return Wait("another worker holds the send lease", wait_s)
            case LeaseLapsed():
                return LEASE_LAPSED
    if resumes_at is not None:
        return Defer(resumes_at=resumes_at)
    return Send()


def on_answer(
    outcome: CallOutcome, batch: Batch, records: int, delivery: Delivery, settings: Settings
) -> Decision:
    """What the answer to the call of ``batch`` (as leased: ``sending``) of ``records`` decides."""
    if isinstance(outcome, Answered):
        ambiguous = ambiguity(outcome.response)
        if ambiguous is None:
            return _answered(outcome.response, batch, records, delivery, settings)
        outcome = Unknown(reason=ambiguous, elapsed_ms=outcome.elapsed_ms)
    return _not_answered(outcome, batch, delivery, settings)


def verify_state(response: UnifiedResponse) -> VerifyState | None:
    """The answer's ``data`` as a ``state``, or ``None`` when it is not one."""
    if isinstance(response.data, dict):
        try:
            return VerifyState.model_validate(response.data)
        except ValueError:
            return None
    return None


def ambiguity(response: UnifiedResponse) -> str | None:
    """Why an answer may follow a charge without saying so (held as unknown), or ``None``."""
    state = verify_state(response)
    if response.ok and state is None:
        return f"upstream code {response.code} with a data field that is not a state"
    if not response.ok and state is not None and state.charged:  # contradicts itself
        return f"upstream code {response.code} with state 1 (charged): {response.message}"[:500]
    return None


def _answered(
    response: UnifiedResponse, batch: Batch, records: int, delivery: Delivery, settings: Settings
) -> Decision:
    state = verify_state(response)
    envelope = json.dumps(response.scalars(), ensure_ascii=False)
    if response.ok and state is not None and state.charged:
        fields: BatchFields = {
            "upstream_code": response.code,
            "upstream_desc": state.desc,
            "serial_no": response.serialNo or "",
            "upstream_envelope": envelope,
        }
        extra = {"serial_no": response.serialNo}
        return Settle(BatchStatus.SUCCEEDED, fields, log="batch uploaded", log_extra=extra, log_level="info")
    if response.code in BLACKOUT_CODES:
        return Defer(last_error=f"upstream {response.code}: {response.message}")
    # state 0, or a refusal code: not charged
    desc = state.desc if state is not None else response.message
    reason = f"upstream code {response.code}, state {state.state if state else '-'}: {desc}"
    fields = {
        "last_error": reason,
        "upstream_code": response.code,
        "upstream_desc": desc,
        "upstream_envelope": envelope,
    }
    split = settings.state0_bisect_max_calls > 0 and (records > 1 or in_tree(batch))
    if response.ok and state is not None and split:
        return Refuse(fields, records)
    attempts_spent = batch.state0_count + 1 >= settings.state0_max_attempts
    if attempts_spent or in_tree(batch) or delivery.last:
        return Settle(
            BatchStatus.FAILED, fields, count_state0=True, log="batch failed", log_extra={"reason": reason}
        )
    return Retry(reason, attempt=batch.state0_count + 1, count_state0=True)


def _not_answered(
    outcome: NotSent | HttpError | Unknown, batch: Batch, delivery: Delivery, settings: Settings
) -> Decision:
    if isinstance(outcome, Unknown) and settings.unknown_outcome_policy == UnknownOutcomePolicy.HOLD:
        return Settle(
            BatchStatus.UNKNOWN,
            {"last_error": outcome.reason},
            log="answer lost after sending; batch held as unknown",
            log_extra={"reason": outcome.reason},
        )
    reason = outcome.reason
    permanent = isinstance(outcome, HttpError) and not outcome.retryable
    if permanent:
        reason = f"{outcome.reason} (not retryable)"
    if delivery.last or permanent:
        # a lost answer (retried under the resend policy) may have been charged; the rest was not
        to = BatchStatus.UNKNOWN if isinstance(outcome, Unknown) else BatchStatus.FAILED
        return Settle(
            to,
            {"last_error": f"{reason}; gave up after {batch.attempts} attempts"},
            log=f"batch {to.value}: retries spent",
            log_extra={"reason": reason},
        )
    return Retry(reason, attempt=delivery.receive_count, retry_after_s=retry_after(settings, outcome))
