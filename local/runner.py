"""The local stack: the template's resources in moto, the upstream sandbox, and the four functions
driven the way their AWS event sources drive them.

- S3 → splitter: the file is put in the ingest bucket and an ``ObjectCreated:Put`` notification is
  invoked asynchronously (two retries on error, as Lambda does for S3).
- SQS → uploader: up to ``MaximumConcurrency`` pollers receive ``BatchSize`` messages, invoke the
  uploader and delete exactly the messages not reported in ``batchItemFailures``; when the
  invocation fails (raises, times out, or answers malformed failures) nothing is deleted. Redelivery
  and the move to the dead-letter queue after ``maxReceiveCount`` are SQS's own (moto's).
- API Gateway → callback: a local HTTP server turns requests into REST API proxy events.
- EventBridge → poller: a timer every ``poll_seconds``.

Handlers run in this process (one module per function, loaded by path after the environment is
set, since the core reads its settings once), so one ``LocalRunner`` per process.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import logging
import mimetypes
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import responses
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import boto3
from cheroot import wsgi

from local.events import (
    api_gateway_proxy_event,
    queue_arn_from_url,
    s3_put_event,
    s3_sequencer,
    scheduled_event,
    sqs_event,
)
from local.iam import denial_lines, install_credentials, invoking_as, read_report
from local.lambda_context import LOCAL_REGION, LambdaContext, new_context
from verifyfeed.models.records import JobCounts  # a model only: reads no settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from local.iam import FunctionRole
    from local.resources import FunctionSpec, LocalStack
    from sandbox.server import SandboxHandle
    from verifyfeed.logic.reports import ReportPaths
    from verifyfeed.store.jobs import JobStore

log = logging.getLogger("local.runner")

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("lost-repair", "carrier-audit")
S3_ASYNC_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice
API_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

Handler = Callable[[dict[str, Any], LambdaContext], Any]


class InvocationError(Exception):
    """The function raised, timed out, or returned something its trigger cannot use."""


# ---- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerOptions:
    upstream_url: str = ""  # empty: start the sandbox
    clock_now: str = ""
    callback_host: str = "127.0.0.1"
    callback_port: int = 8787  # 0: an ephemeral port
    aws_port: int = 0  # the moto server's port (0: an ephemeral port); unused with $AWS_ENDPOINT_URL
    sandbox_port: int = 0  # the sandbox's port (0: an ephemeral port)
    # notify the splitter of every object put in the ingest bucket by anyone (``make up``: the CLI's
    # ``verifyfeed drop``), as S3 does, not only of the files given to ``submit_file``
    watch_bucket: bool = False
    callback_secret: str = "local-callback-secret"  # noqa: S105 - the documented local default
    identity_pepper: str = "local-identity-pepper"  # the pepper of stored digests (test data only)
    api_id: str = "local-api-id"
    api_key: str = "local-api-key"
    poll_seconds: float = 3.0
    decision_delay_s: float = 2.0
    stack_name: str = "verifyfeed-local"
    template_path: Path = ROOT / "template.yaml"
    # applied last to every function's environment (e.g. {"BATCH_MAX_RECORDS": "5"})
    env_overrides: Mapping[str, str] = field(default_factory=dict)


# ---- functions ---------------------------------------------------------------------------------


@dataclass
class InvocationStats:
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"invocations": self.invocations, "errors": self.errors, "timeouts": self.timeouts}


def failure_record(
    function_arn: str, event: dict[str, Any], error: Exception, attempts: int
) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }


class LocalFunction:
    """One function and its execution environments.

    As in Lambda, an environment (here: its own copy of the handler module, so module-level state
    such as a Powertools ``BatchProcessor`` or resolver is not shared) runs one invocation at a time;
    concurrent invocations get another environment, loaded on demand (a cold start). The core
    package itself is imported once and shared by every environment of every function.
    """

    MAX_ENVIRONMENTS = 10

    def __init__(
        self,
        logical_id: str,
        role: str,
        function_name: str,
        path: Path,
        spec: FunctionSpec,
        monotonic: Callable[[], float] = time.monotonic,
        identity: FunctionRole | None = None,
    ) -> None:
        self.logical_id = logical_id
        self.identity = identity  # its execution role: every AWS call it makes signs with it
        self._monotonic = monotonic  # the clock of the invocations' deadlines (injectable in tests)
        self.role = role
        self.function_name = function_name
        self.path = path
        self.spec = spec
        self.timeout_s = float(spec.timeout_s)
        self.memory_mb = int(spec.memory_mb)
        self.stats = InvocationStats()
        self._attribute = spec.handler_function or "lambda_handler"
        self._idle: list[Handler] = []
        self._environments = 0
        self._cond = threading.Condition()

    def warm_up(self) -> None:
        """Load one environment now, so a broken handler fails the start rather than an event."""
        self._release(self._new_environment())

    def _new_environment(self) -> Handler:
        with self._cond:
            self._environments += 1
            number = self._environments
        # the stack's function name: another stack's (or a test's) copy of the handler in this
        # process keeps its own module
        name = self.function_name
        try:
            return load_handler(
                name if number == 1 else f"{name}_{number}", self.path, self._attribute, role=self.identity
            )
        except BaseException:
            with self._cond:
                self._environments -= 1
                self._cond.notify()
            raise

    def _acquire(self) -> Handler:
        with self._cond:
            while not self._idle and self._environments >= self.MAX_ENVIRONMENTS:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
        return self._new_environment()

    def _release(self, handler: Handler) -> None:
        with self._cond:
            self._idle.append(handler)
            self._cond.notify()

    def invoke(self, event: dict[str, Any]) -> Any:
        try:
            handler = self._acquire()
        except Exception as exc:
            log.exception("%s could not be initialised", self.role)
            raise InvocationError(f"{self.role}: init error {type(exc).__name__}") from exc
        context = new_context(self.function_name, self.timeout_s, self.memory_mb, monotonic=self._monotonic)
        try:
            result = handler(event, context)
        except Exception as exc:
            self._count(errors=1)
            log.exception("%s failed (request %s)", self.role, context.aws_request_id)
            raise InvocationError(f"{self.role}: {type(exc).__name__}") from exc
        finally:
            self._release(handler)
        if context.timed_out():
            # Lambda would have stopped it at the deadline: whatever it returned never arrives
            self._count(timeouts=1)
            log.error(
                "%s ran past its %ss timeout (request %s)", self.role, self.timeout_s, context.aws_request_id
            )
            raise InvocationError(f"{self.role}: Task timed out after {self.timeout_s:.2f} seconds")
        self._count()
        return result

    def _count(self, errors: int = 0, timeouts: int = 0) -> None:
        with self._cond:
            self.stats.invocations += 1
            self.stats.errors += errors
            self.stats.timeouts += timeouts


def load_handler(
    module_suffix: str, path: Path, attribute: str = "lambda_handler", role: FunctionRole | None = None
) -> Handler:
    """Import ``functions/<name>/app.py`` as ``verifyfeed_fn_<module_suffix>`` (all four are ``app``).

    With ``role``, the import (the function's init) and every call run as that role: the AWS calls
    they make sign with its credentials and the IAM gate holds them to its policies (local/iam.py)."""
    if role is not None:
        with invoking_as(role):
            handler = load_handler(module_suffix, path, attribute)

        @functools.wraps(handler)  # its module and name, as the handler's own (tests read them)
        def as_role(event: dict[str, Any], context: LambdaContext) -> Any:
            with invoking_as(role):
                return handler(event, context)

        return as_role
    module_name = f"verifyfeed_fn_{module_suffix}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)  # as in Lambda, the function's own folder is importable
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        with suppress(ValueError):
            sys.path.remove(folder)
    return cast(Handler, getattr(module, attribute))


def batch_item_failures(result: Any, message_ids: Collection[str]) -> set[str]:
    """The message ids to keep, per Lambda's rules for ``ReportBatchItemFailures``.

    A null/empty response or an empty/null list means all succeeded; a malformed response, an empty
    or null ``itemIdentifier`` or one not in the batch fails the whole batch.
    """
    if result is None or result == {} or result == "":
        return set()
    if not isinstance(result, dict):
        raise InvocationError("invalid partial batch response")
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise InvocationError("invalid partial batch response")
    keep: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            raise InvocationError(f"invalid itemIdentifier {identifier!r} in batchItemFailures")
        keep.add(identifier)
    return keep


# ---- file kinds --------------------------------------------------------------------------------


def detect_file_kind(path: Path, kind: str | None = None) -> str:
    """``lost-repair`` or ``carrier-audit``, by the splitter's own detection (``detect_file``: what the
    file is, then its header row; title rows skipped). A header that does not tell is read as the
    kind of its folder (``samples/lost-repair/``) when it is in one. Raises ``FileRejected`` — what
    the splitter would refuse the file for, ``header.kind_unknown`` included — before any upload."""
    from verifyfeed.ingest.errors import FileRejected
    from verifyfeed.ingest.readers import detect_file
    from verifyfeed.models.records import JobKind

    def detect(as_kind: str | None) -> str:
        with path.open("rb") as stream:
            found = detect_file(
                stream,
                path.name,
                JobKind(as_kind) if as_kind else None,
                sheet=os.environ.get("XLSX_SHEET", ""),
            )
        return found.value

    try:
        return detect(kind)
    except FileRejected as exc:
        if kind is None and exc.code == "header.kind_unknown" and path.parent.name in KINDS:
            return detect(path.parent.name)
        raise


# ---- the runner --------------------------------------------------------------------------------


@dataclass
class JobView:
    file: str
    key: str
    kind: str
    job_id: str = ""
    status: str = "missing"
    reason: str = ""
    counts: JobCounts = field(default_factory=JobCounts)  # the job's, as the splitter and uploader keep them
    records_in_succeeded_batches: int = 0
    report_key: str = ""
    # lost repair: each answered batch's serial number and whole answer envelope (its scalars)
    upstream_answers: list[dict[str, Any]] = field(default_factory=list)

    def report_paths(self, reports_prefix: str) -> ReportPaths:
        """Where the job's reports are (``ReportPaths.for_job``: its ``report_key``, or the key a job
        written before reports were per job had)."""
        from verifyfeed.logic.reports import ReportPaths

        return ReportPaths(self.report_key or f"{reports_prefix}{self.key}.json")

    def problem(self) -> str | None:
        """Why the job is not settled and accounted for, by the rules of the CLI's ``drop --wait``."""
        from verifyfeed_cli.advice import SETTLED_JOB_STATUSES

        c = self.counts
        settled = c.batches_settled + c.batches_deferred
        if self.status == "missing":
            return f"{self.file}: no job was recorded for s3 key {self.key}"
        if self.status not in SETTLED_JOB_STATUSES:
            return f"{self.file}: job still {self.status} ({settled}/{c.batches_total} batches settled)"
        if c.rows_accepted + c.rows_rejected != c.rows_read:
            return (
                f"{self.file}: rows do not add up: {c.rows_accepted} accepted + "
                f"{c.rows_rejected} rejected != {c.rows_read} read"
            )
        if self.status not in ("rejected", "dry_run") and settled != c.batches_total:
            return f"{self.file}: batches do not add up for a {self.status} job"
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "status": self.status,
            **self.counts.model_dump(),
            "upstream_answers": self.upstream_answers,
        }


@dataclass
class Snapshot:
    jobs: list[JobView]
    audits: dict[str, int]
    ledger: dict[str, Any] | None
    queues: dict[str, int]
    invocations: dict[str, dict[str, int]]
    in_flight: int  # S3 notifications being handled
    batches_in_flight: int = 0  # SQS batches received and not yet deleted or given up
    iam_denials: list[str] = field(default_factory=list)  # calls a function's role does not allow

    def problems(self) -> list[str]:
        found = list(self.iam_denials)  # first: a missing grant explains everything after it
        found += [p for p in (job.problem() for job in self.jobs) if p]
        if self.in_flight:
            found.append(f"{self.in_flight} S3 notification(s) still being processed")
        if self.batches_in_flight:
            found.append(f"{self.batches_in_flight} SQS batch(es) still being processed")
        from verifyfeed_cli.advice import OPEN_AUDIT_STATUSES

        open_audits = {s: self.audits.get(s, 0) for s in OPEN_AUDIT_STATUSES if self.audits.get(s, 0)}
        if open_audits:
            found.append("audits not decided yet: " + ", ".join(f"{n} {s}" for s, n in open_audits.items()))
        return found

    @property
    def settled(self) -> bool:
        return not self.problems()


@dataclass
class _Submitted:
    file: str
    key: str
    kind: str
    job_id: str  # as the splitter derives it from the notification


def _job_view(sub: _Submitted, store: JobStore) -> JobView:
    view = JobView(file=sub.file, key=sub.key, kind=sub.kind, job_id=sub.job_id)
    job = store.get_job(sub.job_id)
    if job is None:
        return view
    view.kind, view.status, view.reason, view.report_key = (
        str(job.kind),
        str(job.status),
        job.reason,
        job.report_key,
    )
    view.counts = JobCounts.model_validate(job.model_dump(include=set(JobCounts.model_fields)))
    if view.kind == "lost-repair":
        batches = list(store.batches(job.job_id))
        view.records_in_succeeded_batches = sum(
            b.record_count for b in batches if str(b.status) == "succeeded"
        )
        view.upstream_answers = [
            {
                "batch_id": b.batch_id,
                "status": str(b.status),
                "serial_no": b.serial_no,
                "envelope": json.loads(b.upstream_envelope),
            }
            for b in batches
            if b.upstream_envelope
        ]
    return view


class LocalRunner:
    """Start with ``start()`` (or ``with LocalRunner(options) as runner``), then ``submit_file``."""

    def __init__(self, options: RunnerOptions | None = None) -> None:
        self.options = options or RunnerOptions()
        self.stack: LocalStack | None = None
        self.sandbox: SandboxHandle | None = None
        self.upstream_url = ""
        self.callback_url = ""
        self.functions: dict[str, LocalFunction] = {}
        self.submitted: list[_Submitted] = []
        self._moto: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._callback_server: wsgi.Server | None = None
        self._async_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="s3-notify")
        self._async_futures: list[Future[None]] = []
        self._batches_in_flight = 0
        self._counter_lock = threading.Lock()
        self._saved_env: dict[str, str | None] = {}
        self._s3: S3Client | None = None
        self._sqs: SQSClient | None = None
        self._queue_arn = ""
        self._seen_versions: set[str] = set()  # objects the splitter was notified of
        self._submit_lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalRunner:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        opts = self.options
        self._start_aws()
        # bind first: the sandbox needs the callback URL; requests wait until the callback is loaded
        try:
            self._callback_server = wsgi.Server(
                (opts.callback_host, opts.callback_port),
                callback_api(self),
                numthreads=32,
                request_queue_size=1024,
            )  # a deep backlog: API Gateway does not refuse connections under a burst
            self._callback_server.prepare()
        except OSError as exc:
            raise RuntimeError(
                f"cannot listen for callbacks on {opts.callback_host}:{opts.callback_port} ({exc.strerror});"
                " set CALLBACK_PORT to a free port, or 0 for any"
            ) from exc

        from local.resources import create_local_stack

        self.stack = create_local_stack(
            stack_name=opts.stack_name,
            template_path=str(opts.template_path),
            secrets={
                "UpstreamCredentialsSecret": json.dumps({"apiId": opts.api_id, "apiKey": opts.api_key}),
                "CallbackSigningSecret": json.dumps({"current": opts.callback_secret}),
                "IdentityPepperSecret": json.dumps({"current": opts.identity_pepper}),
            },
            # as a deploy must (the template's rule): the callback checks callbacks against it and
            # may not read the credentials
            parameters={"UpstreamApiId": opts.api_id},
        )
        callback = self._spec_for("callback")
        _, api_path, _ = _api_route(callback[1] if callback else None, "")
        host, port = self._callback_server.bind_addr[:2]
        self.callback_url = f"http://{host}:{port}{api_path}"

        if opts.upstream_url:
            self.upstream_url = opts.upstream_url.rstrip("/")
        else:
            from sandbox.server import SandboxConfig, start_sandbox

            self.sandbox = start_sandbox(
                SandboxConfig(
                    api_id=opts.api_id,
                    api_key=opts.api_key,
                    callback_url=self.callback_url,
                    callback_secret=opts.callback_secret,
                    decision_delay_s=opts.decision_delay_s,
                    clock_now=opts.clock_now,
                    port=opts.sandbox_port,
                )
            )
            self.upstream_url = self.sandbox.url
        log.info("upstream at %s, callbacks at %s", self.upstream_url, self.callback_url)

        self._set_env(self.function_environment())
        install_credentials()  # the core's clients sign as the invoking function (local/iam.py)
        self._load_functions()

        self._s3 = boto3.client("s3")
        self._sqs = boto3.client("sqs")
        self._queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.stack.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"].get("QueueArn") or queue_arn_from_url(self.stack.queue_url)

        self._spawn("callback-api", self._callback_server.serve)
        uploader = self.functions.get("uploader")
        if uploader is not None:
            scaling = _sqs_source(uploader.spec).get("ScalingConfig", {})
            for n in range(int(scaling.get("MaximumConcurrency", 2))):
                self._spawn(f"sqs-poller-{n}", self._poll_queue, uploader)
        poller = self.functions.get("poller")
        if poller is not None:
            self._spawn("schedule", self._run_schedule, poller)
        if opts.watch_bucket:
            self._spawn("s3-watch", self._watch_bucket)

    def stop(self) -> None:
        self._stop.set()
        for future in self._async_futures:
            with suppress(Exception):
                future.result(timeout=30)
        self._async_pool.shutdown(wait=False, cancel_futures=True)
        if self._callback_server is not None:
            self._callback_server.stop()
            self._callback_server = None
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._clear_core_caches()  # what comes next in this process reads its own settings again

    def _start_aws(self) -> None:
        defaults = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
        }
        env = {k: v for k, v in defaults.items() if not os.environ.get(k)}
        if not os.environ.get("AWS_ENDPOINT_URL"):
            from local.aws_server import MotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._moto = MotoServer("127.0.0.1", self.options.aws_port)
            try:
                self._moto.start()
            except OSError as exc:
                self._moto = None
                raise RuntimeError(
                    f"cannot listen for AWS (moto) on 127.0.0.1:{self.options.aws_port} ({exc.strerror})"
                ) from exc
            host, port = self._moto.get_host_and_port()
            env["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
            log.info("moto server at %s", env["AWS_ENDPOINT_URL"])
        self._set_env(env)

    def _set_env(self, env: Mapping[str, str]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def function_environment(self) -> dict[str, str]:
        """What every function sees: the template's Globals, then the local stand-ins."""
        assert self.stack is not None
        env = dict(self.stack.function_env)
        # one process hosts every function, so their own variables share one environment
        own: dict[str, str] = {}
        for logical_id, spec in self.stack.functions.items():
            for name, value in spec.env.items():
                if own.get(name, value) != value:
                    log.warning(
                        "%s sets %s differently from another function; the last one wins", logical_id, name
                    )
                own[name] = value
        env.update(own)
        env.update(
            UPSTREAM_BASE_URL=self.upstream_url,
            POWERTOOLS_TRACE_DISABLED="1",
            POWERTOOLS_METRICS_NAMESPACE=env.get("POWERTOOLS_METRICS_NAMESPACE") or "VerifyFeedLocal",
            POWERTOOLS_SERVICE_NAME=env.get("POWERTOOLS_SERVICE_NAME") or "verifyfeed",
            # pending audits whose callback got lost are polled after seconds, not minutes
            POLL_PENDING_AGE_SECONDS="10",
            # every secret read is a call the IAM gate checks: one process holds the four functions,
            # and a value one of them cached would serve another (local/iam.py)
            POWERTOOLS_PARAMETERS_MAX_AGE="0",
        )
        if self.options.clock_now:
            env["CLOCK_NOW"] = self.options.clock_now
        env.update(self.options.env_overrides)
        return env

    def _spec_for(self, role: str) -> tuple[str, FunctionSpec] | None:
        assert self.stack is not None
        for logical_id, spec in self.stack.functions.items():
            if function_role(spec) == role:
                return logical_id, spec
        return None

    def _load_functions(self) -> None:
        assert self.stack is not None
        self._clear_core_caches()
        for logical_id, spec in self.stack.functions.items():
            role = function_role(spec)
            function = LocalFunction(
                logical_id,
                role,
                f"{self.options.stack_name}-{logical_id}",
                ROOT / spec.handler_path,
                spec,
                identity=self.stack.roles.get(logical_id),
            )
            function.warm_up()
            self.functions[role] = function
        missing = {"splitter", "uploader", "callback", "poller"} - self.functions.keys()
        if missing:
            raise RuntimeError(f"template.yaml has no function for {', '.join(sorted(missing))}")

    @staticmethod
    def _clear_core_caches() -> None:
        """Settings and clients cached by an earlier runner in this process would point elsewhere."""
        for module_name, names in (
            ("verifyfeed.config", ("get_settings",)),
            ("verifyfeed.services", ("get_services",)),
            ("verifyfeed.aws", ("_client",)),
        ):
            module = sys.modules.get(module_name)
            for name in names:
                cached = getattr(module, name, None) if module else None
                if cached is not None and hasattr(cached, "cache_clear"):
                    cached.cache_clear()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ---- S3 → splitter -------------------------------------------------------------------------

    def submit_file(self, path: Path, kind: str | None = None) -> str:
        """Upload ``path`` under ``<kind>/<file name>`` and notify the splitter. Returns the key."""
        assert self.stack is not None and self._s3 is not None
        kind = detect_file_kind(path, kind)  # a file the splitter would refuse is refused here
        key = f"{_kind_prefix(kind)}{path.name}"
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        bucket = self.stack.bucket
        with self._submit_lock:  # the bucket watcher must not notify of this object too
            put = self._s3.put_object(
                Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type
            )
            self._seen_versions.add(put.get("VersionId") or put["ETag"])
        head = self._s3.head_object(Bucket=bucket, Key=key)
        return self._notify_splitter(key, kind, shown(path), head)

    def _notify_splitter(self, key: str, kind: str, display: str, head: Mapping[str, Any]) -> str:
        """The ``ObjectCreated:Put`` notification of an object just put, to the splitter (async)."""
        assert self.stack is not None
        bucket = self.stack.bucket
        event = s3_put_event(
            bucket=bucket,
            key=key,
            size=head["ContentLength"],
            etag=head["ETag"],
            version_id=head.get("VersionId"),
            sequencer=s3_sequencer(),
        )
        from verifyfeed.logic.splitter import DroppedObject
        from verifyfeed.pii import mask_object_key

        job_id = DroppedObject.from_event_record(event["Records"][0]).job_id
        self.submitted.append(_Submitted(file=display, key=key, kind=kind, job_id=job_id))
        splitter = self.functions["splitter"]
        if _notifies(splitter.spec, key):
            self._async_futures.append(self._async_pool.submit(self._invoke_async, splitter, event))
        else:
            log.warning(
                "no S3 trigger of the splitter matches %s (job %s): no notification",
                mask_object_key(key),
                job_id,
            )
        log.info("uploaded a %s file as job %s", kind, job_id)  # not its name: names carry people's
        return key

    def _watch_bucket(self) -> None:
        """S3 → splitter for objects put by others: every new version under a trigger's prefix."""
        assert self.stack is not None
        s3: S3Client = boto3.client("s3")
        splitter = self.functions["splitter"]
        prefixes = sorted({t.key_filter("prefix") for t in splitter.spec.s3_triggers}) or [""]
        while not self._stop.wait(0.5):
            for prefix in prefixes:
                try:
                    pages = s3.get_paginator("list_object_versions").paginate(
                        Bucket=self.stack.bucket, Prefix=prefix
                    )
                    versions = [v for page in pages for v in page.get("Versions", [])]
                except Exception:
                    if not self._stop.is_set():
                        log.exception("list_object_versions failed")
                    continue
                for version in versions:
                    version_id, key = version.get("VersionId", ""), version.get("Key", "")
                    with self._submit_lock:
                        if (version_id or version.get("ETag", "")) in self._seen_versions:
                            continue
                        self._seen_versions.add(version_id or version.get("ETag", ""))
                    kind = next((k for k in KINDS if key.startswith(_kind_prefix(k))), "")
                    try:
                        if version_id and version_id != "null":
                            head = s3.head_object(Bucket=self.stack.bucket, Key=key, VersionId=version_id)
                        else:
                            head = s3.head_object(Bucket=self.stack.bucket, Key=key)
                    except Exception:
                        log.exception("head_object failed for a new object")
                        continue
                    self._notify_splitter(key, kind, key, head)

    def _invoke_async(self, function: LocalFunction, event: dict[str, Any]) -> None:
        attempts = 1 + S3_ASYNC_RETRIES
        for attempt in range(attempts):
            if self._stop.is_set():
                return
            try:
                function.invoke(event)
                return
            except InvocationError as exc:
                log.warning("%s (attempt %d of %d)", exc, attempt + 1, attempts)
                if attempt + 1 == attempts:
                    self._record_failure(function, event, exc, attempts)
                else:
                    self._stop.wait(attempt + 1)  # Lambda waits minutes; a demo cannot

    def _record_failure(
        self, function: LocalFunction, event: dict[str, Any], error: Exception, attempts: int
    ) -> None:
        """As Lambda does with an on-failure destination: the event and the error, on its queue."""
        url = function.spec.on_failure_queue_url
        if url is None:
            log.error(
                "%s: event dropped after %d attempts (no on-failure destination)", function.role, attempts
            )
            return
        assert self.stack is not None
        where = LambdaContext(
            function.function_name, region=self.stack.region, account_id=self.stack.account_id
        )
        record = failure_record(where.invoked_function_arn, event, error, attempts)
        # Lambda sends to the destination with the function's role
        _as(function).client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))
        log.error("%s: %d attempts failed; the event is on the on-failure queue", function.role, attempts)

    # ---- SQS → uploader ------------------------------------------------------------------------

    def _poll_queue(self, uploader: LocalFunction) -> None:
        assert self.stack is not None
        # a client per thread; the event source mapping polls with the function's role
        sqs: SQSClient = _as(uploader).client("sqs")
        source = _sqs_source(uploader.spec)
        batch_size = max(1, min(10, int(source.get("BatchSize", 10))))
        partial = "ReportBatchItemFailures" in source.get("FunctionResponseTypes", [])
        while not self._stop.is_set():
            try:
                received = sqs.receive_message(
                    QueueUrl=self.stack.queue_url,
                    MaxNumberOfMessages=batch_size,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception:
                if not self._stop.is_set():
                    log.exception("receive_message failed")
                    self._stop.wait(1)
                continue
            messages = received.get("Messages", [])
            if not messages:
                continue
            with self._counter_lock:
                self._batches_in_flight += 1
            try:
                self._deliver_batch(sqs, uploader, messages, partial)
            finally:
                with self._counter_lock:
                    self._batches_in_flight -= 1

    def _deliver_batch(
        self, sqs: SQSClient, uploader: LocalFunction, messages: list[MessageTypeDef], partial: bool
    ) -> None:
        assert self.stack is not None
        event = sqs_event(messages, queue_arn=self._queue_arn)
        ids = {m["MessageId"] for m in messages}
        received = ", ".join(
            f"{m['MessageId'][:8]}(#{m.get('Attributes', {}).get('ApproximateReceiveCount', '?')})"
            for m in messages
        )
        try:
            result = uploader.invoke(event)
            keep = batch_item_failures(result, ids) if partial else set()
        except InvocationError as exc:
            log.warning("uploader failed on %s; nothing deleted, all redelivered: %s", received, exc)
            return
        done = [m for m in messages if m["MessageId"] not in keep]
        log.info("uploader handled %s; %d deleted, %d left for redelivery", received, len(done), len(keep))
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            try:
                reply = sqs.delete_message_batch(
                    QueueUrl=self.stack.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
                    ],
                )
            except Exception:  # e.g. the role may not delete (the IAM gate says why): redelivered
                log.exception("delete_message_batch failed; the messages will be redelivered")
                continue
            for failed in reply.get("Failed", []):
                log.warning("delete_message_batch: %s", failed.get("Message", failed.get("Code")))

    # ---- EventBridge → poller ------------------------------------------------------------------

    def _run_schedule(self, poller: LocalFunction) -> None:
        from verifyfeed.clock import clock_from_setting

        clock = clock_from_setting(self.options.clock_now)
        while not self._stop.wait(self.options.poll_seconds):
            with suppress(InvocationError):  # logged by invoke; EventBridge just fires again
                poller.invoke(scheduled_event(clock.now(), rule_name=f"{self.options.stack_name}-poll"))

    # ---- API Gateway → callback ----------------------------------------------------------------

    def handle_api_request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """What API Gateway answers for one request: (status, headers, body)."""
        callback = self.functions.get("callback")
        if callback is None:
            return _api_error(503, "Service Unavailable")
        api_method, api_path, stage = _api_route(
            callback.spec, self.stack.parameters.get("Stage", "dev") if self.stack else "dev"
        )
        route = urlsplit(path).path
        if route.startswith(f"/{stage}/"):
            route = route.removeprefix(f"/{stage}")
        if route.rstrip("/") != api_path.rstrip("/") or method != api_method:
            return _api_error(403, "Missing Authentication Token")
        query = urlsplit(path).query
        event = api_gateway_proxy_event(
            method,
            route + (f"?{query}" if query else ""),
            headers,
            body,
            stage=stage,
            resource=api_path,
            source_ip=source_ip,
        )
        try:
            result = callback.invoke(event)
        except InvocationError:
            return _api_error(502, "Internal server error")
        return _proxy_response(result)

    # ---- observing -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Where every submitted file's job stands, the audits, the sandbox ledger, the queues."""
        from verifyfeed.store.audits import AuditStore
        from verifyfeed.store.jobs import JobStore

        assert self.stack is not None
        jobs_table, audits_table = self._tables()
        store = JobStore(jobs_table)
        views = [_job_view(sub, store) for sub in self.submitted]
        audits = AuditStore(audits_table, jobs_table).count_by_status()
        in_flight = sum(1 for f in self._async_futures if not f.done())
        return Snapshot(
            jobs=views,
            audits=audits,
            ledger=self._ledger(views),
            queues=self._queue_depths(),
            invocations={role: fn.stats.as_dict() for role, fn in sorted(self.functions.items())},
            in_flight=in_flight,
            batches_in_flight=self._batches_in_flight,
            iam_denials=self.iam_denials(),
        )

    def iam_report(self) -> dict[str, list[dict[str, str]]]:
        """What the IAM gate allowed and refused this stack's functions (local/iam.py): the calls
        as (function, action, resource) and the denials."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        mine = {role.role_arn for role in self.stack.roles.values()} if self.stack else set()
        try:
            report = read_report(endpoint) if endpoint else {}
        except (OSError, ValueError) as exc:  # not our moto server: nothing to read
            log.warning("cannot read the IAM gate's record at %s: %s", endpoint, exc)
            report = {}
        return {
            part: [entry for entry in report.get(part, []) if entry.get("role_arn") in mine]
            for part in ("calls", "denials")
        }

    def iam_denials(self) -> list[str]:
        """What the IAM gate refused this stack's functions since the start."""
        return denial_lines(self.iam_report())

    def wait_until_settled(
        self, timeout_s: float, on_progress: Callable[[Snapshot], None] | None = None
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        while True:
            snap = self.snapshot()
            if snap.settled or snap.iam_denials or time.monotonic() >= deadline:  # a denial is final
                return snap
            if on_progress is not None:
                on_progress(snap)
            self._stop.wait(1.0)

    def _tables(self) -> tuple[str, str]:
        env = os.environ
        return env.get("JOBS_TABLE", ""), env.get("AUDITS_TABLE", "")

    def _ledger(self, views: list[JobView]) -> dict[str, Any] | None:
        if self.sandbox is None:
            return None
        accepted = self.sandbox.accepted_records()
        counts = self.sandbox.record_counts()
        lost_repair = [v for v in views if v.kind == "lost-repair"]
        in_succeeded = sum(v.records_in_succeeded_batches for v in lost_repair)
        return {
            "sandbox_accepted_records": len(accepted),
            "rows_accepted": sum(v.counts.rows_accepted for v in lost_repair),
            "records_in_succeeded_batches": in_succeeded,
            "match": len(accepted) == in_succeeded,
            "idcodes_received_twice": sum(1 for n in counts.values() if n > 1),
            "requests": len(self.sandbox.ledger()),
        }

    def _queue_depths(self) -> dict[str, int]:
        assert self.stack is not None and self._sqs is not None
        depths: dict[str, int] = {}
        for name, url in (("work", self.stack.queue_url), ("dlq", self.stack.dlq_url)):
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[name] = int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
                attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
            )
        return depths

    def download_reports(self, views: list[JobView], into: Path) -> list[tuple[str, Path]]:
        """Copy each job's reports (summary, rejected rows, header facts) out of the (soon gone)
        bucket. Returns (s3 uri, local path) pairs."""
        assert self.stack is not None and self._s3 is not None
        reports_prefix = reports_prefix_of()
        copied: list[tuple[str, Path]] = []
        for view in views:
            for key in view.report_paths(reports_prefix).all():
                target = into / key.removeprefix(reports_prefix)
                try:
                    body = self._s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()
                except self._s3.exceptions.NoSuchKey:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                copied.append((f"s3://{self.stack.bucket}/{key}", target))
        return copied


# ---- API Gateway plumbing ----------------------------------------------------------------------


def _api_error(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode()


def _proxy_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy integration response, checked as API Gateway checks it (else 502)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode", 200), int):
        log.error("callback returned a malformed proxy response")
        return _api_error(502, "Internal server error")
    headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(v)) for v in values)
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(str(raw))
    else:
        body = str(raw).encode("utf-8")
    return int(result.get("statusCode", 200)), headers, body


def callback_api(runner: LocalRunner) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """API Gateway in front of the callback, as a WSGI app (served by cheroot, as moto is: it reads
    chunked bodies and keeps connections alive); 413 past ``API_MAX_BODY_BYTES``. WSGI
    upper-cases header names and keeps a repeated header's last value (as the proxy event's
    ``headers`` does); the callback reads them case-insensitively."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers = [
            (name.removeprefix("HTTP_").replace("_", "-").title(), str(value))
            for name, value in environ.items()
            if name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")
        ]
        body = environ["wsgi.input"].read(API_MAX_BODY_BYTES + 1)
        if len(body) > API_MAX_BODY_BYTES:  # API Gateway's answer (cheroot's own 413 is not its JSON)
            status, out, payload = _api_error(413, "Request Too Long")  # cheroot then closes the connection
        else:
            status, out, payload = runner.handle_api_request(
                environ["REQUEST_METHOD"],
                environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"),
                headers,
                body,
                environ.get("REMOTE_ADDR", ""),
            )
        kept = [
            (k, v) for k, v in out if k.lower() not in ("content-length", "connection", "transfer-encoding")
        ]
        start_response(
            f"{status} {responses.get(status, 'Unknown')}", [*kept, ("Content-Length", str(len(payload)))]
        )
        return [payload]

    return app


# ---- reading FunctionSpec ----------------------------------------------------------------------

_ROLE_OF_TRIGGER = {"S3": "splitter", "SQS": "uploader", "Api": "callback", "Schedule": "poller"}


def function_role(spec: FunctionSpec) -> str:
    """What drives the function (its first event source), else the folder it lives in."""
    for event in spec.events:
        if event.type in _ROLE_OF_TRIGGER:
            return _ROLE_OF_TRIGGER[event.type]
    return Path(spec.handler_path).parent.name


def _notifies(spec: FunctionSpec, key: str) -> bool:
    """Whether one of the function's S3 triggers (prefix/suffix filters) fires for ``key``."""
    triggers = spec.s3_triggers
    return not triggers or any(
        key.startswith(t.key_filter("prefix")) and key.endswith(t.key_filter("suffix")) for t in triggers
    )


def _as(function: LocalFunction) -> boto3.session.Session:
    """A session for what the Lambda service does as ``function``: with its role's credentials."""
    role = function.identity
    if role is None:
        return boto3.session.Session()
    return boto3.session.Session(
        aws_access_key_id=role.access_key, aws_secret_access_key=role.secret_key, aws_session_token=role.token
    )


def _sqs_source(spec: FunctionSpec) -> dict[str, Any]:
    return spec.sqs.properties if spec.sqs else {}


def _api_route(spec: FunctionSpec | None, stage: str) -> tuple[str, str, str]:
    """The callback's route: (method, path, stage)."""
    route = spec.api_routes[0] if spec and spec.api_routes else None
    props = route.properties if route else {}
    path = str(props.get("Path") or "/callbacks/carrier-audit")
    return str(props.get("Method") or "POST").upper(), path, str((route.stage if route else None) or stage)


def reports_prefix_of() -> str:
    return os.environ.get("REPORTS_PREFIX") or "reports/"


def _kind_prefix(kind: str) -> str:
    prefix_var = "LOST_REPAIR_PREFIX" if kind == "lost-repair" else "CARRIER_AUDIT_PREFIX"
    return os.environ.get(prefix_var) or f"{kind}/"


def shown(path: Path) -> str:
    """``path`` relative to the project when it is in it (as the demo and ``make up`` print paths)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def iter_input_files(file_option: str) -> Iterator[Path]:
    """FILE: one file, or every file in a folder; empty: every sample."""
    roots = [Path(file_option).expanduser()] if file_option else [ROOT / "samples" / kind for kind in KINDS]
    for root in roots:
        if root.is_dir():
            yield from sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            yield root
