"""The local IAM gate's policy evaluation (local/policy.py), case by case as AWS documents it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.policy import Policy, Request, conditions_hold, evaluate, matches

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"
BUCKET = "arn:aws:s3:::ingest"
ROLE = "arn:aws:iam::123456789012:role/stack-SplitterFunctionRole"


def policy(*statements: dict[str, Any], name: str = "p", resource_policy: bool = False) -> Policy:
    return Policy(name, {"Version": "2012-10-17", "Statement": list(statements)}, resource_policy)


def request(action: str, resource: str, **context: list[str]) -> Request:
    keys = {key.replace("__", ":").replace("_", ""): value for key, value in context.items()}
    return Request(action, resource, keys, principal_arn=ROLE, account_id="123456789012")


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_an_allow_on_the_exact_action_and_resource_allows_and_names_its_statement() -> None:
    decision = evaluate(
        [policy({**allow("dynamodb:GetItem", TABLE), "Sid": "Jobs"})], request("dynamodb:GetItem", TABLE)
    )
    assert decision.allowed and decision.reason == "allowed by p/Jobs"


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("dynamodb:BatchGetItem", TABLE),  # another action
        ("dynamodb:GetItem", TABLE + "/index/gsi1"),  # an index is a resource of its own
        ("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs2"),
    ],
)
def test_nothing_else_is_allowed(action: str, resource: str) -> None:
    decision = evaluate([policy(allow("dynamodb:GetItem", TABLE))], request(action, resource))
    assert not decision.allowed and decision.reason == "no policy allows it"


def test_wildcards_match_actions_case_insensitively_and_resources_exactly() -> None:
    p = policy(allow("sqs:SendMessage*", "arn:aws:sqs:us-east-1:123456789012:q-?"))
    assert evaluate([p], request("SQS:sendmessagebatch", "arn:aws:sqs:us-east-1:123456789012:q-1")).allowed
    assert not evaluate([p], request("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q-12")).allowed
    assert matches("a[1]*", "a[1]x")  # brackets are literal in IAM, not a character class
    assert not matches("arn:*:s3:::B/*", "arn:aws:s3:::b/x")


def test_an_explicit_deny_wins_over_any_allow() -> None:
    policies = [
        policy(allow("s3:*", "*")),
        policy(
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/claims/*", "Sid": "NoClaims"},
            name="d",
        ),
    ]
    decision = evaluate(policies, request("s3:GetObject", f"{BUCKET}/claims/j/1.json"))
    assert not decision.allowed and decision.reason == "explicitly denied by d/NoClaims"
    assert evaluate(policies, request("s3:GetObject", f"{BUCKET}/reports/x.json")).allowed


def test_not_action_and_not_resource_invert_the_match() -> None:
    p = policy({"Effect": "Allow", "NotAction": "s3:DeleteObject*", "NotResource": f"{BUCKET}/ledger/*"})
    assert evaluate([p], request("s3:GetObject", f"{BUCKET}/claims/a")).allowed
    assert not evaluate([p], request("s3:DeleteObject", f"{BUCKET}/claims/a")).allowed
    assert not evaluate([p], request("s3:GetObject", f"{BUCKET}/ledger/a")).allowed


def test_s3_prefix_condition_limits_a_listing() -> None:
    p = policy(allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": "ledger/*"}}))
    assert evaluate([p], request("s3:ListBucket", BUCKET, s3__prefix=["ledger/2026-11/"])).allowed
    assert not evaluate([p], request("s3:ListBucket", BUCKET, s3__prefix=["claims/"])).allowed
    assert not evaluate([p], request("s3:ListBucket", BUCKET)).allowed  # no prefix: the whole bucket


def test_leading_keys_for_all_values_holds_only_for_the_named_partition() -> None:
    p = policy(
        allow(
            "dynamodb:DeleteItem",
            TABLE,
            Condition={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["LEDGER"]}},
        )
    )
    assert evaluate([p], request("dynamodb:DeleteItem", TABLE, dynamodb__LeadingKeys=["LEDGER"])).allowed
    assert not evaluate([p], request("dynamodb:DeleteItem", TABLE, dynamodb__LeadingKeys=["JOB#1"])).allowed
    assert not evaluate(
        [p], request("dynamodb:DeleteItem", TABLE, dynamodb__LeadingKeys=["LEDGER", "JOB#1"])
    ).allowed


@pytest.mark.parametrize(
    ("conditions", "context", "holds"),
    [
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:securetransport": ["true"]}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": ["false"]}, True),
        ({"StringEquals": {"kms:ViaService": ["s3.x", "sqs.x"]}}, {"kms:ViaService": ["sqs.x"]}, True),
        ({"StringEquals": {"kms:ViaService": "s3.x"}}, {}, False),  # absent key: false
        ({"StringEqualsIfExists": {"kms:ViaService": "s3.x"}}, {}, True),
        ({"StringNotEquals": {"aws:PrincipalAccount": "1"}}, {}, True),  # negated, absent: true
        (
            {"ArnNotEquals": {"aws:PrincipalArn": [ROLE, "arn:aws:iam::1:role/op"]}},
            {"aws:PrincipalArn": [ROLE]},
            False,
        ),
        (
            {"ArnNotEquals": {"aws:PrincipalArn": ["arn:aws:iam::1:role/op"]}},
            {"aws:PrincipalArn": [ROLE]},
            True,
        ),
        ({"Null": {"s3:prefix": "true"}}, {}, True),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": ["a"]}, False),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["5"]}, True),
        ({"ForAnyValue:StringLike": {"k": ["a*"]}}, {"k": ["b", "ba"]}, False),
        ({"ForAnyValue:StringLike": {"k": ["a*"]}}, {"k": ["b", "az"]}, True),
        ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:CurrentTime": ["x"]}, False),
    ],
)
def test_condition_operators(conditions: dict[str, Any], context: dict[str, list[str]], holds: bool) -> None:
    assert conditions_hold(conditions, context) is holds


def test_an_operator_it_does_not_know_never_allows_and_always_denies() -> None:
    unknown = {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    assert not evaluate(
        [policy(allow("s3:GetObject", "*", Condition=unknown))], request("s3:GetObject", BUCKET + "/a")
    ).allowed
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": unknown}
    assert not evaluate([policy(allow("s3:*", "*"), deny)], request("s3:GetObject", BUCKET + "/a")).allowed


def test_a_resource_policy_applies_only_to_the_principals_it_names() -> None:
    other = "arn:aws:iam::123456789012:role/someone-else"
    bucket_policy = policy(
        {"Effect": "Deny", "Principal": {"AWS": [other]}, "Action": "s3:*", "Resource": f"{BUCKET}/*"},
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"},
        resource_policy=True,
    )
    assert evaluate([bucket_policy], request("s3:GetObject", f"{BUCKET}/a")).allowed
    assert not evaluate([bucket_policy], request("s3:PutObject", f"{BUCKET}/a")).allowed


def test_it_agrees_with_motos_evaluator_wherever_moto_can_decide() -> None:
    """moto's IAMPolicy (maintained with moto) decides statements without conditions: on each, and on
    every action × resource they name and their near misses, both evaluators give the same answer."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    statements = [
        allow(["dynamodb:GetItem", "dynamodb:Query"], [TABLE, TABLE + "/index/gsi1"]),
        allow("s3:GetObject", [f"{BUCKET}/claims/*", f"{BUCKET}/reports/*"]),
        allow("sqs:SendMessage*", "arn:aws:sqs:us-east-1:123456789012:work"),
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{BUCKET}/claims/secret*"},
        allow("xray:PutTraceSegments", "*"),
    ]
    document = {"Version": "2012-10-17", "Statement": statements}
    theirs = IAMPolicy(json.dumps(document))
    ours = Policy("p", document)
    cases = [
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:Query", TABLE + "/index/gsi1"),
        ("dynamodb:Query", TABLE + "/index/other"),
        ("dynamodb:PutItem", TABLE),
        ("s3:GetObject", f"{BUCKET}/claims/j/1.json"),
        ("s3:GetObject", f"{BUCKET}/claims/secret.json"),
        ("s3:GetObject", f"{BUCKET}/ledger/x"),
        ("s3:PutObject", f"{BUCKET}/reports/x"),
        ("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:123456789012:work"),
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:dlq"),
        ("xray:PutTraceSegments", "*"),
    ]
    for action, resource in cases:
        moto_allows = theirs.is_action_permitted(action, resource) == PermissionResult.PERMITTED
        assert evaluate([ours], request(action, resource)).allowed is moto_allows, (action, resource)
