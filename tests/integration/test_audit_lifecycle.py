"""Carrier audits end to end: file → add → the sandbox's real signed callback over HTTP →
passed/rejected; a rejected audit re-dropped with fixes → update → pending → decided again;
callbacks dropped → the poller settles them through /carrierAudit/get."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import boto3
import pytest
import requests

from sandbox.server import SandboxConfig, SandboxHandle, start_sandbox
from tests.integration.conftest import API_ID, API_KEY, CALLBACK_SECRET, NOW, SettingsFactory, drain_queue
from tests.integration.test_splitter import AUDIT_HEADER, audit_row, csv_bytes, put, rejected_rows, split
from verifyfeed.clock import FixedClock
from verifyfeed.logic.callback import CallbackResult, handle_callback
from verifyfeed.logic.poller import poll
from verifyfeed.logic.uploader import Delivery, submit_audit
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration


class CallbackEndpoint:
    """Our callback, served over HTTP on loopback (the API Gateway leg is covered by the handler tests).

    ``down``: the endpoint answers 503 without handling the callback (our side is unreachable), and
    keeps each request it turned away in ``missed``, to be delivered again later as the upstream's
    retry would (``deliver``)."""

    def __init__(self) -> None:
        self.services: Services | None = None
        self.statuses: list[int] = []
        self.results: list[CallbackResult] = []
        self.down = False
        self.missed: list[tuple[bytes, dict[str, str]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if endpoint.down:
                    endpoint.missed.append((raw, dict(self.headers.items())))
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert endpoint.services is not None
                result = handle_callback(endpoint.services, raw, dict(self.headers.items()))
                endpoint.statuses.append(result.http_status)
                endpoint.results.append(result)
                reply = result.reply.model_dump_json().encode()
                self.send_response(result.http_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callbacks/carrier-audit"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Up, with no services and nothing handled or missed yet: as a test finds it."""
        self.services = None
        self.statuses, self.results = [], []
        self.down, self.missed = False, []

    def deliver(self, raw: bytes, headers: dict[str, str]) -> CallbackResult:
        """POST a signed callback the endpoint turned away, byte for byte: the upstream retrying it."""
        wanted = {k: v for k, v in headers.items() if k.lower() in ("content-type", "sign")}
        response = requests.post(self.url, data=raw, headers=wanted, timeout=30)
        result = self.results[-1]
        assert response.status_code == result.http_status
        return result


@pytest.fixture(scope="module")
def callback_server() -> Iterator[CallbackEndpoint]:
    ep = CallbackEndpoint()
    yield ep
    ep.server.shutdown()


@pytest.fixture
def endpoint(callback_server: CallbackEndpoint) -> CallbackEndpoint:
    """The module's endpoint with what earlier tests' callbacks left (statuses, results) cleared: a
    test counts only the callbacks of its own upstream."""
    callback_server.reset()
    return callback_server


_id_base = iter(range(1_000_000, 10**9, 1_000_000))
DELAY = 0.2  # the sandbox's decision delay, on its manual clock


@pytest.fixture
def upstream(endpoint: CallbackEndpoint, request: pytest.FixtureRequest) -> Iterator[SandboxHandle]:
    """A fresh upstream per test, with its own range of record ids (upstream ids are unique); its
    answer shapes (sandbox/README.md) are the seeds' tables unless the test parametrizes them."""
    handle = start_sandbox(
        SandboxConfig(
            shapes=getattr(request, "param", "table"),
            api_id=API_ID,
            api_key=API_KEY,
            callback_url=endpoint.url,
            callback_secret=CALLBACK_SECRET,
            decision_delay_s=DELAY,
            clock_now=NOW,
            clock_mode="manual",  # audits are decided when a test advances the clock
            first_audit_id=next(_id_base),
        )
    )
    yield handle
    handle.stop()


@pytest.fixture
def audit_services(
    make_settings: SettingsFactory, clock: FixedClock, upstream: SandboxHandle, endpoint: CallbackEndpoint
) -> Services:
    services = build_services(
        make_settings(UPSTREAM_BASE_URL=upstream.url, POLL_PENDING_AGE_SECONDS="0"), clock
    )
    endpoint.services = services
    return services


def drop_and_submit(services: Services, rows: list[list[str]]) -> tuple[str, list[CarrierAuditMessage]]:
    key = f"carrier-audit/lifecycle-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=AUDIT_HEADER)))
    messages = [
        CarrierAuditMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    for message in messages:
        assert submit_audit(services, message, Delivery()) == "pending"
    return key, messages


def decide_and_call_back(upstream: SandboxHandle, services: Services, keys: list[str]) -> dict[str, Any]:
    """Move the upstream's clock past the decision delay; once every callback has been answered,
    where the audits stand."""
    upstream.advance(DELAY)
    assert upstream.callbacks_done(timeout_s=60), "a callback was still being sent after 60 s"
    return {k: services.audits.get(k) for k in keys}


def test_signed_callbacks_settle_audits_and_a_fixed_rejection_goes_through_update(
    audit_services: Services, upstream: SandboxHandle, endpoint: CallbackEndpoint
) -> None:
    services = audit_services
    rows = [
        audit_row("1", 1100),
        audit_row("2", 1200),
        audit_row("3", 1300, attachmentFileUrls="reject-me.jpg"),  # the sandbox rejects these
    ]
    _, messages = drop_and_submit(services, rows)
    keys = [m.audit_key for m in messages]
    settled = decide_and_call_back(upstream, services, keys)
    by_row = {a.row: a for a in settled.values()}
    assert by_row[2].status == AuditStatus.PASSED and by_row[3].status == AuditStatus.PASSED
    assert by_row[4].status == AuditStatus.REJECTED and by_row[4].remarks
    assert endpoint.statuses.count(200) == 3
    callbacks = [e for e in upstream.ledger() if e.endpoint == "callback"]
    assert len(callbacks) == 3 and all(e.http_status == 200 for e in callbacks)

    # the rejected audit is re-dropped with the material fixed: /update with the same record id
    rejected = by_row[4]
    fixed = [audit_row("3", 1300, attachmentFileUrls="registration.jpg")]
    _, [again] = drop_and_submit(services, fixed)
    assert again.audit_key == rejected.audit_key and again.update_record_id == rejected.record_id
    updates = [e for e in upstream.ledger() if e.endpoint == "/carrierAudit/update"]
    assert len(updates) == 1 and updates[0].accepted
    assert len([e for e in upstream.ledger() if e.endpoint == "/carrierAudit/add"]) == 3
    final = decide_and_call_back(upstream, services, [rejected.audit_key])[rejected.audit_key]
    assert final.status == AuditStatus.PASSED and final.record_id == rejected.record_id

    # dropping a passed audit again is a duplicate: nothing sent
    key, none = drop_and_submit(services, [audit_row("1", 1100)])
    assert none == []
    [report] = rejected_rows(services, key)
    assert report["code"] == "duplicate.audit_exists"


def test_poller_settles_audits_whose_callback_never_came(
    audit_services: Services, upstream: SandboxHandle, clock: FixedClock
) -> None:
    services = audit_services
    upstream.set_faults({"drop_callbacks": True})
    _, messages = drop_and_submit(
        services, [audit_row("2", 2100), audit_row("3", 2200, drivingLicenseFilename="reject")]
    )
    keys = [m.audit_key for m in messages]
    upstream.advance(DELAY)  # decided at once, on the upstream's clock; the callbacks are dropped
    assert all(a.status != 0 for a in upstream.audits())
    callbacks = [e for e in upstream.ledger() if e.endpoint == "callback"]
    assert callbacks and all(e.detail == "callback dropped" and e.http_status is None for e in callbacks)
    assert {services.audits.get(k).status for k in keys} == {AuditStatus.PENDING}  # type: ignore[union-attr]

    clock.move_to(clock.now() + timedelta(seconds=2))
    report = poll(services)
    assert report.audits_settled >= 2  # (other tests' pending audits share the table)
    statuses = sorted(services.audits.get(k).status.value for k in keys)  # type: ignore[union-attr]
    assert statuses == ["passed", "rejected"]
    gets = [e for e in upstream.ledger() if e.endpoint == "/carrierAudit/get"]
    assert len(gets) >= 2
    # a second run finds nothing left to do
    assert poll(services).audits_settled == 0


def test_poller_tolerates_upstream_errors(
    audit_services: Services, upstream: SandboxHandle, clock: FixedClock
) -> None:
    services = audit_services
    upstream.set_faults([{"drop_callbacks": True}, {"endpoint": "audit_get", "status_code": 503}])
    _, messages = drop_and_submit(services, [audit_row("2", 3100)])
    clock.move_to(clock.now() + timedelta(seconds=2))
    report = poll(services)
    assert report.audit_errors >= 1
    stored = services.audits.get(messages[0].audit_key)
    assert stored is not None and stored.status == AuditStatus.PENDING


def test_a_rejected_audit_is_corrected_by_its_row_with_the_record_id(
    audit_services: Services, upstream: SandboxHandle
) -> None:
    """The seed's own rejection is 身份证格式不正确: the corrected row carries another ID number, so
    its identity differs; the record id column (what `verifyfeed audits` shows) ties it to the
    rejected audit, and it goes through /update, not a second /add."""
    services = audit_services
    _, [message] = drop_and_submit(services, [audit_row("2", 4100, attachmentFileUrls="reject.jpg")])
    rejected = decide_and_call_back(upstream, services, [message.audit_key])[message.audit_key]
    assert rejected.status == AuditStatus.REJECTED and rejected.record_id

    header = [*AUDIT_HEADER, "核验记录id"]
    fixed = [*audit_row("2", 4200, attachmentFileUrls="registration.jpg"), str(rejected.record_id)]
    key = f"carrier-audit/corrected-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes([fixed], header=header)))
    [again] = [
        CarrierAuditMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    assert again.audit_key == rejected.audit_key and again.update_record_id == rejected.record_id
    assert submit_audit(services, again, Delivery()) == "pending"
    updates = [e for e in upstream.ledger() if e.endpoint == "/carrierAudit/update"]
    assert len(updates) == 1 and updates[0].accepted and updates[0].audit_id == rejected.record_id
    assert len([e for e in upstream.ledger() if e.endpoint == "/carrierAudit/add"]) == 1
    corrected = services.audits.get(rejected.audit_key)
    assert corrected is not None and corrected.id_card_masked != rejected.id_card_masked  # the new ID
    assert (
        decide_and_call_back(upstream, services, [rejected.audit_key])[rejected.audit_key].status
        == AuditStatus.PASSED
    )

    # a record id that is not a rejected audit, or no audit at all: the row is refused, nothing sent
    rows = [
        [*audit_row("2", 4300), str(rejected.record_id)],  # passed now
        [*audit_row("2", 4400), "987654321"],
        [*audit_row("2", 4500), "12a"],
    ]
    key = f"carrier-audit/wrong-record-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=header)))
    assert result.counts.rows_accepted == 0
    assert [
        m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == result.job_id
    ] == []
    rules = sorted(r["code"] for r in rejected_rows(services, key))
    assert rules == ["record_id.not_correctable", "record_id.not_correctable", "record_id.value"]


@pytest.mark.parametrize("upstream", ["table", "mock", "strings"], indirect=True)
def test_every_answer_shape_the_seeds_show_is_read(
    audit_services: Services, upstream: SandboxHandle, endpoint: CallbackEndpoint, clock: FixedClock
) -> None:
    """table: /get's status a String; mock: a number; strings: every id and status a string (/add's
    data, the callback's id and status too). Each way the audits are submitted and settled."""
    services = audit_services
    answered = endpoint.statuses.count(200)
    n = 810_000 + 10_000 * ["table", "mock", "strings"].index(upstream.config.shapes)  # people of their own
    _, messages = drop_and_submit(
        services, [audit_row("2", n + 100), audit_row("3", n + 200, attachmentFileUrls="reject.jpg")]
    )
    settled = decide_and_call_back(upstream, services, [m.audit_key for m in messages])
    assert sorted(a.status.value for a in settled.values()) == ["passed", "rejected"]
    assert endpoint.statuses.count(200) == answered + 2

    upstream.set_faults({"drop_callbacks": True})  # the poller settles this one through /get
    _, [quiet] = drop_and_submit(services, [audit_row("2", n + 300)])
    upstream.advance(DELAY)
    clock.move_to(clock.now() + timedelta(seconds=1))
    report = poll(services)
    assert report.audit_errors == 0
    polled = services.audits.get(quiet.audit_key)
    assert polled is not None and polled.status == AuditStatus.PASSED


# ---- a re-submitted audit: the callback of an earlier cycle (docs/decisions.md#callback-replay) ----


def audits_table(services: Services) -> list[dict[str, Any]]:
    """Every item of the audits table, as DynamoDB returns it (byte-for-byte comparable)."""
    db = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": services.settings.audits_table, "ConsistentRead": True}
    while True:
        page = db.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: i["pk"]["S"])
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def poll_until_decided(services: Services, clock: FixedClock, audit_key: str) -> Audit:
    """Poller runs until the audit is decided: a run takes the least recently polled first, and the
    table holds other tests' pending audits too."""
    for _ in range(20):
        clock.move_to(clock.now() + timedelta(seconds=2))
        poll(services)
        audit = services.audits.get(audit_key)
        assert audit is not None
        if audit.status in (AuditStatus.PASSED, AuditStatus.REJECTED):
            return audit
    raise AssertionError(f"still {audit.status.value} after 20 poller runs")


def rejected_by_the_poller_while_our_endpoint_was_down(
    services: Services, upstream: SandboxHandle, endpoint: CallbackEndpoint, clock: FixedClock, n: int
) -> tuple[CarrierAuditMessage, list[tuple[bytes, dict[str, str]]]]:
    """Cycle 1 rejected upstream; every attempt of its callback turned away (503), so the poller
    decides it through /get. The signed callback the upstream will retry, as it sent it."""
    endpoint.down, endpoint.missed = True, []
    try:
        _, [message] = drop_and_submit(services, [audit_row("2", n, attachmentFileUrls="reject.jpg")])
        upstream.advance(DELAY)
        assert upstream.callbacks_done(timeout_s=60), "a callback was still being sent after 60 s"
    finally:
        endpoint.down = False
    assert endpoint.missed, "the upstream sent no callback"
    rejected = poll_until_decided(services, clock, message.audit_key)
    assert (rejected.status, rejected.cycle) == (AuditStatus.REJECTED, 1)
    return message, endpoint.missed


@pytest.mark.parametrize("first_delivery", ["after_the_update", "before_the_update_too"])
def test_an_earlier_cycles_callback_never_decides_the_corrected_audit(
    audit_services: Services,
    upstream: SandboxHandle,
    endpoint: CallbackEndpoint,
    clock: FixedClock,
    first_delivery: str,
) -> None:
    """The poller decided cycle 1 (its callback was late); the corrected row went through /update
    (cycle 2, pending); then the upstream's retry of cycle 1's signed "rejected" arrives. It is
    answered 200 (retrying it is pointless) and changes nothing; cycle 2's own result applies. The
    same when cycle 1's callback had also arrived after the poller (200, already applied)."""
    services = audit_services
    n = 1_650_100 if first_delivery == "after_the_update" else 1_650_200  # people of their own
    message, [(late, headers), *_] = rejected_by_the_poller_while_our_endpoint_was_down(
        services, upstream, endpoint, clock, n
    )
    if first_delivery == "before_the_update_too":
        assert endpoint.deliver(late, headers).reason == "already_applied"

    _, [again] = drop_and_submit(services, [audit_row("2", n, attachmentFileUrls="registration.jpg")])
    assert again.audit_key == message.audit_key and again.update_record_id is not None
    corrected = services.audits.get(message.audit_key)
    assert corrected is not None and (corrected.status, corrected.cycle) == (AuditStatus.PENDING, 2)

    before = audits_table(services)
    replay = endpoint.deliver(late, headers)
    assert (replay.http_status, replay.reply.code, replay.reason) == (200, "00000", "unconfirmed")
    assert audits_table(services) == before, "a callback that was not applied changed the audits table"

    final = decide_and_call_back(upstream, services, [message.audit_key])[message.audit_key]
    assert (final.status, final.cycle, final.record_id) == (AuditStatus.PASSED, 2, again.update_record_id)
    assert endpoint.results[-1].reason == "applied"


def test_a_rejection_of_a_corrected_audit_is_confirmed_by_the_poller(
    audit_services: Services, upstream: SandboxHandle, endpoint: CallbackEndpoint, clock: FixedClock
) -> None:
    """Cycle 2's own "rejected" looks exactly like a retry of cycle 1's: the callback leaves it to the
    poller, which asks /carrierAudit/get and applies what the upstream holds now."""
    services = audit_services
    message, _ = rejected_by_the_poller_while_our_endpoint_was_down(
        services, upstream, endpoint, clock, 1_650_300
    )
    # corrected, but the driving licence is still unreadable: cycle 2 is rejected too
    fixed = audit_row(
        "2", 1_650_300, attachmentFileUrls="registration.jpg", drivingLicenseFilename="reject.jpg"
    )
    _, [again] = drop_and_submit(services, [fixed])
    assert again.update_record_id is not None

    before = audits_table(services)
    decided = decide_and_call_back(upstream, services, [message.audit_key])[message.audit_key]
    assert (decided.status, decided.cycle) == (AuditStatus.PENDING, 2)
    assert endpoint.results[-1].reason == "unconfirmed" and endpoint.results[-1].http_status == 200
    assert audits_table(services) == before

    gets = len([e for e in upstream.ledger() if e.endpoint == "/carrierAudit/get"])
    final = poll_until_decided(services, clock, message.audit_key)
    assert len([e for e in upstream.ledger() if e.endpoint == "/carrierAudit/get"]) > gets
    record = upstream.audit(again.update_record_id)
    assert record is not None and record.status == 2
    assert (final.status, final.cycle, final.remarks) == (AuditStatus.REJECTED, 2, record.remarks)


# ---- a correction whose /update failed (docs/decisions.md#audit-correction) ------------------------


def drop_rows(
    services: Services, rows: list[list[str]], header: list[str]
) -> tuple[str, list[CarrierAuditMessage]]:
    key = f"carrier-audit/correction-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=header)))
    messages = [
        CarrierAuditMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    return key, messages


@pytest.mark.parametrize("with_record_id", [False, True], ids=["same_identity", "record_id_column"])
def test_a_correction_whose_update_failed_is_sent_as_update_again_never_as_add(
    audit_services: Services, upstream: SandboxHandle, with_record_id: bool
) -> None:
    """/update answered data false (not updated): the audit is failed, still rejected upstream. The
    row dropped again goes through /update of the same record again, not /add (a second upstream
    audit, the first left rejected); with the record id column as without."""
    services = audit_services
    n = 1_651_100 if with_record_id else 1_651_200  # apart from test_audit_submission's 5000, 5010 ...
    _, [message] = drop_and_submit(services, [audit_row("2", n, attachmentFileUrls="reject.jpg")])
    rejected = decide_and_call_back(upstream, services, [message.audit_key])[message.audit_key]
    assert rejected.status == AuditStatus.REJECTED and rejected.record_id is not None

    # the corrected row: with the record id it may carry another ID number (docs: audit-correction)
    header = [*AUDIT_HEADER, "核验记录id"] if with_record_id else AUDIT_HEADER
    fixed = audit_row("2", n + 50 if with_record_id else n, attachmentFileUrls="registration.jpg")
    fixed = [*fixed, str(rejected.record_id)] if with_record_id else fixed
    upstream.set_faults({"endpoint": "audit_update", "answer": "update_false", "count": 1})
    _, [first] = drop_rows(services, [fixed], header)
    assert first.update_record_id == rejected.record_id
    assert submit_audit(services, first, Delivery()) == "failed"
    failed = services.audits.get(message.audit_key)
    assert failed is not None and failed.status == AuditStatus.FAILED and "not updated" in failed.last_error

    key, again = drop_rows(services, [fixed], header)
    assert rejected_rows(services, key) == []
    [second] = again
    assert (second.audit_key, second.update_record_id) == (message.audit_key, rejected.record_id)
    assert submit_audit(services, second, Delivery()) == "pending"
    sent = [e.endpoint for e in upstream.ledger() if e.endpoint.startswith("/carrierAudit/")]
    assert sent == ["/carrierAudit/add", "/carrierAudit/update", "/carrierAudit/update"]
    assert len(upstream.audits()) == 1  # one audit upstream, never a second one
    final = decide_and_call_back(upstream, services, [message.audit_key])[message.audit_key]
    assert (final.status, final.record_id, final.cycle) == (AuditStatus.PASSED, rejected.record_id, 2)
