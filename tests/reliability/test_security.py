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

from local.resources import LocalStack, Resolver, load_template
from tests.integration.conftest import (
    API_ID,
    API_KEY,
    CALLBACK_SECRET,
    IDENTITY_PEPPER,
    PREVIOUS_CALLBACK_SECRET,
    PREVIOUS_IDENTITY_PEPPER,
)
from verifyfeed.clock import FixedClock
from verifyfeed.config import Settings
from verifyfeed.logic.callback import handle_callback
from verifyfeed.models.records import AuditStatus
from verifyfeed.services import Services, build_services

ROOT = Path(__file__).resolve().parents[2]
Template = dict[str, Any]
FUNCTION = "AWS::Serverless::Function"
QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
BUCKET_ARN = "arn:${AWS::Partition}:s3:::${AWS::StackName}-ingest-${AWS::AccountId}-${AWS::Region}"
A_KEY = "arn:aws:kms:us-east-1:123456789012:key/0f0f0f0f-1111-2222-3333-444444444444"


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


def resolved(template: Template, kind: str, key: str = "") -> dict[str, dict[str, Any]]:
    """The properties of every resource of ``kind`` as deployed with KmsKeyArn=``key``."""
    parameters = {"KmsKeyArn": key} if "KmsKeyArn" in template.get("Parameters", {}) else {}
    resolver = Resolver(template, stack_name="s", region="us-east-1", parameters=parameters)
    return {name: resolver.resolve(r.get("Properties", {})) for name, r in resources(template, kind).items()}


def encryption(template: Template) -> list[str]:
    found = []
    for key in ("", A_KEY) if "KmsKeyArn" in template.get("Parameters", {}) else ("",):
        with_key = f" (KmsKeyArn={key!r})"
        for name, bucket in resolved(template, "AWS::S3::Bucket", key).items():
            rules = bucket.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
            if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
                found.append(f"{name}: bucket not encrypted{with_key}")
        for name, table in resolved(template, TABLE, key).items():
            if table.get("SSESpecification", {}).get("SSEEnabled") is not True:
                found.append(f"{name}: table not encrypted with SSE{with_key}")
        for name, queue in resolved(template, QUEUE, key).items():
            if queue.get("SqsManagedSseEnabled") is not True and not queue.get("KmsMasterKeyId"):
                found.append(f"{name}: queue not encrypted{with_key}")
    return sorted(set(found))


def customer_managed_key(template: Template) -> list[str]:
    """With KmsKeyArn set, whatever is encrypted (the encryption rule says what must be) uses it."""
    if "KmsKeyArn" not in template.get("Parameters", {}):
        return ["no KmsKeyArn parameter"]
    found = []
    for name, bucket in resolved(template, "AWS::S3::Bucket", A_KEY).items():
        for rule in bucket.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
            default = rule.get("ServerSideEncryptionByDefault", {})
            if (default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")) != ("aws:kms", A_KEY):
                found.append(f"{name}: bucket ignores the customer-managed key")
    for name, table in resolved(template, TABLE, A_KEY).items():
        sse = table.get("SSESpecification")
        if sse and (sse.get("SSEType"), sse.get("KMSMasterKeyId")) != ("KMS", A_KEY):
            found.append(f"{name}: table ignores the customer-managed key")
    for name, queue in resolved(template, QUEUE, A_KEY).items():
        if ("SqsManagedSseEnabled" in queue or "KmsMasterKeyId" in queue) and queue.get(
            "KmsMasterKeyId"
        ) != A_KEY:
            found.append(f"{name}: queue ignores the customer-managed key")
    for name, queue in resolved(template, QUEUE, "").items():
        if queue.get("KmsMasterKeyId"):
            found.append(f"{name}: a key without KmsKeyArn")
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


def tls_only_queues(template: Template) -> list[str]:
    denied: set[str] = set()
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        props = policy["Properties"]
        for st in as_list(props["PolicyDocument"]["Statement"]):
            if (
                st.get("Effect") == "Deny"
                and st.get("Principal") in ("*", {"AWS": "*"})
                and "sqs:*" in as_list(st.get("Action"))
                and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            ):
                denied |= {
                    name
                    for name in resources(template, QUEUE)
                    if any(refers_to(q, name) for q in as_list(props["Queues"]))
                    and any(refers_to(r, name) for r in as_list(st.get("Resource")))
                }
    return [
        f"{name}: no TLS-only (aws:SecureTransport) queue policy"
        for name in resources(template, QUEUE)
        if name not in denied
    ]


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


# ---- what each function may do: every grant as (action, what it is on) ---------------------------

# the SAM policy templates in use, as the actions they grant (samtranslator: policy_templates.json)
POLICY_TEMPLATES = {
    "SQSSendMessagePolicy": ["sqs:SendMessage*"],
    "SQSPollerPolicy": [
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ],
    "AWSSecretsManagerGetSecretValuePolicy": ["secretsmanager:GetSecretValue"],
    "S3ReadPolicy": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion"],
    "DynamoDBCrudPolicy": [
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:DescribeTable",
        "dynamodb:ConditionCheckItem",
    ],
}


def target(node: Any) -> str:
    """What a resource is, by logical id: ``JobsTable``, ``JobsTable/index/gsi1``, ``bucket/claims/*``."""
    if isinstance(node, dict):
        if "Ref" in node:
            return str(node["Ref"])
        if "Fn::GetAtt" in node:
            return str(node["Fn::GetAtt"][0])
        if "Fn::Sub" in node:
            text = str(node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0])
            text = text.replace(BUCKET_ARN, "bucket")
            return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", text)
        return str(node)
    return str(node)


def role_of(template: Template, function: dict[str, Any]) -> dict[str, Any] | None:
    """The template's ``AWS::IAM::Role`` the function's ``Role: !GetAtt <Role>.Arn`` names."""
    ref = function["Properties"].get("Role")
    name = ref["Fn::GetAtt"][0] if isinstance(ref, dict) and "Fn::GetAtt" in ref else None
    role = template["Resources"].get(name) if name else None
    return role if role and role.get("Type") == "AWS::IAM::Role" else None


def role_policies(template: Template, function: dict[str, Any]) -> list[Any]:
    """The role's policies, each as a SAM-style ``{"Statement": ...}`` (their documents)."""
    role = role_of(template, function)
    found = []
    for entry in as_list((role or {}).get("Properties", {}).get("Policies", [])):
        if isinstance(entry, dict) and "Fn::If" in entry:
            entry = entry["Fn::If"][1]
        if isinstance(entry, dict) and "PolicyDocument" in entry:
            found.append(entry["PolicyDocument"])
    return found


def grants(template: Template, function: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, target) the function may do: its role's policies, and any SAM ``Policies``
    written on the function itself (SAM ignores them beside a Role; a grant all the same, to be
    safe); a conditional policy counts as granted."""
    found: set[tuple[str, str]] = set()
    for policy in role_policies(template, function) + as_list(function["Properties"].get("Policies", [])):
        if isinstance(policy, dict) and "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        if isinstance(policy, str):
            continue  # a managed policy: wildcard_permissions refuses it
        for name, value in policy.items():
            if name == "Statement":
                for st in as_list(value):
                    if st.get("Effect") == "Allow":
                        found |= {
                            (str(a), target(r))
                            for a in as_list(st["Action"])
                            for r in as_list(st["Resource"])
                        }
            elif name != "Version":
                (argument,) = value.values() if isinstance(value, dict) and value else [None]
                found |= {(a, target(argument)) for a in POLICY_TEMPLATES.get(name, [f"{name}:?"])}
    return found


def internet_facing(template: Template) -> dict[str, dict[str, Any]]:
    return {
        name: f
        for name, f in resources(template, FUNCTION).items()
        if any(e.get("Type") in ("Api", "HttpApi") for e in f["Properties"].get("Events", {}).values())
    }


def callback_credentials(template: Template) -> list[str]:
    """The internet-facing function never reads the upstream credentials (they hold the billing
    apiKey); it has the apiId it checks from a parameter instead."""
    found = []
    for name, function in internet_facing(template).items():
        if any(t == "UpstreamCredentialsSecret" for _, t in grants(template, function)):
            found.append(f"{name}: may read the upstream credentials secret")
        api_id = function["Properties"].get("Environment", {}).get("Variables", {}).get("CALLBACK_API_ID")
        if not (isinstance(api_id, dict) and api_id.get("Ref") in template["Parameters"]):
            found.append(
                f"{name}: CALLBACK_API_ID is not a template parameter (it would read the credentials)"
            )
    if not internet_facing(template):
        found.append("no internet-facing function")
    return found


# The DynamoDB calls each function's code path makes (store/jobs.py, store/audits.py, through
# logic/): a transaction needs the action of each of its items; Powertools idempotency Get/Put/Update/Delete.
DYNAMODB_NEEDS: dict[str, set[tuple[str, str]]] = {
    "SplitterFunction": {
        *(("dynamodb:" + a, "JobsTable") for a in ("GetItem", "PutItem", "UpdateItem", "Query")),
        ("dynamodb:DeleteItem", "JobsTable"),  # store/ledger.py: the resend ledger's lock, released
        *(("dynamodb:" + a, "AuditsTable") for a in ("GetItem", "PutItem", "UpdateItem")),
        ("dynamodb:BatchGetItem", "AuditsTable"),  # store/audits.py find_keys: a file's rows at once
    },
    "UploaderFunction": {
        *(("dynamodb:" + a, "JobsTable") for a in ("GetItem", "PutItem", "UpdateItem", "Query")),
        *(("dynamodb:" + a, "AuditsTable") for a in ("GetItem", "PutItem", "UpdateItem")),
        *(("dynamodb:" + a, "IdempotencyTable") for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")),
    },
    "CallbackFunction": {
        *(("dynamodb:" + a, "AuditsTable") for a in ("GetItem", "UpdateItem")),
        ("dynamodb:Query", "AuditsTable/index/by-record-id"),
    },
    "PollerFunction": {
        *(("dynamodb:" + a, "JobsTable") for a in ("GetItem", "UpdateItem", "Query")),
        ("dynamodb:Query", "JobsTable/index/gsi1"),
        *(("dynamodb:" + a, "AuditsTable") for a in ("GetItem", "UpdateItem")),
        ("dynamodb:Query", "AuditsTable/index/by-status"),
        ("dynamodb:Query", "AuditsTable/index/by-record-id"),
    },
}


def dynamodb_least_privilege(template: Template) -> list[str]:
    found = []
    for name, function in resources(template, FUNCTION).items():
        granted = {g for g in grants(template, function) if g[0].startswith("dynamodb:")}
        wanted = DYNAMODB_NEEDS.get(name, set())
        if granted - wanted:
            found.append(f"{name}: DynamoDB grants its code never uses: {sorted(granted - wanted)}")
        if wanted - granted:
            found.append(f"{name}: DynamoDB calls it may not make: {sorted(wanted - granted)}")
    return found


# which keys of the bucket each function reads: the uploader only claim-checked batch bodies
S3_READS: dict[str, set[str]] = {
    # the resend ledger: its objects, and a listing the template conditions on s3:prefix ledger/*
    "SplitterFunction": {
        "bucket/lost-repair/*",
        "bucket/carrier-audit/*",
        "bucket/dry-run/*",
        "bucket/ledger/*",
        "bucket",
        "bucket/claims/*",  # the claim check of a failed part of a bisected batch (logic/ledger.py)
        "bucket/reports/*",  # the facts it stored beside a report, when the job settles in the split
    },
    # claim checks, and the header facts the splitter stored beside a report (logic/reports.py)
    "UploaderFunction": {"bucket/claims/*", "bucket/reports/*"},
    "CallbackFunction": set(),
    "PollerFunction": set(),
}


def s3_reads_by_prefix(template: Template) -> list[str]:
    found = []
    for name, function in resources(template, FUNCTION).items():
        read = {t for a, t in grants(template, function) if a.startswith(("s3:Get", "s3:List"))}
        if read - S3_READS.get(name, set()):
            found.append(
                f"{name}: reads more of the bucket than it needs: {sorted(read - S3_READS.get(name, set()))}"
            )
    return found


def own_logs(group: str) -> set[str]:
    """Its own log group (LoggingConfig), and X-Ray (no resource-level permissions)."""
    return {
        f"logs:CreateLogStream:{group}",
        f"logs:PutLogEvents:{group}",
        "xray:PutTraceSegments:*",
        "xray:PutTelemetryRecords:*",
    }


# what else each function's code calls: queues and secrets (DynamoDB, S3 reads, KMS checked above)
OTHER_NEEDS: dict[str, set[str]] = {
    "SplitterFunction": {
        *own_logs("SplitterLogGroup"),
        "sqs:SendMessage:WorkQueue",
        "sqs:SendMessage:SplitterFailureQueue",  # the on-failure destination (Lambda sends as the role)
        "s3:PutObject:bucket/reports/*",
        "s3:PutObject:bucket/claims/*",
        "s3:DeleteObject:bucket/claims/*",  # the staged bodies of a file rejected before release
        "s3:PutObject:bucket/ledger/*",  # the resend ledger: what each file sent, keyed
    },
    "UploaderFunction": {
        *own_logs("UploaderLogGroup"),
        # the event source mapping (receive, delete), the backoff the uploader asks for
        *(
            f"sqs:{a}:WorkQueue"
            for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "ChangeMessageVisibility")
        ),
        "sqs:SendMessage:WorkQueue",  # the halves of a refused batch (logic/bisection.py)
        "s3:PutObject:bucket/reports/*",
        "s3:PutObject:bucket/claims/*",
        "s3:DeleteObject:bucket/claims/*",  # a succeeded batch's claim check (logic/batch_upload.py)
        "s3:DeleteObjectVersion:bucket/claims/*",
        "secretsmanager:GetSecretValue:UpstreamCredentialsSecret",
    },
    "CallbackFunction": {
        *own_logs("CallbackLogGroup"),
        "secretsmanager:GetSecretValue:CallbackSigningSecret",
    },
    "PollerFunction": {
        *own_logs("PollerLogGroup"),
        "sqs:SendMessage:WorkQueue",
        "secretsmanager:GetSecretValue:UpstreamCredentialsSecret",
    },
}


def unused_permissions(template: Template) -> list[str]:
    found = []
    facing = internet_facing(template)
    for name, function in resources(template, FUNCTION).items():
        other = {
            f"{a}:{t}"
            for a, t in grants(template, function)
            if not a.startswith(("dynamodb:", "s3:Get", "s3:List", "kms:"))
            and not (a == "*" or a.endswith(":*"))  # wildcard_permissions' concern
            and not (name in facing and t == "UpstreamCredentialsSecret")  # callback_credentials' concern
            and t != PEPPER  # identity_pepper's concern
        }
        if other - OTHER_NEEDS.get(name, set()):
            found.append(
                f"{name}: permissions its code never uses: {sorted(other - OTHER_NEEDS.get(name, set()))}"
            )
    return found


PEPPER = "IdentityPepperSecret"
# the functions that digest identities we store (logic/audit_intake.py: the audit key, id_card_digest)
PEPPER_READERS = {"SplitterFunction"}


def identity_pepper(template: Template) -> list[str]:
    """The pepper of stored digests is generated by the stack as {"current"}, kept when the stack
    goes, named to every function, and readable by exactly the functions that digest identities."""
    secret = template["Resources"].get(PEPPER, {})
    if secret.get("Type") != "AWS::SecretsManager::Secret":
        return [f"no {PEPPER} secret"]
    found = []
    if secret["Properties"].get("GenerateSecretString", {}).get("GenerateStringKey") != "current":
        found.append(f'{PEPPER}: not generated by the stack as "current"')
    if secret.get("DeletionPolicy") != "Retain":
        found.append(f"{PEPPER}: deleted with the stack (every stored audit key becomes unfindable)")
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    if not refers_to(variables.get("IDENTITY_PEPPER_PARAM"), PEPPER):
        found.append(f"Globals.IDENTITY_PEPPER_PARAM does not name {PEPPER}")
    for name, function in resources(template, FUNCTION).items():
        reads = ("secretsmanager:GetSecretValue", PEPPER) in grants(template, function)
        if reads and name not in PEPPER_READERS:
            found.append(f"{name}: may read the identity pepper, which its code never uses")
        if not reads and name in PEPPER_READERS:
            found.append(f"{name}: digests identities but may not read the pepper")
    return found


# ---- logs and the internet-facing edge ------------------------------------------------------------


def log_groups(template: Template) -> list[str]:
    groups = resources(template, "AWS::Logs::LogGroup")
    found = []
    if "LogRetentionDays" not in template["Parameters"]:
        found.append("no LogRetentionDays parameter")
    for name, group in groups.items():
        if group["Properties"].get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
            found.append(f"{name}: retention is not the LogRetentionDays parameter")
    for name, function in resources(template, FUNCTION).items():
        group = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        if not (isinstance(group, dict) and group.get("Ref") in groups):
            found.append(f"{name}: logs to no declared log group")
    return found


FORBIDDEN_IN_ACCESS_LOGS = re.compile(
    r"\$input|body|\.header|requestOverride|\$method\.request", re.IGNORECASE
)


def api_access_logs(template: Template) -> list[str]:
    found = []
    groups = resources(template, "AWS::Logs::LogGroup")
    for name, api in resources(template, "AWS::Serverless::Api").items():
        setting = api["Properties"].get("AccessLogSetting") or {}
        fmt = str(setting.get("Format", ""))
        if not any(refers_to(setting.get("DestinationArn"), g) for g in groups):
            found.append(f"{name}: no access log to a declared log group")
        if "$context.requestId" not in fmt or "$context.status" not in fmt:
            found.append(f"{name}: access log format without the request id and status")
        if FORBIDDEN_IN_ACCESS_LOGS.search(fmt):
            found.append(f"{name}: access log format may log a body or a header (the sign)")
    return found


def callback_concurrency(template: Template) -> list[str]:
    found = []
    for name, function in internet_facing(template).items():
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        if not (isinstance(reserved, dict) and reserved.get("Ref") in template["Parameters"]):
            found.append(f"{name}: no reserved concurrency from a parameter")
    return found


SECRETISH = re.compile(r"(SECRET|KEY|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PEPPER)", re.IGNORECASE)


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


def own_roles(template: Template) -> list[str]:
    """Each function has a role of the template's own, shared with no other function and with no
    managed policy: a function without one gets SAM's, with AWSLambdaBasicExecutionRole (logs on
    every group) and, for an SQS event, AWSLambdaSQSQueueExecutionRole (every queue)."""
    found = []
    owners: dict[str, str] = {}
    for name, function in resources(template, FUNCTION).items():
        role = role_of(template, function)
        if role is None:
            found.append(f"{name}: no role of the template's own (SAM would attach managed policies)")
            continue
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        if role_id in owners:
            found.append(f"{name}: shares {role_id} with {owners[role_id]}")
        owners[role_id] = name
        if role["Properties"].get("ManagedPolicyArns"):
            found.append(f"{name}: managed policies on its role {role_id}")
    return found


BUCKET_OBJECT_ACTIONS = ("s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*")


def bucket_principals(template: Template) -> list[str]:
    """The bucket's objects are denied to every principal but the functions' roles and the
    OperatorRoleArn parameter; claims/ and ledger/ to all but the splitter and the uploader."""
    roles = {
        function["Properties"]["Role"]["Fn::GetAtt"][0]
        for function in resources(template, FUNCTION).values()
        if role_of(template, function) is not None
    }
    found = []
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        by_sid = {st.get("Sid"): st for st in as_list(policy["Properties"]["PolicyDocument"]["Statement"])}
        for sid, resource, expected in (
            ("OnlyThisStackAndItsOperators", "/*", roles | {"OperatorRoleArn"}),
            (
                "ClaimsAndLedgerForTheFunctionsOnly",
                "/claims/*",
                {"SplitterFunctionRole", "UploaderFunctionRole"},
            ),
        ):
            st = by_sid.get(sid)
            if not st or st.get("Effect") != "Deny" or st.get("Principal") != "*":
                found.append(f"no {sid} deny in the bucket policy")
                continue
            if not set(BUCKET_OBJECT_ACTIONS) <= set(as_list(st.get("Action"))) or resource not in str(
                st.get("Resource")
            ):
                found.append(f"{sid}: does not cover the objects' reads and writes")
            listed = as_list(st.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn", []))
            named = {
                target(p["Fn::If"][1]) if isinstance(p, dict) and "Fn::If" in p else target(p) for p in listed
            }
            if named != expected:
                found.append(f"{sid}: lets in {sorted(named)}, not exactly {sorted(expected)}")
    if not resources(template, "AWS::S3::BucketPolicy"):
        found.append("no bucket policy")
    return found


RULES: dict[str, Callable[[Template], list[str]]] = {
    "each function has a role of its own without managed policies": own_roles,
    "the bucket lets in only the stack's roles and the operator role": bucket_principals,
    "bucket public access blocked": public_access,
    "encryption at rest": encryption,
    "TLS-only bucket policy": tls_only,
    "no * action on * resource": wildcard_permissions,
    "API throttling": api_throttling,
    "no secret in plain environment variables": plain_secrets,
    "callback cannot read the upstream credentials": callback_credentials,
    "DynamoDB: only the actions each function calls": dynamodb_least_privilege,
    "S3: each function reads only its prefixes": s3_reads_by_prefix,
    "no unused permission": unused_permissions,
    "declared log groups with the retention parameter": log_groups,
    "API access logs without bodies or headers": api_access_logs,
    "reserved concurrency on the callback": callback_concurrency,
    "TLS-only queue policies": tls_only_queues,
    "optional customer-managed key": customer_managed_key,
    "identity pepper: generated, kept, read only where digests are made": identity_pepper,
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
        lambda t: next(iter(resources(t, TABLE).values()))["Properties"]["SSESpecification"].update(
            SSEEnabled=False
        ),
    ),
    (
        "encryption at rest",
        "queue encryption removed",
        lambda t: next(iter(resources(t, QUEUE).values()))["Properties"].pop("SqsManagedSseEnabled"),
    ),
    ("TLS-only bucket policy", "SecureTransport deny removed", _drop_tls),
    (
        "no * action on * resource",
        "Allow * on *",
        lambda t: (
            _first_function(t)
            .setdefault("Policies", [])
            .append({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        ),
    ),
    (
        "no * action on * resource",
        "Allow s3:* on *",
        lambda t: (
            _first_function(t)
            .setdefault("Policies", [])
            .append({"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]})
        ),
    ),
    (
        "no * action on * resource",
        "AdministratorAccess attached",
        lambda t: _first_function(t).setdefault("Policies", []).append("AdministratorAccess"),
    ),
    ("API throttling", "throttling removed", _unthrottle),
    (
        "no secret in plain environment variables",
        "API key as a literal",
        lambda t: _env(t, UPSTREAM_API_KEY="k3y"),
    ),
    (
        "no secret in plain environment variables",
        "the identity pepper as a literal",
        lambda t: _env(t, IDENTITY_PEPPER="p3pper"),
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


def _props(t: Template, logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = t["Resources"][logical_id]["Properties"]
    return props


def _statement(t: Template, function: str, sid: str) -> dict[str, Any]:
    role = role_of(t, t["Resources"][function])
    assert role is not None
    return next(st for st in statements(role["Properties"]["Policies"]) if st.get("Sid") == sid)


def _sam_policies(t: Template, function: str) -> list[Any]:
    """SAM ``Policies`` written on the function (as someone might add them back)."""
    policies: list[Any] = _props(t, function).setdefault("Policies", [])
    return policies


def _drop_statement(t: Template, function: str, sid: str) -> None:
    role = role_of(t, t["Resources"][function])
    assert role is not None
    for entry in role["Properties"]["Policies"]:
        document = entry.get("PolicyDocument") if isinstance(entry, dict) else None
        if document:
            document["Statement"] = [st for st in document["Statement"] if st.get("Sid") != sid]


def _drop_queue_policies(t: Template, keep: int = 0) -> None:
    for policy in resources(t, "AWS::SQS::QueuePolicy").values():
        policy["Properties"]["Queues"] = policy["Properties"]["Queues"][:keep]


BREAKS += [
    (
        "callback cannot read the upstream credentials",
        "credentials policy template back on the callback",
        lambda t: _sam_policies(t, "CallbackFunction").append(
            {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "UpstreamCredentialsSecret"}}}
        ),
    ),
    (
        "callback cannot read the upstream credentials",
        "GetSecretValue on the credentials in a statement",
        lambda t: _sam_policies(t, "CallbackFunction").append(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["secretsmanager:GetSecretValue"],
                        "Resource": {"Ref": "UpstreamCredentialsSecret"},
                    }
                ]
            }
        ),
    ),
    (
        "callback cannot read the upstream credentials",
        "the callback's apiId from the credentials again",
        lambda t: _props(t, "CallbackFunction")["Environment"]["Variables"].pop("CALLBACK_API_ID"),
    ),
    (
        "DynamoDB: only the actions each function calls",
        "DynamoDBCrudPolicy back on the splitter",
        lambda t: _sam_policies(t, "SplitterFunction").append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": "JobsTable"}}}
        ),
    ),
    (
        "DynamoDB: only the actions each function calls",
        "DeleteItem on the jobs table for the poller",
        lambda t: _statement(t, "PollerFunction", "JobsTable")["Action"].append("dynamodb:DeleteItem"),
    ),
    (
        "DynamoDB: only the actions each function calls",
        "the callback on every table",
        lambda t: _statement(t, "CallbackFunction", "AuditsTable").update(Resource="*"),
    ),
    (
        "DynamoDB: only the actions each function calls",
        "idempotency without DeleteItem (Powertools deletes a failed record)",
        lambda t: _statement(t, "UploaderFunction", "IdempotencyTable")["Action"].remove(
            "dynamodb:DeleteItem"
        ),
    ),
    (
        "S3: each function reads only its prefixes",
        "S3ReadPolicy (the whole bucket) on the uploader",
        lambda t: _sam_policies(t, "UploaderFunction").append(
            {
                "S3ReadPolicy": {
                    "BucketName": {"Fn::Sub": "${AWS::StackName}-ingest-${AWS::AccountId}-${AWS::Region}"}
                }
            }
        ),
    ),
    (
        "S3: each function reads only its prefixes",
        "the uploader reads every key",
        lambda t: _statement(t, "UploaderFunction", "ReadClaimsAndHeaderFacts").update(
            Resource=[{"Fn::Sub": BUCKET_ARN + "/*"}]
        ),
    ),
    (
        "no unused permission",
        "the callback's unused SQSSendMessagePolicy",
        lambda t: _sam_policies(t, "CallbackFunction").append(
            {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["WorkQueue", "QueueName"]}}}
        ),
    ),
    (
        "no unused permission",
        "the callback may write reports",
        lambda t: _sam_policies(t, "CallbackFunction").append(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:PutObject",
                        "Resource": {"Fn::Sub": BUCKET_ARN + "/reports/*"},
                    }
                ]
            }
        ),
    ),
    (
        "declared log groups with the retention parameter",
        "a function without its log group",
        lambda t: _props(t, "PollerFunction").pop("LoggingConfig"),
    ),
    (
        "declared log groups with the retention parameter",
        "logs kept forever",
        lambda t: _props(t, "SplitterLogGroup").pop("RetentionInDays"),
    ),
    (
        "API access logs without bodies or headers",
        "access logs off",
        lambda t: _props(t, "CallbackApi").pop("AccessLogSetting"),
    ),
    (
        "API access logs without bodies or headers",
        "the body in the access log",
        lambda t: _props(t, "CallbackApi")["AccessLogSetting"].update(
            Format='{"requestId":"$context.requestId","status":"$context.status","body":"$input.body"}'
        ),
    ),
    (
        "API access logs without bodies or headers",
        "the sign header in the access log",
        lambda t: _props(t, "CallbackApi")["AccessLogSetting"].update(
            Format='{"requestId":"$context.requestId","status":"$context.status","s":"$method.request.header.sign"}'
        ),
    ),
    (
        "reserved concurrency on the callback",
        "no reserved concurrency",
        lambda t: _props(t, "CallbackFunction").pop("ReservedConcurrentExecutions"),
    ),
    ("TLS-only queue policies", "no queue policy", _drop_queue_policies),
    ("TLS-only queue policies", "one queue left out", lambda t: _drop_queue_policies(t, keep=2)),
    (
        "optional customer-managed key",
        "a queue that ignores the key",
        lambda t: _props(t, "WorkQueue").update(
            SqsManagedSseEnabled=True, KmsMasterKeyId={"Ref": "AWS::NoValue"}
        ),
    ),
    (
        "optional customer-managed key",
        "the bucket always SSE-S3",
        lambda t: _props(t, "IngestBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"][
            0
        ].update(ServerSideEncryptionByDefault={"SSEAlgorithm": "AES256"}),
    ),
    (
        "optional customer-managed key",
        "a table that ignores the key",
        lambda t: _props(t, "JobsTable")["SSESpecification"].pop("KMSMasterKeyId"),
    ),
]


BREAKS += [
    (
        "each function has a role of its own without managed policies",
        "AWSLambdaBasicExecutionRole on a role (logs:* on every group)",
        lambda t: _props(t, "PollerFunctionRole").update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
        ),
    ),
    (
        "the bucket lets in only the stack's roles and the operator role",
        "an administrator let into the bucket",
        lambda t: _props(t, "IngestBucketPolicy")["PolicyDocument"]["Statement"][1]["Condition"][
            "ArnNotEquals"
        ]["aws:PrincipalArn"].append("arn:aws:iam::123456789012:role/Admin"),
    ),
    (
        "the bucket lets in only the stack's roles and the operator role",
        "the operators may read the claim checks",
        lambda t: _props(t, "IngestBucketPolicy")["PolicyDocument"]["Statement"][2]["Condition"][
            "ArnNotEquals"
        ]["aws:PrincipalArn"].append({"Ref": "OperatorRoleArn"}),
    ),
    (
        "identity pepper: generated, kept, read only where digests are made",
        "the callback may read the pepper",
        lambda t: _sam_policies(t, "CallbackFunction").append(
            {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": PEPPER}}}
        ),
    ),
    (
        "identity pepper: generated, kept, read only where digests are made",
        "the uploader may read the pepper, in a statement",
        lambda t: _sam_policies(t, "UploaderFunction").append(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["secretsmanager:GetSecretValue"],
                        "Resource": {"Ref": PEPPER},
                    }
                ]
            }
        ),
    ),
    (
        "identity pepper: generated, kept, read only where digests are made",
        "the splitter may not read the pepper",
        lambda t: _drop_statement(t, "SplitterFunction", "IdentityPepper"),
    ),
    (
        "identity pepper: generated, kept, read only where digests are made",
        "a pepper the operator must type in",
        lambda t: _props(t, PEPPER).pop("GenerateSecretString"),
    ),
    (
        "identity pepper: generated, kept, read only where digests are made",
        "the pepper deleted with the stack",
        lambda t: t["Resources"][PEPPER].update(DeletionPolicy="Delete"),
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
    secrets = [API_KEY, CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET, IDENTITY_PEPPER, PREVIOUS_IDENTITY_PEPPER]
    for logical_id in stack.functions:
        env = stack.env_for(logical_id)
        assert env, logical_id
        leaked = [name for name, value in env.items() if any(secret in value for secret in secrets)]
        assert leaked == [], f"{logical_id} carries a secret value in {leaked}"
        # the names of the secrets are there instead: the values are fetched at run time
        assert {k for k in env if k.endswith("_PARAM")} >= {
            "UPSTREAM_CREDENTIALS_PARAM",
            "CALLBACK_SECRET_PARAM",
            "IDENTITY_PEPPER_PARAM",
        }


@pytest.mark.integration
def test_the_callback_accepts_callbacks_without_reading_the_upstream_credentials(
    stack: LocalStack, services: Services, clock: FixedClock
) -> None:
    """The callback's environment as deployed (CALLBACK_API_ID from the UpstreamApiId parameter),
    with a credentials secret it cannot read: a valid callback is applied, a foreign apiId refused."""
    from tests.integration.test_callback import body, pending_audit, signed

    unreadable = "arn:aws:secretsmanager:us-east-1:123456789012:secret:not-yours-AbCdEf"
    env = {
        **stack.env_for("CallbackFunction"),
        "CALLBACK_API_ID": API_ID,
        "UPSTREAM_CREDENTIALS_PARAM": unreadable,
    }
    callback = build_services(Settings.from_env(env), clock)
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id)
    assert handle_callback(callback, raw, signed(raw)).http_status == 200
    assert services.audits.get(audit.audit_key).status == AuditStatus.PASSED  # type: ignore[union-attr]
    other = pending_audit(services)
    assert other.record_id is not None
    forged = body(other.record_id).replace(API_ID.encode(), b"someone-else")
    refused = handle_callback(callback, forged, signed(forged))
    assert (refused.http_status, refused.reason) == (403, "api_id")
