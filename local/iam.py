"""IAM as AWS will enforce it, on the local stack: every function runs with its own role, as SAM
expands the template (``expand_template``, ``function_roles``), created in moto's IAM and assumed
(``provision_roles``); ``invoking_as`` says whose role the core signs with, and ``gate`` authorises
each request a role signs. Why, and why not moto's own enforcement: docs/decisions.md#least-privilege.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import botocore.credentials
from botocore.credentials import CredentialProvider, ReadOnlyCredentials

from local.policy import Decision, Policy, Request, evaluate

if TYPE_CHECKING:
    from local.resources import Resolver

log = logging.getLogger("local.iam")

ACCOUNT_ID: Final = "123456789012"  # moto's default account (local.resources.LOCAL_ACCOUNT_ID)
PARTITION: Final = "aws"
IAM_LOG_PATH: Final = "/_local/iam"
ROOT: Final = Path(__file__).resolve().parent.parent
LAMBDA_TRUST: Final = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# --------------------------------------------------------------------------------------------------
# The template as SAM expands it, and each function's role in it
# --------------------------------------------------------------------------------------------------


def sam_translator_python() -> Path:
    """The Python of the virtualenv that holds aws-sam-translator (``make sam-translator``)."""
    configured = os.environ.get("SAM_TRANSLATOR_PYTHON")
    return Path(configured) if configured else ROOT / ".venv-samt" / "bin" / "python"


def expand_template(
    template: Mapping[str, Any], parameters: Mapping[str, Any], region: str
) -> dict[str, Any]:
    """``template`` translated by aws-sam-translator, as ``sam deploy`` does after ``sam package``
    (local/sam_expand.py, in its own virtualenv): each function's execution role is there what AWS
    will enforce, with what SAM adds (managed policies of event sources, policy templates) written
    out."""
    request = json.dumps({"template": template, "parameters": dict(parameters)}, sort_keys=True)
    return json.loads(_expanded(request, region))  # type: ignore[no-any-return]


@lru_cache(maxsize=8)
def _expanded(request: str, region: str) -> str:
    python = sam_translator_python()
    if not python.exists():
        raise RuntimeError(
            f"no aws-sam-translator at {python}: run `make sam-translator` (make demo and make test do)"
        )
    done = subprocess.run(
        [str(python), str(ROOT / "local" / "sam_expand.py"), region],
        input=request,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"aws-sam-translator could not expand the template: {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class RoleSpec:
    """A function's execution role in the expanded template, its policies resolved."""

    function: str  # the function's logical id
    role: str  # the role's logical id
    policies: tuple[Policy, ...]
    managed_policy_arns: tuple[str, ...]  # attached by ARN (SAM adds these for event sources)


def function_roles(expanded: Mapping[str, Any], resolver: Resolver) -> dict[str, RoleSpec]:
    """Every ``AWS::Lambda::Function`` of ``expanded`` and its role (``Role: !GetAtt R.Arn``)."""
    resources: Mapping[str, Any] = expanded.get("Resources", {})
    roles: dict[str, RoleSpec] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function" or not resolver.included(resource):
            continue
        role_ref = (resource.get("Properties") or {}).get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise ValueError(f"{logical_id}: its Role is not a role of the template ({role_ref!r})")
        target = role_ref["Fn::GetAtt"]
        role_id = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
        props = resources[role_id].get("Properties") or {}
        inline = resolver.resolve(props.get("Policies") or [])
        policies = tuple(
            Policy(f"{role_id}/{entry['PolicyName']}", entry["PolicyDocument"])
            for entry in inline
            if isinstance(entry, dict)
        )
        managed = tuple(str(arn) for arn in resolver.resolve(props.get("ManagedPolicyArns") or []))
        roles[logical_id] = RoleSpec(logical_id, role_id, policies, managed)
    return roles


def aws_managed_policy(arn: str) -> dict[str, Any]:
    """The document of an AWS managed policy, from moto's copy of them (what AWS publishes)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = arn.rsplit("/", 1)[-1]
    data = json.loads(aws_managed_policies_data)
    if name not in data:
        raise KeyError(f"unknown AWS managed policy {arn}")
    return dict(data[name]["Document"])


# --------------------------------------------------------------------------------------------------
# The roles in moto, and their credentials
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionRole:
    function: str  # logical id
    role_arn: str
    access_key: str
    secret_key: str
    token: str

    @property
    def credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials(self.access_key, self.secret_key, self.token)

    def client_kwargs(self) -> dict[str, str]:
        """For ``boto3.client(...)``: what the Lambda service does as the function (an event source
        mapping's receive and delete, an on-failure destination's send) signs with its role."""
        return {
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_session_token": self.token,
        }


def provision_roles(
    specs: Mapping[str, RoleSpec], stack_name: str, endpoint_url: str | None
) -> dict[str, FunctionRole]:
    """Create (or replace) each role in moto's IAM with exactly its policies (resolved against the
    local stack) and assume it through moto's STS: one set of role-session credentials per
    function."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint_url)
    sts = boto3.client("sts", endpoint_url=endpoint_url)
    roles: dict[str, FunctionRole] = {}
    for function, spec in specs.items():
        name = f"{stack_name}-{spec.role}"[:64]
        try:
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"][
                "Arn"
            ]
        except iam.exceptions.EntityAlreadyExistsException:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
            for old in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=old)
        documents = {p.name.rsplit("/", 1)[-1]: p.document for p in spec.policies}
        # managed policies, inline with their AWS documents (moto holds AWS's only on request)
        documents.update(
            {f"aws-managed-{a.rsplit('/', 1)[-1]}": aws_managed_policy(a) for a in spec.managed_policy_arns}
        )
        for policy_name, document in documents.items():
            # IAM takes a document without Version (as 2008-10-17: SAM writes none); moto does not
            versioned = {"Version": "2012-10-17", **document}
            iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(versioned))
        session = sts.assume_role(RoleArn=arn, RoleSessionName=function, DurationSeconds=43200)["Credentials"]
        roles[function] = FunctionRole(
            function, arn, session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"]
        )
    GATE.forget()
    return roles


# --------------------------------------------------------------------------------------------------
# The credentials the core signs with while a function runs
# --------------------------------------------------------------------------------------------------

_INVOKING: contextvars.ContextVar[FunctionRole | None] = contextvars.ContextVar(
    "local_function_role", default=None
)


@contextmanager
def invoking_as(role: FunctionRole | None) -> Iterator[None]:
    """Run the block as ``role``: the core's boto3 clients take their credentials from
    ``RoleCredentialProvider``, which reads this context (the local runner and the tests' handler
    fixtures run the four functions in one process)."""
    token = _INVOKING.set(role)
    try:
        yield
    finally:
        _INVOKING.reset(token)


class _RoleCredentials(botocore.credentials.Credentials):
    """The invoking function's role session, else the environment's (the harness: an operator)."""

    def __init__(self) -> None:  # no static keys: each request asks get_frozen_credentials
        self.method = RoleCredentialProvider.METHOD

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        role = _INVOKING.get()
        if role is not None:
            return role.credentials
        return ReadOnlyCredentials(
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_SESSION_TOKEN"),
        )

    @property
    def access_key(self) -> str:  # type: ignore[override]  # botocore: a plain attribute
        return self.get_frozen_credentials().access_key or ""

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return self.get_frozen_credentials().secret_key or ""

    @property
    def token(self) -> str | None:  # type: ignore[override]
        return self.get_frozen_credentials().token


class RoleCredentialProvider(CredentialProvider):
    """First in the chain of the core's boto3 session (``verifyfeed.aws.add_credential_provider``)."""

    METHOD = "local-function-role"
    CANONICAL_NAME = "LocalFunctionRole"

    def load(self) -> botocore.credentials.Credentials:
        return _RoleCredentials()


def install_credentials() -> None:
    """The core's clients sign as the invoking function from now on (idempotent)."""
    from verifyfeed import aws

    aws.add_credential_provider(RoleCredentialProvider())


# --------------------------------------------------------------------------------------------------
# What a request asks for
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    action: str
    resource: str
    context: dict[str, list[str]] = field(default_factory=dict)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def calls_of(
    service: str, region: str, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> list[Call]:
    """The authorisations AWS makes for one request (one per table of a batch, per key of a
    multi-object delete ...). An operation not listed here is refused with action
    ``<service>:<Operation>`` on ``*``, so a new call is noticed, never waved through."""
    target = headers.get("x-amz-target", "")
    if service == "s3":
        return _s3_calls(method, path, query, headers, body)
    if service == "dynamodb":
        return _dynamodb_calls(region, target.rsplit(".", 1)[-1], _json(body))
    if service == "sqs":
        if target:
            return _sqs_calls(region, target.rsplit(".", 1)[-1], _json(body))
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        return _sqs_calls(region, form.get("Action", ""), form)
    if service == "secretsmanager":
        operation = target.rsplit(".", 1)[-1]
        return [
            Call(f"secretsmanager:{operation}", _secret_arn(region, str(_json(body).get("SecretId", "*"))))
        ]
    operation = (
        target.rsplit(".", 1)[-1]
        if target
        else parse_qs(query or body.decode(errors="replace")).get("Action", ["?"])[0]
    )
    return [Call(f"{service}:{operation}", "*")]


def _table_arn(region: str, table: str, index: str = "") -> str:
    arn = f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT_ID}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def _leading_key(region: str, table: str, item: Mapping[str, Any]) -> list[str]:
    """``dynamodb:LeadingKeys``: the partition key's value of the item a request touches."""
    hash_key = _hash_key(region, table)
    if hash_key is None:
        return []
    value = (item or {}).get(hash_key) or {}
    return [str(v) for v in value.values()][:1] if isinstance(value, dict) else []


def _hash_key(region: str, table: str) -> str | None:
    """The table's partition key attribute, from moto's backend (None: no such table, which moto
    answers itself)."""
    from moto.dynamodb.exceptions import ResourceNotFoundException
    from moto.dynamodb.models import dynamodb_backends

    try:
        return str(dynamodb_backends[ACCOUNT_ID][region].get_table(table).hash_key_attr)
    except ResourceNotFoundException:
        return None


def _query_leading_key(region: str, table: str, request: Mapping[str, Any]) -> list[str]:
    """The partition key's value a ``Query``'s key condition names (``pk = :v`` or ``#n = :v``)."""
    hash_key = _hash_key(region, table)
    if hash_key is None:
        return []
    names = request.get("ExpressionAttributeNames") or {}
    values = request.get("ExpressionAttributeValues") or {}
    for clause in str(request.get("KeyConditionExpression", "")).split(" AND "):
        left, _, right = (part.strip(" ()") for part in clause.partition("="))
        if names.get(left, left) == hash_key and right in values:
            return [str(v) for v in values[right].values()][:1]
    return []


_DYNAMODB_ITEM_ACTIONS: Final = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_calls(region: str, operation: str, request: Mapping[str, Any]) -> list[Call]:
    table = str(request.get("TableName", ""))
    if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        item = request.get("Key") or request.get("Item") or {}
        return [
            Call(
                f"dynamodb:{operation}",
                _table_arn(region, table),
                {"dynamodb:LeadingKeys": _leading_key(region, table, item)},
            )
        ]
    if operation in ("Query", "Scan"):
        leading = _query_leading_key(region, table, request) if operation == "Query" else []
        context = {"dynamodb:LeadingKeys": leading} if leading else {}
        return [
            Call(
                f"dynamodb:{operation}", _table_arn(region, table, str(request.get("IndexName", ""))), context
            )
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        calls = []
        for name, entry in (request.get("RequestItems") or {}).items():
            if operation == "BatchGetItem":
                keys = list(entry.get("Keys", []))
            else:
                keys = [
                    (w.get("PutRequest") or {}).get("Item") or (w.get("DeleteRequest") or {}).get("Key") or {}
                    for w in entry
                ]
            leading = sorted({v for key in keys for v in _leading_key(region, name, key)})
            calls.append(
                Call(f"dynamodb:{operation}", _table_arn(region, name), {"dynamodb:LeadingKeys": leading})
            )
        return calls
    if operation in ("TransactWriteItems", "TransactGetItems"):
        # no action of their own: each item is authorised as the operation it is
        calls = []
        for entry in request.get("TransactItems") or []:
            for kind, item in entry.items():
                name = str(item.get("TableName", ""))
                key = item.get("Key") or item.get("Item") or {}
                calls.append(
                    Call(
                        f"dynamodb:{_DYNAMODB_ITEM_ACTIONS.get(kind, kind)}",
                        _table_arn(region, name),
                        {"dynamodb:LeadingKeys": _leading_key(region, name, key)},
                    )
                )
        return calls
    return [Call(f"dynamodb:{operation}", _table_arn(region, table) if table else "*")]


_SQS_BATCH: Final = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs_calls(region: str, operation: str, request: Mapping[str, Any]) -> list[Call]:
    url = str(request.get("QueueUrl") or request.get("QueueName") or "")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    resource = f"arn:{PARTITION}:sqs:{region}:{ACCOUNT_ID}:{name}" if name else "*"
    return [Call(f"sqs:{_SQS_BATCH.get(operation, operation)}", resource)]


def _secret_arn(region: str, secret_id: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    from moto.secretsmanager.models import secretsmanager_backends

    try:
        return str(secretsmanager_backends[ACCOUNT_ID][region].secrets[secret_id].arn)
    except KeyError:  # no such secret: moto answers that itself
        return f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT_ID}:secret:{secret_id}"


def _s3_calls(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> list[Call]:
    bucket, _, key = unquote(path.lstrip("/")).partition("/")
    params = parse_qs(query, keep_blank_values=True)
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    if not key:
        if method == "GET" and "versions" in params:
            return [Call("s3:ListBucketVersions", bucket_arn, {"s3:prefix": params.get("prefix", [""])})]
        if (
            method == "GET"
            and not (
                set(params)
                - {
                    "list-type",
                    "prefix",
                    "delimiter",
                    "continuation-token",
                    "max-keys",
                    "start-after",
                    "encoding-type",
                    "fetch-owner",
                    "marker",
                }
            )
        ) or (method == "HEAD" and not params):
            return [Call("s3:ListBucket", bucket_arn, {"s3:prefix": params.get("prefix", [""])})]
        if method == "POST" and "delete" in params:
            return [
                Call("s3:DeleteObjectVersion" if version else "s3:DeleteObject", f"{bucket_arn}/{name}")
                for name, version in _multi_delete_keys(body)
            ]
        return [Call(f"s3:{method.title()}Bucket{''.join(p.title() for p in params)}", bucket_arn)]
    object_arn = f"{bucket_arn}/{key}"
    versioned = "versionId" in params
    if method in ("GET", "HEAD"):
        sub = next(
            (p for p in ("tagging", "acl", "attributes", "retention", "legal-hold") if p in params), ""
        )
        if sub:
            return [Call(f"s3:GetObject{sub.title().replace('-', '')}", object_arn)]
        return [Call("s3:GetObjectVersion" if versioned else "s3:GetObject", object_arn)]
    if method == "PUT":
        if "tagging" in params:
            return [Call("s3:PutObjectTagging", object_arn)]
        calls = [Call("s3:PutObject", object_arn)]
        source = headers.get("x-amz-copy-source", "")
        if source:
            source_path, _, source_query = unquote(source).partition("?")
            calls.append(
                Call(
                    "s3:GetObjectVersion" if "versionId" in source_query else "s3:GetObject",
                    f"arn:{PARTITION}:s3:::{source_path.lstrip('/')}",
                )
            )
        return calls
    if method == "POST":  # multipart uploads: create and complete
        return [Call("s3:PutObject", object_arn)]
    if method == "DELETE":
        if "uploadId" in params:
            return [Call("s3:AbortMultipartUpload", object_arn)]
        return [Call("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", object_arn)]
    return [Call(f"s3:{method.title()}Object", object_arn)]


def _multi_delete_keys(body: bytes) -> list[tuple[str, str]]:
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return [("", "")]
    found = []
    for element in root.iter():
        if element.tag.endswith("Object"):
            name = next((c.text or "" for c in element if c.tag.endswith("Key")), "")
            version = next((c.text or "" for c in element if c.tag.endswith("VersionId")), "")
            found.append((name, version))
    return found or [("", "")]


# --------------------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    function: str  # the role session's name: the function's logical id
    role_arn: str
    policies: tuple[Policy, ...]


@dataclass(frozen=True)
class Denial:
    function: str
    role_arn: str
    action: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.function} may not {self.action} on {self.resource} ({self.reason}; role {self.role_arn})"
        )


def shown_resource(resource: str) -> str:
    """An object's ARN with its key cut to the first folder (``…/claims/*``): keys carry file names."""
    head, sep, key = resource.partition(":::")
    if not sep or "/" not in key:
        return resource
    bucket, _, rest = key.partition("/")
    folder = rest.split("/", 1)[0] + "/*" if "/" in rest else "*"
    return f"{head}:::{bucket}/{folder}"


class Gate:
    """What the gate decided: every (function, action, resource) seen and every denial."""

    MAX_DENIALS = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identities: dict[str, Identity | None] = {}
        self._resource_policies: dict[str, Policy] = {}
        self.calls: set[tuple[str, str, str, str]] = set()  # (role ARN, function, action, resource)
        self.denials: list[Denial] = []

    def set_resource_policy(self, arn: str, name: str, document: Mapping[str, Any]) -> None:
        """A bucket's or queue's policy (``arn``: the bucket's or queue's ARN)."""
        with self._lock:
            self._resource_policies[arn] = Policy(name, document, resource_policy=True)

    def forget(self) -> None:
        """Roles were (re)provisioned: look every key up again."""
        with self._lock:
            self._identities.clear()

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.denials.clear()

    def identity(self, access_key: str, token: str) -> Identity | None:
        with self._lock:
            if access_key in self._identities:
                return self._identities[access_key]
        found = _assumed_role(access_key, token)
        with self._lock:
            self._identities[access_key] = found
        return found

    def authorise(self, identity: Identity, calls: list[Call], region: str) -> Denial | None:
        for call in calls:
            request = Request(
                action=call.action,
                resource=call.resource,
                context={
                    **call.context,
                    # AWS endpoints are TLS only (the local one is not: the client's side is modelled)
                    "aws:SecureTransport": ["true"],
                    "aws:PrincipalArn": [identity.role_arn],
                    "aws:PrincipalAccount": [ACCOUNT_ID],
                    "aws:RequestedRegion": [region],
                },
                principal_arn=identity.role_arn,
                account_id=ACCOUNT_ID,
            )
            with self._lock:
                attached = self._resource_policies.get(_resource_of(call))
            decision = _decide(identity.policies, [attached] if attached else [], request)
            with self._lock:
                self.calls.add(
                    (identity.role_arn, identity.function, call.action, shown_resource(call.resource))
                )
            if not decision.allowed:
                denial = Denial(
                    identity.function,
                    identity.role_arn,
                    call.action,
                    shown_resource(call.resource),
                    decision.reason,
                )
                with self._lock:
                    if len(self.denials) < self.MAX_DENIALS:
                        self.denials.append(denial)
                log.error("IAM: %s", denial)
                return denial
        return None

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": [
                    {"role_arn": role, "function": function, "action": action, "resource": resource}
                    for role, function, action, resource in sorted(self.calls)
                ],
                "denials": [d.__dict__ for d in self.denials],
            }


def _decide(identity: tuple[Policy, ...], resource: list[Policy], request: Request) -> Decision:
    """Same account: an explicit deny anywhere refuses; an allow in either allows."""
    mine = evaluate(identity, request)
    theirs = evaluate(resource, request) if resource else Decision(False, "no resource policy")
    for decision in (mine, theirs):
        if decision.reason.startswith("explicitly denied"):
            return decision
    if mine.allowed or theirs.allowed:
        return mine if mine.allowed else theirs
    return mine


def _resource_of(call: Call) -> str:
    """The ARN a resource policy is attached to: the bucket's (for its objects too), the queue's."""
    if call.action.startswith("s3:"):
        return call.resource.split("/", 1)[0]
    return call.resource


def _assumed_role(access_key: str, token: str) -> Identity | None:
    """The role session ``access_key`` belongs to, with the role's policies; None for other keys."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for session in sts_backends[ACCOUNT_ID][PARTITION].assumed_roles:
        if session.access_key_id != access_key or session.session_token != token:
            continue
        iam = iam_backends[ACCOUNT_ID][PARTITION]
        role_name = session.role_arn.rsplit("/", 1)[-1]
        policies = [
            Policy(f"{role_name}/{name}", json.loads(iam.get_role_policy(role_name, name)[1]))
            for name in iam.list_role_policies(role_name)
        ]
        attached, _ = iam.list_attached_role_policies(role_name)
        for managed in attached:
            version = next(v for v in managed.versions if v.is_default)
            policies.append(Policy(managed.arn, json.loads(version.document)))
        return Identity(session.session_name, session.role_arn, tuple(policies))
    return None


GATE: Final = Gate()


def _scope(authorization: str, query: Mapping[str, list[str]]) -> tuple[str, str, str]:
    """(access key, region, service) from a SigV4 ``Authorization`` header or a presigned query."""
    credential = ""
    if "Credential=" in authorization:
        credential = authorization.split("Credential=", 1)[1].split(",", 1)[0]
    elif "X-Amz-Credential" in query:
        credential = query["X-Amz-Credential"][0]
    parts = credential.split("/")
    return (parts[0], parts[2], parts[3]) if len(parts) >= 4 else ("", "", "")


def _denied(
    service: str, headers: Mapping[str, str], denial: Denial, start_response: Callable[..., Any]
) -> list[bytes]:
    message = (
        f"User: {denial.role_arn} is not authorized to perform: {denial.action}"
        f" on resource: {denial.resource} because {denial.reason}"
    )
    if service == "s3" or not headers.get("x-amz-target"):
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            f"<Message>{_xml_text(message)}</Message></Error>"
        ).encode()
        start_response(
            "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        )
        return [body]
    body = json.dumps(
        {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
    ).encode()
    extra = [("x-amzn-query-error", "AccessDenied;Sender")] if service == "sqs" else []
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body))), *extra],
    )
    return [body]


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def gate(app: WsgiApp) -> WsgiApp:
    """``app`` (moto) behind the gate: WSGI middleware in front of moto (``local.aws_server``). A
    request signed with a role session's credentials is authorised against that role's policies, and
    the bucket's or queue's policy, by ``local.policy.evaluate``; a refused one gets AWS's
    ``AccessDenied`` and is recorded with the function, the action and the resource. Every call is
    recorded too, as (role, action, resource) with object keys cut to their prefix. Other
    credentials (the tests, the CLI: an operator with every right) pass unchecked.
    ``GET /_local/iam`` returns what was recorded (``DELETE`` also clears it)."""

    def gated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == IAM_LOG_PATH:
            body = json.dumps(GATE.report()).encode()
            if environ.get("REQUEST_METHOD") == "DELETE":
                GATE.clear()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        query = environ.get("QUERY_STRING", "")
        parsed_query = parse_qs(query, keep_blank_values=True)
        access_key, region, service = _scope(environ.get("HTTP_AUTHORIZATION", ""), parsed_query)
        token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN") or parsed_query.get("X-Amz-Security-Token", [""])[0]
        if not access_key or not token:
            return app(environ, start_response)  # no role session: the harness, unchecked
        identity = GATE.identity(access_key, token)
        if identity is None:
            return app(environ, start_response)
        headers = {
            k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
        }
        method = environ.get("REQUEST_METHOD", "GET")
        body = b""
        if service != "s3" or (method == "POST" and "delete" in parsed_query):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        host_bucket = _virtual_host_bucket(headers.get("host", ""))
        s3_path = f"/{host_bucket}{path}" if host_bucket else path
        try:
            calls = calls_of(
                service, region, method, s3_path if service == "s3" else path, query, headers, body
            )
            denial = GATE.authorise(identity, calls, region)
        except Exception as exc:  # fail closed, and say so
            log.exception("IAM gate could not read a %s request", service)
            denial = Denial(
                identity.function, identity.role_arn, f"{service}:?", "*", f"the local IAM gate failed: {exc}"
            )
        if denial is not None:
            return _denied(service, headers, denial, start_response)
        return app(environ, start_response)

    return gated


def _virtual_host_bucket(host: str) -> str:
    name = host.split(":", 1)[0]
    if ".s3." in name or name.endswith(".s3.amazonaws.com"):
        return name.split(".s3", 1)[0]
    return ""


# --------------------------------------------------------------------------------------------------
# Reading the gate's record from outside the process
# --------------------------------------------------------------------------------------------------


def read_report(endpoint_url: str, clear: bool = False) -> dict[str, Any]:
    """What the gate of the moto server at ``endpoint_url`` recorded (``clear``: and start anew)."""
    import urllib.request

    url = endpoint_url.rstrip("/") + IAM_LOG_PATH
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an HTTP endpoint: {endpoint_url}")
    request = urllib.request.Request(url, method="DELETE" if clear else "GET")  # noqa: S310 - checked above
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        report: dict[str, Any] = json.loads(answer.read())
    return report


def denial_lines(report: Mapping[str, Any]) -> list[str]:
    return [
        f"IAM denied: {d['function']} may not {d['action']} on {d['resource']}"
        f" ({d['reason']}; role {d['role_arn']})"
        for d in report.get("denials", [])
    ]
