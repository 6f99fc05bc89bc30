"""Secrets: upstream credentials, callback signing secrets and the identity pepper
(``ports.Secrets``; ``Services.secrets``).

In AWS the environment holds only the *name* of a Secrets Manager secret, read through
Powertools Parameters (cached for ``max_age`` seconds, so a rotation is picked up without a
deploy). Local runs may give the values directly (``UPSTREAM_API_KEY``, ``CALLBACK_SECRET``,
``IDENTITY_PEPPER``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities import parameters

from verifyfeed import aws
from verifyfeed.config import Settings
from verifyfeed.pii import Keyed
from verifyfeed.upstream.auth import Credentials

# how long a secret's value is reused: Powertools' POWERTOOLS_PARAMETERS_MAX_AGE, which the
# template sets (300 s); the local stack sets 0, so that every read is a call its IAM gate checks
# (the four functions share one process there, and a cached value would cross from one to another)
CACHE_SECONDS_DEFAULT = 300


@lru_cache(maxsize=4)
def _provider(client: Any) -> parameters.SecretsProvider:
    # on the shared client (verifyfeed.aws): a provider of its own would build a second session
    return parameters.SecretsProvider(boto3_client=client)


def _secret_json(name: str) -> dict[str, Any]:
    max_age = int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", CACHE_SECONDS_DEFAULT))
    value = _provider(aws.secretsmanager()).get(name, transform="json", max_age=max_age)
    if not isinstance(value, dict):
        raise ValueError(f"secret {name} must hold a JSON object")
    return value


class ManagedSecrets:
    """Each secret read when it is asked for: from Secrets Manager when its name is set (cached
    ``POWERTOOLS_PARAMETERS_MAX_AGE`` seconds), else from the settings' local values."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def upstream_credentials(self) -> Credentials:
        settings = self.settings
        if settings.upstream_credentials_name:
            data = _secret_json(settings.upstream_credentials_name)
            return Credentials(api_id=str(data["apiId"]), api_key=str(data["apiKey"]))
        return Credentials(api_id=settings.upstream_api_id, api_key=settings.upstream_api_key)

    def callback_secrets(self) -> list[str]:
        """Every secret a callback may be signed with: current first, then previous (rotation)."""
        settings = self.settings
        if settings.callback_secret_name:
            data = _secret_json(settings.callback_secret_name)
            values = [data.get("current"), data.get("previous")]
        else:
            values = [settings.callback_secret, settings.callback_previous_secret]
        return [str(v) for v in values if v]

    def expected_api_id(self) -> str:
        """The apiId a callback must carry: the callback's own setting in AWS, where it may not read
        the upstream credentials (docs/decisions.md#authinfo); else the credentials' apiId."""
        return self.settings.callback_api_id or self.upstream_credentials().api_id

    def identity_pepper(self) -> Keyed:
        """The pepper of the digests of ID and phone numbers we store: ``current`` and, while it is
        rotated, ``previous`` (docs/operations.md#secret-rotation). Read once per use case (a file),
        not per row."""
        settings = self.settings
        if settings.identity_pepper_name:
            data = _secret_json(settings.identity_pepper_name)
            current, previous = data.get("current"), data.get("previous")
        else:
            current, previous = settings.identity_pepper, settings.identity_previous_pepper
        if not current:
            raise ValueError(
                "no identity pepper: IDENTITY_PEPPER_PARAM (or IDENTITY_PEPPER locally) is not set"
            )
        return Keyed(current=str(current).encode(), previous=str(previous or "").encode())
