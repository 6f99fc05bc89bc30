"""What the uploader decides for a lost-repair batch, as a table: the batch as read, the answer, the
delivery and the settings in; the decision out (``logic.batch_decisions``: no I/O, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.fakes import UNIT_SETTINGS
from verifyfeed.config import Settings
from verifyfeed.logic.batch_decisions import (
    BODY_MISSING,
    LEASE_HELD_ON_LAST_DELIVERY,
    LEASE_LAPSED,
    Decision,
    Defer,
    Redelivered,
    Refuse,
    Retry,
    Send,
    Settle,
    Wait,
    before_send,
    on_answer,
)
from verifyfeed.logic.delivery import Delivery, LeaseHeld, LeaseLapsed, read_lease
from verifyfeed.models.envelope import UnifiedResponse
from verifyfeed.models.ids import iso, tree_seq
from verifyfeed.models.records import Batch, BatchStatus
from verifyfeed.upstream.client import Answered, CallOutcome, HttpError, NotSent, Unknown

NOW = datetime.fromisoformat("2026-11-25T10:00:00+08:00")
BLACKOUT_ENDS = datetime.fromisoformat("2026-12-01T00:00:00+08:00")
FIRST, LAST = Delivery(receive_count=1), Delivery(receive_count=8)
HOLD, RESEND = {}, {"UNKNOWN_OUTCOME_POLICY": "resend"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**UNIT_SETTINGS, "UPSTREAM_BASE_URL": "http://127.0.0.1:9", **env})


def batch(status: BatchStatus, *, seq: int = 1, record_count: int = 5, **fields: Any) -> Batch:
    return Batch(
        job_id="j1", seq=seq, batch_id=f"j1-{seq}", status=status, record_count=record_count, **fields
    )


def leased(seconds: int) -> Batch:
    """A batch another delivery is sending, its lease ending ``seconds`` from NOW."""
    return batch(BatchStatus.SENDING, attempts=1, lease_until=iso(NOW + timedelta(seconds=seconds)))


@pytest.mark.parametrize(
    ("read", "resumes_at", "delivery", "env", "decided"),
    [
        pytest.param(batch(BatchStatus.QUEUED), None, FIRST, HOLD, Send(), id="queued: send"),
        pytest.param(batch(BatchStatus.STAGED), None, FIRST, HOLD, Send(), id="staged: send"),
        pytest.param(batch(BatchStatus.RETRY), None, LAST, HOLD, Send(), id="retry, last delivery: send"),
        pytest.param(batch(BatchStatus.DEFERRED), None, FIRST, HOLD, Send(), id="deferred, after the window"),
        pytest.param(batch(BatchStatus.SUCCEEDED), None, FIRST, HOLD, Redelivered(), id="succeeded"),
        pytest.param(batch(BatchStatus.FAILED), None, LAST, HOLD, Redelivered(), id="failed"),
        pytest.param(batch(BatchStatus.UNKNOWN), BLACKOUT_ENDS, FIRST, HOLD, Redelivered(), id="unknown"),
        pytest.param(batch(BatchStatus.REFUSED), None, FIRST, HOLD, Redelivered(), id="refused"),
        pytest.param(batch(BatchStatus.BISECTED), None, FIRST, HOLD, Redelivered(), id="bisected"),
        pytest.param(batch(BatchStatus.QUEUED), BLACKOUT_ENDS, FIRST, HOLD, Defer(), id="blackout"),
        pytest.param(batch(BatchStatus.DEFERRED), BLACKOUT_ENDS, FIRST, HOLD, Defer(), id="blackout again"),
        pytest.param(
            leased(30),
            None,
            FIRST,
            HOLD,
            Wait("another worker holds the send lease", 31),
            id="live lease: wait for it",
        ),
        pytest.param(
            leased(30), BLACKOUT_ENDS, FIRST, HOLD, Wait("another worker holds the send lease", 31), id="live"
        ),
        pytest.param(leased(30), None, LAST, RESEND, LEASE_HELD_ON_LAST_DELIVERY, id="live lease, last"),
        pytest.param(leased(0), None, FIRST, HOLD, LEASE_LAPSED, id="lease ends now: lapsed"),
        pytest.param(leased(-1), None, LAST, HOLD, LEASE_LAPSED, id="lapsed lease, hold"),
        pytest.param(batch(BatchStatus.SENDING), None, FIRST, HOLD, LEASE_LAPSED, id="sending, no lease"),
        pytest.param(leased(-1), None, FIRST, RESEND, Send(), id="lapsed lease, resend: send again"),
        pytest.param(leased(-1), BLACKOUT_ENDS, FIRST, RESEND, Defer(), id="lapsed, resend, blackout"),
    ],
)
def test_before_sending(
    read: Batch,
    resumes_at: datetime | None,
    delivery: Delivery,
    env: dict[str, str],
    decided: Decision | Send,
) -> None:
    assert before_send(read, NOW, resumes_at, delivery, settings(**env)) == decided


def test_the_held_and_lapsed_leases_hold_the_batch_as_unknown_and_only_the_live_one_yields() -> None:
    assert (LEASE_HELD_ON_LAST_DELIVERY.to, LEASE_LAPSED.to) == (BatchStatus.UNKNOWN, BatchStatus.UNKNOWN)
    assert LEASE_HELD_ON_LAST_DELIVERY.contested and not LEASE_LAPSED.contested
    assert (BODY_MISSING.to, BODY_MISSING.in_time) == (BatchStatus.FAILED, False)


def answered(code: str, data: object, message: str = "", serial: str | None = "SN-1") -> Answered:
    response = UnifiedResponse(code=code, message=message, data=data, serialNo=serial)
    return Answered(response=response, http_status=200, elapsed_ms=5.0)


def envelope(code: str, message: str = "", serial: str | None = "SN-1") -> str:
    serial_json = "null" if serial is None else f'"{serial}"'
    return f'{{"code": "{code}", "message": "{message}", "serialNo": {serial_json}}}'


SENDING = batch(BatchStatus.SENDING, attempts=1)
ONE_SENDING = batch(BatchStatus.SENDING, attempts=1, record_count=1)
SPENT = batch(BatchStatus.SENDING, attempts=3, record_count=1, state0_count=2)
CHILD = batch(BatchStatus.SENDING, attempts=1, record_count=1, seq=tree_seq(1, 2), parent_seq=1, depth=1)
STATE0 = "upstream code 00000, state 0: 失败"
REFUSED = {"upstream_code": "00000", "upstream_desc": "失败", "upstream_envelope": envelope("00000")}
CODE = "upstream code 10001, state -: 认证失败"
REFUSAL_CODE = {"upstream_code": "10001", "upstream_desc": "认证失败"}
REFUSAL_ENVELOPE = envelope("10001", "认证失败", None)


@pytest.mark.parametrize(
    ("outcome", "read", "records", "delivery", "env", "decided"),
    [
        pytest.param(
            answered("00000", {"state": "1", "desc": "成功"}),
            SENDING,
            5,
            FIRST,
            HOLD,
            Settle(
                BatchStatus.SUCCEEDED,
                {
                    "upstream_code": "00000",
                    "upstream_desc": "成功",
                    "serial_no": "SN-1",
                    "upstream_envelope": envelope("00000"),
                },
            ),
            id="state 1: succeeded",
        ),
        pytest.param(
            answered("00000", {"state": 1}, serial=None),
            SENDING,
            5,
            LAST,
            HOLD,
            Settle(
                BatchStatus.SUCCEEDED,
                {
                    "upstream_code": "00000",
                    "upstream_desc": "",
                    "serial_no": "",
                    "upstream_envelope": envelope("00000", serial=None),
                },
            ),
            id="state 1 as a number, no serial number: succeeded",
        ),
        pytest.param(
            answered("00000", None),
            SENDING,
            5,
            FIRST,
            HOLD,
            Settle(
                BatchStatus.UNKNOWN,
                {"last_error": "upstream code 00000 with a data field that is not a state"},
            ),
            id="success code, no state: held",
        ),
        pytest.param(
            answered("00000", {"state": "2"}),
            SENDING,
            5,
            FIRST,
            RESEND,
            Retry("upstream code 00000 with a data field that is not a state", attempt=1),
            id="success code, no state, resend: retried",
        ),
        pytest.param(
            answered("10002", {"state": "1"}, "系统繁忙"),
            SENDING,
            5,
            FIRST,
            HOLD,
            Settle(
                BatchStatus.UNKNOWN, {"last_error": "upstream code 10002 with state 1 (charged): 系统繁忙"}
            ),
            id="failure code with state 1: held",
        ),
        pytest.param(
            answered("10027", None, "不在上报时间"),
            SENDING,
            5,
            FIRST,
            HOLD,
            Defer(last_error="upstream 10027: 不在上报时间"),
            id="blackout code: deferred",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            SENDING,
            5,
            FIRST,
            HOLD,
            Refuse({"last_error": STATE0, **REFUSED}, 5),
            id="state 0, five records: refused, to be split",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            CHILD,
            1,
            LAST,
            HOLD,
            Refuse({"last_error": STATE0, **REFUSED}, 1),
            id="state 0, a half of one record: refused, the tree decides",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            ONE_SENDING,
            1,
            Delivery(receive_count=3),
            HOLD,
            Retry(STATE0, attempt=1, count_state0=True),
            id="state 0, a file's batch of one record: retried",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            SENDING,
            5,
            FIRST,
            {"STATE0_BISECT_MAX_CALLS": "0"},
            Retry(STATE0, attempt=1, count_state0=True),
            id="state 0, splitting off: retried",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            SPENT,
            1,
            FIRST,
            HOLD,
            Settle(BatchStatus.FAILED, {"last_error": STATE0, **REFUSED}, count_state0=True),
            id="state 0, attempts spent: failed",
        ),
        pytest.param(
            answered("00000", {"state": "0", "desc": "失败"}),
            ONE_SENDING,
            1,
            LAST,
            HOLD,
            Settle(BatchStatus.FAILED, {"last_error": STATE0, **REFUSED}, count_state0=True),
            id="state 0, last delivery: failed",
        ),
        pytest.param(
            answered("10001", None, "认证失败", serial=None),
            SENDING,
            5,
            FIRST,
            HOLD,
            Retry(CODE, attempt=1, count_state0=True),
            id="refusal code: retried, never split",
        ),
        pytest.param(
            answered("10001", None, "认证失败", serial=None),
            CHILD,
            1,
            FIRST,
            HOLD,
            Settle(
                BatchStatus.FAILED,
                {"last_error": CODE, **REFUSAL_CODE, "upstream_envelope": REFUSAL_ENVELOPE},
                count_state0=True,
            ),
            id="refusal code for a half: failed, stops its tree",
        ),
        pytest.param(
            NotSent(reason="connection refused", elapsed_ms=1.0),
            SENDING,
            5,
            Delivery(receive_count=2),
            HOLD,
            Retry("connection refused", attempt=2),
            id="never sent: retried after the backoff",
        ),
        pytest.param(
            NotSent(reason="connection refused", elapsed_ms=1.0),
            batch(BatchStatus.SENDING, attempts=8),
            5,
            LAST,
            HOLD,
            Settle(BatchStatus.FAILED, {"last_error": "connection refused; gave up after 8 attempts"}),
            id="never sent, last delivery: failed",
        ),
        pytest.param(
            HttpError(http_status=429, reason="HTTP 429", elapsed_ms=1.0, retryable=True, retry_after_s=120),
            SENDING,
            5,
            FIRST,
            HOLD,
            Retry("HTTP 429", attempt=1, retry_after_s=120),
            id="429: retried after its Retry-After",
        ),
        pytest.param(
            HttpError(
                http_status=503, reason="HTTP 503", elapsed_ms=1.0, retryable=True, retry_after_s=99_999
            ),
            SENDING,
            5,
            Delivery(receive_count=4),
            HOLD,
            Retry("HTTP 503", attempt=4, retry_after_s=3600),
            id="503: its Retry-After cut to RETRY_AFTER_MAX_SECONDS",
        ),
        pytest.param(
            HttpError(http_status=400, reason="HTTP 400", elapsed_ms=1.0),
            SENDING,
            5,
            FIRST,
            HOLD,
            Settle(BatchStatus.FAILED, {"last_error": "HTTP 400 (not retryable); gave up after 1 attempts"}),
            id="400: failed at once",
        ),
        pytest.param(
            Unknown(reason="read timeout", elapsed_ms=1.0),
            SENDING,
            5,
            FIRST,
            HOLD,
            Settle(BatchStatus.UNKNOWN, {"last_error": "read timeout"}),
            id="answer lost: held",
        ),
        pytest.param(
            Unknown(reason="HTTP 502", elapsed_ms=1.0),
            SENDING,
            5,
            FIRST,
            RESEND,
            Retry("HTTP 502", attempt=1),
            id="answer lost, resend: retried",
        ),
        pytest.param(
            Unknown(reason="HTTP 502", elapsed_ms=1.0),
            batch(BatchStatus.SENDING, attempts=8),
            5,
            LAST,
            RESEND,
            Settle(BatchStatus.UNKNOWN, {"last_error": "HTTP 502; gave up after 8 attempts"}),
            id="answer lost, resend, last delivery: held",
        ),
    ],
)
def test_on_the_answer(
    outcome: CallOutcome,
    read: Batch,
    records: int,
    delivery: Delivery,
    env: dict[str, str],
    decided: Decision,
) -> None:
    assert on_answer(outcome, read, records, delivery, settings(**env)) == decided


@pytest.mark.parametrize(
    ("seconds", "delivery", "policy", "found"),
    [
        (30, FIRST, "hold", LeaseHeld(31, last_delivery=False)),
        (30, LAST, "resend", LeaseHeld(31, last_delivery=True)),
        (0, FIRST, "hold", LeaseLapsed()),
        (-600, LAST, "hold", LeaseLapsed()),
        (0, FIRST, "resend", None),
        (-600, LAST, "resend", None),
    ],
)
def test_the_lease_rule_batches_and_audits_share(
    seconds: int, delivery: Delivery, policy: str, found: LeaseHeld | LeaseLapsed | None
) -> None:
    lease_until = NOW + timedelta(seconds=seconds)
    assert (
        read_lease(lease_until, NOW, delivery, settings(UNKNOWN_OUTCOME_POLICY=policy).unknown_outcome_policy)
        == found
    )
