"""The sandbox's settings (re-exported by ``sandbox.server``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_PORT = 8765
DEFAULT_API_ID = "local-api-id"
DEFAULT_API_KEY = "local-api-key"
DEFAULT_CALLBACK_SECRET = "local-callback-secret"  # noqa: S105 - idem


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port (read it back from the handle's ``url``)
    api_id: str = DEFAULT_API_ID
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    callback_url: str = ""  # empty: audits are decided but no callback is sent
    callback_secret: str = field(default=DEFAULT_CALLBACK_SECRET, repr=False)
    decision_delay_s: float = 2.0  # on the sandbox clock
    clock_now: str = ""  # ISO instant with offset the clock starts at; empty = system clock
    clock_mode: Literal["running", "manual"] = "running"  # manual: moves only when advanced (tests)
    audit_auth: Literal["headers", "body"] = "headers"  # carrier-audit: decisions.md#audit-auth
    shapes: Literal["table", "mock", "strings"] = "table"  # how ids and statuses are typed (app doc)
    blackout_start_day: int = 27
    blackout_resume_day: int = 1
    seed: int = 0  # for ``error_rate`` draws
    first_audit_id: int = 1
    max_skew_s: int = 300  # authinfo timestamp tolerance
    callback_retries: int = 3  # retries after the first attempt (so up to 4 attempts)
    callback_backoff_s: float = 0.2  # doubled after each failed attempt
    callback_timeout_s: float = 5.0
    tick_s: float = 0.1  # how often pending audits are checked
    # lost repair: a batch holding any of these records (an idcode or an authCode) is answered
    # state "0" with ``refuse_desc``, as the upstream refuses a name or a code our rules cannot judge
    refuse_records: tuple[str, ...] = ()
    refuse_desc: str = "失败"
