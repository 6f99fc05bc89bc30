"""Integration fixtures: the template's resources in a moto server, the upstream sandbox, and
``Services`` wired to both over HTTP (nothing patched)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.resources import LocalStack, create_local_stack
from sandbox.server import SandboxConfig, SandboxHandle, start_sandbox
from tests import timeouts
from tests.rows import fake_id
from verifyfeed.clock import FixedClock
from verifyfeed.config import Settings
from verifyfeed.logic.reports import job_report_key
from verifyfeed.models.ids import batch_id, iso
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.records import Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services, build_services

ROOT = Path(__file__).resolve().parents[2]
API_ID = "it-api-id"
API_KEY = "it-api-key"
CALLBACK_SECRET = "it-callback-secret"
PREVIOUS_CALLBACK_SECRET = "it-callback-secret-old"
IDENTITY_PEPPER = "it-identity-pepper"
PREVIOUS_IDENTITY_PEPPER = "it-identity-pepper-old"
NOW = "2026-11-25T10:00:00+08:00"
DECISION_DELAY_S = 0.3  # the session sandbox decides an audit this long after it, on its manual clock


@pytest.fixture(scope="session")
def stack(moto_endpoint: str) -> LocalStack:
    return create_local_stack(
        stack_name="verifyfeed-it",
        template_path=ROOT / "template.yaml",
        secrets={
            "UpstreamCredentialsSecret": json.dumps({"apiId": API_ID, "apiKey": API_KEY}),
            "CallbackSigningSecret": json.dumps(
                {"current": CALLBACK_SECRET, "previous": PREVIOUS_CALLBACK_SECRET}
            ),
            "IdentityPepperSecret": json.dumps(
                {"current": IDENTITY_PEPPER, "previous": PREVIOUS_IDENTITY_PEPPER}
            ),
        },
        parameters={"UpstreamApiId": API_ID},  # as a deploy must: the callback's CALLBACK_API_ID
    )


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[SandboxHandle]:
    handle = start_sandbox(
        SandboxConfig(
            api_id=API_ID,
            api_key=API_KEY,
            callback_secret=CALLBACK_SECRET,
            decision_delay_s=DECISION_DELAY_S,
            clock_mode="manual",  # audits are decided when a test advances the clock, never by waiting
            # the handlers' clock starts at NOW when they are first imported and runs on, while this
            # manual clock stays where each test sets it: their gap is how long the session has run
            # (13 minutes on a loaded machine: past the 300 s the upstream allows), not a test's subject
            max_skew_s=24 * 3600,
        )
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox(sandbox_session: SandboxHandle) -> SandboxHandle:
    sandbox_session.reset()
    sandbox_session.set_clock(NOW)
    return sandbox_session


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(stack: LocalStack, sandbox_session: SandboxHandle) -> SettingsFactory:
    def factory(**overrides: str) -> Settings:
        env = {
            **stack.function_env,
            "UPSTREAM_BASE_URL": sandbox_session.url,
            **timeouts.GENEROUS,  # a test about a timeout asks for timeouts.SHORT
            "RETRY_BASE_SECONDS": "0",
            # tests share one stack and reuse ID numbers across files: the resend ledger is tested on
            # its own (test_resend_ledger.py); the demo and the stack tests run the template's default
            "RESEND_WINDOW": "off",
            **overrides,
        }
        return Settings.from_env(env)

    return factory


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``verifyfeed --local --stack <the test stack> ARGS``: (exit code, stdout, stderr)."""
    monkeypatch.setenv("CLOCK_NOW", "2026-11-25T10:05:00+08:00")
    monkeypatch.delenv("COLUMNS", raising=False)  # tables fit 80 columns, as on a pipe

    from verifyfeed_cli.app import main

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["--local", "--stack", stack.stack_name, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.fromisoformat(NOW))


@pytest.fixture
def services(make_settings: SettingsFactory, clock: FixedClock) -> Services:
    return build_services(make_settings(), clock)


def repair_records(count: int, start: int = 0) -> list[RepairRecord]:
    return [
        RepairRecord(
            name=f"测试{i}",
            idcode=sha256_hex(fake_id(start + i)),
            usedPhone=sha256_hex(f"138{start + i:08d}") if i % 2 else "",
            authCode=f"A{start + i:06d}",
        )
        for i in range(count)
    ]


def new_job(
    services: Services, batches: int = 1, kind: JobKind = JobKind.LOST_REPAIR, *, written_before: bool = False
) -> Job:
    """A job in ``uploading`` with ``batches`` queued batch records, as the splitter leaves it
    (``written_before``: as it left one before reports were per job, without a ``report_key``)."""
    job_id = uuid.uuid4().hex[:24]
    now = iso(services.clock.now())
    key = f"lost-repair/test-{job_id}.csv"
    job = Job(
        job_id=job_id,
        kind=kind,
        bucket=services.settings.ingest_bucket,
        key=key,
        status=JobStatus.SPLITTING,
        created_at=now,
        report_key="" if written_before else job_report_key(services.settings.reports_prefix, key, job_id),
    )
    assert services.jobs.create_job(job)
    for seq in range(1, batches + 1):
        services.jobs.put_batch_if_absent(
            Batch(
                job_id=job_id,
                seq=seq,
                batch_id=batch_id(job_id, seq),
                status=BatchStatus.QUEUED,
                record_count=1,
            )
        )
    from verifyfeed.models.records import JobCounts

    services.jobs.finish_split(
        job_id,
        JobCounts(rows_read=batches, rows_accepted=batches, batches_total=batches),
        services.clock.now(),
    )
    fresh = services.jobs.get_job(job_id)
    assert fresh is not None
    return fresh


def drain_queue(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        )
        messages = got.get("Messages", [])
        if not messages:
            return out
        for m in messages:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture(scope="session")
def handler_env(stack: LocalStack, sandbox_session: SandboxHandle) -> Iterator[dict[str, str]]:
    """The environment the template gives every function, pointed at the sandbox; set before any
    handler module is imported (handlers read their settings once, at import)."""
    own = {name: value for spec in stack.functions.values() for name, value in spec.env.items()}
    env = {
        **stack.function_env,
        **own,  # each function's own variables (CALLBACK_API_ID ...), as the local runner sets them
        "UPSTREAM_BASE_URL": sandbox_session.url,
        **timeouts.GENEROUS,
        "RETRY_BASE_SECONDS": "0",
        "CLOCK_NOW": NOW,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "VerifyFeedTest",
        "RESEND_WINDOW": "off",  # as in make_settings: the ledger has its own tests
        "POWERTOOLS_PARAMETERS_MAX_AGE": "0",  # each function's every secret read checked (local/iam.py)
    }
    with _functions_environment(env):
        _reimport_observability()  # before any handler imports it
        yield env


def _reimport_observability() -> None:
    """``verifyfeed.observability`` run under the functions' environment, as in Lambda: its Logger and
    Metrics read the service name (the metrics' ``service`` dimension), the namespace and the log
    level when they are created. A test that imported it earlier, outside that environment
    (tests/unit/test_pii.py), left them ``service_undefined`` and without that dimension, and every
    handler imported afterwards would use them."""
    import importlib
    import sys

    module = sys.modules.get("verifyfeed.observability")
    if module is not None:
        importlib.reload(module)


@contextmanager
def _functions_environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` and the core's cached settings and services dropped, for the
    block; then the environment as it was, and the caches dropped again."""
    import os

    from verifyfeed.config import get_settings
    from verifyfeed.services import get_services

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    get_services.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        get_services.cache_clear()


def _handler(stack: LocalStack, role: str, env: dict[str, str]) -> Any:
    """The function's handler, imported and called as its role (its AWS calls sign with the
    role's credentials and the IAM gate holds them to its policies: local/iam.py).

    A session fixture is made when a test first asks for it: the handler builds its Services at
    import, so it is imported under the session's environment ``env``, whatever the asking test set
    (the CLI fixture sets its own CLOCK_NOW, for one)."""
    from local.runtime import load_handler

    with _functions_environment(env):
        logical_id = f"{role.title()}Function"
        return load_handler(role, ROOT / "functions" / role / "app.py", role=stack.roles[logical_id])


@pytest.fixture(scope="session")
def callback_handler(handler_env: dict[str, str], stack: LocalStack) -> Any:
    return _handler(stack, "callback", handler_env)


@pytest.fixture(scope="session")
def uploader_handler(handler_env: dict[str, str], stack: LocalStack) -> Any:
    return _handler(stack, "uploader", handler_env)


@pytest.fixture(scope="session")
def splitter_handler(handler_env: dict[str, str], stack: LocalStack) -> Any:
    return _handler(stack, "splitter", handler_env)


@pytest.fixture(scope="session")
def poller_handler(handler_env: dict[str, str], stack: LocalStack) -> Any:
    return _handler(stack, "poller", handler_env)


def fresh_audits_table(template_table: str) -> str:
    """A new, empty audits table with the keys and indexes of ``template_table``: for a test whose
    outcome the session's shared audits (other tests' pending audits, their record ids) would sway."""
    ddb = boto3.client("dynamodb")
    spec = ddb.describe_table(TableName=template_table)["Table"]
    table = f"audits-{uuid.uuid4().hex[:10]}"
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=spec["AttributeDefinitions"],
        KeySchema=spec["KeySchema"],
        GlobalSecondaryIndexes=[
            {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
            for g in spec.get("GlobalSecondaryIndexes", [])
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return table
