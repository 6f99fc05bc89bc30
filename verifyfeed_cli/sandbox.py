"""``verifyfeed sandbox ...``: the knobs of the upstream sandbox of a local stack (``make up``).

Thin calls to the sandbox's admin API (sandbox/README.md#admin-api-_sandbox), so that an operator
can rehearse the runbook's situations locally (docs/operations.md#rehearsal). The sandbox's URL is
``--sandbox-url``, else ``$SANDBOX_URL``, else the one in the running stack's ``stack.json``.
Nothing here reaches a deployed stack: the real upstream has no such knobs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from verifyfeed_cli.commands import EXIT_AWS, EXIT_USAGE, CliError, Result
from verifyfeed_cli.target import local_state

ACTIONS = {
    "show": "the sandbox's clock and active faults",
    "clock": "set the sandbox's clock (ISO instant with offset; '' = the system clock)",
    "advance": "move a manual clock on by SECONDS and decide what fell due",
    "fault": "replace the faults with this JSON object or list (sandbox/README.md#fault-injection)",
    "clear": "remove every fault",
    "refuse": "answer state 0 to any batch holding one of these authCodes or idcodes (comma-separated, "
    "or a JSON object of record: desc; '' = none)",
    "audits": "the audits as the sandbox holds them (id, status, remarks, revision)",
    "reset": "clear the sandbox's ledger, audits, faults and refused records (the clock is kept)",
}


def sandbox_url(explicit: str | None) -> str:
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
    if action == "show":
        clock, faults = _call(url, "GET", "/clock"), _call(url, "GET", "/faults")
        data = {"now": clock["now"], "faults": faults["faults"]}
        active = json.dumps(faults["faults"], ensure_ascii=False) if faults["faults"] else "none"
        text = f"Sandbox {url}: clock {clock['now']}; faults: {active}"
        return Result(data, text)
    if action == "clock":
        data = _call(url, "POST", "/clock", {"now": value or ""})
        return Result(data, f"Sandbox clock: {data['now']}")
    if action == "advance":
        try:
            seconds = float(value or "")
        except ValueError as exc:
            raise CliError("advance takes a number of seconds", EXIT_USAGE) from exc
        data = _call(url, "POST", "/clock/advance", {"seconds": seconds})
        return Result(data, f"Sandbox clock: {data['now']}")
    if action == "fault":
        try:
            fault = json.loads(value or "")
        except ValueError as exc:
            raise CliError(f"fault takes a JSON object or list: {exc}", EXIT_USAGE) from exc
        data = _call(url, "POST", "/faults", fault)
        return Result(data, f"Sandbox faults: {json.dumps(data['faults'], ensure_ascii=False)}")
    if action == "clear":
        return Result(_call(url, "DELETE", "/faults"), "Sandbox faults: none")
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
        return Result(_call(url, "POST", "/reset"), "Sandbox reset: ledger, audits and faults cleared")
    raise CliError(f"unknown sandbox action {action}", EXIT_USAGE)


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
    data = _call(url, "POST", "/refuse", body)
    shown = json.dumps(data["records"], ensure_ascii=False) if data["records"] else "none"
    return Result(data, f"Sandbox refuses batches holding: {shown}")


def _call(url: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    try:
        reply = requests.request(method, f"{url}/_sandbox{path}", json=body, timeout=10)
    except requests.RequestException as exc:
        raise CliError(f"sandbox at {url}: {type(exc).__name__} (is `make up` running?)", EXIT_AWS) from exc
    try:
        data = reply.json()
    except ValueError:
        data = {}
    if reply.status_code != 200:
        raise CliError(
            f"sandbox: HTTP {reply.status_code}: {data.get('error', reply.text[:200])}", EXIT_USAGE
        )
    return data if isinstance(data, dict) else {"value": data}
