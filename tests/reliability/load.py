"""Load through the local stack (``make demo``'s machinery, in this process): a lost-repair file of
``--rows`` rows dropped in S3 (splitter → SQS → uploader → sandbox, with upstream 429s injected:
"too many requests" is the refusal that is safe to retry automatically),
then ``--callbacks`` audits submitted through the stack and decided by that many concurrent signed
callbacks for distinct audits, and as many again for one and the same audit.

    PYTHONPATH=layers/core/python:. .venv/bin/python -m tests.reliability.load --rows 200000 --callbacks 1000

Writes one JSON object of figures and checks (``--out``, else stdout); exit code 0 when every check
holds. The invariants: every accepted row upstream exactly once, nothing else upstream, every row
accounted for, nothing dead-lettered, no invocation error; every callback answered with the
documented status, every distinct audit moved exactly once, the shared audit moved exactly once
(the callbacks that agree with the winner 200, the others 409); no plaintext ID or phone number
in the logs, the tables or the reports. Callback clients retry a 5xx or a refused connection, as
the upstream's sender does, so each callback's final answer is deterministic however busy the
machine is; how many retries it took is a figure, not a check.

DynamoDB is moto: its conditional writes and transactions are not atomic under concurrent
requests (a transaction is applied on a snapshot and rolled back by restoring it), so writes
through the shared client are serialised here, which is the isolation DynamoDB itself provides.
Reads, upstream calls and everything else run concurrently.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests import timeouts
from tests.reliability.support import (
    PII,
    capture_logs,
    cn_name,
    find_pii,
    mobile,
    person_id,
    scan_objects,
    scan_tables,
)

AUDIT_BASE = 5_000_000
API_ID = "load-api-id"
SECRET = "load-callback-secret"
AUDIT_HEADER = [
    "usage",
    "name",
    "idCard",
    "phone",
    "carLicensePlate",
    "drivingLicenseFilename",
    "attachmentFileUrls",
]


def repair_rows(count: int) -> tuple[list[list[str]], set[str], int]:
    """(rows, idcodes that must reach upstream, rows to be rejected): 2% bad check digits, 1% repeats."""
    from verifyfeed.rules.hashing import sha256_hex

    rows: list[list[str]] = []
    accepted: set[str] = set()
    rejected = 0
    for n in range(count):
        pid = person_id(n)
        if n % 100 in (37, 71):
            pid = pid[:17] + ("0" if pid[17] != "0" else "1")
            rejected += 1
        elif n % 100 == 99 and n > 0:
            pid = rows[-1][1]  # the same person as the row before
            rejected += 1
        else:
            accepted.add(sha256_hex(pid))
        rows.append([cn_name(n), pid, mobile(n) if n % 3 else "", f"L{n:08d}"])
    return rows, accepted, rejected


def audit_rows(count: int) -> list[list[str]]:
    return [
        [
            "2",
            "张三",
            person_id(AUDIT_BASE + i),
            mobile(AUDIT_BASE + i),
            f"京A{i % 100000:05d}",
            "dl.jpg",
            "a.jpg",
        ]
        for i in range(count)
    ]


def register_identities(rows: int, callbacks: int) -> None:
    """Fill ``PII`` with every plaintext value a run of this size uses (for scanning its output)."""
    for n in range(rows):
        person_id(n)
        mobile(n)
    for i in range(callbacks + 1):
        person_id(AUDIT_BASE + i)
        mobile(AUDIT_BASE + i)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


@contextmanager
def isolated_writes() -> Iterator[None]:
    """One lock around the shared DynamoDB client's writes: moto's isolation = DynamoDB's."""
    from verifyfeed import aws

    client = aws.dynamodb()
    lock = threading.Lock()
    names = ("put_item", "update_item", "delete_item", "transact_write_items")
    for name in names:
        original = getattr(client, name)

        def locked(__original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(**kwargs)

        setattr(client, name, locked)
    try:
        yield
    finally:
        for name in names:
            delattr(client, name)


def wait_for(what: str, check: Any, timeout_s: float, every_s: float = 0.05) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(every_s)  # polling a condition with a deadline
    return time.perf_counter() - started


def fire(url: str, bodies: list[bytes], clients: int) -> dict[str, Any]:
    """POST every body, signed, from ``clients`` threads of another process (so the clients do not
    share the server's interpreter lock): {statuses, latencies, seconds, connection_retries}."""
    import base64
    import subprocess

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([base64.b64encode(b).decode() for b in bodies], f)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.reliability.load",
                "--fire",
                url,
                "--bodies",
                f.name,
                "--clients",
                str(clients),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=1_800,
        )
    finally:
        os.unlink(f.name)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _client(url: str, bodies_file: Path, clients: int) -> dict[str, Any]:
    """The other side of ``fire``: keep-alive sessions, all threads starting together; a refused or
    reset connection or a 5xx answer is retried with backoff, as a callback sender retries (up to
    20 times): the final answer is what counts."""
    import base64
    import random

    import requests

    from verifyfeed.upstream.signing import sign_body

    bodies = [base64.b64decode(b) for b in json.loads(bodies_file.read_text())]
    local = threading.local()
    start = threading.Barrier(min(clients, len(bodies)), timeout=120)
    retries = Counter[str]()

    def post(body: bytes) -> tuple[int, float]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            start.wait()  # every client thread starts together
        headers = {"sign": sign_body(body, SECRET), "Content-Type": "application/json"}
        began = time.perf_counter()
        status = -1
        for attempt in range(20):
            try:
                status = session.post(url, data=body, headers=headers, timeout=120).status_code
                if status < 500:
                    return status, time.perf_counter() - began
                retries["server_error"] += 1
            except requests.ConnectionError:
                retries["connection"] += 1
                session = local.session = requests.Session()
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))  # a sender's backoff, not a wait
        return status, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(post, bodies))
    return {
        "statuses": [s for s, _ in results],
        "latencies": [t for _, t in results],
        "seconds": time.perf_counter() - began,
        "connection_retries": retries["connection"],
        "server_error_retries": retries["server_error"],
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def run(rows: int, callbacks: int, error_rate: float, clients: int, timeout_s: float) -> dict[str, Any]:
    from local.runner import LocalRunner, RunnerOptions
    from verifyfeed.models.records import AuditStatus
    from verifyfeed.store.audits import AuditStore
    from verifyfeed.store.jobs import JobStore

    figures: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "parameters": {"rows": rows, "callbacks": callbacks, "error_rate": error_rate, "clients": clients},
    }
    checks: dict[str, bool] = {}
    options = RunnerOptions(
        callback_port=0,
        callback_secret=SECRET,
        api_id=API_ID,
        decision_delay_s=86_400,  # upstream never decides on its own: the callbacks below do
        poll_seconds=3_600,
        stack_name="verifyfeed-load",
        # no timeout is measured here: a slow answer under load must not become "unknown"
        env_overrides={"RETRY_BASE_SECONDS": "1", "RETRY_MAX_SECONDS": "2", **timeouts.GENEROUS},
    )
    with tempfile.TemporaryDirectory() as tmp, capture_logs() as logs, LocalRunner(options) as runner:
        assert runner.sandbox is not None
        sandbox = runner.sandbox
        jobs = JobStore(os.environ["JOBS_TABLE"])
        audits = AuditStore(os.environ["AUDITS_TABLE"], os.environ["JOBS_TABLE"])
        with isolated_writes():
            # ---- rows -----------------------------------------------------------------------
            data, expected, expected_rejected = repair_rows(rows)
            path = Path(tmp) / f"load-{rows}.csv"
            write_csv(path, ["姓名", "身份证号", "曾用手机号", "授权码"], data)
            if error_rate:
                too_many = {"endpoint": "lost_repair", "error_rate": error_rate, "status_code": 429}
                sandbox.set_faults([too_many])
            began = time.perf_counter()
            runner.submit_file(path, "lost-repair")
            job_id = runner.submitted[-1].job_id

            def split_done() -> bool:
                job = jobs.get_job(job_id)
                return job is not None and job.status.value not in ("splitting",)

            def job_done() -> bool:
                job = jobs.get_job(job_id)
                return job is not None and job.status.value in (
                    "completed",
                    "completed_with_errors",
                    "rejected",
                )

            split_s = wait_for("split", split_done, timeout_s)
            wait_for("upload", job_done, timeout_s)
            total_s = time.perf_counter() - began

            def quiet() -> bool:  # the last batch settles its job before its message is deleted
                snap = runner.snapshot()
                return snap.in_flight == 0 and snap.batches_in_flight == 0 and snap.queues["work"] == 0

            wait_for("the work queue drained and no batch in flight", quiet, timeout_s)
            sandbox.clear_faults()
            job = jobs.get_job(job_id)
            assert job is not None
            counts = sandbox.record_counts()
            ledger = sandbox.ledger()
            uploads = [e for e in ledger if e.endpoint.endswith("lost_repair_upload_data")]
            snap = runner.snapshot()
            figures["rows"] = {
                "file_bytes": path.stat().st_size,
                "rows_read": job.rows_read,
                "rows_accepted": job.rows_accepted,
                "rows_rejected": job.rows_rejected,
                "batches": job.batches_total,
                "batches_succeeded": job.batches_succeeded,
                "status": job.status.value,
                "split_seconds": round(split_s, 2),
                "end_to_end_seconds": round(total_s, 2),
                "split_rows_per_second": round(rows / split_s) if split_s else None,
                "end_to_end_rows_per_second": round(rows / total_s),
                "upload_requests": len(uploads),
                "upload_requests_refused_by_injected_429s": sum(1 for e in uploads if e.http_status != 200),
                "rows_upstream": sum(counts.values()),
                "rows_upstream_twice": sum(1 for n in counts.values() if n > 1),
                "dead_lettered": snap.queues.get("dlq", 0),
                "invocations": snap.invocations,
            }
            checks["every row accounted for"] = job.rows_read == rows == job.rows_accepted + job.rows_rejected
            checks["rejected as expected"] = job.rows_rejected == expected_rejected
            checks["every accepted row upstream exactly once"] = set(counts) == expected and set(
                counts.values()
            ) <= {1}
            checks["every batch succeeded"] = (
                job.batches_succeeded == job.batches_total and job.status.value == "completed"
            )
            checks["nothing dead-lettered"] = snap.queues["dlq"] == 0
            checks["the work queue is empty"] = snap.queues["work"] == 0

            # ---- callbacks ------------------------------------------------------------------
            if callbacks:
                apath = Path(tmp) / f"audits-{callbacks}.csv"
                write_csv(apath, AUDIT_HEADER, audit_rows(callbacks + 1))
                began = time.perf_counter()
                runner.submit_file(apath, "carrier-audit")
                audit_job = runner.submitted[-1].job_id

                def mine() -> list[Any]:
                    return [a for a in audits.scan_all() if a.job_id == audit_job]

                def audits_split() -> bool:
                    job = jobs.get_job(audit_job)
                    return job is not None and job.status.value != "splitting"

                audit_split_s = wait_for("audit file split", audits_split, timeout_s)
                wait_for(  # every audit submitted, one way or another
                    "audits submitted",
                    lambda: (
                        (got := mine())
                        and len(got) == callbacks + 1
                        and not any(a.status == AuditStatus.SUBMITTING for a in got)
                    ),
                    timeout_s,
                    every_s=1.0,
                )
                submit_s = time.perf_counter() - began
                refused = Counter(a.status.value for a in mine() if a.status != AuditStatus.PENDING)
                if refused:
                    raise RuntimeError(f"audits not accepted upstream: {dict(refused)}")
                pending = sorted(mine(), key=lambda a: a.row)
                shared, distinct = pending[0], pending[1:]
                url = runner.callback_url

                def body(record_id: int | None, status: int) -> bytes:
                    payload = {
                        "apiId": API_ID,
                        "serviceName": "auditCarrierAudit",
                        "id": record_id,
                        "status": status,
                        "remarks": "审核通过" if status == 1 else "证明材料不清晰",
                    }
                    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

                wanted = {a.audit_key: 1 + i % 2 for i, a in enumerate(distinct)}
                fired = fire(url, [body(a.record_id, wanted[a.audit_key]) for a in distinct], clients)
                statuses, latencies, seconds = fired["statuses"], fired["latencies"], fired["seconds"]
                after = {a.audit_key: a for a in mine()}
                moved_once = sum(
                    after[a.audit_key].version == a.version + 1
                    and after[a.audit_key].status
                    == (AuditStatus.PASSED if wanted[a.audit_key] == 1 else AuditStatus.REJECTED)
                    for a in distinct
                )
                not_moved = [
                    {
                        "row": a.row,
                        "wanted": wanted[a.audit_key],
                        "http_status": status,
                        "before": [a.status.value, a.version],
                        "after": [after[a.audit_key].status.value, after[a.audit_key].version],
                    }
                    for a, status in zip(distinct, statuses, strict=True)
                    if not (
                        after[a.audit_key].version == a.version + 1
                        and after[a.audit_key].status
                        == (AuditStatus.PASSED if wanted[a.audit_key] == 1 else AuditStatus.REJECTED)
                    )
                ]
                figures["callbacks_distinct"] = {
                    "audit_file_split_seconds": round(audit_split_s, 2),
                    "audits_submitted_seconds": round(submit_s, 2),
                    "audits_submitted_per_second": round((callbacks + 1) / submit_s, 1),
                    "callbacks": len(statuses),
                    "client_threads": clients,
                    "seconds": round(seconds, 2),
                    "callbacks_per_second": round(len(statuses) / seconds, 1),
                    "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
                    "latency_ms_p95": round(percentile(latencies, 0.95) * 1000, 1),
                    "latency_ms_max": round(max(latencies) * 1000, 1),
                    "http_statuses": dict(Counter(statuses)),
                    "connection_retries": fired["connection_retries"],
                    "server_error_retries": fired["server_error_retries"],
                    "audits_moved_exactly_once": moved_once,
                    "not_moved": not_moved[:10],
                }
                checks["distinct callbacks all 200"] = statuses == [200] * len(distinct)
                checks["every distinct audit moved exactly once, as its callback said"] = moved_once == len(
                    distinct
                )

                votes = [1 + i % 2 for i in range(callbacks)]
                again = fire(url, [body(shared.record_id, v) for v in votes], clients)
                statuses, latencies, seconds = again["statuses"], again["latencies"], again["seconds"]
                final = audits.get(shared.audit_key)
                assert final is not None
                winner = 1 if final.status == AuditStatus.PASSED else 2
                agreeing = [s for s, v in zip(statuses, votes, strict=True) if v == winner]
                disagreeing = [s for s, v in zip(statuses, votes, strict=True) if v != winner]
                figures["callbacks_identical"] = {
                    "callbacks": len(statuses),
                    "seconds": round(seconds, 2),
                    "callbacks_per_second": round(len(statuses) / seconds, 1),
                    "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
                    "latency_ms_p95": round(percentile(latencies, 0.95) * 1000, 1),
                    "http_statuses": dict(Counter(statuses)),
                    "connection_retries": again["connection_retries"],
                    "server_error_retries": again["server_error_retries"],
                    "final_status": final.status.value,
                    "version_before": shared.version,
                    "version_after": final.version,
                }
                checks["one transition for the shared audit"] = final.version == shared.version + 1
                checks["callbacks agreeing with it 200, the others 409"] = set(agreeing) == {200} and set(
                    disagreeing
                ) == {409}
                others = [a for a in mine() if a.audit_key != shared.audit_key]
                checks["the shared audit's callbacks touched no other audit"] = all(
                    after[a.audit_key].version == a.version for a in others
                )
                checks["callbacks: nothing dead-lettered, no invocation error"] = all(
                    stats["errors"] == 0 and stats["timeouts"] == 0
                    for stats in runner.snapshot().invocations.values()
                )

            # ---- personal data ----------------------------------------------------------------
            tables = [os.environ["JOBS_TABLE"], os.environ["AUDITS_TABLE"], os.environ["IDEMPOTENCY_TABLE"]]
            items, table_leaks = scan_tables(tables)
            objects, object_leaks = scan_objects(
                runner.stack.bucket if runner.stack else "", ["reports/", "claims/"]
            )
        log_leaks = find_pii(logs.all_text())
        figures["personal_data"] = {
            "identities_in_test_data": len(PII),
            "log_records_scanned": len(logs.texts),
            "dynamodb_items_scanned": items,
            "s3_objects_scanned": objects,
            "plaintext_found": len(log_leaks) + len(table_leaks) + len(object_leaks),
        }
        checks["no plaintext ID or phone in logs, tables or reports"] = not (
            log_leaks or table_leaks or object_leaks
        )
        checks["the scans saw something"] = len(logs.texts) > 0 and items > 0 and objects > 0
    figures["checks"] = checks
    figures["ok"] = all(checks.values())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--callbacks", type=int, default=1_000)
    parser.add_argument("--error-rate", type=float, default=0.05, help="injected upstream HTTP 429s")
    parser.add_argument("--clients", type=int, default=100, help="callback client threads")
    parser.add_argument("--timeout", type=float, default=1_800)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fire", metavar="URL", help=argparse.SUPPRESS)  # the callback client process
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fire:
        print(json.dumps(_client(args.fire, args.bodies, args.clients)))
        return 0
    figures = run(args.rows, args.callbacks, args.error_rate, args.clients, args.timeout)
    text = json.dumps(figures, ensure_ascii=False, indent=2)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
