"""In-memory ``JobRepository`` and ``Ledger``: the behaviour of ``store/jobs.py`` and
``store/ledger.py`` without DynamoDB or S3 (``tests/integration/test_store_contract_jobs.py`` holds
them to it).

``MemoryJobStore`` keeps ``jobs`` and ``batches`` as pydantic records, replaced (``model_copy``),
never mutated; every read-modify-write holds ``lock``, the way one DynamoDB condition or transaction
covers it. ``MemoryAuditStore`` (``audits.py``) moves job counters under the same lock.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from tests.fakes import MemoryBlobs
from verifyfeed.models.ids import TREE_BASE, TREE_SPAN, iso, tree_position, tree_seq
from verifyfeed.models.ledger import LedgerEntry, LedgerObject
from verifyfeed.models.records import (
    REOPENABLE_JOB_STATUSES,
    Batch,
    BatchStatus,
    Job,
    JobCounts,
    JobStatus,
    Redrive,
)
from verifyfeed.ports import BlobError, LedgerBusy, SplitSuperseded, StaleTransition, StoreError

# the store's pure tables and keys: the counter of each settled state, the states its sparse index
# lists, the sort key batches are ordered by (as text: a seq above 999,999 sorts after the trees')
from verifyfeed.store.jobs import COUNTER_FOR, LISTED_STATUSES, batch_sk, no_job


class MemoryJobStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.batches_by_key: dict[tuple[str, int], Batch] = {}
        # the sparse index: (job id, seq) -> its sort key "<when>#<batch id>", for listed batches only
        self.listed: dict[tuple[str, int], str] = {}

    # ---- jobs -------------------------------------------------------------------------

    def _update_job(self, job_id: str, **changes: Any) -> None:
        with self.lock:
            if job_id not in self.jobs:
                raise no_job(job_id)
            self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def _owned(self, job_id: str, run: int) -> None:
        """As the store's condition on a split's job: ``run`` still owns it."""
        job = self.jobs.get(job_id)
        if job is None:
            raise no_job(job_id)
        if job.status != JobStatus.SPLITTING or job.split_run != run:
            raise SplitSuperseded(job_id)

    def create_job(self, job: Job) -> bool:
        with self.lock:
            if job.job_id in self.jobs:
                return False
            self.jobs[job.job_id] = job.model_copy()
            return True

    def get_job(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.model_copy()  # the store reads a fresh record each time

    def _newest_first(self) -> list[Job]:
        with self.lock:
            jobs = list(self.jobs.values())
        return [
            j.model_copy() for j in sorted(jobs, key=lambda j: f"{j.created_at}#{j.job_id}", reverse=True)
        ]

    def list_jobs(self, limit: int = 100) -> list[Job]:
        return self._newest_first()[:limit]

    def find_jobs(self, file: str) -> list[Job]:
        if "/" in file:
            return [j for j in self._newest_first() if j.key == file]
        return [j for j in self._newest_first() if j.key.endswith(f"/{file}")]

    def take_split(self, job_id: str) -> int | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.status != JobStatus.SPLITTING:
                return None
            self._update_job(job_id, split_run=job.split_run + 1)
            return job.split_run + 1

    def finish_split(self, job_id: str, counts: JobCounts, now: datetime, run: int = 0) -> None:
        with self.lock:
            self._owned(job_id, run)
            self._update_job(
                job_id,
                rows_read=counts.rows_read,
                rows_accepted=counts.rows_accepted,
                rows_rejected=counts.rows_rejected,
                rows_already_uploaded=counts.rows_already_uploaded,
                batches_total=counts.batches_total,
                status=JobStatus.UPLOADING,
                updated_at=iso(now),
            )

    def mark_released(self, job_id: str, now: datetime) -> bool:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.released_at:
                return False
            self._update_job(job_id, released_at=iso(now))
            return True

    def discard_staged(self, job_id: str, seq: int, now: datetime, run: int = 0) -> bool:
        with self.lock:
            stored = self.batches_by_key.get((job_id, seq))
            if stored is None or stored.status != BatchStatus.STAGED or stored.split_run > run:
                return False
            self._put(
                stored.model_copy(
                    update={"status": BatchStatus.DISCARDED, "updated_at": iso(now), "claim_key": ""}
                )
            )
            return True

    def reject_job(
        self,
        job_id: str,
        reason: str,
        counts: JobCounts,
        now: datetime,
        status: JobStatus = JobStatus.REJECTED,
        run: int = 0,
    ) -> None:
        with self.lock:
            self._owned(job_id, run)
            self._update_job(
                job_id,
                status=status,
                reason=reason,
                rows_read=counts.rows_read,
                rows_rejected=counts.rows_rejected,
                updated_at=iso(now),
            )

    def set_job_status(self, job_id: str, status: JobStatus, expected: set[JobStatus], now: datetime) -> bool:
        if not expected:  # the store's condition "#s IN ()" is not one DynamoDB accepts
            raise StoreError("MemoryJobStore.set_job_status: ValidationException", code="ValidationException")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.status not in expected:
                return False
            self._update_job(job_id, status=status, updated_at=iso(now))
            return True

    def set_report_key(self, job_id: str, report_key: str) -> None:
        self._update_job(job_id, report_key=report_key)

    # ---- batches ----------------------------------------------------------------------

    def _put(self, batch: Batch, listed_as: str | None = None) -> None:
        key = (batch.job_id, batch.seq)
        self.batches_by_key[key] = batch
        if listed_as is None:
            self.listed.pop(key, None)
        else:
            self.listed[key] = listed_as

    def put_batch_if_absent(self, batch: Batch) -> bool:
        with self.lock:
            if (batch.job_id, batch.seq) in self.batches_by_key:
                return False
            self._put(batch.model_copy())
            return True

    def stage_batch(self, batch: Batch) -> bool:
        with self.lock:
            stored = self.batches_by_key.get((batch.job_id, batch.seq))
            if stored is not None and (
                stored.status not in (BatchStatus.STAGED, BatchStatus.DISCARDED)
                or stored.split_run > batch.split_run
            ):
                return False
            self._put(batch.model_copy())
            return True

    def keep_staged(self, batch: Batch, run: int) -> bool:
        with self.lock:
            stored = self.batches_by_key.get((batch.job_id, batch.seq))
            if (
                stored is None
                or stored.status != BatchStatus.STAGED
                or (stored.claim_key, stored.ledger_snapshot, stored.record_count)
                != (batch.claim_key, batch.ledger_snapshot, batch.record_count)
                or stored.split_run > run
            ):
                return False
            self._put(stored.model_copy(update={"split_run": run}))
            return True

    def get_batch(self, job_id: str, seq: int) -> Batch | None:
        batch = self.batches_by_key.get((job_id, seq))
        return None if batch is None else batch.model_copy()

    def _of_job(self, job_id: str) -> list[Batch]:
        with self.lock:
            found = [b for (j, _), b in self.batches_by_key.items() if j == job_id]
        return [b.model_copy() for b in sorted(found, key=lambda b: batch_sk(b.seq))]

    def batches(self, job_id: str) -> Iterator[Batch]:
        yield from self._of_job(job_id)

    def tree(self, job_id: str, root_seq: int) -> list[Batch]:
        low, high = batch_sk(tree_seq(root_seq, 2)), batch_sk(tree_seq(root_seq, TREE_SPAN - 1))
        root = self.get_batch(job_id, root_seq)
        children = [
            b
            for b in self._of_job(job_id)
            if low <= batch_sk(b.seq) <= high and b.seq >= TREE_BASE and tree_position(b.seq)[0] == root_seq
        ]
        return ([root] if root else []) + children

    def _with_status(self, status: BatchStatus) -> list[Batch]:
        with self.lock:
            found = [
                (sort, key) for key, sort in self.listed.items() if self.batches_by_key[key].status == status
            ]
            return [self.batches_by_key[key].model_copy() for _, key in sorted(found)]

    def batches_with_status(self, status: BatchStatus, limit: int = 100) -> list[Batch]:
        return self._with_status(status)[:limit]

    def count_with_status(self, status: BatchStatus) -> int:
        return len(self._with_status(status))

    def _move_counters(self, job_id: str, moves: dict[str, int]) -> None:
        job = self.jobs.get(job_id)
        if job is not None and moves:
            self._update_job(job_id, **{k: getattr(job, k) + v for k, v in moves.items()})

    def redrive_batch(self, batch: Batch, now: datetime, by: str) -> Batch:
        if batch.status not in (BatchStatus.FAILED, BatchStatus.UNKNOWN):
            raise ValueError(f"only failed or unknown batches are re-driven, not {batch.status.value}")
        entry = Redrive(at=iso(now), by=by, was=batch.status.value)
        with self.lock:
            stored = self.batches_by_key.get((batch.job_id, batch.seq))
            job = self.jobs.get(batch.job_id)
            if (
                stored is None
                or (stored.status, stored.attempts) != (batch.status, batch.attempts)
                or job is None
                or job.status not in REOPENABLE_JOB_STATUSES
            ):
                raise StaleTransition(batch.batch_id)
            changes: dict[str, Any] = {
                "status": BatchStatus.RETRY,
                "updated_at": iso(now),
                "lease_until": "",
                "state0_count": 0,
            }
            self._put(
                stored.model_copy(
                    update={**changes, "redrives": stored.redrives + 1, "redriven": [*stored.redriven, entry]}
                )
            )
            self._update_job(batch.job_id, status=JobStatus.UPLOADING, updated_at=iso(now))
            moves = {COUNTER_FOR[batch.status]: -1}
            if batch.status == BatchStatus.UNKNOWN:
                moves["unknown_redrives"] = 1
            self._move_counters(batch.job_id, moves)
        return batch.model_copy(
            update={**changes, "redrives": batch.redrives + 1, "redriven": [*batch.redriven, entry]}
        )

    def transition(
        self,
        batch: Batch,
        to: BatchStatus,
        now: datetime,
        *,
        lease_until: datetime | None = None,
        count_attempt: bool = False,
        count_state0: bool = False,
        fields: dict[str, str] | None = None,
        new_batches: int = 0,
    ) -> Batch:
        changes: dict[str, Any] = {
            "status": to,
            "updated_at": iso(now),
            "lease_until": iso(lease_until) if lease_until else "",
            **(fields or {}),
        }
        moves: dict[str, int] = {}
        if batch.status in COUNTER_FOR:
            moves[COUNTER_FOR[batch.status]] = -1
        if to in COUNTER_FOR:
            moves[COUNTER_FOR[to]] = moves.get(COUNTER_FOR[to], 0) + 1
        if new_batches:
            moves["batches_total"] = new_batches
        moves = {k: v for k, v in moves.items() if v}
        with self.lock:
            stored = self.batches_by_key.get((batch.job_id, batch.seq))
            if stored is None or (stored.status, stored.attempts) != (batch.status, batch.attempts):
                raise StaleTransition(batch.batch_id)
            if moves and batch.job_id not in self.jobs:  # the counters' condition: nothing written
                raise no_job(batch.job_id)
            self._put(
                stored.model_copy(
                    update={
                        **changes,
                        "attempts": stored.attempts + (1 if count_attempt else 0),
                        "state0_count": stored.state0_count + (1 if count_state0 else 0),
                    }
                ),
                listed_as=f"{iso(now)}#{batch.batch_id}" if to in LISTED_STATUSES else None,
            )
            self._move_counters(batch.job_id, moves)
        return batch.model_copy(
            update={
                **changes,
                "attempts": batch.attempts + (1 if count_attempt else 0),
                "state0_count": batch.state0_count + (1 if count_state0 else 0),
            }
        )


class MemoryLedger:
    """The ledger's objects in ``blobs`` (under ``prefix``, listed by day); its lock and the file
    fingerprints, which the store keeps in the jobs table, on this object."""

    def __init__(self, blobs: MemoryBlobs, bucket: str, prefix: str = "ledger/") -> None:
        self.blobs = blobs
        self.bucket = bucket
        self.prefix = prefix
        self.fingerprints: dict[str, dict[str, Any]] = {}
        self.lease: dict[str, Any] | None = None  # holder, expires_epoch, taken_at
        self._released = threading.Condition()

    def object_key(self, day: date, job_id: str) -> str:
        return f"{self.prefix}{day.isoformat()}/{job_id}.keys"

    def list_since(self, first_day: date) -> list[LedgerObject]:
        start = f"{self.prefix}{first_day.isoformat()}"
        keys = sorted(
            key
            for (bucket, key), versions in list(self.blobs.objects.items())
            if bucket == self.bucket and key.startswith(self.prefix) and key > start and versions
        )
        found: list[LedgerObject] = []
        for key in keys:
            day, _, name = key.removeprefix(self.prefix).partition("/")
            if not name.endswith(".keys") or "/" in name:
                continue
            try:
                parsed = date.fromisoformat(day)
            except ValueError:
                continue
            if parsed >= first_day:
                etag = f'"{hashlib.md5(self.blobs.get(self.bucket, key), usedforsecurity=False).hexdigest()}"'
                found.append(LedgerObject(key, name.removesuffix(".keys"), parsed, etag))
        return found

    def read(self, obj: LedgerObject) -> LedgerEntry:
        try:
            body = self.blobs.get(self.bucket, obj.key)
        except BlobError as exc:  # the store's get_object: an SDK error, so a StoreError
            raise StoreError(f"MemoryLedger.read: {exc.code}", code=exc.code) from exc
        return LedgerEntry.decode(body)

    def write(self, day: date, entry: LedgerEntry) -> None:
        self.blobs.put(
            self.bucket, self.object_key(day, entry.job_id), entry.encode(), "application/octet-stream"
        )

    # ---- the lock -----------------------------------------------------------------------------

    def acquire(self, holder: str, now: datetime, lease_seconds: int, wait_seconds: float) -> None:
        """As the store: try, and after each pause (cut short by a release) try again with ``now``
        moved on by the pause, until ``wait_seconds`` have passed."""
        deadline = time.monotonic() + wait_seconds
        pause = 0.05
        while True:
            if self._try_acquire(holder, now.timestamp(), lease_seconds):
                return
            if time.monotonic() >= deadline:
                raise LedgerBusy(f"the ledger lock stayed held for {wait_seconds:.0f} s")
            with self._released:
                self._released.wait(pause)
            now = datetime.fromtimestamp(now.timestamp() + pause, tz=now.tzinfo)
            pause = min(pause * 2, 1.0)

    def _try_acquire(self, holder: str, now: float, lease_seconds: int) -> bool:
        with self._released:
            lease = self.lease
            if lease is not None and not (lease["expires_epoch"] < int(now) or lease["holder"] == holder):
                return False
            self.lease = {
                "holder": holder,
                "expires_epoch": int(now) + lease_seconds,
                "taken_at": iso(datetime.fromtimestamp(now, UTC)),
            }
            return True

    def release(self, holder: str) -> None:
        with self._released:
            if self.lease is not None and self.lease["holder"] == holder:
                self.lease = None
                self._released.notify_all()

    # ---- file fingerprints --------------------------------------------------------------------

    def fingerprint(self, digest: str) -> dict[str, Any] | None:
        found = self.fingerprints.get(digest)
        return None if found is None else dict(found)

    def record_fingerprint(self, digest: str, job_id: str, day: date) -> None:
        self.fingerprints[digest] = {
            "pk": f"FILE#{digest}",
            "sk": "FILE",
            "job_id": job_id,
            "day": day.isoformat(),
        }


__all__ = ["MemoryJobStore", "MemoryLedger"]
