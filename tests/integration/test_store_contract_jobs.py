"""The jobs store and the resend ledger's store: one contract, two implementations.

Every test runs on the AWS adapters against the moto server (``JobStore`` on a fresh copy of the
stack's jobs table, ``LedgerStore`` on the stack's bucket under a prefix of its own and that table)
and on the in-memory fakes unit tests use (``tests/fakes/jobs.py``), and asserts the same answers
on both: what each call returns or raises, the counters, the listings. They keep the fakes honest.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from hashlib import md5
from pathlib import Path

import boto3
import pytest

from tests.fakes import MemoryBlobs
from tests.fakes.jobs import MemoryJobStore, MemoryLedger
from tests.integration.conftest import fresh_audits_table
from verifyfeed import aws
from verifyfeed.models.ids import batch_id, claim_key, tree_seq
from verifyfeed.models.ledger import KEY_BYTES, LedgerEntry
from verifyfeed.models.records import Batch, BatchStatus, Job, JobCounts, JobKind, JobStatus, Redrive
from verifyfeed.ports import (
    Blobs,
    JobMissing,
    JobRepository,
    Ledger,
    LedgerBusy,
    SplitSuperseded,
    StaleTransition,
    StoreError,
)
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.jobs import JobStore
from verifyfeed.store.ledger import LedgerStore

pytestmark = pytest.mark.integration
T0 = datetime.fromisoformat("2026-11-25T10:00:00+08:00")


@dataclass
class Side:
    jobs: JobRepository
    ledger: Ledger
    blobs: Blobs
    bucket: str


@pytest.fixture(params=["aws", "memory"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    prefix = f"ledger-{uuid.uuid4().hex[:8]}/"
    if request.param == "memory":
        blobs = MemoryBlobs()
        yield Side(MemoryJobStore(), MemoryLedger(blobs, "contract-bucket", prefix), blobs, "contract-bucket")
        return
    stack = request.getfixturevalue("stack")
    # a table of the jobs table's keys and indexes, empty: the listings across jobs see only this test
    table = fresh_audits_table(stack.function_env["JOBS_TABLE"])
    bucket = stack.function_env["INGEST_BUCKET"]
    try:
        ledger = LedgerStore(bucket, prefix, table, aws.s3(), aws.dynamodb())
        yield Side(JobStore(table, aws.dynamodb()), ledger, S3Blobs(), bucket)
    finally:
        boto3.client("dynamodb").delete_table(TableName=table)


def a_job(
    jobs: JobRepository, job_id: str = "", *, key: str = "", created: datetime = T0, total: int = 0
) -> Job:
    """A job as the splitter leaves it: created, then its split finished (``total`` batches)."""
    job_id = job_id or uuid.uuid4().hex[:24]
    job = Job(
        job_id=job_id,
        kind=JobKind.LOST_REPAIR,
        bucket="b",
        key=key or f"lost-repair/{job_id}.csv",
        status=JobStatus.SPLITTING,
        created_at=created.isoformat(),
    )
    assert jobs.create_job(job)
    if total:
        jobs.finish_split(job_id, JobCounts(rows_read=total, rows_accepted=total, batches_total=total), T0)
    return job


def a_batch(job_id: str, seq: int, status: BatchStatus = BatchStatus.QUEUED, count: int = 1) -> Batch:
    return Batch(job_id=job_id, seq=seq, batch_id=batch_id(job_id, seq), status=status, record_count=count)


def got_job(jobs: JobRepository, job_id: str) -> Job:
    job = jobs.get_job(job_id)
    assert job is not None
    return job


def got_batch(jobs: JobRepository, job_id: str, seq: int) -> Batch:
    batch = jobs.get_batch(job_id, seq)
    assert batch is not None
    return batch


def counters(job: Job) -> tuple[int, ...]:
    return (
        job.batches_total,
        job.batches_succeeded,
        job.batches_failed,
        job.batches_deferred,
        job.batches_unknown,
        job.batches_bisected,
    )


@pytest.mark.parametrize("port", [JobRepository, Ledger])
def test_every_method_of_the_ports_is_called_in_this_contract(port: type) -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    methods = [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]
    assert len(methods) >= 8  # the ledger has 8, the job repository 21
    assert [m for m in methods if f".{m}(" not in source] == []


# ---- jobs -------------------------------------------------------------------------------


def test_a_job_is_created_once_and_read_back_as_written(side: Side) -> None:
    job = a_job(side.jobs)
    assert side.jobs.create_job(job.model_copy(update={"key": "lost-repair/other.csv"})) is False
    assert side.jobs.get_job(job.job_id) == job
    assert side.jobs.get_job("no-such-job") is None


def test_jobs_are_listed_newest_first_and_found_by_key_or_by_name(side: Side) -> None:
    old = a_job(side.jobs, key="lost-repair/list.csv", created=T0)
    new = a_job(side.jobs, key="lost-repair/list.csv", created=T0 + timedelta(hours=1))
    other = a_job(side.jobs, key="carrier-audit/list.csv", created=T0 + timedelta(minutes=1))
    a_job(side.jobs, key="lost-repair/mylist.csv", created=T0 + timedelta(minutes=2))
    assert [j.job_id for j in side.jobs.list_jobs()][:1] == [new.job_id]
    assert len(side.jobs.list_jobs()) == 4 and len(side.jobs.list_jobs(limit=2)) == 2
    assert [j.created_at for j in side.jobs.list_jobs()] == sorted(
        (j.created_at for j in side.jobs.list_jobs()), reverse=True
    )
    assert [j.job_id for j in side.jobs.find_jobs("lost-repair/list.csv")] == [new.job_id, old.job_id]
    # a bare name matches it under any prefix, and not a name that merely ends with it
    assert [j.job_id for j in side.jobs.find_jobs("list.csv")] == [new.job_id, other.job_id, old.job_id]
    assert side.jobs.find_jobs("lost-repair/nothing.csv") == [] and side.jobs.find_jobs("ist.csv") == []


def test_a_split_finishes_once_from_splitting(side: Side) -> None:
    job = a_job(side.jobs)
    counts = JobCounts(
        rows_read=5, rows_accepted=3, rows_rejected=2, rows_already_uploaded=1, batches_total=2
    )
    side.jobs.finish_split(job.job_id, counts, T0)
    got = got_job(side.jobs, job.job_id)
    assert got.status == JobStatus.UPLOADING and got.updated_at == "2026-11-25T10:00:00.000+08:00"
    assert (got.rows_read, got.rows_accepted, got.rows_rejected, got.rows_already_uploaded) == (5, 3, 2, 1)
    assert got.batches_total == 2
    with pytest.raises(SplitSuperseded):  # finished: no run of its split may finish it again
        side.jobs.finish_split(job.job_id, counts, T0)
    with pytest.raises(JobMissing) as missing:
        side.jobs.finish_split("no-such-job", counts, T0)
    assert isinstance(missing.value, StoreError) and missing.value.code == "ConditionalCheckFailedException"


def test_the_job_status_moves_only_from_an_expected_one(side: Side) -> None:
    job = a_job(side.jobs, total=1)
    later = T0 + timedelta(minutes=5)
    assert side.jobs.set_job_status(job.job_id, JobStatus.COMPLETED, {JobStatus.SPLITTING}, later) is False
    assert got_job(side.jobs, job.job_id).status == JobStatus.UPLOADING
    expected = {JobStatus.UPLOADING, JobStatus.DEFERRED}
    assert side.jobs.set_job_status(job.job_id, JobStatus.COMPLETED, expected, later) is True
    got = got_job(side.jobs, job.job_id)
    assert got.status == JobStatus.COMPLETED and got.updated_at == "2026-11-25T10:05:00.000+08:00"
    assert side.jobs.set_job_status("no-such-job", JobStatus.COMPLETED, expected, later) is False
    with pytest.raises(StoreError):  # no status expected: a request the database refuses
        side.jobs.set_job_status(job.job_id, JobStatus.UPLOADING, set(), later)
    assert got_job(side.jobs, job.job_id).status == JobStatus.COMPLETED


def test_a_rejected_job_keeps_its_reason_counts_release_and_report(side: Side) -> None:
    job = a_job(side.jobs)
    side.jobs.reject_job(job.job_id, "header: no ID column", JobCounts(rows_read=7, rows_rejected=7), T0)
    assert side.jobs.mark_released(job.job_id, T0) is True
    assert side.jobs.mark_released(job.job_id, T0 + timedelta(minutes=1)) is False  # released already
    side.jobs.set_report_key(job.job_id, "reports/x.summary.json")
    got = got_job(side.jobs, job.job_id)
    assert (got.status, got.reason, got.rows_read, got.rows_rejected) == (
        JobStatus.REJECTED,
        "header: no ID column",
        7,
        7,
    )
    assert (got.released_at, got.report_key) == ("2026-11-25T10:00:00.000+08:00", "reports/x.summary.json")
    other = a_job(side.jobs)
    side.jobs.reject_job(other.job_id, "same as j1", JobCounts(), T0, status=JobStatus.DUPLICATE)
    assert got_job(side.jobs, other.job_id).status == JobStatus.DUPLICATE
    with pytest.raises(SplitSuperseded):  # rejected: no run of its split may reject it again
        side.jobs.reject_job(other.job_id, "again", JobCounts(), T0)


def test_writes_to_a_job_that_is_not_there_write_nothing(side: Side) -> None:
    """Issue 24: a bare update of a missing job item would create a fragment of one (its report key,
    its release, a counter) that get_job could not read. Each write is conditional on the job."""
    ghost = "no-such-job-" + uuid.uuid4().hex[:8]
    with pytest.raises(JobMissing):
        side.jobs.mark_released(ghost, T0)
    with pytest.raises(JobMissing):
        side.jobs.set_report_key(ghost, "reports/x.summary.json")
    with pytest.raises(JobMissing):
        side.jobs.reject_job(ghost, "header: no ID column", JobCounts(rows_read=1), T0)
    with pytest.raises(JobMissing):
        side.jobs.finish_split(ghost, JobCounts(rows_read=1), T0)
    assert side.jobs.take_split(ghost) is None
    assert side.jobs.set_job_status(ghost, JobStatus.COMPLETED, {JobStatus.UPLOADING}, T0) is False
    # a batch of no job: a transition that moves no counter is the batch's alone; one that moves
    # the job's counters writes nothing, and a stale read is stale before the job is looked at
    assert side.jobs.put_batch_if_absent(a_batch(ghost, 1))
    sending = side.jobs.transition(a_batch(ghost, 1), BatchStatus.SENDING, T0, count_attempt=True)
    with pytest.raises(JobMissing):
        side.jobs.transition(sending, BatchStatus.SUCCEEDED, T0)
    with pytest.raises(StaleTransition):
        side.jobs.transition(a_batch(ghost, 1), BatchStatus.SUCCEEDED, T0)
    assert got_batch(side.jobs, ghost, 1) == sending
    assert side.jobs.get_job(ghost) is None  # no fragment: nothing to read, nothing that fails to


# ---- batches ------------------------------------------------------------------------------


def test_a_batch_is_put_only_if_absent(side: Side) -> None:
    job = a_job(side.jobs)
    first = a_batch(job.job_id, 1, count=10)
    assert side.jobs.put_batch_if_absent(first) is True
    assert side.jobs.put_batch_if_absent(a_batch(job.job_id, 1, count=99)) is False
    assert side.jobs.get_batch(job.job_id, 1) == first
    assert side.jobs.get_batch(job.job_id, 2) is None


def test_staging_rewrites_a_batch_never_released_and_never_one_released(side: Side) -> None:
    job = a_job(side.jobs)
    staged = a_batch(job.job_id, 1, BatchStatus.STAGED, count=5).model_copy(update={"claim_key": "claims/a"})
    assert side.jobs.stage_batch(staged) is True
    again = staged.model_copy(update={"record_count": 6})
    assert side.jobs.stage_batch(again) is True  # an interrupted split's batch, rewritten
    assert got_batch(side.jobs, job.job_id, 1) == again
    assert side.jobs.discard_staged(job.job_id, 1, T0) is True
    discarded = got_batch(side.jobs, job.job_id, 1)
    assert (discarded.status, discarded.claim_key, discarded.record_count) == (BatchStatus.DISCARDED, "", 6)
    assert side.jobs.discard_staged(job.job_id, 1, T0) is False
    assert side.jobs.discard_staged(job.job_id, 9, T0) is False  # none there
    assert side.jobs.stage_batch(staged) is True  # a split that started over
    side.jobs.transition(staged, BatchStatus.QUEUED, T0)
    assert side.jobs.stage_batch(staged) is False  # released: never rewritten
    assert side.jobs.discard_staged(job.job_id, 1, T0) is False
    assert got_batch(side.jobs, job.job_id, 1).status == BatchStatus.QUEUED


def test_the_runs_of_a_split_are_fenced_by_number(side: Side) -> None:
    """Issue 24, step by step: run A of a split stages, run B (the same event again) takes the job
    over, keeps one of A's batches and stages the others again, and finishes the split. From B's
    take-over on, A can neither rewrite, keep nor discard a batch B staged or kept, nor finish or
    reject the split; and once the split is finished no run takes it over."""
    job_id = a_job(side.jobs).job_id

    def staged(seq: int, run: int, count: int = 2, snapshot: str = "s1") -> Batch:
        return a_batch(job_id, seq, BatchStatus.STAGED, count).model_copy(
            update={
                "split_run": run,
                "claim_key": claim_key("claims/", job_id, seq, run),
                "ledger_snapshot": snapshot,
            }
        )

    def runs() -> list[tuple[int, BatchStatus, int]]:
        return [(b.seq, b.status, b.split_run) for b in side.jobs.batches(job_id)]

    a = side.jobs.take_split(job_id)
    assert a == 1 and got_job(side.jobs, job_id).split_run == 1
    assert side.jobs.stage_batch(staged(1, a)) and side.jobs.stage_batch(staged(2, a))
    as_a_staged_it = got_batch(side.jobs, job_id, 1)
    b = side.jobs.take_split(job_id)
    assert b == 2 and got_job(side.jobs, job_id).split_run == 2
    assert side.jobs.keep_staged(as_a_staged_it.model_copy(update={"ledger_snapshot": "s2"}), b) is False
    assert side.jobs.keep_staged(as_a_staged_it, b) is True  # the same records: B's from now on
    assert got_batch(side.jobs, job_id, 1) == as_a_staged_it.model_copy(update={"split_run": b})
    assert side.jobs.stage_batch(staged(2, b, count=1, snapshot="s2"))  # the ledger moved: other records
    assert side.jobs.stage_batch(staged(3, b))

    # A, taken over
    assert side.jobs.stage_batch(staged(2, a)) is False
    assert side.jobs.keep_staged(got_batch(side.jobs, job_id, 2), a) is False
    assert side.jobs.discard_staged(job_id, 1, T0, a) is False
    assert side.jobs.discard_staged(job_id, 2, T0, a) is False
    with pytest.raises(SplitSuperseded):
        side.jobs.finish_split(job_id, JobCounts(rows_read=4, rows_accepted=4, batches_total=2), T0, a)
    with pytest.raises(SplitSuperseded):
        side.jobs.reject_job(job_id, "more than MAX_ROWS_PER_FILE", JobCounts(rows_read=4), T0, run=a)
    assert runs() == [(1, BatchStatus.STAGED, b), (2, BatchStatus.STAGED, b), (3, BatchStatus.STAGED, b)]
    assert got_batch(side.jobs, job_id, 2).claim_key == claim_key("claims/", job_id, 2, b)
    # a batch only A staged stays A's: no release sends it (a release sends the latest run's)
    assert side.jobs.stage_batch(staged(4, a)) is True

    # B's own: discarded, then no longer kept as read, staged again
    as_b_staged_it = got_batch(side.jobs, job_id, 3)
    assert side.jobs.discard_staged(job_id, 3, T0, b) is True
    assert side.jobs.keep_staged(as_b_staged_it, b) is False
    assert side.jobs.stage_batch(staged(3, b))
    # and the leftover of an earlier run is the later run's to discard
    assert side.jobs.discard_staged(job_id, 4, T0, b) is True

    side.jobs.finish_split(job_id, JobCounts(rows_read=6, rows_accepted=5, batches_total=3), T0, b)
    assert got_job(side.jobs, job_id).status == JobStatus.UPLOADING
    assert side.jobs.take_split(job_id) is None  # finished: no run takes it over
    assert side.jobs.discard_staged(job_id, 1, T0, a) is False
    assert runs() == [
        (1, BatchStatus.STAGED, b),
        (2, BatchStatus.STAGED, b),
        (3, BatchStatus.STAGED, b),
        (4, BatchStatus.DISCARDED, a),
    ]
    assert side.jobs.mark_released(job_id, T0) is True


def test_batches_come_by_seq_and_a_tree_is_its_root_and_its_children(side: Side) -> None:
    job = a_job(side.jobs)
    seqs = [tree_seq(2, 2), 10, tree_seq(1, 3), 1, tree_seq(1, 2), 2, tree_seq(1, 4095)]
    for seq in seqs:
        assert side.jobs.put_batch_if_absent(a_batch(job.job_id, seq))
    other = a_job(side.jobs)
    side.jobs.put_batch_if_absent(a_batch(other.job_id, 1))
    assert [b.seq for b in side.jobs.batches(job.job_id)] == sorted(seqs)
    # seqs are ordered as the text of their sort key: a seq of 7 digits (no file has that many
    # batches) sorts after the trees'
    assert side.jobs.put_batch_if_absent(a_batch(job.job_id, 2_000_000))
    assert [b.seq for b in side.jobs.batches(job.job_id)][-2:] == [tree_seq(2, 2), 2_000_000]
    assert [b.seq for b in side.jobs.tree(job.job_id, 1)] == [
        1,
        tree_seq(1, 2),
        tree_seq(1, 3),
        tree_seq(1, 4095),
    ]
    assert [b.seq for b in side.jobs.tree(job.job_id, 2)] == [2, tree_seq(2, 2)]
    assert [b.seq for b in side.jobs.tree(job.job_id, 10)] == [10]
    assert side.jobs.tree(job.job_id, 3) == []
    assert [b.seq for b in side.jobs.batches("no-such-job")] == []


def test_a_transition_is_conditional_on_the_status_and_attempts_it_was_read_in(side: Side) -> None:
    job = a_job(side.jobs, total=1)
    queued = a_batch(job.job_id, 1)
    side.jobs.put_batch_if_absent(queued)
    lease = T0 + timedelta(minutes=2)
    sending = side.jobs.transition(queued, BatchStatus.SENDING, T0, lease_until=lease, count_attempt=True)
    assert (sending.status, sending.attempts, sending.lease_until) == (
        BatchStatus.SENDING,
        1,
        "2026-11-25T10:02:00.000+08:00",
    )
    assert got_batch(side.jobs, job.job_id, 1) == sending
    with pytest.raises(StaleTransition):
        side.jobs.transition(queued, BatchStatus.SENDING, T0, count_attempt=True)  # another worker's copy
    with pytest.raises(StaleTransition):  # the same status, another attempt
        side.jobs.transition(sending.model_copy(update={"attempts": 2}), BatchStatus.RETRY, T0)
    with pytest.raises(StaleTransition):
        side.jobs.transition(a_batch(job.job_id, 7), BatchStatus.SENDING, T0)
    retry = side.jobs.transition(
        sending,
        BatchStatus.RETRY,
        T0,
        count_state0=True,
        fields={"last_error": "state 0", "upstream_code": "0"},
    )
    assert (retry.attempts, retry.state0_count, retry.lease_until, retry.last_error) == (1, 1, "", "state 0")
    assert got_batch(side.jobs, job.job_id, 1) == retry
    assert counters(got_job(side.jobs, job.job_id)) == (1, 0, 0, 0, 0, 0)


def test_the_job_counters_follow_the_transitions(side: Side) -> None:
    job = a_job(side.jobs, total=3)
    for seq in (1, 2, 3):
        side.jobs.put_batch_if_absent(a_batch(job.job_id, seq))
    b1, b2, b3 = (got_batch(side.jobs, job.job_id, s) for s in (1, 2, 3))
    b1 = side.jobs.transition(b1, BatchStatus.DEFERRED, T0)
    b2 = side.jobs.transition(b2, BatchStatus.DEFERRED, T0)
    assert counters(got_job(side.jobs, job.job_id)) == (3, 0, 0, 2, 0, 0)
    b1 = side.jobs.transition(b1, BatchStatus.DEFERRED, T0)  # deferred again: counted once
    assert counters(got_job(side.jobs, job.job_id)) == (3, 0, 0, 2, 0, 0)
    b1 = side.jobs.transition(b1, BatchStatus.SENDING, T0, count_attempt=True)
    b1 = side.jobs.transition(b1, BatchStatus.SUCCEEDED, T0)
    b2 = side.jobs.transition(b2, BatchStatus.SENDING, T0, count_attempt=True)
    b2 = side.jobs.transition(b2, BatchStatus.UNKNOWN, T0)
    assert counters(got_job(side.jobs, job.job_id)) == (3, 1, 0, 0, 1, 0)
    b3 = side.jobs.transition(b3, BatchStatus.SENDING, T0, count_attempt=True)
    b3 = side.jobs.transition(b3, BatchStatus.REFUSED, T0, count_state0=True)
    b3 = side.jobs.transition(b3, BatchStatus.BISECTED, T0, new_batches=2)
    assert counters(got_job(side.jobs, job.job_id)) == (5, 1, 0, 0, 1, 1)
    assert got_job(side.jobs, job.job_id).batches_settled == 3
    # a batch whose job is not counted on: the transition alone
    lone = a_job(side.jobs)
    side.jobs.put_batch_if_absent(a_batch(lone.job_id, 1))
    side.jobs.transition(a_batch(lone.job_id, 1), BatchStatus.SENDING, T0)
    assert counters(got_job(side.jobs, lone.job_id)) == (0, 0, 0, 0, 0, 0)


def test_only_deferred_failed_and_unknown_batches_are_listed_oldest_first(side: Side) -> None:
    one, two = a_job(side.jobs, total=3), a_job(side.jobs, total=2)
    for job, seqs in ((one, (1, 2, 3)), (two, (1, 2))):
        for seq in seqs:
            side.jobs.put_batch_if_absent(a_batch(job.job_id, seq))
    at = [T0 + timedelta(seconds=s) for s in range(6)]
    deferred_late = side.jobs.transition(a_batch(one.job_id, 1), BatchStatus.DEFERRED, at[3])
    side.jobs.transition(a_batch(two.job_id, 2), BatchStatus.DEFERRED, at[1])
    side.jobs.transition(a_batch(one.job_id, 2), BatchStatus.DEFERRED, at[2])
    sending = side.jobs.transition(a_batch(one.job_id, 3), BatchStatus.SENDING, at[0], count_attempt=True)
    side.jobs.transition(sending, BatchStatus.FAILED, at[4])
    side.jobs.transition(a_batch(two.job_id, 1), BatchStatus.SENDING, at[0])
    # written straight in a listed status, not moved there: not in the index
    side.jobs.put_batch_if_absent(a_batch(two.job_id, 9, BatchStatus.UNKNOWN))

    def listed(status: BatchStatus, limit: int = 100) -> list[tuple[str, int]]:
        return [(b.job_id, b.seq) for b in side.jobs.batches_with_status(status, limit)]

    assert listed(BatchStatus.DEFERRED) == [(two.job_id, 2), (one.job_id, 2), (one.job_id, 1)]
    assert listed(BatchStatus.DEFERRED, limit=2) == [(two.job_id, 2), (one.job_id, 2)]
    assert listed(BatchStatus.FAILED) == [(one.job_id, 3)]
    assert listed(BatchStatus.UNKNOWN) == [] and side.jobs.count_with_status(BatchStatus.UNKNOWN) == 0
    assert listed(BatchStatus.SENDING) == [] and side.jobs.count_with_status(BatchStatus.SENDING) == 0
    assert side.jobs.count_with_status(BatchStatus.DEFERRED) == 3
    # re-deferred later: listed by its latest move; leaving the listed states: unlisted
    side.jobs.transition(deferred_late.model_copy(), BatchStatus.DEFERRED, at[0])
    assert listed(BatchStatus.DEFERRED)[0] == (one.job_id, 1)
    side.jobs.transition(a_batch(one.job_id, 2, BatchStatus.DEFERRED), BatchStatus.QUEUED, at[5])
    assert listed(BatchStatus.DEFERRED) == [(one.job_id, 1), (two.job_id, 2)]
    assert side.jobs.count_with_status(BatchStatus.DEFERRED) == 2
    assert listed(BatchStatus.DEFERRED)[0] == (one.job_id, 1)
    assert side.jobs.batches_with_status(BatchStatus.FAILED)[0] == got_batch(side.jobs, one.job_id, 3)


OPERATOR = "arn:aws:sts::123456789012:assumed-role/Ops/ana"


def test_a_redrive_reopens_the_job_and_moves_its_counter_at_once(side: Side) -> None:
    job = a_job(side.jobs, total=2)
    side.jobs.put_batch_if_absent(a_batch(job.job_id, 1))
    side.jobs.put_batch_if_absent(a_batch(job.job_id, 2))
    b1 = side.jobs.transition(a_batch(job.job_id, 1), BatchStatus.SENDING, T0, count_attempt=True)
    b1 = side.jobs.transition(b1, BatchStatus.REFUSED, T0, count_state0=True)
    b1 = side.jobs.transition(b1, BatchStatus.FAILED, T0, fields={"last_error": "refused"})
    b2 = side.jobs.transition(a_batch(job.job_id, 2), BatchStatus.SENDING, T0, count_attempt=True)
    b2 = side.jobs.transition(b2, BatchStatus.UNKNOWN, T0)
    assert side.jobs.set_job_status(job.job_id, JobStatus.COMPLETED_WITH_ERRORS, {JobStatus.UPLOADING}, T0)
    with pytest.raises(ValueError, match="only failed or unknown"):
        side.jobs.redrive_batch(a_batch(job.job_id, 1), T0, "ops")
    later = T0 + timedelta(hours=1)
    again = side.jobs.redrive_batch(b1, later, OPERATOR)
    assert (again.status, again.state0_count, again.redrives, again.attempts, again.last_error) == (
        BatchStatus.RETRY,
        0,
        1,
        1,
        "refused",
    )
    # who re-drove it, when, from what: recorded on the batch
    assert again.redriven == [Redrive(at="2026-11-25T11:00:00.000+08:00", by=OPERATOR, was="failed")]
    assert got_batch(side.jobs, job.job_id, 1) == again
    got = got_job(side.jobs, job.job_id)
    assert got.status == JobStatus.UPLOADING and got.updated_at == "2026-11-25T11:00:00.000+08:00"
    assert counters(got) == (2, 0, 0, 0, 1, 0)
    assert got.unknown_redrives == 0  # from failed: it was never charged
    assert side.jobs.batches_with_status(BatchStatus.FAILED) == []
    with pytest.raises(StaleTransition):
        side.jobs.redrive_batch(b1, later, "ops")  # redriven already
    # the job must have finished splitting: nothing moves when it has not
    assert side.jobs.set_job_status(job.job_id, JobStatus.REJECTED, {JobStatus.UPLOADING}, later)
    with pytest.raises(StaleTransition):
        side.jobs.redrive_batch(b2, later, "ops")
    assert got_batch(side.jobs, job.job_id, 2) == b2
    assert counters(got_job(side.jobs, job.job_id)) == (2, 0, 0, 0, 1, 0)
    assert side.jobs.set_job_status(job.job_id, JobStatus.DEFERRED, {JobStatus.REJECTED}, later)
    redriven = side.jobs.redrive_batch(b2, later, "ops")
    assert redriven.redrives == 1 and [(r.by, r.was) for r in redriven.redriven] == [("ops", "unknown")]
    assert got_batch(side.jobs, job.job_id, 2) == redriven
    assert counters(got_job(side.jobs, job.job_id)) == (2, 0, 0, 0, 0, 0)
    # from unknown: it may be charged twice, and the job says so whatever its status becomes
    assert got_job(side.jobs, job.job_id).unknown_redrives == 1
    assert side.jobs.count_with_status(BatchStatus.UNKNOWN) == 0


def test_concurrent_workers_of_one_job_each_count_once_and_one_copy_wins(side: Side) -> None:
    job = a_job(side.jobs, total=8)
    batches = [a_batch(job.job_id, seq) for seq in range(1, 9)]
    for batch in batches:
        assert side.jobs.stage_batch(batch.model_copy(update={"status": BatchStatus.STAGED}))
        side.jobs.transition(batch.model_copy(update={"status": BatchStatus.STAGED}), BatchStatus.QUEUED, T0)
    errors: list[BaseException] = []

    def settle(batch: Batch) -> None:
        try:
            sending = side.jobs.transition(batch, BatchStatus.SENDING, T0, count_attempt=True)
            side.jobs.transition(sending, BatchStatus.SUCCEEDED, T0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_threads([lambda b=b: settle(b) for b in batches])  # type: ignore[misc]
    assert errors == []
    assert counters(got_job(side.jobs, job.job_id)) == (8, 8, 0, 0, 0, 0)

    side.jobs.put_batch_if_absent(a_batch(job.job_id, 9))
    won: list[Batch] = []
    lost: list[BaseException] = []

    def race() -> None:
        try:
            won.append(
                side.jobs.transition(a_batch(job.job_id, 9), BatchStatus.SENDING, T0, count_attempt=True)
            )
        except StaleTransition as exc:
            lost.append(exc)

    run_threads([race] * 6)
    assert (len(won), len(lost)) == (1, 5)
    assert got_batch(side.jobs, job.job_id, 9).attempts == 1


def run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()


# ---- the resend ledger --------------------------------------------------------------------


def entry(job_id: str, *counts: int) -> LedgerEntry:
    keys = b"".join(bytes([i % 256]) * KEY_BYTES for i in range(sum(counts)))
    return LedgerEntry(job_id, "pepper-fp", tuple((seq, n) for seq, n in enumerate(counts, 1)), keys)


def etag(body: bytes) -> str:
    return f'"{md5(body, usedforsecurity=False).hexdigest()}"'


def test_ledger_objects_are_listed_from_a_day_on_and_read_back(side: Side) -> None:
    ledger = side.ledger
    days = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 20)]
    entries = [entry(f"job{i}", 2, 1) for i in range(4)]
    for day, e in zip(days, entries, strict=True):
        ledger.write(day, e)
    key = ledger.object_key(date(2026, 11, 1), "job1")
    assert key.endswith("2026-11-01/job1.keys")
    prefix = key.removesuffix("2026-11-01/job1.keys")
    # what is not a file's object is not listed
    for junk in ("2026-11-02/notes.txt", "not-a-day/x.keys", "2026-11-03/deeper/x.keys"):
        side.blobs.put(side.bucket, f"{prefix}{junk}", b"{}")
    listed = ledger.list_since(date(2026, 11, 1))
    assert [(o.key, o.job_id, o.day) for o in listed] == [
        (ledger.object_key(date(2026, 11, 1), "job1"), "job1", date(2026, 11, 1)),
        (ledger.object_key(date(2026, 11, 1), "job2"), "job2", date(2026, 11, 1)),
        (ledger.object_key(date(2026, 11, 20), "job3"), "job3", date(2026, 11, 20)),
    ]
    assert [o.etag for o in listed] == [etag(e.encode()) for e in entries[1:]]
    assert ledger.read(listed[0]) == entries[1]
    assert list(ledger.read(listed[0]).batch_keys())[1] == (2, bytes([2]) * KEY_BYTES)
    assert ledger.list_since(date(2026, 11, 21)) == []
    ledger.write(date(2026, 11, 20), entry("job3", 1))  # a resumed split writes its own again
    assert ledger.list_since(date(2026, 11, 20))[0].etag == etag(entry("job3", 1).encode())
    with pytest.raises(StoreError):
        ledger.read(listed[0].__class__(f"{prefix}2026-11-05/gone.keys", "gone", date(2026, 11, 5), ""))


def test_the_ledger_lock_is_held_by_one_until_released_or_expired(side: Side) -> None:
    ledger = side.ledger
    ledger.acquire("split-a", T0, 60, 0)
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-b", T0 + timedelta(seconds=59), 60, 0)
    ledger.acquire("split-a", T0 + timedelta(seconds=30), 60, 0)  # its own: renewed, to T0 + 90 s
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-b", T0 + timedelta(seconds=61), 60, 0.2)  # waits, then gives up
    ledger.release("split-b")  # not its lease: nothing happens
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-b", T0 + timedelta(seconds=61), 60, 0)
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-b", T0 + timedelta(seconds=90), 60, 0)  # the lease's last second
    ledger.acquire("split-b", T0 + timedelta(seconds=91), 60, 0)  # expired: taken over
    ledger.release("split-a")  # its lease was taken over: nothing of its to release
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-a", T0 + timedelta(seconds=100), 60, 0)
    ledger.release("split-b")
    ledger.acquire("split-a", T0 + timedelta(seconds=100), 60, 0)
    # one waiting for the lease gets it once it is released
    got: list[str] = []
    waiter = threading.Thread(target=lambda: (ledger.acquire("split-c", T0, 60, 30), got.append("c")))
    waiter.start()
    ledger.release("split-a")
    waiter.join(timeout=30)
    assert got == ["c"]
    with pytest.raises(LedgerBusy):
        ledger.acquire("split-a", T0, 60, 0)


def test_a_file_fingerprint_is_recorded_and_read_back(side: Side) -> None:
    digest = uuid.uuid4().hex
    assert side.ledger.fingerprint(digest) is None
    side.ledger.record_fingerprint(digest, "job-1", date(2026, 11, 3))
    expected = {"pk": f"FILE#{digest}", "sk": "FILE", "job_id": "job-1", "day": "2026-11-03"}
    assert side.ledger.fingerprint(digest) == expected
    side.ledger.record_fingerprint(digest, "job-2", date(2026, 11, 4))
    assert side.ledger.fingerprint(digest) == {**expected, "job_id": "job-2", "day": "2026-11-04"}
