"""What the answer to a carrier audit's add or update decides, as a table
(``logic.audit_submission.on_answer``: no I/O, no clock; ``None``: released and retried)."""

from __future__ import annotations

import pytest

from verifyfeed.config import UnknownOutcomePolicy
from verifyfeed.logic.audit_submission import SettleAudit, on_answer
from verifyfeed.logic.delivery import Delivery
from verifyfeed.models.envelope import UnifiedResponse
from verifyfeed.models.records import AuditStatus
from verifyfeed.upstream.client import Answered, CallOutcome, HttpError, NotSent, Unknown

FIRST, LAST = Delivery(receive_count=1), Delivery(receive_count=8)
HOLD, RESEND = UnknownOutcomePolicy.HOLD, UnknownOutcomePolicy.RESEND


def answered(code: str, data: object, message: str = "") -> Answered:
    return Answered(UnifiedResponse(code=code, message=message, data=data), http_status=200, elapsed_ms=3.0)


@pytest.mark.parametrize(
    ("outcome", "update_of", "delivery", "policy", "decided"),
    [
        pytest.param(
            answered("00000", 9001),
            None,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.PENDING, record_id=9001),
            id="add",
        ),
        pytest.param(
            answered("00000", "9001"),
            None,
            LAST,
            RESEND,
            SettleAudit(AuditStatus.PENDING, record_id=9001),
            id="id as text",
        ),
        pytest.param(
            answered("00000", True),
            77,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.PENDING, record_id=77),
            id="update",
        ),
        pytest.param(
            answered("00000", False),
            77,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.FAILED, "update answered data False: not updated"),
            id="update answered false: failed",
        ),
        pytest.param(
            answered("00000", None),
            None,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.UNKNOWN, "add answered without a readable record id"),
            id="add without a record id: held",
        ),
        pytest.param(
            answered("00000", 0),
            None,
            FIRST,
            RESEND,
            SettleAudit(AuditStatus.UNKNOWN, "add answered without a readable record id"),
            id="record id 0: held",
        ),
        pytest.param(
            answered("20001", None, "参数错误"),
            None,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.FAILED, "upstream code 20001: 参数错误"),
            id="refusal code: failed",
        ),
        pytest.param(
            Unknown(reason="read timeout", elapsed_ms=1.0),
            None,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.UNKNOWN, "read timeout"),
            id="answer lost: held",
        ),
        pytest.param(
            Unknown(reason="HTTP 502", elapsed_ms=1.0), None, FIRST, RESEND, None, id="lost, resend: retried"
        ),
        pytest.param(
            Unknown(reason="HTTP 502", elapsed_ms=1.0),
            None,
            LAST,
            RESEND,
            SettleAudit(AuditStatus.UNKNOWN, "HTTP 502"),
            id="lost, resend, last delivery: held",
        ),
        pytest.param(
            NotSent(reason="connection refused", elapsed_ms=1.0), 77, FIRST, HOLD, None, id="never sent"
        ),
        pytest.param(
            NotSent(reason="connection refused", elapsed_ms=1.0),
            None,
            LAST,
            HOLD,
            SettleAudit(AuditStatus.FAILED, "connection refused; gave up"),
            id="never sent, last delivery: failed",
        ),
        pytest.param(
            HttpError(http_status=429, reason="HTTP 429", elapsed_ms=1.0, retryable=True, retry_after_s=5),
            None,
            FIRST,
            HOLD,
            None,
            id="429: retried",
        ),
        pytest.param(
            HttpError(http_status=404, reason="HTTP 404", elapsed_ms=1.0),
            None,
            FIRST,
            HOLD,
            SettleAudit(AuditStatus.FAILED, "HTTP 404; gave up"),
            id="404: failed",
        ),
    ],
)
def test_on_the_answer_to_a_submission(
    outcome: CallOutcome,
    update_of: int | None,
    delivery: Delivery,
    policy: UnknownOutcomePolicy,
    decided: SettleAudit | None,
) -> None:
    assert on_answer(outcome, update_of, delivery, policy) == decided
