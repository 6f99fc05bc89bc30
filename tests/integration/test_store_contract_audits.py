"""The audit store's contract: the same sequences, the same answers from ``store.audits.AuditStore``
(DynamoDB, on the moto server) and from ``tests.fakes.audits.MemoryAuditStore``.

Each test runs on both sides (``side``): what a method returns, when it raises ``StaleAudit``, how
the job's counters and status move, and what the listings hold. The DynamoDB side gets an audits
table of its own per test (the listings would otherwise see other tests' audits) and creates its
jobs in the stack's jobs table under fresh ids; the in-memory side keeps its jobs in
``tests.fakes.jobs.MemoryJobStore``. Both create and move jobs through the job store's interface.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.fakes.audits import MemoryAuditStore
from tests.fakes.jobs import MemoryJobStore
from tests.integration.conftest import fresh_audits_table
from tests.rows import an_audit as shared_audit
from verifyfeed.models.ids import iso
from verifyfeed.models.records import Audit, AuditStatus, Job, JobKind, JobStatus, Redrive, Reservation
from verifyfeed.ports import AuditRepository, JobMissing, JobRepository, StaleAudit
from verifyfeed.store.audits import AuditStore
from verifyfeed.store.jobs import JobStore

pytestmark = pytest.mark.integration

T0 = datetime.fromisoformat("2026-11-25T10:00:00+08:00")
APPLIED = (True, None)  # what decide_record answers when it applied the result


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Side:
    audits: AuditRepository
    put_job: Callable[[Job], None]
    get_job: Callable[[str], Job | None]
    set_job_status: Callable[[str, JobStatus], None]  # as the job store moves it, not the audit store

    def new_job(self, **counts: int) -> str:
        job_id = "contract-" + uuid.uuid4().hex[:16]
        self.put_job(
            Job(
                job_id=job_id,
                kind=JobKind.CARRIER_AUDIT,
                bucket="contract",
                key=f"carrier-audit/{job_id}.csv",
                status=JobStatus.UPLOADING,
                created_at=iso(T0),
                updated_at=iso(T0),
                **counts,
            )
        )
        return job_id

    def job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        assert job is not None
        return job


@pytest.fixture(params=["dynamodb", "memory"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    jobs: JobRepository
    if request.param == "memory":
        jobs = MemoryJobStore()
        audits: AuditRepository = MemoryAuditStore(jobs)
    else:
        settings = request.getfixturevalue("make_settings")()
        audits_table = fresh_audits_table(settings.audits_table)
        jobs = JobStore(settings.jobs_table)
        audits = AuditStore(audits_table, settings.jobs_table)

    def create(job: Job) -> None:
        assert jobs.create_job(job)

    def move(job_id: str, status: JobStatus) -> None:
        current = jobs.get_job(job_id)
        assert current is not None and jobs.set_job_status(job_id, status, {current.status}, at(50))

    yield Side(audits, create, jobs.get_job, move)
    if request.param == "dynamodb":
        boto3.client("dynamodb").delete_table(TableName=audits_table)


def an_audit(job_id: str, key: str | None = None, row: int = 2, **over: Any) -> Audit:
    fields: dict[str, Any] = {"id_card_digest": "d" * 64, "plate": "京A12345", "updated_at": iso(T0)}
    return shared_audit(audit_key=key or uuid.uuid4().hex, job_id=job_id, row=row, **{**fields, **over})


def reserved(side: Side, audit: Audit, seconds: float = 0) -> Audit:
    kind, got = side.audits.reserve(audit, at(seconds))
    assert kind == Reservation.ADD
    return got


def pending(side: Side, job_id: str, record_id: int, key: str | None = None, seconds: float = 0) -> Audit:
    audit = reserved(side, an_audit(job_id, key), seconds)
    return side.audits.settle_submission(audit, AuditStatus.PENDING, at(seconds + 1), record_id=record_id)


def counters(job: Job) -> tuple[int, int, int]:
    return job.batches_succeeded, job.batches_failed, job.batches_unknown


# ---- get, reserve ---------------------------------------------------------------------------


def test_a_new_audit_is_reserved_for_add_and_the_answer_is_what_is_stored(side: Side) -> None:
    job = side.new_job()
    audit = an_audit(job)
    assert side.audits.get(audit.audit_key) is None
    kind, got = side.audits.reserve(audit, at(5))
    assert kind == Reservation.ADD
    assert got.status == AuditStatus.SUBMITTING and got.version == 0 and got.record_id is None
    assert (got.submitted_at, got.updated_at) == (iso(at(5)), iso(at(5)))
    assert side.audits.get(audit.audit_key) == got


@pytest.mark.parametrize("settled", [None, AuditStatus.PENDING, AuditStatus.UNKNOWN, AuditStatus.PASSED])
def test_an_audit_submitting_pending_unknown_or_passed_is_a_duplicate_and_nothing_is_written(
    side: Side, settled: AuditStatus | None
) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    if settled is AuditStatus.PASSED:
        audit = side.audits.settle_submission(audit, AuditStatus.PENDING, at(1), record_id=7)
        audit = side.audits.decide(audit, AuditStatus.PASSED, "ok", at(2))
    elif settled is not None:
        audit = side.audits.settle_submission(audit, settled, at(1), record_id=7)
    before = side.audits.get(audit.audit_key)
    other = an_audit(side.new_job(), audit.audit_key, row=9)
    kind, current = side.audits.reserve(other, at(30))
    assert kind == Reservation.DUPLICATE
    assert current == before and side.audits.get(audit.audit_key) == before


@pytest.mark.parametrize(
    ("history", "settled", "expected"),
    [
        ("rejected", AuditStatus.REJECTED, Reservation.UPDATE),
        ("add refused", AuditStatus.FAILED, Reservation.ADD),  # no upstream record
        # the record is still rejected upstream: /update again, never a second audit
        ("rejected, then its update refused", AuditStatus.FAILED, Reservation.UPDATE),
    ],
)
def test_an_audit_with_a_record_reserves_for_update_and_a_failed_add_for_add_taking_the_rows_fields(
    side: Side, history: str, settled: AuditStatus, expected: Reservation
) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    if history.startswith("rejected"):
        audit = side.audits.settle_submission(audit, AuditStatus.PENDING, at(1), record_id=41)
        assert (
            side.audits.decide_record(audit.audit_key, 41, AuditStatus.REJECTED, "blurred", at(2)) == APPLIED
        )
    if history == "rejected, then its update refused":
        kind, audit = side.audits.reserve(an_audit(job, audit.audit_key, row=4), at(3))
        assert kind == Reservation.UPDATE
        audit = side.audits.settle_submission(audit, AuditStatus.FAILED, at(4), error="not updated")
    if history == "add refused":
        audit = side.audits.settle_submission(audit, AuditStatus.FAILED, at(1), error="code 1002")
    stored = side.audits.get(audit.audit_key)
    assert stored is not None and stored.status == settled
    second_job = side.new_job()
    correction = an_audit(second_job, audit.audit_key, row=5, id_card_masked="**************0031", plate="")
    kind, got = side.audits.reserve(correction, at(10))
    assert kind == expected
    assert got.status == AuditStatus.SUBMITTING and got.version == stored.version + 1
    assert (got.job_id, got.row, got.id_card_masked, got.plate) == (second_job, 5, "**************0031", "")
    assert (got.remarks, got.last_error, got.lease_until) == ("", "", "")
    assert got.record_id == stored.record_id  # an update goes to the record id it had
    assert (got.submitted_at, got.updated_at) == (iso(at(10)), iso(at(10)))
    assert side.audits.get(audit.audit_key) == got
    # reserved again while submitting: a duplicate
    assert side.audits.reserve(correction, at(11)) == (Reservation.DUPLICATE, got)


# ---- settle_submission ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "moved"),
    [(AuditStatus.PENDING, (1, 0, 0)), (AuditStatus.FAILED, (0, 1, 0)), (AuditStatus.UNKNOWN, (0, 0, 1))],
)
def test_settling_a_submission_counts_it_on_the_job_and_clears_the_lease(
    side: Side, to: AuditStatus, moved: tuple[int, int, int]
) -> None:
    job = side.new_job(batches_total=3)
    audit = reserved(side, an_audit(job))
    audit = side.audits.take_lease(audit, at(1), at(60))
    record_id = 501 if to != AuditStatus.UNKNOWN else None
    settled = side.audits.settle_submission(audit, to, at(2), record_id=record_id, error="why")
    assert settled.status == to and settled.version == audit.version + 1
    assert (settled.record_id, settled.last_error, settled.lease_until) == (record_id, "why", "")
    assert settled.updated_at == iso(at(2))
    assert side.audits.get(audit.audit_key) == settled
    assert counters(side.job(job)) == moved
    assert side.job(job).status == JobStatus.UPLOADING and side.job(job).batches_total == 3
    if record_id is not None:  # pending: the record item; failed: the record-id index finds it too
        assert side.audits.key_for_record(record_id) == audit.audit_key


def test_a_settlement_from_a_stale_read_raises_and_neither_the_audit_nor_the_job_moves(side: Side) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    leased = side.audits.take_lease(audit, at(1), at(60))
    with pytest.raises(StaleAudit):
        side.audits.settle_submission(audit, AuditStatus.PENDING, at(2), record_id=8)  # version 0, now 1
    assert side.audits.get(audit.audit_key) == leased and counters(side.job(job)) == (0, 0, 0)
    assert side.audits.key_for_record(8) is None
    side.audits.settle_submission(leased, AuditStatus.FAILED, at(3))
    with pytest.raises(StaleAudit):  # the same settlement again: counted once
        side.audits.settle_submission(leased, AuditStatus.FAILED, at(4))
    assert counters(side.job(job)) == (0, 1, 0)


# ---- leases, decide -------------------------------------------------------------------------


def test_a_lease_is_taken_and_released_each_time_bumping_the_version(side: Side) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    leased = side.audits.take_lease(audit, at(1), at(61))
    assert (leased.status, leased.lease_until, leased.version) == (AuditStatus.SUBMITTING, iso(at(61)), 1)
    assert leased.updated_at == iso(at(1)) and side.audits.get(audit.audit_key) == leased
    with pytest.raises(StaleAudit):  # a second worker with the copy it read before
        side.audits.take_lease(audit, at(2), at(62))
    released = side.audits.release_lease(leased, at(3))
    assert (released.lease_until, released.version) == ("", 2)
    assert side.audits.get(audit.audit_key) == released
    with pytest.raises(StaleAudit):
        side.audits.release_lease(leased, at(4))
    with pytest.raises(StaleAudit):  # nothing stored under that key
        side.audits.take_lease(an_audit(job), at(5), at(65))
    assert side.audits.get(audit.audit_key) == released


def test_decide_moves_the_audit_it_was_read_in_and_refuses_a_stale_copy(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 77)
    passed = side.audits.decide(audit, AuditStatus.PASSED, "fine", at(9))
    assert (passed.status, passed.remarks, passed.version) == (AuditStatus.PASSED, "fine", audit.version + 1)
    assert side.audits.get(audit.audit_key) == passed
    with pytest.raises(StaleAudit):
        side.audits.decide(audit, AuditStatus.REJECTED, "late", at(10))
    assert side.audits.get(audit.audit_key) == passed


# ---- decide_record and the record ids -------------------------------------------------------


def test_decide_record_applies_once_and_answers_the_audit_as_it_is_when_it_does_not(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 300)
    assert side.audits.key_for_record(300) == audit.audit_key
    assert side.audits.key_for_record(301) is None
    # another record id: not applied, the audit as it is
    assert side.audits.decide_record(audit.audit_key, 301, AuditStatus.PASSED, "", at(5)) == (
        False,
        side.audits.get(audit.audit_key),
    )
    assert side.audits.decide_record(audit.audit_key, 300, AuditStatus.REJECTED, "no", at(6)) == APPLIED
    decided = side.audits.get(audit.audit_key)
    assert decided is not None and decided.status == AuditStatus.REJECTED and decided.remarks == "no"
    assert decided.version == audit.version + 1 and decided.updated_at == iso(at(6))
    # the same again, or the other result: not applied, nothing changed
    for to in (AuditStatus.REJECTED, AuditStatus.PASSED):
        assert side.audits.decide_record(audit.audit_key, 300, to, "again", at(7)) == (False, decided)
    assert side.audits.get(audit.audit_key) == decided
    assert side.audits.decide_record("no-such-audit", 300, AuditStatus.PASSED, "", at(8)) == (False, None)
    assert side.audits.get("no-such-audit") is None


def test_going_pending_starts_a_cycle_and_going_pending_again_under_the_record_the_next(side: Side) -> None:
    job = side.new_job()
    fresh = reserved(side, an_audit(job))
    assert fresh.cycle == 0
    audit = side.audits.settle_submission(fresh, AuditStatus.PENDING, at(1), record_id=900)
    assert audit.cycle == 1 and side.audits.get(audit.audit_key) == audit
    assert side.audits.decide_record(audit.audit_key, 900, AuditStatus.REJECTED, "x", at(5), 1) == APPLIED
    # the rejected audit is corrected: reserved for /update, its cycle kept until the upstream answers
    kind, again = side.audits.reserve(an_audit(job, audit.audit_key, row=3), at(6))
    assert (kind, again.cycle, again.record_id) == (Reservation.UPDATE, 1, 900)
    leased = side.audits.take_lease(again, at(6), at(60))
    assert side.audits.settle_submission(leased, AuditStatus.UNKNOWN, at(7)).cycle == 1  # no answer: none
    unknown = side.audits.get(audit.audit_key)
    assert unknown is not None
    resubmitted = side.audits.resubmit_unknown(unknown, at(8), "ops")
    updated = side.audits.settle_submission(resubmitted, AuditStatus.PENDING, at(9), record_id=900)
    assert updated.cycle == 2 and side.audits.get(audit.audit_key) == updated


def test_a_result_for_one_cycle_of_the_record_does_not_decide_another(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 910)
    side.audits.decide_record(audit.audit_key, 910, AuditStatus.REJECTED, "x", at(5), 1)
    _, again = side.audits.reserve(an_audit(job, audit.audit_key, row=3), at(6))
    again = side.audits.settle_submission(again, AuditStatus.PENDING, at(7), record_id=910)
    assert again.cycle == 2
    for to in (AuditStatus.REJECTED, AuditStatus.PASSED):
        for cycle in (1, 3, 0):
            refused, current = side.audits.decide_record(audit.audit_key, 910, to, "old", at(8), cycle)
            assert refused is False and current == again
    assert side.audits.get(audit.audit_key) == again
    assert side.audits.decide_record(audit.audit_key, 910, AuditStatus.REJECTED, "y", at(9), 2) == APPLIED
    final = side.audits.get(audit.audit_key)
    assert final is not None and (final.status, final.remarks, final.cycle) == (AuditStatus.REJECTED, "y", 2)


def test_without_a_cycle_a_result_applies_to_a_pending_audit_in_any_cycle(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 920)
    side.audits.decide_record(audit.audit_key, 920, AuditStatus.REJECTED, "x", at(5))
    _, again = side.audits.reserve(an_audit(job, audit.audit_key), at(6))
    side.audits.settle_submission(again, AuditStatus.PENDING, at(7), record_id=920)
    assert side.audits.decide_record(audit.audit_key, 920, AuditStatus.PASSED, "y", at(8)) == APPLIED


# ---- resubmit_unknown -----------------------------------------------------------------------


@pytest.mark.parametrize("job_status", [JobStatus.COMPLETED_WITH_ERRORS, JobStatus.UPLOADING])
def test_an_unknown_audit_is_resubmitted_and_its_job_reopened_together(
    side: Side, job_status: JobStatus
) -> None:
    job = side.new_job(batches_total=1)
    audit = reserved(side, an_audit(job))
    unknown = side.audits.settle_submission(audit, AuditStatus.UNKNOWN, at(1), error="lost answer")
    if job_status != JobStatus.UPLOADING:  # the job closed when its audit settled
        side.set_job_status(job, job_status)
    again = side.audits.resubmit_unknown(unknown, at(100), "ana")
    assert (again.status, again.version, again.resubmissions) == (AuditStatus.SUBMITTING, 2, 1)
    assert again.redriven == [Redrive(at=iso(at(100)), by="ana", was="unknown")]
    assert (again.last_error, again.lease_until, again.submitted_at) == ("", "", iso(at(100)))
    assert side.audits.get(audit.audit_key) == again
    reopened = side.job(job)
    assert reopened.status == JobStatus.UPLOADING and reopened.updated_at == iso(at(100))
    assert counters(reopened) == (0, 0, 0) and reopened.unknown_redrives == 1
    with pytest.raises(ValueError, match="only unknown"):
        side.audits.resubmit_unknown(again, at(101), "ana")


@pytest.mark.parametrize(
    "job_status", [JobStatus.SPLITTING, JobStatus.REJECTED, JobStatus.DUPLICATE, JobStatus.DRY_RUN]
)
def test_a_resubmission_is_refused_on_a_stale_read_or_a_job_it_cannot_reopen_and_nothing_moves(
    side: Side, job_status: JobStatus
) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    unknown = side.audits.settle_submission(audit, AuditStatus.UNKNOWN, at(1))
    stale = unknown.model_copy(update={"version": 0})
    with pytest.raises(StaleAudit):
        side.audits.resubmit_unknown(stale, at(2), "ops")
    side.set_job_status(job, job_status)
    with pytest.raises(StaleAudit):
        side.audits.resubmit_unknown(unknown, at(3), "ops")
    assert side.audits.get(audit.audit_key) == unknown
    assert side.job(job).status == job_status and counters(side.job(job)) == (0, 0, 1)
    assert side.job(job).unknown_redrives == 0


def test_an_audit_whose_job_is_not_there_is_not_settled(side: Side) -> None:
    """Issue 24: the settlement counts the audit on its job, conditional on the job being there (a
    bare ADD would create a fragment of a job item that ``get_job`` cannot read): ``JobMissing``,
    and the transaction writes nothing — neither the audit nor its record id."""
    ghost = "no-such-job-" + uuid.uuid4().hex[:8]
    audit = reserved(side, an_audit(ghost))
    with pytest.raises(JobMissing):
        side.audits.settle_submission(audit, AuditStatus.UNKNOWN, at(1), error="lost")
    record_id = 700_000 + uuid.uuid4().int % 100_000
    with pytest.raises(JobMissing):
        side.audits.settle_submission(audit, AuditStatus.PENDING, at(1), record_id=record_id)
    assert side.audits.get(audit.audit_key) == audit
    assert side.audits.key_for_record(record_id) is None
    assert side.get_job(ghost) is None


# ---- mark_polled ----------------------------------------------------------------------------


def test_a_poll_moves_the_audit_back_in_the_queue_without_a_new_version(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 12)
    assert side.audits.mark_polled(audit, at(20)) is True
    polled = side.audits.get(audit.audit_key)
    assert polled is not None and (polled.polls, polled.poll_error, polled.version) == (1, "", audit.version)
    assert polled.updated_at == iso(at(20)) and polled.status == AuditStatus.PENDING
    assert side.audits.mark_polled(audit, at(30), error="e" * 600) is True
    polled = side.audits.get(audit.audit_key)
    assert polled is not None and polled.polls == 2 and polled.poll_error == "e" * 500
    decided = side.audits.decide(polled, AuditStatus.PASSED, "", at(40))
    assert side.audits.mark_polled(audit, at(50)) is False  # no longer pending
    assert side.audits.mark_polled(decided, at(50)) is False
    assert side.audits.get(audit.audit_key) == decided


def test_a_poll_of_a_stale_read_is_not_recorded(side: Side) -> None:
    job = side.new_job()
    audit = reserved(side, an_audit(job))
    assert side.audits.mark_polled(audit, at(1)) is False  # submitting
    settled = side.audits.settle_submission(audit, AuditStatus.PENDING, at(2), record_id=5)
    assert side.audits.mark_polled(audit.model_copy(update={"status": AuditStatus.PENDING}), at(3)) is False
    assert side.audits.mark_polled(an_audit(job, status=AuditStatus.PENDING), at(3)) is False  # none
    assert side.audits.get(audit.audit_key) == settled


# ---- listings -------------------------------------------------------------------------------


def test_with_status_lists_least_recently_updated_first_newest_first_before_a_time_and_up_to_a_limit(
    side: Side,
) -> None:
    job = side.new_job()
    # pending, updated at 1, 11, 21 and 31 s
    keys = [pending(side, job, 600 + i, seconds=10 * i).audit_key for i in range(4)]
    side.audits.mark_polled(side.audits.get(keys[0]), at(40))  # type: ignore[arg-type]
    reserved(side, an_audit(job), seconds=5)  # submitting: not listed as pending
    order = [keys[1], keys[2], keys[3], keys[0]]

    def listed(**kwargs: Any) -> list[str]:
        return [a.audit_key for a in side.audits.with_status(AuditStatus.PENDING, **kwargs)]

    assert listed() == order
    assert listed(newest_first=True) == order[::-1]
    assert listed(limit=2) == order[:2]
    assert listed(newest_first=True, limit=1) == [keys[0]]
    assert listed(older_than=at(21)) == [keys[1]]  # strictly before
    assert listed(older_than=at(21.001)) == [keys[1], keys[2]]
    assert listed(older_than=at(0)) == []
    assert [a.audit_key for a in side.audits.with_status(AuditStatus.SUBMITTING)] == [
        a.audit_key for a in side.audits.scan_all() if a.status == AuditStatus.SUBMITTING
    ]
    assert side.audits.with_status(AuditStatus.PASSED) == []
    listed_audits = side.audits.with_status(AuditStatus.PENDING)
    assert listed_audits == [side.audits.get(k) for k in order]


def test_counts_and_the_scan_see_every_audit_and_no_record_item(side: Side) -> None:
    job = side.new_job()
    expected = {s.value: 0 for s in AuditStatus}
    assert side.audits.count_by_status() == expected and list(side.audits.scan_all()) == []
    a = pending(side, job, 1)
    b = pending(side, job, 2)
    side.audits.decide_record(b.audit_key, 2, AuditStatus.PASSED, "", at(3))
    c = reserved(side, an_audit(job))
    side.audits.settle_submission(c, AuditStatus.UNKNOWN, at(4))
    d = reserved(side, an_audit(job))
    expected.update(pending=1, passed=1, unknown=1, submitting=1)
    assert side.audits.count_by_status() == expected
    for status in AuditStatus:
        assert side.audits.count_with_status(status) == expected[status.value]
    scanned = sorted(side.audits.scan_all(), key=lambda x: x.audit_key)
    keys = sorted([a.audit_key, b.audit_key, c.audit_key, d.audit_key])
    assert [x.audit_key for x in scanned] == keys
    assert scanned == [side.audits.get(k) for k in keys]


def test_find_key_takes_the_first_candidate_stored_else_the_first(side: Side) -> None:
    job = side.new_job()
    stored = reserved(side, an_audit(job)).audit_key
    assert side.audits.find_key(["new-key", "older-key", stored]) == stored
    assert side.audits.find_key([stored, "new-key"]) == stored
    assert side.audits.find_key(["new-key", "older-key"]) == "new-key"
    assert side.audits.find_key(["alone"]) == "alone"  # one candidate: taken as it is
    assert side.audits.find_keys([["a", stored], ["b", "c"], ["record:5"], [stored]]) == [
        stored,
        "b",
        "record:5",
        stored,
    ]
    assert side.audits.find_keys([]) == []


def test_find_keys_looks_up_more_than_one_request_holds(side: Side) -> None:
    """(the store asks for 100 keys a request)"""
    job = side.new_job()
    stored = {reserved(side, an_audit(job, f"old-{i:03d}")).audit_key for i in range(0, 150, 7)}
    candidates = [[f"new-{i:03d}", f"old-{i:03d}"] for i in range(150)]
    expected = [f"old-{i:03d}" if f"old-{i:03d}" in stored else f"new-{i:03d}" for i in range(150)]
    assert side.audits.find_keys(candidates) == expected


def test_with_status_reads_past_a_page(side: Side) -> None:
    """(the store's by-status query is read 100 items a page)"""
    job = side.new_job()
    keys = [pending(side, job, 1000 + i, f"p-{i:03d}", seconds=i).audit_key for i in range(103)]
    assert [a.audit_key for a in side.audits.with_status(AuditStatus.PENDING, limit=102)] == keys[:102]
    assert [a.audit_key for a in side.audits.with_status(AuditStatus.PENDING, limit=500)] == keys
    newest = side.audits.with_status(AuditStatus.PENDING, limit=101, newest_first=True)
    assert [a.audit_key for a in newest] == keys[::-1][:101]
    assert side.audits.count_with_status(AuditStatus.PENDING) == 103


# ---- concurrent writers: one wins, the others are told ----------------------------------------


def race(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call on its own thread, all released together; what each returned or raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the answer under test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_concurrent_settlements_of_one_read_exactly_one_is_written_and_counted(side: Side) -> None:
    job = side.new_job()
    audit = side.audits.take_lease(reserved(side, an_audit(job)), at(1), at(60))
    outcomes = race(
        [
            lambda i=i: side.audits.settle_submission(audit, AuditStatus.PENDING, at(2), record_id=70 + i)
            for i in range(6)
        ]
    )
    won = [o for o in outcomes if isinstance(o, Audit)]
    assert len(won) == 1 and all(isinstance(o, StaleAudit) for o in outcomes if o not in won)
    assert side.audits.get(audit.audit_key) == won[0] and counters(side.job(job)) == (1, 0, 0)


def test_of_concurrent_reservations_of_a_rejected_audit_exactly_one_updates_it(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 88)
    side.audits.decide_record(audit.audit_key, 88, AuditStatus.REJECTED, "no", at(3))
    outcomes = race(
        [lambda i=i: side.audits.reserve(an_audit(job, audit.audit_key, row=10 + i), at(4)) for i in range(6)]
    )
    kinds = sorted(kind.value for kind, _ in outcomes)
    assert kinds == ["duplicate"] * 5 + ["update"]
    [(_, winner)] = [o for o in outcomes if o[0] == Reservation.UPDATE]
    stored = side.audits.get(audit.audit_key)
    assert stored == winner and stored.version == audit.version + 2  # (decided, then reserved)


def test_of_concurrent_results_for_one_record_exactly_one_is_applied(side: Side) -> None:
    job = side.new_job()
    audit = pending(side, job, 99)
    results = [AuditStatus.PASSED, AuditStatus.REJECTED] * 3
    outcomes = race(
        [
            lambda to=to, i=i: side.audits.decide_record(audit.audit_key, 99, to, f"r{i}", at(5), 1)
            for i, to in enumerate(results)
        ]
    )
    assert sorted(applied for applied, _ in outcomes) == [False] * 5 + [True]
    stored = side.audits.get(audit.audit_key)
    assert stored is not None and stored.version == audit.version + 1
    assert all(current == stored for applied, current in outcomes if not applied)
