"""The product against the seeds' literal examples (``tests/contract/seeds.py``), over real HTTP.

A stand-in server answers every call with the example the seed prints for it and records what we
sent; the requests must have the seeds' shapes (the lost-repair ``param`` as printed; carrier-audit
fields at level 1, nothing else in the body) and the answers must be read as the seeds mean them.
The callback gets the seed's own mock body, signed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from tests.contract.seeds import carrier_audit_sections, lost_repair_examples
from tests.integration.conftest import CALLBACK_SECRET, SettingsFactory, fresh_audits_table, new_job
from tests.integration.test_audit_submission import queued_audit
from tests.rows import an_audit
from verifyfeed.clock import FixedClock
from verifyfeed.logic.callback import handle_callback
from verifyfeed.logic.uploader import Delivery, submit_audit, upload_batch
from verifyfeed.models.carrier_audit import AuditParams, UpstreamAuditStatus
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, BatchStatus, JobKind
from verifyfeed.services import Services, build_services
from verifyfeed.upstream.client import parse_audit_result
from verifyfeed.upstream.signing import sign_body

pytestmark = pytest.mark.integration
LOST = "/verify/api/lost_repair_upload_data"
SEED_API_ID = "d1dee71f8aea218b122e8feadde5aad7"  # the callback mock's apiId
UNIFIED = {"code": "00000", "message": "请求成功"}  # docs/decisions.md#unified-response


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StandIn:
    url: str = ""
    answers: dict[str, Any] = field(default_factory=dict)  # path -> the JSON to answer with
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            state.seen.append(Seen(self.path, dict(self.headers.items()), json.loads(raw)))
            reply = json.dumps(state.answers[self.path], ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def seeded(make_settings: SettingsFactory, clock: FixedClock, stand_in: StandIn) -> Services:
    return build_services(make_settings(UPSTREAM_BASE_URL=stand_in.url), clock)


# ---- lost repair --------------------------------------------------------------------------------


def seed_batch(services: Services) -> LostRepairBatchMessage:
    records = [
        RepairRecord.model_validate(r) for r in lost_repair_examples().request["param"]["toRepairDataArray"]
    ]
    job = new_job(services)
    return LostRepairBatchMessage(job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=records)


def test_lost_repair_request_is_the_seeds_and_its_success_is_read(
    seeded: Services, stand_in: StandIn
) -> None:
    seed = lost_repair_examples()
    stand_in.answers[LOST] = {**UNIFIED, **seed.success}
    message = seed_batch(seeded)
    assert upload_batch(seeded, message, Delivery()) == "succeeded"
    [sent] = stand_in.seen
    assert sent.path == LOST
    assert sent.body["param"] == seed.request["param"]  # the records exactly as the seed prints them
    assert set(sent.body) == {"authinfo", "param"}
    assert set(sent.body["authinfo"]) == {"apiId", "timestamp", "nonce", "sign"}
    assert upload_batch(seeded, message, Delivery(receive_count=2)) == "succeeded"
    assert len(stand_in.seen) == 1  # charged once


def test_lost_repair_failure_example_is_state0_not_charged(seeded: Services, stand_in: StandIn) -> None:
    """The seed's batch of two answered the failure example: refused, and split in halves rather
    than sent whole again (docs/decisions.md#state-0)."""
    stand_in.answers[LOST] = {**UNIFIED, **lost_repair_examples().failure}
    message = seed_batch(seeded)
    assert upload_batch(seeded, message, Delivery()) == "refused"
    batch = seeded.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.BISECTED and batch.state0_count == 1
    assert "state 0" in batch.last_error and batch.upstream_desc == "失败"
    halves = seeded.jobs.tree(message.job_id, 1)[1:]
    assert [(h.record_count, h.status) for h in halves] == [(1, BatchStatus.QUEUED)] * 2
    assert len(stand_in.seen) == 1


# ---- carrier audit ------------------------------------------------------------------------------


def test_add_sends_the_level1_fields_and_reads_the_mock(seeded: Services, stand_in: StandIn) -> None:
    section = carrier_audit_sections()["/carrierAudit/add"]
    stand_in.answers["/carrierAudit/add"] = section.mocks[0]
    message = queued_audit(seeded)
    assert submit_audit(seeded, message, Delivery()) == "pending"
    [sent] = stand_in.seen
    assert sent.path == "/carrierAudit/add"
    assert set(sent.body) <= set(section.request_fields)  # level 1, nothing nested, nothing else
    assert {"usage", "name", "idCard", "phone"} <= set(sent.body)
    assert all(not isinstance(v, dict | list) for v in sent.body.values())
    assert {"apiId", "timestamp", "nonce", "sign"} <= set(sent.headers)  # AUDIT_AUTH=headers
    audit = seeded.audits.get(message.audit_key)
    assert audit is not None and audit.record_id == section.mocks[0]["data"]


def test_update_sends_id_at_level1_and_reads_true(seeded: Services, stand_in: StandIn) -> None:
    section = carrier_audit_sections()["/carrierAudit/update"]
    stand_in.answers["/carrierAudit/update"] = section.mocks[0]
    message = queued_audit(seeded).model_copy(update={"update_record_id": 12})
    assert submit_audit(seeded, message, Delivery()) == "pending"
    [sent] = stand_in.seen
    assert sent.body["id"] == 12 and set(sent.body) <= set(section.request_fields)


def test_get_sends_the_id_and_reads_the_mock_and_the_table_type(seeded: Services, stand_in: StandIn) -> None:
    section = carrier_audit_sections()["/carrierAudit/get"]
    [mock] = section.mocks
    for answer in (mock, {**mock, "data": {**mock["data"], "status": str(mock["data"]["status"])}}):
        stand_in.answers["/carrierAudit/get"] = answer
        result = parse_audit_result(seeded.upstream.audit_get(12))
        assert result is not None and result.id == 12
        assert result.upstream_status == UpstreamAuditStatus.REJECTED and result.remarks == "身份证格式不正确"
    assert [s.body for s in stand_in.seen] == [{"id": 12}, {"id": 12}]  # exactly the table's one field


def test_callback_mock_is_applied_and_answered_as_the_seed(
    make_settings: SettingsFactory, clock: FixedClock
) -> None:
    """The seed's mock callback (its apiId, record id 12), signed, against an audits table of its
    own (record id 12 may exist in the shared one): applied, answered with the seed's reply."""
    body, reply = carrier_audit_sections()["callback"].mocks
    table = fresh_audits_table(make_settings().audits_table)
    services = build_services(
        make_settings(
            AUDITS_TABLE=table,
            UPSTREAM_CREDENTIALS_PARAM="",
            UPSTREAM_API_ID=SEED_API_ID,
            UPSTREAM_API_KEY="unused",
            CALLBACK_SECRET_PARAM="",
            CALLBACK_SECRET=CALLBACK_SECRET,
        ),
        clock,
    )
    now = clock.now()
    job = new_job(services, 0, JobKind.CARRIER_AUDIT)  # a settlement counts on its job (it must exist)
    _, reserved = services.audits.reserve(an_audit(job_id=job.job_id, id_card_masked="**************2X"), now)
    audit = services.audits.settle_submission(reserved, AuditStatus.PENDING, now, record_id=body["id"])
    raw = json.dumps(body, ensure_ascii=False).encode()  # the mock as printed, as JSON
    result = handle_callback(services, raw, {"sign": sign_body(raw, CALLBACK_SECRET)})
    assert result.http_status == 200 and result.reply.model_dump() == reply
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED and stored.remarks == "55555"


def test_audit_params_are_the_seeds_fields() -> None:
    """Our request model has exactly the seed's level-1 fields (``/update`` adds ``id``)."""
    section = carrier_audit_sections()["/carrierAudit/add"]
    assert list(AuditParams.model_fields) == section.request_fields


def test_the_whole_answer_envelope_is_kept_whatever_the_serial_is_called(
    seeded: Services, stand_in: StandIn
) -> None:
    """The unified-response page is unavailable: the serial number may not be named ``serialNo``.
    Every top-level scalar of a charged call's answer is kept on the batch and in the report."""
    stand_in.answers[LOST] = {
        **UNIFIED,
        **lost_repair_examples().success,
        "flowNo": "PF20261201000123",
        "traceId": "t-1",
        "items": [1, 2],  # not a scalar: left out
    }
    message = seed_batch(seeded)
    assert upload_batch(seeded, message, Delivery()) == "succeeded"
    batch = seeded.jobs.get_batch(message.job_id, 1)
    assert batch is not None
    envelope = json.loads(batch.upstream_envelope)
    assert envelope["flowNo"] == "PF20261201000123" and envelope["traceId"] == "t-1"
    assert envelope["code"] == "00000" and "items" not in envelope and "data" not in envelope
    job = seeded.jobs.get_job(message.job_id)
    assert job is not None and job.report_key
    report = json.loads(boto3.client("s3").get_object(Bucket=job.bucket, Key=job.report_key)["Body"].read())
    [reported] = report["batches"]
    assert json.loads(reported["upstream_envelope"])["flowNo"] == "PF20261201000123"
