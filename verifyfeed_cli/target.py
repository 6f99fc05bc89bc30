"""Which stack the CLI talks to, and the physical names of its resources.

``choose`` picks local or deployed, never mixing them up and never guessing (a deployed stack, which
can pay, is never a default); ``resolve`` fills in the names; ``local_state`` finds the stack
``make up`` left running, through its ``.local-state/stack.json`` (in ``$VERIFYFEED_STATE_DIR``,
else in the current folder or one above it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_sqs import SQSClient

DEFAULT_LOCAL_STACK = "verifyfeed-local"  # what `make demo` creates
LOCAL_ACCOUNT_ID = "123456789012"  # moto's account (local/resources.py LOCAL_ACCOUNT_ID)
OUTPUTS = {
    "bucket": "IngestBucketName",
    "work_queue_url": "WorkQueueUrl",
    "dlq_url": "DeadLetterQueueUrl",
    "jobs_table": "JobsTableName",
    "audits_table": "AuditsTableName",
}
# outputs a stack deployed before they existed may lack: empty when absent
OPTIONAL_OUTPUTS = {
    "splitter_failures_url": "SplitterFailureQueueUrl",
    "identity_pepper_secret": "IdentityPepperSecretArn",
}


class TargetError(Exception):
    """The stack or one of its resources cannot be found (exit code 3)."""


@dataclass(frozen=True)
class Target:
    stack: str
    local: bool
    region: str
    bucket: str = ""
    work_queue_url: str = ""
    dlq_url: str = ""
    jobs_table: str = ""
    audits_table: str = ""
    splitter_failures_url: str = ""  # the splitter's on-failure queue ("" for an older stack)
    identity_pepper_secret: str = ""  # the identity pepper's secret (redrive --unknown-audits)
    blackout_start_day: int = 27
    blackout_resume_day: int = 1
    price_per_record: float | None = None  # the stack's PricePerRecord (None: not set)

    @property
    def complete(self) -> bool:
        return all(getattr(self, field) for field in OUTPUTS)

    def describe(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "mode": "local" if self.local else "deployed",
            "region": self.region,
            "bucket": self.bucket,
            "work_queue_url": self.work_queue_url,
            "dlq_url": self.dlq_url,
            "jobs_table": self.jobs_table,
            "audits_table": self.audits_table,
            "splitter_failures_url": self.splitter_failures_url,
        }


def local_state(cwd: Path | None = None) -> dict[str, Any] | None:
    """The ``stack.json`` of the stack ``make up`` runs, if one is found and its process lives; its
    path is under ``"state_file"``."""
    folder = os.environ.get("VERIFYFEED_STATE_DIR", "").strip()
    start = (cwd or Path.cwd()).resolve()
    candidates = (
        [Path(folder) / "stack.json"]
        if folder
        else [p / ".local-state" / "stack.json" for p in (start, *start.parents)]
    )
    for path in candidates:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and running(state.get("pid")):
            return {**state, "state_file": str(path)}
    return None


def stack_clock_now(state: dict[str, Any] | None) -> str:
    """The instant the functions of the stack ``make up`` runs take as now, when it started at
    ``CLOCK_NOW`` (``make up CLOCK_NOW=...``: that instant, running on since); "" for the system clock."""
    if not state or not state.get("clock_now"):
        return ""
    ran = datetime.now(UTC) - datetime.fromisoformat(str(state["started_at"]))
    return (datetime.fromisoformat(str(state["clock_now"])) + ran).isoformat()


@dataclass(frozen=True)
class Choice:
    """Which stack, and why: ``local`` with the running stack's ``state`` (if any), or deployed."""

    local: bool
    stack: str
    state: dict[str, Any] | None = None
    implicit: bool = False  # chosen because no stack was named: say so on stderr


def choose(
    *,
    local: bool,
    endpoint: str,
    env_endpoint: str,
    stack: str,
    env_stack: str,
    running: dict[str, Any] | None,
) -> Choice:
    """The target: ``--local`` or an endpoint (``--endpoint-url``, ``$AWS_ENDPOINT_URL``: said) is
    local; a stack named (``--stack``, ``$VERIFYFEED_STACK``) is deployed; no stack named is the
    local stack ``make up`` runs (said), and an error when none runs: a deployed stack, which can
    pay, is never a default."""
    given = bool(local or endpoint)  # on the command line: nothing to say
    endpoint = endpoint or env_endpoint
    if local or endpoint:
        if not endpoint and running is None:
            raise TargetError(
                "no local stack is running: `make up` starts one (or give --endpoint-url for another)"
            )
        state = None if endpoint else running
        named = stack or env_stack or (str(state["stack"]) if state else DEFAULT_LOCAL_STACK)
        return Choice(local=True, stack=named, state=state, implicit=not given)
    if stack or env_stack:
        return Choice(local=False, stack=stack or env_stack)
    if running is not None:
        return Choice(local=True, stack=str(running["stack"]), state=running, implicit=True)
    raise TargetError(
        "no stack named: --stack NAME (or $VERIFYFEED_STACK) for a deployed stack, --local for the local "
        "one (`make up` starts it; none is running)"
    )


def running(pid: object) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


def resolve(
    base: Target,
    overrides: dict[str, str],
    cloudformation: CloudFormationClient | None,
    sqs: SQSClient,
) -> Target:
    """Fill in the names: explicit overrides win (``--bucket``, ``--jobs-table``, ``--audits-table``,
    ``--queue-url``, ``--dlq-url``; when all five are given, nothing is looked up), then the stack
    (its outputs, or the local naming rule)."""
    given = _named(base, overrides)
    if given.complete:
        return given
    found = _local(base, sqs) if base.local else _deployed(base, cloudformation)
    return _named(found, overrides)


def _named(target: Target, names: dict[str, str]) -> Target:
    """``target`` with the non-empty ``names`` (bucket, work_queue_url, ...) in place of its own."""
    return replace(
        target,
        bucket=names.get("bucket") or target.bucket,
        work_queue_url=names.get("work_queue_url") or target.work_queue_url,
        dlq_url=names.get("dlq_url") or target.dlq_url,
        jobs_table=names.get("jobs_table") or target.jobs_table,
        audits_table=names.get("audits_table") or target.audits_table,
        splitter_failures_url=names.get("splitter_failures_url") or target.splitter_failures_url,
        identity_pepper_secret=names.get("identity_pepper_secret") or target.identity_pepper_secret,
    )


def _local(base: Target, sqs: SQSClient) -> Target:
    """The names ``local/resources.py`` gives after the template: the bucket's explicit
    ``BucketName`` (``<stack>-ingest-<account>-<region>``), every other resource
    ``<stack>-<LogicalId>`` (a test checks they agree). The CLI never creates anything."""
    stack = base.stack
    return replace(
        base,
        bucket=f"{stack}-ingest-{LOCAL_ACCOUNT_ID}-{base.region}",
        work_queue_url=_queue_url(sqs, f"{stack}-WorkQueue", stack),
        dlq_url=_queue_url(sqs, f"{stack}-DeadLetterQueue", stack),
        splitter_failures_url=_queue_url(sqs, f"{stack}-SplitterFailureQueue", stack, required=False),
        identity_pepper_secret=f"{stack}-IdentityPepperSecret",  # local/resources.py's naming rule
        jobs_table=f"{stack}-JobsTable",
        audits_table=f"{stack}-AuditsTable",
        blackout_start_day=_day("BLACKOUT_START_DAY", base.blackout_start_day),
        blackout_resume_day=_day("BLACKOUT_RESUME_DAY", base.blackout_resume_day),
        price_per_record=_price(os.environ.get("PRICE_PER_RECORD", "")),
    )


def _queue_url(sqs: SQSClient, name: str, stack: str, *, required: bool = True) -> str:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if ("NonExistentQueue" in code or code == "QueueDoesNotExist") and not required:
            return ""
        if "NonExistentQueue" in code or code == "QueueDoesNotExist":
            raise TargetError(
                f"no queue {name} at the local endpoint: is `make demo` (or the moto server it used) "
                f"running, and is {stack!r} the stack it created? (--stack)"
            ) from exc
        raise


def _day(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    return int(value) if value.isdigit() else default


def _price(text: str) -> float | None:
    """A price per record as the stack's ``PricePerRecord`` gives it; blank (or not a number): not known."""
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None


def _deployed(base: Target, cloudformation: CloudFormationClient | None) -> Target:
    """The CloudFormation stack described with the default boto3 credentials: the names from its
    outputs, the blackout days and the price per record from its parameters."""
    assert cloudformation is not None
    try:
        stacks = cloudformation.describe_stacks(StackName=base.stack)["Stacks"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise TargetError(
                f"no CloudFormation stack {base.stack!r} in {base.region} (--stack, $VERIFYFEED_STACK; "
                "--local for the local stack)"
            ) from exc
        raise
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])}
    missing = [output for output in OUTPUTS.values() if not outputs.get(output)]
    if missing:
        raise TargetError(
            f"stack {base.stack!r} has no output {', '.join(missing)}: is it a verifyfeed stack?"
        )
    names = {field: outputs[output] for field, output in OUTPUTS.items()}
    names.update({field: outputs.get(output, "") for field, output in OPTIONAL_OUTPUTS.items()})
    found = _named(base, names)
    return replace(
        found,
        blackout_start_day=int(parameters.get("BlackoutStartDay") or base.blackout_start_day),
        blackout_resume_day=int(parameters.get("BlackoutResumeDay") or base.blackout_resume_day),
        price_per_record=_price(parameters.get("PricePerRecord", "")),
    )
