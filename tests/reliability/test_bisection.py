"""A batch the upstream refuses (``state`` "0") loses only its bad rows (docs/decisions.md#state-0).

A file of people goes through the splitter; its batch messages through the real work queue to the
uploader's core, every message handled until the job settles, redelivered when a worker dies;
the sandbox refuses any batch holding a chosen record (its ``refuse`` knob), or every batch (the
``state0`` fault). The sandbox's ledger is what upstream received: how many calls, which records
were charged, and none twice.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Metrics

from local.resources import LocalStack
from sandbox.server import SandboxHandle
from tests.integration.conftest import SettingsFactory, drain_queue
from tests.reliability.support import check_ledger, drop, repair_row
from tests.reliability.test_hostile_files import csv_bytes
from verifyfeed.clock import FixedClock
from verifyfeed.logic.poller import poll
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.logic.uploader import Delivery, RetryLater, upload_batch
from verifyfeed.models.ids import TREE_BASE, claim_key
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus, JobStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services, build_services
from verifyfeed.store.jobs import JobStore
from verifyfeed_cli.app import main

pytestmark = pytest.mark.integration
_starts = iter(range(3_000_000, 10**7, 2_000))
REFUSED_DESC = "授权码已被使用"


class WorkerKilled(BaseException):
    """The process died here (a Lambda timeout or a crash): no ``except Exception`` catches it."""


@dataclasses.dataclass
class Dropped:
    job_id: str
    key: str
    people: list[list[str]]  # [name, ID number, phone, authCode]
    idcodes: list[str]
    root_body: bytes  # the file's batch as the splitter staged it

    def idcode(self, row: int) -> str:
        return self.idcodes[row]


def drop_file(services: Services, rows: int) -> Dropped:
    """A file of ``rows`` valid people, split (one batch of up to BATCH_MAX_RECORDS) and released."""
    drain_queue(services.settings.work_queue_url)
    start = next(_starts)
    people = [repair_row(start + i, phone=i % 2 == 0) for i in range(rows)]
    key = f"lost-repair/bisect-{start}.csv"
    event = drop(services.settings.ingest_bucket, key, csv_bytes(people))
    result = split_object(services, DroppedObject.from_event_record(event["Records"][0]))
    assert result.outcome == "split" and result.counts.rows_accepted == rows
    root = services.jobs.get_batch(result.job_id, 1)
    assert root is not None and root.claim_key == claim_key(
        services.settings.claims_prefix, result.job_id, 1, 1
    )
    body = boto3.client("s3").get_object(Bucket=root.claim_bucket, Key=root.claim_key)["Body"].read()
    return Dropped(result.job_id, key, people, [sha256_hex(p[1]) for p in people], body)


def run_job(
    services: Services,
    job_id: str,
    *,
    dying: Services | None = None,
    on_retry: Callable[[RetryLater], None] | None = None,
    timeout_s: float = 120,
) -> int:
    """Deliver the job's messages to the uploader's core until the job settles; returns how many
    deliveries a worker died in. With ``dying``, messages go to those services until one dies
    (``WorkerKilled``); the message is then delivered again, as SQS would, to ``services``. A
    message the core asks to retry is delivered again after ``on_retry`` (e.g. moves the clock)."""
    sqs = boto3.client("sqs")
    queue = services.settings.work_queue_url
    deaths = 0
    worker = dying or services
    deadline = time.monotonic() + timeout_s
    receives: dict[str, int] = {}
    while True:
        job = services.jobs.get_job(job_id)
        assert job is not None
        bodies = [m for m in drain_queue(queue) if m.get("job_id") == job_id]
        if not bodies and job.status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS):
            return deaths
        assert time.monotonic() < deadline, f"job {job.status.value} after {timeout_s}s"
        for body in bodies:
            message = LostRepairBatchMessage.model_validate(body)
            receives[message.batch_id] = receives.get(message.batch_id, 0) + 1
            try:
                upload_batch(worker, message, Delivery(receive_count=receives[message.batch_id]))
            except WorkerKilled:
                deaths += 1
                worker = services  # the next invocation runs in a healthy environment
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))  # redelivered
            except RetryLater as retry:
                if on_retry is not None:
                    on_retry(retry)
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
            finally:
                Metrics().clear_metrics()  # what the handler's log_metrics does after each invocation


def upload_calls(sandbox: SandboxHandle) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")])


def report_of(services: Services, job_id: str) -> dict[str, Any]:
    job = services.jobs.get_job(job_id)
    assert job is not None and job.report_key
    body = boto3.client("s3").get_object(Bucket=job.bucket, Key=job.report_key)["Body"].read()
    report: dict[str, Any] = json.loads(body)
    return report


def batches(services: Services, job_id: str) -> list[Batch]:
    return list(services.jobs.batches(job_id))


def wire(record: dict[str, str]) -> bytes:
    """A record as the splitter serialises it into a batch body."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def assert_refused_alone(services: Services, dropped: Dropped, rows: list[int]) -> None:
    """Each of ``rows`` failed alone, named by its authCode with the upstream's desc, its body kept at
    its own claim check holding exactly its record (the splitter's format); every other row charged once."""
    failed = [b for b in batches(services, dropped.job_id) if b.status == BatchStatus.FAILED]
    assert sorted(b.refused_record for b in failed) == sorted(dropped.people[r][3] for r in rows)
    for batch in failed:
        assert batch.seq > TREE_BASE and batch.record_count == 1 and batch.upstream_desc == REFUSED_DESC
        assert batch.claim_key == claim_key(services.settings.claims_prefix, dropped.job_id, batch.seq)
        body = boto3.client("s3").get_object(Bucket=batch.claim_bucket, Key=batch.claim_key)["Body"].read()
        (record,) = json.loads(body)
        assert record["authCode"] == batch.refused_record
        assert body == b"[" + wire(record) + b"]" and wire(record) in dropped.root_body


@pytest.fixture
def cli(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """``verifyfeed --local --stack <the test stack> ARGS``: (exit code, stdout)."""

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        code = main(["--local", "--stack", stack.stack_name, *argv])
        return code, capsys.readouterr().out

    return run


def test_one_refused_row_in_1000_costs_only_that_row(
    services: Services, sandbox: SandboxHandle, cli: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    dropped = drop_file(services, 1000)
    sandbox.refuse([dropped.idcode(613)], REFUSED_DESC)
    run_job(services, dropped.job_id)

    counts = sandbox.record_counts()
    assert len(counts) == 999 and set(counts.values()) == {1}  # 999 charged, each once
    assert dropped.idcode(613) not in counts
    calls = upload_calls(sandbox)
    assert calls - 1 <= 2 * math.ceil(math.log2(1000))  # about 2·log2(1000) extra calls at most
    assert_refused_alone(services, dropped, [613])

    job = services.jobs.get_job(dropped.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED_WITH_ERRORS
    assert job.batches_failed == 1 and job.batches_unknown == 0 and job.batches_deferred == 0
    assert job.batches_total == calls and job.batches_settled == job.batches_total
    assert job.batches_bisected == (calls - 1) // 2
    report = report_of(services, dropped.job_id)
    assert report["records"] == {
        "accepted": 1000,
        "uploaded": 999,
        "refused": 1,
        "held": 0,
        "deferred": 0,
        "pending": 0,
    }
    [refused] = report["refused_records"]
    assert refused["auth_code"] == dropped.people[613][3] and refused["reason"] == REFUSED_DESC
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})

    code, out = cli("status", dropped.key)
    assert code == 5  # settled, with a row the upstream refused
    assert "999 uploaded + 1 refused or failed" in out
    assert dropped.people[613][3] in out and REFUSED_DESC in out
    assert dropped.people[613][1] not in out  # never the ID number
    # what to do: fix that row and drop the sheet again; nothing to re-drive (it was refused, not
    # charged, and would be refused again), and nothing about unknown batches: there are none
    said = " ".join(out.split())  # the hint is wrapped to the screen's width
    assert "fix those rows in the sheet" in said and "docs/operations.md#re-drop" in said
    assert "redrive" not in out
    # the batches add up, each answer says what it was, by the batch's place in the bisection
    succeeded = calls - 1 - job.batches_bisected  # every call but the failed one's and the split ones'
    assert f"Batches:  {calls} in all = {succeeded} succeeded + {job.batches_bisected} split in halves" in out
    assert "Answers:  #1 refused whole (state 0), split in halves; #1.1 " in out
    assert f"#{TREE_BASE}" not in out and "(no serialNo)" not in out
    code, out = cli("status", dropped.key, "--json")
    assert json.loads(out)["refused_records"] == report["refused_records"]
    with capsys.disabled():  # the figure docs/reliability.md quotes
        print(f"\n1 refused row in 1,000: {calls} upload calls (1 + {calls - 1} for the halves)")


@pytest.mark.parametrize("rows", [(100, 800), (400, 401)], ids=["apart", "side_by_side"])
def test_two_refused_rows_cost_only_those_rows(
    services: Services, sandbox: SandboxHandle, rows: tuple[int, int]
) -> None:
    dropped = drop_file(services, 1000)
    sandbox.refuse([dropped.idcode(r) for r in rows], REFUSED_DESC)
    run_job(services, dropped.job_id)

    counts = sandbox.record_counts()
    assert len(counts) == 998 and set(counts.values()) == {1}
    calls = upload_calls(sandbox)
    print(f"\n2 refused rows ({rows[0]}, {rows[1]}) in 1,000: {calls} upload calls")
    assert calls - 1 <= 2 * 2 * math.ceil(math.log2(1000))
    assert_refused_alone(services, dropped, list(rows))
    assert report_of(services, dropped.job_id)["records"]["uploaded"] == 998
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_a_batch_refused_as_a_whole_stops_once_more_parts_than_isolated_rows_are_refused(
    services: Services, sandbox: SandboxHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """Systematic: all 16 parts of the fourth split refused, nothing accepted — more than the 8
    refused rows (``STATE0_BISECT_ISOLATE_ROWS``) that are always isolated: 31 calls, not 1,999."""
    dropped = drop_file(services, 1000)
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True})
    run_job(services, dropped.job_id)

    assert sandbox.record_counts() == {}
    calls = upload_calls(sandbox)
    assert calls == 1 + 2 + 4 + 8 + 16
    tree = batches(services, dropped.job_id)
    assert sorted(b.status.value for b in tree) == ["bisected"] * 15 + ["failed"] * 16
    failed = [b for b in tree if b.status == BatchStatus.FAILED]
    assert sorted(b.record_count for b in failed) == [62] * 8 + [63] * 8  # 1,000 → 500 → 250 → 125
    assert all("systematic" in b.last_error and b.refused_record == "" for b in failed)
    with capsys.disabled():  # the figure docs/decisions.md#state-0 quotes
        print(f"\n1,000 records refused whole: {calls} upload calls")
    report = report_of(services, dropped.job_id)
    assert report["records"]["refused"] == 1000 and report["refused_records"] == []
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_the_call_budget_bounds_a_batch_full_of_refused_rows(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Two refused rows isolated whatever happens, at least 10 halves: 11 refused rows, all in the
    first half (not systematic), get max(10, 22) halves — the most two refused rows of 64 take."""
    services = build_services(
        make_settings(STATE0_BISECT_MAX_CALLS="10", STATE0_BISECT_ISOLATE_ROWS="2"), clock
    )
    dropped = drop_file(services, 64)
    bad = range(0, 32, 3)
    sandbox.refuse([dropped.idcode(r) for r in bad], REFUSED_DESC)
    run_job(services, dropped.job_id)

    assert upload_calls(sandbox) == 1 + 22
    counts = sandbox.record_counts()
    assert set(counts.values()) == {1} and not {dropped.idcode(r) for r in bad} & set(counts)
    assert {dropped.idcode(r) for r in range(32, 64)} <= set(counts)  # the second half went through
    failed = [b for b in batches(services, dropped.job_id) if b.status == BatchStatus.FAILED]
    assert any("STATE0_BISECT_MAX_CALLS" in b.last_error for b in failed)
    report = report_of(services, dropped.job_id)
    assert report["records"]["uploaded"] + report["records"]["refused"] == 64
    assert report["records"]["uploaded"] == len(counts)
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_a_half_refused_by_a_code_stops_the_bisection(services: Services, sandbox: SandboxHandle) -> None:
    """Not a row's fault (here HTTP 400, as an authentication or system code would be): the other
    half is failed unsent, with the reason, rather than sent on."""
    dropped = drop_file(services, 100)
    sandbox.refuse([dropped.idcode(80)], REFUSED_DESC)
    passes = {"endpoint": "lost_repair", "count": 1, "latency_ms": 0}  # the file's batch: refused
    sandbox.set_faults([passes, {"endpoint": "lost_repair", "count": 1, "status_code": 400}])
    run_job(services, dropped.job_id)

    assert upload_calls(sandbox) == 2 and sandbox.record_counts() == {}
    tree = batches(services, dropped.job_id)
    assert sorted(b.status.value for b in tree) == ["bisected", "failed", "failed"]
    [refused] = [b for b in tree if b.status == BatchStatus.FAILED and b.attempts == 1]
    [unsent] = [b for b in tree if b.status == BatchStatus.FAILED and b.attempts == 0]
    assert "HTTP 400" in refused.last_error and unsent.record_count == 50
    assert unsent.last_error.startswith(f"not sent: batch {refused.batch_id} of this bisection failed")
    assert report_of(services, dropped.job_id)["records"]["refused"] == 100
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_splitting_off_retries_the_batch_whole_then_fails_it(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(STATE0_BISECT_MAX_CALLS="0", STATE0_MAX_ATTEMPTS="2"), clock)
    dropped = drop_file(services, 10)
    sandbox.refuse([dropped.idcode(3)], REFUSED_DESC)
    run_job(services, dropped.job_id)
    assert upload_calls(sandbox) == 2 and sandbox.record_counts() == {}
    [batch] = batches(services, dropped.job_id)
    assert batch.status == BatchStatus.FAILED and batch.upstream_desc == REFUSED_DESC


# ---- a worker dies mid-bisection --------------------------------------------------------------


class DyingDynamoDB:
    """A DynamoDB client whose process dies (once) at the call ``kill_at`` picks."""

    def __init__(self, client: Any, method: str, picks: Callable[[dict[str, Any], int], bool]) -> None:
        self._client = client
        self._method = method
        self._picks = picks
        self._calls = 0
        self.died = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name != self._method:
            return target

        def call(**kwargs: Any) -> Any:
            self._calls += 1
            if not self.died and self._picks(kwargs, self._calls):
                self.died = True
                raise WorkerKilled(f"killed at {name} #{self._calls}")
            return target(**kwargs)

        return call


def dying_services(
    services: Services, method: str, picks: Callable[[dict[str, Any], int], bool]
) -> tuple[Services, DyingDynamoDB]:
    """The same services, but the jobs store's DynamoDB client dies once, where ``picks`` says."""
    client = DyingDynamoDB(services.jobs._db, method, picks)
    jobs = JobStore(services.jobs.table, client)  # type: ignore[arg-type]
    return dataclasses.replace(services, jobs=jobs), client


def _to(kwargs: dict[str, Any]) -> str:
    return str(kwargs.get("ExpressionAttributeValues", {}).get(":to", {}).get("S", ""))


KILL_POINTS: dict[str, tuple[str, Callable[[dict[str, Any], int], bool]]] = {
    # the refusal recorded, none of its halves written yet
    "before_the_halves": ("put_item", lambda kw, n: n == 1),
    # one half written (body and record), not the other
    "between_the_halves": ("put_item", lambda kw, n: n == 2),
    # both halves written, the parent not yet recorded as bisected
    "before_the_parent_is_bisected": ("transact_write_items", lambda kw, n: n == 1),
    # a half's message queued, the half not yet marked queued: its message is sent twice
    "after_queueing_a_half": ("update_item", lambda kw, n: _to(kw) == "queued"),
    # deep in the tree: the fourth generation's first half refused, about to be split
    "deep_in_the_tree": ("put_item", lambda kw, n: n == 7),
}


@pytest.mark.parametrize("kill_at", list(KILL_POINTS))
def test_a_worker_that_dies_mid_bisection_sends_nothing_twice_and_loses_nothing(
    services: Services, sandbox: SandboxHandle, kill_at: str
) -> None:
    dropped = drop_file(services, 100)
    sandbox.refuse([dropped.idcode(37)], REFUSED_DESC)
    method, picks = KILL_POINTS[kill_at]
    dying, client = dying_services(services, method, picks)
    assert run_job(services, dropped.job_id, dying=dying) == 1 and client.died

    counts = sandbox.record_counts()
    assert len(counts) == 99 and set(counts.values()) == {1}  # none twice, none lost
    assert upload_calls(sandbox) - 1 <= 2 * math.ceil(math.log2(100))  # nothing sent again
    assert_refused_alone(services, dropped, [37])
    job = services.jobs.get_job(dropped.job_id)
    assert job is not None and job.batches_failed == 1 and job.batches_settled == job.batches_total
    assert report_of(services, dropped.job_id)["records"]["uploaded"] == 99
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def staged(services: Services, job_id: str) -> list[Batch]:
    return [b for b in batches(services, job_id) if b.status == BatchStatus.STAGED]


def test_a_half_written_before_the_worker_died_is_reused_when_the_redelivery_comes_in_the_blackout(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """The worker splitting a refused batch dies after writing one half; its message comes back in
    the blackout, where a refused batch is not split but deferred. The split was decided: it is
    finished (no half left ``staged``, its rows counted once), the halves wait out the window."""
    dropped = drop_file(services, 100)
    sandbox.refuse([dropped.idcode(37)], REFUSED_DESC)
    dying, client = dying_services(services, *KILL_POINTS["between_the_halves"])
    [body] = [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == dropped.job_id]
    message = LostRepairBatchMessage.model_validate(body)
    with pytest.raises(WorkerKilled):
        upload_batch(dying, message, Delivery())
    Metrics().clear_metrics()
    assert client.died and [b.record_count for b in staged(services, dropped.job_id)] == [50]

    clock.move_to(datetime.fromisoformat("2026-12-27T00:00:01+08:00"))
    upload_batch(services, message, Delivery(receive_count=2))
    for queued in drain_queue(services.settings.work_queue_url):  # the halves, if any: deferred
        upload_batch(services, LostRepairBatchMessage.model_validate(queued), Delivery())
    Metrics().clear_metrics()
    assert upload_calls(sandbox) == 1  # nothing sent in the blackout

    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))
    sandbox.set_clock("2027-01-01T00:00:01+08:00")
    sandbox.refuse([])  # the refusal was transient: nothing is refused after the window
    assert poll(services).batches_redriven >= 1
    run_job(services, dropped.job_id)

    counts = sandbox.record_counts()
    assert len(counts) == 100 and set(counts.values()) == {1}
    assert report_of(services, dropped.job_id)["records"] == {
        "accepted": 100,
        "uploaded": 100,
        "refused": 0,
        "held": 0,
        "deferred": 0,
        "pending": 0,
    }
    assert staged(services, dropped.job_id) == []
    assert upload_calls(sandbox) == 1 + 2  # the batch, refused; its halves after the window
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_a_half_written_before_the_worker_died_is_reused_when_the_budget_would_be_spent(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Rows 0 and 1 of 4 refused, a budget of 4 halves: the file's batch is split (2), then its first
    half (4); the worker dies after writing one of that half's halves. The half it wrote does not
    count against the budget a second time: the split is finished and both rows are isolated."""
    services = build_services(
        make_settings(STATE0_BISECT_MAX_CALLS="4", STATE0_BISECT_ISOLATE_ROWS="1"), clock
    )
    dropped = drop_file(services, 4)
    sandbox.refuse([dropped.idcode(0), dropped.idcode(1)], REFUSED_DESC)
    dying, client = dying_services(services, "put_item", lambda kw, n: n == 4)  # the 4th half
    assert run_job(services, dropped.job_id, dying=dying) == 1 and client.died

    counts = sandbox.record_counts()
    assert set(counts) == {dropped.idcode(2), dropped.idcode(3)} and set(counts.values()) == {1}
    assert report_of(services, dropped.job_id)["records"] == {
        "accepted": 4,
        "uploaded": 2,
        "refused": 2,
        "held": 0,
        "deferred": 0,
        "pending": 0,
    }
    assert staged(services, dropped.job_id) == []
    assert_refused_alone(services, dropped, [0, 1])
    assert upload_calls(sandbox) == 1 + 2 + 2
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_a_refused_batch_is_not_split_in_the_blackout_but_deferred_whole(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """The worker that recorded the refusal died before splitting; its message comes back once the
    blackout has begun: the batch is deferred, whole, and split only after the window."""
    dropped = drop_file(services, 100)
    sandbox.refuse([dropped.idcode(37)], REFUSED_DESC)
    dying, _ = dying_services(services, "put_item", lambda kw, n: True)
    [body] = [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == dropped.job_id]
    message = LostRepairBatchMessage.model_validate(body)
    with pytest.raises(WorkerKilled):
        upload_batch(dying, message, Delivery())
    Metrics().clear_metrics()

    clock.move_to(datetime.fromisoformat("2026-12-27T00:00:01+08:00"))
    upload_batch(services, message, Delivery(receive_count=2))
    [root] = batches(services, dropped.job_id)  # no half was written
    assert root.status == BatchStatus.DEFERRED and upload_calls(sandbox) == 1
    job = services.jobs.get_job(dropped.job_id)
    assert job is not None and job.status == JobStatus.DEFERRED

    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))
    sandbox.set_clock("2027-01-01T00:00:01+08:00")
    assert poll(services).batches_redriven >= 1
    run_job(services, dropped.job_id)
    counts = sandbox.record_counts()
    assert len(counts) == 99 and set(counts.values()) == {1}
    assert_refused_alone(services, dropped, [37])
    assert upload_calls(sandbox) - 2 <= 2 * math.ceil(math.log2(100))  # the batch was sent whole twice
    check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})


def test_a_half_charged_by_a_worker_that_died_before_recording_it_is_held_not_resent(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A half keeps the charged-path guarantee of any batch: the upstream accepted it, the worker
    died before its own write; redelivered while the lease runs, nothing is sent; after the lease,
    held ``unknown`` (charged once, flagged). Its sibling's bisection goes on regardless."""
    dropped = drop_file(services, 100)
    sandbox.refuse([dropped.idcode(37)], REFUSED_DESC)

    def succeeded(kwargs: dict[str, Any], n: int) -> bool:
        return any("batches_succeeded" in i["Update"]["UpdateExpression"] for i in kwargs["TransactItems"])

    dying, client = dying_services(services, "transact_write_items", succeeded)
    leases: list[str] = []

    def lease_runs_out(retry: RetryLater) -> None:
        assert "lease" in retry.reason
        leases.append(retry.reason)
        clock.move_to(clock.now() + timedelta(seconds=services.settings.send_lease_seconds + 1))

    assert run_job(services, dropped.job_id, dying=dying, on_retry=lease_runs_out) == 1
    assert client.died and leases  # the redelivery found the dead worker's lease running

    counts = sandbox.record_counts()
    assert len(counts) == 99 and set(counts.values()) == {1}  # charged once, the held half included
    [held] = [b for b in batches(services, dropped.job_id) if b.status == BatchStatus.UNKNOWN]
    assert held.seq > TREE_BASE and "without a recorded answer" in held.last_error
    assert upload_calls(sandbox) - 1 <= 2 * math.ceil(math.log2(100))
    assert_refused_alone(services, dropped, [37])
    records = report_of(services, dropped.job_id)["records"]
    assert (records["held"], records["refused"], records["uploaded"]) == (
        held.record_count,
        1,
        99 - held.record_count,
    )
    check = check_ledger(services, sandbox, dropped.job_id, {1: dropped.idcodes})
    assert check.flagged_but_charged == held.record_count
