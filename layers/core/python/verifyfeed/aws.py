"""boto3 clients (``s3``, ``sqs``, ``dynamodb``, ``secretsmanager``), created once per sandbox from one
session and shared. boto3 honours ``AWS_ENDPOINT_URL``, which is how local runs and tests reach the
moto server: the code path is the same as in AWS.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, instance_cache

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# explicit timeouts, so a slow dependency cannot eat the Lambda's whole budget;
# max_pool_connections: the splitter stages batches on 16 threads and sends on 8 (logic/staging.py)
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 4},
    max_pool_connections=20,
)

SERVICES = ("dynamodb", "s3", "secretsmanager", "sqs")  # the clients this module creates


class _ModelLoader(Loader):
    """botocore's model loader, with the services it knows limited to ``SERVICES``.

    Before loading a model (a client needs two: ``service-2`` and ``endpoint-rule-set-1``),
    ``Loader.load_service_model`` checks that the service is in ``list_available_services``,
    which botocore answers by walking every service it ships: some 450 directories and 1 000 file
    checks per model type, 20 ms or more of a cold start. Here the list is ``SERVICES``, each
    checked in its own directory (which loading the model reads anyway). Any other service is
    refused with ``UnknownServiceError``, as botocore refuses one it does not ship.
    """

    @instance_cache
    def list_available_services(self, type_name: str) -> list[str]:
        return [service for service in SERVICES if self._has_model(service, type_name)]

    def _has_model(self, service: str, type_name: str) -> bool:
        try:
            return bool(self.list_api_versions(service, type_name))
        except DataNotFoundError:
            return False


_PROVIDERS: list[CredentialProvider] = []


def add_credential_provider(provider: CredentialProvider) -> None:
    """Put ``provider`` first in the credential chain of the clients made from now on.

    Never called in Lambda (the chain finds the function's role in its environment). The local
    stack runs the four functions in one process and signs each one's calls with its own role
    (``local.iam``). One provider of a kind: adding another of the same class replaces it.
    """
    with _LOCK:
        _PROVIDERS[:] = [p for p in _PROVIDERS if type(p) is not type(provider)] + [provider]
    _client.cache_clear()


def _new_session() -> boto3.session.Session:
    core = botocore.session.get_session()
    resolver = core.get_component("credential_provider")
    for provider in _PROVIDERS:
        resolver.insert_before("env", provider)
    data_path = core.get_config_variable("data_path")  # as botocore's create_loader: AWS_DATA_PATH
    extra = (
        None
        if data_path is None
        else [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    )
    core.register_component("data_loader", _ModelLoader(extra_search_paths=extra))
    return boto3.session.Session(botocore_session=core)


_LOCK = threading.Lock()
_SESSION: list[boto3.session.Session] = []


@cache
def _client(service: str) -> Any:
    """All clients come from one session: a session parses the endpoint and model files once, so each
    client after the first costs about 6 ms instead of about 60 ms (a cold start creates two or
    three). Creation is serialised (a session is not thread-safe); the clients are. ``cache_clear()``
    (the local runner, between stacks) also starts a new session."""
    with _LOCK:
        if not _SESSION or _client.cache_info().currsize == 0:  # the first client, or after cache_clear
            _SESSION[:] = [_new_session()]
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
