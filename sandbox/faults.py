"""Fault injection: what can go wrong between us and the upstream, on demand.

A ``Fault`` sets one or more knobs, optionally limited to one endpoint and to the next ``count``
matching requests. For each API request the first matching fault in the list (that still has
count left) is applied and its count consumed; ``drop_callbacks`` faults are matched against
audit decisions instead of requests. See sandbox/README.md#fault-injection.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENDPOINT_ALIASES: dict[str, str] = {
    "lost_repair": "/verify/api/lost_repair_upload_data",
    "lost_repair_upload_data": "/verify/api/lost_repair_upload_data",
    "audit_add": "/carrierAudit/add",
    "audit_update": "/carrierAudit/update",
    "audit_get": "/carrierAudit/get",
    "callback": "callback",
}
LOST_REPAIR = "/verify/api/lost_repair_upload_data"
CALLBACK = "callback"
REDIRECT_STATUSES: Final = (301, 302, 303, 307, 308)


def normalise_endpoint(name: str) -> str:
    """The path of an endpoint given by alias or path; a name that is neither is refused."""
    if name in ENDPOINT_ALIASES:
        return ENDPOINT_ALIASES[name]
    path = name if name.startswith("/") or name == CALLBACK else "/" + name
    if path not in ENDPOINT_ALIASES.values():
        known = ", ".join(sorted(set(ENDPOINT_ALIASES) - {"lost_repair_upload_data"}))
        raise ValueError(f"endpoint {name!r} is none of {known} (or their paths)")
    return path


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = None  # a path ("/carrierAudit/add") or alias ("audit_add"); None = all
    count: int | None = Field(default=None, ge=1)  # the next N matching requests; None = all of them
    phase: Literal["before", "after"] = "before"

    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: int | None = Field(default=None, ge=0)
    status_code: int | None = Field(default=None, ge=100, le=599)
    # sent as the Retry-After header of the status_code reply: delay-seconds or an HTTP-date
    retry_after: str | None = None
    timeout_s: float | None = Field(default=None, ge=0.0)
    reset: bool = False
    invalid_json: bool = False
    state0: bool = False
    drop_callbacks: bool = False
    # the request is processed (charged, added) as usual, the answer comes in an odd shape:
    # state_as_number: data.state 1 (a number); no_data: no data at all; data_as_string: /add's
    # data "12" (a string); error_code_with_state_1: lost repair's code 50000 with data.state "1".
    # update_false: /update is not processed and answers data false.
    answer: (
        Literal["state_as_number", "no_data", "data_as_string", "error_code_with_state_1", "update_false"]
        | None
    ) = None
    # answer a redirect (status_code, one of REDIRECT_STATUSES; default 307) with this Location: a
    # path on the sandbox or an http(s) URL, printable ASCII only (it becomes a header)
    redirect_to: str | None = Field(default=None, max_length=2048, pattern=r"^(/|https?://)[!-~]*$")

    @model_validator(mode="after")
    def _normalise(self) -> Fault:
        if self.endpoint is not None:
            self.endpoint = normalise_endpoint(self.endpoint)
        if self.describe() == "none":
            raise ValueError(
                "a fault sets at least one knob: error_rate, latency_ms, status_code, timeout_s, reset, "
                "invalid_json, state0, drop_callbacks, answer or redirect_to "
                "(sandbox/README.md#fault-injection)"
            )
        if self.state0 and self.endpoint not in (None, LOST_REPAIR):
            raise ValueError("state0 answers lost-repair batches: endpoint lost_repair, or none")
        if self.drop_callbacks and self.endpoint not in (None, CALLBACK):
            raise ValueError("drop_callbacks matches audit decisions: endpoint callback, or none")
        if self.redirect_to is not None:
            if self.status_code is not None and self.status_code not in REDIRECT_STATUSES:
                raise ValueError(f"redirect_to answers one of {REDIRECT_STATUSES}, not {self.status_code}")
            others = [k for k in ("error_rate", "timeout_s") if getattr(self, k) is not None]
            others += [k for k in ("reset", "invalid_json", "state0", "drop_callbacks") if getattr(self, k)]
            if others:
                raise ValueError(f"redirect_to is an answer of its own: not with {', '.join(others)}")
        if self.retry_after is not None:
            if self.status_code is None:
                raise ValueError("retry_after goes with a status_code reply")
            if not _is_retry_after(self.retry_after):
                raise ValueError("retry_after: delay-seconds (digits) or an HTTP-date in GMT")
        return self

    def describe(self) -> str:
        parts = [
            f"{k}={v}"
            for k, v in (
                ("latency_ms", self.latency_ms),
                ("timeout_s", self.timeout_s),
                ("status_code", self.status_code),
                ("retry_after", self.retry_after),
                ("error_rate", self.error_rate),
            )
            if v is not None
        ]
        parts += [k for k in ("reset", "invalid_json", "state0", "drop_callbacks") if getattr(self, k)]
        if self.answer:
            parts.append(f"answer={self.answer}")
        if self.redirect_to is not None:
            parts.append(f"redirect_to={self.redirect_to}")
        return ",".join(parts) or "none"

    def targets(self, endpoint: str) -> bool:
        if self.drop_callbacks:
            return endpoint == CALLBACK
        if endpoint == CALLBACK:
            return False
        if self.state0 and endpoint != LOST_REPAIR:
            return False
        return self.endpoint is None or self.endpoint == endpoint


def _is_retry_after(value: str) -> bool:
    """RFC 9110 §10.2.3: delay-seconds, or an HTTP-date (which is always GMT)."""
    if re.fullmatch(r"[0-9]+", value):
        return True
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return value.endswith(" GMT") and at.utcoffset() is not None


class AppliedFault(BaseModel):
    """The fault chosen for one request, with the random draw of ``error_rate`` already made."""

    fault: Fault
    error_hit: bool = False

    @property
    def phase(self) -> str:
        return self.fault.phase

    def describe(self) -> str:
        text = self.fault.describe()
        if self.fault.error_rate is not None:
            text += " (hit)" if self.error_hit else " (miss)"
        return text


FaultInput = Fault | Mapping[str, Any]


class FaultBook:
    """The active faults, thread-safe, with a seeded RNG for ``error_rate``."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._remaining: list[int | None] = []
        self._seed = seed
        self._rng = random.Random(seed)

    def set(self, faults: FaultInput | Iterable[FaultInput]) -> list[Fault]:
        """Replace every fault. Accepts one fault or a list, as ``Fault`` or plain dicts."""
        items: Iterable[FaultInput] = [faults] if isinstance(faults, Fault | Mapping) else faults
        parsed = [f if isinstance(f, Fault) else Fault.model_validate(f) for f in items]
        with self._lock:
            self._faults = parsed
            self._remaining = [f.count for f in parsed]
            self._rng = random.Random(self._seed)
        return parsed

    def clear(self) -> None:
        self.set([])

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {**f.model_dump(), "remaining": r} for f, r in zip(self._faults, self._remaining, strict=True)
            ]

    def take(self, endpoint: str) -> AppliedFault | None:
        """The first fault matching ``endpoint`` (count consumed), or None."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                remaining = self._remaining[index]
                if remaining == 0 or not fault.targets(endpoint):
                    continue
                if remaining is not None:
                    self._remaining[index] = remaining - 1
                hit = fault.error_rate is not None and self._rng.random() < fault.error_rate
                return AppliedFault(fault=fault, error_hit=hit)
        return None
