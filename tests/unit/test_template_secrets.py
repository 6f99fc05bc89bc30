"""Each function may read exactly the secrets its code path needs (and no others)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.resources import load_template

ROOT = Path(__file__).resolve().parents[2]
# callback: the signing secret, and the credentials secret for our apiId (verifyfeed.secrets)
NEEDS = {
    "SplitterFunction": set(),
    "UploaderFunction": {"UpstreamCredentialsSecret"},
    "CallbackFunction": {"CallbackSigningSecret", "UpstreamCredentialsSecret"},
    "PollerFunction": {"UpstreamCredentialsSecret"},
}


def readable_secrets(function: dict[str, Any]) -> set[str]:
    found = set()
    for policy in function["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
            found.add(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"])
    return found


@pytest.mark.parametrize("logical_id", sorted(NEEDS))
def test_function_reads_exactly_the_secrets_it_needs(logical_id: str) -> None:
    template = load_template(ROOT / "template.yaml")
    assert readable_secrets(template["Resources"][logical_id]) == NEEDS[logical_id]
