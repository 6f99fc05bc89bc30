"""The I/O the logic needs, as interfaces: storage of jobs, audits and the ledger, blobs, the work
queue and secrets, with the exceptions they raise; and ``Services``, the bundle a use case is given.

``logic/`` depends on these, never on an AWS SDK or on ``store/``: ``Services`` hands it the AWS
adapters (``store/jobs.py``, ``store/audits.py``, ``store/ledger.py`` on DynamoDB and S3,
``store/blobs.py`` on S3, ``store/queue.py`` on SQS, ``secrets.py`` on Secrets Manager), and unit
tests hand it the in-memory ones of ``tests/fakes/``, which the contract tests
(``tests/integration/test_*_contract*.py``) hold to the same behaviour as the adapters on moto. An
adapter's SDK error reaches the logic as ``StoreError`` or ``BlobError``, never as botocore's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, Protocol

from verifyfeed.clock import Blackout, Clock
from verifyfeed.config import Settings
from verifyfeed.models.records import Reservation

if TYPE_CHECKING:
    from verifyfeed.models.ledger import LedgerEntry, LedgerObject
    from verifyfeed.models.records import (
        Audit,
        AuditStatus,
        Batch,
        BatchFields,
        BatchStatus,
        Job,
        JobCounts,
        JobStatus,
    )
    from verifyfeed.pii import Keyed
    from verifyfeed.upstream.auth import Credentials
    from verifyfeed.upstream.client import UpstreamClient


# --------------------------------------------------------------------------------------------------
# What the adapters raise
# --------------------------------------------------------------------------------------------------


class StoreError(Exception):
    """The database refused or could not be reached (``code``: the service's error code, if any).
    A write that lost a condition is not this: it is ``StaleTransition``, ``StaleAudit`` or a
    ``False`` answer, as each method says."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class BlobError(Exception):
    """Storage refused or could not be reached; ``missing``: the object (version) is not there."""

    def __init__(self, message: str, *, missing: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.missing = missing
        self.code = code


class JobMissing(StoreError):
    """A write to a job (or counted on it) found no job: nothing was written. Not a stale read —
    no one else moved anything, and trying again cannot help (docs/decisions.md#all-or-nothing)."""


class StaleTransition(Exception):
    """The record was no longer in the state the transition expected: someone else moved it."""


class SplitSuperseded(Exception):
    """Another run of the same split took the job over, or finished it: this run writes nothing
    more to the job or its batches (docs/decisions.md#all-or-nothing)."""


class StaleAudit(Exception):
    """The audit changed since it was read."""


class LedgerBusy(Exception):
    """Another split held the ledger's lock for longer than this one may wait."""


# --------------------------------------------------------------------------------------------------
# Jobs and their batches (store/jobs.py: docs/architecture.md#batch-states)
# --------------------------------------------------------------------------------------------------


class JobRepository(Protocol):
    """Jobs (one a dropped file) and their batches. Every batch transition is conditional on the
    state it leaves, and the job's counters move with it, atomically.

    A write to a job that is not there raises ``JobMissing`` and writes nothing (a bare update would
    leave a fragment of an item ``get_job`` cannot read). While a job is splitting, each run of the
    split (an invocation; the same S3 event may reach two) owns it from ``take_split`` on, under a
    number one above the last run's (``run``; 0 for a job no run took over): a staged batch carries
    the run that staged or kept it, and a run's writes are refused — ``SplitSuperseded``, or False
    as each method says — once a later run has taken the job, or the batch, over."""

    def create_job(self, job: Job) -> bool:
        """Create the job; False when it exists already (the same S3 event delivered twice)."""
        ...

    def get_job(self, job_id: str) -> Job | None: ...

    def list_jobs(self, limit: int = 100) -> list[Job]:
        """Most recent first."""
        ...

    def find_jobs(self, file: str) -> list[Job]:
        """The jobs of an uploaded file, most recent first (one per uploaded version)."""
        ...

    def take_split(self, job_id: str) -> int | None:
        """A run of the split takes the job over: its number, one above the last run's; None when
        the job is not splitting (any more)."""
        ...

    def finish_split(self, job_id: str, counts: JobCounts, now: datetime, run: int = 0) -> None:
        """Record what the splitter found: ``splitting → uploading``, if ``run`` still owns the split
        (``SplitSuperseded`` if not)."""
        ...

    def mark_released(self, job_id: str, now: datetime) -> bool:
        """Every staged batch of the job has its message on the queue; False when it was marked so
        already (another run released it too)."""
        ...

    def discard_staged(self, job_id: str, seq: int, now: datetime, run: int = 0) -> bool:
        """``staged → discarded`` (never sent); False when it was not staged, or a later run than
        ``run`` staged or kept it."""
        ...

    def reject_job(
        self,
        job_id: str,
        reason: str,
        counts: JobCounts,
        now: datetime,
        status: JobStatus = ...,
        run: int = 0,
    ) -> None:
        """The file as a whole is not sent: ``rejected`` (or ``duplicate``: identical to one split),
        if ``run`` still owns the split (``SplitSuperseded`` if not)."""
        ...

    def set_job_status(self, job_id: str, status: JobStatus, expected: set[JobStatus], now: datetime) -> bool:
        """Move the job to ``status`` if it is in one of ``expected``; False if it was not."""
        ...

    def set_report_key(self, job_id: str, report_key: str) -> None: ...

    def put_batch_if_absent(self, batch: Batch) -> bool:
        """Write the batch unless one with its seq exists (False then)."""
        ...

    def stage_batch(self, batch: Batch) -> bool:
        """Write a ``staged`` batch (staged by ``batch.split_run``) over nothing, or over one never
        released that no later run staged or kept; False when there is one of those."""
        ...

    def keep_staged(self, batch: Batch, run: int) -> bool:
        """A later run keeps a batch an earlier one staged (the same records): it carries ``run``
        from now on; False when it is no longer staged as read."""
        ...

    def get_batch(self, job_id: str, seq: int) -> Batch | None: ...

    def batches(self, job_id: str) -> Iterator[Batch]:
        """The job's batches by seq."""
        ...

    def tree(self, job_id: str, root_seq: int) -> list[Batch]:
        """The file's batch ``root_seq`` and every child batch split from it, by seq (node order)."""
        ...

    def batches_with_status(self, status: BatchStatus, limit: int = 100) -> list[Batch]:
        """Deferred, failed or unknown batches across all jobs."""
        ...

    def count_with_status(self, status: BatchStatus) -> int:
        """How many batches are deferred, failed or unknown."""
        ...

    def redrive_batch(self, batch: Batch, now: datetime, by: str) -> Batch:
        """An operator's (``by``) re-drive: ``failed|unknown → retry`` and the job reopened, atomically;
        recorded on the batch (``redriven``) and, from ``unknown``, on the job (``unknown_redrives``)."""
        ...

    def transition(
        self,
        batch: Batch,
        to: BatchStatus,
        now: datetime,
        *,
        lease_until: datetime | None = None,
        count_attempt: bool = False,
        count_state0: bool = False,
        fields: BatchFields | None = None,
        new_batches: int = 0,
    ) -> Batch:
        """Move ``batch`` from the state it was read in to ``to`` (``StaleTransition`` if it moved);
        the job's counters follow atomically."""
        ...


# --------------------------------------------------------------------------------------------------
# Carrier audits (store/audits.py)
# --------------------------------------------------------------------------------------------------


class AuditRepository(Protocol):
    """Carrier audits, indexed by upstream record id and by status. Every transition is
    conditional on the state (and version) it leaves: a stale result never overwrites a newer."""

    def get(self, audit_key: str) -> Audit | None: ...

    def find_key(self, candidates: Sequence[str]) -> str:
        """The first of ``candidates`` an audit is stored under, else the first."""
        ...

    def find_keys(self, candidates: Sequence[Sequence[str]]) -> list[str]:
        """``find_key`` of each candidate list."""
        ...

    def key_for_record(self, record_id: int) -> str | None:
        """The ``audit_key`` of the audit upstream knows as ``record_id``, or ``None``."""
        ...

    def decide_record(
        self,
        audit_key: str,
        record_id: int,
        to: AuditStatus,
        remarks: str,
        now: datetime,
        cycle: int | None = None,
    ) -> tuple[bool, Audit | None]:
        """pending → passed / rejected for the audit holding ``record_id`` (with ``cycle``: only in
        that cycle), without reading it first; (moved, the audit as it is now)."""
        ...

    def reserve(self, audit: Audit, now: datetime) -> tuple[Reservation, Audit]:
        """Reserve the audit for a submission from a file row, atomically."""
        ...

    def settle_submission(
        self, audit: Audit, to: AuditStatus, now: datetime, *, record_id: int | None = None, error: str = ""
    ) -> Audit:
        """submitting → pending (with the record id) / failed / unknown, and count it on the job
        (``JobMissing``, nothing written, when the job is not there)."""
        ...

    def resubmit_unknown(self, audit: Audit, now: datetime, by: str) -> Audit:
        """An operator's (``by``) re-submission: ``unknown → submitting`` and its job reopened,
        atomically; recorded on the audit (``redriven``) and on the job (``unknown_redrives``)."""
        ...

    def take_lease(self, audit: Audit, now: datetime, until: datetime) -> Audit:
        """A worker is about to call upstream for this submitting audit."""
        ...

    def release_lease(self, audit: Audit, now: datetime) -> Audit:
        """The call certainly did not take effect: another delivery may try again."""
        ...

    def decide(self, audit: Audit, to: AuditStatus, remarks: str, now: datetime) -> Audit:
        """pending → passed / rejected (the callback and the poller both come here)."""
        ...

    def mark_polled(self, audit: Audit, now: datetime, error: str = "") -> bool:
        """A poll of this pending audit is done (answered "still pending", or not readable: ``error``)."""
        ...

    def with_status(
        self,
        status: AuditStatus,
        older_than: datetime | None = None,
        limit: int = 100,
        *,
        newest_first: bool = False,
    ) -> list[Audit]:
        """Audits in ``status``, least recently updated first (or newest first)."""
        ...

    def count_with_status(self, status: AuditStatus) -> int:
        """How many audits are in ``status``."""
        ...

    def scan_all(self) -> Iterator[Audit]: ...

    def count_by_status(self) -> dict[str, int]: ...


# --------------------------------------------------------------------------------------------------
# The resend ledger (store/ledger.py; logic/ledger.py)
# --------------------------------------------------------------------------------------------------


class Ledger(Protocol):
    """One object per split file (its records' keys), a lock, and file fingerprints."""

    def object_key(self, day: date, job_id: str) -> str: ...

    def list_since(self, first_day: date) -> list[LedgerObject]:
        """Every file's object from ``first_day`` (China date) on."""
        ...

    def read(self, obj: LedgerObject) -> LedgerEntry: ...

    def write(self, day: date, entry: LedgerEntry) -> None: ...

    def acquire(self, holder: str, now: datetime, lease_seconds: int, wait_seconds: float) -> None:
        """Take the lease (or take over an expired one), waiting up to ``wait_seconds``
        (``LedgerBusy`` after that)."""
        ...

    def release(self, holder: str) -> None:
        """Give the lease back, if it is still ours."""
        ...

    def fingerprint(self, digest: str) -> dict[str, Any] | None:
        """The split recorded for a file content fingerprint (a keyed digest), if any."""
        ...

    def record_fingerprint(self, digest: str, job_id: str, day: date) -> None: ...


# --------------------------------------------------------------------------------------------------
# Blobs, the work queue, secrets
# --------------------------------------------------------------------------------------------------


class Blobs(Protocol):
    """Dropped files, batches' claim-check bodies (``claims/``), reports; errors are ``BlobError``."""

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None: ...

    def put_file(self, bucket: str, key: str, stream: IO[bytes], content_type: str) -> None: ...

    def delete_many(self, bucket: str, keys: Sequence[str]) -> None: ...

    def delete_every_version(self, bucket: str, key: str) -> None:
        """Every version (the newest each time: no list permission), not a delete marker."""
        ...

    def open(self, bucket: str, key: str, version: str | None = None) -> IO[bytes]:
        """A seekable stream of one object version, read by ranges (an XLSX needs seeking)."""
        ...


class WorkQueue(Protocol):
    """The uploader's queue: lost-repair batches and carrier audits."""

    def send(self, body: str) -> None: ...

    def send_all(self, bodies: Sequence[str]) -> None:
        """Every body, or an error: each body was sent at most once either way."""
        ...


class Secrets(Protocol):
    """Credentials and keys, each read when it is needed (a rotation is picked up)."""

    def upstream_credentials(self) -> Credentials: ...

    def callback_secrets(self) -> list[str]:
        """Every secret a callback may be signed with: current first, then previous (rotation)."""
        ...

    def expected_api_id(self) -> str:
        """The apiId a callback must carry."""
        ...

    def identity_pepper(self) -> Keyed:
        """The pepper of the digests of ID and phone numbers we store (current and previous)."""
        ...


# --------------------------------------------------------------------------------------------------
# What a use case is given
# --------------------------------------------------------------------------------------------------


@dataclass
class Services:
    """The settings, a clock and the ports, built once per Lambda sandbox by
    ``services.build_services`` (the AWS adapters), or by a test (``tests/fakes``: in memory).

    The upstream client and the ledger are built on first use: of the functions, only the uploader
    and the poller call the upstream, and the splitter alone reads the ledger.
    """

    settings: Settings
    clock: Clock
    jobs: JobRepository
    audits: AuditRepository
    secrets: Secrets = field(repr=False)
    blobs: Blobs = field(repr=False)
    queue: WorkQueue = field(repr=False)
    ledger_factory: Callable[[], Ledger] = field(repr=False)
    upstream_factory: Callable[[], UpstreamClient] = field(repr=False)
    blackout: Blackout = field(default_factory=Blackout)

    @cached_property
    def upstream(self) -> UpstreamClient:
        return self.upstream_factory()

    @cached_property
    def ledger(self) -> Ledger:
        return self.ledger_factory()
