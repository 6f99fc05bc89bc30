"""The security configuration, checked on the template and on what the template creates.

Each rule is a function that lists violations. Every rule must find none in ``template.yaml`` and
must find the violation in a copy of the template broken on purpose, so a rule that checks
nothing cannot pass. Then the resources the local stack created from the template (moto) are
checked the same way, and the functions' environment for secret values.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.resources import LocalStack, load_template
from tests.integration.conftest import API_KEY, CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET

ROOT = Path(__file__).resolve().parents[2]
Template = dict[str, Any]
FUNCTION = "AWS::Serverless::Function"


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list | dict):
            yield from as_list(node["Statement"])
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def refers_to(node: Any, logical_id: str) -> bool:
    if isinstance(node, dict):
        if node.get("Ref") == logical_id or (node.get("Fn::GetAtt") or [None])[0] == logical_id:
            return True
        if "Fn::Sub" in node and f"${{{logical_id}" in str(node["Fn::Sub"]):
            return True
        return any(refers_to(v, logical_id) for v in node.values())
    if isinstance(node, list):
        return any(refers_to(v, logical_id) for v in node)
    return False


# ---- the rules ------------------------------------------------------------------------------------


def public_access(template: Template) -> list[str]:
    wanted = dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    return [
        f"{name}: public access not fully blocked"
        for name, bucket in resources(template, "AWS::S3::Bucket").items()
        if bucket["Properties"].get("PublicAccessBlockConfiguration") != wanted
    ]


def encryption(template: Template) -> list[str]:
    found = []
    for name, bucket in resources(template, "AWS::S3::Bucket").items():
        rules = bucket["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
            found.append(f"{name}: bucket not encrypted")
    for name, table in resources(template, "AWS::DynamoDB::Table").items():
        if table["Properties"].get("SSESpecification", {}).get("SSEEnabled") is not True:
            found.append(f"{name}: table not encrypted with SSE")
    for name, queue in resources(template, "AWS::SQS::Queue").items():
        props = queue["Properties"]
        if props.get("SqsManagedSseEnabled") is not True and not props.get("KmsMasterKeyId"):
            found.append(f"{name}: queue not encrypted")
    return found


def tls_only(template: Template) -> list[str]:
    found = []
    policies = resources(template, "AWS::S3::BucketPolicy").values()
    for name in resources(template, "AWS::S3::Bucket"):
        denies = [
            st
            for policy in policies
            if policy["Properties"]["Bucket"] == {"Ref": name}
            for st in as_list(policy["Properties"]["PolicyDocument"]["Statement"])
            if st.get("Effect") == "Deny"
            and st.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in as_list(st.get("Action"))
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        covered = [r for st in denies for r in as_list(st.get("Resource"))]
        bucket_arn = any(refers_to(r, name) and "/*" not in str(r) for r in covered)
        objects_arn = any(refers_to(r, name) and "/*" in str(r) for r in covered)
        if not (bucket_arn and objects_arn):
            found.append(f"{name}: no TLS-only (aws:SecureTransport) deny on the bucket and its objects")
    return found


def wildcard_permissions(template: Template) -> list[str]:
    found = []
    for st in statements(template["Resources"]):
        if st.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(st.get("Action", []))]
        targets = [str(r) for r in as_list(st.get("Resource", []))]
        if "*" in actions:
            found.append(f"Allow of every action: {st}")
        elif "*" in targets and any(a.endswith(":*") for a in actions):
            found.append(f"Allow of a service's every action on every resource: {st}")
    for name, function in resources(template, FUNCTION).items():
        for policy in as_list(function["Properties"].get("Policies", [])):
            if isinstance(policy, str):
                found.append(f"{name}: managed policy {policy} (unscoped)")
    return found


def api_throttling(template: Template) -> list[str]:
    found = []
    apis = resources(template, "AWS::Serverless::Api")
    if not apis:
        found.append("no API to throttle")
    for name, api in apis.items():
        settings = [
            s
            for s in api["Properties"].get("MethodSettings", [])
            if s.get("ResourcePath") == "/*" and s.get("HttpMethod") == "*"
        ]
        if not settings or not all(
            isinstance(s.get("ThrottlingBurstLimit"), int)
            and isinstance(s.get("ThrottlingRateLimit"), int | float)
            and s["ThrottlingBurstLimit"] > 0
            and s["ThrottlingRateLimit"] > 0
            for s in settings
        ):
            found.append(f"{name}: no throttling on every method")
    return found


SECRETISH = re.compile(r"(SECRET|KEY|PASSWORD|PASSWD|TOKEN|CREDENTIAL)", re.IGNORECASE)


def plain_secrets(template: Template) -> list[str]:
    secrets = set(resources(template, "AWS::SecretsManager::Secret"))
    found = []
    envs = [
        (
            "Globals",
            template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        )
    ]
    envs += [
        (name, f["Properties"].get("Environment", {}).get("Variables", {}))
        for name, f in resources(template, FUNCTION).items()
    ]
    for where, variables in envs:
        for var, value in variables.items():
            if "{{resolve:" in str(value):
                found.append(f"{where}.{var}: a secret resolved into the environment")
            elif SECRETISH.search(var) and not any(refers_to(value, s) for s in secrets):
                found.append(f"{where}.{var}: a literal where a secret's ARN belongs")
    for name, secret in resources(template, "AWS::SecretsManager::Secret").items():
        if "SecretString" in secret["Properties"]:
            found.append(f"{name}: secret value written in the template")
    return found


RULES: dict[str, Callable[[Template], list[str]]] = {
    "bucket public access blocked": public_access,
    "encryption at rest": encryption,
    "TLS-only bucket policy": tls_only,
    "no * action on * resource": wildcard_permissions,
    "API throttling": api_throttling,
    "no secret in plain environment variables": plain_secrets,
}


# ---- the template breaks each rule is meant to catch --------------------------------------------


def _bucket(t: Template) -> dict[str, Any]:
    props: dict[str, Any] = t["Resources"]["IngestBucket"]["Properties"]
    return props


def _first_function(t: Template) -> dict[str, Any]:
    name = sorted(resources(t, FUNCTION))[0]
    props: dict[str, Any] = t["Resources"][name]["Properties"]
    return props


def _drop_tls(t: Template) -> None:
    for policy in resources(t, "AWS::S3::BucketPolicy").values():
        statements_ = policy["Properties"]["PolicyDocument"]["Statement"]
        policy["Properties"]["PolicyDocument"]["Statement"] = [
            s for s in statements_ if "aws:SecureTransport" not in str(s.get("Condition"))
        ]


def _env(t: Template, **variables: Any) -> None:
    _first_function(t).setdefault("Environment", {}).setdefault("Variables", {}).update(variables)


def _unthrottle(t: Template) -> None:
    for api in resources(t, "AWS::Serverless::Api").values():
        api["Properties"]["MethodSettings"] = []


BREAKS: list[tuple[str, str, Callable[[Template], None]]] = [
    (
        "bucket public access blocked",
        "public access block removed",
        lambda t: _bucket(t).pop("PublicAccessBlockConfiguration"),
    ),
    (
        "bucket public access blocked",
        "public policies allowed",
        lambda t: _bucket(t)["PublicAccessBlockConfiguration"].update(BlockPublicPolicy=False),
    ),
    ("encryption at rest", "bucket encryption removed", lambda t: _bucket(t).pop("BucketEncryption")),
    (
        "encryption at rest",
        "table SSE disabled",
        lambda t: next(iter(resources(t, "AWS::DynamoDB::Table").values()))["Properties"].update(
            SSESpecification={"SSEEnabled": False}
        ),
    ),
    (
        "encryption at rest",
        "queue encryption removed",
        lambda t: next(iter(resources(t, "AWS::SQS::Queue").values()))["Properties"].pop(
            "SqsManagedSseEnabled"
        ),
    ),
    ("TLS-only bucket policy", "SecureTransport deny removed", _drop_tls),
    (
        "no * action on * resource",
        "Allow * on *",
        lambda t: _first_function(t)["Policies"].append(
            {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    ),
    (
        "no * action on * resource",
        "Allow s3:* on *",
        lambda t: _first_function(t)["Policies"].append(
            {"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}
        ),
    ),
    (
        "no * action on * resource",
        "AdministratorAccess attached",
        lambda t: _first_function(t)["Policies"].append("AdministratorAccess"),
    ),
    ("API throttling", "throttling removed", _unthrottle),
    (
        "no secret in plain environment variables",
        "API key as a literal",
        lambda t: _env(t, UPSTREAM_API_KEY="k3y"),
    ),
    (
        "no secret in plain environment variables",
        "secret resolved at deploy",
        lambda t: _env(t, SETTING="{{resolve:secretsmanager:verifyfeed/callback:SecretString:current}}"),
    ),
    (
        "no secret in plain environment variables",
        "secret value in the template",
        lambda t: next(iter(resources(t, "AWS::SecretsManager::Secret").values()))["Properties"].update(
            SecretString="{}"
        ),
    ),
]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


@pytest.mark.parametrize("rule", list(RULES), ids=list(RULES))
def test_the_template_follows_the_rule(template: Template, rule: str) -> None:
    assert RULES[rule](template) == []


@pytest.mark.parametrize("rule, name, breaks", BREAKS, ids=[f"{r}: {n}" for r, n, _ in BREAKS])
def test_the_rule_catches_a_template_that_breaks_it(
    template: Template, rule: str, name: str, breaks: Callable[[Template], None]
) -> None:
    broken = copy.deepcopy(template)
    breaks(broken)
    assert RULES[rule](broken), f"{rule} did not notice: {name}"
    assert {r for r, check in RULES.items() if check(broken)} == {rule}, "exactly that rule fires"


def test_every_rule_has_a_break() -> None:
    assert {rule for rule, _, _ in BREAKS} == set(RULES)


# ---- what the template created ----------------------------------------------------------------------


@pytest.mark.integration
def test_the_created_buckets_block_public_access_and_encrypt(stack: LocalStack) -> None:
    s3 = boto3.client("s3")
    buckets = stack.buckets or {"IngestBucket": stack.bucket}
    for name in buckets.values():
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert all(
            block[k]
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        )
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")


@pytest.mark.integration
def test_the_created_tables_and_queues_are_encrypted(stack: LocalStack) -> None:
    db = boto3.client("dynamodb")
    for table in stack.tables.values():
        assert db.describe_table(TableName=table)["Table"]["SSEDescription"]["Status"] in (
            "ENABLED",
            "ENABLING",
        )
    sqs = boto3.client("sqs")
    for url in (stack.queue_url, stack.dlq_url):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes.get("SqsManagedSseEnabled") == "true" or attributes.get("KmsMasterKeyId")


@pytest.mark.integration
def test_no_function_environment_holds_a_secret_value(stack: LocalStack) -> None:
    secrets = [API_KEY, CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET]
    for logical_id in stack.functions:
        env = stack.env_for(logical_id)
        assert env, logical_id
        leaked = [name for name, value in env.items() if any(secret in value for secret in secrets)]
        assert leaked == [], f"{logical_id} carries a secret value in {leaked}"
        # the names of the secrets are there instead: the values are fetched at run time
        assert {k for k in env if k.endswith("_PARAM")} >= {
            "UPSTREAM_CREDENTIALS_PARAM",
            "CALLBACK_SECRET_PARAM",
        }
