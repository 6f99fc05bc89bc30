"""local.aws_server: moto behind a keep-alive HTTP/1.1 server (tests, demo and benchmark use it).

It must behave as moto's own server does for what the code uses — JSON protocols, S3 objects with
HEAD, ranges, large bodies with ``Expect: 100-continue`` and odd keys — and keep connections open.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local.aws_server import MotoServer


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the TCP connections this process opens (a test probe, not a stand-in)."""
    count = [0]
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        count[0] += 1
        original(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield count


def test_calls_reuse_one_connection(moto_endpoint: str, connects: list[int]) -> None:
    db = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    name = f"t{uuid.uuid4().hex[:8]}"
    db.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    before = connects[0]
    for i in range(30):
        db.put_item(TableName=name, Item={"pk": {"S": str(i)}})
    assert db.get_item(TableName=name, Key={"pk": {"S": "7"}})["Item"] == {"pk": {"S": "7"}}
    assert connects[0] - before <= 1  # moto's own server would have opened 31


def test_s3_objects_head_ranges_large_bodies_and_odd_keys(moto_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    big = bytes(range(256)) * 8192  # 2 MiB: botocore sends Expect: 100-continue
    key = "lost-repair/名单 2026+v1 (copy).csv"
    s3.put_object(Bucket=bucket, Key=key, Body=big)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(big)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == big
    part = s3.get_object(Bucket=bucket, Key=key, Range="bytes=1000-1999")
    assert part["Body"].read() == big[1000:2000] and part["ContentRange"] == f"bytes 1000-1999/{len(big)}"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")


def test_an_empty_object_is_stored(moto_endpoint: str) -> None:
    # botocore sends Expect: 100-continue with Content-Length: 0 (waitress 3.0 never answers that)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, config=Config(read_timeout=20))
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="lost-repair/empty.csv", Body=b"")
    assert s3.head_object(Bucket=bucket, Key="lost-repair/empty.csv")["ContentLength"] == 0


def test_a_port_taken_is_an_os_error_for_the_caller(moto_endpoint: str) -> None:
    taken = int(moto_endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        MotoServer("127.0.0.1", taken).start()


def test_query_protocol_services_answer(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    url = sqs.create_queue(QueueName=f"q{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"a": "名"}')
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert message["Body"] == '{"a": "名"}'


def test_concurrent_conditional_writes_on_one_item_let_exactly_one_through(moto_endpoint: str) -> None:
    # DynamoDB's guarantee, which moto alone does not give under concurrency: the server
    # serialises DynamoDB requests so that the exactly-once tests test our code, not moto's race
    import threading

    db = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    name = f"t{uuid.uuid4().hex[:8]}"
    db.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    winners: list[int] = []
    start = threading.Barrier(16)

    def put_first(worker: int) -> None:
        client = boto3.client("dynamodb", endpoint_url=moto_endpoint)
        start.wait()
        for round_ in range(20):
            try:
                client.put_item(
                    TableName=name,
                    Item={"pk": {"S": f"item{round_}"}, "owner": {"N": str(worker)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                winners.append(round_)
            except client.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=put_first, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == list(range(20))  # each item written by exactly one worker


def test_the_module_binds_port_0_and_prints_the_port_it_got() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.aws_server", "--port", "0"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root / 'layers/core/python'}{os.pathsep}{root}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)  # deadline for the first line
        assert ready, "no line within 60 s"
        line = proc.stdout.readline().strip()  # printed once bound (EOF if it failed)
        assert line.startswith("listening on http://127.0.0.1:"), line
        endpoint = line.rsplit(" ", 1)[1]
        assert int(endpoint.rsplit(":", 1)[1]) > 0
        sqs = boto3.client("sqs", endpoint_url=endpoint)
        url = sqs.create_queue(QueueName=f"q{uuid.uuid4().hex[:8]}")["QueueUrl"]
        assert url.startswith(endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
