"""The local stack: the template's resources in moto, the upstream sandbox, and the four functions,
each run as its role (``runtime``), driven by their event sources as AWS drives them (``sources``:
S3 → splitter, SQS → uploader, EventBridge → poller; ``api``: API Gateway → callback).

Handlers run in this process (one module per function, loaded by path after the environment is
set, since the core reads its settings once), so one ``LocalRunner`` per process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from cheroot import wsgi

from local import api
from local.events import queue_arn_from_url
from local.iam import denial_lines, install_credentials, read_report
from local.lambda_context import LOCAL_REGION
from local.runtime import LocalFunction, function_role
from local.snapshot import JobView, Snapshot, Submitted, job_view
from local.sources import BucketNotifications, QueuePoller, run_schedule

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from local.resources import FunctionSpec, LocalStack
    from sandbox.server import SandboxHandle

log = logging.getLogger("local.runner")

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("lost-repair", "carrier-audit")


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


class LocalRunner:
    """Start with ``start()`` (or ``with LocalRunner(options) as runner``), then ``submit_file``."""

    def __init__(self, options: RunnerOptions | None = None) -> None:
        self.options = options or RunnerOptions()
        self.stack: LocalStack | None = None
        self.sandbox: SandboxHandle | None = None
        self.upstream_url = ""
        self.callback_url = ""
        self.functions: dict[str, LocalFunction] = {}
        self.submitted: list[Submitted] = []
        self._moto: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._callback_server: wsgi.Server | None = None
        self._saved_env: dict[str, str | None] = {}
        self._s3: S3Client | None = None
        self._sqs: SQSClient | None = None
        self._bucket: BucketNotifications | None = None  # S3 → splitter
        self._queue: QueuePoller | None = None  # SQS → uploader

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
                api.wsgi_app(self.handle_api_request),
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
        _, api_path, _ = api.api_route(callback[1] if callback else None, "")
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
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.stack.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"].get("QueueArn") or queue_arn_from_url(self.stack.queue_url)
        self._bucket = BucketNotifications(self.stack, self.functions["splitter"], self._stop, self.submitted)

        self._spawn("callback-api", self._callback_server.serve)
        self._queue = QueuePoller(self.stack.queue_url, queue_arn, self.functions["uploader"], self._stop)
        for n in range(self._queue.concurrency):
            self._spawn(f"sqs-poller-{n}", self._queue.run)
        rule = f"{opts.stack_name}-poll"
        poller = self.functions["poller"]
        self._spawn("schedule", run_schedule, poller, self._stop, opts.poll_seconds, opts.clock_now, rule)
        if opts.watch_bucket:
            self._spawn("s3-watch", self._bucket.watch, kind_of_key)

    def stop(self) -> None:
        self._stop.set()
        if self._bucket is not None:
            self._bucket.close()
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

    # ---- the event sources -------------------------------------------------------------------

    def submit_file(self, path: Path, kind: str | None = None) -> str:
        """Upload ``path`` under ``<kind>/<file name>`` and notify the splitter. Returns the key."""
        assert self._bucket is not None
        found = detect_kind(path, kind)  # a file the splitter would refuse is refused here
        return self._bucket.put(path, f"{kind_prefix(found)}{path.name}", found, shown(path))

    def handle_api_request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> api.Answer:
        """What API Gateway answers for one request: (status, headers, body)."""
        stage = self.stack.parameters.get("Stage", "dev") if self.stack else "dev"
        return api.handle(self.functions.get("callback"), stage, method, path, headers, body, source_ip)

    # ---- observing -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Where every submitted file's job stands, the audits, the sandbox ledger, the queues."""
        from verifyfeed.store.audits import AuditStore
        from verifyfeed.store.jobs import JobStore

        assert self.stack is not None
        jobs_table, audits_table = self._tables()
        store = JobStore(jobs_table)
        views = [job_view(sub, store) for sub in self.submitted]
        audits = AuditStore(audits_table, jobs_table).count_by_status()
        return Snapshot(
            jobs=views,
            audits=audits,
            ledger=self._ledger(views),
            queues=self._queue_depths(),
            invocations={role: fn.stats.as_dict() for role, fn in sorted(self.functions.items())},
            in_flight=self._bucket.in_flight if self._bucket else 0,
            batches_in_flight=self._queue.in_flight if self._queue else 0,
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


def kind_of_key(key: str) -> str:
    """The kind of an object by the prefix it was put under ("" when neither)."""
    return next((k for k in KINDS if key.startswith(kind_prefix(k))), "")


def detect_kind(path: Path, kind: str | None = None) -> str:
    """``lost-repair`` or ``carrier-audit`` by the splitter's own detection (``detect_path``)."""
    from verifyfeed.ingest.readers import detect_path
    from verifyfeed.models.records import JobKind

    return detect_path(path, JobKind(kind) if kind else None, sheet=os.environ.get("XLSX_SHEET", "")).value


def reports_prefix_of() -> str:
    return os.environ.get("REPORTS_PREFIX") or "reports/"


def kind_prefix(kind: str) -> str:
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
