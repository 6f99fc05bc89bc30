"""boto3 clients, created once per sandbox and shared.

boto3 honours ``AWS_ENDPOINT_URL``, which is how local runs and tests reach the moto server:
the code path is the same as in AWS. Timeouts are explicit so a slow dependency cannot eat the
Lambda's whole budget.

All clients come from one boto3 session: a session parses the endpoint and model files once,
so each client after the first costs about 6 ms instead of about 60 ms (a cold start creates
two or three). Creation is serialised (a session is not thread-safe); the clients are.
``_client.cache_clear()`` (the local runner, between stacks) also starts a new session.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 4})


_LOCK = threading.Lock()
_SESSION: list[boto3.session.Session] = []


@cache
def _client(service: str) -> Any:
    with _LOCK:
        if not _SESSION or _client.cache_info().currsize == 0:  # the first client, or after cache_clear
            _SESSION[:] = [boto3.session.Session()]
        return _SESSION[0].client(service, config=_CONFIG)  # type: ignore[call-overload]


def s3() -> S3Client:
    client: S3Client = _client("s3")
    return client


def sqs() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client
