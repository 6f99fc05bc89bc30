"""Re-dropping never pays twice (docs/decisions.md#resend-ledger).

The everyday workflow — fix the rejected rows in the original sheet, drop the whole sheet again —
must send only the rows that were not sent before within the resend window. Every test runs the
splitter over moto (S3, DynamoDB, SQS) and sends through the uploader to the sandbox, whose ledger
is what upstream received (= charged). ID numbers come from 1,400,000 on: no other test uses them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import datetime
from itertools import count

import boto3
import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import SettingsFactory, drain_queue
from tests.integration.test_splitter import csv_bytes, put, split, upload_all, valid_rows
from tests.reports import already_uploaded_rows, paths_of, rejected_rows, summary_of
from verifyfeed import aws
from verifyfeed.clock import FixedClock
from verifyfeed.logic.ledger import LedgerConflict, LedgerSession, ledger_key
from verifyfeed.logic.repair_batches import PySeenKeys, RepairBatch
from verifyfeed.logic.splitter import DroppedObject, SplitResult, split_object
from verifyfeed.logic.staging import BatchStager
from verifyfeed.logic.uploader import Delivery, upload_batch
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed.pii import Keyed
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services, build_services
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.ledger import LedgerStore

pytestmark = pytest.mark.integration

_NUMBERS = count(1_400_000, 10_000)  # a fresh block of ID numbers for every file set


def ledger_services(make_settings: SettingsFactory, clock: FixedClock, **env: str) -> Services:
    return build_services(make_settings(**{"RESEND_WINDOW": "month", **env}), clock)


def upload_jobs(services: Services, *job_ids: str) -> None:
    """Send every queued batch of these jobs through the uploader (one drain of the queue)."""
    for message in drain_queue(services.settings.work_queue_url):
        if message.get("job_id") in job_ids:
            outcome = upload_batch(services, LostRepairBatchMessage.model_validate(message), Delivery())
            assert outcome == "succeeded"


def charged_idcodes(sandbox: SandboxHandle) -> list[str]:
    """Every idcode upstream accepted (state 1 = charged), once per charge."""
    return [
        record["idcode"]
        for entry in sandbox.ledger()
        if entry.endpoint.endswith("lost_repair_upload_data") and entry.accepted
        for record in entry.records
    ]


def created_job(services: Services, clock: FixedClock, job_id: str, key: str, status: JobStatus) -> Job:
    """A lost-repair job record in the ingest bucket, as the splitter creates one."""
    job = Job(
        job_id=job_id,
        kind=JobKind.LOST_REPAIR,
        bucket=services.settings.ingest_bucket,
        key=key,
        status=status,
        created_at=clock.now().isoformat(),
    )
    assert services.jobs.create_job(job)
    return job


def key_for(name: str) -> str:
    return f"lost-repair/{name}-{uuid.uuid4().hex[:6]}.csv"


def test_a_corrected_file_re_dropped_sends_only_the_new_rows(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    start = next(_NUMBERS)
    good = valid_rows(1200, start)
    # three rows with an impossible birth month (13): rejected, then corrected in the sheet
    broken = [["张三", r[1][:10] + "13" + r[1][12:], "", f"B{n:07d}"] for n, r in enumerate(good[:3])]
    fixed = valid_rows(3, start + 1500)  # the operator's corrections: three new, valid people
    first_key = key_for("march")
    first = split(services, put(services, first_key, csv_bytes([*good, *broken])))
    assert (first.counts.rows_accepted, first.counts.rows_rejected) == (1200, 3)
    upload_all(services, first.job_id)

    second_key = key_for("march-fixed")
    second = split(services, put(services, second_key, csv_bytes([*good, *fixed])))
    assert second.outcome == "split"
    job = services.jobs.get_job(second.job_id)
    assert job is not None
    assert (job.rows_read, job.rows_accepted, job.rows_rejected, job.rows_already_uploaded) == (
        1203,
        3,
        1200,
        1200,
    )
    sent = upload_all(services, second.job_id)
    assert len(sent) == 1  # three records: one batch, not 2 batches of the old sizes
    charged = Counter(charged_idcodes(sandbox))
    assert all(n == 1 for n in charged.values()), "a record was charged twice"
    assert len(charged) == 1203
    assert rejected_rows(services, job) == []  # nothing left to fix: not buried under 1,200 lines
    reasons = [r for r in already_uploaded_rows(services, job) if r["code"] == "duplicate.already_uploaded"]
    assert len(reasons) == 1200
    filename = first_key.rsplit("/", 1)[-1]
    assert all(filename in r["en"] and "2026-" in r["en"] and filename in r["zh"] for r in reasons)
    assert first.job_id in reasons[0]["en"]
    day = reasons[0]["en"].split(" on ")[1][:10]
    assert summary_of(services, job)["headline"]["en"] == (
        f"3 sent, 1,200 already uploaded on {day} in {filename} (not charged again), 0 to fix"
    )


def test_an_identical_file_is_a_duplicate_job_at_once(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    data = csv_bytes(valid_rows(40, next(_NUMBERS)))
    first = split(services, put(services, key_for("april"), data))
    upload_all(services, first.job_id)
    before = len(sandbox.ledger())
    again = split(services, put(services, key_for("april-again"), data))
    assert again.outcome == "duplicate_file"
    job = services.jobs.get_job(again.job_id)
    assert job is not None and job.status == JobStatus.DUPLICATE
    assert first.job_id in job.reason and "resend/" in job.reason
    assert list(services.jobs.batches(again.job_id)) == []
    assert [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == again.job_id] == []
    assert len(sandbox.ledger()) == before


def test_the_same_file_dropped_again_keeps_the_first_job_s_reports(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Issue 25: a second upload of a file (here identical: a duplicate job) has reports of its own,
    under its job; the first upload's report still says what happened to the first upload."""
    services = ledger_services(make_settings, clock)
    key = key_for("big3000")
    data = csv_bytes([*valid_rows(30, next(_NUMBERS)), ["张三", "1.10105E+17", "", "X1"]])
    first = split(services, put(services, key, data))
    upload_all(services, first.job_id)
    again = split(services, put(services, key, data))
    assert again.outcome == "duplicate_file"
    jobs = {j.job_id: j for j in services.jobs.find_jobs(key)}
    assert set(jobs) == {first.job_id, again.job_id}
    one, two = paths_of(services, jobs[first.job_id]), paths_of(services, jobs[again.job_id])
    assert one.summary == f"reports/{key}/{first.job_id}.json" and set(one.all()).isdisjoint(two.all())
    original, duplicate = summary_of(services, jobs[first.job_id]), summary_of(services, jobs[again.job_id])
    assert (original["job_id"], original["status"], original["rows_accepted"]) == (
        first.job_id,
        "completed",
        30,
    )
    assert (duplicate["job_id"], duplicate["status"]) == (again.job_id, "duplicate")
    assert duplicate["reason_code"] == "file.identical" and duplicate["reason_zh"].startswith("与 ")
    assert [r["code"] for r in rejected_rows(services, jobs[first.job_id])] == ["id_number.excel_number"]


def test_records_of_a_failed_batch_are_sent_again_by_a_re_drop(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """state "0" charges nothing: those records are not "already uploaded"."""
    services = ledger_services(make_settings, clock, BATCH_MAX_RECORDS="1", STATE0_MAX_ATTEMPTS="1")
    rows = valid_rows(4, next(_NUMBERS))
    first = split(services, put(services, key_for("may"), csv_bytes(rows)))
    messages = {
        m.seq: m
        for m in (
            LostRepairBatchMessage.model_validate(b)
            for b in drain_queue(services.settings.work_queue_url)
            if b.get("job_id") == first.job_id
        )
    }
    assert sorted(messages) == [1, 2, 3, 4]
    for seq in (1, 3, 4):
        assert upload_batch(services, messages[seq], Delivery()) == "succeeded"
    sandbox.set_faults({"state0": True})
    outcome = upload_batch(services, messages[2], Delivery())
    sandbox.set_faults([])
    batch = services.jobs.get_batch(first.job_id, 2)
    assert batch is not None and batch.status == BatchStatus.FAILED, outcome

    second = split(
        services, put(services, key_for("may-again"), csv_bytes([*rows, *valid_rows(1, 1_399_999)]))
    )
    assert second.counts.rows_accepted == 2  # batch 2's record again, and the new row
    assert second.counts.rows_already_uploaded == 3  # batches 1, 3 and 4
    upload_jobs(services, second.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert {sha256_hex(r[1]) for r in rows} <= set(charged)
    assert all(n == 1 for n in charged.values())


def test_the_window_ends_with_the_monthly_cycle_and_can_be_days_or_off(
    make_settings: SettingsFactory, sandbox: SandboxHandle
) -> None:
    rows = valid_rows(5, next(_NUMBERS))
    clock = FixedClock(datetime.fromisoformat("2027-01-10T10:00:00+08:00"))
    services = ledger_services(make_settings, clock)
    first = split(services, put(services, key_for("jan"), csv_bytes(rows)))
    assert first.counts.rows_accepted == 5
    sandbox.set_clock("2027-01-10T10:00:00+08:00")
    upload_all(services, first.job_id)  # charged on 10 January (a batch never sent counts until it is)
    # within the cycle: a re-drop sends nothing again
    clock.move_to(datetime.fromisoformat("2027-01-26T23:00:00+08:00"))
    assert split(services, put(services, key_for("jan-b"), csv_bytes(rows[:4]))).counts.rows_accepted == 0
    # dropped in the blackout, sent from 1 February: still the same cycle
    clock.move_to(datetime.fromisoformat("2027-01-28T09:00:00+08:00"))
    assert split(services, put(services, key_for("jan-c"), csv_bytes(rows[:3]))).counts.rows_accepted == 0
    # the next cycle (from the blackout day on, 27 January) sends what was charged before it again
    clock.move_to(datetime.fromisoformat("2027-02-02T09:00:00+08:00"))
    february = split(services, put(services, key_for("feb"), csv_bytes(rows[:2])))
    assert february.counts.rows_accepted == 2
    sandbox.set_clock("2027-02-02T09:00:00+08:00")
    upload_all(services, february.job_id)  # charged on 2 February
    # ... but not what a file dropped in January's blackout sent in February (rows 0-2 were rejected
    # then, so that file sent nothing: the February file above is what counts)
    three_days = ledger_services(make_settings, clock, RESEND_WINDOW="3d")
    clock.move_to(datetime.fromisoformat("2027-02-04T09:00:00+08:00"))
    assert split(three_days, put(three_days, key_for("d3"), csv_bytes(rows[:2]))).counts.rows_accepted == 0
    clock.move_to(datetime.fromisoformat("2027-02-05T09:00:00+08:00"))
    assert split(three_days, put(three_days, key_for("d3b"), csv_bytes(rows[:2]))).counts.rows_accepted == 2
    off = build_services(make_settings(RESEND_WINDOW="off"), clock)
    assert split(off, put(off, key_for("off"), csv_bytes(rows))).counts.rows_accepted == 5
    drain_queue(services.settings.work_queue_url)


def test_the_override_prefix_sends_the_whole_file_and_records_it(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    rows = valid_rows(6, next(_NUMBERS))
    first = split(services, put(services, key_for("june"), csv_bytes(rows)))
    upload_all(services, first.job_id)
    forced = split(
        services, put(services, f"lost-repair/resend/june-{uuid.uuid4().hex[:6]}.csv", csv_bytes(rows))
    )
    assert (forced.counts.rows_accepted, forced.counts.rows_already_uploaded) == (6, 0)
    upload_all(services, forced.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert {charged[sha256_hex(r[1])] for r in rows} == {2}  # the operator asked for it
    # and what the override sent is in the ledger like anything else
    later = split(services, put(services, key_for("june-later"), csv_bytes(rows[:1])))
    assert (later.counts.rows_accepted, later.counts.rows_already_uploaded) == (0, 1)
    listed = boto3.client("s3").list_objects_v2(Bucket=services.settings.ingest_bucket, Prefix="ledger/")
    assert [o for o in listed.get("Contents", []) if forced.job_id in o["Key"]] != []


def test_a_dry_run_reports_rows_already_uploaded_and_records_nothing(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    rows = valid_rows(8, next(_NUMBERS))
    first = split(services, put(services, key_for("july"), csv_bytes(rows[:5])))
    upload_all(services, first.job_id)
    plan = split(
        services, put(services, f"dry-run/lost-repair/july-{uuid.uuid4().hex[:6]}.csv", csv_bytes(rows))
    )
    assert plan.outcome == "dry_run"
    assert (plan.counts.rows_accepted, plan.counts.rows_already_uploaded) == (3, 5)
    # the dry run recorded nothing: a real drop of the same rows still sends the three
    real = split(services, put(services, key_for("july-real"), csv_bytes(rows)))
    assert (real.counts.rows_accepted, real.counts.rows_already_uploaded) == (3, 5)


def test_two_overlapping_files_split_at_the_same_time_send_each_record_once(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    start = next(_NUMBERS)
    shared = valid_rows(600, start)
    a = [*shared, *valid_rows(300, start + 600)]
    b = [*valid_rows(300, start + 900)[::-1], *shared[::-1]]  # the same people, another order
    events = [put(services, key_for("team-a"), csv_bytes(a)), put(services, key_for("team-b"), csv_bytes(b))]
    results: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = split_object(services, DroppedObject.from_event_record(events[i]["Records"][0]))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(not isinstance(r, Exception) and r is not None for r in results), results
    jobs = [r.job_id for r in results]  # type: ignore[union-attr]
    upload_jobs(services, *jobs)
    charged = Counter(charged_idcodes(sandbox))
    everyone = {sha256_hex(r[1]) for r in [*a, *b]}
    assert {c: n for c, n in charged.items() if c in everyone and n != 1} == {}
    assert everyone <= set(charged)  # and no one lost
    done = [services.jobs.get_job(j) for j in jobs]
    assert sorted(j.rows_already_uploaded for j in done if j is not None) in ([0, 600], [0, 0])
    assert sum(j.rows_accepted for j in done if j is not None) == 1200


def test_a_split_that_a_concurrent_commit_overtook_starts_over(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """The conflict check itself, step by step: two sessions read the ledger, one commits first."""
    services = ledger_services(make_settings, clock)
    key = ledger_key(services.secrets.identity_pepper())
    today = clock.now().date()

    def session(job_id: str) -> LedgerSession:
        job = created_job(services, clock, job_id, f"lost-repair/{job_id}.csv", JobStatus.UPLOADING)
        return LedgerSession(
            services.ledger,
            services.jobs,
            key,
            job,
            today.replace(day=1),
            today,
            services.blobs,
            services.settings.ingest_bucket,
        )

    digests = [bytes.fromhex(sha256_hex(r[1])) for r in valid_rows(3, next(_NUMBERS))]
    first, second = session(uuid.uuid4().hex[:24]), session(uuid.uuid4().hex[:24])
    ids_first, ids_second = PySeenKeys(hmac_key=key), PySeenKeys(hmac_key=key)
    first.preload(ids_first)
    second.preload(ids_second)
    for ids, marked in ((ids_first, digests[:2]), (ids_second, digests[1:])):  # digest 1 in both
        for row, digest in enumerate(marked, start=1):
            ids.mark(ids.key(digest), row)
    first.record(*ids_first.export([2], 1 << 40))
    second.record(*ids_second.export([2], 1 << 40))
    first.commit(clock.now(), 5)
    with pytest.raises(LedgerConflict):
        second.commit(clock.now(), 5)
    # the lock was released both times: a third session commits at once
    third = session(uuid.uuid4().hex[:24])
    third.preload(PySeenKeys(hmac_key=key))
    third.record(b"", [])
    third.commit(clock.now(), 1)


def test_the_ledger_holds_keyed_digests_only(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    rows = valid_rows(20, next(_NUMBERS))
    result = split(services, put(services, key_for("keys"), csv_bytes(rows)))
    drain_queue(services.settings.work_queue_url)
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=services.settings.ingest_bucket, Prefix="ledger/")
    mine = [o["Key"] for o in listed.get("Contents", []) if result.job_id in o["Key"]]
    assert len(mine) == 1
    body = s3.get_object(Bucket=services.settings.ingest_bucket, Key=mine[0])["Body"].read()
    pepper = services.secrets.identity_pepper()
    assert isinstance(pepper, Keyed)
    for row in rows:
        digest = bytes.fromhex(sha256_hex(row[1]))
        assert (
            digest[:8] not in body and row[1].encode() not in body and digest.hex()[:16].encode() not in body
        )
    assert len(body.partition(b"\n")[2]) == 20 * 16  # one 16-byte key a record


def test_a_resumed_split_restages_what_the_ledger_now_holds(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A split interrupted after staging, resumed after an overlapping file was sent: its batches are
    staged again from the ledger as it is now, and the interrupted run's extra batch is discarded."""
    services = ledger_services(make_settings, clock, BATCH_MAX_RECORDS="5")
    rows = valid_rows(10, next(_NUMBERS))
    key = key_for("resume")
    event = put(services, key, csv_bytes(rows))
    dropped = DroppedObject.from_event_record(event["Records"][0])
    # the interrupted run: the job is splitting, two batches of five were staged
    first = split(services, put(services, key_for("resume-first"), csv_bytes(rows[:5])))
    assert first.counts.rows_accepted == 5
    job = created_job(services, clock, dropped.job_id, dropped.key, JobStatus.SPLITTING)
    run = services.jobs.take_split(job.job_id)
    assert run == 1
    stager = BatchStager(services, job, run, resuming=False)  # the stager the interrupted run used
    stager(RepairBatch(1, 5, b"[]"))
    stager(RepairBatch(2, 5, b"[]"))
    stager.wait()
    resumed = split_object(services, dropped)
    assert (resumed.counts.rows_accepted, resumed.counts.rows_already_uploaded) == (5, 5)
    statuses = {b.seq: b.status for b in services.jobs.batches(dropped.job_id)}
    assert statuses[2] == BatchStatus.DISCARDED and statuses[1] != BatchStatus.DISCARDED
    upload_jobs(services, first.job_id, resumed.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert {charged[sha256_hex(r[1])] for r in rows} == {1}


def test_a_lock_left_by_a_dead_split_expires(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = ledger_services(make_settings, clock)
    store = services.ledger
    store.acquire("dead-split", clock.now(), 120, 1)
    with pytest.raises(Exception, match="lock stayed held"):
        store.acquire("another", clock.now(), 120, 0.2)
    later = datetime.fromtimestamp(clock.now().timestamp() + 121, tz=clock.now().tzinfo)
    store.acquire("another", later, 120, 1)
    store.release("another")


class _Killed(Exception):
    """The splitter's process died (a Lambda timeout)."""


def test_a_split_resumed_from_the_same_ledger_keeps_what_it_staged(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """The checkpoint: batches staged by the interrupted run from the same ledger are not written
    again (one version of their body in the versioned bucket); the rest are, and all is sent once."""
    services = ledger_services(make_settings, clock, BATCH_MAX_RECORDS="10")
    rows = valid_rows(50, next(_NUMBERS))
    event = put(services, key_for("killed"), csv_bytes(rows))
    dropped = DroppedObject.from_event_record(event["Records"][0])

    class DiesOnThirdBody(S3Blobs):
        """S3 as it is, but the process dies writing the third batch body (through Services)."""

        bodies = 0

        def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
            if key.startswith("claims/"):
                self.bodies += 1
                if self.bodies == 3:
                    raise _Killed("killed while staging batch 3")
            super().put(bucket, key, body, content_type)

    services.blobs = DiesOnThirdBody()
    with pytest.raises(_Killed):
        split_object(services, dropped)
    services.blobs = S3Blobs()  # the retried event: a new process
    kept = {b.seq for b in services.jobs.batches(dropped.job_id) if b.status == BatchStatus.STAGED}
    assert kept and len(kept) < 5

    again = split_object(services, dropped)
    assert again.outcome == "split" and again.counts.rows_accepted == 50
    s3 = boto3.client("s3")
    for seq in range(1, 6):
        versions = s3.list_object_versions(
            Bucket=services.settings.ingest_bucket,
            Prefix=f"claims/{dropped.job_id}/{seq:05d}.",  # any run's
        ).get("Versions", [])
        assert len(versions) == 1, (seq, seq in kept)  # staged once, by one run or the other
    upload_jobs(services, again.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert {charged[sha256_hex(r[1])] for r in rows} == {1}


def test_records_of_a_failed_part_of_a_split_batch_are_sent_again(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A batch the upstream refused is split to find the refused rows (docs/decisions.md#state-0):
    a part that ends ``failed`` is a batch the file's ledger object does not list; its records are
    read from its body and are not "already uploaded"."""
    services = ledger_services(make_settings, clock)
    rows = valid_rows(4, next(_NUMBERS))
    first = split(services, put(services, key_for("parts"), csv_bytes(rows)))
    drain_queue(services.settings.work_queue_url)
    refused = [
        {"name": r[0], "idcode": sha256_hex(r[1]), "usedPhone": "", "authCode": r[3]} for r in rows[2:]
    ]
    part_key = f"claims/{first.job_id}/01001.json"
    boto3.client("s3").put_object(
        Bucket=services.settings.ingest_bucket, Key=part_key, Body=json.dumps(refused).encode()
    )
    services.jobs.put_batch_if_absent(
        Batch(
            job_id=first.job_id,
            seq=1001,
            batch_id=f"{first.job_id}-part",
            status=BatchStatus.FAILED,
            record_count=2,
            claim_bucket=services.settings.ingest_bucket,
            claim_key=part_key,
        )
    )
    again = split(services, put(services, key_for("parts-again"), csv_bytes(rows[::-1])))  # not identical
    assert (again.counts.rows_accepted, again.counts.rows_already_uploaded) == (2, 2)
    sent = [
        r["idcode"]
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == again.job_id
        for r in json.loads(
            boto3.client("s3")
            .get_object(Bucket=services.settings.ingest_bucket, Key=m["claim_key"])["Body"]
            .read()
        )
    ]
    assert sorted(sent) == sorted(r["idcode"] for r in refused)


def test_a_row_the_upstream_refused_is_sent_again_by_a_re_drop_and_nothing_else(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Bisection and the ledger together: the one refused row of 40 ends alone in a failed half; the
    corrected sheet re-dropped sends that row only (its record was never charged)."""
    from tests.reliability.test_bisection import run_job

    services = ledger_services(make_settings, clock)
    rows = valid_rows(40, next(_NUMBERS))
    refused = sha256_hex(rows[17][1])
    sandbox.refuse([refused], "姓名不符")
    first = split(services, put(services, key_for("refused"), csv_bytes(rows)))
    run_job(services, first.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert refused not in charged and len(charged) == 39
    assert [b.seq for b in services.jobs.batches(first.job_id) if b.status == BatchStatus.FAILED] != []

    sandbox.refuse({}, "")  # the upstream takes it now (the operator fixed the name with them)
    again = split(services, put(services, key_for("refused-fixed"), csv_bytes(rows[::-1])))
    assert (again.counts.rows_accepted, again.counts.rows_already_uploaded) == (1, 39)
    upload_jobs(services, again.job_id)
    charged = Counter(charged_idcodes(sandbox))
    assert charged[refused] == 1 and set(charged.values()) == {1} and len(charged) == 40


def test_two_runs_of_one_split_send_every_row_once(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """Issue 24's interleaving on the stack's stores (on the fakes, with others:
    tests/unit/test_lost_repair_on_fakes.py): run A of x.csv is about to record it in the ledger;
    y.csv, which shares a person with it, records first; run B (the same event again) resumes the
    split, records x.csv and releases it. A, taken over, stops: B's released batches are left as
    they are, and every row is sent once."""
    services = ledger_services(make_settings, clock, BATCH_MAX_RECORDS="2")
    settings = services.settings
    rows = valid_rows(5, next(_NUMBERS))  # x.csv: 0-3, y.csv: 3-4
    x = put(services, key_for("x-two-runs"), csv_bytes(rows[:4]))
    y = put(services, key_for("y-two-runs"), csv_bytes(rows[3:]))
    others: dict[str, SplitResult] = {}

    class OthersFirst(LedgerStore):
        """The stack's ledger; the first split about to record its file lets y.csv and run B go first."""

        pending = True

        def acquire(self, holder: str, now: datetime, lease_seconds: int, wait_seconds: float) -> None:
            if self.pending:
                self.pending = False
                others["y"], others["b"] = split(services, y), split(services, x)
            super().acquire(holder, now, lease_seconds, wait_seconds)

    ledger = OthersFirst(
        settings.ingest_bucket, settings.ledger_prefix, settings.jobs_table, aws.s3(), aws.dynamodb()
    )
    services.ledger_factory = lambda: ledger
    a = split(services, x)
    assert (others["y"].outcome, others["b"].outcome, a.outcome) == ("split", "split", "superseded")
    batches = list(services.jobs.batches(a.job_id))
    assert [(b.seq, b.status, b.record_count, b.split_run) for b in batches] == [
        (1, BatchStatus.STAGED, 2, 2),
        (2, BatchStatus.STAGED, 1, 2),
    ]
    upload_jobs(services, a.job_id, others["y"].job_id)
    assert Counter(charged_idcodes(sandbox)) == Counter(sha256_hex(r[1]) for r in rows)
    for job_id in (a.job_id, others["y"].job_id):
        job = services.jobs.get_job(job_id)
        assert job is not None and job.status == JobStatus.COMPLETED
