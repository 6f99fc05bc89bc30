"""The per-message costs, in one child process:
``python -m bench.services [BATCHES CALLBACKS COLD_RUNS] OUT``.

A moto server (over HTTP, as in the tests) holds the template's resources and the upstream
sandbox runs with zero latency. Each round trip is timed where it leaves the process — botocore's
``Endpoint._send`` for AWS, the requests session's ``post`` for the upstream — so a figure splits
into our code and the time spent waiting on moto or the sandbox.

- uploader: ``LostRepairBatchMessage.model_validate_json`` of the queue body plus
  ``upload_batch`` for a 1000-record batch (get batch, lease, upstream call, settle, job
  counters), ``BATCHES`` times;
- callback: the real handler (``functions/callback/app.py``, loaded like the local runner does)
  on an API Gateway event that applies a signed result to a pending audit, ``CALLBACKS`` times
  after a few warm-up calls (the first one fetches the signing secret).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-25T10:00:00+08:00"  # not in the blackout
API_ID = "bench-api-id"
API_KEY = "bench-api-key"
CALLBACK_SECRET = "bench-callback-secret"


class Stopwatch:
    """Accumulates the time spent inside wrapped callables (the network round trips)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed

    def take(self) -> tuple[float, int]:
        taken = self.seconds, self.calls
        self.seconds, self.calls = 0.0, 0
        return taken


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


@contextmanager
def server(args: list[str], timeout_s: float = 30) -> Iterator[str]:
    """A server in its own process (as moto and the upstream are in reality: no shared GIL), on a
    port the kernel picks (``--port 0``): its first line of output says where it listens."""
    process = start_server(args)
    try:
        yield _listening_url(process, timeout_s)
    finally:
        stop_server(process)


def start_server(args: list[str]) -> subprocess.Popen[str]:
    """``python <args> --port 0`` in its own process; ``_listening_url`` reads where it listens."""
    return subprocess.Popen(
        [sys.executable, *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _listening_url(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The URL from the server's ``... listening on http://host:port`` line, read with a deadline."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                line = process.stdout.readline()
                if not line:
                    break  # the process closed its output: it exited
                if "listening on " in line:
                    return line.rsplit("listening on ", 1)[1].strip()
    raise RuntimeError(f"{process.args!r} did not say where it listens (exit code {process.poll()})")


@contextmanager
def local_aws() -> Iterator[str]:
    with server(["-m", "local.aws_server"]) as endpoint:
        point_aws_at(endpoint)
        yield endpoint


def point_aws_at(endpoint: str) -> None:
    """Every boto3 client made from now on talks to the local AWS at ``endpoint``."""
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )


@contextmanager
def upstream_sandbox() -> Iterator[str]:
    args = ["-m", "sandbox", "--api-id", API_ID, "--api-key", API_KEY]
    args += ["--callback-secret", CALLBACK_SECRET, "--clock-now", NOW, "--log-level", "WARNING"]
    with server(args) as url:
        yield url


def bench_uploader(batches: int, aws_watch: Stopwatch) -> dict[str, Any]:
    from verifyfeed.clock import FixedClock
    from verifyfeed.config import Settings
    from verifyfeed.logic.uploader import Delivery, upload_batch
    from verifyfeed.models.ids import batch_id, iso
    from verifyfeed.models.lost_repair import RepairRecord
    from verifyfeed.models.messages import LostRepairBatchMessage
    from verifyfeed.models.records import Batch, BatchStatus, Job, JobCounts, JobKind, JobStatus
    from verifyfeed.rules.hashing import sha256_hex
    from verifyfeed.services import build_services

    services = build_services(Settings.from_env(), FixedClock(datetime.fromisoformat(NOW)))
    upstream_watch = Stopwatch()
    session = services.upstream._session
    session.post = upstream_watch.wrap(session.post)  # type: ignore[method-assign]

    job_id = uuid.uuid4().hex[:24]
    now = iso(services.clock.now())
    services.jobs.create_job(
        Job(
            job_id=job_id,
            kind=JobKind.LOST_REPAIR,
            bucket=services.settings.ingest_bucket,
            key=f"lost-repair/bench-{job_id}.csv",
            status=JobStatus.SPLITTING,
            created_at=now,
        )
    )
    bodies: list[str] = []
    for seq in range(1, batches + 1):
        records = [
            RepairRecord(
                name=f"测试{seq}{i}",
                idcode=sha256_hex(f"id-{seq}-{i}"),
                usedPhone=sha256_hex(f"138{seq:04d}{i:04d}") if i % 2 else "",
                authCode=f"B{seq:04d}{i:04d}",
            )
            for i in range(1000)
        ]
        bid = batch_id(job_id, seq)
        services.jobs.put_batch_if_absent(
            Batch(job_id=job_id, seq=seq, batch_id=bid, status=BatchStatus.QUEUED, record_count=1000)
        )
        message = LostRepairBatchMessage(job_id=job_id, batch_id=bid, seq=seq, records=records)
        bodies.append(message.model_dump_json(exclude_none=True))
    services.jobs.finish_split(
        job_id,
        JobCounts(rows_read=1000 * batches, rows_accepted=1000 * batches, batches_total=batches),
        services.clock.now(),
    )

    totals: list[float] = []
    upstream: list[float] = []
    dynamodb: list[float] = []
    calls: list[int] = []
    aws_watch.take()
    for body in bodies:
        started = time.perf_counter()
        message = LostRepairBatchMessage.model_validate_json(body)
        status = upload_batch(services, message, Delivery())
        totals.append(time.perf_counter() - started)
        assert status == "succeeded", status
        upstream.append(upstream_watch.take()[0])
        seconds, count = aws_watch.take()
        dynamodb.append(seconds)
        calls.append(count)
    ours = [t - u - d for t, u, d in zip(totals, upstream, dynamodb, strict=True)]
    ms = 1000
    return {
        "batches": batches,
        "records_per_batch": 1000,
        "total_ms_p50": statistics.median(totals) * ms,
        "upstream_http_ms_p50": statistics.median(upstream) * ms,
        "aws_calls_ms_p50": statistics.median(dynamodb) * ms,
        "aws_calls_per_batch": statistics.median(calls),
        "ours_ms_p50": statistics.median(ours) * ms,
        "ours_ms_max": max(ours) * ms,
        "overhead_ms_p50": statistics.median([t - u for t, u in zip(totals, upstream, strict=True)]) * ms,
    }


def bench_callback(invocations: int, aws_watch: Stopwatch, function_env: dict[str, str]) -> dict[str, Any]:
    from local.events import api_gateway_proxy_event
    from local.lambda_context import new_context
    from local.runtime import load_handler
    from verifyfeed.clock import FixedClock
    from verifyfeed.config import Settings
    from verifyfeed.services import build_services
    from verifyfeed.upstream.signing import sign_body

    os.environ.update(function_env)
    services = build_services(Settings.from_env(), FixedClock(datetime.fromisoformat(NOW)))
    warmup = 5
    record_ids = range(7_000_000, 7_000_000 + warmup + invocations)
    for record_id in record_ids:
        _pending_audit(services, record_id)

    handler = load_handler("callback", ROOT / "functions" / "callback" / "app.py")
    latencies: list[float] = []
    waits: list[float] = []
    first_ms = 0.0
    aws_watch.take()
    for n, record_id in enumerate(record_ids):
        raw = json.dumps(
            {"apiId": API_ID, "serviceName": "auditCarrierAudit", "id": record_id, "status": 1},
            separators=(",", ":"),
        ).encode()
        headers = {"sign": sign_body(raw, CALLBACK_SECRET), "Content-Type": "application/json"}
        event = api_gateway_proxy_event("POST", "/callbacks/carrier-audit", headers, raw)
        context = new_context("callback", 10, 512)
        started = time.perf_counter()
        reply = handler(event, context)
        elapsed = time.perf_counter() - started
        assert reply["statusCode"] == 200, reply
        wait, _ = aws_watch.take()
        if n == 0:
            first_ms = elapsed * 1000
        if n >= warmup:
            latencies.append(elapsed)
            waits.append(wait)
    ours = [t - w for t, w in zip(latencies, waits, strict=True)]
    ms = 1000
    return {
        "invocations": invocations,
        "first_invocation_ms": first_ms,
        "p50_ms": percentile(latencies, 50) * ms,
        "p99_ms": percentile(latencies, 99) * ms,
        "aws_calls_ms_p50": percentile(waits, 50) * ms,
        "ours_ms_p50": percentile(ours, 50) * ms,
        "ours_ms_p99": percentile(ours, 99) * ms,
    }


COLD_MODES = {
    # as deployed: inside Lambda (LAMBDA_TASK_ROOT) with active tracing, so Powertools' Tracer
    # loads the X-Ray SDK and patches botocore and requests
    "lambda": {"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "callback"},
    # local runs and tests: tracing disabled
    "local": {"POWERTOOLS_TRACE_DISABLED": "1"},
}


def bench_cold_start(runs: int, function_env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The callback's import and first invocation, each run in a fresh interpreter."""
    from local.events import api_gateway_proxy_event
    from verifyfeed.clock import FixedClock
    from verifyfeed.config import Settings
    from verifyfeed.services import build_services
    from verifyfeed.upstream.signing import sign_body

    services = build_services(Settings.from_env(), FixedClock(datetime.fromisoformat(NOW)))
    record_ids = iter(range(8_000_000, 9_000_000))
    result: dict[str, Any] = {}
    for mode, extra in COLD_MODES.items():
        imports: list[float] = []
        firsts: list[float] = []
        cpus: list[float] = []
        for _ in range(runs):
            record_id = next(record_ids)
            _pending_audit(services, record_id)
            raw = json.dumps(
                {"apiId": API_ID, "serviceName": "auditCarrierAudit", "id": record_id, "status": 1},
                separators=(",", ":"),
            ).encode()
            headers = {"sign": sign_body(raw, CALLBACK_SECRET), "Content-Type": "application/json"}
            event_path = workdir / "callback-event.json"
            event_path.write_text(
                json.dumps(api_gateway_proxy_event("POST", "/callbacks/carrier-audit", headers, raw))
            )
            out = workdir / "cold.json"
            env = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_TRACE_DISABLED"}
            env.update(function_env)
            env.pop("POWERTOOLS_TRACE_DISABLED", None)
            env.update(extra)
            subprocess.run(
                [sys.executable, "-m", "bench.cold_import", "callback", str(out), str(event_path)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            run = json.loads(out.read_text())
            assert run.get("first_status") == 200, run
            imports.append(run["import_ms"])
            cpus.append(run["import_cpu_ms"])
            firsts.append(run["first_invocation_ms"])
        floors: list[float] = []
        for _ in range(runs):
            out = workdir / "floor.json"
            subprocess.run(
                [sys.executable, "-m", "bench.cold_import", "floor", str(out)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            floors.append(json.loads(out.read_text())["import_ms"])
        result[mode] = {
            "runs": runs,
            "import_ms_median": statistics.median(imports),
            "import_ms_min": min(imports),
            "import_cpu_ms_median": statistics.median(cpus),
            "first_invocation_ms_median": statistics.median(firsts),
            "libraries_floor_ms_median": statistics.median(floors),
        }
    return result


def _pending_audit(services: Any, record_id: int) -> None:
    from verifyfeed.models.ids import iso
    from verifyfeed.models.records import Audit, AuditStatus, Job, JobKind, JobStatus

    now = services.clock.now()
    job_id = "bench-" + uuid.uuid4().hex[:8]
    services.jobs.create_job(  # a settlement counts on its job, which must be there
        Job(
            job_id=job_id,
            kind=JobKind.CARRIER_AUDIT,
            bucket=services.settings.ingest_bucket,
            key=f"carrier-audit/bench-{job_id}.csv",
            status=JobStatus.UPLOADING,
            created_at=iso(now),
        )
    )
    audit = Audit(
        audit_key=uuid.uuid4().hex,
        job_id=job_id,
        row=2,
        usage="2",
        owner_name_masked="张*",
        id_card_masked="110*************2X",
        id_card_digest="0" * 64,
        phone_masked="138******78",
        status=AuditStatus.SUBMITTING,
    )
    _, reserved = services.audits.reserve(audit, now)
    services.audits.settle_submission(reserved, AuditStatus.PENDING, now, record_id=record_id)


def main(argv: list[str]) -> int:
    *numbers, out_path = argv
    batches, callbacks, cold_runs = [int(n) for n in numbers] if numbers else [30, 500, 7]
    out = Path(out_path)
    with local_aws(), upstream_sandbox() as upstream_url:
        import botocore.endpoint

        from local.resources import create_local_stack

        aws_watch = Stopwatch()
        endpoint = botocore.endpoint.Endpoint
        setattr(endpoint, "_send", aws_watch.wrap(getattr(endpoint, "_send")))  # noqa: B009, B010
        stack = create_local_stack(
            stack_name="verifyfeed-bench",
            template_path=ROOT / "template.yaml",
            secrets={
                "UpstreamCredentialsSecret": json.dumps({"apiId": API_ID, "apiKey": API_KEY}),
                "CallbackSigningSecret": json.dumps({"current": CALLBACK_SECRET}),
            },
        )
        env = {
            **stack.function_env,
            "UPSTREAM_BASE_URL": upstream_url,
            "CLOCK_NOW": NOW,
            "RETRY_BASE_SECONDS": "0",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "VerifyFeedBench",
        }
        os.environ.update(env)
        result = {
            "uploader": bench_uploader(batches, aws_watch),
            "callback": bench_callback(callbacks, aws_watch, env),
        }
        with tempfile.TemporaryDirectory(prefix="verifyfeed-bench-") as workdir:
            result["callback_cold"] = bench_cold_start(cold_runs, stack.function_env, Path(workdir))
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
