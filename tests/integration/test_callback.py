"""The result callback: verify before parsing, apply through the shared transition, and leave the
audits table byte-for-byte untouched whenever a callback is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest

from tests.integration.conftest import API_ID, CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET, new_job
from tests.rows import an_audit
from verifyfeed.logic.callback import handle_callback
from verifyfeed.logic.transitions import TransitionOutcome, apply_audit_result
from verifyfeed.models.carrier_audit import UpstreamAuditStatus
from verifyfeed.models.records import Audit, AuditStatus, JobKind
from verifyfeed.services import Services
from verifyfeed.upstream.signing import sign_body

pytestmark = pytest.mark.integration
_next_record_id = iter(range(900_000, 10_000_000))


def pending_audit(services: Services) -> Audit:
    """An audit that was added upstream and awaits its result, as the uploader leaves it."""
    now = services.clock.now()
    audit = an_audit(job_id=new_job(services, 0, JobKind.CARRIER_AUDIT).job_id)
    _, reserved = services.audits.reserve(audit, now)
    return services.audits.settle_submission(
        reserved, AuditStatus.PENDING, now, record_id=next(_next_record_id)
    )


def body(record_id: int, status: Any = 1, **extra: Any) -> bytes:
    payload = {
        "apiId": API_ID,
        "serviceName": "auditCarrierAudit",
        "id": record_id,
        "status": status,
        **extra,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed(raw: bytes, secret: str = CALLBACK_SECRET) -> dict[str, str]:
    return {"sign": sign_body(raw, secret), "Content-Type": "application/json"}


def table_snapshot(services: Services) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=services.settings.audits_table, ConsistentRead=True)[
        "Items"
    ]
    return sorted(items, key=lambda i: i["pk"]["S"])


def test_valid_callback_moves_pending_to_passed_with_remarks(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id, 1, remarks="审核通过")
    result = handle_callback(services, raw, signed(raw))
    assert result.http_status == 200 and result.reply.code == "00000"
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.PASSED and stored.remarks == "审核通过"


def test_the_seeds_other_types_are_read_and_extra_fields_ignored(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The callback table types ``status`` int, ``/get``'s String; ids are numbers or strings."""
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(str(audit.record_id), "2", remarks="身份证格式不正确", traceId="secret-value-1")  # type: ignore[arg-type]
    result = handle_callback(services, raw, signed(raw))
    assert result.http_status == 200 and result.reply.code == "00000"
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED
    [logged] = [r for r in caplog.records if r.getMessage() == "callback fields ignored"]
    assert logged.ignored_field_count == 1  # type: ignore[attr-defined]  # how many,
    assert "traceId" not in repr(vars(logged)) and "secret-value-1" not in repr(vars(logged))  # no name


def test_rejected_result_and_previous_secret_during_rotation(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id, 2, remarks="证明材料不清晰")
    result = handle_callback(services, raw, signed(raw, PREVIOUS_CALLBACK_SECRET))
    assert result.http_status == 200
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED


def test_replay_is_a_successful_no_op_and_a_contradiction_is_refused(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id, 1)
    assert handle_callback(services, raw, signed(raw)).http_status == 200
    before = table_snapshot(services)
    replay = handle_callback(services, raw, signed(raw))
    assert replay.http_status == 200 and replay.reason == "already_applied"
    assert table_snapshot(services) == before
    contradiction = body(audit.record_id, 2)
    result = handle_callback(services, contradiction, signed(contradiction))
    assert result.http_status == 409
    assert table_snapshot(services) == before


def _refusals(record_id: int) -> list[tuple[str, bytes, dict[str, str], int]]:
    good = body(record_id, 1)
    other = body(record_id, 2)
    return [
        ("missing sign", good, {"Content-Type": "application/json"}, 401),
        ("empty sign", good, {"sign": "", "Content-Type": "application/json"}, 401),
        ("wrong secret", good, signed(good, "not-the-secret"), 401),
        ("sign of another body", good, signed(other), 401),
        ("whitespace added after signing", good + b" ", signed(good), 401),
        ("wrong apiId", (b := body(record_id, 1, apiId="someone-else")), signed(b), 403),
        ("wrong serviceName", (b := body(record_id, 1, serviceName="other")), signed(b), 400),
        ("status 0", (b := body(record_id, 0)), signed(b), 400),
        ("status 3", (b := body(record_id, 3)), signed(b), 400),
        ("status as a word", (b := body(record_id, "passed")), signed(b), 400),
        ("status null", (b := body(record_id, None)), signed(b), 400),
        ("not JSON", (b := b"status=1"), signed(b), 400),
        ("JSON array", (b := b"[1,2]"), signed(b), 400),
        ("deep nesting", (b := b"[" * 5000 + b"]" * 5000), signed(b), 400),
        ("too large", (b := body(record_id, 1, remarks="x" * 20_000)), signed(b), 413),
        ("text/plain", good, {"sign": sign_body(good, CALLBACK_SECRET), "Content-Type": "text/plain"}, 415),
        ("unknown record id", (b := body(987_654_321, 1)), signed(b), 404),
        ("record id one past a long", (b := body(2**63, 1)), signed(b), 400),
        ("record id of 41 digits", (b := body(10**40, 1)), signed(b), 400),
        ("largest long record id, unknown", (b := body(2**63 - 1, 1)), signed(b), 404),
    ]


@pytest.mark.parametrize("case", range(len(_refusals(1))), ids=[c[0] for c in _refusals(1)])
def test_refused_callbacks_leave_the_table_untouched(services: Services, case: int) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    name, raw, headers, expected = _refusals(audit.record_id)[case]
    before = table_snapshot(services)
    result = handle_callback(services, raw, headers)
    assert result.http_status == expected, name
    assert result.reply.code != "00000"
    assert table_snapshot(services) == before


@pytest.mark.parametrize(
    "record_id", [2**63, str(2**63), 10**40], ids=["long+1", "long+1-string", "41-digits"]
)
def test_a_record_id_beyond_a_long_is_the_schemas_400_naming_the_field(
    services: Services, record_id: int | str
) -> None:
    """The spec types ``id`` ``long``: a larger one is refused before the store sees it (DynamoDB
    keeps 38 digits: 10**40 used to raise ``decimal.Rounded`` there)."""
    raw = body(record_id, 1)  # type: ignore[arg-type]
    before = table_snapshot(services)
    result = handle_callback(services, raw, signed(raw))
    assert (result.http_status, result.reason) == (400, "schema")
    assert result.reply.message == "invalid callback body: id" and result.record_id is None
    assert table_snapshot(services) == before


def test_the_largest_long_is_read_as_a_record_id(services: Services) -> None:
    raw = body(2**63 - 1, 2)
    result = handle_callback(services, raw, signed(raw))
    assert (result.http_status, result.reason, result.record_id) == (404, "unknown_record", 2**63 - 1)


def test_header_name_is_case_insensitive(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id, 1)
    assert handle_callback(services, raw, {"SIGN": sign_body(raw, CALLBACK_SECRET)}).http_status == 200


def test_stale_result_never_overwrites_a_resubmitted_audit(services: Services) -> None:
    """Rejected, re-dropped with fixes (back to submitting): a late copy of the old result is refused."""
    audit = pending_audit(services)
    assert audit.record_id is not None
    assert (
        apply_audit_result(services, audit.record_id, UpstreamAuditStatus.REJECTED, "bad")
        == TransitionOutcome.APPLIED
    )
    rejected = services.audits.get(audit.audit_key)
    assert rejected is not None
    _kind, resubmitted = services.audits.reserve(
        rejected.model_copy(update={"job_id": "job-2"}), services.clock.now()
    )
    assert resubmitted.status == AuditStatus.SUBMITTING
    outcome = apply_audit_result(services, audit.record_id, UpstreamAuditStatus.REJECTED, "bad")
    assert outcome == TransitionOutcome.CONFLICT
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.SUBMITTING


def test_base64_body_through_the_handler(services: Services, callback_handler: Any) -> None:
    from local.events import api_gateway_proxy_event
    from local.lambda_context import new_context

    audit = pending_audit(services)
    assert audit.record_id is not None
    raw = body(audit.record_id, 2, remarks="驳回")
    event = api_gateway_proxy_event("POST", "/callbacks/carrier-audit", signed(raw), raw)
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    reply = callback_handler(event, new_context("callback", 10, 512))
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["code"] == "00000"
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED

    tampered = raw.replace("驳回".encode(), "通过".encode())
    event = api_gateway_proxy_event("POST", "/callbacks/carrier-audit", signed(raw), tampered)
    reply = callback_handler(event, new_context("callback", 10, 512))
    assert reply["statusCode"] == 401


# ---- the record item: record id → audit in one consistent read ------------------------------------


def calls_made(client: Any) -> list[str]:
    """The operations ``client`` sends from now on (botocore's own event hook: an observer)."""
    seen: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: seen.append(model.name))
    return seen


def test_going_pending_writes_the_record_item_and_a_result_needs_two_calls(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    db = boto3.client("dynamodb")
    item = db.get_item(
        TableName=services.settings.audits_table, Key={"pk": {"S": f"RECORD#{audit.record_id}"}}
    )
    assert item["Item"] == {"pk": {"S": f"RECORD#{audit.record_id}"}, "audit_key": {"S": audit.audit_key}}
    seen = calls_made(services.audits._db)
    outcome = apply_audit_result(services, audit.record_id, UpstreamAuditStatus.PASSED, "ok")
    assert outcome == TransitionOutcome.APPLIED
    assert seen == ["GetItem", "UpdateItem"]
    seen.clear()  # a replay: the failed condition returns the item, no third call
    assert apply_audit_result(services, audit.record_id, UpstreamAuditStatus.PASSED, "ok") == (
        TransitionOutcome.ALREADY_APPLIED
    )
    assert seen == ["GetItem", "UpdateItem"]
    assert apply_audit_result(services, audit.record_id, UpstreamAuditStatus.REJECTED, "no") == (
        TransitionOutcome.CONFLICT
    )
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.PASSED and stored.remarks == "ok"


def test_an_audit_pending_from_before_the_record_items_is_found_on_the_index(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    boto3.client("dynamodb").delete_item(
        TableName=services.settings.audits_table, Key={"pk": {"S": f"RECORD#{audit.record_id}"}}
    )
    assert apply_audit_result(services, audit.record_id, UpstreamAuditStatus.REJECTED, "r") == (
        TransitionOutcome.APPLIED
    )
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED


def test_a_result_for_a_record_id_the_audit_no_longer_has_is_unknown(services: Services) -> None:
    audit = pending_audit(services)
    assert audit.record_id is not None
    old = audit.record_id
    # the audit went back to pending under another record id (a new add after a failure)
    boto3.client("dynamodb").update_item(
        TableName=services.settings.audits_table,
        Key={"pk": {"S": f"AUDIT#{audit.audit_key}"}},
        UpdateExpression="SET record_id = :r",
        ExpressionAttributeValues={":r": {"N": str(old + 5_000_000)}},
    )
    before = table_snapshot(services)
    assert (
        apply_audit_result(services, old, UpstreamAuditStatus.PASSED, "x") == TransitionOutcome.UNKNOWN_RECORD
    )
    assert (
        apply_audit_result(services, old, UpstreamAuditStatus.PENDING, "x")
        == TransitionOutcome.UNKNOWN_RECORD
    )
    assert table_snapshot(services) == before
    assert services.audits.count_by_status()["pending"] >= 1  # record items are not audits


def test_an_old_cycles_callback_replayed_after_an_update_is_not_applied(services: Services) -> None:
    """Rejected, then corrected and re-submitted through /update (same record id): a replay of the
    first cycle's signed "rejected" must not decide the new cycle (answered 200, nothing written:
    the poller confirms a rejection with /get); the genuine "passed" does."""
    audit = pending_audit(services)
    assert audit.record_id is not None
    rejected = body(audit.record_id, 2, remarks="身份证格式不正确")
    assert handle_callback(services, rejected, signed(rejected)).http_status == 200

    # the row is dropped again, corrected: reserved for /update, then pending again (same record id)
    now = services.clock.now()
    stored = services.audits.get(audit.audit_key)
    assert stored is not None and stored.status == AuditStatus.REJECTED
    redrop = new_job(services, 0, JobKind.CARRIER_AUDIT).job_id
    kind, again = services.audits.reserve(stored.model_copy(update={"job_id": redrop}), now)
    assert kind.value == "update"
    services.audits.settle_submission(again, AuditStatus.PENDING, now, record_id=audit.record_id)

    before = table_snapshot(services)
    replay = handle_callback(services, rejected, signed(rejected))
    assert (replay.http_status, replay.reason) == (200, "unconfirmed") and table_snapshot(services) == before
    passed = body(audit.record_id, 1, remarks="审核通过")
    assert handle_callback(services, passed, signed(passed)).http_status == 200
    final = services.audits.get(audit.audit_key)
    assert final is not None and final.status == AuditStatus.PASSED and final.record_id == audit.record_id


def test_an_audit_pending_from_before_cycles_were_counted_takes_a_rejection_only_from_the_poller(
    services: Services,
) -> None:
    """An item without ``cycle`` may be in any cycle: a callback's "rejected" is left to the poller,
    whose result (read for that audit, cycle 0) applies; a "passed" applies from the callback."""
    db = boto3.client("dynamodb")
    legacy = []
    for _ in range(2):
        audit = pending_audit(services)
        db.update_item(
            TableName=services.settings.audits_table,
            Key={"pk": {"S": f"AUDIT#{audit.audit_key}"}},
            UpdateExpression="REMOVE #c",
            ExpressionAttributeNames={"#c": "cycle"},
        )
        stored = services.audits.get(audit.audit_key)
        assert stored is not None and stored.cycle == 0 and stored.record_id is not None
        legacy.append(stored)
    first, second = legacy
    assert first.record_id is not None and second.record_id is not None
    rejected = body(first.record_id, 2, remarks="驳回")
    before = table_snapshot(services)
    assert handle_callback(services, rejected, signed(rejected)).reason == "unconfirmed"
    assert table_snapshot(services) == before
    assert apply_audit_result(services, first.record_id, UpstreamAuditStatus.REJECTED, "驳回", cycle=0) == (
        TransitionOutcome.APPLIED
    )
    passed = body(second.record_id, 1)
    assert handle_callback(services, passed, signed(passed)).reason == "applied"
    assert [services.audits.get(a.audit_key).status for a in legacy] == [  # type: ignore[union-attr]
        AuditStatus.REJECTED,
        AuditStatus.PASSED,
    ]
