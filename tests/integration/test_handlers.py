"""The Lambda handlers with real-shaped events: partial batch responses, whole-batch redelivery
after a timeout, the idempotency-expiry trap, and the sample events in ``events/``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.events import s3_put_event, sqs_event
from local.lambda_context import new_context
from sandbox.server import SandboxHandle
from tests.integration.conftest import ROOT, drain_queue, new_job, repair_records
from verifyfeed.clock import OffsetClock
from verifyfeed.config import get_settings
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import BatchStatus, JobStatus
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration


@pytest.fixture
def live(handler_env: dict[str, str], sandbox: SandboxHandle) -> Services:
    """Services built from the handlers' own environment (same tables, same clock setting)."""
    return build_services(get_settings(), OffsetClock(datetime.fromisoformat(handler_env["CLOCK_NOW"])))


def enqueue_and_receive(services: Services, messages: list[LostRepairBatchMessage]) -> dict[str, Any]:
    sqs = boto3.client("sqs")
    queue = services.settings.work_queue_url
    drain_queue(queue)
    for message in messages:
        sqs.send_message(QueueUrl=queue, MessageBody=message.model_dump_json())
    received: list[dict[str, Any]] = []
    while len(received) < len(messages):
        got = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        received.extend(got.get("Messages", []))
    return sqs_event(received)


def batch_messages(services: Services, batches: int, start: int) -> list[LostRepairBatchMessage]:
    job = new_job(services, batches)
    return [
        LostRepairBatchMessage(
            job_id=job.job_id,
            batch_id=f"{job.job_id}#{seq:05d}",
            seq=seq,
            records=repair_records(2, start + 10 * seq),
        )
        for seq in range(1, batches + 1)
    ]


def test_whole_batch_redelivered_after_a_timeout_sends_each_message_once(
    live: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    messages = batch_messages(live, 3, 1000)
    event = enqueue_and_receive(live, messages)
    reply = uploader_handler(event, new_context("uploader", 120, 1024))
    assert reply == {"batchItemFailures": []}
    assert len(sandbox.accepted_records()) == 6
    # the Lambda "timed out" after finishing: SQS redelivers the whole batch, finished ones too
    again = uploader_handler(event, new_context("uploader", 120, 1024))
    assert again == {"batchItemFailures": []}
    assert len(sandbox.accepted_records()) == 6
    assert len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")]) == 3
    job = live.jobs.get_job(messages[0].job_id)
    assert job is not None and job.batches_succeeded == 3 and job.status == JobStatus.COMPLETED


def test_partial_failure_reports_only_the_failed_message(
    live: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    messages = batch_messages(live, 2, 2000)
    event = enqueue_and_receive(live, messages)
    sandbox.set_faults({"endpoint": "lost_repair", "status_code": 429, "count": 1})
    reply = uploader_handler(event, new_context("uploader", 120, 1024))
    failed = {f["itemIdentifier"] for f in reply["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"]}
    assert len(sandbox.accepted_records()) == 2
    statuses = {b.seq: b.status for b in live.jobs.batches(messages[0].job_id)}
    assert statuses == {1: BatchStatus.RETRY, 2: BatchStatus.SUCCEEDED}


def test_a_503s_retry_after_is_how_long_sqs_hides_the_message(
    live: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    """The delay goes to SQS (``ChangeMessageVisibility``): with no Retry-After the backoff (0 s in
    these tests) makes the message visible again at once; an hour's Retry-After hides it."""
    sqs = boto3.client("sqs")
    queue = live.settings.work_queue_url
    for retry_after, visible_again in ((None, True), ("3600", False)):
        [message] = batch_messages(live, 1, 5000 if retry_after else 6000)
        event = enqueue_and_receive(live, [message])
        fault = {"endpoint": "lost_repair", "status_code": 503, "count": 1}
        sandbox.set_faults({**fault, "retry_after": retry_after} if retry_after else fault)
        reply = uploader_handler(event, new_context("uploader", 120, 1024))
        assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [event["Records"][0]["messageId"]]
        again = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        bodies = [json.loads(m["Body"]) for m in again.get("Messages", [])]
        assert any(b["batch_id"] == message.batch_id for b in bodies) is visible_again
        stored = live.jobs.get_batch(message.job_id, 1)
        assert stored is not None and stored.status == BatchStatus.RETRY
        # the queue is the session's: no message of this test stays hidden for an hour
        receipt = event["Records"][0]["receiptHandle"]
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=0)
        drain_queue(queue)
    assert sandbox.accepted_records() == []


def test_expired_idempotency_after_a_timeout_does_not_pay_twice(
    live: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    """The trap: Powertools lets INPROGRESS expire with the Lambda's remaining time, so after a
    timeout the payload runs again. The batch lease turns that second run into 'unknown'."""
    [message] = batch_messages(live, 1, 3000)
    batch = live.jobs.get_batch(message.job_id, 1)
    assert batch is not None
    past = live.clock.now() - timedelta(seconds=1)
    live.jobs.transition(
        batch, BatchStatus.SENDING, past - timedelta(seconds=200), lease_until=past, count_attempt=True
    )
    event = enqueue_and_receive(live, [message])
    reply = uploader_handler(event, new_context("uploader", 120, 1024))
    assert reply == {"batchItemFailures": []}
    assert sandbox.accepted_records() == [] and sandbox.ledger() == []
    stored = live.jobs.get_batch(message.job_id, 1)
    assert stored is not None and stored.status == BatchStatus.UNKNOWN


def test_no_call_is_started_without_time_to_finish_it(
    live: Services, sandbox: SandboxHandle, uploader_handler: Any
) -> None:
    [message] = batch_messages(live, 1, 4000)
    event = enqueue_and_receive(live, [message])
    reply = uploader_handler(event, new_context("uploader", 3, 1024))  # 3 s left < connect + read timeouts
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [event["Records"][0]["messageId"]]
    assert sandbox.ledger() == []
    stored = live.jobs.get_batch(message.job_id, 1)
    assert stored is not None and stored.status == BatchStatus.QUEUED


def test_splitter_decodes_url_encoded_keys(live: Services, splitter_handler: Any) -> None:
    key = f"lost-repair/客户 名单+{uuid.uuid4().hex[:4]}.csv"
    data = "姓名,身份证号,曾用手机号,授权码\r\n张三,11010519491231002X,,A1\r\n".encode()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=live.settings.ingest_bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=live.settings.ingest_bucket, Key=key)
    event = s3_put_event(
        live.settings.ingest_bucket, key, len(data), head["ETag"].strip('"'), head["VersionId"], "01"
    )
    assert (
        "+" in event["Records"][0]["s3"]["object"]["key"]
        and " " not in event["Records"][0]["s3"]["object"]["key"]
    )
    reply = splitter_handler(event, new_context("splitter", 900, 1024))
    [job] = reply["jobs"]
    assert job["outcome"] == "split" and job["rows_accepted"] == 1
    stored = live.jobs.get_job(job["job_id"])
    assert stored is not None and stored.key == key
    again = splitter_handler(event, new_context("splitter", 900, 1024))
    assert again["jobs"][0]["outcome"] == "duplicate"
    drain_queue(live.settings.work_queue_url)


@pytest.mark.parametrize("name", ["splitter", "uploader", "callback", "poller"])
def test_sample_events_are_valid_for_their_functions(name: str) -> None:
    event = json.loads(Path(ROOT / "events" / f"{name}.json").read_text())
    if name == "splitter":
        assert event["Records"][0]["eventSource"] == "aws:s3"
    elif name == "uploader":
        body = json.loads(event["Records"][0]["body"])
        LostRepairBatchMessage.model_validate(body)
    elif name == "callback":
        assert event["httpMethod"] == "POST" and event["path"] == "/callbacks/carrier-audit"
        assert "sign" in {k.lower() for k in event["headers"]}
    else:
        assert event["detail-type"] == "Scheduled Event"


def test_poller_handler_runs_on_the_scheduled_event(live: Services, poller_handler: Any) -> None:
    event = json.loads(Path(ROOT / "events" / "poller.json").read_text())
    reply = poller_handler(event, new_context("poller", 300, 512))
    assert {"audits_checked", "batches_redriven", "audit_errors"} <= set(reply)
