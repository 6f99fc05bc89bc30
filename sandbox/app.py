"""The upstream's behaviour, without HTTP: requests in, replies (or broken replies) out.

``Sandbox.handle`` is called from the HTTP handler's thread and may block (latency and timeout
faults); every wait is on the stop event so ``stop()`` is prompt. Audits are decided a delay after
they were submitted, on the sandbox's clock: with the system or an offset clock a daemon thread
checks every ``tick_s``; with the manual clock (``clock_mode="manual"``, for tests) nothing moves
until the clock is advanced, and each move decides what fell due at once. Each callback is sent
from a short-lived daemon thread.

The wire contracts (``authinfo``, the callback ``sign``, the blackout, China time) are checked by
``sandbox.contract``, written independently of ``verifyfeed``. Answers come in the seeds' own
shapes by default (``shapes="table"``: ``/get`` types ``status`` as the String its table says);
``"mock"`` answers ``status`` as the number the mock example shows, ``"strings"`` answers every id
and status as a string (``/add``'s ``data`` too, and the callback's ``id``/``status``).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from sandbox.config import SandboxConfig
from sandbox.contract import auth_from_headers, blackout_resumes_at, callback_sign, check_auth, china
from sandbox.faults import AppliedFault, FaultBook, FaultInput
from sandbox.ledger import Ledger, LedgerEntry
from sandbox.validation import (
    AUDIT_FIELDS,
    FILENAME_FIELDS,
    check_audit_params,
    check_repair_param,
    dedupe_batch,
)

log = logging.getLogger("sandbox")

LOST_REPAIR = "/verify/api/lost_repair_upload_data"
AUDIT_ADD = "/carrierAudit/add"
AUDIT_UPDATE = "/carrierAudit/update"
AUDIT_GET = "/carrierAudit/get"
API_PATHS = (LOST_REPAIR, AUDIT_ADD, AUDIT_UPDATE, AUDIT_GET)

OK = "00000"
AUTH_INVALID = "10001"
PARAM_INVALID = "10002"
BLACKOUT = "10027"
UNKNOWN_AUDIT = "20004"
NOT_UPDATABLE = "20009"
INJECTED = "50000"
MESSAGES = {
    OK: "请求成功",
    AUTH_INVALID: "authinfo invalid",
    UNKNOWN_AUDIT: "audit record not found",
    NOT_UPDATABLE: "audit record can only be updated after it was rejected",
    INJECTED: "injected fault",
}

PENDING, PASSED, REJECTED = 0, 1, 2
REMARKS_PENDING = "审核中"
REMARKS_PASSED = "审核通过"
REMARKS_REJECTED = "证明材料不清晰"
CALLBACK_SERVICE = "auditCarrierAudit"
INVALID_JSON_BODY = b"<html><body>502 Bad Gateway</body></html>"


@dataclass
class Reply:
    """What goes back on the wire. ``body is None`` means: reset the connection, send nothing."""

    http_status: int
    body: bytes | None
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AuditRecord:
    id: int
    status: int
    remarks: str
    params: dict[str, Any]
    submitted_at: str  # sandbox clock, ISO; the decision timer runs from here
    decided_at: str | None = None
    revision: int = 0  # +1 per accepted update
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # one per attempt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Outcome:
    code: str
    message: str = ""
    data: Any = None
    ledger: dict[str, Any] = field(default_factory=dict)


def decide(params: dict[str, Any]) -> tuple[int, str]:
    """Deterministic: "reject" in any file name (case-insensitive) rejects, anything else passes."""
    fields = (*FILENAME_FIELDS, "attachmentFileUrls")
    if any("reject" in str(params.get(f) or "").lower() for f in fields):
        return REJECTED, REMARKS_REJECTED
    return PASSED, REMARKS_PASSED


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _RunningClock:
    """Starts at ``start`` and runs on with the real time."""

    def __init__(self, start: datetime) -> None:
        self._start, self._t0 = start, time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)


class _ManualClock:
    """Stands still until advanced: delayed answers in tests come from moving it, not from waiting."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at


def _parse_instant(iso: str) -> datetime:
    at = datetime.fromisoformat(iso)
    if at.tzinfo is None:
        raise ValueError("the clock needs an instant with an offset, e.g. 2026-12-27T01:00:00+08:00")
    return at.astimezone(UTC)


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.ledger = Ledger()
        self.faults = FaultBook(config.seed)
        self.stopping = threading.Event()
        self._lock = threading.RLock()
        self._clock: _Clock = _SystemClock()
        self._audits: dict[int, AuditRecord] = {}
        self._due: dict[int, datetime] = {}  # pending audit id -> when its timer started
        self._next_id = config.first_audit_id
        self._generation = 0  # bumped by reset(): in-flight callbacks of an older one give up
        self._refused: dict[str, str] = {}  # idcode or authCode -> the desc of the state "0" answer
        self.refuse(config.refuse_records, config.refuse_desc)
        self._decider: threading.Thread | None = None
        self._senders: list[threading.Thread] = []  # callback senders, joined by ``callbacks_done``
        self.set_clock(config.clock_now)

    # --- clock ----------------------------------------------------------------------------------

    @property
    def manual(self) -> bool:
        return self.config.clock_mode == "manual"

    def set_clock(self, iso: str) -> None:
        """Set the clock to ``iso`` (needs an offset); "" = the system clock (now, for a manual one).

        A running clock runs on from there; a manual one stands there until moved again, and every
        audit that falls due by the move is decided at once.
        """
        if self.manual:
            at = _parse_instant(iso) if iso else datetime.now(UTC)
            with self._lock:
                self._clock = _ManualClock(at)
            self.decide_due()
            return
        clock: _Clock = _RunningClock(_parse_instant(iso)) if iso else _SystemClock()
        with self._lock:
            self._clock = clock

    def advance(self, seconds: float) -> datetime:
        """Move a manual clock on by ``seconds`` and decide what fell due; returns the new time."""
        with self._lock:
            clock = self._clock
            if not isinstance(clock, _ManualClock):
                raise ValueError("only a manual clock (clock_mode='manual') can be advanced")
            clock.at += timedelta(seconds=seconds)
            at = clock.at
        self.decide_due()
        return at

    def now(self) -> datetime:
        with self._lock:
            clock = self._clock
        return clock.now()

    def clock_mode(self) -> str:
        """``manual`` (stands still until advanced), ``system`` (the machine's clock) or ``set``
        (started at a set instant, running on)."""
        with self._lock:
            clock = self._clock
        if isinstance(clock, _ManualClock):
            return "manual"
        return "system" if isinstance(clock, _SystemClock) else "set"

    def _now_iso(self) -> str:
        return china(self.now()).isoformat(timespec="milliseconds")

    # --- admin ----------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._audits.clear()
            self._due.clear()
            self._next_id = self.config.first_audit_id
            self.ledger.clear()
            self.faults.clear()
        self.refuse(self.config.refuse_records, self.config.refuse_desc)

    def set_faults(self, faults: FaultInput | Iterable[FaultInput]) -> None:
        self.faults.set(faults)

    def refuse(self, records: Iterable[str] | Mapping[str, str], desc: str = "失败") -> None:
        """Replace the records (idcodes or authCodes) whose batch is answered ``state`` "0": with
        ``desc``, or with each one's own desc when ``records`` maps record to desc."""
        refused = dict(records) if isinstance(records, Mapping) else dict.fromkeys(records, desc)
        with self._lock:
            self._refused = refused

    def refused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._refused)

    def audits(self) -> list[AuditRecord]:
        with self._lock:
            return [copy.deepcopy(a) for a in sorted(self._audits.values(), key=lambda a: a.id)]

    # --- requests -------------------------------------------------------------------------------

    def handle(self, path: str, raw: bytes, headers: dict[str, str] | None = None) -> Reply:
        serial = f"SBX{china(self.now()):%Y%m%d%H%M%S}{uuid.uuid4().hex[:12].upper()}"
        entry = self.ledger.open(self._now_iso(), path, serial_no=serial)
        applied = self.faults.take(path)
        fault = applied.fault if applied else None
        if applied and fault:
            self.ledger.update(entry, fault=applied.describe(), phase=fault.phase)
            if fault.phase == "before":
                if fault.latency_ms:
                    self.stopping.wait(fault.latency_ms / 1000)
                broken = self._broken_reply(applied, serial)
                if broken is not None:
                    return self._finish(entry, broken, outcome=None)

        answer = fault.answer if fault else None
        if answer == "update_false" and path == AUDIT_UPDATE:
            self.ledger.update(entry, detail="not updated (answer=update_false)")
            refused = {"code": OK, "message": MESSAGES[OK], "data": False, "serialNo": serial}
            return self._finish(entry, Reply(200, _json(refused)), outcome=None)
        outcome = self._process(path, raw, headers or {}, state0=bool(fault and fault.state0))
        self.ledger.update(entry, processed=True, outcome=outcome.code, detail=None, **outcome.ledger)
        if outcome.code != OK:
            self.ledger.update(entry, detail=outcome.message)
        envelope: dict[str, Any] = {
            "code": outcome.code,
            "message": outcome.message or MESSAGES.get(outcome.code, ""),
            "data": outcome.data,
            "serialNo": serial,
        }
        if outcome.code == OK and answer == "state_as_number" and isinstance(outcome.data, dict):
            envelope["data"] = {**outcome.data, "state": int(outcome.data["state"])}
        elif outcome.code == OK and answer == "no_data":
            del envelope["data"]
        elif outcome.code == OK and answer == "data_as_string" and isinstance(outcome.data, int):
            envelope["data"] = str(outcome.data)
        elif outcome.code == OK and answer == "error_code_with_state_1" and path == LOST_REPAIR:
            envelope.update(code=INJECTED, message=MESSAGES[INJECTED])  # data.state stays "1": charged
        reply = Reply(200, _json(envelope))
        if applied and fault and fault.phase == "after":
            if fault.latency_ms:
                self.stopping.wait(fault.latency_ms / 1000)
            reply = self._broken_reply(applied, serial) or reply
        return self._finish(entry, reply, outcome=outcome.code)

    def _finish(self, entry: LedgerEntry, reply: Reply, outcome: str | None) -> Reply:
        code: str | None = None
        if reply.body is not None:
            try:
                code = json.loads(reply.body).get("code")
            except ValueError:
                code = None
        self.ledger.update(entry, code=code, http_status=None if reply.body is None else reply.http_status)
        log.info(
            "%s -> %s code=%s outcome=%s serial=%s%s",
            entry.endpoint,
            "reset" if reply.body is None else reply.http_status,
            code,
            outcome,
            entry.serial_no,
            f" fault={entry.fault}/{entry.phase}" if entry.fault else "",
        )
        return reply

    def _broken_reply(self, applied: AppliedFault, serial: str) -> Reply | None:
        """The reply a fault puts in place of the real one, or None if it leaves the reply alone."""
        fault = applied.fault
        if fault.timeout_s is not None:
            self.stopping.wait(fault.timeout_s)
        failure = _json({"code": INJECTED, "message": MESSAGES[INJECTED], "data": None, "serialNo": serial})
        retry_after = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if fault.reset:
            return Reply(0, None)
        if fault.redirect_to is not None:  # "not here": a client that follows sends it again there
            return Reply(fault.status_code or 307, failure, headers={"Location": fault.redirect_to})
        if applied.error_hit:  # error_rate drew this request: status_code if given, else 500
            return Reply(fault.status_code or 500, failure, headers=retry_after)
        if fault.status_code is not None and fault.error_rate is None:
            return Reply(fault.status_code, failure, headers=retry_after)
        if fault.invalid_json:
            return Reply(200, INVALID_JSON_BODY, "text/html; charset=utf-8")
        if fault.timeout_s is not None and fault.phase == "before":
            return Reply(504, failure)  # the gateway gave up before the service saw the request
        return None

    def _process(self, path: str, raw: bytes, headers: dict[str, str], state0: bool) -> _Outcome:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _Outcome(PARAM_INVALID, "request body is not UTF-8 JSON")
        if not isinstance(body, dict):
            return _Outcome(PARAM_INVALID, "request body is not a JSON object")
        cfg = self.config
        if path == LOST_REPAIR:  # the lost-repair spec: an authinfo + param body
            auth = body.get("authinfo")
            param = body.get("param")
        else:  # the carrier-audit spec: every field at level 1, auth as decided (decisions.md)
            param = {k: v for k, v in body.items() if k != "authinfo"}
            auth = auth_from_headers(headers) if cfg.audit_auth == "headers" else body.get("authinfo")
            if cfg.audit_auth == "headers" and "authinfo" in body:
                return _Outcome(PARAM_INVALID, "unexpected field authinfo")
        refused = check_auth(auth, cfg.api_id, cfg.api_key, self.now(), cfg.max_skew_s)
        if refused:
            return _Outcome(AUTH_INVALID, f"authinfo invalid: {refused}")
        handlers: dict[str, Callable[[Any], _Outcome]] = {
            LOST_REPAIR: lambda p: self._lost_repair(p, state0),
            AUDIT_ADD: self._audit_add,
            AUDIT_UPDATE: self._audit_update,
            AUDIT_GET: self._audit_get,
        }
        return handlers[path](param)

    def _lost_repair(self, param: Any, state0: bool) -> _Outcome:
        cfg = self.config
        resumes = blackout_resumes_at(self.now(), cfg.blackout_start_day, cfg.blackout_resume_day)
        if resumes is not None:
            return _Outcome(
                BLACKOUT,
                f"no requests from 00:00 on day {cfg.blackout_start_day} (China time); "
                f"resumes at {resumes.isoformat()}",
            )
        reason = check_repair_param(param)
        if reason:
            return _Outcome(PARAM_INVALID, reason)
        kept, dropped = dedupe_batch(param["toRepairDataArray"])
        if state0:
            return _Outcome(OK, data={"state": "0", "desc": "失败"}, ledger={"dropped": dropped})
        refused = self.refused()
        for record in kept:
            desc = refused.get(record["idcode"], refused.get(record["authCode"]))
            if desc is not None:
                return _Outcome(OK, data={"state": "0", "desc": desc}, ledger={"dropped": dropped})
        return _Outcome(
            OK,
            data={"state": "1", "desc": "成功"},
            ledger={"accepted": True, "records": kept, "dropped": dropped},
        )

    def _audit_add(self, param: Any) -> _Outcome:
        reason = check_audit_params(param)
        if reason:
            return _Outcome(PARAM_INVALID, reason)
        now = self.now()
        with self._lock:
            audit_id = self._next_id
            self._next_id += 1
            self._audits[audit_id] = AuditRecord(
                id=audit_id,
                status=PENDING,
                remarks=REMARKS_PENDING,
                params=dict(param),
                submitted_at=china(now).isoformat(),
            )
            self._due[audit_id] = now
        data = str(audit_id) if self.config.shapes == "strings" else audit_id
        return _Outcome(OK, data=data, ledger={"accepted": True, "audit_id": audit_id})

    @staticmethod
    def _audit_id(param: Any) -> int | str:
        if not isinstance(param, dict):
            return "param must be an object"
        value = param.get("id")
        if isinstance(value, str) and value.isdigit():  # "int" in the table; a numeric string is read
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return "id is required and must be an integer"
        return value

    def _audit_update(self, param: Any) -> _Outcome:
        audit_id = self._audit_id(param)
        if isinstance(audit_id, str):
            return _Outcome(PARAM_INVALID, audit_id)
        with self._lock:
            record = self._audits.get(audit_id)
            if record is None:
                return _Outcome(UNKNOWN_AUDIT, ledger={"audit_id": audit_id})
            if record.status != REJECTED:
                return _Outcome(NOT_UPDATABLE, ledger={"audit_id": audit_id})
            fields = {k: v for k, v in param.items() if k != "id"}
            reason = check_audit_params(fields, allow=AUDIT_FIELDS)
            if reason:
                return _Outcome(PARAM_INVALID, reason, ledger={"audit_id": audit_id})
            now = self.now()
            record.params = fields
            record.status = PENDING
            record.remarks = REMARKS_PENDING
            record.submitted_at = china(now).isoformat()
            record.decided_at = None
            record.revision += 1
            self._due[audit_id] = now
        return _Outcome(OK, data=True, ledger={"accepted": True, "audit_id": audit_id})

    def _audit_get(self, param: Any) -> _Outcome:
        audit_id = self._audit_id(param)
        if isinstance(audit_id, str):
            return _Outcome(PARAM_INVALID, audit_id)
        with self._lock:
            record = self._audits.get(audit_id)
            if record is None:
                return _Outcome(UNKNOWN_AUDIT, ledger={"audit_id": audit_id})
            data = self._shaped({"id": record.id, "status": record.status, "remarks": record.remarks})
        return _Outcome(OK, data=data, ledger={"audit_id": audit_id})

    def _shaped(self, data: dict[str, Any], *, callback: bool = False) -> dict[str, Any]:
        """``id``/``status`` typed as ``shapes`` says (see the module doc)."""
        shapes = self.config.shapes
        if shapes == "strings":
            return {**data, "id": str(data["id"]), "status": str(data["status"])}
        if shapes == "table" and not callback:  # /get's table: status String; the callback's: int
            return {**data, "status": str(data["status"])}
        return data

    # --- the audit decider and its callbacks ----------------------------------------------------

    def start(self) -> None:
        if self.manual:
            return  # decisions happen when the clock is moved: no thread watches the time
        self._decider = threading.Thread(target=self._decide_loop, name="sandbox-decider", daemon=True)
        self._decider.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._decider is not None:
            self._decider.join(timeout=5)

    def _decide_loop(self) -> None:
        while not self.stopping.wait(self.config.tick_s):
            try:
                self.decide_due()
            except Exception:  # keep deciding whatever one tick did
                log.exception("audit decider tick failed")

    def decide_due(self) -> None:
        now = self.now()
        delay = timedelta(seconds=self.config.decision_delay_s)
        decided: list[tuple[int, int, str, int]] = []
        with self._lock:
            for audit_id, started in list(self._due.items()):
                if now < started:  # the clock was set back: the timer starts again
                    self._due[audit_id] = now
                    continue
                if now - started < delay:
                    continue
                record = self._audits[audit_id]
                record.status, record.remarks = decide(record.params)
                record.decided_at = china(now).isoformat()
                del self._due[audit_id]
                decided.append((audit_id, record.status, record.remarks, self._generation))
        for audit_id, status, remarks, generation in decided:
            log.info("audit %s decided: status %s", audit_id, status)
            applied = self.faults.take("callback")
            if applied is not None:
                self.ledger.open(
                    self._now_iso(),
                    "callback",
                    audit_id=audit_id,
                    fault=applied.describe(),
                    detail="callback dropped",
                )
                continue
            if not self.config.callback_url:
                self.ledger.open(self._now_iso(), "callback", audit_id=audit_id, detail="no callback_url")
                continue
            sender = threading.Thread(
                target=self._send_callback,
                args=(audit_id, status, remarks, generation),
                name=f"sandbox-callback-{audit_id}",
                daemon=True,
            )
            with self._lock:
                self._senders = [t for t in self._senders if t.is_alive()]
                self._senders.append(sender)
            sender.start()

    def callbacks_done(self, timeout_s: float) -> bool:
        """Wait until every callback started so far has finished (all its attempts); False at the
        deadline. Lets a test say "and nothing more was sent" without sleeping."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            senders = list(self._senders)
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in senders)

    def callback_body(self, audit_id: int, status: int, remarks: str) -> bytes:
        payload = {
            "apiId": self.config.api_id,
            "serviceName": CALLBACK_SERVICE,
            **self._shaped({"id": audit_id, "status": status}, callback=True),
            "remarks": remarks,
        }
        return _json(payload)

    def _send_callback(self, audit_id: int, status: int, remarks: str, generation: int) -> None:
        cfg = self.config
        body = self.callback_body(audit_id, status, remarks)
        headers = {"Content-Type": "application/json", "sign": callback_sign(body, cfg.callback_secret)}
        backoff = cfg.callback_backoff_s
        with requests.Session() as session:
            for attempt in range(1, cfg.callback_retries + 2):
                if self.stopping.is_set() or generation != self._generation:
                    return
                entry = self.ledger.open(self._now_iso(), "callback", audit_id=audit_id, attempt=attempt)
                status_code: int | None = None
                error: str | None = None
                code: str | None = None
                try:
                    response = session.post(
                        cfg.callback_url, data=body, headers=headers, timeout=cfg.callback_timeout_s
                    )
                    status_code = response.status_code
                    try:
                        reply = response.json()
                        code = reply.get("code") if isinstance(reply, dict) else None
                    except ValueError:
                        code = None
                except requests.RequestException as exc:
                    error = type(exc).__name__
                ok = status_code is not None and 200 <= status_code < 300
                with self._lock:  # the audit first: a settled ledger entry implies both are written
                    record = self._audits.get(audit_id)
                    if record is not None and generation == self._generation:
                        record.callbacks.append(
                            {"attempt": attempt, "http_status": status_code, "error": error}
                        )
                self.ledger.update(
                    entry, http_status=status_code, code=code, processed=True, accepted=ok, detail=error
                )
                log.info("callback for audit %s attempt %s -> %s", audit_id, attempt, status_code or error)
                if ok or attempt > cfg.callback_retries:
                    return
                if self.stopping.wait(backoff):
                    return
                backoff *= 2
