"""Each function may read exactly the secrets its code path needs (and no others)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.resources import load_template

ROOT = Path(__file__).resolve().parents[2]
# callback: the signing secret only; the apiId it checks is CALLBACK_API_ID (verifyfeed.secrets)
NEEDS = {
    "SplitterFunction": {"IdentityPepperSecret"},  # the audit key and id_card_digest are keyed
    "UploaderFunction": {"UpstreamCredentialsSecret"},
    "CallbackFunction": {"CallbackSigningSecret"},
    "PollerFunction": {"UpstreamCredentialsSecret"},
}


def readable_secrets(template: dict[str, Any], logical_id: str) -> set[str]:
    """The secrets the function's own role may read (its policies' GetSecretValue statements)."""
    role = template["Resources"][logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    found = set()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        entry = policy["Fn::If"][1] if "Fn::If" in policy else policy
        for statement in entry["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in statement["Action"]:
                found.add(statement["Resource"]["Ref"])
    return found


@pytest.mark.parametrize("logical_id", sorted(NEEDS))
def test_function_reads_exactly_the_secrets_it_needs(logical_id: str) -> None:
    template = load_template(ROOT / "template.yaml")
    assert readable_secrets(template, logical_id) == NEEDS[logical_id]


def test_the_callback_checks_the_api_id_it_is_given_without_reading_the_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from verifyfeed import secrets
    from verifyfeed.config import Settings

    read: list[str] = []

    def secret_json(name: str) -> dict[str, Any]:
        read.append(name)
        return {"apiId": "from-the-secret", "apiKey": "k"}

    monkeypatch.setattr(secrets, "_secret_json", secret_json)
    env = {"UPSTREAM_CREDENTIALS_PARAM": "arn:credentials", "CALLBACK_API_ID": "from-the-parameter"}
    assert secrets.ManagedSecrets(Settings.from_env(env)).expected_api_id() == "from-the-parameter"
    assert read == []  # in AWS the read would be denied: the callback may not read the credentials
    # without it (local runs), the credentials' apiId as before
    assert (
        secrets.ManagedSecrets(Settings.from_env({**env, "CALLBACK_API_ID": ""})).expected_api_id()
        == "from-the-secret"
    )
    assert read == ["arn:credentials"]


def test_the_callback_gets_its_api_id_from_the_template_parameter() -> None:
    template = load_template(ROOT / "template.yaml")
    variables = template["Resources"]["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CALLBACK_API_ID"] == {"Ref": "UpstreamApiId"}
