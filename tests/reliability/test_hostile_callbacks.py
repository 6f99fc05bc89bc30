"""Hostile callbacks through the callback *handler* (API Gateway proxy events, over moto).

Every case answers the status code documented in ``verifyfeed/logic/callback.py`` (400, 401,
403, 404, 409, 413, 415; 200 for applied or replay); every refusal and every replay leaves the
audits table byte-for-byte unchanged; every accepted callback moves exactly one audit one step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from local.events import api_gateway_proxy_event
from local.lambda_context import new_context
from tests.integration.conftest import API_ID, CALLBACK_SECRET, PREVIOUS_CALLBACK_SECRET, new_job
from tests.rows import an_audit
from verifyfeed.models.records import Audit, AuditStatus, JobKind
from verifyfeed.services import Services
from verifyfeed.upstream.signing import sign_body

pytestmark = pytest.mark.integration
PATH = "/callbacks/carrier-audit"
JSON = "application/json"
_record_ids = iter(range(5_000_000, 6_000_000))


def pending_audit(services: Services, status: AuditStatus = AuditStatus.PENDING) -> Audit:
    """An audit added upstream and awaiting its result; or, with SUBMITTING, one that was rejected
    and re-dropped (its record id kept for /update)."""
    now = services.clock.now()
    audit = an_audit(
        job_id=new_job(services, 0, JobKind.CARRIER_AUDIT).job_id,
        id_card_digest=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        phone_masked="*******0001",
    )
    _, reserved = services.audits.reserve(audit, now)
    pending = services.audits.settle_submission(
        reserved, AuditStatus.PENDING, now, record_id=next(_record_ids)
    )
    if status == AuditStatus.SUBMITTING:
        decided = services.audits.decide(pending, AuditStatus.REJECTED, "驳回", now)
        _, resubmitted = services.audits.reserve(decided.model_copy(update={"job_id": "job-2"}), now)
        assert resubmitted.status == AuditStatus.SUBMITTING
        return resubmitted
    return pending


def payload(record_id: int, status: Any = 1, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiId": API_ID,
        "serviceName": "auditCarrierAudit",
        "id": record_id,
        "status": status,
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sign(raw: bytes, secret: str = CALLBACK_SECRET) -> str:
    return sign_body(raw, secret)


@dataclass
class Call:
    body: bytes
    headers: dict[str, str]
    base64_encoded: bool = False  # the event carries the body base64-encoded
    event_body: str | None = None  # the event's body verbatim (overrides ``body``)


def good(record_id: int, status: int = 1, **over: Any) -> Call:
    raw = compact(payload(record_id, status, **over))
    return Call(raw, {"sign": sign(raw), "Content-Type": JSON})


def signed_raw(raw: bytes, content_type: str = JSON) -> Call:
    return Call(raw, {"sign": sign(raw), "Content-Type": content_type})


def with_body(record_id: int, **over: Any) -> Call:
    return signed_raw(compact(payload(record_id, **over)))


def _tampered(record_id: int, mutate: Callable[[bytes], bytes]) -> Call:
    call = good(record_id, remarks="审核通过")
    assert mutate(call.body) != call.body
    return Call(mutate(call.body), call.headers)


def _headers(record_id: int, **headers: str) -> Call:
    raw = compact(payload(record_id))
    return Call(raw, headers)


def _base64(record_id: int) -> Call:
    call = good(record_id)
    return Call(call.body, call.headers, base64_encoded=True)


def _base64_signed_over_encoded_text(record_id: int) -> Call:
    raw = compact(payload(record_id))
    text = base64.b64encode(raw)
    return Call(raw, {"sign": sign(text), "Content-Type": JSON}, base64_encoded=True)


def _invalid_base64(record_id: int) -> Call:
    call = good(record_id)
    return Call(call.body, call.headers, base64_encoded=True, event_body="%%% not base64 %%%")


def _pretty(record_id: int) -> Call:
    raw = json.dumps(payload(record_id), ensure_ascii=False, indent=2).encode()
    return signed_raw(raw)


@dataclass
class CallbackCase:
    id: str
    build: Callable[[int], Call]
    status: int
    after: AuditStatus | None = None  # 200: where the audit must be now
    setup: AuditStatus = AuditStatus.PENDING  # PASSED: the same result was applied before


R = AuditStatus.REJECTED
P = AuditStatus.PASSED
LONG_MAX = 2**63 - 1  # the spec types the record id ``long``

CASES = [
    # -- accepted: 200 and exactly one transition
    CallbackCase("valid", good, 200, P),
    CallbackCase("valid_rejected_with_remarks", lambda r: good(r, 2, remarks="证明材料不清晰"), 200, R),
    CallbackCase("sign_header_upper_case", lambda r: _headers(r, SIGN=sign(compact(payload(r)))), 200, P),
    CallbackCase("sign_header_mixed_case", lambda r: _headers(r, Sign=sign(compact(payload(r)))), 200, P),
    CallbackCase(
        "sign_value_upper_case_hex", lambda r: _headers(r, sign=sign(compact(payload(r))).upper()), 200, P
    ),
    CallbackCase(
        "sign_with_surrounding_spaces", lambda r: _headers(r, sign=f" {sign(compact(payload(r)))} "), 200, P
    ),
    CallbackCase(
        "previous_secret_during_rotation",
        lambda r: _headers(r, sign=sign(compact(payload(r)), PREVIOUS_CALLBACK_SECRET)),
        200,
        P,
    ),
    CallbackCase("pretty_printed_body_signed_as_sent", _pretty, 200, P),
    CallbackCase("base64_encoded_body", _base64, 200, P),
    CallbackCase(
        "content_type_with_charset",
        lambda r: signed_raw(compact(payload(r)), "application/json; charset=utf-8"),
        200,
        P,
    ),
    CallbackCase(
        "content_type_upper_case", lambda r: signed_raw(compact(payload(r)), "APPLICATION/JSON"), 200, P
    ),
    CallbackCase("no_content_type", lambda r: _headers(r, sign=sign(compact(payload(r)))), 200, P),
    CallbackCase("remarks_null", lambda r: with_body(r, remarks=None), 200, P),
    # the seeds type id and status as numbers in one place, Strings in another: both are read
    CallbackCase("record_id_as_numeric_string", lambda r: with_body(r, id=str(r)), 200, P),
    CallbackCase("status_as_numeric_string", lambda r: with_body(r, status="2"), 200, R),
    CallbackCase("unknown_field_ignored", lambda r: with_body(r, extra="x"), 200, P),
    # -- replay: 200, nothing changes
    CallbackCase("replay_of_a_valid_callback", good, 200, P, setup=P),
    CallbackCase("replay_with_other_remarks", lambda r: good(r, 1, remarks="又一次"), 200, P, setup=P),
    # -- 401: the sign, checked over the raw bytes before anything is parsed
    CallbackCase("sign_missing", lambda r: _headers(r, **{"Content-Type": JSON}), 401),
    CallbackCase("sign_empty", lambda r: _headers(r, sign=""), 401),
    CallbackCase("sign_blank", lambda r: _headers(r, sign="   "), 401),
    CallbackCase(
        "sign_with_wrong_secret", lambda r: _headers(r, sign=sign(compact(payload(r)), "guess")), 401
    ),
    CallbackCase("sign_of_another_body", lambda r: _headers(r, sign=sign(compact(payload(r, 2)))), 401),
    CallbackCase("sign_of_another_record", lambda r: _headers(r, sign=sign(compact(payload(r + 1)))), 401),
    CallbackCase("sign_truncated", lambda r: _headers(r, sign=sign(compact(payload(r)))[:-2]), 401),
    CallbackCase("sign_extended", lambda r: _headers(r, sign=sign(compact(payload(r))) + "0"), 401),
    CallbackCase("sign_not_hex", lambda r: _headers(r, sign="zz" * 32), 401),
    CallbackCase(
        "sign_as_base64_of_the_digest",
        lambda r: _headers(r, sign=base64.b64encode(bytes.fromhex(sign(compact(payload(r))))).decode()),
        401,
    ),
    CallbackCase(
        "sign_in_another_header", lambda r: _headers(r, **{"X-Sign": sign(compact(payload(r)))}), 401
    ),
    CallbackCase("sign_non_ascii", lambda r: _headers(r, sign="签名" * 16), 401),
    CallbackCase("space_appended_after_signing", lambda r: _tampered(r, lambda b: b + b" "), 401),
    CallbackCase("newline_prepended_after_signing", lambda r: _tampered(r, lambda b: b"\n" + b), 401),
    CallbackCase(
        "reformatted_after_signing",
        lambda r: _tampered(r, lambda b: json.dumps(json.loads(b), ensure_ascii=False).encode()),
        401,
    ),
    CallbackCase(
        "keys_reordered_after_signing",
        lambda r: _tampered(r, lambda b: compact(dict(reversed(json.loads(b).items())))),
        401,
    ),
    CallbackCase(
        "unicode_escaped_after_signing",
        lambda r: _tampered(r, lambda b: json.dumps(json.loads(b), separators=(",", ":")).encode()),
        401,
    ),
    CallbackCase(
        "status_flipped_after_signing",
        lambda r: _tampered(r, lambda b: b.replace(b'"status":1', b'"status":2')),
        401,
    ),
    CallbackCase("base64_signed_over_the_encoded_text", _base64_signed_over_encoded_text, 401),
    # -- 403: not our apiId
    CallbackCase("api_id_wrong", lambda r: with_body(r, apiId="someone-else"), 403),
    CallbackCase("api_id_case_changed", lambda r: with_body(r, apiId=API_ID.upper()), 403),
    CallbackCase("api_id_padded", lambda r: with_body(r, apiId=f" {API_ID}"), 403),
    CallbackCase("api_id_non_ascii", lambda r: with_body(r, apiId="伪造的接口"), 403),
    # -- 400: not the callback schema
    CallbackCase("api_id_missing", lambda r: with_body(r, apiId=_DROP), 400),
    CallbackCase("api_id_empty", lambda r: with_body(r, apiId=""), 400),
    CallbackCase("service_name_wrong", lambda r: with_body(r, serviceName="auditOther"), 400),
    CallbackCase("service_name_missing", lambda r: with_body(r, serviceName=_DROP), 400),
    CallbackCase("record_id_not_numeric", lambda r: with_body(r, id=f"{r}a"), 400),
    CallbackCase("record_id_signed_string", lambda r: with_body(r, id=f"+{r}"), 400),
    CallbackCase("record_id_padded_string", lambda r: with_body(r, id=f" {r}"), 400),
    CallbackCase("record_id_zero", lambda r: with_body(r, id=0), 400),
    CallbackCase("record_id_float", lambda r: with_body(r, id=float(r)), 400),
    CallbackCase("record_id_missing", lambda r: with_body(r, id=_DROP), 400),
    # beyond a long: refused as the schema, never a crash in the store (DynamoDB keeps 38 digits)
    CallbackCase("record_id_one_past_a_long", lambda r: good(LONG_MAX + 1), 400),
    CallbackCase("record_id_one_past_a_long_as_string", lambda r: with_body(r, id=str(LONG_MAX + 1)), 400),
    CallbackCase("record_id_of_41_digits", lambda r: good(10**40), 400),
    CallbackCase("status_0", lambda r: with_body(r, status=0), 400),
    CallbackCase("status_3", lambda r: with_body(r, status=3), 400),
    CallbackCase("status_as_word", lambda r: with_body(r, status="passed"), 400),
    CallbackCase("status_as_decimal_string", lambda r: with_body(r, status="1.0"), 400),
    CallbackCase("status_as_string_out_of_range", lambda r: with_body(r, status="3"), 400),
    CallbackCase("status_as_full_width_digit", lambda r: with_body(r, status="１"), 400),
    CallbackCase("status_null", lambda r: with_body(r, status=None), 400),
    CallbackCase("status_missing", lambda r: with_body(r, status=_DROP), 400),
    CallbackCase("status_true", lambda r: with_body(r, status=True), 400),
    CallbackCase("status_float", lambda r: with_body(r, status=1.0), 400),
    CallbackCase("remarks_not_a_string", lambda r: with_body(r, remarks={"x": 1}), 400),
    CallbackCase("not_json", lambda r: signed_raw(b"apiId=x&status=1"), 400),
    CallbackCase("json_array", lambda r: signed_raw(compact([payload(r)])), 400),
    CallbackCase("json_string", lambda r: signed_raw(b'"hello"'), 400),
    CallbackCase("json_null", lambda r: signed_raw(b"null"), 400),
    CallbackCase("deep_nesting", lambda r: signed_raw(b"[" * 5_000 + b"]" * 5_000), 400),
    CallbackCase(
        "deep_nesting_in_remarks",
        lambda r: signed_raw(compact(payload(r))[:-1] + b',"remarks":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        400,
    ),
    CallbackCase("empty_body_signed", lambda r: signed_raw(b""), 400),
    CallbackCase(
        "invalid_utf8_signed", lambda r: signed_raw(compact(payload(r))[:-1] + b',"remarks":"\xff\xfe"}'), 400
    ),
    CallbackCase("base64_flag_with_invalid_base64", _invalid_base64, 400),
    # -- 404: not one of ours
    CallbackCase("unknown_record_id", lambda r: good(4_999_999), 404),
    CallbackCase("largest_long_record_id", lambda r: good(LONG_MAX), 404),
    CallbackCase("largest_long_record_id_as_string", lambda r: with_body(r, id=str(LONG_MAX)), 404),
    # -- 409: conflicts with the audit's state
    CallbackCase("contradicts_the_decided_result", lambda r: good(r, 2), 409, setup=P),
    CallbackCase("result_for_a_resubmitted_audit", good, 409, setup=AuditStatus.SUBMITTING),
    # -- 413: size first (before the sign is even computed)
    CallbackCase("huge_body_signed", lambda r: with_body(r, remarks="长" * 20_000), 413),
    CallbackCase(
        "huge_body_unsigned", lambda r: Call(b"{" + b" " * 2_000_000 + b"}", {"Content-Type": JSON}), 413
    ),
    # -- 415: not JSON
    CallbackCase("text_plain", lambda r: signed_raw(compact(payload(r)), "text/plain"), 415),
    CallbackCase(
        "form_urlencoded", lambda r: signed_raw(compact(payload(r)), "application/x-www-form-urlencoded"), 415
    ),
    CallbackCase("xml", lambda r: signed_raw(compact(payload(r)), "application/xml"), 415),
    CallbackCase(
        "multipart", lambda r: signed_raw(compact(payload(r)), "multipart/form-data; boundary=x"), 415
    ),
]

REFUSED = [c for c in CASES if c.status != 200]


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


def invoke(handler: Any, call: Call) -> tuple[int, dict[str, Any]]:
    event = api_gateway_proxy_event("POST", PATH, call.headers, call.body)
    if call.base64_encoded or call.event_body is not None:
        event["body"] = (
            call.event_body if call.event_body is not None else base64.b64encode(call.body).decode()
        )
        event["isBase64Encoded"] = True
    reply = handler(event, new_context("callback", 10, 512))
    return int(reply["statusCode"]), json.loads(reply["body"])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_callback(case: CallbackCase, services: Services, callback_handler: Any) -> None:
    audit = pending_audit(
        services, AuditStatus.SUBMITTING if case.setup == AuditStatus.SUBMITTING else AuditStatus.PENDING
    )
    assert audit.record_id is not None
    if case.setup == P:
        assert invoke(callback_handler, good(audit.record_id))[0] == 200
    before = audits_table(services)
    stored_before = services.audits.get(audit.audit_key)
    assert stored_before is not None

    status, reply = invoke(callback_handler, case.build(audit.record_id))

    assert status == case.status, reply
    stored = services.audits.get(audit.audit_key)
    assert stored is not None
    changed = audits_table(services) != before
    if status == 200 and case.setup == AuditStatus.PENDING:
        assert reply == {"code": "00000", "message": "请求成功"}
        assert stored.status == case.after and stored.version == stored_before.version + 1
        assert changed
    else:
        assert not changed, "a refused or replayed callback changed the audits table"
        assert stored == stored_before
        if status == 200:
            assert reply["code"] == "00000" and stored.status == case.after
        else:
            assert reply["code"] == "2" and reply["message"]


def test_the_matrix_is_complete() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(REFUSED) >= 30
    assert {c.status for c in CASES} == {200, 400, 401, 403, 404, 409, 413, 415}
