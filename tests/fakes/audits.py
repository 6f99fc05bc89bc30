"""In-memory ``AuditRepository``: the behaviour of ``store/audits.py`` without DynamoDB
(``tests/integration/test_store_contract_audits.py`` holds the two to the same answers).

What the table holds is kept as it is read back: ``audits`` (the audit items, pydantic records
replaced with ``model_copy``, never mutated) and ``records`` (the ``RECORD#<id>`` items: record id →
audit key). Every method holds the job table's ``lock``, so an audit write and the job counter it
moves happen together, as one DynamoDB transaction makes them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from verifyfeed.models.ids import iso
from verifyfeed.models.records import (
    REOPENABLE_JOB_STATUSES,
    Audit,
    AuditStatus,
    Job,
    JobStatus,
    Redrive,
    Reservation,
    next_cycle,
    reservation_over,
    resubmitted,
    settlement_counter,
)
from verifyfeed.ports import StaleAudit
from verifyfeed.store.jobs import no_job


class JobTable(Protocol):
    """What this store needs of the jobs: ``tests.fakes.jobs.MemoryJobStore`` is one."""

    jobs: dict[str, Job]
    lock: threading.RLock


class MemoryAuditStore:
    def __init__(self, jobs: JobTable) -> None:
        self.jobs = jobs
        self.lock = jobs.lock
        self.audits: dict[str, Audit] = {}
        self.records: dict[int, str] = {}

    # ---- reads ------------------------------------------------------------------------------

    def get(self, audit_key: str) -> Audit | None:
        with self.lock:
            audit = self.audits.get(audit_key)
        return None if audit is None else audit.model_copy()

    def find_key(self, candidates: Sequence[str]) -> str:
        return self.find_keys([candidates])[0]

    def find_keys(self, candidates: Sequence[Sequence[str]]) -> list[str]:
        with self.lock:  # as the store: a single candidate is taken without a look-up
            return [
                next((k for k in keys if k in self.audits), keys[0]) if len(keys) > 1 else keys[0]
                for keys in candidates
            ]

    def key_for_record(self, record_id: int) -> str | None:
        with self.lock:
            if record_id in self.records:
                return self.records[record_id]
            # the store's fallback, its by-record-id index: any audit carrying the id
            return next((k for k, a in self.audits.items() if a.record_id == record_id), None)

    def with_status(
        self,
        status: AuditStatus,
        older_than: datetime | None = None,
        limit: int = 100,
        *,
        newest_first: bool = False,
    ) -> list[Audit]:
        # the by-status index: sorted by updated_at as a string, compared as one (``iso``)
        before = iso(older_than) if older_than else None
        with self.lock:
            found = [
                a.model_copy()
                for a in self.audits.values()
                if a.status == status and (before is None or a.updated_at < before)
            ]
        found.sort(key=lambda a: a.updated_at, reverse=newest_first)
        return found[:limit]

    def count_with_status(self, status: AuditStatus) -> int:
        with self.lock:
            return sum(1 for a in self.audits.values() if a.status == status)

    def scan_all(self) -> Iterator[Audit]:
        with self.lock:
            audits = [a.model_copy() for a in self.audits.values()]
        yield from audits

    def count_by_status(self) -> dict[str, int]:
        counts = Counter(a.status.value for a in self.scan_all())
        return {s.value: counts.get(s.value, 0) for s in AuditStatus}

    # ---- writes -----------------------------------------------------------------------------

    def _current(self, audit: Audit, status: AuditStatus | None = None) -> Audit:
        """The stored audit, if it is still in ``status`` (the one it was read in) at its version."""
        stored = self.audits.get(audit.audit_key)
        expected = audit.status if status is None else status
        if stored is None or stored.status != expected or stored.version != audit.version:
            raise StaleAudit(audit.audit_key)
        return stored

    def _move_job(self, job_id: str, **changes: Any) -> None:
        self.jobs.jobs[job_id] = self.jobs.jobs[job_id].model_copy(update=changes)

    def _move(self, audit: Audit, to: AuditStatus, now: datetime, fields: dict[str, Any]) -> Audit:
        change = {"status": to, "updated_at": iso(now), **fields}
        with self.lock:
            stored = self._current(audit)
            self.audits[audit.audit_key] = stored.model_copy(update={**change, "version": stored.version + 1})
        return audit.model_copy(update={**change, "version": audit.version + 1})

    def decide_record(
        self,
        audit_key: str,
        record_id: int,
        to: AuditStatus,
        remarks: str,
        now: datetime,
        cycle: int | None = None,
    ) -> tuple[bool, Audit | None]:
        with self.lock:
            stored = self.audits.get(audit_key)
            if (
                stored is None
                or stored.status != AuditStatus.PENDING
                or stored.record_id != record_id
                or (cycle is not None and stored.cycle != cycle)
            ):
                return False, None if stored is None else stored.model_copy()
            change = {"status": to, "updated_at": iso(now), "version": stored.version + 1, "remarks": remarks}
            self.audits[audit_key] = stored.model_copy(update=change)
        return True, None

    def reserve(self, audit: Audit, now: datetime) -> tuple[Reservation, Audit]:
        with self.lock:
            existing = self.audits.get(audit.audit_key)
            if existing is None:
                reserved = audit.model_copy(
                    update={
                        "status": AuditStatus.SUBMITTING,
                        "submitted_at": iso(now),
                        "updated_at": iso(now),
                    }
                )
                self.audits[audit.audit_key] = reserved
                return Reservation.ADD, reserved.model_copy()
            kind = reservation_over(existing)
            if kind == Reservation.DUPLICATE:
                return kind, existing.model_copy()
            return kind, self._move(existing, AuditStatus.SUBMITTING, now, resubmitted(audit, iso(now)))

    def settle_submission(
        self, audit: Audit, to: AuditStatus, now: datetime, *, record_id: int | None = None, error: str = ""
    ) -> Audit:
        counter = settlement_counter(to)
        change: dict[str, Any] = {
            "status": to,
            "updated_at": iso(now),
            "last_error": error,
            "lease_until": "",
        }
        if record_id is not None:
            change["record_id"] = record_id
        cycle = next_cycle(audit, to, record_id)
        if cycle is not None:
            change["cycle"] = cycle
        with self.lock:
            stored = self._current(audit)
            job = self.jobs.jobs.get(audit.job_id)
            if job is None:  # the store's condition on the job item: the transaction writes nothing
                raise no_job(audit.job_id)
            self._move_job(audit.job_id, **{counter: getattr(job, counter) + 1})
            self.audits[audit.audit_key] = stored.model_copy(update={**change, "version": stored.version + 1})
            if record_id is not None and to == AuditStatus.PENDING:
                self.records[record_id] = audit.audit_key
        return audit.model_copy(update={**change, "version": audit.version + 1})

    def resubmit_unknown(self, audit: Audit, now: datetime, by: str) -> Audit:
        if audit.status != AuditStatus.UNKNOWN:
            raise ValueError(f"only unknown audits are re-submitted, not {audit.status.value}")
        entry = Redrive(at=iso(now), by=by, was=audit.status.value)
        with self.lock:
            stored = self._current(audit, AuditStatus.UNKNOWN)
            job = self.jobs.jobs.get(audit.job_id)
            if job is None or job.status not in REOPENABLE_JOB_STATUSES:
                raise StaleAudit(audit.audit_key)
            change = {
                "status": AuditStatus.SUBMITTING,
                "updated_at": iso(now),
                "last_error": "",
                "lease_until": "",
                "submitted_at": iso(now),
            }
            self.audits[audit.audit_key] = stored.model_copy(
                update={
                    **change,
                    "version": stored.version + 1,
                    "resubmissions": stored.resubmissions + 1,
                    "redriven": [*stored.redriven, entry],
                }
            )
            self._move_job(
                audit.job_id,
                status=JobStatus.UPLOADING,
                updated_at=iso(now),
                batches_unknown=job.batches_unknown - 1,
                unknown_redrives=job.unknown_redrives + 1,
            )
        return audit.model_copy(
            update={
                **change,
                "version": audit.version + 1,
                "resubmissions": audit.resubmissions + 1,
                "redriven": [*audit.redriven, entry],
            }
        )

    def take_lease(self, audit: Audit, now: datetime, until: datetime) -> Audit:
        return self._move(audit, AuditStatus.SUBMITTING, now, {"lease_until": iso(until)})

    def release_lease(self, audit: Audit, now: datetime) -> Audit:
        return self._move(audit, AuditStatus.SUBMITTING, now, {"lease_until": ""})

    def decide(self, audit: Audit, to: AuditStatus, remarks: str, now: datetime) -> Audit:
        return self._move(audit, to, now, {"remarks": remarks})

    def mark_polled(self, audit: Audit, now: datetime, error: str = "") -> bool:
        with self.lock:
            try:
                stored = self._current(audit, AuditStatus.PENDING)
            except StaleAudit:
                return False
            self.audits[audit.audit_key] = stored.model_copy(
                update={"updated_at": iso(now), "poll_error": error[:500], "polls": stored.polls + 1}
            )
        return True


__all__ = ["JobTable", "MemoryAuditStore"]
