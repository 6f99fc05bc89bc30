"""Secrets: upstream credentials and callback signing secrets.

In AWS the environment holds only the *name* of a Secrets Manager secret, read through
Powertools Parameters (cached for ``max_age`` seconds, so a rotation is picked up without a
deploy). Local runs may give the values directly (``UPSTREAM_API_KEY``, ``CALLBACK_SECRET``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities import parameters

from verifyfeed import aws
from verifyfeed.config import Settings
from verifyfeed.upstream.auth import Credentials

CACHE_SECONDS = 300


@lru_cache(maxsize=4)
def _provider(client: Any) -> parameters.SecretsProvider:
    # on the shared client (verifyfeed.aws): a provider of its own would build a second session
    return parameters.SecretsProvider(boto3_client=client)


def _secret_json(name: str) -> dict[str, Any]:
    value = _provider(aws.secretsmanager()).get(name, transform="json", max_age=CACHE_SECONDS)
    if not isinstance(value, dict):
        raise ValueError(f"secret {name} must hold a JSON object")
    return value


def upstream_credentials(settings: Settings) -> Credentials:
    if settings.upstream_credentials_name:
        data = _secret_json(settings.upstream_credentials_name)
        return Credentials(api_id=str(data["apiId"]), api_key=str(data["apiKey"]))
    return Credentials(api_id=settings.upstream_api_id, api_key=settings.upstream_api_key)


def callback_secrets(settings: Settings) -> list[str]:
    """Every secret a callback may be signed with: current first, then previous (rotation)."""
    if settings.callback_secret_name:
        data = _secret_json(settings.callback_secret_name)
        values = [data.get("current"), data.get("previous")]
    else:
        values = [settings.callback_secret, settings.callback_previous_secret]
    return [str(v) for v in values if v]


def expected_api_id(settings: Settings) -> str:
    """The apiId a callback must carry: the callback's own setting in AWS, where it may not read the
    upstream credentials (docs/decisions.md#authinfo); else the credentials' apiId."""
    return settings.callback_api_id or upstream_credentials(settings).api_id
