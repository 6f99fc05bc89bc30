"""``verifyfeed sandbox ...``: the knobs of the upstream sandbox of a local stack (``make up``), thin
calls to its admin API (sandbox/README.md#admin-api-_sandbox), so that an operator can rehearse the
runbook's situations locally (docs/operations.md#rehearsal). Nothing here reaches a deployed stack:
the real upstream has no such knobs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from datetime import datetime
from typing import Any

import requests

from verifyfeed.clock import clock_from_setting
from verifyfeed_cli.context import EXIT_AWS, EXIT_USAGE, CliError, Result
from verifyfeed_cli.target import local_state, stack_clock_now

ACTIONS = {
    "show": "the sandbox's clock and active faults",
    "clock": "set the sandbox's clock (ISO instant with offset, within 300 s of the stack's clock: the "
    "functions sign with theirs; '' = the system clock)",
    "advance": "move a manual clock (a test sandbox's; make up's runs on its own) on by SECONDS and decide "
    "what fell due",
    "fault": "replace the faults with this JSON object or list (sandbox/README.md#fault-injection)",
    "clear": "remove every fault",
    "refuse": "answer state 0 to any batch holding one of these authCodes or idcodes (comma-separated, "
    "or a JSON object of record: desc; '' = none)",
    "audits": "the audits as the sandbox holds them (id, status, remarks, revision)",
    "reset": "clear the sandbox's ledger, audits, faults and refused records (the clock is kept)",
}
AUTHINFO_SKEW_S = 300  # the sandbox refuses an authinfo timestamp further off its clock (max_skew_s)
CLOCK_MODES = {
    "system": "the system clock",
    "set": "set, running on",
    "manual": "manual: moves only when advanced",
}


HELP = "the local upstream sandbox's knobs (make up)"


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sandbox",
        parents=parents,
        help=HELP,
        description="; ".join(f"{name}: {what}" for name, what in ACTIONS.items()),
    )
    parser.add_argument("action", choices=list(ACTIONS))
    parser.add_argument("value", nargs="?", help="clock: ISO instant; advance: seconds; fault: JSON")
    parser.add_argument("--sandbox-url", help="default $SANDBOX_URL, else the running local stack's")
    parser.set_defaults(run=None, local_only=run_args)  # no stack: the sandbox alone


def run_args(args: argparse.Namespace) -> Result:
    return run(sandbox_url(args.sandbox_url), args.action, args.value)


def sandbox_url(explicit: str | None) -> str:
    """``--sandbox-url``, else ``$SANDBOX_URL``, else the one in the running stack's ``stack.json``."""
    url = explicit or os.environ.get("SANDBOX_URL", "").strip()
    if not url:
        state = local_state()
        url = str(state.get("sandbox_url") or "") if state else ""
    if not url:
        raise CliError(
            "no sandbox: `make up` starts the local stack with one (or give --sandbox-url)", EXIT_AWS
        )
    return url.rstrip("/")


def run(url: str, action: str, value: str | None) -> Result:
    """Each knob checks its value first and refuses, saying why, what would only break the rehearsal
    (a clock the functions' ``authinfo`` cannot match, an endpoint that does not exist, ``advance`` on
    a clock that runs on its own); and each says what it changed: before, and after."""
    if action == "show":
        clock, faults, refused = _call(url, "GET", "/clock"), _call(url, "GET", "/faults"), _refused(url)
        data = {
            "now": clock["now"],
            "mode": clock.get("mode"),
            "faults": faults["faults"],
            "refused": refused,
        }
        text = (
            f"Sandbox {url}: clock {_clock_text(clock)}; faults: {_faults_text(faults['faults'])}; "
            f"refuses: {_records_text(refused)}"
        )
        return Result(data, text)
    if action == "clock":
        return _clock(url, value)
    if action == "advance":
        return _advance(url, value)
    if action == "fault":
        return _fault(url, value)
    if action == "clear":
        before = _call(url, "GET", "/faults")["faults"]
        data = _call(url, "DELETE", "/faults")
        return Result({**data, "before": before}, f"Sandbox faults: were {_faults_text(before)}; now none")
    if action == "refuse":
        return _refuse(url, (value or "").strip())
    if action == "audits":
        audits = [
            {k: a.get(k) for k in ("id", "status", "remarks", "revision", "submitted_at", "decided_at")}
            for a in _call(url, "GET", "/audits")["audits"]
        ]  # without their params: those carry plaintext ID numbers and phones
        lines = [
            f"{a['id']}: status {a['status']} {a['remarks'] or ''} (revision {a['revision']})" for a in audits
        ]
        return Result({"audits": audits}, "\n".join(lines) or "No audits in the sandbox.")
    if action == "reset":
        entries = len(_call(url, "GET", "/ledger")["entries"])
        audits_held = len(_call(url, "GET", "/audits")["audits"])
        faults = _call(url, "GET", "/faults")["faults"]
        data = _call(url, "POST", "/reset")
        text = (
            f"Sandbox reset: {entries} ledger entr{'y' if entries == 1 else 'ies'}, {audits_held} audit(s) "
            f"and the faults ({_faults_text(faults)}) cleared, the refused records back to its own; the "
            "clock kept "
            f"({_clock_text(_call(url, 'GET', '/clock'))})"
        )
        return Result({**data, "ledger_entries": entries, "audits": audits_held, "faults": faults}, text)
    raise CliError(f"unknown sandbox action {action}", EXIT_USAGE)


def _clock(url: str, value: str | None) -> Result:
    if value is None:
        raise CliError(
            "clock takes an ISO instant with an offset (2026-12-06T10:00:00+08:00), or '' for the "
            "system clock",
            EXIT_USAGE,
        )
    if value.strip():
        try:
            at = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise CliError(
                f"clock: {value!r} is not an ISO instant (2026-12-06T10:00:00+08:00)", EXIT_USAGE
            ) from exc
        if at.tzinfo is None:
            raise CliError(f"clock: {value!r} has no offset: say which zone, e.g. {value}+08:00", EXIT_USAGE)
        stack_now = _stack_now()
        if abs((at - stack_now).total_seconds()) > AUTHINFO_SKEW_S:
            raise CliError(
                f"clock: refused. The functions sign every request with their own clock (now "
                f"{stack_now.isoformat(timespec='seconds')}), and the sandbox refuses a signature more than "
                f"{AUTHINFO_SKEW_S} s off its clock: every upload and audit would fail on authinfo. To "
                "rehearse the blackout, start the stack inside it: make down; "
                "make up CLOCK_NOW=2026-12-27T01:00:00+08:00 (docs/operations.md#rehearsal)",
                EXIT_USAGE,
            )
    before = _call(url, "GET", "/clock")
    after = _call(url, "POST", "/clock", {"now": value.strip()})
    return Result(
        {**after, "before": before}, f"Sandbox clock: was {_clock_text(before)}; now {_clock_text(after)}"
    )


def _stack_now() -> datetime:
    """Now on the functions' clock: $CLOCK_NOW, else the running stack's (make up CLOCK_NOW=...), else
    the system's."""
    now = clock_from_setting(os.environ.get("CLOCK_NOW", "").strip() or stack_clock_now(local_state())).now()
    return now if now.tzinfo else now.astimezone()


def _advance(url: str, value: str | None) -> Result:
    try:
        seconds = float(value or "")
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise CliError(f"advance takes a number of seconds, 0 or more, not {value!r}", EXIT_USAGE)
    before = _call(url, "GET", "/clock")
    if before.get("mode") != "manual":
        raise CliError(
            f"advance: refused. This sandbox's clock is {_clock_text(before)}: it decides each audit on its "
            "own once its delay has passed (make up: 2 s), so there is nothing to move; advance moves only a "
            "manual clock (a test sandbox's, --clock-mode manual)",
            EXIT_USAGE,
        )
    after = _call(url, "POST", "/clock/advance", {"seconds": seconds})
    return Result(
        {**after, "before": before},
        f"Sandbox clock: was {before['now']}; now {after['now']} (audits that fell due are decided)",
    )


def _fault(url: str, value: str | None) -> Result:
    try:
        fault = json.loads(value or "")
    except ValueError as exc:
        raise CliError(
            f"fault takes a JSON object or list (sandbox/README.md#fault-injection): {exc}", EXIT_USAGE
        ) from exc
    if not isinstance(fault, dict | list):
        raise CliError("fault takes a JSON object or list (sandbox/README.md#fault-injection)", EXIT_USAGE)
    before = _call(url, "GET", "/faults")["faults"]
    data = _call(url, "POST", "/faults", fault, refused="fault refused")
    return Result(
        {**data, "before": before},
        f"Sandbox faults: were {_faults_text(before)}; now {_faults_text(data['faults'])}",
    )


def _refuse(url: str, value: str) -> Result:
    """Records (authCodes, which identify a row without being personal data, or idcodes) whose batch
    the sandbox refuses with ``state`` "0", to rehearse docs/decisions.md#state-0."""
    if value.startswith("{"):
        try:
            records = json.loads(value)
        except ValueError as exc:
            raise CliError(f"refuse takes a JSON object of record: desc: {exc}", EXIT_USAGE) from exc
        body: dict[str, Any] = {"records": records}
    else:
        body = {"records": [r.strip() for r in value.split(",") if r.strip()]}
    before = _refused(url)
    data = _call(url, "POST", "/refuse", body, refused="refuse refused")
    return Result(
        {**data, "before": before},
        f"Sandbox refuses batches holding: was {_records_text(before)}; now {_records_text(data['records'])}",
    )


def _refused(url: str) -> dict[str, str]:
    records = _call(url, "GET", "/refuse")["records"]
    return records if isinstance(records, dict) else {}


def _clock_text(clock: dict[str, Any]) -> str:
    return f"{clock['now']} ({CLOCK_MODES.get(str(clock.get('mode')), 'mode not known')})"


def _records_text(records: dict[str, str]) -> str:
    return json.dumps(records, ensure_ascii=False) if records else "none"


def _faults_text(faults: list[dict[str, Any]]) -> str:
    """Each fault as a line says it: where, what, when (phase), how many requests are left."""
    if not faults:
        return "none"
    shown = []
    for f in faults:
        knobs = {
            k: v
            for k, v in f.items()
            if k not in ("endpoint", "count", "phase", "remaining") and v not in (None, False)
        }
        where = f.get("endpoint") or "every endpoint"
        remaining = f.get("remaining")
        left = {None: "every request", 0: "used up"}.get(remaining, f"the next {remaining} request(s)")
        shown.append(f"{where}: {json.dumps(knobs, ensure_ascii=False)} {f.get('phase', 'before')}, {left}")
    return "; ".join(shown)


def _call(url: str, method: str, path: str, body: Any = None, refused: str = "sandbox") -> dict[str, Any]:
    try:
        reply = requests.request(method, f"{url}/_sandbox{path}", json=body, timeout=10)
    except requests.RequestException as exc:
        raise CliError(f"sandbox at {url}: {type(exc).__name__} (is `make up` running?)", EXIT_AWS) from exc
    try:
        data = reply.json()
    except ValueError:
        data = {}
    if reply.status_code != 200:
        why = data.get("error", reply.text[:200]) if isinstance(data, dict) else reply.text[:200]
        raise CliError(f"{refused}: {why}", EXIT_USAGE)
    return data if isinstance(data, dict) else {"value": data}
