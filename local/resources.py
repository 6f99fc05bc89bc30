"""Create the template's resources in a moto server, by reading ``template.yaml``:
``create_local_stack`` gives the ``LocalStack`` (with a ``FunctionSpec`` of each function), and
``Resolver`` evaluates the template's intrinsics against it. There is no second, hand-kept list of
resources: moto's own CloudFormation creates what it can, this module the rest.
docs/architecture.md#local-stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final

import boto3
import cfnlint.decode
from botocore.exceptions import ClientError
from moto.cloudformation.parsing import LazyDict, clean_json, parse_condition

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

    from local.iam import FunctionRole

LOCAL_ACCOUNT_ID: Final = "123456789012"
DEFAULT_TEMPLATE: Final = "template.yaml"
PARTITION: Final = "aws"
URL_SUFFIX: Final = "amazonaws.com"

BUCKET: Final = "AWS::S3::Bucket"
QUEUE: Final = "AWS::SQS::Queue"
TABLE: Final = "AWS::DynamoDB::Table"
SECRETSMANAGER: Final = "AWS::SecretsManager::Secret"
BUCKET_POLICY: Final = "AWS::S3::BucketPolicy"
QUEUE_POLICY: Final = "AWS::SQS::QueuePolicy"
FUNCTION: Final = "AWS::Serverless::Function"
# moto's CloudFormation creates these (the settings it leaves out are applied by hand: _Creator);
# it has no Secrets Manager secrets, which are created by hand
STACK_TYPES: Final = (BUCKET, QUEUE, TABLE)
_NAME_PROPERTY: Final = {BUCKET: "BucketName", QUEUE: "QueueName", TABLE: "TableName"}
_PASSWORD_FLAGS: Final = (
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "ExcludeLowercase",
    "IncludeSpace",
    "RequireEachIncludedType",
)

# --------------------------------------------------------------------------------------------------
# Reading the template
# --------------------------------------------------------------------------------------------------


def load_template(path: str | os.PathLike[str] = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, short tags (``!Ref``) in their long form: cfn-lint's reader."""
    template, errors = cfnlint.decode.decode(str(path))
    if errors or template is None or not isinstance(template.get("Resources"), dict):
        reasons = "; ".join(error.message for error in errors) or "no Resources"
        raise ValueError(f"{path} is not a CloudFormation template ({reasons})")
    return dict(template)


# --------------------------------------------------------------------------------------------------
# What the local stack is
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    """One entry of a function's ``Events``: its type and its properties, resolved."""

    name: str
    type: str  # S3 | SQS | Api | Schedule | ...
    properties: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None  # Api: the stage of the API the route belongs to

    def key_filter(self, name: str) -> str:
        """S3: the value of the ``prefix`` or ``suffix`` rule of the key filter ("" if none)."""
        rules = self.properties.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        return next((str(rule["Value"]) for rule in rules if str(rule["Name"]).lower() == name), "")


@dataclass(frozen=True)
class FunctionSpec:
    """What a local runner needs to call a function like Lambda would."""

    logical_id: str
    code_uri: str  # "functions/splitter/"
    handler: str  # "app.lambda_handler"
    handler_path: str  # "functions/splitter/app.py"
    handler_function: str  # "lambda_handler"
    runtime: str
    timeout_s: int
    memory_mb: int
    ephemeral_storage_mb: int
    env: dict[str, str]  # the function's own variables (override the global ones)
    events: tuple[EventSpec, ...]
    # EventInvokeConfig.DestinationConfig.OnFailure of type SQS: where an asynchronous invocation
    # that failed every attempt is recorded
    on_failure_queue_url: str | None = None

    def events_of(self, event_type: str) -> list[EventSpec]:
        return [event for event in self.events if event.type == event_type]

    @property
    def sqs(self) -> EventSpec | None:
        found = self.events_of("SQS")
        return found[0] if found else None

    @property
    def schedules(self) -> list[EventSpec]:
        return self.events_of("Schedule") + self.events_of("ScheduleV2")

    @property
    def api_routes(self) -> list[EventSpec]:
        return self.events_of("Api")

    @property
    def s3_triggers(self) -> list[EventSpec]:
        return self.events_of("S3")


@dataclass(frozen=True)
class LocalStack:
    stack_name: str
    region: str
    account_id: str
    bucket: str  # the (first) bucket of the template
    queue_url: str  # the queue with a redrive policy (the work queue)
    dlq_url: str  # its dead-letter queue
    tables: dict[str, str]  # logical id -> table name
    secrets: dict[str, str]  # logical id -> secret ARN
    function_env: dict[str, str]  # Globals.Function.Environment.Variables, resolved
    functions: dict[str, FunctionSpec]  # logical id -> spec
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    parameters: dict[str, str] = field(default_factory=dict)  # the parameter values used
    # function logical id -> its execution role in moto's IAM, assumed (local/iam.py); a new role
    # session each time the stack is created, so not part of what makes two stacks the same
    roles: dict[str, FunctionRole] = field(default_factory=dict, compare=False)

    def env_for(self, logical_id: str) -> dict[str, str]:
        """The environment one function runs with: the global variables, then its own."""
        return {**self.function_env, **self.functions[logical_id].env}


# --------------------------------------------------------------------------------------------------
# Resolving intrinsic functions against the local stack
# --------------------------------------------------------------------------------------------------


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()

# the service in the ARN of a type whose second word does not name it
_SERVICE_OF_TYPE: Final = {"AWS::Serverless::LayerVersion": "lambda", "AWS::Serverless::Api": "apigateway"}


class Resolver:
    """Evaluates ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If`` ... with local physical values.

    The evaluation is moto's CloudFormation's own (``clean_json``, ``parse_condition``), called in
    this process; what is local is only what a name stands for (``ref``, ``get_att``): the
    parameters, the pseudo parameters, and the names and ARNs of the resources created here (or a
    stand-in name). The functions' environment, timeouts and event sources refer to functions, an
    API and secrets that moto's CloudFormation cannot hold, and moto serves CloudFormation over HTTP
    only (its outputs are strings), so that part stays hand-written.
    tests/reliability/test_security.py reads the template through it too, with no moto server."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        account_id: str = LOCAL_ACCOUNT_ID,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.resources: dict[str, Any] = dict(template.get("Resources", {}))
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.pseudo: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        self.parameters = _parameter_values(template.get("Parameters", {}), parameters or {})
        self.refs: dict[str, str] = {}  # logical id -> what Ref returns, for created resources
        self.attributes: dict[tuple[str, str], str] = {}
        self._names = _Names(self)

    def default_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        if name in self.resources:  # not created locally (an API, a function): a stand-in name
            return self.default_name(name)
        if name in self.template.get("Mappings", {}):
            return self.template["Mappings"][name]
        if name in self.template.get("Parameters", {}):
            raise KeyError(f"parameter {name} has no Default and no value was given")
        raise KeyError(f"unknown reference {name!r}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        resource = self.resources.get(logical_id)
        if resource is None:
            raise KeyError(f"Fn::GetAtt of unknown resource {logical_id!r}")
        physical = str(self.ref(logical_id))
        kind = resource.get("Type", "")
        name = physical.rsplit("/", 1)[-1]  # a queue's Ref is its URL
        if attribute == "Arn":
            where = f"{PARTITION}:{{}}:{self.region}:{self.account_id}"
            arns = {
                BUCKET: f"arn:{PARTITION}:s3:::{physical}",
                TABLE: f"arn:{where.format('dynamodb')}:table/{physical}",
                QUEUE: f"arn:{where.format('sqs')}:{name}",
                FUNCTION: f"arn:{where.format('lambda')}:function:{physical}",
                "AWS::Lambda::Function": f"arn:{where.format('lambda')}:function:{physical}",
            }
            service = _SERVICE_OF_TYPE.get(kind, kind.split("::")[1].lower() if "::" in kind else "local")
            return arns.get(kind, f"arn:{where.format(service)}:{physical}")
        if kind == QUEUE and attribute in ("QueueName", "QueueUrl"):
            return name if attribute == "QueueName" else physical
        return f"{physical}.{attribute}"

    def condition(self, name: str) -> bool:
        if name not in self._names.lazy_condition_map:
            raise KeyError(f"unknown condition {name!r}")
        return bool(self._names.lazy_condition_map[name])

    def included(self, resource: Mapping[str, Any]) -> bool:
        name = resource.get("Condition")
        return True if name is None else self.condition(name)

    def resolve(self, node: Any) -> Any:
        return _without_no_value(clean_json(node, self._names))  # type: ignore[arg-type]


class _Names(dict[str, Any]):
    """What moto's evaluator looks names up in (a ``ResourceMap`` in moto): ``[name]`` for ``Ref``,
    ``.get(name)`` for ``Fn::GetAtt``, ``lazy_condition_map`` for the conditions."""

    def __init__(self, resolver: Resolver) -> None:
        super().__init__()
        self.resolver = resolver
        self.lazy_condition_map = LazyDict()
        for name, condition in resolver.template.get("Conditions", {}).items():
            self.lazy_condition_map[name] = partial(parse_condition, condition, self, self.lazy_condition_map)  # type: ignore[arg-type]

    def __getitem__(self, name: str) -> Any:
        return self.resolver.ref(name)

    def get(self, name: str, default: Any = None) -> Any:
        resolver = self.resolver
        return _Attributes(partial(resolver.get_att, name)) if name in resolver.resources else default


@dataclass(frozen=True)
class _Attributes:
    get_cfn_attribute: Callable[[str], Any]


def _without_no_value(value: Any) -> Any:
    """``AWS::NoValue`` removed from lists and maps (a property set to it is not set)."""
    if isinstance(value, list):
        return [_without_no_value(item) for item in value if item is not NO_VALUE]
    if isinstance(value, dict):
        return {key: _without_no_value(item) for key, item in value.items() if item is not NO_VALUE}
    return value


def _text(value: Any) -> str:
    """A value as CloudFormation renders it in a string (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def _parameter_values(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    unknown = set(overrides) - set(declared)
    if unknown:
        raise KeyError(f"unknown template parameters: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            raw: Any = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            continue
        value = _text(raw)
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [_text(item) for item in allowed]:
            raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
        kind = str(spec.get("Type", "String"))
        values[name] = value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else value
    return values


# --------------------------------------------------------------------------------------------------
# Creating the resources
# --------------------------------------------------------------------------------------------------


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _Creator:
    def __init__(self, resolver: Resolver, region: str, endpoint_url: str | None) -> None:
        session = boto3.session.Session(region_name=region)
        self.resolver = resolver
        self.region = region
        self.s3: S3Client = session.client("s3", endpoint_url=endpoint_url)
        self.sqs: SQSClient = session.client("sqs", endpoint_url=endpoint_url)
        self.dynamodb: DynamoDBClient = session.client("dynamodb", endpoint_url=endpoint_url)
        self.secretsmanager: SecretsManagerClient = session.client(
            "secretsmanager", endpoint_url=endpoint_url
        )
        self.cloudformation: CloudFormationClient = session.client(
            "cloudformation", endpoint_url=endpoint_url
        )

    # -- what moto's CloudFormation creates, and the settings it leaves out --------------------------

    def stack(self, template: Mapping[str, Any], stack_name: str) -> dict[str, str]:
        """Create (or reuse) the stack of the template's buckets, queues and tables in moto's
        CloudFormation (``create_stack`` through the endpoint: it resolves their intrinsics,
        conditions and dependency order); ``{logical id: physical id}``. Each gets its declared name
        (``BucketName``, ``QueueName``, ``TableName``) resolved with the local account id and region,
        else the local default ``<stack_name>-<LogicalId>``, lower-cased for buckets
        (CloudFormation's would have a random suffix, and a second run must find it again)."""
        resources = {}
        for logical_id, resource in template["Resources"].items():
            kind = resource.get("Type")
            if kind in STACK_TYPES:
                props = dict(resource.get("Properties", {}))
                default = self.resolver.default_name(logical_id)
                props.setdefault(_NAME_PROPERTY[kind], default.lower() if kind == BUCKET else default)
                sse = props.get("SSESpecification")
                if kind == TABLE and sse:  # moto reads it in the API's shape (Enabled), not SSEEnabled
                    props["SSESpecification"] = {**sse, "Enabled": sse.get("SSEEnabled")}
                resources[logical_id] = {**resource, "Properties": props}
        body = {key: template[key] for key in ("Parameters", "Conditions", "Mappings") if key in template}
        parameters: list[ParameterTypeDef] = [
            {"ParameterKey": name, "ParameterValue": _text(value)}
            for name, value in self.resolver.parameters.items()
        ]
        try:
            self.cloudformation.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps({**body, "Resources": resources}),
                Parameters=parameters,
            )
        except ClientError as error:
            if _error_code(error) != "AlreadyExistsException":
                raise
        (stack,) = self.cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise RuntimeError(
                f"stack {stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}"
            )
        summaries = self.cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        return {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in summaries
            if r["LogicalResourceId"] in resources
        }

    def bucket(self, name: str, props: Mapping[str, Any]) -> None:
        """Versioning, the public access block and the lifecycle rules: moto's CloudFormation applies
        only a bucket's encryption."""
        status = props.get("VersioningConfiguration", {}).get("Status")
        if status:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        public_access = props.get("PublicAccessBlockConfiguration")
        if public_access:
            self.s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=public_access)
        rules = props.get("LifecycleConfiguration", {}).get("Rules")
        if rules:
            self.s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": _lifecycle_rules(rules)}
            )

    def queue(self, physical_id: str) -> str:
        """The queue's URL at the endpoint (moto's CloudFormation gives an amazonaws.com one)."""
        return self.sqs.get_queue_url(QueueName=physical_id.rsplit("/", 1)[-1])["QueueUrl"]

    def table(self, name: str, props: Mapping[str, Any]) -> None:
        """Time to live and point-in-time recovery: moto's CloudFormation applies neither."""
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _flag(ttl.get("Enabled")):
            current = self.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                self.dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _flag(pitr.get("PointInTimeRecoveryEnabled")):
            self.dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )

    def resource_policies(self, template: Mapping[str, Any]) -> None:
        """Every ``AWS::S3::BucketPolicy`` and ``AWS::SQS::QueuePolicy``, given to the IAM gate
        (local/iam.py), which holds the functions to them. Not put in moto: moto's S3 applies a
        bucket policy's statements with conditions it cannot read as if they held (the TLS-only
        deny would refuse every request, the local endpoint being plain HTTP)."""
        from local.iam import GATE

        for logical_id, resource in template["Resources"].items():
            kind = resource.get("Type")
            if kind not in (BUCKET_POLICY, QUEUE_POLICY) or not self.resolver.included(resource):
                continue
            props = self.resolver.resolve(resource.get("Properties", {}))
            if kind == BUCKET_POLICY:
                targets = [f"arn:{PARTITION}:s3:::{props['Bucket']}"]
            else:
                targets = [
                    self.sqs.get_queue_attributes(QueueUrl=self.queue(str(url)), AttributeNames=["QueueArn"])[
                        "Attributes"
                    ]["QueueArn"]
                    for url in props.get("Queues", [])
                ]
            for arn in targets:
                GATE.set_resource_policy(arn, logical_id, props["PolicyDocument"])

    # -- Secrets Manager ----------------------------------------------------------------------------

    def secret(self, logical_id: str, props: Mapping[str, Any], value: str | None) -> str:
        """Create an ``AWS::SecretsManager::Secret`` (moto's CloudFormation has no support for them):
        ``value``, else its ``SecretString``, else ``generated_secret_string``. One already there is
        kept, unless ``value`` is given."""
        name = str(props.get("Name") or self.resolver.default_name(logical_id))
        explicit = value is not None
        if value is None:
            value = (
                str(props["SecretString"])
                if "SecretString" in props
                else self.generated_secret_string(props.get("GenerateSecretString", {}))
            )
        try:
            arn = self.secretsmanager.create_secret(
                Name=name, SecretString=value, Description=str(props.get("Description", ""))
            )["ARN"]
        except ClientError as error:
            if _error_code(error) != "ResourceExistsException":
                raise
            arn = self.secretsmanager.describe_secret(SecretId=name)["ARN"]
            if explicit:
                self.secretsmanager.put_secret_value(SecretId=arn, SecretString=value)
        return arn

    def generated_secret_string(self, spec: Mapping[str, Any]) -> str:
        """What Secrets Manager makes of a ``GenerateSecretString``: its own ``GetRandomPassword``."""
        length = int(spec.get("PasswordLength", 32))
        flags = {key: _flag(spec[key]) for key in _PASSWORD_FLAGS if key in spec}
        excluded = str(spec.get("ExcludeCharacters", ""))
        generated = self.secretsmanager.get_random_password(
            PasswordLength=length, ExcludeCharacters=excluded, **flags
        )["RandomPassword"]
        template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
        if template is None or key is None:
            return generated
        return json.dumps({**json.loads(str(template)), str(key): generated})


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _lifecycle_rules(rules: list[Mapping[str, Any]]) -> Any:
    return [_lifecycle_rule(rule) for rule in rules]


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API."""
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled")}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    out["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    elif "ExpiredObjectDeleteMarker" in rule:
        out["Expiration"] = {"ExpiredObjectDeleteMarker": _flag(rule["ExpiredObjectDeleteMarker"])}
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
        if "NewerNoncurrentVersions" in noncurrent:
            out["NoncurrentVersionExpiration"]["NewerNoncurrentVersions"] = int(
                noncurrent["NewerNoncurrentVersions"]
            )
    elif "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])
        }
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(abort["DaysAfterInitiation"])}
    transitions = rule.get("Transitions", [])
    if transitions:
        out["Transitions"] = [
            {"StorageClass": item["StorageClass"], "Days": int(item["TransitionInDays"])}
            for item in transitions
        ]
    return out


# --------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------


def _merged_function_properties(template: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals semantics: maps merge, lists concatenate, scalars are overridden."""
    merged: dict[str, Any] = dict(template.get("Globals", {}).get("Function", {}))
    for key, value in props.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge_maps(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


def _merge_maps(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge_maps(out[key], value)
        else:
            out[key] = value
    return out


def _environment(resolver: Resolver, variables: Mapping[str, Any]) -> dict[str, str]:
    resolved = resolver.resolve(dict(variables))
    return {name: _text(value) for name, value in resolved.items()}


def _event_spec(resolver: Resolver, name: str, event: Mapping[str, Any]) -> EventSpec:
    api = event.get("Properties", {}).get("RestApiId")
    stage = None
    if isinstance(api, dict) and isinstance(api.get("Ref"), str):  # the stage is the API's
        stage = resolver.resolve(resolver.resources[api["Ref"]].get("Properties", {}).get("StageName"))
    return EventSpec(name, str(event.get("Type", "")), resolver.resolve(event.get("Properties", {})), stage)


def _handler_path(code_uri: str, handler: str) -> tuple[str, str]:
    module, _, function = handler.rpartition(".")
    path = PurePosixPath(code_uri) / (module.replace(".", "/") + ".py")
    return str(path), function


def function_specs(resolver: Resolver, queue_urls: Mapping[str, str]) -> dict[str, FunctionSpec]:
    """Each function's events and settings, read from the template as written. Expanding
    ``AWS::Serverless::Function`` into Lambda, event-source-mapping and permission resources would
    only make the events harder to read back (moto's CloudFormation leaves out S3 notifications,
    ephemeral storage and on-failure destinations), and SAM's ``Globals`` merge is the one rule it
    would replace (``_merged_function_properties``). Their roles come from the template as SAM
    expands it (``_function_roles``): that is where SAM adds what AWS will enforce."""
    specs: dict[str, FunctionSpec] = {}
    template = resolver.template
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != FUNCTION or not resolver.included(resource):
            continue
        own = resource.get("Properties", {})
        props = _merged_function_properties(template, own)
        code_uri = str(props.get("CodeUri", ""))
        handler = str(props.get("Handler", ""))
        handler_path, handler_function = _handler_path(code_uri, handler)
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_uri=code_uri,
            handler=handler,
            handler_path=handler_path,
            handler_function=handler_function,
            runtime=str(props.get("Runtime", "")),
            timeout_s=int(resolver.resolve(props.get("Timeout", 3))),
            memory_mb=int(resolver.resolve(props.get("MemorySize", 128))),
            ephemeral_storage_mb=int(resolver.resolve(props.get("EphemeralStorage", {}).get("Size", 512))),
            env=_environment(resolver, own.get("Environment", {}).get("Variables", {})),
            events=tuple(_event_spec(resolver, name, event) for name, event in own.get("Events", {}).items()),
            on_failure_queue_url=_on_failure_queue(resolver, own, queue_urls),
        )
    return specs


def _on_failure_queue(
    resolver: Resolver, props: Mapping[str, Any], queue_urls: Mapping[str, str]
) -> str | None:
    invoke = props.get("EventInvokeConfig") or {}
    target = (invoke.get("DestinationConfig") or {}).get("OnFailure") or {}
    if target.get("Type") != "SQS" or "Destination" not in target:
        return None
    return queue_urls.get(_text(resolver.resolve(target["Destination"])))


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def create_local_stack(
    stack_name: str = "verifyfeed-local",
    template_path: str | os.PathLike[str] = DEFAULT_TEMPLATE,
    secrets: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    parameters: Mapping[str, str] | None = None,
    *,
    account_id: str = LOCAL_ACCOUNT_ID,
    endpoint_url: str | None = None,
) -> LocalStack:
    """Create (or reuse) every bucket, queue, table and secret of the template in moto: moto's
    CloudFormation creates the buckets, queues and tables (``_Creator.stack``), and what it leaves
    out is done here: a bucket's versioning, public access block and lifecycle, a table's TTL and
    point-in-time recovery, every secret, the bucket's and queues' policies (to the IAM gate).
    Idempotent: a stack already there is reused as it is, these settings applied again.

    ``secrets`` gives a secret's value by logical id (a JSON string, e.g.
    ``{"UpstreamCredentialsSecret": '{"apiId": "...", "apiKey": "..."}'}``); the others get a value
    generated as their ``GenerateSecretString`` says. ``parameters`` override parameter defaults.
    The endpoint is ``endpoint_url`` or, as for every boto3 client, ``AWS_ENDPOINT_URL``; with
    neither, nothing is created (this must never reach a real account by accident).
    """
    if not endpoint_url and not any(name.startswith("AWS_ENDPOINT_URL") for name in os.environ):
        raise RuntimeError("no endpoint: set AWS_ENDPOINT_URL (the moto server) or pass endpoint_url")
    template = load_template(template_path)
    resolver = Resolver(
        template, stack_name=stack_name, region=region, account_id=account_id, parameters=parameters
    )
    unknown = set(secrets or {}) - {
        logical_id for logical_id, res in template["Resources"].items() if res.get("Type") == SECRETSMANAGER
    }
    if unknown:
        raise KeyError(f"no secrets {sorted(unknown)} in the template")
    creator = _Creator(resolver, region, endpoint_url)
    # type -> logical id -> what Ref returns
    created: dict[str, dict[str, str]] = {kind: {} for kind in (*STACK_TYPES, SECRETSMANAGER)}
    for logical_id, physical_id in creator.stack(template, stack_name).items():
        kind = template["Resources"][logical_id]["Type"]
        created[kind][logical_id] = creator.queue(physical_id) if kind == QUEUE else physical_id
        resolver.refs[logical_id] = created[kind][logical_id]
    for logical_id, resource in template["Resources"].items():  # what moto's CloudFormation leaves out
        kind = resource.get("Type")
        if kind not in (BUCKET, TABLE, SECRETSMANAGER) or not resolver.included(resource):
            continue
        props: dict[str, Any] = resolver.resolve(resource.get("Properties", {}))
        if kind == BUCKET:
            creator.bucket(created[BUCKET][logical_id], props)
        elif kind == TABLE:
            creator.table(created[TABLE][logical_id], props)
        else:
            arn = creator.secret(logical_id, props, (secrets or {}).get(logical_id))
            created[SECRETSMANAGER][logical_id] = resolver.refs[logical_id] = arn
    buckets, queues, tables = created[BUCKET], created[QUEUE], created[TABLE]
    roles = _function_roles(template, resolver, region, stack_name, endpoint_url)
    creator.resource_policies(template)
    work_queue, dead_letter_queue = _work_and_dead_letter_queues(resolver, queues)
    queue_urls = {resolver.get_att(logical_id, "Arn"): url for logical_id, url in queues.items()}
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    return LocalStack(
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        bucket=next(iter(buckets.values()), ""),
        queue_url=work_queue,
        dlq_url=dead_letter_queue,
        tables=tables,
        secrets=created[SECRETSMANAGER],
        function_env=_environment(resolver, global_env),
        functions=function_specs(resolver, queue_urls),
        buckets=buckets,
        queues=queues,
        parameters={name: _text(value) for name, value in resolver.parameters.items()},
        roles=roles,
    )


def _function_roles(
    template: Mapping[str, Any], resolver: Resolver, region: str, stack_name: str, endpoint_url: str | None
) -> dict[str, FunctionRole]:
    """Each function's role as SAM expands the template, created in moto's IAM and assumed; its
    ARN becomes what ``!GetAtt <Role>.Arn`` resolves to (the bucket policy names the roles)."""
    from local.iam import expand_template, function_roles, provision_roles

    expanded = expand_template(template, resolver.parameters, region)
    specs = function_roles(expanded, resolver)
    roles = provision_roles(specs, stack_name, endpoint_url)
    for function, spec in specs.items():
        resolver.attributes[(spec.role, "Arn")] = roles[function].role_arn
        resolver.refs[spec.role] = roles[function].role_arn.rsplit("/", 1)[-1]
    return roles


def _work_and_dead_letter_queues(resolver: Resolver, queues: Mapping[str, str]) -> tuple[str, str]:
    """The queue with a redrive policy and the queue it redrives to."""
    by_arn = {resolver.get_att(logical_id, "Arn"): url for logical_id, url in queues.items()}
    for logical_id, url in queues.items():
        redrive = resolver.resources[logical_id].get("Properties", {}).get("RedrivePolicy")
        if redrive:
            return url, by_arn.get(str(resolver.resolve(redrive).get("deadLetterTargetArn")), "")
    return next(iter(queues.values()), ""), ""
