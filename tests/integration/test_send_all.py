"""``send_all`` (store/queue.py), which releases a file's batches and queues its audits: ten
messages per ``SendMessageBatch``, several requests at a time, every body queued exactly once."""

from __future__ import annotations

import json
import uuid

import boto3

from tests.integration.conftest import drain_queue
from verifyfeed.services import Services
from verifyfeed.store.queue import SEND_THREADS, send_all


def test_every_body_is_queued_once_when_the_requests_outnumber_the_threads(services: Services) -> None:
    queue = services.settings.work_queue_url
    drain_queue(queue)
    tag = uuid.uuid4().hex
    count = 10 * SEND_THREADS * 2 + 5  # more requests than threads, and a last one not full
    bodies = [json.dumps({"job_id": tag, "n": n}) for n in range(count)]

    send_all(boto3.client("sqs"), queue, bodies)

    queued = [m["n"] for m in drain_queue(queue) if m.get("job_id") == tag]
    assert sorted(queued) == list(range(count))


def test_nothing_to_send_sends_nothing(services: Services) -> None:
    queue = services.settings.work_queue_url
    drain_queue(queue)
    send_all(boto3.client("sqs"), queue, [])
    assert drain_queue(queue) == []
