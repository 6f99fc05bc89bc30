"""``create_local_stack`` builds the template's resources in moto, as the template declares them."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.resources import LocalStack, create_local_stack, load_template
from verifyfeed.config import Settings, UnknownOutcomePolicy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
STACK = "verifyfeed-it-resources"
CREDENTIALS = json.dumps({"apiId": "it-api-id", "apiKey": "it-api-key"})


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> LocalStack:
    return create_local_stack(
        stack_name=STACK,
        template_path=TEMPLATE,
        secrets={"UpstreamCredentialsSecret": CREDENTIALS},
    )


def test_bucket_is_versioned_encrypted_and_private(stack: LocalStack) -> None:
    s3 = boto3.client("s3")
    assert stack.bucket == f"{STACK}-ingest-123456789012-us-east-1"
    assert s3.get_bucket_versioning(Bucket=stack.bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=stack.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=stack.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=stack.bucket)["Rules"]
    days = {rule["Filter"].get("Prefix"): rule.get("Expiration", {}).get("Days") for rule in lifecycle}
    assert days["lost-repair/"] == days["carrier-audit/"] == 30
    assert days["claims/"] == 14


def test_work_queue_redrives_to_the_dead_letter_queue(stack: LocalStack, template: dict[str, Any]) -> None:
    sqs = boto3.client("sqs")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 8
    declared = template["Resources"]["WorkQueue"]["Properties"]["VisibilityTimeout"]
    assert attributes["VisibilityTimeout"] == str(declared)
    assert set(stack.queues) == {"DeadLetterQueue", "WorkQueue", "SplitterFailureQueue"}
    assert stack.queues["DeadLetterQueue"] == stack.dlq_url and stack.queues["WorkQueue"] == stack.queue_url


def test_the_splitters_failed_events_go_to_its_failure_queue(stack: LocalStack) -> None:
    # the template's EventInvokeConfig, resolved to the local queue the runner sends them to
    assert stack.functions["SplitterFunction"].on_failure_queue_url == stack.queues["SplitterFailureQueue"]
    assert stack.functions["UploaderFunction"].on_failure_queue_url is None


def key_schema(description: Any) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]]


def test_tables_have_the_declared_keys_indexes_and_ttl(stack: LocalStack, template: dict[str, Any]) -> None:
    dynamodb = boto3.client("dynamodb")
    assert set(stack.tables) == {"JobsTable", "AuditsTable", "IdempotencyTable"}
    for logical_id, name in stack.tables.items():
        declared = template["Resources"][logical_id]["Properties"]
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert name == f"{STACK}-{logical_id}"
        assert key_schema(table) == key_schema(declared)
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {gsi["IndexName"]: key_schema(gsi) for gsi in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {
            gsi["IndexName"]: key_schema(gsi) for gsi in declared.get("GlobalSecondaryIndexes", [])
        }
    ttl = dynamodb.describe_time_to_live(TableName=stack.tables["IdempotencyTable"])["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "expiration"


def test_secrets_hold_given_or_generated_values(stack: LocalStack) -> None:
    secretsmanager = boto3.client("secretsmanager")
    assert set(stack.secrets) == {
        "UpstreamCredentialsSecret",
        "CallbackSigningSecret",
        "IdentityPepperSecret",
    }
    upstream = secretsmanager.get_secret_value(SecretId=stack.secrets["UpstreamCredentialsSecret"])
    assert json.loads(upstream["SecretString"]) == json.loads(CREDENTIALS)
    signing = json.loads(
        secretsmanager.get_secret_value(SecretId=stack.secrets["CallbackSigningSecret"])["SecretString"]
    )
    assert set(signing) == {"current"}
    assert len(signing["current"]) == 48
    assert set(signing["current"]) <= set(string.ascii_letters + string.digits)
    pepper = json.loads(
        secretsmanager.get_secret_value(SecretId=stack.secrets["IdentityPepperSecret"])["SecretString"]
    )
    assert set(pepper) == {"current"} and len(pepper["current"]) == 64  # generated, as the stack does
    assert set(pepper["current"]) <= set(string.ascii_letters + string.digits)


def test_function_env_is_fully_resolved(stack: LocalStack, template: dict[str, Any]) -> None:
    declared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(stack.function_env) == set(declared)
    for name, value in stack.function_env.items():
        assert isinstance(value, str), name
        assert "Ref" not in value and "${" not in value and "Fn::" not in value, (name, value)
    env = stack.function_env
    assert env["INGEST_BUCKET"] == stack.bucket
    assert env["WORK_QUEUE_URL"] == stack.queue_url
    assert env["JOBS_TABLE"] == stack.tables["JobsTable"]
    assert env["UPSTREAM_CREDENTIALS_PARAM"] == stack.secrets["UpstreamCredentialsSecret"]
    assert env["CALLBACK_SECRET_PARAM"] == stack.secrets["CallbackSigningSecret"]
    assert env["IDENTITY_PEPPER_PARAM"] == stack.secrets["IdentityPepperSecret"]
    settings = Settings.from_env(env)  # the functions' own settings object accepts it
    assert settings.audits_table == stack.tables["AuditsTable"]
    assert settings.idempotency_table == stack.tables["IdempotencyTable"]
    assert settings.unknown_outcome_policy is UnknownOutcomePolicy.HOLD
    assert (settings.blackout_start_day, settings.blackout_resume_day) == (27, 1)


def test_function_specs_come_from_the_template(stack: LocalStack) -> None:
    functions = stack.functions
    assert set(functions) == {"SplitterFunction", "UploaderFunction", "CallbackFunction", "PollerFunction"}
    splitter = functions["SplitterFunction"]
    assert (splitter.handler_path, splitter.handler_function) == (
        "functions/splitter/app.py",
        "lambda_handler",
    )
    assert (splitter.timeout_s, splitter.memory_mb, splitter.ephemeral_storage_mb) == (900, 1024, 2048)
    assert {(e.properties["Bucket"], e.key_filter("prefix")) for e in splitter.s3_triggers} == {
        (stack.bucket, "lost-repair/"),
        (stack.bucket, "carrier-audit/"),
        (stack.bucket, "dry-run/"),
    }
    uploader = functions["UploaderFunction"].sqs
    assert uploader is not None
    work_queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{STACK}-WorkQueue"
    assert (uploader.properties["Queue"], uploader.properties["BatchSize"]) == (work_queue_arn, 5)
    assert uploader.properties["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert uploader.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert uploader.properties["MaximumBatchingWindowInSeconds"] == 1
    assert functions["UploaderFunction"].timeout_s == 120
    (route,) = functions["CallbackFunction"].api_routes
    assert (route.properties["Method"], route.properties["Path"], route.stage) == (
        "post",
        "/callbacks/carrier-audit",
        "dev",
    )
    (schedule,) = functions["PollerFunction"].schedules
    assert (schedule.properties["Schedule"], schedule.properties["Enabled"]) == ("rate(5 minutes)", True)
    assert stack.env_for("PollerFunction")["WORK_QUEUE_URL"] == stack.queue_url


@pytest.fixture
def secrets_restored(stack: LocalStack) -> Iterator[None]:
    """The stack's secret values as they were before the test (which may rotate them): the stack is
    the module's, and test_secrets_hold_given_or_generated_values reads what it was created with."""
    secretsmanager = boto3.client("secretsmanager")
    saved = {
        arn: secretsmanager.get_secret_value(SecretId=arn)["SecretString"] for arn in stack.secrets.values()
    }
    yield
    for arn, value in saved.items():
        if secretsmanager.get_secret_value(SecretId=arn)["SecretString"] != value:
            secretsmanager.put_secret_value(SecretId=arn, SecretString=value)


@pytest.mark.usefixtures("secrets_restored")
def test_creating_again_reuses_everything(stack: LocalStack) -> None:
    again = create_local_stack(stack_name=STACK, template_path=TEMPLATE)
    assert again == stack  # same names, same ARNs, same environment
    assert {f: r.role_arn for f, r in again.roles.items()} == {f: r.role_arn for f, r in stack.roles.items()}
    secretsmanager = boto3.client("secretsmanager")
    kept = secretsmanager.get_secret_value(SecretId=stack.secrets["UpstreamCredentialsSecret"])
    assert json.loads(kept["SecretString"]) == json.loads(CREDENTIALS)  # not regenerated

    rotated = json.dumps({"apiId": "it-api-id", "apiKey": "rotated"})
    create_local_stack(
        stack_name=STACK, template_path=TEMPLATE, secrets={"UpstreamCredentialsSecret": rotated}
    )
    current = secretsmanager.get_secret_value(SecretId=stack.secrets["UpstreamCredentialsSecret"])
    assert json.loads(current["SecretString"])["apiKey"] == "rotated"


def test_parameters_override_defaults(moto_endpoint: str) -> None:
    stack = create_local_stack(
        stack_name="verifyfeed-it-params",
        template_path=TEMPLATE,
        parameters={"UnknownOutcomePolicy": "resend", "BlackoutStartDay": "26", "LogLevel": "DEBUG"},
    )
    assert stack.function_env["UNKNOWN_OUTCOME_POLICY"] == "resend"
    assert stack.function_env["BLACKOUT_START_DAY"] == "26"
    assert stack.function_env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    with pytest.raises(ValueError, match="UnknownOutcomePolicy"):
        create_local_stack(
            stack_name="verifyfeed-it-params",
            template_path=TEMPLATE,
            parameters={"UnknownOutcomePolicy": "maybe"},
        )


@pytest.mark.parametrize("manage", ["true", "false"])
def test_the_api_gateway_account_parameter_either_way(moto_endpoint: str, manage: str) -> None:
    """Its resources carry a Condition (and are not made locally): the local stack is built either way."""
    name = f"verifyfeed-it-apigw-{manage}"
    stack = create_local_stack(
        stack_name=name, template_path=TEMPLATE, parameters={"ManageApiGatewayAccount": manage}
    )
    assert len(stack.functions) == 4 and stack.function_env["UPSTREAM_BASE_URL"] == "https://api.caih.com"
    (described,) = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert given["ManageApiGatewayAccount"] == manage


def test_refuses_to_run_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    with pytest.raises(RuntimeError, match="AWS_ENDPOINT_URL"):
        create_local_stack(stack_name="never", template_path=TEMPLATE)
