"""The carrier-audit logic on the in-memory ports (tests/fakes/): the callback, the shared transition,
the splitter, the uploader and the poller, with no moto and no AWS SDK. The upstream is the
sandbox over HTTP, on a manual clock: an audit is decided when a test advances it.
"""

from __future__ import annotations

import copy
import csv
import inspect
import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from sandbox.server import SandboxConfig, SandboxHandle, start_sandbox
from tests import timeouts
from tests.fakes import (
    MemoryQueue,
    MemorySecrets,
    memory_services,
)
from tests.fakes.audits import MemoryAuditStore
from tests.reports import rejected_rows
from tests.rows import AUDIT_HEADER, an_audit, audit_row, fake_id
from verifyfeed.clock import FixedClock
from verifyfeed.logic.callback import handle_callback
from verifyfeed.logic.poller import poll
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.logic.transitions import TransitionOutcome, apply_audit_result
from verifyfeed.logic.uploader import Delivery, submit_audit
from verifyfeed.models.carrier_audit import UpstreamAuditStatus
from verifyfeed.models.ids import iso
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus, Job, JobKind, JobStatus, Reservation
from verifyfeed.ports import AuditRepository, Services
from verifyfeed.upstream.signing import sign_body

NOW = datetime.fromisoformat("2026-11-25T10:00:00+08:00")
SECRETS = MemorySecrets()  # what memory_services gives: the sandbox is started with the same
CALLBACK_SECRET = SECRETS.callback[0]
DELAY = 0.3  # the sandbox decides an audit this long after it, on its manual clock


def fake_services(clock: FixedClock, upstream_url: str = "http://127.0.0.1:9", **settings: str) -> Services:
    env = {
        "POLL_PENDING_AGE_SECONDS": "0",
        "RETRY_BASE_SECONDS": "0",
        **timeouts.GENEROUS,  # none of these tests is about a timeout
        **settings,
    }
    return memory_services(clock, upstream_url=upstream_url, **env)


@pytest.fixture(scope="module")
def sandbox_module() -> Iterator[SandboxHandle]:
    handle = start_sandbox(
        SandboxConfig(
            api_id=SECRETS.credentials.api_id,
            api_key=SECRETS.credentials.api_key,
            callback_secret=CALLBACK_SECRET,
            decision_delay_s=DELAY,
            clock_now=NOW.isoformat(),
            clock_mode="manual",  # audits are decided when a test advances the clock, never by waiting
        )
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sandbox(sandbox_module: SandboxHandle) -> SandboxHandle:
    sandbox_module.reset()
    sandbox_module.set_clock(NOW.isoformat())
    return sandbox_module


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def services(clock: FixedClock) -> Services:
    """No upstream: the callback and the transition never call it."""
    return fake_services(clock)


@pytest.fixture
def upstream(clock: FixedClock, sandbox: SandboxHandle) -> Services:
    return fake_services(clock, sandbox.url)


# ---- helpers ---------------------------------------------------------------------------------


def store_of(services: Services) -> MemoryAuditStore:
    assert isinstance(services.audits, MemoryAuditStore)
    return services.audits


def snapshot(services: Services) -> tuple[Any, ...]:
    """Everything the audit store holds, and the jobs it moves."""
    store = store_of(services)
    with store.lock:
        return (
            dict(store.audits),
            dict(store.records),
            dict(store.jobs.jobs),
        )


def a_job(services: Services) -> str:
    job_id = "unit-" + uuid.uuid4().hex[:12]
    job = Job(
        job_id=job_id,
        kind=JobKind.CARRIER_AUDIT,
        bucket=services.settings.ingest_bucket,
        key=f"carrier-audit/{job_id}.csv",
        status=JobStatus.UPLOADING,
        created_at=iso(NOW),
        batches_total=1,
    )
    assert services.jobs.create_job(job)
    return job_id


def pending_audit(services: Services, record_id: int) -> Audit:
    """An audit added upstream as ``record_id`` and awaiting its result, as the uploader leaves it."""
    audit = an_audit(job_id=a_job(services))
    kind, reserved = services.audits.reserve(audit, NOW)
    assert kind == Reservation.ADD
    return services.audits.settle_submission(reserved, AuditStatus.PENDING, NOW, record_id=record_id)


def callback_body(record_id: int, status: int = 1, **extra: Any) -> bytes:
    payload = {
        "apiId": SECRETS.credentials.api_id,
        "serviceName": "auditCarrierAudit",
        "id": record_id,
        "status": status,
        **extra,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed(raw: bytes, secret: str = CALLBACK_SECRET) -> dict[str, str]:
    return {"sign": sign_body(raw, secret), "Content-Type": "application/json"}


def drop(
    services: Services, rows: list[list[str]], name: str | None = None, header: list[str] = AUDIT_HEADER
) -> tuple[str, Any]:
    """Put a carrier-audit CSV into the ingest bucket and split it as its S3 event would."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode()
    key = f"carrier-audit/{name or uuid.uuid4().hex[:8]}.csv"
    bucket = services.settings.ingest_bucket
    services.blobs.put(bucket, key, data, "text/csv")
    dropped = DroppedObject(bucket=bucket, key=key, size=len(data), etag=uuid.uuid4().hex)
    return key, split_object(services, dropped)


def queued(services: Services) -> list[CarrierAuditMessage]:
    """The messages the splitter queued, taken off the queue."""
    assert isinstance(services.queue, MemoryQueue)
    messages = [CarrierAuditMessage.model_validate_json(b) for b in services.queue.bodies]
    services.queue.bodies.clear()
    return messages


def calls(sandbox: SandboxHandle, endpoint: str) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint == endpoint])


def test_the_fake_has_every_method_of_the_port_with_its_parameters() -> None:
    methods = [n for n, v in vars(AuditRepository).items() if callable(v) and not n.startswith("_")]
    assert len(methods) == 16
    for name in methods:
        expected = list(inspect.signature(getattr(AuditRepository, name)).parameters)
        assert list(inspect.signature(getattr(MemoryAuditStore, name)).parameters) == expected, name


# ---- the callback ------------------------------------------------------------------------------


def test_a_signed_result_is_applied_once_and_the_same_again_is_answered_200_without_a_write(
    services: Services, clock: FixedClock
) -> None:
    audit = pending_audit(services, 11)
    raw = callback_body(11, 1, remarks="材料齐全")
    clock.move_to(NOW + timedelta(seconds=30))
    result = handle_callback(services, raw, signed(raw))
    assert (result.http_status, result.reason, result.record_id) == (200, "applied", 11)
    decided = services.audits.get(audit.audit_key)
    assert decided is not None and (decided.status, decided.remarks) == (AuditStatus.PASSED, "材料齐全")
    assert decided.version == audit.version + 1 and decided.updated_at == iso(clock.now())
    before = snapshot(services)
    clock.move_to(NOW + timedelta(seconds=60))
    again = handle_callback(services, raw, signed(raw))
    assert (again.http_status, again.reason) == (200, "already_applied")
    assert snapshot(services) == before


def test_a_rejection_is_applied_and_a_contradicting_result_afterwards_is_409_without_a_write(
    services: Services,
) -> None:
    audit = pending_audit(services, 12)
    raw = callback_body(12, 2, remarks="证明材料不清晰")
    assert handle_callback(services, raw, signed(raw)).http_status == 200
    assert services.audits.get(audit.audit_key).status == AuditStatus.REJECTED  # type: ignore[union-attr]
    before = snapshot(services)
    other = callback_body(12, 1)
    assert handle_callback(services, other, signed(other)).http_status == 409
    assert snapshot(services) == before


@pytest.mark.parametrize("how", ["wrong secret", "no sign", "body changed after signing"])
def test_a_bad_sign_is_401_and_the_store_is_untouched(services: Services, how: str) -> None:
    audit = pending_audit(services, 21)
    raw = callback_body(21, 1)
    headers = signed(raw, "not-the-secret") if how == "wrong secret" else signed(raw)
    if how == "no sign":
        del headers["sign"]
    if how == "body changed after signing":
        raw = callback_body(21, 2)
    before = snapshot(services)
    result = handle_callback(services, raw, headers)
    assert (result.http_status, result.reason) == (401, "bad_sign")
    assert snapshot(services) == before
    assert services.audits.get(audit.audit_key).status == AuditStatus.PENDING  # type: ignore[union-attr]


def test_an_unknown_record_is_404_and_the_store_is_untouched(services: Services) -> None:
    pending_audit(services, 31)
    raw = callback_body(32, 1)
    before = snapshot(services)
    result = handle_callback(services, raw, signed(raw))
    assert (result.http_status, result.reason, result.record_id) == (404, "unknown_record", 32)
    assert snapshot(services) == before


def test_a_callback_from_another_api_id_is_403_and_the_store_is_untouched(services: Services) -> None:
    pending_audit(services, 41)
    raw = json.dumps(
        {"apiId": "someone-else", "serviceName": "auditCarrierAudit", "id": 41, "status": 1}
    ).encode()
    before = snapshot(services)
    assert handle_callback(services, raw, signed(raw)).http_status == 403
    assert snapshot(services) == before


# ---- the transition both paths share -----------------------------------------------------------


def test_apply_audit_result_answers_each_case(services: Services) -> None:
    audit = pending_audit(services, 51)
    assert (
        apply_audit_result(services, 52, UpstreamAuditStatus.PASSED, None) == TransitionOutcome.UNKNOWN_RECORD
    )
    assert (
        apply_audit_result(services, 51, UpstreamAuditStatus.PENDING, None) == TransitionOutcome.STILL_PENDING
    )
    assert services.audits.get(audit.audit_key) == audit  # "still pending" writes nothing
    assert apply_audit_result(services, 51, UpstreamAuditStatus.PASSED, "ok") == TransitionOutcome.APPLIED
    assert (
        apply_audit_result(services, 51, UpstreamAuditStatus.PASSED, "ok")
        == TransitionOutcome.ALREADY_APPLIED
    )
    assert apply_audit_result(services, 51, UpstreamAuditStatus.REJECTED, "no") == TransitionOutcome.CONFLICT
    final = services.audits.get(audit.audit_key)
    assert final is not None and (final.status, final.remarks, final.version) == (
        AuditStatus.PASSED,
        "ok",
        audit.version + 1,
    )
    long = "备" * 3000
    second = pending_audit(services, 53)
    assert apply_audit_result(services, 53, UpstreamAuditStatus.REJECTED, long) == TransitionOutcome.APPLIED
    assert services.audits.get(second.audit_key).remarks == long[:2000]  # type: ignore[union-attr]


def in_its_second_cycle(services: Services, record_id: int) -> Audit:
    """Rejected, corrected and updated upstream: pending again under the same record id."""
    audit = pending_audit(services, record_id)
    assert apply_audit_result(services, record_id, UpstreamAuditStatus.REJECTED, "x") == (
        TransitionOutcome.APPLIED
    )
    kind, again = services.audits.reserve(audit.model_copy(update={"row": 3}), NOW)
    assert kind == Reservation.UPDATE
    return services.audits.settle_submission(again, AuditStatus.PENDING, NOW, record_id=record_id)


R, P = UpstreamAuditStatus.REJECTED, UpstreamAuditStatus.PASSED
T = TransitionOutcome


@pytest.mark.parametrize(
    ("status", "cycle", "expected", "after"),
    [
        # a callback names no cycle: its "rejected" may be a retry of the first cycle's
        (R, None, T.UNCONFIRMED, AuditStatus.PENDING),
        (P, None, T.APPLIED, AuditStatus.PASSED),  # every earlier cycle ended rejected
        # the poller's /get, of the cycle it read
        (R, 2, T.APPLIED, AuditStatus.REJECTED),
        (P, 2, T.APPLIED, AuditStatus.PASSED),
        (R, 1, T.CONFLICT, AuditStatus.PENDING),  # read before the update: it has moved on
        (P, 1, T.CONFLICT, AuditStatus.PENDING),
    ],
)
def test_in_a_second_cycle_only_a_result_that_cannot_be_the_first_cycles_applies(
    services: Services,
    status: UpstreamAuditStatus,
    cycle: int | None,
    expected: TransitionOutcome,
    after: AuditStatus,
) -> None:
    audit = in_its_second_cycle(services, 61)
    assert audit.cycle == 2
    before = snapshot(services)
    assert apply_audit_result(services, 61, status, "r", cycle=cycle) == expected
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == after
    if expected != T.APPLIED:
        assert snapshot(services) == before


def test_a_callbacks_rejection_of_a_re_submitted_audit_is_answered_200_and_writes_nothing(
    services: Services,
) -> None:
    """Pending: left to the poller; passed since: an earlier cycle's; rejected since: the same
    result. The upstream stops retrying; nothing is written."""
    raw = callback_body(62, 2, remarks="证明材料不清晰")
    in_its_second_cycle(services, 62)
    before = snapshot(services)
    assert handle_callback(services, raw, signed(raw)).reason == "unconfirmed"
    assert snapshot(services) == before
    for record_id, decided, reason in ((63, P, "earlier_cycle"), (64, R, "already_applied")):
        in_its_second_cycle(services, record_id)
        assert apply_audit_result(services, record_id, decided, "", cycle=2) == T.APPLIED
        raw = callback_body(record_id, 2, remarks="证明材料不清晰")
        before = snapshot(services)
        result = handle_callback(services, raw, signed(raw))
        assert (result.http_status, result.reply.code, result.reason) == (200, "00000", reason)
        assert snapshot(services) == before


# ---- the splitter --------------------------------------------------------------------------------


def test_the_splitter_reserves_each_valid_audit_once_and_refuses_duplicates(services: Services) -> None:
    rows = [
        audit_row("2", 100),  # row 2
        audit_row("3", 200),  # row 3
        audit_row("2", 100),  # row 4: the same audit as row 2
        audit_row("4", 300),  # row 5: no such usage
    ]
    key, result = drop(services, rows)
    assert result.outcome == "split"
    assert (result.counts.rows_read, result.counts.rows_accepted, result.counts.rows_rejected) == (4, 2, 2)
    messages = queued(services)
    assert [m.row for m in messages] == [2, 3] and all(m.update_record_id is None for m in messages)
    for message in messages:
        audit = services.audits.get(message.audit_key)
        assert audit is not None and audit.status == AuditStatus.SUBMITTING
        assert (audit.job_id, audit.row) == (result.job_id, message.row)
    assert services.audits.count_with_status(AuditStatus.SUBMITTING) == 2
    report = {int(r["row"]): r["code"] for r in rejected_rows(services, key)}
    assert report[4] == "duplicate.audit" and "usage" in report[5] and sorted(report) == [4, 5]
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.UPLOADING and job.batches_total == 2

    # dropped again in another file: each audit exists already, nothing is reserved or queued
    before = snapshot(services)
    key2, again = drop(services, rows[:2])
    assert (again.counts.rows_accepted, again.counts.rows_rejected) == (0, 2)
    assert queued(services) == []
    assert [r["code"] for r in rejected_rows(services, key2)] == ["duplicate.audit_exists"] * 2
    assert {r["zh"] for r in rejected_rows(services, key2)} == {"该车老板和车辆的核验已存在，状态：正在提交"}
    assert snapshot(services)[:2] == before[:2]  # the audits as they were


def test_an_audit_row_s_reasons_name_its_columns_as_the_file_does_once_in_both_languages(
    services: Services,
) -> None:
    """Every violation of a row, by code, in Chinese and in English, each naming the column as the
    customer's header does — and the rule id not repeated in the text; no empty authCode column."""
    chinese = [
        "核验场景", "车老板姓名", "车老板身份证号", "车老板手机号", "车老板身份证正面照",
        "车老板身份证背面照", "司机姓名", "司机身份证号", "司机身份证正面照", "司机身份证背面照",
        "车牌号", "行驶证主副页照", "证明材料",
    ]  # fmt: skip
    good_id = fake_id(4100)
    bad_id = good_id[:-1] + ("0" if good_id[-1] != "0" else "1")
    row = audit_row("1", 4100, idCard=bad_id, phone="123", driverIdCard="")
    key, result = drop(services, [row], header=chinese)
    assert result.counts.rows_rejected == 1
    [report] = rejected_rows(services, key)
    assert report["code"] == "id_number.check_digit; phone.format; usage.conditional"
    assert report["en"] == (
        "车老板身份证号: check digit does not match; "
        "车老板手机号: must be an 11-digit mainland mobile number; "
        "司机身份证号: required when 核验场景 is 1"
    )
    assert (
        report["zh"] == "车老板身份证号校验位不符；车老板手机号不是 11 位中国大陆手机号；"
        "核验场景为 1 时必须填写司机身份证号"
    )
    assert list(report)[5:] == ["车老板姓名", "车老板身份证号", "车老板手机号"]  # the file's own labels
    assert report["车老板身份证号"] == "*" * 14 + bad_id[-4:] and bad_id not in json.dumps(report)


def test_a_file_rejected_as_a_whole_reserves_nothing(clock: FixedClock) -> None:
    capped = fake_services(clock, MAX_AUDIT_ROWS_PER_FILE="2")
    _, result = drop(capped, [audit_row("2", 500), audit_row("2", 600), audit_row("2", 700)])
    assert result.outcome == "rejected"
    assert list(capped.audits.scan_all()) == [] and queued(capped) == []
    job = capped.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.REJECTED and "MAX_AUDIT_ROWS_PER_FILE" in job.reason


# ---- the uploader --------------------------------------------------------------------------------


def test_an_audit_is_added_once_goes_pending_and_its_job_completes(
    upstream: Services, sandbox: SandboxHandle
) -> None:
    _, result = drop(upstream, [audit_row("2", 1100)])
    [message] = queued(upstream)
    assert submit_audit(upstream, message, Delivery()) == "pending"
    [record] = sandbox.audits()
    audit = upstream.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.PENDING and audit.record_id == record.id
    assert audit.lease_until == "" and upstream.audits.key_for_record(record.id) == message.audit_key
    job = upstream.jobs.get_job(result.job_id)
    assert job is not None and job.batches_succeeded == 1 and job.status == JobStatus.COMPLETED
    # the message delivered again: nothing sent
    assert submit_audit(upstream, message, Delivery(receive_count=2)) == "pending"
    assert calls(sandbox, "/carrierAudit/add") == 1


@pytest.mark.parametrize("phase", ["before", "after"])
def test_an_ambiguous_answer_holds_the_audit_unknown_and_it_is_never_sent_again_on_its_own(
    upstream: Services, sandbox: SandboxHandle, phase: str
) -> None:
    _, result = drop(upstream, [audit_row("2", 1200)])
    [message] = queued(upstream)
    sandbox.set_faults({"endpoint": "audit_add", "status_code": 502, "phase": phase, "count": 1})
    assert submit_audit(upstream, message, Delivery()) == "unknown"
    audit = upstream.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.UNKNOWN and audit.last_error
    assert audit.record_id is None and audit.lease_until == ""
    for receive_count in (2, 8):  # redelivered, up to the last delivery: held, not sent
        assert submit_audit(upstream, message, Delivery(receive_count=receive_count)) == "unknown"
    assert calls(sandbox, "/carrierAudit/add") == 1
    assert len(sandbox.audits()) == (1 if phase == "after" else 0)
    job = upstream.jobs.get_job(result.job_id)
    assert job is not None and job.batches_unknown == 1 and job.status == JobStatus.COMPLETED_WITH_ERRORS


def test_a_refusal_fails_the_audit_and_a_rejected_audit_redropped_goes_through_update(
    upstream: Services, sandbox: SandboxHandle
) -> None:
    _, _ = drop(upstream, [audit_row("2", 1300, attachmentFileUrls="reject-me.jpg")])
    [message] = queued(upstream)
    assert submit_audit(upstream, message, Delivery()) == "pending"
    sandbox.advance(DELAY)
    [record] = sandbox.audits()
    assert record.status == 2
    raw = callback_body(record.id, 2, remarks=record.remarks)
    assert handle_callback(upstream, raw, signed(raw)).http_status == 200
    # the same row with its material fixed: reserved for /update of the same record id
    _, result = drop(upstream, [audit_row("2", 1300, attachmentFileUrls="fixed.jpg")])
    [update] = queued(upstream)
    assert update.audit_key == message.audit_key and update.update_record_id == record.id
    assert submit_audit(upstream, update, Delivery()) == "pending"
    assert (calls(sandbox, "/carrierAudit/add"), calls(sandbox, "/carrierAudit/update")) == (1, 1)
    audit = upstream.audits.get(message.audit_key)
    assert audit is not None and (audit.status, audit.record_id, audit.job_id) == (
        AuditStatus.PENDING,
        record.id,
        result.job_id,
    )


# ---- the poller -------------------------------------------------------------------------------


def test_the_poller_settles_pending_audits_once_upstream_has_decided(
    upstream: Services, sandbox: SandboxHandle, clock: FixedClock
) -> None:
    _, result = drop(upstream, [audit_row("2", 2100), audit_row("3", 2200, drivingLicenseFilename="reject")])
    messages = queued(upstream)
    for message in messages:
        assert submit_audit(upstream, message, Delivery()) == "pending"
    keys = [m.audit_key for m in messages]

    clock.move_to(NOW + timedelta(seconds=1))
    first = poll(upstream)  # not decided upstream yet
    assert (first.audits_checked, first.outcomes, first.audits_pending) == (2, {"still_pending": 2}, 2)
    polled = [upstream.audits.get(k) for k in keys]
    assert all(a is not None and a.status == AuditStatus.PENDING and a.polls == 1 for a in polled)

    sandbox.advance(DELAY)
    clock.move_to(NOW + timedelta(seconds=2))
    second = poll(upstream)
    assert (second.audits_settled, second.outcomes, second.audits_pending) == (2, {"applied": 2}, 0)
    by_row = {a.row: a for a in (upstream.audits.get(k) for k in keys) if a is not None}
    assert by_row[2].status == AuditStatus.PASSED
    assert by_row[3].status == AuditStatus.REJECTED and by_row[3].remarks
    assert calls(sandbox, "/carrierAudit/get") == 4
    assert poll(upstream).audits_checked == 0  # nothing left pending
    job = upstream.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED


def test_an_unreadable_poll_is_recorded_on_that_audit_and_it_stays_pending(
    upstream: Services, sandbox: SandboxHandle, clock: FixedClock
) -> None:
    drop(upstream, [audit_row("2", 2300)])
    [message] = queued(upstream)
    assert submit_audit(upstream, message, Delivery()) == "pending"
    sandbox.advance(DELAY)
    sandbox.set_faults({"endpoint": "audit_get", "status_code": 503})
    clock.move_to(NOW + timedelta(seconds=1))
    report = poll(upstream)
    assert report.audit_errors == 1 and report.audits_settled == 0
    audit = upstream.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.PENDING and audit.polls == 1 and audit.poll_error
    assert audit.updated_at == iso(clock.now())  # to the back of the queue


def test_a_write_shows_in_the_snapshot_the_refusal_tests_compare(services: Services) -> None:
    audit = pending_audit(services, 71)
    before = copy.deepcopy(snapshot(services))
    services.audits.decide(audit, AuditStatus.PASSED, "", NOW)
    assert snapshot(services) != before
