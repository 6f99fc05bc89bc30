"""The carrier-audit result callback: size and ``sign`` over the raw bytes first, then parse, then
apply (docs/decisions.md#callback-sign, #callback-reply, #callback-replay); every refusal leaves
the database untouched.

200 applied or the same result again (or a re-submitted audit's "rejected", left to the poller's
/get); 400 not the callback schema; 401 ``sign`` missing or wrong; 403 not our ``apiId``; 404 no
such record id; 409 stale or contradictory; 413 too large; 415 not JSON."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from verifyfeed.logic.transitions import TransitionOutcome, apply_audit_result
from verifyfeed.models.carrier_audit import AuditCallback, CallbackReply, UpstreamAuditStatus
from verifyfeed.models.envelope import SUCCESS_CODE
from verifyfeed.ports import Services
from verifyfeed.upstream.signing import verify_sign

logger = Logger(child=True)

FAILURE_CODE = "2"  # the spec's table: 1 success, 2 failure; we answer success as "00000" like its example

# answered success: the upstream's retries would not change what happens (docs/decisions.md#callback-reply)
_ACKNOWLEDGED = (
    TransitionOutcome.APPLIED,
    TransitionOutcome.ALREADY_APPLIED,
    TransitionOutcome.UNCONFIRMED,
    TransitionOutcome.EARLIER_CYCLE,
)


@dataclass(frozen=True)
class CallbackResult:
    http_status: int
    reply: CallbackReply
    reason: str  # a metric dimension: "applied", "bad_sign", ...
    record_id: int | None = None  # the upstream audit record id, once the body is parsed (logs)

    @property
    def accepted(self) -> bool:
        return self.http_status == 200


def _refuse(status: int, reason: str, message: str, record_id: int | None = None) -> CallbackResult:
    return CallbackResult(status, CallbackReply(code=FAILURE_CODE, message=message), reason, record_id)


def handle_callback(services: Services, raw_body: bytes, headers: Mapping[str, str]) -> CallbackResult:
    settings = services.settings
    lower = {k.lower(): v for k, v in headers.items()}
    if len(raw_body) > settings.callback_max_body_bytes:
        return _refuse(413, "too_large", "body too large")
    content_type = lower.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "text/json", ""):
        return _refuse(415, "content_type", "content type must be application/json")
    if not verify_sign(
        raw_body, lower.get("sign"), services.secrets.callback_secrets(), settings.callback_sign_scheme
    ):
        return _refuse(401, "bad_sign", "sign verification failed")
    try:
        callback = AuditCallback.model_validate_json(raw_body)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        return _refuse(400, "schema", f"invalid callback body: {', '.join(fields)}")
    if callback.model_extra:  # how many only: a signed body may put an ID number in a name too
        logger.info("callback fields ignored", extra={"ignored_field_count": len(callback.model_extra)})
    # bytes: compare_digest raises TypeError on a str with non-ASCII characters
    if not hmac.compare_digest(callback.apiId.encode(), services.secrets.expected_api_id().encode()):
        return _refuse(403, "api_id", "apiId mismatch", callback.id)
    status = UpstreamAuditStatus(callback.status)
    outcome = apply_audit_result(services, callback.id, status, callback.remarks)
    if outcome in _ACKNOWLEDGED:
        reply = CallbackReply(code=SUCCESS_CODE, message="请求成功")
        return CallbackResult(200, reply, outcome.value, callback.id)
    if outcome == TransitionOutcome.UNKNOWN_RECORD:
        return _refuse(404, outcome.value, "unknown audit record id", callback.id)
    return _refuse(409, outcome.value, "result conflicts with the audit's current state", callback.id)
