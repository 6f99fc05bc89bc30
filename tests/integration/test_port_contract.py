"""Blobs, the work queue and secrets: one contract, two implementations.

Each test runs on the AWS adapter against the moto server (``S3Blobs`` on the stack's versioned
bucket, ``SqsWorkQueue`` on a queue of its own, ``ManagedSecrets`` on the stack's Secrets Manager
secrets) and on the in-memory stand-in unit tests use (``tests/fakes``), and asserts the same
answers on both. The stores have theirs: test_store_contract_jobs.py, test_store_contract_audits.py.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest

from tests.fakes import MemoryBlobs, MemoryQueue, MemorySecrets
from tests.integration.conftest import (
    API_ID,
    API_KEY,
    CALLBACK_SECRET,
    IDENTITY_PEPPER,
    PREVIOUS_CALLBACK_SECRET,
    PREVIOUS_IDENTITY_PEPPER,
)
from verifyfeed.ports import BlobError, Blobs, Secrets, WorkQueue
from verifyfeed.secrets import ManagedSecrets
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.queue import SqsWorkQueue

pytestmark = pytest.mark.integration


@pytest.fixture(params=["s3", "memory"])
def blobs(request: pytest.FixtureRequest) -> tuple[Blobs, str]:
    """A Blobs and the bucket to use, with a key prefix of the test's own."""
    if request.param == "memory":
        return MemoryBlobs(), "unit-bucket"
    settings = request.getfixturevalue("make_settings")()
    return S3Blobs(), settings.ingest_bucket


def a_key() -> str:
    return f"contract/{uuid.uuid4().hex}/file.csv"


def test_a_blob_reads_back_what_was_put_last(blobs: tuple[Blobs, str]) -> None:
    store, bucket = blobs
    key = a_key()
    store.put(bucket, key, b"first")
    assert store.get(bucket, key) == b"first"
    store.put(bucket, key, b"second", content_type="text/csv")
    assert store.get(bucket, key) == b"second"
    store.put_file(bucket, key, io.BytesIO(b"\xef\xbb\xbfthird,\xe5\xbc\xa0"), "text/csv")
    assert store.get(bucket, key) == b"\xef\xbb\xbfthird,\xe5\xbc\xa0"


def test_a_missing_blob_is_a_blob_error_that_says_missing(blobs: tuple[Blobs, str]) -> None:
    store, bucket = blobs
    with pytest.raises(BlobError) as missing:
        store.get(bucket, a_key())
    assert missing.value.missing and missing.value.code == "NoSuchKey"


def test_an_opened_blob_is_a_seekable_stream(blobs: tuple[Blobs, str]) -> None:
    store, bucket = blobs
    key = a_key()
    body = bytes(range(256)) * 40
    store.put(bucket, key, body)
    stream = store.open(bucket, key)
    assert stream.read(10) == body[:10]
    stream.seek(len(body) - 5)
    assert stream.read() == body[-5:]
    stream.seek(0)
    assert stream.read() == body


def test_deleting_many_removes_them_and_ignores_the_missing(blobs: tuple[Blobs, str]) -> None:
    store, bucket = blobs
    keys = [a_key() for _ in range(3)]
    for key in keys:
        store.put(bucket, key, b"x")
    store.delete_many(bucket, [keys[0], keys[2], a_key()])
    assert store.get(bucket, keys[1]) == b"x"
    for key in (keys[0], keys[2]):
        with pytest.raises(BlobError) as gone:
            store.get(bucket, key)
        assert gone.value.missing


def test_deleting_every_version_leaves_no_older_version_behind(blobs: tuple[Blobs, str]) -> None:
    """On the versioned bucket a plain delete would let the older body show again; this must not."""
    store, bucket = blobs
    key = a_key()
    store.put(bucket, key, b"resumed split, first body")
    store.put(bucket, key, b"resumed split, second body")
    store.delete_every_version(bucket, key)
    with pytest.raises(BlobError) as gone:
        store.get(bucket, key)
    assert gone.value.missing
    store.delete_every_version(bucket, key)  # nothing left: not an error


@dataclass
class QueueSide:
    queue: WorkQueue
    received: Callable[[], list[str]]


@pytest.fixture(params=["sqs", "memory"])
def queue(request: pytest.FixtureRequest) -> Iterator[QueueSide]:
    if request.param == "memory":
        memory = MemoryQueue()
        yield QueueSide(memory, lambda: list(memory.bodies))
        return
    request.getfixturevalue("stack")  # the moto server, and AWS_ENDPOINT_URL pointing at it
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"contract-{uuid.uuid4().hex[:12]}")["QueueUrl"]

    def received() -> list[str]:
        bodies: list[str] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
            if not got.get("Messages"):
                return bodies
            bodies += [m["Body"] for m in got["Messages"]]

    yield QueueSide(SqsWorkQueue(url), received)
    sqs.delete_queue(QueueUrl=url)


def test_a_sent_body_is_received_once(queue: QueueSide) -> None:
    queue.queue.send('{"kind":"lost_repair","seq":1}')
    assert queue.received() == ['{"kind":"lost_repair","seq":1}']


def test_send_all_delivers_every_body_once_across_several_requests(queue: QueueSide) -> None:
    bodies = [f'{{"seq":{n}}}' for n in range(37)]  # four SendMessageBatch requests, on threads
    queue.queue.send_all(bodies)
    queue.queue.send_all([])
    assert sorted(queue.received()) == sorted(bodies)


@pytest.fixture(params=["secrets-manager", "memory"])
def secrets(request: pytest.FixtureRequest) -> Secrets:
    if request.param == "memory":
        return MemorySecrets(
            API_ID,
            API_KEY,
            (CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET),
            (IDENTITY_PEPPER, PREVIOUS_IDENTITY_PEPPER),
        )
    settings = request.getfixturevalue("make_settings")(CALLBACK_API_ID="")
    assert settings.upstream_credentials_name and settings.identity_pepper_name  # read from the service
    return ManagedSecrets(settings)


def test_secrets_give_the_credentials_the_callback_keys_in_order_and_the_pepper(secrets: Secrets) -> None:
    assert (secrets.upstream_credentials().api_id, secrets.upstream_credentials().api_key) == (
        API_ID,
        API_KEY,
    )
    assert secrets.callback_secrets() == [CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET]  # current first
    assert secrets.expected_api_id() == API_ID
    pepper = secrets.identity_pepper()
    assert (pepper.current, pepper.previous) == (IDENTITY_PEPPER.encode(), PREVIOUS_IDENTITY_PEPPER.encode())
