"""Injected faults: the sandbox's knobs, work killed midway, and SQS delivering the same message
twice at once. A file goes through the splitter, its batches through the real work queue and the
uploader *handler* (partial batch responses, redelivery, the dead-letter queue), and the sandbox's
ledger decides: every accepted row reached upstream exactly once, or its batch is visibly flagged
(failed / unknown / deferred / dead-lettered); never silently lost, never silently sent twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from local.events import sqs_event
from local.lambda_context import new_context
from local.runtime import load_handler
from sandbox.server import SandboxHandle
from tests import timeouts
from tests.integration.conftest import DECISION_DELAY_S, ROOT, SettingsFactory, drain_queue
from tests.reliability.support import (
    ConflictingClient,
    check_ledger,
    dead_letters,
    drop,
    isolated_transactions,
    pump_uploader,
    release_and_drain,
    repair_row,
    settled,
)
from tests.reliability.test_hostile_files import csv_bytes
from verifyfeed.clock import FixedClock
from verifyfeed.logic.poller import poll
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.logic.uploader import Delivery, RetryLater, SettleFailed, submit_audit, upload_batch
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, BatchStatus, JobStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services, build_services
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.jobs import JobStore
from verifyfeed.store.queue import SqsWorkQueue

pytestmark = pytest.mark.integration
PER_BATCH = 4
_starts = iter(range(100_000, 10**7, 1_000))


class WorkerKilled(BaseException):
    """The process died here (a Lambda timeout or a crash): no ``except Exception`` catches it."""


@dataclass
class Split:
    job_id: str
    sent: dict[int, list[str]]  # batch seq -> the idcodes it carries
    messages: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def small_batches(make_settings: SettingsFactory, clock: FixedClock) -> Services:
    return build_services(make_settings(BATCH_MAX_RECORDS=str(PER_BATCH)), clock)


def split_file(services: Services, rows: int, *, leave_in_queue: bool = True) -> Split:
    """Drop a file of ``rows`` valid people; the splitter queues ceil(rows / PER_BATCH) batches."""
    queue = services.settings.work_queue_url
    drain_queue(queue)
    start = next(_starts)
    people = [repair_row(start + i, phone=i % 2 == 0) for i in range(rows)]
    key = f"lost-repair/faults-{start}.csv"
    event = drop(services.settings.ingest_bucket, key, csv_bytes(people))
    result = split_object(services, DroppedObject.from_event_record(event["Records"][0]))
    assert result.outcome == "split" and result.counts.rows_accepted == rows
    idcodes = [sha256_hex(p[1]) for p in people]
    sent = {seq + 1: idcodes[seq * PER_BATCH : (seq + 1) * PER_BATCH] for seq in range(-(-rows // PER_BATCH))}
    split = Split(result.job_id, sent)
    if not leave_in_queue:
        split.messages = [m for m in drain_queue(queue) if m.get("job_id") == result.job_id]
    return split


# ---- the fault matrix, through the uploader handler ---------------------------------------------


@dataclass
class Scenario:
    id: str
    faults: list[dict[str, Any]]
    statuses: dict[str, int]  # the final statuses of the 3 batches and of any halves split from them
    charged: int  # distinct rows upstream holds at the end (12 accepted)
    sandbox_clock: str = ""
    retried: int = 0  # deliveries the handler must have reported as failed (and SQS redelivered)
    short_timeouts: bool = False  # about the client's read timeout: timeouts.SHORT, not GENEROUS


LR = {"endpoint": "lost_repair"}
SCENARIOS = [
    # a 5xx may follow a charge (a gateway answering after the backend processed): held, never resent
    Scenario("http_500_once", [{**LR, "status_code": 500, "count": 1}], {"succeeded": 2, "unknown": 1}, 8),
    Scenario("http_502_twice", [{**LR, "status_code": 502, "count": 2}], {"succeeded": 1, "unknown": 2}, 4),
    Scenario(
        "http_502_after_processing",
        [{**LR, "status_code": 502, "phase": "after", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,  # the held batch was charged once: a resend would have charged it again
    ),
    # 429 and 503 say the request was not handled: sent again (after their Retry-After)
    Scenario("http_503_once", [{**LR, "status_code": 503, "count": 1}], {"succeeded": 3}, 12, retried=1),
    Scenario(
        "http_503_with_retry_after",
        [{**LR, "status_code": 503, "retry_after": "0", "count": 2}],
        {"succeeded": 3},
        12,
        retried=2,
    ),
    Scenario("http_429_once", [{**LR, "status_code": 429, "count": 1}], {"succeeded": 3}, 12, retried=1),
    Scenario(
        "gateway_timeout_504", [{**LR, "timeout_s": 0.2, "count": 1}], {"succeeded": 2, "unknown": 1}, 8
    ),
    Scenario("state_as_a_number", [{**LR, "answer": "state_as_number"}], {"succeeded": 3}, 12),
    Scenario(
        "success_code_without_data",
        [{**LR, "answer": "no_data", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,
    ),
    Scenario(  # state "1" is charged whatever the code says: held, never read as a refusal
        "error_code_with_state_1",
        [{**LR, "answer": "error_code_with_state_1", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,
    ),
    Scenario(
        "http_400_is_not_retried", [{**LR, "status_code": 400, "count": 1}], {"succeeded": 2, "failed": 1}, 8
    ),
    Scenario("http_503_for_ever", [{**LR, "status_code": 503}], {"failed": 3}, 0, retried=21),
    Scenario("http_429_for_ever", [{**LR, "status_code": 429}], {"failed": 3}, 0, retried=21),
    Scenario(
        "error_rate_50_percent_429",
        [{**LR, "error_rate": 0.5, "status_code": 429}],
        {"succeeded": 3},
        12,
        retried=1,
    ),
    Scenario(
        "read_timeout_before_processing",
        [{**LR, "timeout_s": 2.5, "count": 1}],
        {"succeeded": 2, "unknown": 1},
        8,
        short_timeouts=True,
    ),
    Scenario(
        "read_timeout_after_acceptance",
        [{**LR, "timeout_s": 2.5, "phase": "after", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,
        short_timeouts=True,
    ),
    Scenario(
        "reset_before_processing", [{**LR, "reset": True, "count": 1}], {"succeeded": 2, "unknown": 1}, 8
    ),
    Scenario(
        "reset_after_acceptance",
        [{**LR, "reset": True, "phase": "after", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,
    ),
    Scenario(
        "invalid_json_before_processing",
        [{**LR, "invalid_json": True, "count": 1}],
        {"succeeded": 2, "unknown": 1},
        8,
    ),
    Scenario(
        "invalid_json_after_acceptance",
        [{**LR, "invalid_json": True, "phase": "after", "count": 1}],
        {"succeeded": 2, "unknown": 1},
        12,
    ),
    # state "0" splits a batch in halves (docs/decisions.md#state-0): once, the halves go through;
    # always, each batch of 4 is split twice (1 + 2 + 4 calls) and its 4 rows fail one by one
    Scenario("state0_once", [{**LR, "state0": True, "count": 1}], {"succeeded": 4, "bisected": 1}, 12),
    Scenario("state0_always", [{**LR, "state0": True}], {"bisected": 9, "failed": 12}, 0),
    Scenario("slow_200ms", [{**LR, "latency_ms": 200}], {"succeeded": 3}, 12),
    Scenario("slow_1200ms", [{**LR, "latency_ms": 1200}], {"succeeded": 3}, 12),
    Scenario(
        "mixed_429_reset_after_state0",
        [
            {**LR, "status_code": 429, "count": 1},
            {**LR, "reset": True, "phase": "after", "count": 1},
            {**LR, "state0": True, "count": 1},
        ],
        {"succeeded": 3, "unknown": 1, "bisected": 1},
        12,
        retried=1,
    ),
    Scenario("upstream_in_blackout", [], {"deferred": 3}, 0, sandbox_clock="2026-12-27T00:00:05+08:00"),
]


@pytest.fixture(scope="module")
def short_timeout_uploader(handler_env: dict[str, str]) -> Iterator[Any]:
    """An uploader handler whose client gives up after ``timeouts.SHORT``, in an execution environment
    of its own (a Lambda deployed with UPSTREAM_READ_TIMEOUT=1.5): for the scenarios about timeouts."""
    import os
    import sys

    from verifyfeed.config import get_settings
    from verifyfeed.services import get_services

    name = f"uploader_short_timeouts_{id(handler_env)}"
    saved = {k: os.environ[k] for k in timeouts.SHORT}
    os.environ.update(timeouts.SHORT)
    get_settings.cache_clear()
    get_services.cache_clear()
    try:
        handler = load_handler(name, ROOT / "functions" / "uploader" / "app.py")
    finally:
        os.environ.update(saved)
        get_settings.cache_clear()
        get_services.cache_clear()
    assert handler_services(handler).settings.read_timeout_s == float(timeouts.SHORT["UPSTREAM_READ_TIMEOUT"])
    yield handler
    sys.modules.pop(f"verifyfeed_fn_{name}", None)


def handler_services(handler: Any) -> Services:
    """The ``Services`` a loaded handler module runs with (built once, at its import)."""
    import sys

    services: Services = sys.modules[handler.__module__].services
    return services


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_fault(
    scenario: Scenario,
    small_batches: Services,
    sandbox: SandboxHandle,
    uploader_handler: Any,
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    uploader = uploader_handler
    if scenario.short_timeouts:
        uploader = request.getfixturevalue("short_timeout_uploader")
    split = split_file(small_batches, 3 * PER_BATCH)
    if scenario.sandbox_clock:  # upstream's clock is past midnight on the 26th, ours a little behind
        ours = FixedClock(datetime.fromisoformat(scenario.sandbox_clock) - timedelta(seconds=7))
        monkeypatch.setattr(handler_services(uploader), "clock", ours)
        monkeypatch.setattr(handler_services(uploader).upstream, "_clock", ours)
        sandbox.set_clock(scenario.sandbox_clock)
    sandbox.set_faults(scenario.faults)

    started = time.perf_counter()
    stats = pump_uploader(
        uploader,
        small_batches.settings.work_queue_url,
        jobs=[split.job_id],
        done=settled(small_batches, split.job_id),
        timeout_s=90,
    )
    elapsed = time.perf_counter() - started

    dlq = {m.get("batch_id", "") for m in dead_letters(stack.dlq_url)}
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent, dlq)
    assert dict(check.statuses) == scenario.statuses
    assert len(sandbox.record_counts()) == scenario.charged
    assert stats.item_failures >= scenario.retried and stats.handler_errors == 0
    job = small_batches.jobs.get_job(split.job_id)
    assert job is not None
    expected_job = (
        JobStatus.DEFERRED
        if scenario.statuses.get("deferred")
        else JobStatus.COMPLETED
        if set(scenario.statuses) <= {"succeeded", "bisected"}
        else JobStatus.COMPLETED_WITH_ERRORS
    )
    assert job.status == expected_job
    print(f"{scenario.id}: {stats} in {elapsed:.2f}s")


# ---- the last delivery ----------------------------------------------------------------------------


def test_a_batch_retried_up_to_its_last_delivery_is_settled_not_left_to_the_dead_letter_queue(
    small_batches: Services, sandbox: SandboxHandle, uploader_handler: Any, stack: Any
) -> None:
    """A file's batch of one record: six 429s, then state "0" on the 7th and 8th deliveries (fewer
    than STATE0_MAX_ATTEMPTS). SQS dead-letters a message after its 8th delivery (maxReceiveCount),
    so the 8th must settle the batch: failed, not `retry` with its job `uploading` for ever."""
    split = split_file(small_batches, 1)
    sandbox.set_faults([{**LR, "status_code": 429, "count": 6}, {**LR, "state0": True}])
    stats = pump_uploader(  # visibility 0: as if each backoff had passed
        uploader_handler,
        small_batches.settings.work_queue_url,
        jobs=[split.job_id],
        done=settled(small_batches, split.job_id),
        visibility_s=0,
    )
    assert (stats.deliveries, stats.item_failures, stats.handler_errors) == (8, 7, 0)
    (batch,) = small_batches.jobs.batches(split.job_id)
    assert batch.batch_id not in {m.get("batch_id") for m in dead_letters(stack.dlq_url)}
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"failed": 1} and batch.state0_count == 2 and "失败" in batch.upstream_desc
    job = small_batches.jobs.get_job(split.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED_WITH_ERRORS
    assert upload_requests(sandbox) == 8


# ---- killed midway -------------------------------------------------------------------------------


def die_before_recording(monkeypatch: pytest.MonkeyPatch, status: BatchStatus) -> list[str]:
    """The worker dies once, right before it records a batch as ``status`` (after upstream answered)."""
    original = JobStore.transition
    died: list[str] = []

    def transition(self: JobStore, batch: Any, to: BatchStatus, now: Any, **kwargs: Any) -> Any:
        if to == status and not died:
            died.append(batch.batch_id)
            raise WorkerKilled(f"killed before recording {batch.batch_id} as {to.value}")
        return original(self, batch, to, now, **kwargs)

    monkeypatch.setattr(JobStore, "transition", transition)
    return died


def upload_requests(sandbox: SandboxHandle) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")])


def test_worker_dies_between_upstream_success_and_its_own_write(
    small_batches: Services, clock: FixedClock, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = split_file(small_batches, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    died = die_before_recording(monkeypatch, BatchStatus.SUCCEEDED)
    with pytest.raises(WorkerKilled):
        upload_batch(small_batches, message, Delivery())
    monkeypatch.undo()
    assert died and len(sandbox.record_counts()) == PER_BATCH  # upstream accepted and charged it
    batch = small_batches.jobs.get_batch(split.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.SENDING

    # SQS redelivers while the dead worker's lease still runs: nothing is sent
    with pytest.raises(RetryLater, match="lease"):
        upload_batch(small_batches, message, Delivery(receive_count=2))
    # and after it ran out: held as unknown for an operator, never paid for twice
    clock.move_to(clock.now() + timedelta(seconds=small_batches.settings.send_lease_seconds + 1))
    assert upload_batch(small_batches, message, Delivery(receive_count=3)) == "unknown"
    assert upload_batch(small_batches, message, Delivery(receive_count=4)) == "unknown"
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"unknown": 1} and check.flagged_but_charged == PER_BATCH
    assert upload_requests(sandbox) == 1


@pytest.fixture
def fresh_uploaders(handler_env: dict[str, str], stack: Any) -> Iterator[list[Any]]:
    """Uploader handlers in execution environments of their own (their own Powertools batch
    processor and idempotency layer), as Lambda runs concurrent invocations; each as its role."""
    import sys

    names = [f"uploader_rel_{n}_{id(handler_env)}" for n in range(2)]
    role = stack.roles["UploaderFunction"]
    yield [load_handler(name, ROOT / "functions" / "uploader" / "app.py", role=role) for name in names]
    for name in names:
        sys.modules.pop(f"verifyfeed_fn_{name}", None)


def receive_all(queue_url: str, job_id: str, expected: int, visibility: int) -> list[dict[str, Any]]:
    """Receive the job's ``expected`` messages (another test's stragglers are deleted)."""
    sqs = boto3.client("sqs")
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(got) < expected and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=visibility
        ).get("Messages", []):
            if json.loads(message["Body"]).get("job_id") == job_id:
                got.append(message)
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert len(got) == expected
    return got


def expire_in_progress_idempotency_records(services: Services) -> int:
    """What time does to a dead invocation's INPROGRESS record (it expires with its remaining time)."""
    db = boto3.client("dynamodb")
    items = db.scan(TableName=services.settings.idempotency_table).get("Items", [])
    stale = [i for i in items if i.get("status", {}).get("S") == "INPROGRESS"]
    for item in stale:
        db.delete_item(TableName=services.settings.idempotency_table, Key={"id": item["id"]})
    return len(stale)


def test_uploader_handler_killed_after_upstream_accepted(
    small_batches: Services,
    sandbox: SandboxHandle,
    fresh_uploaders: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from verifyfeed.services import get_services

    uploader = fresh_uploaders[0]
    queue = small_batches.settings.work_queue_url
    split = split_file(small_batches, PER_BATCH)
    [first] = receive_all(queue, split.job_id, 1, visibility=0)
    died = die_before_recording(monkeypatch, BatchStatus.SUCCEEDED)
    with pytest.raises(WorkerKilled):
        uploader(sqs_event([first]), new_context("uploader", 120, 1024))
    monkeypatch.undo()
    assert died and upload_requests(sandbox) == 1 and len(sandbox.record_counts()) == PER_BATCH
    assert expire_in_progress_idempotency_records(small_batches) == 1

    # redelivered while the lease is live: reported as a failed item, nothing sent
    [second] = receive_all(queue, split.job_id, 1, visibility=30)
    reply = uploader(sqs_event([second]), new_context("uploader", 120, 1024))
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [second["MessageId"]]
    assert upload_requests(sandbox) == 1

    # the lease runs out; SQS delivers again (the backoff the handler asked for has passed)
    env_services = get_services()  # what every loaded handler module runs with
    later = env_services.clock.now() + timedelta(seconds=env_services.settings.send_lease_seconds + 1)
    monkeypatch.setattr(env_services, "clock", FixedClock(later))
    boto3.client("sqs").change_message_visibility(
        QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0
    )
    stats = pump_uploader(uploader, queue, jobs=[split.job_id], done=settled(small_batches, split.job_id))
    assert stats.item_failures == 0
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"unknown": 1} and check.flagged_but_charged == PER_BATCH
    assert upload_requests(sandbox) == 1


def test_splitter_killed_while_staging_sends_nothing_then_the_retry_resumes(
    small_batches: Services, sandbox: SandboxHandle, uploader_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: a split that dies midway has queued no message at all; the retried
    notification resumes it (batches already staged are not staged again) and releases all five."""
    queue = small_batches.settings.work_queue_url
    drain_queue(queue)
    start = next(_starts)
    people = [repair_row(start + i) for i in range(5 * PER_BATCH)]
    event = drop(small_batches.settings.ingest_bucket, f"lost-repair/killed-{start}.csv", csv_bytes(people))
    dropped = DroppedObject.from_event_record(event["Records"][0])

    class DiesOnThirdClaimCheck(S3Blobs):
        """S3 as it is, except that the process dies writing the third staged body."""

        claim_checks = 0

        def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
            if key.startswith("claims/"):
                self.claim_checks += 1
                if self.claim_checks == 3:
                    raise WorkerKilled("splitter killed while staging batch 3")
            super().put(bucket, key, body, content_type)

    small_batches.blobs = DiesOnThirdClaimCheck()  # through Services, as the splitter reaches S3
    with pytest.raises(WorkerKilled):
        split_object(small_batches, dropped)
    small_batches.blobs = S3Blobs()  # the retried event runs in a new process
    job = small_batches.jobs.get_job(dropped.job_id)
    assert job is not None and job.status == JobStatus.SPLITTING and not job.released_at
    assert [m for m in drain_queue(queue) if m.get("job_id") == dropped.job_id] == []  # nothing queued
    staged = {b.seq for b in small_batches.jobs.batches(dropped.job_id)}
    assert staged and all(b.status == BatchStatus.STAGED for b in small_batches.jobs.batches(dropped.job_id))

    # S3 / Lambda retry the notification: the split resumes and releases every batch once
    again = split_object(small_batches, dropped)
    assert again.outcome == "split" and again.counts.rows_accepted == 5 * PER_BATCH
    stats = pump_uploader(
        uploader_handler, queue, jobs=[dropped.job_id], done=settled(small_batches, dropped.job_id)
    )
    assert stats.deliveries == 5

    idcodes = [sha256_hex(p[1]) for p in people]
    sent = {seq + 1: idcodes[seq * PER_BATCH : (seq + 1) * PER_BATCH] for seq in range(5)}
    check = check_ledger(small_batches, sandbox, dropped.job_id, sent)
    assert check.statuses == {"succeeded": 5} and check.charged_rows == 5 * PER_BATCH
    assert upload_requests(sandbox) == 5


def test_splitter_killed_while_releasing_then_the_retry_releases_the_rest(
    small_batches: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    """The file was read and the job is uploading, but the messages never left: the retried
    notification finds the job unreleased and queues what is still staged."""

    queue = small_batches.settings.work_queue_url
    drain_queue(queue)
    start = next(_starts)
    people = [repair_row(start + i) for i in range(5 * PER_BATCH)]
    event = drop(
        small_batches.settings.ingest_bucket, f"lost-repair/unreleased-{start}.csv", csv_bytes(people)
    )
    dropped = DroppedObject.from_event_record(event["Records"][0])

    class DiesSending(SqsWorkQueue):
        def send_all(self, bodies: Sequence[str]) -> None:
            raise WorkerKilled("splitter killed while releasing")

    small_batches.queue = DiesSending(queue)  # through Services, as the splitter reaches SQS
    with pytest.raises(WorkerKilled):
        split_object(small_batches, dropped)
    small_batches.queue = SqsWorkQueue(queue)
    job = small_batches.jobs.get_job(dropped.job_id)
    assert job is not None and job.status == JobStatus.UPLOADING and not job.released_at
    assert [m for m in drain_queue(queue) if m.get("job_id") == dropped.job_id] == []

    again = split_object(small_batches, dropped)
    assert again.outcome == "released" and again.record_metrics  # the first run never counted its rows
    released = small_batches.jobs.get_job(dropped.job_id)
    assert released is not None and released.released_at
    assert split_object(small_batches, dropped).outcome == "duplicate"  # released: nothing more
    stats = pump_uploader(
        uploader_handler, queue, jobs=[dropped.job_id], done=settled(small_batches, dropped.job_id)
    )
    assert stats.deliveries == 5 and upload_requests(sandbox) == 5


# ---- the same message twice at once --------------------------------------------------------------


def test_same_message_delivered_twice_at_once_to_the_core(
    small_batches: Services, sandbox: SandboxHandle
) -> None:
    split = split_file(small_batches, 10 * PER_BATCH, leave_in_queue=False)
    messages = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    sandbox.set_faults({**LR, "latency_ms": 300})  # both copies are in flight together
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver(message: LostRepairBatchMessage, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            outcome = upload_batch(small_batches, message, Delivery(receive_count=1))
        except RetryLater as exc:
            outcome = "retry_later: " + exc.reason
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome = f"crashed: {type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(outcome)

    threads = []
    for message in messages:
        barrier = threading.Barrier(2)
        threads += [threading.Thread(target=deliver, args=(message, barrier)) for _ in range(2)]
    with isolated_transactions():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    # exactly once: ten batches, each sent and charged once
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"succeeded": 10} and check.charged_rows == 10 * PER_BATCH
    assert upload_requests(sandbox) == 10
    # each copy either sent its batch, found the other's lease (retry later), or — when the threads
    # were scheduled far apart on a busy machine — found the batch already settled ("succeeded")
    kinds = Counter(o.split(":")[0] for o in outcomes)
    assert set(kinds) <= {"succeeded", "retry_later"}, [o for o in outcomes if o.startswith("crashed")]
    assert sum(kinds.values()) == 20 and kinds["succeeded"] >= 10
    assert kinds["retry_later"] >= 5  # the copies did race for the lease


def test_sqs_redelivers_the_same_messages_concurrently_to_two_invocations(
    small_batches: Services, sandbox: SandboxHandle, fresh_uploaders: list[Any]
) -> None:
    queue = small_batches.settings.work_queue_url
    split = split_file(small_batches, 5 * PER_BATCH)
    first = receive_all(
        queue, split.job_id, 5, visibility=0
    )  # visible again at once: SQS hands them out again
    second = receive_all(queue, split.job_id, 5, visibility=60)
    assert {m["MessageId"] for m in first} == {m["MessageId"] for m in second}
    assert {m["ReceiptHandle"] for m in first}.isdisjoint(m["ReceiptHandle"] for m in second)
    sandbox.set_faults({**LR, "latency_ms": 300})

    replies: list[dict[str, Any]] = [{}, {}]
    barrier = threading.Barrier(2)

    def invoke(n: int, messages: list[dict[str, Any]]) -> None:
        barrier.wait()
        replies[n] = fresh_uploaders[n](sqs_event(messages), new_context("uploader", 120, 1024))

    threads = [threading.Thread(target=invoke, args=(n, m)) for n, m in enumerate((first, second))]
    with isolated_transactions():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    failed = [{f["itemIdentifier"] for f in reply["batchItemFailures"]} for reply in replies]
    ids = {m["MessageId"] for m in first}
    assert not (failed[0] & failed[1]), "every message was handled by one of the two invocations"
    assert failed[0] | failed[1], "the two deliveries did overlap: one was turned away"
    assert failed[0] | failed[1] <= ids
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"succeeded": 5} and check.charged_rows == 5 * PER_BATCH
    assert upload_requests(sandbox) == 5  # each batch charged exactly once
    release_and_drain(queue, first + second)  # the losing copies would wait out their backoff


# ---- DynamoDB transaction conflicts when recording an answer -----------------------------------


@pytest.mark.parametrize("conflicts", [1, 3])
def test_a_transaction_conflict_when_recording_a_charged_batch_is_retried(
    conflicts: int, small_batches: Services, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent workers of one job all move the job's counters: DynamoDB cancels the loser's
    transaction. That must not turn a charged, answered batch into an unknown one."""
    split = split_file(small_batches, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    conflicting = ConflictingClient(small_batches.jobs._db, conflicts)
    monkeypatch.setattr(small_batches.jobs, "_db", conflicting)
    assert upload_batch(small_batches, message, Delivery()) == "succeeded"
    assert conflicting.refused == conflicts
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"succeeded": 1} and upload_requests(sandbox) == 1


def test_a_conflict_that_persists_is_bounded_and_ends_flagged(
    small_batches: Services, clock: FixedClock, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from verifyfeed.ports import StoreError

    split = split_file(small_batches, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    conflicting = ConflictingClient(small_batches.jobs._db, 10)
    monkeypatch.setattr(small_batches.jobs, "_db", conflicting)
    with pytest.raises(SettleFailed) as failed:  # no time left to retry: the trail, then SQS
        upload_batch(small_batches, message, Delivery(seconds_left=lambda: 1.0))
    assert isinstance(failed.value.__cause__, StoreError)  # the store's, with botocore's as its cause
    assert isinstance(failed.value.__cause__.__cause__, ClientError)
    assert conflicting.refused == 4  # tried four times, then gave the error to SQS
    monkeypatch.undo()
    clock.move_to(clock.now() + timedelta(seconds=small_batches.settings.send_lease_seconds + 1))
    assert upload_batch(small_batches, message, Delivery(receive_count=2)) == "unknown"
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"unknown": 1} and upload_requests(sandbox) == 1


def test_a_settle_that_keeps_failing_is_retried_while_the_invocation_has_time(
    small_batches: Services, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten lost races in a row: the charged answer is still recorded, because the uploader keeps
    trying for as long as its invocation may run."""
    split = split_file(small_batches, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    conflicting = ConflictingClient(small_batches.jobs._db, 10)
    monkeypatch.setattr(small_batches.jobs, "_db", conflicting)
    assert upload_batch(small_batches, message, Delivery(seconds_left=lambda: 60.0)) == "succeeded"
    assert conflicting.refused == 10
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"succeeded": 1} and upload_requests(sandbox) == 1


def test_a_missing_body_fails_the_batch_without_a_lease_or_a_call(
    small_batches: Services, sandbox: SandboxHandle
) -> None:
    split = split_file(small_batches, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    assert message.claim_bucket and message.claim_key
    boto3.client("s3").delete_object(Bucket=message.claim_bucket, Key=message.claim_key)
    assert upload_batch(small_batches, message, Delivery()) == "failed"
    batch = small_batches.jobs.get_batch(split.job_id, 1)
    assert batch is not None and batch.attempts == 0 and "body is missing" in batch.last_error
    assert upload_requests(sandbox) == 0


def test_unreadable_credentials_fail_before_the_lease(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A secret that cannot be read must not leave a lease behind that expires into "unknown"."""
    services = build_services(
        make_settings(BATCH_MAX_RECORDS=str(PER_BATCH), UPSTREAM_CREDENTIALS_PARAM="no-such-secret"), clock
    )
    split = split_file(services, PER_BATCH, leave_in_queue=False)
    [message] = [LostRepairBatchMessage.model_validate(m) for m in split.messages]
    with pytest.raises(Exception, match=r"no-such-secret|ResourceNotFound|GetParameterError"):
        upload_batch(services, message, Delivery())
    batch = services.jobs.get_batch(split.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.STAGED and batch.lease_until == ""
    assert upload_requests(sandbox) == 0


def test_a_transaction_conflict_when_recording_an_audit_is_retried(
    small_batches: Services, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.reliability.test_hostile_files import _audit_rows

    services = small_batches
    queue = services.settings.work_queue_url
    drain_queue(queue)
    base = next(_starts)
    event = drop(services.settings.ingest_bucket, f"carrier-audit/conflict-{base}.csv", _audit_rows(base))
    result = split_object(services, DroppedObject.from_event_record(event["Records"][0]))
    messages = [
        CarrierAuditMessage.model_validate(m) for m in drain_queue(queue) if m.get("job_id") == result.job_id
    ]
    conflicting = ConflictingClient(services.audits._db, 2)
    monkeypatch.setattr(services.audits, "_db", conflicting)
    assert [submit_audit(services, m, Delivery()) for m in messages] == ["pending", "pending"]
    assert conflicting.refused == 2
    adds = [e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add"]
    assert len(adds) == 2 and all(e.accepted for e in adds)
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.batches_succeeded == 2 and job.status == JobStatus.COMPLETED


# ---- the dead-letter queue and a callback that never comes ---------------------------------------


def test_a_poison_message_is_dead_lettered_without_blocking_the_others(
    small_batches: Services, sandbox: SandboxHandle, uploader_handler: Any, stack: Any
) -> None:
    queue = small_batches.settings.work_queue_url
    split = split_file(small_batches, 2 * PER_BATCH)
    poison = '{"kind": "lost_repair_batch", "job_id": "x", "records": "not a list"}'
    boto3.client("sqs").send_message(QueueUrl=queue, MessageBody=poison)
    in_dlq = settled(small_batches, split.job_id)
    stats = pump_uploader(  # visibility 0: as if the 750 s visibility timeout had passed each time
        uploader_handler,
        queue,
        jobs=[split.job_id, "x"],
        done=lambda: in_dlq() and poison in [m.get("Body") for m in _raw_dead_letters(stack.dlq_url)],
        visibility_s=0,
    )
    assert stats.item_failures >= 7  # retried until SQS gave up on it after maxReceiveCount
    assert poison in [m.get("Body") for m in _raw_dead_letters(stack.dlq_url)]
    check = check_ledger(small_batches, sandbox, split.job_id, split.sent)
    assert check.statuses == {"succeeded": 2}


def _raw_dead_letters(dlq_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return list(got.get("Messages", []))


def test_a_callback_never_sent_is_settled_by_the_poller(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    from tests.reliability.test_hostile_files import _audit_rows  # two valid audits among hostile rows

    services = build_services(make_settings(POLL_PENDING_AGE_SECONDS="0", POLL_MAX_ITEMS="5000"), clock)
    queue = services.settings.work_queue_url
    drain_queue(queue)
    sandbox.set_faults({"drop_callbacks": True})
    base = next(_starts)
    event = drop(services.settings.ingest_bucket, f"carrier-audit/nocallback-{base}.csv", _audit_rows(base))
    result = split_object(services, DroppedObject.from_event_record(event["Records"][0]))
    messages = [
        CarrierAuditMessage.model_validate(m) for m in drain_queue(queue) if m.get("job_id") == result.job_id
    ]
    assert [submit_audit(services, m, Delivery()) for m in messages] == ["pending", "pending"]
    sandbox.advance(DECISION_DELAY_S)  # the upstream decides at once, on its manual clock
    assert all(a.status != 0 for a in sandbox.audits())
    assert {services.audits.get(m.audit_key).status for m in messages} == {AuditStatus.PENDING}  # type: ignore[union-attr]

    clock.move_to(clock.now() + timedelta(seconds=1))
    poll(services)
    settled = {services.audits.get(m.audit_key).status for m in messages}  # type: ignore[union-attr]
    assert settled == {AuditStatus.PASSED}
    assert poll(services).outcomes.get("applied", 0) == 0  # nothing left to settle for these
    drain_queue(queue)
