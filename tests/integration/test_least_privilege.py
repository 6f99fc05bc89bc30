"""Each function runs locally with exactly the role AWS will give it (local/iam.py).

- The template as SAM expands it grants each function's role no managed policy and no wildcard it
  does not need (read from the expanded template, not from a hand-kept list).
- A grant the code needs, removed from the template, stops the function with AWS's AccessDenied
  and the IAM gate names the function, the action and the resource: one removed grant per function.
- The gate refuses what the role does not allow even on a thread the function's work was handed to.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.iam import expand_template, function_roles, invoking_as, read_report
from local.policy import Policy, Request, evaluate
from local.resources import LocalStack, Resolver, load_template
from local.runner import LocalRunner, RunnerOptions
from tests.templates import without_grant
from verifyfeed import aws

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("SplitterFunction", "UploaderFunction", "CallbackFunction", "PollerFunction")
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def expanded_roles(**parameters: str) -> dict[str, Any]:
    template = load_template(TEMPLATE)
    resolver = Resolver(template, stack_name="s", region="us-east-1", parameters=parameters)
    return function_roles(expand_template(template, resolver.parameters, "us-east-1"), resolver)


@pytest.fixture(scope="module")
def roles() -> dict[str, Any]:
    return expanded_roles(KmsKeyArn=KMS_KEY)


def statements(role: Any) -> Iterator[dict[str, Any]]:
    for policy in role.policies:
        yield from policy.document["Statement"]


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_the_expanded_template_attaches_no_managed_policy_to_any_function(roles: dict[str, Any]) -> None:
    assert set(roles) == set(FUNCTIONS)
    assert {name: role.managed_policy_arns for name, role in roles.items()} == dict.fromkeys(FUNCTIONS, ())


def test_no_function_is_granted_a_wildcard_resource_but_for_xray(roles: dict[str, Any]) -> None:
    wildcards = {
        (name, action)
        for name, role in roles.items()
        for statement in statements(role)
        if "*" in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }
    xray = {(name, a) for name in FUNCTIONS for a in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")}
    assert wildcards == xray


def grants(role: Any, prefix: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for statement in statements(role):
        for action in as_list(statement["Action"]):
            if action.startswith(prefix):
                found.setdefault(action, set()).update(as_list(statement["Resource"]))
    return found


def test_queues_and_logs_are_granted_on_the_functions_own_only(roles: dict[str, Any]) -> None:
    work = "arn:aws:sqs:us-east-1:123456789012:s-WorkQueue"
    assert grants(roles["UploaderFunction"], "sqs:") == {
        action: {work}
        for action in (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
        )
    }  # never the dead-letter queue, never another stack's queue
    assert grants(roles["SplitterFunction"], "sqs:") == {
        "sqs:SendMessage": {work, "arn:aws:sqs:us-east-1:123456789012:s-SplitterFailureQueue"}
    }
    assert grants(roles["PollerFunction"], "sqs:") == {"sqs:SendMessage": {work}}
    assert grants(roles["CallbackFunction"], "sqs:") == {}
    for name, group in (
        ("SplitterFunction", "Splitter"),
        ("UploaderFunction", "Uploader"),
        ("CallbackFunction", "Callback"),
        ("PollerFunction", "Poller"),
    ):
        logs = grants(roles[name], "logs:")
        assert set(logs) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        assert {r for rs in logs.values() for r in rs} == {
            f"arn:aws:logs:us-east-1:123456789012:s-{group}LogGroup"
        }


@pytest.mark.parametrize(
    ("function", "via", "allowed"),
    [
        ("SplitterFunction", "s3.us-east-1.amazonaws.com", True),
        ("UploaderFunction", "s3.us-east-1.amazonaws.com", True),
        ("UploaderFunction", "sqs.us-east-1.amazonaws.com", True),
        ("PollerFunction", "sqs.us-east-1.amazonaws.com", True),
        ("PollerFunction", "s3.us-east-1.amazonaws.com", False),  # it reads no object
        ("CallbackFunction", "s3.us-east-1.amazonaws.com", False),
        ("SplitterFunction", None, False),  # never the key directly, only through S3 and SQS
    ],
)
def test_the_customer_key_decrypts_only_for_the_functions_that_read_through_it(
    roles: dict[str, Any], function: str, via: str | None, allowed: bool
) -> None:
    context = {"kms:ViaService": [via]} if via else {}
    decision = evaluate(roles[function].policies, Request("kms:Decrypt", KMS_KEY, context))
    assert decision.allowed is allowed, decision.reason


def test_without_a_customer_key_no_function_may_use_kms() -> None:
    for name, role in expanded_roles().items():
        assert grants(role, "kms:") == {}, name


# ---- the bucket policy --------------------------------------------------------------------------


OPERATOR = "arn:aws:iam::123456789012:role/verifyfeed-operators"
BUCKET = "arn:aws:s3:::s-ingest-123456789012-us-east-1"


def bucket_policy(**parameters: str) -> Policy:
    """The bucket policy as deployed as stack ``s`` (the roles' ARNs as IAM gives them)."""
    template = load_template(TEMPLATE)
    resolver = Resolver(template, stack_name="s", region="us-east-1", parameters=parameters)
    resolver.refs["IngestBucket"] = BUCKET.removeprefix("arn:aws:s3:::")
    for role in (
        "SplitterFunctionRole",
        "UploaderFunctionRole",
        "CallbackFunctionRole",
        "PollerFunctionRole",
    ):
        resolver.attributes[(role, "Arn")] = f"arn:aws:iam::123456789012:role/s-{role}"
    document = resolver.resolve(template["Resources"]["IngestBucketPolicy"]["Properties"]["PolicyDocument"])
    return Policy("IngestBucketPolicy", document, resource_policy=True)


@pytest.mark.parametrize(
    ("principal", "action", "key", "denied"),
    [
        (OPERATOR, "s3:PutObject", "lost-repair/x.csv", False),
        (OPERATOR, "s3:GetObject", "reports/lost-repair/x.csv.json", False),
        (OPERATOR, "s3:GetObject", "claims/j/00001.json", True),  # names and unkeyed digests
        (OPERATOR, "s3:GetObject", "ledger/2026/x.json", True),
        (
            "arn:aws:iam::123456789012:role/s-UploaderFunctionRole",
            "s3:GetObject",
            "claims/j/00001.json",
            False,
        ),
        ("arn:aws:iam::123456789012:role/s-PollerFunctionRole", "s3:GetObject", "claims/j/00001.json", True),
        ("arn:aws:iam::123456789012:role/Admin", "s3:GetObject", "lost-repair/x.csv", True),
        ("arn:aws:iam::123456789012:root", "s3:GetObject", "reports/x.json", True),
    ],
)
def test_the_bucket_lets_in_only_the_stacks_roles_and_the_operator_role(
    principal: str, action: str, key: str, denied: bool
) -> None:
    policy = bucket_policy(OperatorRoleArn=OPERATOR)
    request = Request(
        action,
        f"{BUCKET}/{key}",
        {"aws:PrincipalArn": [principal], "aws:SecureTransport": ["true"]},
        principal_arn=principal,
        account_id="123456789012",
    )
    decision = evaluate([policy], request)
    assert decision.reason.startswith("explicitly denied") is denied, decision.reason


def test_without_an_operator_role_only_the_functions_get_in_and_never_without_tls() -> None:
    policy = bucket_policy()
    operator = Request(
        "s3:PutObject",
        f"{BUCKET}/lost-repair/x.csv",
        {"aws:PrincipalArn": [OPERATOR], "aws:SecureTransport": ["true"]},
        principal_arn=OPERATOR,
    )
    assert evaluate([policy], operator).reason.startswith("explicitly denied")
    splitter = "arn:aws:iam::123456789012:role/s-SplitterFunctionRole"
    plain = Request(
        "s3:GetObject",
        f"{BUCKET}/lost-repair/x.csv",
        {"aws:PrincipalArn": [splitter], "aws:SecureTransport": ["false"]},
        principal_arn=splitter,
    )
    assert evaluate([policy], plain).reason.startswith(
        "explicitly denied by IngestBucketPolicy/DenyInsecureTransport"
    )


# ---- the gate, over HTTP ------------------------------------------------------------------------


def test_a_role_session_is_held_to_its_role_and_the_harness_is_not(stack: LocalStack) -> None:
    splitter = stack.roles["SplitterFunction"]
    s3 = boto3.client("s3", **splitter.client_kwargs())
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=stack.bucket, Key="lost-repair/not-its-to-write.csv", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert "s3:PutObject" in str(refused.value) and splitter.role_arn in str(refused.value)
    # reports/ is the splitter's to write; the harness (an operator with every right) writes anywhere
    s3.put_object(Bucket=stack.bucket, Key="reports/gate-test.json", Body=b"{}")
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="lost-repair/operator-put.csv", Body=b"x")
    denied = [d for d in read_report(aws_endpoint())["denials"] if d["role_arn"] == splitter.role_arn]
    assert {
        "function": "SplitterFunction",
        "action": "s3:PutObject",
        "resource": f"arn:aws:s3:::{stack.bucket}/lost-repair/*",
    }.items() <= denied[-1].items()


def test_work_handed_to_a_thread_pool_still_signs_as_the_function(stack: LocalStack) -> None:
    """The core hands work to pools (verifyfeed.threads.submit): it must not sign as the harness."""
    from concurrent.futures import ThreadPoolExecutor

    from verifyfeed.threads import submit

    callback = stack.roles["CallbackFunction"]
    jobs_table = stack.tables["JobsTable"]

    def read_a_job() -> None:
        aws.dynamodb().get_item(TableName=jobs_table, Key={"pk": {"S": "JOB#x"}, "sk": {"S": "JOB"}})

    with invoking_as(callback), ThreadPoolExecutor(2) as pool:
        future = submit(pool, read_a_job)  # the callback may not read the jobs table at all
        with pytest.raises(ClientError) as refused:
            future.result()
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "dynamodb:GetItem" in str(refused.value)


def aws_endpoint() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL"]


# ---- one removed grant per function -------------------------------------------------------------


REMOVED = {
    # the first carrier-audit file after a deploy: the splitter looks its rows up in one batch get
    "SplitterFunction": (
        "SplitterFunctionRole",
        "AuditsTable",
        "dynamodb:BatchGetItem",
        "carrier-audit/audits.csv",
        "table/{stack}-AuditsTable",
    ),
    # the event source mapping deletes a handled message with the uploader's role
    "UploaderFunction": (
        "UploaderFunctionRole",
        "WorkQueue",
        "sqs:DeleteMessage",
        "lost-repair/customers.csv",
        "{stack}-WorkQueue",
    ),
    # the callback verifies a callback's sign with the signing key, read from Secrets Manager
    "CallbackFunction": (
        "CallbackFunctionRole",
        "CallbackSigningKey",
        None,
        None,
        "secret:{stack}-CallbackSigningSecret",
    ),
    # the poller lists deferred and unknown batches through the jobs table's index
    "PollerFunction": (
        "PollerFunctionRole",
        "JobsByStatus",
        None,
        None,
        "table/{stack}-JobsTable/index/gsi1",
    ),
}


EXPECTED_ACTION = {"CallbackFunction": "secretsmanager:GetSecretValue", "PollerFunction": "dynamodb:Query"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_grant_removed_from_the_template_stops_the_function_naming_what_was_denied(
    function: str, tmp_path: Path, handler_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    role, sid, action, sample, resource = REMOVED[function]
    # Powertools' Logger and Metrics are made once a process, from the environment at the first
    # import: under the session's, as the other integration tests expect, not this stack's
    import verifyfeed.observability  # noqa: F401

    # a stack of its own: none of the session's function settings (tests/integration/conftest.py)
    for name in ("CLOCK_NOW", "RETRY_BASE_SECONDS", "UPSTREAM_READ_TIMEOUT", "RESEND_WINDOW"):
        monkeypatch.delenv(name, raising=False)
    template = without_grant(load_template(TEMPLATE), role, sid, action)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    stack_name = f"verifyfeed-iam-{function[:-8].lower()}"
    options = RunnerOptions(
        template_path=path,
        stack_name=stack_name,
        callback_port=0,
        poll_seconds=0.5,
        decision_delay_s=0.3,
        env_overrides={"UPSTREAM_READ_TIMEOUT": "60", "RESEND_WINDOW": "off"},
    )
    with LocalRunner(options) as runner:
        if sample:
            runner.submit_file(ROOT / "samples" / sample)
        if function == "CallbackFunction":  # any callback: its sign is checked first
            request = urllib.request.Request(
                runner.callback_url,
                data=b"{}",
                headers={"sign": "0" * 64, "Content-Type": "application/json"},
                method="POST",
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=60)
            assert answer.value.code == 502  # the function failed: API Gateway's answer
        denials = wait_for(lambda: runner.iam_report()["denials"], timeout_s=120)
        roles = dict(runner.stack.roles) if runner.stack else {}
    first = denials[0]
    assert first["function"] == function
    assert first["role_arn"] == roles[function].role_arn
    expected_action = action or EXPECTED_ACTION[function]
    assert first["action"] == expected_action
    assert resource.format(stack=stack_name) in first["resource"], first
    assert all(d["function"] == function for d in denials)  # the other roles lack nothing


def wait_for(probe: Callable[[], list[Any]], timeout_s: float) -> list[Any]:
    """``probe()`` once it is not empty (checked every 0.2 s; a generous bound, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found, f"nothing within {timeout_s} s"
    return found
