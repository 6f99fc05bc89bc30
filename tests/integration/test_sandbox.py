"""The upstream sandbox over real HTTP: contract checks, blackout, faults, audit lifecycle, admin API."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.server import SandboxConfig, SandboxHandle, start_sandbox
from verifyfeed.upstream.auth import Credentials, build_authinfo
from verifyfeed.upstream.signing import verify_sign

pytestmark = pytest.mark.integration

API_ID = "test-api-id"
API_KEY = "test-api-key"
SECRET = "test-callback-secret"
CREDS = Credentials(API_ID, API_KEY)
START = "2026-06-10T10:00:00+08:00"  # well outside the blackout, whatever today is
DELAY = 0.2  # the decision delay, on the sandbox's manual clock
# a client timeout never decides a test that is not about timeouts (a loaded machine is slow)
HTTP_TIMEOUT = 60.0

LOST = "/verify/api/lost_repair_upload_data"
ADD = "/carrierAudit/add"
UPDATE = "/carrierAudit/update"
GET = "/carrierAudit/get"

ROOT = Path(__file__).resolve().parents[2]


# --- helpers ------------------------------------------------------------------------------------


def id_card(prefix17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(prefix17, weights, strict=True))
    return prefix17 + "10X98765432"[total % 11]


OWNER_ID = id_card("11010519491231002")  # = 11010519491231002X
DRIVER_ID = id_card("44030419900101123")


def wrong_check_digit(card: str) -> str:
    return card[:17] + ("0" if card[17] != "0" else "1")


def item(n: int, **overrides: str) -> dict[str, str]:
    record = {
        "name": f"小明{n}",
        "idcode": f"{n:064x}",
        "usedPhone": f"{n + 10_000:064x}",
        "authCode": f"AC{n}",
    }
    record.update(overrides)
    return record


def audit_params(usage: Any = "1", **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "usage": usage,
        "name": "买买提·艾力",
        "idCard": OWNER_ID,
        "phone": "13812345678",
    }
    if usage == "1":
        params |= {
            "driverName": "张三",
            "driverIdCard": DRIVER_ID,
            "attachmentFileUrls": "hukou.jpg,marriage.png",
        }
    else:
        params |= {
            "carLicensePlate": "粤B12345",
            "drivingLicenseFilename": "license.jpg",
            "attachmentFileUrls": "agreement.pdf",
        }
    for key, value in overrides.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def envelope(sb: SandboxHandle, param: Any, creds: Credentials = CREDS) -> dict[str, Any]:
    return {"authinfo": build_authinfo(creds, sb.now()).model_dump(), "param": param}


def call(
    sb: SandboxHandle, path: str, param: Any, timeout: float = HTTP_TIMEOUT, creds: Credentials = CREDS
) -> requests.Response:
    """Lost repair: the ``authinfo`` + ``param`` body; carrier audit: the fields at level 1 and
    ``authinfo``'s values as headers (docs/decisions.md#audit-auth)."""
    if path == LOST:
        return requests.post(sb.url + path, json=envelope(sb, param, creds), timeout=timeout)
    headers = build_authinfo(creds, sb.now()).model_dump()
    return requests.post(sb.url + path, json=param, headers=headers, timeout=timeout)


def upload(
    sb: SandboxHandle, items: list[dict[str, str]], timeout: float = HTTP_TIMEOUT
) -> requests.Response:
    return call(sb, LOST, {"toRepairDataArray": items}, timeout=timeout)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def audit_status(sb: SandboxHandle, audit_id: int) -> int:
    reply = call(sb, GET, {"id": audit_id}).json()
    assert reply["code"] == "00000", reply
    return int(reply["data"]["status"])


@dataclass
class Callbacks:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies to give first; then 200


@pytest.fixture
def callbacks() -> Iterator[Callbacks]:
    """A tiny receiver that checks the sign header and records every callback."""
    state = Callbacks(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.received.append(
                    {
                        "path": self.path,
                        "body": body,
                        "json": json.loads(body),
                        "content_type": self.headers.get("Content-Type"),
                        "sign_ok": verify_sign(body, self.headers.get("sign"), [SECRET]),
                    }
                )
                status = state.statuses.pop(0) if state.statuses else 200
            reply = json.dumps({"code": "00000" if status == 200 else "99999", "message": "ok"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/callback/audit"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def config(callback_url: str = "", **overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "api_id": API_ID,
        "api_key": API_KEY,
        "callback_url": callback_url,
        "callback_secret": SECRET,
        "decision_delay_s": DELAY,
        "clock_now": START,
        "clock_mode": "manual",  # decisions come from advancing the clock, never from waiting
        "callback_backoff_s": 0.02,
        "callback_timeout_s": HTTP_TIMEOUT,  # a slow receiver is not a failed attempt here
        "tick_s": 0.02,
    }
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
def sb(callbacks: Callbacks) -> Iterator[SandboxHandle]:
    with start_sandbox(config(callbacks.url)) as handle:
        yield handle


def entries_for(sb: SandboxHandle, endpoint: str) -> list[Any]:
    return [e for e in sb.ledger() if e.endpoint == endpoint]


def settled_callbacks(sb: SandboxHandle, n: int) -> list[Any]:
    """The callback ledger entries once there are ``n`` and each has its result written."""

    def ready() -> list[Any]:
        entries = entries_for(sb, "callback")
        done = len(entries) == n and all(e.http_status is not None or e.detail for e in entries)
        return entries if done else []

    entries: list[Any] = wait_for(ready, what=f"{n} settled callback attempts")
    return entries


# --- lost_repair_upload_data --------------------------------------------------------------------


def test_valid_upload_is_accepted_and_recorded(sb: SandboxHandle) -> None:
    items = [item(1), item(2, usedPhone="")]
    reply = upload(sb, items)
    assert reply.status_code == 200
    body = reply.json()
    assert body["code"] == "00000" and body["message"] == "请求成功"
    assert body["data"] == {"state": "1", "desc": "成功"}
    assert body["serialNo"].startswith("SBX")

    accepted = sb.accepted_records()
    assert [(r.name, r.idcode, r.usedPhone, r.authCode) for r in accepted] == [
        (i["name"], i["idcode"], i["usedPhone"], i["authCode"]) for i in items
    ]
    assert {r.serial_no for r in accepted} == {body["serialNo"]}
    (entry,) = sb.ledger()
    assert (entry.endpoint, entry.code, entry.processed, entry.accepted) == (LOST, "00000", True, True)

    over_http = requests.get(sb.url + "/_sandbox/ledger/records", timeout=HTTP_TIMEOUT).json()
    assert over_http["count"] == 2
    assert over_http["counts"] == {items[0]["idcode"]: 1, items[1]["idcode"]: 1}


def test_second_upload_of_same_record_is_counted_twice(sb: SandboxHandle) -> None:
    assert upload(sb, [item(1)]).json()["data"]["state"] == "1"
    assert upload(sb, [item(1)]).json()["data"]["state"] == "1"
    assert sb.record_counts() == {item(1)["idcode"]: 2}


def test_usedphone_may_be_absent(sb: SandboxHandle) -> None:
    record = item(1)
    del record["usedPhone"]
    assert upload(sb, [record]).json()["code"] == "00000"
    assert sb.accepted_records()[0].usedPhone == ""


def test_in_batch_duplicates_are_dropped_silently(sb: SandboxHandle) -> None:
    first, fourth = item(1), item(4)
    same_idcode = item(2, idcode=first["idcode"])
    same_authcode = item(3, authCode=first["authCode"])
    reply = upload(sb, [first, same_idcode, same_authcode, fourth]).json()
    assert reply["code"] == "00000" and reply["data"]["state"] == "1"
    assert [r.authCode for r in sb.accepted_records()] == [first["authCode"], fourth["authCode"]]
    (entry,) = sb.ledger()
    assert entry.dropped == [same_idcode, same_authcode]


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "名" * 31}, "name"),
        ({"idcode": "A" * 64}, "idcode"),
        ({"idcode": "a" * 63}, "idcode"),
        ({"idcode": "g" * 64}, "idcode"),
        ({"usedPhone": "123"}, "usedPhone"),
        ({"usedPhone": "F" * 64}, "usedPhone"),
        ({"authCode": "A" * 17}, "authCode"),
        ({"authCode": "AC-1"}, "authCode"),
        ({"authCode": ""}, "authCode"),
        ({"extra": "x"}, "extra"),
    ],
)
def test_invalid_field_refuses_the_whole_batch(
    sb: SandboxHandle, overrides: dict[str, str], field_name: str
) -> None:
    reply = upload(sb, [item(1), item(2, **overrides)]).json()
    assert reply["code"] == "10002"
    assert reply["data"] is None
    assert "toRepairDataArray[1]" in reply["message"] and field_name in reply["message"]
    assert sb.accepted_records() == []
    (entry,) = sb.ledger()
    assert entry.accepted is False and entry.outcome == "10002"


def test_missing_required_field_is_refused(sb: SandboxHandle) -> None:
    record = item(1)
    del record["authCode"]
    assert upload(sb, [record]).json()["code"] == "10002"
    assert sb.accepted_records() == []


def test_name_of_30_characters_is_accepted(sb: SandboxHandle) -> None:
    assert upload(sb, [item(1, name="名" * 30)]).json()["code"] == "00000"


def test_batch_size_limits(sb: SandboxHandle) -> None:
    too_many = upload(sb, [item(n) for n in range(1001)]).json()
    assert too_many["code"] == "10002" and "1001" in too_many["message"]
    assert upload(sb, []).json()["code"] == "10002"
    assert sb.accepted_records() == []
    full = upload(sb, [item(n) for n in range(1000)]).json()
    assert full["code"] == "00000"
    assert len(sb.record_counts()) == 1000


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda sb: envelope(sb, {}, creds=Credentials(API_ID, "wrong-key")), id="wrong-key"),
        pytest.param(lambda sb: envelope(sb, {}, creds=Credentials("other-id", API_KEY)), id="wrong-api-id"),
        pytest.param(
            lambda sb: {
                "authinfo": build_authinfo(CREDS, sb.now() - timedelta(minutes=10)).model_dump(),
                "param": {},
            },
            id="stale-timestamp",
        ),
        pytest.param(lambda sb: {**envelope(sb, {}), "authinfo": None}, id="missing"),
        pytest.param(
            lambda sb: {"authinfo": {**envelope(sb, {})["authinfo"], "sign": "0" * 64}, "param": {}},
            id="bad-sign",
        ),
    ],
)
def test_bad_authinfo_is_refused(
    sb: SandboxHandle, mangle: Callable[[SandboxHandle], dict[str, Any]]
) -> None:
    body = mangle(sb)
    body["param"] = {"toRepairDataArray": [item(1)]}
    reply = requests.post(sb.url + LOST, json=body, timeout=HTTP_TIMEOUT)
    assert reply.status_code == 200
    assert reply.json()["code"] == "10001" and reply.json()["data"] is None
    assert sb.accepted_records() == []


def test_body_that_is_not_json_is_refused(sb: SandboxHandle) -> None:
    reply = requests.post(sb.url + LOST, data=b"not json", timeout=HTTP_TIMEOUT)
    assert reply.json()["code"] == "10002"


@pytest.mark.parametrize(
    ("now", "code"),
    [
        ("2026-12-26T23:59:59+08:00", "00000"),
        ("2026-12-27T00:00:00+08:00", "10027"),
        ("2026-12-31T23:59:58+08:00", "10027"),
        ("2026-12-26T16:00:00+00:00", "10027"),  # = 27th 00:00 China time
        ("2027-01-01T00:00:00+08:00", "00000"),
    ],
)
def test_blackout_follows_the_sandbox_clock(sb: SandboxHandle, now: str, code: str) -> None:
    sb.set_clock(now)
    reply = upload(sb, [item(1)]).json()
    assert reply["code"] == code
    assert len(sb.accepted_records()) == (1 if code == "00000" else 0)


def test_clock_can_be_set_over_http(sb: SandboxHandle) -> None:
    answer = requests.post(
        sb.url + "/_sandbox/clock", json={"now": "2026-12-27T00:00:00+08:00"}, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 200 and answer.json()["now"].startswith("2026-12-27T00:00")
    reply = upload(sb, [item(1)]).json()
    assert reply["code"] == "10027" and "2027-01-01" in reply["message"]
    bad = requests.post(sb.url + "/_sandbox/clock", json={"now": "2026-12-27T00:00:00"}, timeout=HTTP_TIMEOUT)
    assert bad.status_code == 400  # no offset


def test_audits_are_not_blacked_out(sb: SandboxHandle) -> None:
    sb.set_clock("2026-12-28T12:00:00+08:00")
    assert call(sb, ADD, audit_params()).json()["code"] == "00000"


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_status_code_fault_before_is_not_processed(sb: SandboxHandle, status: int) -> None:
    sb.set_faults({"status_code": status, "count": 1})
    reply = upload(sb, [item(1)])
    assert reply.status_code == status and reply.json()["code"] == "50000"
    assert sb.accepted_records() == []
    assert upload(sb, [item(1)]).json()["code"] == "00000"  # count was 1
    first, second = sb.ledger()
    assert (first.processed, first.fault, first.phase, first.http_status) == (
        False,
        f"status_code={status}",
        "before",
        status,
    )
    assert second.fault is None and second.accepted


def test_status_code_fault_after_is_processed_and_charged(sb: SandboxHandle) -> None:
    sb.set_faults({"status_code": 502, "phase": "after"})
    reply = upload(sb, [item(1)])
    assert reply.status_code == 502
    assert sb.record_counts() == {item(1)["idcode"]: 1}
    (entry,) = sb.ledger()
    assert entry.processed and entry.accepted and entry.outcome == "00000" and entry.code == "50000"


@pytest.mark.parametrize("retry_after", ["120", "Wed, 10 Jun 2026 02:01:30 GMT"])
def test_a_status_code_fault_may_say_when_to_retry(sb: SandboxHandle, retry_after: str) -> None:
    sb.set_faults({"status_code": 503, "retry_after": retry_after, "count": 1})
    reply = upload(sb, [item(1)])
    assert reply.status_code == 503 and reply.headers["Retry-After"] == retry_after
    assert (
        sb.accepted_records() == [] and sb.ledger()[0].fault == f"status_code=503,retry_after={retry_after}"
    )
    again = upload(sb, [item(1)])
    assert again.status_code == 200 and "Retry-After" not in again.headers


@pytest.mark.parametrize(
    "fault",
    [
        {"retry_after": "120"},  # no status to carry it
        {"status_code": 503, "retry_after": "soon"},
        {"status_code": 503, "retry_after": "-1"},
        {"status_code": 503, "retry_after": "1.5"},
        {"status_code": 429, "retry_after": "Wed, 10 Jun 2026 02:01:30"},  # a date needs its GMT
    ],
)
def test_a_retry_after_must_be_seconds_or_an_http_date_on_a_status(sb: SandboxHandle, fault: Any) -> None:
    reply = requests.post(sb.url + "/_sandbox/faults", json=fault, timeout=HTTP_TIMEOUT)
    assert reply.status_code == 400 and "retry_after" in reply.json()["error"]
    with pytest.raises(ValueError, match="retry_after"):
        sb.set_faults(fault)


def test_error_rate_is_seeded_and_reproducible(callbacks: Callbacks) -> None:
    def pattern(seed: int) -> list[int]:
        with start_sandbox(config(seed=seed)) as box:
            box.set_faults({"error_rate": 0.5})
            return [upload(box, [item(n)]).status_code for n in range(12)]

    first = pattern(7)
    assert first == pattern(7)
    assert set(first) == {200, 500}


def test_error_rate_extremes(sb: SandboxHandle) -> None:
    sb.set_faults({"error_rate": 1.0})
    reply = upload(sb, [item(1)])
    assert reply.status_code == 500 and reply.json()["code"] == "50000"
    sb.set_faults({"error_rate": 0.0})
    assert upload(sb, [item(2)]).status_code == 200
    assert [r.authCode for r in sb.accepted_records()] == ["AC2"]
    assert sb.ledger()[1].fault == "error_rate=0.0 (miss)"


def test_latency(sb: SandboxHandle) -> None:
    sb.set_faults({"latency_ms": 300})
    started = time.monotonic()
    reply = upload(sb, [item(1)])
    assert time.monotonic() - started >= 0.3
    assert reply.json()["code"] == "00000" and len(sb.accepted_records()) == 1


def test_timeout_after_is_processed_although_the_client_gave_up(sb: SandboxHandle) -> None:
    sb.set_faults({"timeout_s": 3.0, "phase": "after", "count": 1})
    with pytest.raises(requests.ReadTimeout):
        upload(sb, [item(1)], timeout=0.3)
    wait_for(lambda: sb.record_counts(), what="the upstream to have processed the upload")
    assert sb.record_counts() == {item(1)["idcode"]: 1}
    (entry,) = sb.ledger()
    assert entry.processed and entry.accepted and entry.phase == "after"


def test_timeout_before_is_not_processed(sb: SandboxHandle) -> None:
    sb.set_faults({"timeout_s": 0.5, "count": 1})
    with pytest.raises(requests.ReadTimeout):
        upload(sb, [item(1)], timeout=0.2)
    wait_for(lambda: sb.ledger()[0].http_status == 504, what="the 504 after the timeout")
    assert sb.accepted_records() == []
    assert sb.ledger()[0].processed is False


@pytest.mark.parametrize(("phase", "charged"), [("before", 0), ("after", 1)])
def test_reset_closes_the_connection(sb: SandboxHandle, phase: str, charged: int) -> None:
    sb.set_faults({"reset": True, "phase": phase, "count": 1})
    with pytest.raises(requests.ConnectionError):
        upload(sb, [item(1)])
    assert len(sb.accepted_records()) == charged
    (entry,) = sb.ledger()
    assert entry.processed is bool(charged) and entry.http_status is None and entry.code is None
    assert upload(sb, [item(2)]).json()["code"] == "00000"


@pytest.mark.parametrize(("phase", "charged"), [("before", 0), ("after", 1)])
def test_invalid_json_reply(sb: SandboxHandle, phase: str, charged: int) -> None:
    sb.set_faults({"invalid_json": True, "phase": phase})
    reply = upload(sb, [item(1)])
    assert reply.status_code == 200
    with pytest.raises(ValueError):
        reply.json()
    assert len(sb.accepted_records()) == charged


def test_state0_charges_nothing(sb: SandboxHandle) -> None:
    sb.set_faults({"state0": True, "count": 1})
    reply = upload(sb, [item(1)]).json()
    assert reply["code"] == "00000" and reply["data"] == {"state": "0", "desc": "失败"}
    assert sb.accepted_records() == []
    assert sb.ledger()[0].processed and not sb.ledger()[0].accepted
    assert upload(sb, [item(1)]).json()["data"]["state"] == "1"


def test_an_error_code_with_state_1_is_charged(sb: SandboxHandle) -> None:
    """The shape the client must not read as "not charged": a failure code, ``data.state`` "1"."""
    sb.set_faults({"endpoint": "lost_repair", "answer": "error_code_with_state_1", "count": 1})
    reply = upload(sb, [item(1)])
    body = reply.json()
    assert reply.status_code == 200 and body["code"] == "50000" and body["data"]["state"] == "1"
    assert sb.record_counts() == {item(1)["idcode"]: 1}
    (entry,) = sb.ledger()
    assert entry.processed and entry.accepted and entry.code == "50000"
    assert upload(sb, [item(2)]).json()["code"] == "00000"  # count was 1


def test_state0_still_checks_the_request(sb: SandboxHandle) -> None:
    sb.set_faults({"state0": True})
    assert upload(sb, [item(1, idcode="bad")]).json()["code"] == "10002"


def test_fault_limited_to_one_endpoint_and_count(sb: SandboxHandle) -> None:
    sb.set_faults([{"endpoint": "audit_add", "status_code": 503, "count": 2}])
    assert upload(sb, [item(1)]).status_code == 200
    assert call(sb, ADD, audit_params()).status_code == 503
    assert call(sb, ADD, audit_params()).status_code == 503
    reply = call(sb, ADD, audit_params())
    assert reply.status_code == 200 and reply.json()["data"] == 1  # the faulted adds created nothing


def test_fault_after_on_audit_add_creates_the_record(sb: SandboxHandle) -> None:
    sb.set_faults({"endpoint": "/carrierAudit/add", "reset": True, "phase": "after", "count": 1})
    with pytest.raises(requests.ConnectionError):
        call(sb, ADD, audit_params())
    assert [a.id for a in sb.audits()] == [1]


@pytest.mark.parametrize("status", [None, 301, 302, 303, 307, 308])
def test_redirect_fault_answers_its_location_and_processes_nothing(
    sb: SandboxHandle, status: int | None
) -> None:
    moved = sb.url + LOST + "?moved=1"
    sb.set_faults({"endpoint": "lost_repair", "redirect_to": moved, "status_code": status, "count": 1})
    body = envelope(sb, {"toRepairDataArray": [item(1)]})
    reply = requests.post(sb.url + LOST, json=body, timeout=5, allow_redirects=False)
    assert (reply.status_code, reply.headers["Location"]) == (status or 307, moved)
    (entry,) = sb.ledger()
    assert (entry.processed, entry.accepted, entry.http_status) == (False, False, status or 307)
    assert entry.fault is not None and f"redirect_to={moved}" in entry.fault
    assert sb.accepted_records() == []


@pytest.mark.parametrize(
    "fault",
    [
        {"redirect_to": "elsewhere"},  # neither a path nor an http(s) URL
        {"redirect_to": "/x\r\nSet-Cookie: a=b"},  # it becomes a header
        {"redirect_to": "/a b"},
        {"redirect_to": "/x", "status_code": 500},  # a redirect's status only
        {"redirect_to": "/x", "status_code": 200},
        {"redirect_to": "/x", "reset": True},  # an answer of its own
        {"redirect_to": "/x", "invalid_json": True},
        {"redirect_to": "/x", "error_rate": 0.5},
        {"redirect_to": "/" + "x" * 2048},
    ],
)
def test_redirect_fault_input_is_validated(sb: SandboxHandle, fault: dict[str, Any]) -> None:
    sb.set_faults({"latency_ms": 1})
    refused = requests.post(sb.url + "/_sandbox/faults", json=fault, timeout=5)
    assert refused.status_code == 400 and "redirect_to" in refused.text
    assert [f["latency_ms"] for f in sb.app.faults.snapshot()] == [1]  # the faults in force are kept


def test_faults_over_http(sb: SandboxHandle) -> None:
    listed = requests.post(
        sb.url + "/_sandbox/faults",
        json=[{"endpoint": "lost_repair", "status_code": 429, "count": 1}, {"latency_ms": 1}],
        timeout=HTTP_TIMEOUT,
    )
    assert listed.status_code == 200
    assert [f["remaining"] for f in listed.json()["faults"]] == [1, None]
    assert upload(sb, [item(1)]).status_code == 429
    assert (
        requests.get(sb.url + "/_sandbox/faults", timeout=HTTP_TIMEOUT).json()["faults"][0]["remaining"] == 0
    )
    assert (
        requests.post(sb.url + "/_sandbox/faults", json={"bogus": 1}, timeout=HTTP_TIMEOUT).status_code == 400
    )
    sb.set_faults({"status_code": 500})
    assert requests.delete(sb.url + "/_sandbox/faults", timeout=HTTP_TIMEOUT).status_code == 200
    assert upload(sb, [item(2)]).status_code == 200


# --- carrierAudit: validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (audit_params(usage="4"), "usage"),
        (audit_params(usage=None), "usage"),
        (audit_params(usage=1), "usage"),
        (audit_params(name="John"), "name"),
        (audit_params(name="张三1"), "name"),
        (audit_params(name="张" * 21), "name"),
        (audit_params(name=None), "name"),
        (audit_params(name="··"), "name"),
        (audit_params(idCard=wrong_check_digit(OWNER_ID)), "idCard"),
        (audit_params(idCard=OWNER_ID[:17]), "idCard"),
        (audit_params(idCard=OWNER_ID[:17] + "x"), "idCard"),  # lower-case x
        (audit_params(idCard="A" + OWNER_ID[1:]), "idCard"),
        (audit_params(phone="12012345678"), "phone"),
        (audit_params(phone="1381234567"), "phone"),
        (audit_params(phone="+8613812345678"), "phone"),
        (audit_params(phone=None), "phone"),
        (audit_params(idCardFrontFilename="f" * 256), "idCardFrontFilename"),
        (audit_params(driverIdCardBackFilename="f" * 256), "driverIdCardBackFilename"),
        (audit_params(driverName=None), "driverName"),
        (audit_params(driverName="Zhang"), "driverName"),
        (audit_params(driverIdCard=None), "driverIdCard"),
        (audit_params(driverIdCard=wrong_check_digit(DRIVER_ID)), "driverIdCard"),
        (audit_params(attachmentFileUrls=None), "attachmentFileUrls"),
        (audit_params(attachmentFileUrls=",".join(f"f{n}.jpg" for n in range(10))), "attachmentFileUrls"),
        (audit_params(attachmentFileUrls="a.jpg,,b.jpg"), "attachmentFileUrls"),
        (audit_params(attachmentFileUrls="a.jpg,"), "attachmentFileUrls"),
        (audit_params(usage="2", carLicensePlate=None), "carLicensePlate"),
        (audit_params(usage="3", carLicensePlate=""), "carLicensePlate"),
        (audit_params(usage="2", drivingLicenseFilename=None), "drivingLicenseFilename"),
        (audit_params(usage="3", drivingLicenseFilename="f" * 256), "drivingLicenseFilename"),
        (audit_params(usage="2", attachmentFileUrls=None), "attachmentFileUrls"),
        (audit_params(unknownField="x"), "unknownField"),
    ],
)
def test_audit_add_validation(sb: SandboxHandle, params: dict[str, Any], reason: str) -> None:
    reply = call(sb, ADD, params).json()
    assert reply["code"] == "10002" and reply["data"] is None
    assert reason in reply["message"]
    assert sb.audits() == []


@pytest.mark.parametrize(
    "params",
    [
        audit_params(usage="1"),
        audit_params(usage="2"),
        audit_params(usage="3", name="欧阳娜娜", idCardFrontFilename="", driverName=None, driverIdCard=None),
        audit_params(attachmentFileUrls=",".join(f"f{n}.jpg" for n in range(9))),
        audit_params(name="张" * 20, idCardFrontFilename="f" * 255),
    ],
)
def test_audit_add_accepts_valid_requests(sb: SandboxHandle, params: dict[str, Any]) -> None:
    reply = call(sb, ADD, params).json()
    assert reply == {"code": "00000", "message": "请求成功", "data": 1, "serialNo": reply["serialNo"]}
    assert call(sb, ADD, params).json()["data"] == 2
    assert [a.status for a in sb.audits()] == [0, 0]


def test_first_audit_id_is_configurable(callbacks: Callbacks) -> None:
    with start_sandbox(config(first_audit_id=500)) as box:
        assert call(box, ADD, audit_params()).json()["data"] == 500


# --- carrierAudit: lifecycle --------------------------------------------------------------------


def test_audit_passes_and_a_signed_callback_arrives(sb: SandboxHandle, callbacks: Callbacks) -> None:
    audit_id = call(sb, ADD, audit_params()).json()["data"]
    pending = call(sb, GET, {"id": audit_id}).json()
    assert pending["code"] == "00000" and pending["data"]["status"] == "0"  # String, as /get's table

    sb.advance(DELAY)
    (cb,) = wait_for(lambda: list(callbacks.received), what="the callback")
    assert cb["sign_ok"] is True
    assert cb["content_type"] == "application/json"
    assert cb["json"] == {
        "apiId": API_ID,
        "serviceName": "auditCarrierAudit",
        "id": audit_id,
        "status": 1,
        "remarks": "审核通过",
    }
    assert b" " not in cb["body"]  # compact JSON
    assert call(sb, GET, {"id": audit_id}).json()["data"] == {
        "id": audit_id,
        "status": "1",
        "remarks": "审核通过",
    }
    (attempt,) = settled_callbacks(sb, 1)
    assert (attempt.audit_id, attempt.attempt, attempt.http_status) == (audit_id, 1, 200)


def test_audit_rejected_when_a_file_name_says_reject(sb: SandboxHandle, callbacks: Callbacks) -> None:
    audit_id = call(sb, ADD, audit_params(usage="2", attachmentFileUrls="ok.jpg,REJECT-me.jpg")).json()[
        "data"
    ]
    sb.advance(DELAY)
    (cb,) = wait_for(lambda: list(callbacks.received), what="the callback")
    assert cb["sign_ok"] and cb["json"]["status"] == 2 and cb["json"]["remarks"] == "证明材料不清晰"
    assert audit_status(sb, audit_id) == 2


def test_decision_waits_for_the_delay(callbacks: Callbacks) -> None:
    with start_sandbox(config(callbacks.url, decision_delay_s=60)) as box:
        audit_id = call(box, ADD, audit_params()).json()["data"]
        box.advance(59.999)
        assert audit_status(box, audit_id) == 0
        assert box.callbacks_done() and callbacks.received == []
        box.advance(0.001)  # the delay is up: decided before advance returns
        assert audit_status(box, audit_id) == 1
        wait_for(lambda: len(callbacks.received) == 1, what="the callback")


def test_callback_is_retried_on_errors(sb: SandboxHandle, callbacks: Callbacks) -> None:
    callbacks.statuses = [500, 503]
    audit_id = call(sb, ADD, audit_params()).json()["data"]
    sb.advance(DELAY)
    wait_for(lambda: len(callbacks.received) == 3, what="three callback attempts")
    attempts = settled_callbacks(sb, 3)
    assert [(e.attempt, e.http_status, e.accepted) for e in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert all(cb["sign_ok"] for cb in callbacks.received)
    record = sb.audit(audit_id)
    assert record is not None and [c["http_status"] for c in record.callbacks] == [500, 503, 200]


def test_callback_gives_up_after_the_retries(callbacks: Callbacks) -> None:
    with start_sandbox(config("http://127.0.0.1:9/unreachable", callback_retries=2)) as box:
        call(box, ADD, audit_params())
        box.advance(DELAY)
        attempts = settled_callbacks(box, 3)
        assert [e.http_status for e in attempts] == [None, None, None]
        assert all(e.detail == "ConnectionError" for e in attempts)
        assert box.callbacks_done()  # the sender gave up: no fourth attempt will come
        assert len(entries_for(box, "callback")) == 3


def test_drop_callbacks_decides_without_calling_back(sb: SandboxHandle, callbacks: Callbacks) -> None:
    sb.set_faults({"drop_callbacks": True, "count": 1})
    first = call(sb, ADD, audit_params()).json()["data"]
    sb.advance(DELAY)
    assert audit_status(sb, first) == 1
    assert sb.callbacks_done() and callbacks.received == []
    (dropped,) = entries_for(sb, "callback")
    assert dropped.detail == "callback dropped" and dropped.fault == "drop_callbacks"
    second = call(sb, ADD, audit_params()).json()["data"]  # count was 1: this one is called back
    sb.advance(DELAY)
    (cb,) = wait_for(lambda: list(callbacks.received), what="the second callback")
    assert cb["json"]["id"] == second


def test_update_of_a_rejected_audit_restarts_it(sb: SandboxHandle, callbacks: Callbacks) -> None:
    audit_id = call(sb, ADD, audit_params(attachmentFileUrls="reject.jpg")).json()["data"]
    sb.advance(DELAY)
    assert audit_status(sb, audit_id) == 2

    fixed = audit_params(attachmentFileUrls="hukou-clear.jpg", phone="13900000000")
    reply = call(sb, UPDATE, {**fixed, "id": audit_id}).json()
    assert reply["code"] == "00000" and reply["data"] is True
    assert audit_status(sb, audit_id) == 0
    sb.advance(DELAY)
    assert audit_status(sb, audit_id) == 1

    statuses = wait_for(
        lambda: len(callbacks.received) == 2 and [c["json"]["status"] for c in callbacks.received]
    )
    assert statuses == [2, 1]
    record = sb.audit(audit_id)
    assert record is not None and record.revision == 1 and record.params == fixed


def test_update_refused_unless_rejected(sb: SandboxHandle) -> None:
    audit_id = call(sb, ADD, audit_params()).json()["data"]
    assert call(sb, UPDATE, {**audit_params(), "id": audit_id}).json()["code"] == "20009"  # pending
    sb.advance(DELAY)
    assert audit_status(sb, audit_id) == 1
    assert call(sb, UPDATE, {**audit_params(), "id": audit_id}).json()["code"] == "20009"  # passed
    assert audit_status(sb, audit_id) == 1
    assert call(sb, UPDATE, {**audit_params(), "id": 999}).json()["code"] == "20004"
    assert call(sb, UPDATE, audit_params()).json()["code"] == "10002"  # no id


def test_invalid_update_leaves_the_rejected_record_alone(sb: SandboxHandle) -> None:
    params = audit_params(drivingLicenseFilename="reject.png")
    audit_id = call(sb, ADD, params).json()["data"]
    sb.advance(DELAY)
    assert audit_status(sb, audit_id) == 2
    reply = call(sb, UPDATE, {**audit_params(phone="123"), "id": audit_id}).json()
    assert reply["code"] == "10002" and "phone" in reply["message"]
    record = sb.audit(audit_id)
    assert record is not None and record.status == 2 and record.params == params


def test_get_unknown_or_malformed_id(sb: SandboxHandle) -> None:
    assert call(sb, GET, {"id": 42}).json()["code"] == "20004"
    assert call(sb, GET, {"id": "42"}).json()["code"] == "20004"  # a numeric string is read as the id
    assert call(sb, GET, {"id": "x1"}).json()["code"] == "10002"
    assert call(sb, GET, {"id": True}).json()["code"] == "10002"
    assert call(sb, GET, {}).json()["code"] == "10002"


# --- admin API, logging, CLI --------------------------------------------------------------------


def test_admin_endpoints(sb: SandboxHandle) -> None:
    health = requests.get(sb.url + "/_sandbox/health", timeout=HTTP_TIMEOUT).json()
    assert health["status"] == "ok" and health["now"].startswith("2026-06-10T10:00")
    upload(sb, [item(1)])
    call(sb, ADD, audit_params())
    ledger = requests.get(sb.url + "/_sandbox/ledger", timeout=HTTP_TIMEOUT).json()["entries"]
    assert [(e["seq"], e["endpoint"]) for e in ledger[:2]] == [(1, LOST), (2, ADD)]
    assert ledger[1]["audit_id"] == 1
    audits = requests.get(sb.url + "/_sandbox/audits", timeout=HTTP_TIMEOUT).json()["audits"]
    assert [a["id"] for a in audits] == [1]
    assert requests.post(sb.url + "/_sandbox/reset", timeout=HTTP_TIMEOUT).json() == {"status": "reset"}
    assert requests.get(sb.url + "/_sandbox/ledger", timeout=HTTP_TIMEOUT).json()["entries"] == []
    assert sb.audits() == [] and sb.accepted_records() == []
    assert call(sb, ADD, audit_params()).json()["data"] == 1  # ids restart
    assert requests.get(sb.url + "/nowhere", timeout=HTTP_TIMEOUT).status_code == 404
    assert requests.get(sb.url + LOST, timeout=HTTP_TIMEOUT).status_code == 405


def test_serial_numbers_are_unique(sb: SandboxHandle) -> None:
    serials = {upload(sb, [item(n)]).json()["serialNo"] for n in range(20)}
    assert len(serials) == 20


def test_concurrent_uploads_are_all_recorded(sb: SandboxHandle) -> None:
    threads = [threading.Thread(target=upload, args=(sb, [item(n)])) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sb.record_counts()) == 20
    assert sorted(e.seq for e in sb.ledger()) == list(range(1, 21))


def test_logs_hold_no_personal_data(sb: SandboxHandle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sandbox")
    params = audit_params()
    call(sb, ADD, params)
    upload(sb, [item(1)])
    sb.advance(DELAY)
    assert "decided" in caplog.text
    assert "/carrierAudit/add" in caplog.text
    for secret in (
        params["name"],
        params["idCard"],
        params["phone"],
        params["driverIdCard"],
        "小明1",
        item(1)["idcode"],
    ):
        assert secret not in caplog.text


def test_cli_prints_its_url_and_stops_on_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers/core/python'}{os.pathsep}{ROOT}",
        "UPSTREAM_API_KEY": API_KEY,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--api-id", API_ID, "--clock-now", START],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert (
            requests.get(url + "/_sandbox/health", timeout=HTTP_TIMEOUT)
            .json()["now"]
            .startswith("2026-06-10")
        )
        body = {
            "authinfo": build_authinfo(CREDS, datetime.fromisoformat(START)).model_dump(),
            "param": {"toRepairDataArray": [item(1)]},
        }
        assert requests.post(url + LOST, json=body, timeout=HTTP_TIMEOUT).json()["code"] == "00000"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, stderr = proc.communicate()
    assert item(1)["idcode"] not in stderr and "小明1" not in stderr


def test_a_batch_holding_a_refused_record_is_answered_state0_over_http(sb: SandboxHandle) -> None:
    refused = item(2)
    url = sb.url + "/_sandbox/refuse"
    assert requests.post(
        url, json={"records": [refused["authCode"]], "desc": "授权码已使用"}, timeout=HTTP_TIMEOUT
    ).json() == {"records": {refused["authCode"]: "授权码已使用"}}
    reply = upload(sb, [item(1), refused, item(3)]).json()
    assert reply["code"] == "00000" and reply["data"] == {"state": "0", "desc": "授权码已使用"}
    assert upload(sb, [item(1), item(3)]).json()["data"]["state"] == "1"  # without it: accepted
    sb.refuse({refused["idcode"]: "姓名不合法"})  # by idcode, a desc of its own
    assert upload(sb, [refused]).json()["data"] == {"state": "0", "desc": "姓名不合法"}
    assert sb.record_counts() == {item(1)["idcode"]: 1, item(3)["idcode"]: 1}  # the refused: never charged
    assert requests.post(url, json={"records": "x"}, timeout=HTTP_TIMEOUT).status_code == 400
    assert requests.delete(url, timeout=HTTP_TIMEOUT).json() == {"records": {}}
    assert upload(sb, [refused]).json()["data"]["state"] == "1"


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ({"endpoint": "nope", "reset": True}, "endpoint 'nope' is none of audit_add, audit_get"),
        ({"endpoint": "lost_repair", "count": 1}, "a fault sets at least one knob"),
        ({"endpoint": "audit_add", "state0": True}, "state0 answers lost-repair batches"),
        ({"endpoint": "lost_repair", "drop_callbacks": True}, "drop_callbacks matches audit decisions"),
        ([{"latency_ms": 1}, {"endpoint": "/nope", "reset": True}], "endpoint '/nope' is none of"),
    ],
)
def test_a_fault_that_would_do_nothing_is_refused_saying_why(sb: SandboxHandle, fault: Any, why: str) -> None:
    sb.set_faults({"latency_ms": 1})
    refused = requests.post(sb.url + "/_sandbox/faults", json=fault, timeout=HTTP_TIMEOUT)
    assert refused.status_code == 400 and why in refused.json()["error"], refused.text
    assert "pydantic" not in refused.text  # said in a line, not as a validation dump
    assert [f["latency_ms"] for f in sb.app.faults.snapshot()] == [1]  # the faults in force are kept


def test_the_clock_says_how_it_runs(sb: SandboxHandle) -> None:
    assert requests.get(sb.url + "/_sandbox/clock", timeout=HTTP_TIMEOUT).json() == {
        "now": START,
        "mode": "manual",
    }
    with start_sandbox(config(clock_mode="running", clock_now="")) as running:
        assert requests.get(running.url + "/_sandbox/clock", timeout=HTTP_TIMEOUT).json()["mode"] == "system"
        running.set_clock("2026-11-25T10:00:00+08:00")
        assert requests.get(running.url + "/_sandbox/clock", timeout=HTTP_TIMEOUT).json()["mode"] == "set"
