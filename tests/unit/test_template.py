"""The template's security and wiring properties, checked on the YAML itself (no AWS, no SAM)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.resources import NO_VALUE, Resolver, load_template
from verifyfeed.config import MAX_DELAY_SECONDS, Settings

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "SplitterFunction": "splitter",
    "UploaderFunction": "uploader",
    "CallbackFunction": "callback",
    "PollerFunction": "poller",
}
BUCKET_NAME = "${AWS::StackName}-ingest-${AWS::AccountId}-${AWS::Region}"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = resources[logical_id]["Properties"]
    return found


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement anywhere in the template (inline policies, bucket policies ...)."""
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list | dict):
            yield from as_list(node["Statement"])
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def referenced(node: Any) -> set[str]:
    """Logical ids a value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        if "Ref" in node:
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            found.add(node["Fn::GetAtt"][0])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
        for value in node.values():
            found |= referenced(value)
    elif isinstance(node, list):
        for item in node:
            found |= referenced(item)
    return found


# -- ingest bucket --------------------------------------------------------------------------------


def test_ingest_bucket_blocks_public_access(resources: dict[str, Any]) -> None:
    block = props(resources, "IngestBucket")["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_every_bucket_is_encrypted_and_versioned(resources: dict[str, Any]) -> None:
    for logical_id, bucket in of_type(resources, "AWS::S3::Bucket").items():
        rules = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        algorithms = [rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules]
        # SSE-KMS with the customer-managed key when KmsKeyArn is set, SSE-S3 otherwise
        assert algorithms == [{"Fn::If": ["HasKmsKey", "aws:kms", "AES256"]}], logical_id
        assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id


def test_ingest_bucket_lifecycle(resources: dict[str, Any]) -> None:
    rules = props(resources, "IngestBucket")["LifecycleConfiguration"]["Rules"]
    by_prefix = {rule.get("Prefix"): rule for rule in rules}
    for prefix in ("lost-repair/", "carrier-audit/", "dry-run/"):
        assert by_prefix[prefix]["ExpirationInDays"] == {"Ref": "RawUploadRetentionDays"}
    assert by_prefix["claims/"]["ExpirationInDays"] == 14
    assert all(not str(rule.get("Prefix", "")).startswith("reports") for rule in rules), "reports are kept"
    noncurrent = [
        rule["NoncurrentVersionExpiration"] for rule in rules if "NoncurrentVersionExpiration" in rule
    ]
    assert noncurrent == [{"NoncurrentDays": 7}]
    assert all(rule["Status"] == "Enabled" for rule in rules)


def test_ingest_bucket_is_tls_only(resources: dict[str, Any]) -> None:
    policies = [
        p["Properties"]
        for p in of_type(resources, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "IngestBucket"}
    ]
    assert len(policies) == 1
    denies = [
        st
        for st in policies[0]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny"
        and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and st["Principal"] == "*"
        and st["Action"] in ("s3:*", ["s3:*"])
    ]
    assert len(denies) == 1
    assert {"Fn::GetAtt": ["IngestBucket", "Arn"]} in denies[0]["Resource"]
    assert {"Fn::Sub": "${IngestBucket.Arn}/*"} in denies[0]["Resource"]


def test_bucket_name_is_deterministic_and_never_a_ref_from_functions(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """The bucket's notification depends on the splitter: nothing of a function may depend on the bucket."""
    assert props(resources, "IngestBucket")["BucketName"] == {"Fn::Sub": BUCKET_NAME}
    assert template["Globals"]["Function"]["Environment"]["Variables"]["INGEST_BUCKET"] == {
        "Fn::Sub": BUCKET_NAME
    }
    for logical_id in FUNCTIONS:
        function = props(resources, logical_id)
        without_events = {k: v for k, v in function.items() if k != "Events"}
        assert "IngestBucket" not in referenced(without_events), logical_id
    assert "IngestBucket" not in referenced(template["Globals"])


def test_splitter_is_triggered_by_both_upload_prefixes(resources: dict[str, Any]) -> None:
    events = props(resources, "SplitterFunction")["Events"].values()
    prefixes = set()
    for event in events:
        assert event["Type"] == "S3"
        assert event["Properties"]["Bucket"] == {"Ref": "IngestBucket"}
        assert event["Properties"]["Events"] in ("s3:ObjectCreated:*", ["s3:ObjectCreated:*"])
        rules = event["Properties"]["Filter"]["S3Key"]["Rules"]
        prefixes |= {rule["Value"] for rule in rules if rule["Name"] == "prefix"}
    assert prefixes == {"lost-repair/", "carrier-audit/", "dry-run/"}
    splitter = props(resources, "SplitterFunction")
    assert (splitter["MemorySize"], splitter["Timeout"], splitter["EphemeralStorage"]["Size"]) == (
        1024,
        900,
        2048,
    )


# -- IAM ------------------------------------------------------------------------------------------


def test_no_statement_allows_everything(template: dict[str, Any]) -> None:
    found = list(statements(template["Resources"]))
    assert found, "the walk found no statement at all"
    for statement in found:
        if statement.get("Effect") != "Allow":
            continue
        actions = as_list(statement.get("Action", []))
        resources = as_list(statement.get("Resource", []))
        assert "*" not in actions, statement
        assert not ("*" in resources and any(str(a).endswith(":*") for a in actions)), statement


def role_policies(resources: dict[str, Any], logical_id: str) -> list[Any]:
    """The policies of the function's own role (``Role: !GetAtt <Function>Role.Arn``)."""
    role = props(resources, logical_id)["Role"]["Fn::GetAtt"][0]
    policies: list[Any] = props(resources, role)["Policies"]
    return policies


def test_each_function_has_a_role_of_its_own_with_inline_policies_only(resources: dict[str, Any]) -> None:
    """No managed policy (AWSLambdaBasicExecutionRole: logs on every group; SAM's SQS one: every
    queue): each function names its own role, and nothing SAM would add is attached."""
    for logical_id in FUNCTIONS:
        function = props(resources, logical_id)
        assert "Policies" not in function, logical_id  # SAM ignores Policies beside a Role
        assert function["Role"] == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}, logical_id
        role = resources[f"{logical_id}Role"]
        assert role["Type"] == "AWS::IAM::Role" and "ManagedPolicyArns" not in role["Properties"], logical_id
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
        for policy in role_policies(resources, logical_id):
            entry = policy["Fn::If"][1] if "Fn::If" in policy else policy
            assert set(entry) == {"PolicyName", "PolicyDocument"}, logical_id


def granted(resources: dict[str, Any], logical_id: str, action: str) -> set[str]:
    """What the function's role grants ``action`` on, by logical id (``*`` for every resource)."""
    found: set[str] = set()
    for st in statements(role_policies(resources, logical_id)):
        if action in as_list(st["Action"]):
            found |= {"*"} if st["Resource"] == "*" else referenced(st["Resource"]) or {str(st["Resource"])}
    return found


def test_each_function_reads_only_its_own_secret(resources: dict[str, Any]) -> None:
    expected = {
        "SplitterFunction": {"IdentityPepperSecret"},
        "UploaderFunction": {"UpstreamCredentialsSecret"},
        # never the credentials (they hold the billing apiKey): its apiId is the UpstreamApiId parameter
        "CallbackFunction": {"CallbackSigningSecret"},
        "PollerFunction": {"UpstreamCredentialsSecret"},
    }
    for logical_id, secrets in expected.items():
        assert granted(resources, logical_id, "secretsmanager:GetSecretValue") == secrets, logical_id


def test_function_table_and_queue_access(resources: dict[str, Any]) -> None:
    """Tables by explicit statements (the exact actions: tests/reliability/test_security.py)."""

    def tables(logical_id: str) -> set[str]:
        return {
            target
            for st in statements(role_policies(resources, logical_id))
            if any(str(a).startswith("dynamodb:") for a in as_list(st["Action"]))
            for target in referenced(st["Resource"])
        }

    assert tables("SplitterFunction") == {"JobsTable", "AuditsTable"}
    assert tables("UploaderFunction") == {"JobsTable", "AuditsTable", "IdempotencyTable"}
    assert tables("CallbackFunction") == {"AuditsTable"}
    assert tables("PollerFunction") == {"JobsTable", "AuditsTable"}
    # the uploader queues the halves of a refused batch (logic/bisection.py); the splitter's failed
    # S3 events go to its on-failure destination, sent by Lambda with the function's role
    assert granted(resources, "SplitterFunction", "sqs:SendMessage") == {"WorkQueue", "SplitterFailureQueue"}
    assert granted(resources, "UploaderFunction", "sqs:SendMessage") == {"WorkQueue"}
    assert granted(resources, "PollerFunction", "sqs:SendMessage") == {"WorkQueue"}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert granted(resources, "UploaderFunction", action) == {"WorkQueue"}  # never the DLQ
    assert granted(resources, "CallbackFunction", "sqs:SendMessage") == set()


def test_each_function_logs_to_its_own_group_only(resources: dict[str, Any]) -> None:
    for logical_id, role in FUNCTIONS.items():
        group = f"{role.title()}LogGroup"
        assert props(resources, logical_id)["LoggingConfig"] == {"LogGroup": {"Ref": group}}
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            assert granted(resources, logical_id, action) == {group}, (logical_id, action)
        assert granted(resources, logical_id, "logs:CreateLogGroup") == set()


# -- secrets --------------------------------------------------------------------------------------

SECRETISH = re.compile(r"(SECRET|KEY|PASSWORD|PASSWD|TOKEN|CREDENTIALS?)(_|$)")


def environments(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "Globals", template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    for logical_id, function in of_type(template["Resources"], "AWS::Serverless::Function").items():
        yield logical_id, function["Properties"].get("Environment", {}).get("Variables", {})


def test_no_secret_value_in_any_environment(template: dict[str, Any]) -> None:
    secrets = set(of_type(template["Resources"], "AWS::SecretsManager::Secret"))
    checked = 0
    for where, variables in environments(template):
        for name, value in variables.items():
            assert "{{resolve:" not in str(value), f"{where}.{name} resolves a secret into the environment"
            if SECRETISH.search(name):
                checked += 1
                assert isinstance(value, dict), f"{where}.{name} is a literal"
                assert referenced(value) and referenced(value) <= secrets, (
                    f"{where}.{name} is not a secret ref"
                )
    assert checked >= 2  # UPSTREAM_CREDENTIALS_PARAM, CALLBACK_SECRET_PARAM


def test_secrets_are_generated_never_plaintext(resources: dict[str, Any]) -> None:
    secrets = of_type(resources, "AWS::SecretsManager::Secret")
    assert set(secrets) == {"UpstreamCredentialsSecret", "CallbackSigningSecret", "IdentityPepperSecret"}
    for logical_id, secret in secrets.items():
        assert "SecretString" not in secret["Properties"], logical_id
        assert "GenerateSecretString" in secret["Properties"], logical_id
    signing = secrets["CallbackSigningSecret"]["Properties"]["GenerateSecretString"]
    assert signing["GenerateStringKey"] == "current"
    assert signing["PasswordLength"] == 48
    assert signing["ExcludePunctuation"] is True
    pepper = secrets["IdentityPepperSecret"]["Properties"]["GenerateSecretString"]
    assert pepper["GenerateStringKey"] == "current" and pepper["PasswordLength"] >= 32
    upstream = secrets["UpstreamCredentialsSecret"]["Properties"]["GenerateSecretString"]
    assert upstream["GenerateStringKey"] == "apiKey"
    assert '"apiId"' in upstream["SecretStringTemplate"]


# -- queues ---------------------------------------------------------------------------------------


def test_uploader_reports_batch_item_failures_with_bounded_concurrency(resources: dict[str, Any]) -> None:
    (event,) = props(resources, "UploaderFunction")["Events"].values()
    assert event["Type"] == "SQS"
    sqs = event["Properties"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["ScalingConfig"]["MaximumConcurrency"] == 5
    assert (sqs["BatchSize"], sqs["MaximumBatchingWindowInSeconds"]) == (5, 1)


def test_work_queue_has_a_dead_letter_queue(resources: dict[str, Any]) -> None:
    work = props(resources, "WorkQueue")
    assert work["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 8,
    }
    assert props(resources, "DeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    for logical_id in of_type(resources, "AWS::SQS::Queue"):
        assert props(resources, logical_id)["SqsManagedSseEnabled"] == {
            "Fn::If": ["HasKmsKey", {"Ref": "AWS::NoValue"}, True]
        }
        assert props(resources, logical_id)["KmsMasterKeyId"] == {
            "Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]
        }


def test_visibility_timeout_covers_six_uploader_timeouts(resources: dict[str, Any]) -> None:
    uploader = props(resources, "UploaderFunction")
    (event,) = uploader["Events"].values()
    window = event["Properties"].get("MaximumBatchingWindowInSeconds", 0)
    assert props(resources, "WorkQueue")["VisibilityTimeout"] >= 6 * uploader["Timeout"] + window


# -- tables ---------------------------------------------------------------------------------------


def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def test_tables_are_on_demand_and_encrypted(resources: dict[str, Any]) -> None:
    for logical_id, table in of_type(resources, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST", logical_id
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, logical_id
    for logical_id in ("JobsTable", "AuditsTable"):
        pitr = props(resources, logical_id)["PointInTimeRecoverySpecification"]
        assert pitr == {"PointInTimeRecoveryEnabled": True}


def test_jobs_table_keys(resources: dict[str, Any]) -> None:
    jobs = props(resources, "JobsTable")
    assert keys(jobs["KeySchema"]) == [("pk", "HASH"), ("sk", "RANGE")]
    (gsi,) = jobs["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert keys(gsi["KeySchema"]) == [("gsi1pk", "HASH"), ("gsi1sk", "RANGE")]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_audits_table_keys(resources: dict[str, Any]) -> None:
    audits = props(resources, "AuditsTable")
    assert keys(audits["KeySchema"]) == [("pk", "HASH")]
    types = {a["AttributeName"]: a["AttributeType"] for a in audits["AttributeDefinitions"]}
    assert types == {"pk": "S", "record_id": "N", "status": "S", "updated_at": "S"}
    indexes = {gsi["IndexName"]: gsi for gsi in audits["GlobalSecondaryIndexes"]}
    assert keys(indexes["by-record-id"]["KeySchema"]) == [("record_id", "HASH")]
    assert keys(indexes["by-status"]["KeySchema"]) == [("status", "HASH"), ("updated_at", "RANGE")]
    assert indexes["by-status"]["Projection"] == {"ProjectionType": "ALL"}


def test_idempotency_table_has_the_powertools_layout(resources: dict[str, Any]) -> None:
    table = props(resources, "IdempotencyTable")
    assert keys(table["KeySchema"]) == [("id", "HASH")]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


# -- functions, API, layer ------------------------------------------------------------------------


def test_functions_code_uri_and_handler(resources: dict[str, Any]) -> None:
    assert set(of_type(resources, "AWS::Serverless::Function")) == set(FUNCTIONS)
    for logical_id, name in FUNCTIONS.items():
        function = props(resources, logical_id)
        assert function["CodeUri"] == f"functions/{name}/"
        assert function["Handler"] == "app.lambda_handler"


def test_function_globals(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == [{"Ref": "Architecture"}]
    assert globals_["Tracing"] == "Active"
    powertools, core = globals_["Layers"]
    # the managed layer of the same architecture (its pydantic_core is compiled code)
    assert "AWSLambdaPowertoolsPythonV3-python313-${Architecture}:" in str(powertools)
    assert "PowertoolsLayerArn" in str(powertools)
    # last, so it wins any file both layers have (its dependencies are in site-packages, first anyway)
    assert core == {"Ref": "CoreLayer"}


def test_the_runtime_is_named_once_and_everything_built_or_checked_for_it_follows(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """Globals' Runtime is the one place; a move to the next Python (docs/decisions.md#reproducible-
    runtime) that misses one of the places following it fails here."""
    runtime = template["Globals"]["Function"]["Runtime"]
    version = runtime.removeprefix("python")
    tag = version.replace(".", "")
    for logical_id in FUNCTIONS:
        assert "Runtime" not in props(resources, logical_id), f"{logical_id} overrides the Globals"
    assert resources["CoreLayer"]["Properties"]["CompatibleRuntimes"] == [runtime]
    powertools, _ = template["Globals"]["Function"]["Layers"]
    assert f":layer:AWSLambdaPowertoolsPythonV3-python{tag}-${{Architecture}}:" in str(powertools)
    default_arn = template["Parameters"]["PowertoolsLayerArn"]["Description"]
    assert f"AWSLambdaPowertoolsPythonV3-python{tag}-" in default_arn
    makefile, layer_makefile = (ROOT / "Makefile").read_text(), (ROOT / "layers/core/Makefile").read_text()
    for text in (makefile, layer_makefile):
        assert f"\nLAMBDA_PYTHON_VERSION := {version}\n" in text
    assert "--python-version $(LAMBDA_PYTHON_VERSION)" in makefile  # `make lock` resolves for it
    # every venv is made on it, and one made by another Python is made again
    assert makefile.count("$(PY) -m venv") == 1 and makefile.count("$(call runtime_venv,") == 4
    assert re.findall(
        r"^((?:\w+_)?STAMP) := .*\.installed-py\$\(LAMBDA_PYTHON_VERSION\)", makefile, re.M
    ) == [
        "STAMP",
        "SAM_STAMP",
        "CHECKOV_STAMP",
        "SAMT_STAMP",
    ]
    assert "--python-version $(LAMBDA_PYTHON_VERSION)" in layer_makefile  # wheels and the layer check
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{tag}"
    assert pyproject["tool"]["mypy"]["python_version"] == version
    assert f'RUNTIME_PYTHON = "{version}"' in (ROOT / "layers/core/check_layer.py").read_text()
    # and the tests run on it: `make venv` builds the dev venv with the runtime's Python
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version


def test_every_function_and_the_layer_run_on_the_architecture_parameter(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameter = template["Parameters"]["Architecture"]
    assert parameter["AllowedValues"] == ["x86_64", "arm64"]
    # the default is what this project can build and test the C fast path for (docs/decisions.md)
    assert parameter["Default"] == "x86_64"
    for logical_id in FUNCTIONS:
        assert "Architectures" not in props(resources, logical_id), f"{logical_id} overrides the Globals"
    layer = resources["CoreLayer"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    # SAM keys its build cache on it: a layer built for one architecture is not reused for the other
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    makefile = (ROOT / "Makefile").read_text()
    assert "--parameter-overrides Architecture=$(ARCHITECTURE)" in makefile
    assert "native/build.py --lambda --arch $(ARCHITECTURE)" in (ROOT / "layers/core/Makefile").read_text()
    resolved = Resolver(template, stack_name="s", region="eu-west-1", parameters={"Architecture": "arm64"})
    powertools, _ = resolved.resolve(template["Globals"]["Function"]["Layers"])
    assert powertools.endswith(":layer:AWSLambdaPowertoolsPythonV3-python313-arm64:23")
    assert resolved.resolve(template["Globals"]["Function"]["Architectures"]) == ["arm64"]


def test_callback_api_is_throttled(resources: dict[str, Any]) -> None:
    api = props(resources, "CallbackApi")
    assert api["StageName"] == {"Ref": "Stage"}
    settings = [s for s in api["MethodSettings"] if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    assert len(settings) == 1
    assert settings[0]["ThrottlingBurstLimit"] == 50
    assert settings[0]["ThrottlingRateLimit"] == 20
    (event,) = props(resources, "CallbackFunction")["Events"].values()
    assert event["Type"] == "Api"
    assert event["Properties"]["RestApiId"] == {"Ref": "CallbackApi"}
    assert (event["Properties"]["Path"], event["Properties"]["Method"].lower()) == (
        "/callbacks/carrier-audit",
        "post",
    )


def test_the_api_gateway_account_is_set_only_when_the_parameter_asks(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """One setting per account and region: tenant stacks must not overwrite it, nor take it with them."""
    parameter = template["Parameters"]["ManageApiGatewayAccount"]
    assert (parameter["AllowedValues"], parameter["Default"]) == (["true", "false"], "false")
    assert template["Conditions"]["ManagesApiGatewayAccount"] == {
        "Fn::Equals": [{"Ref": "ManageApiGatewayAccount"}, "true"]
    }
    account, role = resources["ApiGatewayAccount"], resources["ApiGatewayLoggingRole"]
    assert account["Condition"] == role["Condition"] == "ManagesApiGatewayAccount"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}
    assert role["DeletionPolicy"] == role["UpdateReplacePolicy"] == "Retain"  # the account points at it
    for value, expected in (("false", False), ("true", True)):
        resolver = Resolver(
            template, stack_name="s", region="us-east-1", parameters={"ManageApiGatewayAccount": value}
        )
        assert resolver.included(account) is expected and resolver.included(role) is expected
    with pytest.raises(ValueError, match="not one of"):
        Resolver(template, stack_name="s", region="us-east-1", parameters={"ManageApiGatewayAccount": "yes"})


def test_no_depends_on_names_a_conditional_resource(resources: dict[str, Any]) -> None:
    """A DependsOn on a resource whose condition is false fails the deploy: the callback API waits
    for ApiGatewayAccount through a handle whose Metadata refers to it only when it exists."""
    conditional = {logical_id for logical_id, r in resources.items() if "Condition" in r}
    for logical_id, resource in resources.items():
        named = set(as_list(resource.get("DependsOn", [])))
        assert not named & conditional, f"{logical_id} DependsOn {named & conditional}"
    assert as_list(resources["CallbackApi"]["DependsOn"]) == ["ApiGatewayAccountReady"]
    ready = resources["ApiGatewayAccountReady"]
    assert ready["Type"] == "AWS::CloudFormation::WaitConditionHandle" and "Condition" not in ready
    assert ready["Metadata"] == {
        "ApiGatewayAccount": {"Fn::If": ["ManagesApiGatewayAccount", {"Ref": "ApiGatewayAccount"}, ""]}
    }


def test_poller_runs_on_the_schedule_parameter(resources: dict[str, Any]) -> None:
    (event,) = props(resources, "PollerFunction")["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "PollSchedule"}


def test_core_layer_is_built_by_its_makefile(resources: dict[str, Any]) -> None:
    layer = resources["CoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/core"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers/core/Makefile").read_text()
    assert re.search(r"^build-CoreLayer:", makefile, re.MULTILINE)
    requirements = (ROOT / "layers/core/requirements.txt").read_text().lower()
    assert "pydantic" in requirements and "requests" in requirements and "openpyxl" in requirements
    assert "boto3" in requirements and "botocore" in requirements  # pinned: aws.py subclasses its Loader
    assert "powertools" not in re.sub(r"#.*", "", requirements), "Powertools comes from the managed layer"


# -- parameters, environment, outputs -------------------------------------------------------------


def test_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert set(parameters) == {
        "Stage",
        "UpstreamBaseUrl",
        "AuditBaseUrl",
        "AuditAuth",
        "UnknownOutcomePolicy",
        "BlackoutStartDay",
        "BlackoutResumeDay",
        "RawUploadRetentionDays",
        "ResendWindow",
        "LedgerRetentionDays",
        "PollSchedule",
        "LogLevel",
        "PowertoolsLayerArn",
        "AlarmEmail",
        "QueueAgeAlarmSeconds",
        "StuckJobSeconds",
        "CallbackRejectionThreshold",
        "UpstreamApiId",
        "LogRetentionDays",
        "CallbackReservedConcurrency",
        "KmsKeyArn",
        "OperatorRoleArn",
        "Architecture",
        "ManageApiGatewayAccount",
        "UpstreamRetryHttpStatuses",
        "RetryAfterMaxSeconds",
        "PricePerRecord",
    }
    assert parameters["LogRetentionDays"]["Default"] == 90
    # blank by default: the price is not known, and the CLI says so (docs/decisions.md#price)
    assert parameters["PricePerRecord"]["Default"] == ""
    price = re.compile(parameters["PricePerRecord"]["AllowedPattern"])
    assert [bool(price.fullmatch(v)) for v in ("", "0.35", "2", "0,35", "-1", "1e3")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PRICE_PER_RECORD"] == {"Ref": "PricePerRecord"}
    assert parameters["KmsKeyArn"]["Default"] == ""
    # a deploy without our apiId fails (the callback would refuse every callback)
    (assertion,) = template["Rules"]["UpstreamApiIdGiven"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "UpstreamApiId"}, ""]}]}
    assert parameters["Stage"]["AllowedValues"] == ["dev", "prod"]
    assert parameters["UnknownOutcomePolicy"]["AllowedValues"] == ["hold", "resend"]
    assert parameters["UnknownOutcomePolicy"]["Default"] == "hold"
    assert parameters["UpstreamBaseUrl"]["Default"] == "https://api.caih.com"
    assert (parameters["BlackoutStartDay"]["Default"], parameters["BlackoutResumeDay"]["Default"]) == (27, 1)
    assert parameters["RawUploadRetentionDays"]["Default"] == 30
    assert parameters["PollSchedule"]["Default"] == "rate(5 minutes)"


def test_upstream_urls_must_be_https(template: dict[str, Any]) -> None:
    """A deployed stack never calls a loopback host: plain http:// is refused outright
    (Settings also take http:// to loopback, for the local stack: decisions.md#upstream-https)."""
    for name, empty in (("UpstreamBaseUrl", False), ("AuditBaseUrl", True)):
        parameter = template["Parameters"][name]
        pattern = re.compile(parameter["AllowedPattern"])
        assert pattern.fullmatch("https://api.caih.com") and pattern.fullmatch("https://10.1.2.3:8443/v1")
        assert not pattern.fullmatch("http://api.caih.com")
        assert not pattern.fullmatch("http://127.0.0.1:8765")
        assert not pattern.fullmatch("https://api.caih.com/a b")
        assert bool(pattern.fullmatch("")) is empty
        assert "https://" in parameter["ConstraintDescription"]
    default = template["Parameters"]["UpstreamBaseUrl"]["Default"]
    assert Settings.from_env({"UPSTREAM_BASE_URL": default}).upstream_base_url == default


def test_the_retry_parameters_are_the_settings_defaults_and_reach_every_function(
    template: dict[str, Any],
) -> None:
    """429 and 503 retried, Retry-After honoured up to an hour, never past what SQS can hide a
    message for (docs/decisions.md#unknown-outcome)."""
    parameters = template["Parameters"]
    statuses, wait = parameters["UpstreamRetryHttpStatuses"], parameters["RetryAfterMaxSeconds"]
    defaults = Settings.from_env({})
    assert statuses["Default"] == defaults.retry_http_statuses == "429 503"
    assert wait["Default"] == defaults.retry_after_max_seconds == 3600
    assert wait["MaxValue"] == MAX_DELAY_SECONDS
    pattern = re.compile(statuses["AllowedPattern"])
    assert all(pattern.match(v) for v in ("429", "429 503", "429,503", "429, 502, 503"))
    assert not any(pattern.match(v) for v in ("", "429 5033", "all", "429 "))
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["UPSTREAM_RETRY_HTTP_STATUSES"] == {"Ref": "UpstreamRetryHttpStatuses"}
    assert variables["RETRY_AFTER_MAX_SECONDS"] == {"Ref": "RetryAfterMaxSeconds"}


def test_every_environment_variable_is_a_setting(template: dict[str, Any]) -> None:
    """A variable the code does not read is a typo (or dead configuration)."""
    aliases = {f.alias for f in Settings.model_fields.values() if f.alias}
    for where, variables in environments(template):
        unknown = {name for name in variables if not name.startswith("POWERTOOLS_")} - aliases
        assert not unknown, f"{where}: {unknown} are not Settings aliases"
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert {
        "INGEST_BUCKET",
        "JOBS_TABLE",
        "AUDITS_TABLE",
        "IDEMPOTENCY_TABLE",
        "WORK_QUEUE_URL",
        "UPSTREAM_BASE_URL",
        "UPSTREAM_CREDENTIALS_PARAM",
        "CALLBACK_SECRET_PARAM",
        "UNKNOWN_OUTCOME_POLICY",
        "BLACKOUT_START_DAY",
        "BLACKOUT_RESUME_DAY",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    } <= names


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert {
        "IngestBucketName",
        "CallbackUrl",
        "WorkQueueUrl",
        "DeadLetterQueueUrl",
        "SplitterFailureQueueUrl",
        "JobsTableName",
        "AuditsTableName",
    } <= set(outputs)
    assert outputs["CallbackUrl"]["Value"] == {
        "Fn::Sub": "https://${CallbackApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/callbacks/carrier-audit"
    }


# -- the loader and resolver local/resources.py uses ----------------------------------------------


def test_loader_keeps_cloudformation_strings_and_short_tags(template: dict[str, Any]) -> None:
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Conditions"]["UseDefaultPowertoolsLayer"] == {
        "Fn::Equals": [{"Ref": "PowertoolsLayerArn"}, ""]
    }


def test_resolver_evaluates_intrinsics(template: dict[str, Any]) -> None:
    resolver = Resolver(template, stack_name="s", region="eu-west-1", parameters={"Stage": "prod"})
    resolver.refs["WorkQueue"] = "https://queue"
    resolver.attributes[("WorkQueue", "Arn")] = "arn:aws:sqs:eu-west-1:123456789012:s-WorkQueue"
    assert resolver.resolve({"Ref": "Stage"}) == "prod"
    assert resolver.resolve({"Ref": "BlackoutStartDay"}) == "27"
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${Stage}-${!Literal}"}) == "s-prod-${Literal}"
    assert resolver.resolve({"Fn::Sub": ["${A}/${WorkQueue.Arn}", {"A": {"Ref": "AWS::Region"}}]}) == (
        "eu-west-1/arn:aws:sqs:eu-west-1:123456789012:s-WorkQueue"
    )
    assert resolver.resolve({"Fn::Join": ["-", ["a", {"Ref": "WorkQueue"}]]}) == "a-https://queue"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y"]}]}) == "y"
    layers = resolver.resolve(template["Globals"]["Function"]["Layers"])
    assert layers[0].startswith("arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3")
    assert resolver.resolve([{"Ref": "AWS::NoValue"}, 1]) == [1]
    assert resolver.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
    with pytest.raises(ValueError, match="not one of"):
        Resolver(template, stack_name="s", region="eu-west-1", parameters={"Stage": "qa"})


# -- alarms and dashboard -------------------------------------------------------------------------

CODE_ROOTS = (ROOT / "functions", ROOT / "layers/core/python/verifyfeed")


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in of_type(resources, "AWS::CloudWatch::Alarm").items()}


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its metric-math query."""
    if "MetricName" in alarm:
        return [{k: alarm[k] for k in ("Namespace", "MetricName", "Dimensions")}]
    return [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]


def find_alarm(resources: dict[str, Any], namespace: str, metric: str, dimension: Any) -> dict[str, Any]:
    found = [
        a
        for a in alarms(resources).values()
        for m in alarm_metrics(a)
        if (m["Namespace"], m["MetricName"]) == (namespace, metric)
        and any(d["Value"] == dimension for d in m["Dimensions"])
    ]
    assert len(found) == 1, (namespace, metric, dimension)
    return found[0]


def test_every_alarm_notifies_the_alarm_topic(resources: dict[str, Any]) -> None:
    assert len(alarms(resources)) >= 7
    for logical_id, alarm in alarms(resources).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        assert "docs/operations.md#" in alarm["AlarmDescription"], logical_id
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), logical_id
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_alarm_email_is_optional(template: dict[str, Any]) -> None:
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    for email, condition in (("", False), ("ops@example.com", True)):
        resolver = Resolver(template, stack_name="s", region="us-east-1", parameters={"AlarmEmail": email})
        assert resolver.condition("HasAlarmEmail") is condition
    pattern = re.compile(template["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("ops@example.com")
    assert not pattern.fullmatch("not an address")


def test_queue_alarms(resources: dict[str, Any]) -> None:
    dlq = find_alarm(
        resources,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]},
    )
    assert (dlq["Statistic"], dlq["Threshold"], dlq["ComparisonOperator"]) == (
        "Maximum",
        0,
        "GreaterThanThreshold",
    )
    age = find_alarm(
        resources, "AWS/SQS", "ApproximateAgeOfOldestMessage", {"Fn::GetAtt": ["WorkQueue", "QueueName"]}
    )
    assert age["Threshold"] == {"Ref": "QueueAgeAlarmSeconds"}
    assert age["ComparisonOperator"] == "GreaterThanThreshold"


def test_a_file_the_splitter_fails_on_is_kept_and_alarmed(resources: dict[str, Any]) -> None:
    # S3 invokes the splitter asynchronously: without a destination, Lambda drops the event after
    # its retries and the file is never split nor reported
    invoke = resources["SplitterFunction"]["Properties"]["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["SplitterFailureQueue", "Arn"]},
    }
    queue = resources["SplitterFailureQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] == {"Fn::If": ["HasKmsKey", {"Ref": "AWS::NoValue"}, True]}
    assert queue["MessageRetentionPeriod"] == 1209600
    alarm = find_alarm(
        resources,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["SplitterFailureQueue", "QueueName"]},
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert "splitter-failures" in alarm["AlarmDescription"]


def test_callback_rejection_spike_alarm_reads_the_total(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    alarm = find_alarm(resources, "VerifyFeed", "CallbacksRejected", {"Ref": "AWS::StackName"})
    # the total carries the service dimension only (the by-reason copy has a reason dimension too)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 300)
    assert alarm["Threshold"] == {"Ref": "CallbackRejectionThreshold"}
    assert template["Parameters"]["CallbackRejectionThreshold"]["Default"] == 10


def test_function_error_alarms(resources: dict[str, Any]) -> None:
    for function in ("SplitterFunction", "UploaderFunction", "CallbackFunction", "PollerFunction"):
        alarm = find_alarm(resources, "AWS/Lambda", "Errors", {"Ref": function})
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    poller = find_alarm(resources, "AWS/Lambda", "Errors", {"Ref": "PollerFunction"})
    names = {m["MetricName"] for m in alarm_metrics(poller)}
    assert names == {"Errors", "PollerErrors"}  # the function failing, or carrierAudit/get failing
    (expression,) = [q for q in poller["Metrics"] if q.get("ReturnData")]
    assert expression["Expression"] == "FILL(failed, 0) + FILL(upstream, 0)"
    find_alarm(resources, "VerifyFeed", "BatchesUnknown", {"Ref": "AWS::StackName"})


def test_custom_metrics_are_the_powertools_namespace_and_the_stack_as_service(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    custom = [
        m
        for a in alarms(resources).values()
        for m in alarm_metrics(a)
        if not m["Namespace"].startswith("AWS/")
    ]
    assert custom
    for metric in custom:
        assert metric["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
        assert metric["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    resolver = Resolver(template, stack_name="verifyfeed-dev", region="us-east-1")
    body = resolver.resolve(template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"])
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def test_dashboard_has_a_widget_for_each_concern(template: dict[str, Any]) -> None:
    widgets = dashboard(template)["widgets"]
    titles = {w["properties"].get("title") for w in widgets}
    assert {
        "Alarms",
        "Rows",
        "Batches by outcome",
        "Work queue",
        "Dead-letter queue",
        "Callbacks",
        "Callbacks rejected, by reason",
        "Audits pending, poller errors",
        "Upstream latency (ms)",
        "Lambda errors and throttles",
    } <= titles
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(
        of_type(template["Resources"], "AWS::CloudWatch::Alarm")
    )
    latency = next(w for w in widgets if w["properties"].get("title") == "Upstream latency (ms)")
    stats = [m[-1]["stat"] for m in latency["properties"]["metrics"]]
    assert stats == ["p50", "p99"]
    for widget in widgets:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "us-east-1"


def test_every_custom_metric_shown_or_alarmed_is_emitted_by_the_code(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    names = {
        m["MetricName"]
        for a in alarms(resources).values()
        for m in alarm_metrics(a)
        if m["Namespace"] == "VerifyFeed"
    }
    for widget in dashboard(template)["widgets"]:
        namespace = None
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):  # a SEARCH expression
                names |= set(re.findall(r'MetricName="(\w+)"', row[0]["expression"]))
                continue
            namespace = namespace if row[0] in (".", "...") else row[0]  # "." repeats the row above
            if namespace == "VerifyFeed" and row[0] != "..." and row[1] != ".":
                names.add(row[1])
    source = "\n".join(p.read_text(encoding="utf-8") for root in CODE_ROOTS for p in root.rglob("*.py"))
    assert len(names) >= 12
    for name in names:
        assert f'"{name}"' in source, f"{name} is never emitted"


def test_the_uploader_may_write_reports_and_claims(resources: dict[str, Any]) -> None:
    """It writes the report when a job settles and keeps the body of a deferred, failed or unknown
    batch under claims/ (the local stack enforces the role too: tests/integration/test_least_privilege.py)."""
    writes = [
        resource
        for st in statements(role_policies(resources, "UploaderFunction"))
        if "s3:PutObject" in as_list(st["Action"])
        for resource in as_list(st["Resource"])
    ]
    prefix = "arn:${AWS::Partition}:s3:::" + BUCKET_NAME
    assert sorted(r["Fn::Sub"] for r in writes) == [f"{prefix}/claims/*", f"{prefix}/reports/*"]


# -- checkov skips (make checkov) -----------------------------------------------------------------


def checkov_skips(resources: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (logical_id, skip["id"], skip.get("comment", ""))
        for logical_id, resource in resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def test_every_checkov_skip_gives_its_reason_and_is_documented(resources: dict[str, Any]) -> None:
    skips = checkov_skips(resources)
    assert skips, "the walk found no skip at all"
    decisions = (ROOT / "docs/decisions.md").read_text(encoding="utf-8")
    section = decisions.split("## checkov-skips", 1)[1].split("\n## ", 1)[0]
    for logical_id, check, reason in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check), (logical_id, check)
        assert len(reason.split()) >= 6, f"{logical_id} skips {check} without a reason"
        assert check in section, (
            f"{check} is skipped ({logical_id}) but not in docs/decisions.md#checkov-skips"
        )
    # nothing of the least-privilege or encryption work is skipped
    assert not {"CKV_AWS_27", "CKV_AWS_119", "CKV_AWS_66", "CKV_AWS_76", "CKV_AWS_111", "CKV_AWS_109"} & {
        check for _, check, _ in skips
    }
