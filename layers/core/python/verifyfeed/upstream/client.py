"""The upstream HTTP client: one POST per call, no hidden retries, every outcome classified.

``UpstreamClient`` calls both APIs (``upload_lost_repair``, ``audit_add``/``update``/``get``) and
returns a ``CallOutcome``: ``Answered``, ``NotSent``, ``HttpError`` or ``Unknown``. A charged call must
never be resent blindly, so the client never retries: it says precisely what happened and the
caller decides (``logic.batch_decisions``, ``logic.audit_submission``; docs/decisions.md#unknown-outcome).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from verifyfeed.clock import Clock
from verifyfeed.models.carrier_audit import AuditParams, AuditResult
from verifyfeed.models.envelope import UnifiedResponse
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.upstream.auth import Credentials, build_authinfo

if TYPE_CHECKING:
    import requests

LOST_REPAIR_PATH = "/verify/api/lost_repair_upload_data"
AUDIT_ADD_PATH = "/carrierAudit/add"
AUDIT_UPDATE_PATH = "/carrierAudit/update"
AUDIT_GET_PATH = "/carrierAudit/get"


@dataclass(frozen=True)
class Answered:
    """HTTP 200 with a JSON envelope, whatever its ``code``."""

    response: UnifiedResponse
    http_status: int
    elapsed_ms: float


@dataclass(frozen=True)
class NotSent:
    """The request certainly did not reach upstream (refused, DNS, connect timeout)."""

    reason: str
    elapsed_ms: float


@dataclass(frozen=True)
class HttpError:
    """A refusal that says the request was not processed: a status in ``retry_http_statuses`` (429
    and 503 by default) is ``retryable``; any other 4xx is not, nor is a redirect (3xx), which is
    never followed — a 307/308 would send the body and ``authinfo`` again, to wherever the Location
    says — and is named by its Location (docs/decisions.md#upstream-redirects)."""

    http_status: int
    reason: str
    elapsed_ms: float
    retryable: bool = False  # the upstream says "not now" (429, 503): safe to send again later
    retry_after_s: int | None = None  # how long it asked us to wait (``Retry-After``), if it said


@dataclass(frozen=True)
class Unknown:
    """The request may have been processed but the answer was lost: a read timeout, a connection
    reset after sending, a 5xx not in ``retry_http_statuses`` (a gateway's 502/504 can arrive after
    the backend processed, and charged, the request), a 200 whose body is not the envelope."""

    reason: str
    elapsed_ms: float


CallOutcome = Answered | NotSent | HttpError | Unknown


def _never_reached(exc: BaseException) -> bool:
    """True when the exception chain proves no byte of the request reached the server."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NewConnectionError | NameResolutionError | ConnectTimeoutError):
            return True
        if isinstance(seen, requests.exceptions.ConnectTimeout):
            return True
        nxt = seen.__cause__ or seen.__context__
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        if nxt is None and hasattr(seen, "reason") and isinstance(seen.reason, BaseException):
            nxt = seen.reason
        seen = nxt if nxt is not seen else None
    return False


class UpstreamClient:
    """Each API has its own base URL (``audit_base_url`` defaults to ``base_url``) and its own body
    shape, as its seed prints it: see ``post`` and ``post_audit``."""

    def __init__(
        self,
        base_url: str,
        credentials: Callable[[], Credentials],
        clock: Clock,
        *,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 20.0,
        authinfo_scheme: str = "hmac-sha256",
        audit_base_url: str | None = None,
        audit_auth: str = "headers",
        retry_http_statuses: frozenset[int] = frozenset({429, 503}),
        session: requests.Session | None = None,
    ) -> None:
        if audit_auth not in ("headers", "body"):
            raise ValueError(f"unknown AUDIT_AUTH {audit_auth!r}: headers or body")
        self._base = base_url.rstrip("/")
        self._audit_base = (audit_base_url or base_url).rstrip("/")
        self._audit_auth = audit_auth
        self._retry_statuses = retry_http_statuses
        self._credentials = credentials
        self._clock = clock
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._scheme = authinfo_scheme
        self._session_given = session

    @functools.cached_property
    def _session(self) -> requests.Session:
        # requests is imported on the first call, not at import: the callback never calls upstream
        return self._session_given or _session()

    def ready(self) -> None:
        """Load the credentials now (a charged call is about to be leased: a secret that cannot be
        read must fail before the lease, not after it)."""
        self._credentials()

    def _authinfo(self) -> dict[str, str]:
        info = build_authinfo(self._credentials(), self._clock.now(), self._scheme)
        return info.model_dump(exclude_none=True)

    def post(self, path: str, param: dict[str, Any]) -> CallOutcome:
        """A lost-repair style call: ``{"authinfo": {...}, "param": param}``."""
        return self.post_json(path, _compact_json(param))

    def post_json(self, path: str, param_json: bytes) -> CallOutcome:
        """``post`` with ``param`` already serialised (compact JSON, UTF-8)."""
        body = b'{"authinfo":%s,"param":%s}' % (_compact_json(self._authinfo()), param_json)
        return self._send(self._base + path, body, {})

    def post_audit(self, path: str, fields: dict[str, Any]) -> CallOutcome:
        """A carrier-audit call: ``fields`` at level 1 (the top of the body, ``id`` too for
        ``/update`` and ``/get``), with the same ``authinfo`` values as request headers (default) or
        as a top-level ``authinfo`` key (``AUDIT_AUTH``: docs/decisions.md#audit-auth)."""
        authinfo = self._authinfo()
        if self._audit_auth == "headers":
            return self._send(self._audit_base + path, _compact_json(fields), authinfo)
        return self._send(self._audit_base + path, _compact_json({**fields, "authinfo": authinfo}), {})

    def _send(self, url: str, body: bytes, headers: dict[str, str]) -> CallOutcome:
        import requests

        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            reply = self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8", **headers},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            if _never_reached(exc):
                return NotSent(reason=f"{type(exc).__name__}: not connected", elapsed_ms=elapsed())
            return Unknown(reason=f"{type(exc).__name__}: answer lost after sending", elapsed_ms=elapsed())
        status = reply.status_code
        if 300 <= status < 400:  # whatever retry_http_statuses says: not processed here, not retried
            return HttpError(status, _redirected(status, reply.headers.get("Location")), elapsed())
        if status != 200:
            if status in self._retry_statuses:
                wait = retry_after_seconds(reply.headers.get("Retry-After"), self._clock.now())
                return HttpError(status, f"HTTP {status}", elapsed(), retryable=True, retry_after_s=wait)
            if status >= 500:
                return Unknown(
                    reason=f"HTTP {status} after sending: the upstream may have processed it",
                    elapsed_ms=elapsed(),
                )
            return HttpError(status, f"HTTP {status}", elapsed())
        try:
            envelope = UnifiedResponse.model_validate_json(reply.content)
        except ValueError:
            return Unknown(reason="HTTP 200 with a body that is not the JSON envelope", elapsed_ms=elapsed())
        return Answered(response=envelope, http_status=200, elapsed_ms=elapsed())

    def upload_lost_repair(self, records: Sequence[RepairRecord]) -> CallOutcome:
        # serialised by pydantic in one call: the same bytes as json.dumps of the dumped records
        # (compact, UTF-8 unescaped; the values need no escaping but quotes), a tenth of the time
        return self.post_json(
            LOST_REPAIR_PATH, b'{"toRepairDataArray":%s}' % _RECORD_LIST.dump_json(list(records))
        )

    def audit_add(self, params: AuditParams) -> CallOutcome:
        return self.post_audit(AUDIT_ADD_PATH, params.model_dump(exclude_none=True))

    def audit_update(self, record_id: int, params: AuditParams) -> CallOutcome:
        return self.post_audit(AUDIT_UPDATE_PATH, {"id": record_id, **params.model_dump(exclude_none=True)})

    def audit_get(self, record_id: int) -> CallOutcome:
        return self.post_audit(AUDIT_GET_PATH, {"id": record_id})


def _redirected(status: int, location: str | None) -> str:
    """The reason of a redirect: its Location (a URL, no personal data), printable and bounded."""
    if not location:
        return f"HTTP {status} redirect without a Location, not followed"
    shown = "".join(c if c.isprintable() else "?" for c in location[:200])
    return f"HTTP {status} redirect to {shown}{'...' if len(location) > 200 else ''}, not followed"


def retry_after_seconds(value: str | None, now: datetime) -> int | None:
    """``Retry-After`` (RFC 9110 §10.2.3) as whole seconds from ``now``: delay-seconds, or an
    HTTP-date (any of its three formats; a date already past is 0). None when absent or unreadable."""
    text = (value or "").strip()
    if text.isdigit() and text.isascii():
        return int(text)
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:  # asctime has no zone: HTTP-dates are GMT
        at = at.replace(tzinfo=UTC)
    return max(0, math.ceil((at - now).total_seconds()))


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


_RECORD_LIST: TypeAdapter[list[RepairRecord]] = TypeAdapter(list[RepairRecord])


def parse_audit_result(outcome: CallOutcome) -> AuditResult | None:
    """``/carrierAudit/get``'s ``data``, or None when the answer is not one we can read."""
    if isinstance(outcome, Answered) and outcome.response.ok and isinstance(outcome.response.data, dict):
        try:
            return AuditResult.model_validate(outcome.response.data)
        except ValueError:  # pydantic's ValidationError: an unreadable answer is that audit's problem
            return None
    return None


def _session() -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
