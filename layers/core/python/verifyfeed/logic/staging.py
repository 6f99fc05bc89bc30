"""Where the batches of a lost-repair file go as it is read (the ``emit`` of ``split_repair_rows``):
staged for a real drop (``BatchStager``), counted for a dry run (``DryRunCounter``). Nothing is sent
from here; ``release_batches`` queues what a run staged once the file has been read to the end."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from aws_lambda_powertools import Logger

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.logic.ledger import LedgerSession
from verifyfeed.logic.repair_batches import RepairBatch
from verifyfeed.models.ids import TREE_BASE, batch_id, claim_key, iso
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus, Job
from verifyfeed.ports import BlobError, Services, SplitSuperseded
from verifyfeed.threads import submit

logger = Logger(child=True)


class Stager(Protocol):
    """Takes each batch of a file as it is made; ``FileRejected`` when the file has too many rows."""

    staged: list[int]  # the seqs of the batches taken

    @property
    def records(self) -> int:
        """The records in them."""
        ...

    def __call__(self, batch: RepairBatch) -> None: ...

    def wait(self) -> None:
        """Every batch taken is written (the first error raised here)."""
        ...

    def drop_leftovers(self) -> int:
        """A resumed split: the earlier runs' batches this run did not make discarded; how many."""
        ...

    def discard(self) -> int:
        """The file was rejected: this run's batches discarded; how many."""
        ...

    def abandon(self) -> None:
        """The split failed: no write is left in flight when the error leaves."""
        ...


class _RowCap:
    """Accepted rows against MAX_ROWS_PER_FILE, checked as the file is read."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.rows = 0

    def count(self, batch: RepairBatch) -> None:
        self.rows += batch.count
        if self.rows > self.cap:
            raise FileRejected("file.too_many_rows", setting="MAX_ROWS_PER_FILE", max=f"{self.cap:,}")


class DryRunCounter:
    """A dry run's stager: counts the batches and records a real drop would send, writes nothing."""

    def __init__(self, services: Services) -> None:
        self.staged: list[int] = []
        self._cap = _RowCap(services.settings.max_rows_per_file)

    @property
    def records(self) -> int:
        return self._cap.rows

    def __call__(self, batch: RepairBatch) -> None:
        self._cap.count(batch)
        self.staged.append(batch.seq)

    def wait(self) -> None:
        return None

    def drop_leftovers(self) -> int:
        return 0

    def discard(self) -> int:
        return 0

    def abandon(self) -> None:
        return None


class BatchStager:
    """Stages each batch — its records in S3, its record ``staged`` — on a few threads while the
    parsing goes on.

    A claim-check body is named after the run (``claims/<job>/<seq>.r<run>.json``), so a run taken over never
    overwrites a body a later run released. A resumed split keeps the batches an earlier run staged
    from the same resend ledger snapshot and stages the others again. Every write is fenced by the
    run: one refused means a later run took over, ``SplitSuperseded`` (docs/decisions.md#all-or-nothing).
    """

    # each staging is two round trips (S3, DynamoDB), tens of milliseconds in AWS (docs/performance.md)
    THREADS = 16

    def __init__(
        self, services: Services, job: Job, run: int, resuming: bool, ledger: LedgerSession | None = None
    ) -> None:
        self.services = services
        self.job = job
        self.run = run
        self.resuming = resuming
        self.ledger = ledger
        self.staged: list[int] = []
        self._cap = _RowCap(self.services.settings.max_rows_per_file)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    @property
    def records(self) -> int:
        return self._cap.rows

    def claim_key(self, seq: int) -> str:
        return claim_key(self.services.settings.claims_prefix, self.job.job_id, seq, self.run)

    def __call__(self, batch: RepairBatch) -> None:
        self._cap.count(batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="stage")
        still: list[Future[None]] = []
        for future in self._pending:
            if future.done():
                future.result()  # a failed staging write stops the split here
            else:
                still.append(future)
        while len(still) > 2 * self.THREADS:  # bounded memory: parsing waits for the writers
            still.pop(0).result()
        self._pending = still
        self.staged.append(batch.seq)
        self._pending.append(submit(self._pool, self._stage, batch))

    def _stage(self, batch: RepairBatch) -> None:
        jobs = self.services.jobs
        job_id = self.job.job_id
        snapshot = self.ledger.snapshot if self.ledger is not None else ""
        existing = jobs.get_batch(job_id, batch.seq) if self.resuming else None
        if (
            existing is not None
            and existing.status == BatchStatus.STAGED
            and existing.ledger_snapshot == snapshot
            and existing.record_count == batch.count
            and jobs.keep_staged(existing, self.run)
        ):
            return  # staged by an earlier run from the same ledger: the same records, this run's now
        key = self.claim_key(batch.seq)
        self.services.blobs.put(self.job.bucket, key, batch.records_json)
        staged = Batch(
            job_id=job_id,
            seq=batch.seq,
            batch_id=batch_id(job_id, batch.seq),
            status=BatchStatus.STAGED,
            record_count=batch.count,
            claim_bucket=self.job.bucket,
            claim_key=key,
            updated_at=iso(self.services.clock.now()),
            ledger_snapshot=snapshot,
            split_run=self.run,
        )
        if not jobs.stage_batch(staged):  # a later run staged or kept it: this one was taken over
            self._delete_quietly([key])
            raise SplitSuperseded(job_id)
        if existing is not None and existing.claim_key not in ("", key):
            self._delete_quietly([existing.claim_key])  # the earlier run's body, read by no record now

    def _delete_quietly(self, keys: list[str]) -> None:
        """Claim-check bodies no record names: deleted now, else left to the claims/ lifecycle rule."""
        try:
            self.services.blobs.delete_many(self.job.bucket, keys)
        except BlobError as exc:
            logger.warning(
                "staged bodies no batch names were not deleted; the lifecycle rule will",
                extra={"job_id": self.job.job_id, "error": type(exc).__name__},
            )

    def wait(self) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending.clear()
            self._shut_down()

    def abandon(self) -> None:
        # writes in flight finish (or fail) before the error leaves: none lands after the invocation
        # has ended (a thawed sandbox would run it in the next one)
        pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(Exception):  # the split's own error is the one that matters
                future.result()
        self._shut_down()

    def _shut_down(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def drop_leftovers(self) -> int:
        if not self.resuming:
            return 0  # (an earlier run made more batches: more of its rows were new to the ledger)
        return self._discard({b.seq for b in self.services.jobs.batches(self.job.job_id)} - set(self.staged))

    def discard(self) -> int:
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - a staging write failed too; discard what was written
            logger.warning("a staging write failed while the file was being rejected")
        return self._discard(set(self.staged))

    def _discard(self, seqs: set[int]) -> int:
        """Those of ``seqs`` still ``staged`` by this run: ``discarded``, bodies deleted. A batch a
        later run staged or kept, or a run released, is not this run's to discard."""
        now = self.services.clock.now()
        jobs = self.services.jobs
        staged = {b.seq: b.claim_key for b in jobs.batches(self.job.job_id) if b.status == BatchStatus.STAGED}
        discarded = [
            s for s in sorted(seqs & staged.keys()) if jobs.discard_staged(self.job.job_id, s, now, self.run)
        ]
        self.services.blobs.delete_many(self.job.bucket, [staged[s] for s in discarded if staged[s]])
        return len(discarded)


def release_batches(services: Services, job: Job, run: int) -> bool:
    """Queue every batch ``run`` staged or kept that is still ``staged`` (ten a request), then mark
    the job released: True when this call marked it. Two runs may release one job; a message queued
    twice is harmless (the uploader's send lease and "already settled" check)."""
    bodies = [
        LostRepairBatchMessage(
            job_id=job.job_id,
            batch_id=batch.batch_id,
            seq=batch.seq,
            claim_bucket=batch.claim_bucket or job.bucket,
            claim_key=batch.claim_key,
        ).model_dump_json(exclude_none=True)
        for batch in services.jobs.batches(job.job_id)
        if batch.status == BatchStatus.STAGED and batch.split_run == run and batch.seq < TREE_BASE
    ]
    services.queue.send_all(bodies)
    return services.jobs.mark_released(job.job_id, services.clock.now())
