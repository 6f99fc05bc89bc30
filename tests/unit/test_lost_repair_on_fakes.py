"""Lost-contact repair, end to end on the in-memory ports (``tests/fakes``): no moto, no AWS SDK.

A file is put into ``MemoryBlobs`` and the splitter's use case is handed the S3 event AWS would
send; its messages are taken from ``MemoryQueue`` and handed to the uploader's, which calls the
upstream sandbox over HTTP. What upstream received is the sandbox's ledger.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest

from local.events import s3_put_event
from sandbox.server import SandboxConfig, SandboxHandle, start_sandbox
from tests import timeouts
from tests.fakes import MemoryBlobs, MemoryQueue, MemorySecrets, memory_services
from tests.fakes.jobs import MemoryJobStore, MemoryLedger
from tests.reports import already_uploaded_rows, rejected_rows, summary_of
from tests.rows import fake_id
from verifyfeed.clock import FixedClock
from verifyfeed.logic.poller import poll
from verifyfeed.logic.splitter import DroppedObject, SplitResult, split_object
from verifyfeed.logic.uploader import Delivery, SettleFailed, upload_batch
from verifyfeed.models.ids import claim_key
from verifyfeed.models.ledger import LedgerObject
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus, Job, JobCounts, JobStatus
from verifyfeed.ports import JobRepository, Ledger, Services
from verifyfeed.rules.hashing import sha256_hex

NOW = "2026-11-25T10:00:00+08:00"
HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]
UPLOAD = "lost_repair_upload_data"


@pytest.fixture(scope="module")
def unit_sandbox_running() -> Iterator[SandboxHandle]:
    credentials = MemorySecrets().credentials  # what memory_services' secrets hold
    handle = start_sandbox(
        SandboxConfig(
            api_id=credentials.api_id, api_key=credentials.api_key, clock_mode="manual", clock_now=NOW
        )
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def unit_sandbox(unit_sandbox_running: SandboxHandle) -> SandboxHandle:
    unit_sandbox_running.reset()
    unit_sandbox_running.set_clock(NOW)
    return unit_sandbox_running


def on_fakes(
    sandbox: SandboxHandle | None = None, clock: FixedClock | None = None, **settings: str
) -> Services:
    """``memory_services``, pointed at the sandbox (or at nothing)."""
    clock = clock or FixedClock(datetime.fromisoformat(NOW))
    url = sandbox.url if sandbox else "http://127.0.0.1:9"
    env = {
        "RETRY_BASE_SECONDS": "0",
        **timeouts.GENEROUS,  # none of these tests is about a timeout
        **settings,
    }
    return memory_services(clock, upstream_url=url, **env)


# ---- driving the use cases --------------------------------------------------------------------


def rows(count: int, start: int) -> list[list[str]]:
    return [
        [
            f"用户{chr(0x4E00 + start + i)}",
            fake_id(start + i),
            f"138{start + i:08d}" if i % 2 else "",
            f"K{start + i:07d}",
        ]
        for i in range(count)
    ]


def csv_bytes(body: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue().encode("utf-8")


def put(services: Services, key: str, data: bytes) -> dict[str, Any]:
    """Upload like a user would; the S3 event AWS would send."""
    bucket = services.settings.ingest_bucket
    services.blobs.put(bucket, key, data, "text/csv")
    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return s3_put_event(bucket, key, len(data), etag, None, uuid.uuid4().hex[:18].upper())


def split(services: Services, event: dict[str, Any]) -> SplitResult:
    """What the splitter's handler does with each record of the event."""
    return split_object(services, DroppedObject.from_event_record(event["Records"][0]))


def drop(services: Services, key: str, data: bytes) -> SplitResult:
    return split(services, put(services, key, data))


def queue_of(services: Services) -> MemoryQueue:
    assert isinstance(services.queue, MemoryQueue)
    return services.queue


def blobs_of(services: Services) -> MemoryBlobs:
    assert isinstance(services.blobs, MemoryBlobs)
    return services.blobs


def take_messages(services: Services) -> list[LostRepairBatchMessage]:
    queue = queue_of(services)
    bodies, queue.bodies[:] = list(queue.bodies), []
    return [LostRepairBatchMessage.model_validate_json(b) for b in bodies]


def deliver_all(services: Services, limit: int = 50) -> Counter[str]:
    """Hand every queued message (and those its handling queues) to the uploader, as SQS would."""
    outcomes: Counter[str] = Counter()
    for _ in range(limit):
        messages = take_messages(services)
        if not messages:
            return outcomes
        for message in messages:
            outcomes[upload_batch(services, message, Delivery())] += 1
    raise AssertionError(f"the queue did not drain in {limit} rounds")


def job_of(services: Services, job_id: str) -> Job:
    job = services.jobs.get_job(job_id)
    assert job is not None
    return job


def batches_of(services: Services, job_id: str) -> list[Batch]:
    return list(services.jobs.batches(job_id))


def summary(services: Services, job: Job) -> dict[str, Any]:
    assert job.report_key
    return summary_of(services, job)


def charged(sandbox: SandboxHandle) -> list[str]:
    return [r.idcode for r in sandbox.accepted_records()]


def upload_calls(sandbox: SandboxHandle) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint.endswith(UPLOAD)])


# ---- the fakes are the ports --------------------------------------------------------------------


@pytest.mark.parametrize(("port", "fake"), [(JobRepository, MemoryJobStore), (Ledger, MemoryLedger)])
def test_the_fakes_have_the_ports_methods_with_their_parameters(port: type, fake: type) -> None:
    methods = [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]
    assert len(methods) >= 8  # the ledger has 8, the job repository 19
    for name in methods:
        expected = list(inspect.signature(getattr(port, name)).parameters)
        assert list(inspect.signature(getattr(fake, name)).parameters) == expected, name


# ---- the splitter ----------------------------------------------------------------------------


def test_a_split_stages_every_batch_then_queues_them_and_reports_the_rejected_rows() -> None:
    services = on_fakes(BATCH_MAX_RECORDS="2")
    good = rows(5, 100)
    bad_check_digit = ["李四", fake_id(200)[:-1] + ("0" if fake_id(200)[-1] != "0" else "1"), "", "K9000001"]
    key = "lost-repair/2026-11/客户 名单+1.csv"
    result = drop(services, key, csv_bytes([*good[:2], bad_check_digit, *good[2:], good[0]]))
    assert result.outcome == "split"

    job = job_of(services, result.job_id)
    assert job.key == key  # the event's URL-encoded key, decoded
    assert (job.status, job.rows_read, job.rows_accepted, job.rows_rejected, job.batches_total) == (
        JobStatus.UPLOADING,
        7,
        5,
        2,
        3,
    )
    assert job.released_at
    batches = batches_of(services, result.job_id)
    assert [(b.seq, b.status, b.record_count) for b in batches] == [
        (1, BatchStatus.STAGED, 2),
        (2, BatchStatus.STAGED, 2),
        (3, BatchStatus.STAGED, 1),
    ]
    messages = take_messages(services)
    assert [(m.seq, m.claim_key, m.records) for m in messages] == [
        (seq, claim_key("claims/", result.job_id, seq, 1), None)
        for seq in (1, 2, 3)  # the split's run 1
    ]
    staged = [json.loads(services.blobs.get(services.settings.ingest_bucket, b.claim_key)) for b in batches]
    assert [r["idcode"] for body in staged for r in body] == [sha256_hex(r[1]) for r in good]
    report = {int(r["row"]): r for r in rejected_rows(services, job)}
    assert sorted(report) == [4, 8]
    assert report[4]["code"] == "id_number.check_digit" and report[4]["zh"] == "身份证号校验位不符"
    assert report[8]["code"] == "duplicate.id_number" and report[8]["first_row"] == "2"
    assert fake_id(200) not in json.dumps(report, ensure_ascii=False)  # masked

    again = drop(services, key, csv_bytes(good))  # a new upload of the key: a job of its own
    assert again.job_id != result.job_id
    assert sorted(j.job_id for j in services.jobs.find_jobs(key)) == sorted([result.job_id, again.job_id])
    # ... and reports of its own: the first job's still say what happened to the first upload
    assert (
        len(rejected_rows(services, job)) == 2
        and rejected_rows(services, job_of(services, again.job_id)) == []
    )


def test_many_batches_staged_on_the_splitters_threads_are_each_staged_and_queued_once() -> None:
    services = on_fakes(BATCH_MAX_RECORDS="1")
    event = put(services, "lost-repair/many.csv", csv_bytes(rows(64, 800)))
    result = split(services, event)
    batches = batches_of(services, result.job_id)
    assert [(b.seq, b.status, b.record_count) for b in batches] == [
        (s, BatchStatus.STAGED, 1) for s in range(1, 65)
    ]
    assert [m.seq for m in take_messages(services)] == list(range(1, 65))
    assert job_of(services, result.job_id).batches_total == 64
    claim_checks = {k for (_, k) in blobs_of(services).objects if k.startswith("claims/")}
    assert claim_checks == {b.claim_key for b in batches}

    # the same event delivered again: no second job, nothing queued again
    again = split(services, event)
    assert (again.outcome, again.job_id) == ("duplicate", result.job_id)
    assert queue_of(services).bodies == [] and len(services.jobs.list_jobs()) == 1


def _sheet_bytes(body: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in body:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (csv_bytes(rows(5, 300)), "MAX_ROWS_PER_FILE"),  # found out after a batch was staged
        (csv_bytes(rows(5, 300), header=["名字", "号码"]), ""),  # no usable header: nothing staged
        # a workbook's sheet says how many rows it has: refused before its first row is read
        (_sheet_bytes(rows(5, 300)), "MAX_ROWS_PER_FILE (3)"),
    ],
)
def test_a_file_rejected_as_a_whole_sends_nothing(data: bytes, reason: str) -> None:
    services = on_fakes(BATCH_MAX_RECORDS="2", MAX_ROWS_PER_FILE="3")
    key = "lost-repair/too-big.csv" if not data.startswith(b"PK") else "lost-repair/too-big.xlsx"
    result = drop(services, key, data)
    assert result.outcome == "rejected"
    job = job_of(services, result.job_id)
    assert job.status == JobStatus.REJECTED and reason in job.reason
    assert queue_of(services).bodies == []
    batches = batches_of(services, result.job_id)
    assert all(b.status == BatchStatus.DISCARDED and b.claim_key == "" for b in batches)
    assert len(batches) == (1 if reason == "MAX_ROWS_PER_FILE" else 0)
    claim_checks = [k for (_, k) in blobs_of(services).objects if k.startswith("claims/")]
    assert claim_checks == []
    report = summary(services, job)
    assert report["sent_upstream"] == 0 and report["batches_staged_then_discarded"] == len(batches)


# ---- the uploader, the bisection, the poller ------------------------------------------------------


def test_a_batch_is_settled_succeeded_once_and_a_redelivery_sends_nothing(
    unit_sandbox: SandboxHandle,
) -> None:
    services = on_fakes(unit_sandbox)
    people = rows(3, 400)
    result = drop(services, "lost-repair/three.csv", csv_bytes(people))
    [message] = take_messages(services)
    assert upload_batch(services, message, Delivery()) == "succeeded"
    assert sorted(charged(unit_sandbox)) == sorted(sha256_hex(p[1]) for p in people)
    batch = services.jobs.get_batch(result.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.SUCCEEDED and batch.serial_no
    assert batch.attempts == 1 and batch.lease_until == ""
    job = job_of(services, result.job_id)
    assert (job.status, job.batches_succeeded) == (JobStatus.COMPLETED, 1)
    assert summary(services, job)["records"]["accepted"] == 3

    # SQS delivers the same message again (the Lambda timed out after finishing it)
    assert upload_batch(services, message, Delivery(receive_count=2)) == "succeeded"
    assert upload_calls(unit_sandbox) == 1 and len(charged(unit_sandbox)) == 3
    assert job_of(services, result.job_id).batches_succeeded == 1
    assert queue_of(services).bodies == []


def test_a_refused_batch_is_bisected_down_to_the_bad_row(unit_sandbox: SandboxHandle) -> None:
    services = on_fakes(unit_sandbox)
    people = rows(6, 500)
    bad = people[4]
    unit_sandbox.refuse([bad[3]], desc="授权码已被使用")
    result = drop(services, "lost-repair/one-bad.csv", csv_bytes(people))
    outcomes = deliver_all(services)
    # refused: the file's batch of 6, then the half, the quarter and the one record holding it
    assert outcomes == Counter(refused=4, succeeded=3) and upload_calls(unit_sandbox) == 7

    charges = Counter(charged(unit_sandbox))
    assert set(charges) == {sha256_hex(p[1]) for p in people if p is not bad}
    assert set(charges.values()) == {1}  # each good record charged once
    batches = batches_of(services, result.job_id)
    [failed] = [b for b in batches if b.status == BatchStatus.FAILED]
    assert (failed.record_count, failed.depth, failed.refused_record) == (1, 3, bad[3])
    assert "授权码已被使用" in failed.upstream_desc
    assert batches[0].seq == 1 and batches[0].status == BatchStatus.BISECTED
    assert Counter(b.status for b in batches) == Counter(bisected=3, succeeded=3, failed=1)
    job = job_of(services, result.job_id)
    assert job.status == JobStatus.COMPLETED_WITH_ERRORS
    assert counts_of(job) == (7, 3, 1, 3, 7)
    assert summary(services, job)["refused_records"] == [
        {"batch_id": failed.batch_id, "auth_code": bad[3], "reason": "授权码已被使用"}
    ]


def counts_of(job: Job) -> tuple[int, int, int, int, int]:
    """(batches, succeeded, failed, bisected, settled)"""
    return (
        job.batches_total,
        job.batches_succeeded,
        job.batches_failed,
        job.batches_bisected,
        job.batches_settled,
    )


# ---- refused rows lose only themselves, however few or spread (docs/decisions.md#state-0) ------------

REFUSED = "失败"  # the only desc the spec gives a state "0" answer

# rows i·1000/k: every split down to single rows meets a refused row, so these take the most calls
SPREADS: dict[str, Callable[[int], list[int]]] = {
    "even": lambda k: [i * 1000 // k for i in range(k)],
    "adjacent": lambda k: list(range(500, 500 + k)),
    "at_both_ends": lambda k: [*range(k // 2), *range(1000 - (k + 1) // 2, 1000)],
    "scattered": lambda k: sorted(random.Random(k).sample(range(1000), k)),
}
# the most upload calls k refused rows of a batch of 1,000 take: 1 + 2 for every part split
# (docs/decisions.md#state-0 quotes them; test_bisection.py computes them)
WORST_CALLS_IN_1000 = {1: 21, 2: 39, 3: 55, 4: 71, 5: 85, 6: 99, 7: 113, 8: 127}


def assert_only_refused_rows_lost(
    services: Services, sandbox: SandboxHandle, job_id: str, people: list[list[str]], bad: list[int]
) -> int:
    """Every row but ``bad`` charged once, each of ``bad`` failed alone with its answer's desc, the
    report adding up to the rows; returns the upload calls made."""
    good = [p for i, p in enumerate(people) if i not in bad]
    assert Counter(charged(sandbox)) == Counter(sha256_hex(p[1]) for p in good)
    failed = [b for b in batches_of(services, job_id) if b.status == BatchStatus.FAILED]
    alone = sorted((b.refused_record, b.record_count, b.upstream_desc, b.last_error) for b in failed)
    assert alone == sorted((people[r][3], 1, REFUSED, f"refused: {REFUSED}") for r in bad)
    job = job_of(services, job_id)
    assert job.status == JobStatus.COMPLETED_WITH_ERRORS and job.batches_failed == len(bad)
    assert job.batches_settled == job.batches_total == len(batches_of(services, job_id))
    report = summary(services, job)
    assert report["records"] == {
        "accepted": len(people),
        "uploaded": len(good),
        "refused": len(bad),
        "held": 0,
        "deferred": 0,
        "pending": 0,
    }
    assert sorted((r["auth_code"], r["reason"]) for r in report["refused_records"]) == sorted(
        (people[r][3], REFUSED) for r in bad
    )
    return upload_calls(sandbox)


def test_four_refused_rows_in_the_four_quarters_of_8_cost_only_those_rows(
    unit_sandbox: SandboxHandle,
) -> None:
    """Rows 0, 2, 4, 6: the batch, both halves and all four quarters refused, nothing accepted yet —
    four bad rows, not a refusal of the batch: the other four go through."""
    services = on_fakes(unit_sandbox)
    people = rows(8, 900)
    bad = [0, 2, 4, 6]
    unit_sandbox.refuse([people[r][3] for r in bad])
    result = drop(services, "lost-repair/four-quarters.csv", csv_bytes(people))
    deliver_all(services)
    assert assert_only_refused_rows_lost(services, unit_sandbox, result.job_id, people, bad) == 1 + 2 + 4 + 8


def test_more_refused_parts_than_rows_isolated_make_the_refusal_systematic(
    unit_sandbox: SandboxHandle,
) -> None:
    """``STATE0_BISECT_ISOLATE_ROWS=3``: four refused quarters, nothing accepted, rule out three
    refused rows: the quarters fail unsplit, after 7 calls."""
    services = on_fakes(unit_sandbox, STATE0_BISECT_ISOLATE_ROWS="3")
    people = rows(8, 900)
    unit_sandbox.refuse([people[r][3] for r in (0, 2, 4, 6)])
    result = drop(services, "lost-repair/four-quarters.csv", csv_bytes(people))
    deliver_all(services)
    assert charged(unit_sandbox) == [] and upload_calls(unit_sandbox) == 1 + 2 + 4
    failed = [b for b in batches_of(services, result.job_id) if b.status == BatchStatus.FAILED]
    assert [b.record_count for b in failed] == [2, 2, 2, 2]
    assert all(
        "STATE0_BISECT_ISOLATE_ROWS (3)" in b.last_error and "systematic" in b.last_error for b in failed
    )
    assert summary(services, job_of(services, result.job_id))["records"]["refused"] == 8


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("spread", list(SPREADS))
def test_up_to_eight_refused_rows_in_1000_cost_only_those_rows(
    unit_sandbox: SandboxHandle, spread: str, k: int
) -> None:
    services = on_fakes(unit_sandbox)
    people = rows(1000, 1000)
    bad = SPREADS[spread](k)
    assert len(set(bad)) == k and all(0 <= r < 1000 for r in bad)
    unit_sandbox.refuse([people[r][3] for r in bad])
    result = drop(services, f"lost-repair/{k}-refused-{spread}.csv", csv_bytes(people))
    assert [b.record_count for b in batches_of(services, result.job_id)] == [1000]  # one batch
    deliver_all(services)
    calls = assert_only_refused_rows_lost(services, unit_sandbox, result.job_id, people, bad)
    assert calls <= WORST_CALLS_IN_1000[k]
    if spread == "even":
        assert calls == WORST_CALLS_IN_1000[k]  # the worst case is met, not only bounded


def test_the_poller_redrives_a_deferred_batch_after_the_blackout(unit_sandbox: SandboxHandle) -> None:
    clock = FixedClock(datetime.fromisoformat("2026-12-27T00:00:00+08:00"))
    unit_sandbox.set_clock("2026-12-27T00:00:00+08:00")
    services = on_fakes(unit_sandbox, clock)
    people = rows(2, 600)
    result = drop(services, "lost-repair/late.csv", csv_bytes(people))
    [message] = take_messages(services)
    assert upload_batch(services, message, Delivery()) == "deferred"
    assert unit_sandbox.ledger() == []  # not even attempted
    job = job_of(services, result.job_id)
    assert (job.status, job.batches_deferred) == (JobStatus.DEFERRED, 1)
    assert [b.batch_id for b in services.jobs.batches_with_status(BatchStatus.DEFERRED)] == [message.batch_id]

    clock.move_to(datetime.fromisoformat("2026-12-31T23:59:00+08:00"))  # still in the blackout
    assert poll(services).batches_redriven == 0 and queue_of(services).bodies == []

    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))
    unit_sandbox.set_clock("2027-01-01T00:00:01+08:00")
    assert poll(services).batches_redriven == 1
    [again] = take_messages(services)
    assert (again.batch_id, again.claim_key) == (message.batch_id, message.claim_key) and again.generation > 0
    assert services.jobs.count_with_status(BatchStatus.DEFERRED) == 0
    assert job_of(services, result.job_id).status == JobStatus.UPLOADING
    assert upload_batch(services, again, Delivery()) == "succeeded"
    assert sorted(charged(unit_sandbox)) == sorted(sha256_hex(p[1]) for p in people)
    job = job_of(services, result.job_id)
    assert (job.status, job.batches_deferred, job.batches_succeeded) == (JobStatus.COMPLETED, 0, 1)


# ---- the resend ledger ------------------------------------------------------------------------


def test_the_resend_ledger_rejects_a_re_dropped_row_as_already_uploaded(unit_sandbox: SandboxHandle) -> None:
    services = on_fakes(unit_sandbox, RESEND_WINDOW="month")
    first_key, second_key = "lost-repair/march.csv", "lost-repair/march-fixed.csv"
    first = drop(services, first_key, csv_bytes(rows(3, 700)))
    assert deliver_all(services) == Counter(succeeded=1)

    second = drop(services, second_key, csv_bytes(rows(3, 702)))  # its first row is the first file's last
    assert second.outcome == "split"
    job = job_of(services, second.job_id)
    assert (job.rows_read, job.rows_accepted, job.rows_rejected, job.rows_already_uploaded) == (3, 2, 1, 1)
    assert rejected_rows(services, job) == []  # nothing to fix: the row is listed apart
    [already] = already_uploaded_rows(services, job)
    assert (already["row"], already["code"]) == ("2", "duplicate.already_uploaded")
    assert "march.csv" in already["en"] and first.job_id in already["en"]
    assert deliver_all(services) == Counter(succeeded=1)
    charges = Counter(charged(unit_sandbox))
    assert len(charges) == 5 and set(charges.values()) == {1}

    # the same file again, under another name: a duplicate job at once, nothing read or sent
    calls = upload_calls(unit_sandbox)
    same = drop(services, "lost-repair/march-again.csv", csv_bytes(rows(3, 700)))
    assert same.outcome == "duplicate_file"
    assert job_of(services, same.job_id).status == JobStatus.DUPLICATE
    assert batches_of(services, same.job_id) == [] and queue_of(services).bodies == []
    assert upload_calls(unit_sandbox) == calls


def test_a_corrected_sheet_lists_what_is_still_wrong_first_and_the_rows_already_uploaded_apart(
    unit_sandbox: SandboxHandle,
) -> None:
    """The fix loop (issue 25): the whole sheet dropped again once fixed. The rows fixed are sent, the
    rows sent before are not (nor charged), and the report leads with what is still to fix — not
    with thousands of "already uploaded" lines — and says all of it in one line."""
    services = on_fakes(unit_sandbox, RESEND_WINDOW="month")
    people = rows(20, 1200)

    def broken_check_digit(row: list[str]) -> list[str]:
        return [row[0], row[1][:-1] + ("0" if row[1][-1] != "0" else "1"), *row[2:]]

    first_sheet = [broken_check_digit(r) if i in (3, 11) else r for i, r in enumerate(people)]
    first_sheet[15] = [*people[15][:3], "K-15"]  # not an authCode
    first = drop(services, "lost-repair/customers.csv", csv_bytes(first_sheet))
    assert job_of(services, first.job_id).rows_accepted == 17
    assert deliver_all(services) == Counter(succeeded=1)
    assert summary(services, job_of(services, first.job_id))["headline"]["en"] == "17 sent, 3 to fix"

    fixed = [r if i in (3, 11) else first_sheet[i] for i, r in enumerate(people)]  # row 17 still wrong
    second = drop(services, "lost-repair/customers-fixed.csv", csv_bytes(fixed))
    assert deliver_all(services) == Counter(succeeded=1)
    job = job_of(services, second.job_id)
    assert (job.rows_read, job.rows_accepted, job.rows_rejected, job.rows_already_uploaded) == (20, 2, 18, 17)
    report = summary(services, job)
    assert report["headline"] == {
        "en": "2 sent, 17 already uploaded on 2026-11-25 in customers.csv (not charged again), 1 to fix",
        "zh": "已发送 2 行，17 行已于 2026-11-25 在 customers.csv 中上传过（不重复收费），1 行需修改",
    }
    assert report["rows_to_fix"] == 1
    assert report["already_uploaded_in"] == [
        {"file": "customers.csv", "date": "2026-11-25", "job_id": first.job_id, "rows": 17}
    ]
    assert [(c["code"], c["rows"]) for c in report["rejected_rows_by_code"]] == [
        ("duplicate.already_uploaded", 17),
        ("auth_code.format", 1),
    ]
    [to_fix] = rejected_rows(services, job)  # what the customer still has to fix, and nothing else
    assert (to_fix["row"], to_fix["code"], to_fix["授权码"]) == ("17", "auth_code.format", "**15")
    assert to_fix["zh"] == "授权码只能是 1 到 16 位英文字母或数字"
    already = already_uploaded_rows(services, job)
    assert len(already) == 17 and {r["code"] for r in already} == {"duplicate.already_uploaded"}
    assert sorted(int(r["row"]) for r in already) == [n + 2 for n in range(20) if n not in (3, 11, 15)]
    book = openpyxl.load_workbook(
        io.BytesIO(services.blobs.get(job.bucket, report["rejected_rows_workbook"])), read_only=True
    )
    sheets = [list(sheet.iter_rows(min_row=2, values_only=True)) for sheet in book.worksheets]
    assert [len(rows_of) for rows_of in sheets] == [1, 17]  # the rows to fix first
    assert sheets[0][0][:2] == (17, "auth_code.format")
    charges = Counter(charged(unit_sandbox))
    assert set(charges.values()) == {1} and len(charges) >= 19  # each person charged once


def at(clock: FixedClock, sandbox: SandboxHandle, instant: str) -> None:
    clock.move_to(datetime.fromisoformat(instant))
    sandbox.set_clock(instant)


def test_a_split_charged_in_the_next_cycle_counts_in_that_cycle_for_a_re_drop(
    unit_sandbox: SandboxHandle,
) -> None:
    """Split at 23:59:30 on the 26th, deferred at 00:00:01 on the 27th, re-driven and charged on the
    1st: a re-drop on the 10th (window from 27 November) must not pay for those rows again."""
    clock = FixedClock(datetime.fromisoformat("2026-11-26T23:59:30+08:00"))
    unit_sandbox.set_clock("2026-11-26T23:59:30+08:00")
    services = on_fakes(unit_sandbox, clock, RESEND_WINDOW="month")
    people = rows(3, 900)
    first = drop(services, "lost-repair/late-november.csv", csv_bytes(people))
    [message] = take_messages(services)
    at(clock, unit_sandbox, "2026-11-27T00:00:01+08:00")
    assert upload_batch(services, message, Delivery()) == "deferred"
    at(clock, unit_sandbox, "2026-12-01T00:00:01+08:00")
    assert poll(services).batches_redriven == 1
    assert deliver_all(services) == Counter(succeeded=1)
    assert sorted(charged(unit_sandbox)) == sorted(sha256_hex(p[1]) for p in people)

    at(clock, unit_sandbox, "2026-12-10T10:00:00+08:00")
    fixed = drop(services, "lost-repair/late-november-fixed.csv", csv_bytes([*people, *rows(1, 910)]))
    job = job_of(services, fixed.job_id)
    assert (job.rows_accepted, job.rows_already_uploaded) == (1, 3)
    reasons = {r["code"]: r["en"] for r in already_uploaded_rows(services, job)}
    assert "late-november.csv on 2026-12-01" in reasons["duplicate.already_uploaded"]
    assert deliver_all(services) == Counter(succeeded=1)
    # the identical file again: a duplicate of the split charged in this cycle, nothing read
    calls = upload_calls(unit_sandbox)
    same = drop(services, "lost-repair/late-november-again.csv", csv_bytes(people))
    assert (same.outcome, job_of(services, same.job_id).status) == ("duplicate_file", JobStatus.DUPLICATE)
    assert upload_calls(unit_sandbox) == calls
    assert set(Counter(charged(unit_sandbox)).values()) == {1}
    assert first.job_id in reasons["duplicate.already_uploaded"]


def test_a_split_charged_in_an_earlier_cycle_is_sent_again_in_the_next(unit_sandbox: SandboxHandle) -> None:
    """The window is the monthly cycle: what was charged on 20 November may be sent again on 10
    December, also when it was split earlier still (the ledger looks back, but only at charges)."""
    clock = FixedClock(datetime.fromisoformat("2026-11-20T10:00:00+08:00"))
    unit_sandbox.set_clock("2026-11-20T10:00:00+08:00")
    services = on_fakes(unit_sandbox, clock, RESEND_WINDOW="month")
    people = rows(2, 920)
    drop(services, "lost-repair/november.csv", csv_bytes(people))
    assert deliver_all(services) == Counter(succeeded=1)
    at(clock, unit_sandbox, "2026-12-10T10:00:00+08:00")
    again = drop(services, "lost-repair/november.csv", csv_bytes(people))  # identical, next cycle
    assert again.outcome == "split"
    assert job_of(services, again.job_id).rows_already_uploaded == 0
    assert deliver_all(services) == Counter(succeeded=1)
    assert set(Counter(charged(unit_sandbox)).values()) == {2}


# ---- two runs of one split (issue 24) -----------------------------------------------------------
#
# The same S3 event reaches two invocations (S3 delivers at least once, Lambda retries): run A and
# run B of one split. The interleavings are driven step by step: a port calls ``meanwhile`` once,
# at the moment named, in A's own call, and the other runs go to the end inside it.


class SteppedLedger(MemoryLedger):
    """The ledger as it is; ``meanwhile`` runs once, for the first split to get there: right after it
    has read the ledger (``at="read"``), or as it is about to record its file (``at="commit"``: it
    takes the lock)."""

    at = "commit"
    meanwhile: Callable[[], None] | None = None

    def _step(self, at: str) -> None:
        step = self.meanwhile if self.at == at else None
        if step is not None:
            self.meanwhile = None
            step()

    def list_since(self, first_day: date) -> list[LedgerObject]:
        listed = super().list_since(first_day)
        self._step("read")
        return listed

    def acquire(self, holder: str, now: datetime, lease_seconds: int, wait_seconds: float) -> None:
        self._step("commit")
        super().acquire(holder, now, lease_seconds, wait_seconds)


class SteppedJobs(MemoryJobStore):
    """The jobs store as it is; ``after_discard`` runs once, after the first batch it discards."""

    after_discard: Callable[[], None] | None = None

    def discard_staged(self, job_id: str, seq: int, now: datetime, run: int = 0) -> bool:
        discarded = super().discard_staged(job_id, seq, now, run)
        step = self.after_discard
        if discarded and step is not None:
            self.after_discard = None
            step()
        return discarded


class SteppedBlobs(MemoryBlobs):
    """The blobs as they are; ``meanwhile`` runs once, before the first object put under ``prefix``."""

    prefix = ""
    meanwhile: Callable[[], None] | None = None

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        step = self.meanwhile if self.prefix and key.startswith(self.prefix) else None
        if step is not None:
            self.meanwhile = None
            step()
        super().put(bucket, key, body, content_type)


class SteppedQueue(MemoryQueue):
    """The queue as it is; ``meanwhile`` runs once, before the first messages are sent."""

    meanwhile: Callable[[], None] | None = None

    def send_all(self, bodies: Sequence[str]) -> None:
        step, self.meanwhile = self.meanwhile, None
        if step is not None and bodies:
            step()
        super().send_all(bodies)


@dataclass
class TwoRuns:
    """Services whose ports let a test step between the runs of a split."""

    services: Services
    jobs: SteppedJobs
    ledger: SteppedLedger
    blobs: SteppedBlobs
    queue: SteppedQueue


def two_runs(sandbox: SandboxHandle, **settings: str) -> TwoRuns:
    """``TwoRuns`` with the resend ledger on (two files share a person)."""
    services = on_fakes(sandbox, RESEND_WINDOW="month", BATCH_MAX_RECORDS="2", **settings)
    jobs, blobs, queue = SteppedJobs(), SteppedBlobs(), SteppedQueue()
    ledger = SteppedLedger(blobs, services.settings.ingest_bucket)
    services.jobs, services.blobs, services.queue, services.ledger_factory = (
        jobs,
        blobs,
        queue,
        lambda: ledger,
    )
    return TwoRuns(services, jobs, ledger, blobs, queue)


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.005)


def assert_every_row_sent_once(services: Services, sandbox: SandboxHandle, people: list[list[str]]) -> None:
    """Every accepted row upstream exactly once, every job settled, no batch left unsent."""
    assert Counter(charged(sandbox)) == Counter(sha256_hex(p[1]) for p in people)
    for job in services.jobs.list_jobs():
        assert job.status == JobStatus.COMPLETED, (job.key, job.status, job.reason)
        statuses = {b.seq: b.status for b in batches_of(services, job.job_id)}
        assert set(statuses.values()) == {BatchStatus.SUCCEEDED}, (job.key, statuses)
        assert job.batches_succeeded == job.batches_total == len(statuses)


def test_a_run_taken_over_before_its_commit_leaves_the_batches_the_other_run_released(
    unit_sandbox: SandboxHandle,
) -> None:
    """Run A of x.csv has staged its batches and is about to record the file in the ledger; y.csv,
    which shares a person with it, records first; run B (the same event again) resumes the split,
    records x.csv and releases its batches. A then finds y.csv in the ledger: before issue 24 it
    discarded B's released batches (their messages became no-ops), staged them again without a
    message and failed at finish_split, and the retried event called it a duplicate — x.csv's rows
    were never sent and its job stayed uploading. A taken over now writes nothing more."""
    people = rows(5, 900)  # x.csv: 0-3, y.csv: 3-4
    x_key, y_key = "lost-repair/x.csv", "lost-repair/y.csv"
    steps = two_runs(unit_sandbox)
    services, jobs, ledger = steps.services, steps.jobs, steps.ledger
    x, y = put(services, x_key, csv_bytes(people[:4])), put(services, y_key, csv_bytes(people[3:]))
    others: dict[str, SplitResult] = {}

    def y_then_run_b() -> None:  # A is about to record x.csv
        others["y"] = split(services, y)
        others["b"] = split(services, x)

    ledger.meanwhile = y_then_run_b
    jobs.after_discard = lambda: deliver_all(services)  # the uploader at work as soon as A discards

    a = split(services, x)
    assert (others["y"].outcome, others["b"].outcome, a.outcome) == ("split", "split", "superseded")
    assert split(services, x).outcome == "duplicate"  # the event once more: nothing to do
    x_job = job_of(services, a.job_id)
    assert (x_job.rows_accepted, x_job.rows_already_uploaded, x_job.batches_total) == (3, 1, 2)
    deliver_all(services)
    assert_every_row_sent_once(services, unit_sandbox, people)


def test_a_run_taken_over_before_it_rejects_the_file_leaves_the_job_to_the_run_that_split_it(
    unit_sandbox: SandboxHandle,
) -> None:
    """Run A of x.csv finds more rows than MAX_ROWS_PER_FILE; run B, which started after y.csv
    recorded one of them, finds fewer and splits and releases the file first. Before issue 24 A
    discarded B's released batches and marked the job rejected, "nothing sent": the rows were never
    sent. A taken over now neither discards nor rejects."""
    people = rows(5, 950)  # x.csv: 0-3, y.csv: 3-4
    x_key, y_key = "lost-repair/x-cap.csv", "lost-repair/y-cap.csv"
    steps = two_runs(unit_sandbox, MAX_ROWS_PER_FILE="3")
    services, ledger = steps.services, steps.ledger
    x, y = put(services, x_key, csv_bytes(people[:4])), put(services, y_key, csv_bytes(people[3:]))
    others: dict[str, SplitResult] = {}

    def y_then_run_b() -> None:  # A has read the ledger
        others["y"] = split(services, y)
        others["b"] = split(services, x)

    ledger.at, ledger.meanwhile = "read", y_then_run_b
    a = split(services, x)
    assert (others["y"].outcome, others["b"].outcome, a.outcome) == ("split", "split", "superseded")
    x_job = job_of(services, a.job_id)
    assert (x_job.status, x_job.reason, x_job.rows_accepted) == (JobStatus.UPLOADING, "", 3)
    deliver_all(services)
    assert_every_row_sent_once(services, unit_sandbox, people)


def test_a_run_taken_over_while_a_body_is_in_flight_overwrites_nothing_the_other_run_released(
    unit_sandbox: SandboxHandle,
) -> None:
    """Run A of x.csv has staged batch 1 and is writing the body of batch 2 when y.csv records a
    person of batch 2 and run B splits and releases the file, with batch 2 one row shorter. A's
    late body lands under A's own name (``claims/<job>/<seq>.r<run>.json``), never over B's, and A's
    record of it is refused: what B released is what is sent."""
    people = rows(5, 1000)  # x.csv: 0-3, y.csv: 3-4
    steps = two_runs(unit_sandbox)
    services = steps.services
    x = put(services, "lost-repair/x-late.csv", csv_bytes(people[:4]))
    y = put(services, "lost-repair/y-late.csv", csv_bytes(people[3:]))
    x_job = DroppedObject.from_event_record(x["Records"][0]).job_id
    others: dict[str, SplitResult] = {}

    def y_then_run_b() -> None:
        wait_until("A's batch 1 staged", lambda: services.jobs.get_batch(x_job, 1) is not None)
        others["y"] = split(services, y)
        others["b"] = split(services, x)

    steps.blobs.prefix, steps.blobs.meanwhile = f"claims/{x_job}/00002.", y_then_run_b
    a = split(services, x)
    assert (others["y"].outcome, others["b"].outcome, a.outcome) == ("split", "split", "superseded")
    assert [(b.seq, b.record_count, b.split_run) for b in batches_of(services, x_job)] == [
        (1, 2, 2),
        (2, 1, 2),
    ]
    deliver_all(services)
    assert_every_row_sent_once(services, unit_sandbox, people)
    assert [k for (_, k) in blobs_of(services).objects if k.startswith(f"claims/{x_job}/")] == []


def test_two_runs_releasing_one_split_send_each_row_once_and_count_it_once(
    unit_sandbox: SandboxHandle,
) -> None:
    """Run A has split x.csv and is queueing its batches when run B (the same event) finds the job
    split but not released, and releases it too. Each batch is queued twice, each row sent once;
    the run that marked the release first is the one whose rows count in the metrics; its result
    holds the job's counts, not the job (issue 24)."""
    people = rows(4, 1100)
    steps = two_runs(unit_sandbox)
    services = steps.services
    x = put(services, "lost-repair/x-twice.csv", csv_bytes(people))
    others: dict[str, SplitResult] = {}
    steps.queue.meanwhile = lambda: others.setdefault("b", split(services, x))
    a = split(services, x)
    b = others["b"]
    assert (a.outcome, a.record_metrics, b.outcome, b.record_metrics) == ("split", False, "released", True)
    assert type(b.counts) is JobCounts and b.counts == a.counts
    assert (b.counts.rows_accepted, b.counts.batches_total) == (4, 2)
    assert deliver_all(services) == Counter(succeeded=4)  # two messages a batch: the second a no-op
    assert_every_row_sent_once(services, unit_sandbox, people)
    assert split(services, x) == SplitResult(a.job_id, "duplicate", job_of(services, a.job_id).counts())


def test_a_batch_whose_job_is_gone_is_not_settled_and_not_retried(unit_sandbox: SandboxHandle) -> None:
    """Issue 24: the settlement counts the batch on its job, conditional on the job. With the job
    item gone (deleted by hand) the transaction writes nothing — no fragment of a job item — and the
    uploader does not retry it for the rest of the invocation: ``SettleFailed``, the message back to
    SQS, the answer in the log."""
    services = on_fakes(unit_sandbox)
    result = drop(services, "lost-repair/orphan.csv", csv_bytes(rows(2, 1200)))
    [message] = take_messages(services)
    jobs = services.jobs
    assert isinstance(jobs, MemoryJobStore)
    del jobs.jobs[result.job_id]
    asked: list[float] = []

    def seconds_left() -> float:  # time for two more tries, if it were tried again
        asked.append(600.0 if len(asked) < 2 else 0.0)
        return asked[-1]

    with pytest.raises(SettleFailed):
        upload_batch(services, message, Delivery(seconds_left=seconds_left))
    assert len(asked) == 1 and upload_calls(unit_sandbox) == 1
    assert services.jobs.get_job(result.job_id) is None
    batch = services.jobs.get_batch(result.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.SENDING


def test_a_run_taken_over_records_nothing_in_the_ledger(unit_sandbox: SandboxHandle) -> None:
    """Run A of x.csv is about to record it in the resend ledger when run B (the same event) keeps
    A's batches, records the file and releases it. A, taken over, checks under the ledger's lock
    that it still owns the split, and writes nothing: the file's ledger object is B's, once."""
    people = rows(4, 1300)
    steps = two_runs(unit_sandbox)
    services = steps.services
    x = put(services, "lost-repair/x-record.csv", csv_bytes(people))
    others: dict[str, SplitResult] = {}
    steps.ledger.meanwhile = lambda: others.setdefault("b", split(services, x))
    a = split(services, x)
    assert (others["b"].outcome, a.outcome) == ("split", "superseded")
    assert [(b.seq, b.split_run) for b in batches_of(services, a.job_id)] == [(1, 2), (2, 2)]  # kept
    [recorded] = [o for o in steps.ledger.list_since(date(2026, 11, 1)) if o.job_id == a.job_id]
    assert len(blobs_of(services).objects[(services.settings.ingest_bucket, recorded.key)]) == 1
    deliver_all(services)
    assert_every_row_sent_once(services, unit_sandbox, people)
