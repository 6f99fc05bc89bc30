"""One delivery of a work message: what SQS says of it, how long until the next one, and the send
lease another delivery may hold — one rule for batches and audits (docs/decisions.md#unknown-outcome)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from verifyfeed.config import Settings, UnknownOutcomePolicy
from verifyfeed.upstream.client import CallOutcome, HttpError


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


def backoff_seconds(settings: Settings, attempt: int) -> int:
    """Exponential backoff with full jitter, capped (SQS visibility allows at most 12 h)."""
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempt - 1))
    return int(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security


def retry_after(settings: Settings, outcome: CallOutcome) -> int | None:
    """The wait the upstream's ``Retry-After`` asked for (at most ``RETRY_AFTER_MAX_SECONDS``), if any."""
    if isinstance(outcome, HttpError) and outcome.retry_after_s is not None:
        return min(outcome.retry_after_s, settings.retry_after_max_seconds)
    return None


def retry_delay(settings: Settings, outcome: CallOutcome, attempt: int) -> int:
    """How long the message waits for its next delivery: the upstream's ``Retry-After``, else the backoff."""
    asked = retry_after(settings, outcome)
    return backoff_seconds(settings, attempt) if asked is None else asked


# ---- the send lease ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseHeld:
    """Another worker holds the lease: its request may be on its way."""

    wait_s: int  # until the lease ends
    last_delivery: bool  # and no delivery of this message comes after this one to see it end


@dataclass(frozen=True)
class LeaseLapsed:
    """The lease ran out with no answer recorded: its worker died after its request may have left."""


def read_lease(
    lease_until: datetime, now: datetime, delivery: Delivery, policy: UnknownOutcomePolicy
) -> LeaseHeld | LeaseLapsed | None:
    """What a lease found on the record means; ``None``: this delivery may take it and call.

    Both a live lease on the last delivery and a lapsed one under ``hold`` end as unknown, never
    sent again on their own: the earlier request may have been charged."""
    if lease_until > now:
        return LeaseHeld(int((lease_until - now).total_seconds()) + 1, delivery.last)
    if policy == UnknownOutcomePolicy.HOLD:
        return LeaseLapsed()
    return None
