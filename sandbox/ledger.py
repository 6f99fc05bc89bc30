"""What the sandbox received and did, in order: the ground truth tests assert against.

Entries are created when a request arrives (so an in-flight request, e.g. one held by a
``timeout_s`` fault, is already visible) and completed under the ledger's lock. Readers get
copies.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LedgerEntry:
    seq: int
    time: str  # ISO instant on the sandbox clock
    endpoint: str  # the request path, or "callback" for a callback attempt
    serial_no: str | None = None
    code: str | None = None  # the "code" in the reply actually sent; None when no JSON reply went out
    outcome: str | None = None  # the code the business logic produced; None when it did not run
    http_status: int | None = None  # None: connection reset / no reply / callback connection error
    fault: str | None = None
    phase: str | None = None
    processed: bool = False  # the business logic ran
    accepted: bool = False  # ...and took effect: records charged, audit created/updated
    records: list[dict[str, str]] = field(default_factory=list)  # lost-repair: accepted
    dropped: list[dict[str, str]] = field(default_factory=list)  # lost-repair: in-batch repeats
    audit_id: int | None = None
    attempt: int | None = None  # callback attempt number (1-based)
    detail: str | None = None  # e.g. the validation reason or the callback error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AcceptedRecord:
    seq: int
    serial_no: str
    name: str
    idcode: str
    usedPhone: str
    authCode: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._next = 1

    def open(self, time: str, endpoint: str, **fields: Any) -> LedgerEntry:
        with self._lock:
            entry = LedgerEntry(seq=self._next, time=time, endpoint=endpoint, **fields)
            self._next += 1
            self._entries.append(entry)
            return entry

    def update(self, entry: LedgerEntry, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                if not hasattr(entry, key):
                    raise AttributeError(key)
                setattr(entry, key, value)

    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return copy.deepcopy(self._entries)

    def accepted_records(self) -> list[AcceptedRecord]:
        with self._lock:
            return [
                AcceptedRecord(seq=e.seq, serial_no=e.serial_no or "", **r)
                for e in self._entries
                if e.accepted and e.records
                for r in e.records
            ]

    def record_counts(self) -> dict[str, int]:
        """How many times each ``idcode`` was accepted (charged): exactly-once means all 1."""
        return dict(Counter(r.idcode for r in self.accepted_records()))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._next = 1
