"""The uploader's exactly-once guarantees, against the sandbox over HTTP and DynamoDB in moto.

Every assertion about "sent once" is made against the sandbox's ledger: what upstream received.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from sandbox.server import SandboxHandle
from tests import timeouts
from tests.integration.conftest import SettingsFactory, drain_queue, new_job, repair_records
from verifyfeed.clock import FixedClock
from verifyfeed.logic.poller import poll
from verifyfeed.logic.uploader import Delivery, RetryLater, load_records, upload_batch
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus, JobStatus
from verifyfeed.services import Services, build_services
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.jobs import JobStore

pytestmark = pytest.mark.integration


def message_for(services: Services, count: int = 3, start: int = 0) -> LostRepairBatchMessage:
    job = new_job(services)
    return LostRepairBatchMessage(
        job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=repair_records(count, start)
    )


def charged(sandbox: SandboxHandle) -> list[str]:
    return [r.idcode for r in sandbox.accepted_records()]


def batch_status(services: Services, message: LostRepairBatchMessage) -> BatchStatus:
    batch = services.jobs.get_batch(message.job_id, message.seq)
    assert batch is not None
    return batch.status


def test_success_is_recorded_with_serial_and_redelivery_sends_nothing(
    services: Services, sandbox: SandboxHandle
) -> None:
    message = message_for(services, 3)
    assert upload_batch(services, message, Delivery()) == "succeeded"
    assert sorted(charged(sandbox)) == sorted(r.idcode for r in message.records or [])
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.SUCCEEDED and batch.serial_no
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_succeeded == 1 and job.status == JobStatus.COMPLETED

    # SQS redelivers the same message (e.g. the Lambda timed out after finishing it)
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 3
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 1


def test_job_report_written_when_last_batch_settles(services: Services, sandbox: SandboxHandle) -> None:
    message = message_for(services, 2)
    upload_batch(services, message, Delivery())
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.report_key == f"reports/{job.key}/{job.job_id}.json"
    body = boto3.client("s3").get_object(Bucket=job.bucket, Key=job.report_key)["Body"].read()
    assert b'"batches_succeeded": 1' in body


def test_a_job_split_before_reports_were_per_job_gets_its_report_where_it_always_was(
    services: Services, sandbox: SandboxHandle
) -> None:
    job = new_job(services, written_before=True)
    upload_batch(
        services,
        LostRepairBatchMessage(
            job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=repair_records(1, 40)
        ),
        Delivery(),
    )
    settled = services.jobs.get_job(job.job_id)
    assert settled is not None and settled.report_key == f"reports/{job.key}.json"  # says where it is
    body = boto3.client("s3").get_object(Bucket=job.bucket, Key=settled.report_key)["Body"].read()
    assert json.loads(body)["job_id"] == job.job_id


def test_state0_for_a_single_record_is_retried_then_failed(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A file's batch of one record cannot be split: retried whole (docs/decisions.md#state-0)."""
    services = build_services(make_settings(STATE0_MAX_ATTEMPTS="2"), clock)
    message = message_for(services, 1)
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True})
    with pytest.raises(RetryLater):
        upload_batch(services, message, Delivery(receive_count=1))
    assert batch_status(services, message) == BatchStatus.RETRY
    assert upload_batch(services, message, Delivery(receive_count=2)) == "failed"
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.state0_count == 2 and "失败" in batch.upstream_desc
    assert charged(sandbox) == []
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_failed == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


def test_state0_then_success_sends_once_charged(services: Services, sandbox: SandboxHandle) -> None:
    message = message_for(services, 1)
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True, "count": 1})
    with pytest.raises(RetryLater):
        upload_batch(services, message, Delivery(receive_count=1))
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 1


def test_state0_for_several_records_splits_the_batch_in_halves_sent_each_once(
    services: Services, sandbox: SandboxHandle
) -> None:
    """A refused batch is not retried whole: its halves are batches of their own, queued, each sent
    under its own lease and charged once; redelivering any message sends nothing again."""
    queue_url = services.settings.work_queue_url
    drain_queue(queue_url)
    message = message_for(services, 3)
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True, "count": 1})
    assert upload_batch(services, message, Delivery()) == "refused"
    parent = services.jobs.get_batch(message.job_id, 1)
    assert parent is not None and parent.status == BatchStatus.BISECTED and "失败" in parent.upstream_desc
    halves = [LostRepairBatchMessage.model_validate(m) for m in drain_queue(queue_url)]
    halves = [h for h in halves if h.job_id == message.job_id]
    assert len(halves) == 2 and all(h.seq > 1 and h.claim_key for h in halves)
    assert [len(load_records(S3Blobs(), h)) for h in halves] == [2, 1]
    for half in halves:
        assert upload_batch(services, half, Delivery()) == "succeeded"
        assert upload_batch(services, half, Delivery(receive_count=2)) == "succeeded"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "bisected"
    assert sorted(charged(sandbox)) == sorted(r.idcode for r in message.records or [])
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 3
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    assert (job.batches_total, job.batches_succeeded, job.batches_bisected) == (3, 2, 1)


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried_and_the_batch_sent_once(
    services: Services, sandbox: SandboxHandle, status: int
) -> None:
    """Both say the request was not handled (RFC 6585 §4, RFC 9110 §15.6.4): sent again, by default."""
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": status, "count": 1})
    with pytest.raises(RetryLater) as raised:
        upload_batch(services, message, Delivery(receive_count=1))
    assert f"HTTP {status}" in raised.value.reason
    assert batch_status(services, message) == BatchStatus.RETRY
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 3
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 2


@pytest.mark.parametrize(
    ("status", "retry_after", "settings", "delay"),
    [
        (503, "120", {}, 120),
        (429, "Wed, 25 Nov 2026 02:01:30 GMT", {}, 90),  # an HTTP-date: 90 s after NOW (02:00 GMT)
        (503, "Wed, 25 Nov 2026 01:00:00 GMT", {}, 0),  # a date already past: at once
        (503, "7200", {"RETRY_AFTER_MAX_SECONDS": "1800"}, 1800),  # bounded
        (429, "86400", {}, 3600),  # bounded by the default maximum, an hour
    ],
)
def test_retry_after_is_the_delay_before_the_next_delivery_bounded(
    make_settings: SettingsFactory,
    clock: FixedClock,
    sandbox: SandboxHandle,
    status: int,
    retry_after: str,
    settings: dict[str, str],
    delay: int,
) -> None:
    services = build_services(make_settings(RETRY_BASE_SECONDS="10", **settings), clock)
    message = message_for(services)
    sandbox.set_faults(
        {"endpoint": "lost_repair", "status_code": status, "retry_after": retry_after, "count": 1}
    )
    with pytest.raises(RetryLater) as raised:
        upload_batch(services, message, Delivery(receive_count=1))
    assert raised.value.delay_s == delay
    assert batch_status(services, message) == BatchStatus.RETRY
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 3


def test_without_retry_after_the_backoff_applies(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(RETRY_BASE_SECONDS="10"), clock)
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": 503, "count": 1})
    with pytest.raises(RetryLater) as raised:
        upload_batch(services, message, Delivery(receive_count=3))
    assert 20 <= raised.value.delay_s <= 40  # the third delivery's backoff: 10 s * 2 ** 2, jittered


@pytest.mark.parametrize("phase", ["before", "after"])
@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_is_held_as_unknown_whether_or_not_upstream_processed_it(
    services: Services, sandbox: SandboxHandle, status: int, phase: str
) -> None:
    """A gateway's 5xx can come after the backend charged: we cannot tell, so we never resend."""
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": status, "phase": phase, "count": 1})
    assert upload_batch(services, message, Delivery(receive_count=1)) == "unknown"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "unknown"  # redelivery: nothing
    uploads = [e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]
    assert len(uploads) == 1  # sent once, whatever came back
    assert len(charged(sandbox)) == (3 if phase == "after" else 0)
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and f"HTTP {status}" in batch.last_error


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_fails_the_batch_uncharged_and_kept(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle, status: int
) -> None:
    """A 307/308 followed would send the batch again to the Location (here: the same API, so a
    follower is charged); a redirect says "not processed here": failed, never resent on its own,
    its body kept for an operator's re-drive. Not retried even when listed as retryable."""
    services = build_services(make_settings(UPSTREAM_RETRY_HTTP_STATUSES=f"429,{status}"), clock)
    message = message_for(services)
    moved = sandbox.url + "/verify/api/lost_repair_upload_data?moved=1"
    sandbox.set_faults({"endpoint": "lost_repair", "redirect_to": moved, "status_code": status, "count": 1})
    assert upload_batch(services, message, Delivery(receive_count=1)) == "failed"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "failed"  # redelivery: nothing
    (entry,) = sandbox.ledger()  # the sandbox never saw the request at the Location
    assert (entry.http_status, entry.processed) == (status, False)
    assert charged(sandbox) == []
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.FAILED
    assert f"HTTP {status} redirect to {moved}, not followed (not retryable)" in batch.last_error
    assert batch.claim_key, "its body is kept under claims/ for a re-drive"
    assert len(json.loads(services.blobs.get(batch.claim_bucket, batch.claim_key))) == 3


def test_retryable_statuses_are_configurable(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """An upstream whose 503 may follow a charge (behind a proxy that answers 503 for a connection
    lost after forwarding) is configured without it: its 503 is then held like any other 5xx."""
    services = build_services(make_settings(UPSTREAM_RETRY_HTTP_STATUSES="429"), clock)
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": 503, "phase": "after", "count": 1})
    assert upload_batch(services, message, Delivery(receive_count=1)) == "unknown"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "unknown"
    assert len(charged(sandbox)) == 3  # charged once; a resend would have charged it again


def test_state_as_a_number_is_success_and_charged_once(services: Services, sandbox: SandboxHandle) -> None:
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "answer": "state_as_number", "count": 1})
    assert upload_batch(services, message, Delivery()) == "succeeded"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 3


def test_success_code_without_data_is_held_not_resent(services: Services, sandbox: SandboxHandle) -> None:
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "answer": "no_data", "count": 1})
    assert upload_batch(services, message, Delivery()) == "unknown"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "unknown"
    assert len(charged(sandbox)) == 3  # it was charged once; a resend would have charged again
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 1


def test_retries_exhausted_marks_failed(services: Services, sandbox: SandboxHandle) -> None:
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": 429})
    assert upload_batch(services, message, Delivery(receive_count=8, max_receive_count=8)) == "failed"
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and "gave up" in batch.last_error
    assert charged(sandbox) == []


@pytest.mark.parametrize(
    ("fault", "client"),
    [
        # a read timeout after upstream accepted: the one case here about a timeout
        ({"timeout_s": 3.0, "phase": "after"}, timeouts.SHORT),
        ({"reset": True, "phase": "after"}, {}),  # connection reset after upstream accepted
        ({"invalid_json": True, "phase": "after"}, {}),  # 200 with garbage
    ],
    ids=["read_timeout", "reset", "invalid_json"],
)
def test_lost_answer_is_held_as_unknown_and_never_resent(
    make_settings: SettingsFactory,
    clock: FixedClock,
    sandbox: SandboxHandle,
    fault: dict[str, object],
    client: dict[str, str],
) -> None:
    services = build_services(make_settings(**client), clock)
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "count": 1, **fault})
    assert upload_batch(services, message, Delivery()) == "unknown"
    assert len(charged(sandbox)) == 3  # upstream did take it: this is why we must not resend
    assert upload_batch(services, message, Delivery(receive_count=2)) == "unknown"
    assert len(charged(sandbox)) == 3
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS
    assert [b.batch_id for b in services.jobs.batches_with_status(BatchStatus.UNKNOWN, 1000)].count(
        message.batch_id
    ) == 1


def test_resend_policy_retries_a_lost_answer(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(UNKNOWN_OUTCOME_POLICY="resend"), clock)
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "count": 1, "reset": True, "phase": "after"})
    with pytest.raises(RetryLater):
        upload_batch(services, message, Delivery())
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert len(charged(sandbox)) == 6  # paid twice: exactly what "resend" accepts


def test_connection_refused_is_not_sent_and_retried(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    with socket.socket() as s:  # bound and kept, never listening: nobody else can take the port
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
        services = build_services(make_settings(UPSTREAM_BASE_URL=f"http://127.0.0.1:{closed_port}"), clock)
        message = message_for(services)
        with pytest.raises(RetryLater) as raised:
            upload_batch(services, message, Delivery())
    assert "not connected" in raised.value.reason
    assert batch_status(services, message) == BatchStatus.RETRY


def test_worker_that_died_holding_the_lease_is_not_paid_twice(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A Lambda timeout mid-call: the lease is taken, the answer never recorded."""
    message = message_for(services)
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None
    services.jobs.transition(
        batch,
        BatchStatus.SENDING,
        clock.now(),
        lease_until=clock.now() + timedelta(seconds=120),
        count_attempt=True,
    )
    # while the lease is live, a concurrent redelivery backs off without sending
    with pytest.raises(RetryLater, match="lease"):
        upload_batch(services, message, Delivery(receive_count=2))
    # after the lease expires, the outcome is unknown: held, not resent
    clock.move_to(clock.now() + timedelta(seconds=121))
    assert upload_batch(services, message, Delivery(receive_count=3)) == "unknown"
    assert charged(sandbox) == []


def test_blackout_defers_then_poller_redrives_after_the_month_turns(
    services: Services, clock: FixedClock, sandbox: SandboxHandle, stack: object
) -> None:
    queue_url = services.settings.work_queue_url
    drain_queue(queue_url)
    clock.move_to(datetime.fromisoformat("2026-12-27T00:00:00+08:00"))
    sandbox.set_clock("2026-12-27T00:00:00+08:00")
    message = message_for(services, 2)
    assert upload_batch(services, message, Delivery()) == "deferred"
    assert charged(sandbox) == [] and sandbox.ledger() == []  # nothing was even attempted
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.status == JobStatus.DEFERRED and job.batches_deferred == 1

    # still in the window: the poller leaves it alone
    clock.move_to(datetime.fromisoformat("2026-12-31T23:59:00+08:00"))
    assert poll(services).batches_redriven == 0

    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))
    sandbox.set_clock("2027-01-01T00:00:01+08:00")
    report = poll(services)
    assert report.batches_redriven >= 1
    redriven = [m for m in drain_queue(queue_url) if m.get("batch_id") == message.batch_id]
    assert len(redriven) == 1 and redriven[0]["claim_key"]
    again = LostRepairBatchMessage.model_validate(redriven[0])
    assert upload_batch(services, again, Delivery()) == "succeeded"
    assert len(charged(sandbox)) == 2
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED and job.batches_deferred == 0


def test_upstream_blackout_answer_defers(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Our clock says open, upstream's says closed (clock skew at midnight): defer, don't fail."""
    clock.move_to(datetime.fromisoformat("2026-12-26T23:59:58+08:00"))
    sandbox.set_clock("2026-12-27T00:00:05+08:00")
    message = message_for(services)
    assert upload_batch(services, message, Delivery()) == "deferred"
    assert charged(sandbox) == []
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.last_error.startswith("upstream 10027")


# ---- a charged answer whatever its code -------------------------------------------------------------


def test_an_error_code_with_state_1_is_held_not_resent(services: Services, sandbox: SandboxHandle) -> None:
    """``data.state`` "1" is charged (spec) whatever ``code`` says: such an answer contradicts itself,
    so the batch is held for an operator, never read as a refusal and sent again."""
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "answer": "error_code_with_state_1", "count": 1})
    assert upload_batch(services, message, Delivery()) == "unknown"
    assert upload_batch(services, message, Delivery(receive_count=2)) == "unknown"
    assert len(charged(sandbox)) == 3  # charged once; a resend would have charged it again
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 1
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and "code 50000" in batch.last_error and "state 1" in batch.last_error
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


# ---- the last delivery settles the batch ----------------------------------------------------------
# SQS dead-letters a message after its last delivery (QUEUE_MAX_RECEIVE_COUNT): a batch left `retry`
# or `sending` then would wait for a message that never comes, and its job would never finish.

LAST = Delivery(receive_count=8, max_receive_count=8)


def test_the_last_delivery_fails_a_one_record_batch_refused_with_state0(
    services: Services, sandbox: SandboxHandle
) -> None:
    """Six 429s, then state "0" on the last two deliveries (fewer than STATE0_MAX_ATTEMPTS)."""
    message = message_for(services, 1)
    sandbox.set_faults(
        [
            {"endpoint": "lost_repair", "status_code": 429, "count": 6},
            {"endpoint": "lost_repair", "state0": True},
        ]
    )
    for receive_count in range(1, 8):
        with pytest.raises(RetryLater):
            upload_batch(services, message, Delivery(receive_count=receive_count, max_receive_count=8))
    assert upload_batch(services, message, LAST) == "failed"
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.state0_count == 2 and "失败" in batch.upstream_desc
    assert charged(sandbox) == []
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_failed == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


def test_the_last_delivery_holds_a_batch_another_worker_is_sending(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Another worker's send lease is live: its request may have left, and no delivery comes after
    this one to see the lease run out. Held as unknown, nothing sent."""
    message = message_for(services)
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None
    services.jobs.transition(
        batch,
        BatchStatus.SENDING,
        clock.now(),
        lease_until=clock.now() + timedelta(seconds=120),
        count_attempt=True,
    )
    assert upload_batch(services, message, LAST) == "unknown"
    held = services.jobs.get_batch(message.job_id, 1)
    assert held is not None and held.status == BatchStatus.UNKNOWN and "lease" in held.last_error
    assert sandbox.ledger() == []
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


class LeasedMeanwhile(JobStore):
    """DynamoDB as it is, except that another worker takes the send lease first (once)."""

    raced = False

    def transition(self, batch: Batch, to: BatchStatus, now: datetime, **kwargs: Any) -> Batch:
        if to == BatchStatus.SENDING and not self.raced:
            self.raced = True
            super().transition(batch, to, now, lease_until=now + timedelta(seconds=120), count_attempt=True)
        return super().transition(batch, to, now, **kwargs)


def test_a_delivery_that_loses_the_lease_leaves_the_batch_to_the_winner(
    services: Services, sandbox: SandboxHandle
) -> None:
    """Another worker took the send lease between this delivery's read and its own try for it: an
    earlier delivery looks again later; the last one leaves the batch to the winner, which is
    sending it (not held as unknown under a live sender, not dead-lettered for nothing)."""
    for delivery in (Delivery(receive_count=1), LAST):
        services.jobs = LeasedMeanwhile(services.settings.jobs_table)  # through Services, as the uploader
        message = message_for(services)
        if delivery.last:
            assert upload_batch(services, message, delivery) == "sending"
        else:
            with pytest.raises(RetryLater, match="changed while taking its send lease"):
                upload_batch(services, message, delivery)
        batch = services.jobs.get_batch(message.job_id, 1)
        assert batch is not None and batch.status == BatchStatus.SENDING and batch.attempts == 1
    assert sandbox.ledger() == []  # the winner's request is its own: nothing was sent by these deliveries


def test_the_last_delivery_fails_a_batch_still_refused_by_429(
    services: Services, sandbox: SandboxHandle
) -> None:
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": 429})
    assert upload_batch(services, message, LAST) == "failed"
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and "gave up" in batch.last_error
    assert charged(sandbox) == []


def test_the_last_delivery_under_the_resend_policy_holds_a_lost_answer(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """``resend`` retries a lost answer; when no retry is left, it may have been charged: unknown."""
    services = build_services(make_settings(UNKNOWN_OUTCOME_POLICY="resend"), clock)
    message = message_for(services)
    sandbox.set_faults({"endpoint": "lost_repair", "reset": True, "phase": "after", "count": 1})
    assert upload_batch(services, message, LAST) == "unknown"
    assert len(charged(sandbox)) == 3
    job = services.jobs.get_job(message.job_id)
    assert job is not None and job.batches_unknown == 1 and job.batches_failed == 0


def test_the_last_delivery_leaves_nothing_to_settle_when_the_batch_has_no_record(
    services: Services, sandbox: SandboxHandle
) -> None:
    """A message for a batch that was never recorded (the splitter records each before queueing it):
    dead-lettered as it is; nothing sent."""
    job = new_job(services)
    stray = LostRepairBatchMessage(
        job_id=job.job_id, batch_id=f"{job.job_id}#00009", seq=9, records=repair_records(1)
    )
    with pytest.raises(RetryLater, match="not found"):
        upload_batch(services, stray, LAST)
    assert sandbox.ledger() == []
