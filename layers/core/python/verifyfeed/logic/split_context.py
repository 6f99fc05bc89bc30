"""What one run of a file's split knows before it reads a row: the dropped object, its job, the
run, where its reports go, dry run or resend — worked out once (``FileSplit``), read by every room."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote_plus

from verifyfeed.ingest.readers import RowSource
from verifyfeed.logic.reports import RejectionLog, ReportPaths
from verifyfeed.models.records import Job, JobCounts, JobKind
from verifyfeed.pii import mask_object_key
from verifyfeed.ports import Services


@dataclass(frozen=True)
class DroppedObject:
    """One ``ObjectCreated`` record of an S3 event, key already URL-decoded."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str = ""
    sequencer: str = ""

    @classmethod
    def from_event_record(cls, record: dict[str, Any]) -> DroppedObject:
        s3 = record["s3"]
        obj = s3["object"]
        return cls(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(obj["key"]),  # S3 events URL-encode keys, spaces as "+"
            size=int(obj.get("size", 0)),
            etag=str(obj.get("eTag", "")),
            version_id=str(obj.get("versionId") or ""),
            sequencer=str(obj.get("sequencer", "")),
        )

    @property
    def job_id(self) -> str:
        identity = self.version_id or self.sequencer or self.etag
        return hashlib.sha256(f"{self.bucket}\n{self.key}\n{identity}".encode()).hexdigest()[:24]

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class SplitOutcome(StrEnum):
    """What ``split_object`` did with one S3 event record."""

    SPLIT = "split"  # read, staged or reserved, and queued
    RELEASED = "released"  # an interrupted release was finished
    DUPLICATE = "duplicate"  # the same event again: the job is past splitting
    SUPERSEDED = "superseded"  # another run of this split took it over
    REJECTED = "rejected"  # the file was refused: nothing sent
    DUPLICATE_FILE = "duplicate_file"  # identical to a file split within the resend window
    DRY_RUN = "dry_run"  # counted and reported, nothing written upstream
    IGNORED = "ignored"  # outside the ingest prefixes


@dataclass(frozen=True)
class SplitResult:
    job_id: str
    outcome: SplitOutcome
    counts: JobCounts
    # this run recorded the file's outcome: its rows are counted in the metrics once, whichever
    # of two runs of one split got there
    record_metrics: bool = False


def is_dry_run(key: str, services: Services) -> bool:
    prefix = services.settings.dry_run_prefix
    return bool(prefix) and key.startswith(prefix)


def is_resend(key: str, services: Services) -> bool:
    """A file under RESEND_PREFIX: the operator's override of the resend ledger."""
    prefix = services.settings.resend_prefix
    return bool(prefix) and key.startswith(prefix)


def kind_for_key(key: str, services: Services) -> JobKind | None:
    settings = services.settings
    if is_dry_run(key, services):
        key = key.removeprefix(settings.dry_run_prefix)
    if key.startswith(settings.lost_repair_prefix):
        return JobKind.LOST_REPAIR
    if key.startswith(settings.carrier_audit_prefix):
        return JobKind.CARRIER_AUDIT
    return None


@dataclass(frozen=True)
class FileSplit:
    """One run of one file's split. ``run`` fences every write (``JobRepository.take_split``);
    ``resuming``: an earlier run left the job ``splitting``."""

    services: Services
    dropped: DroppedObject
    job: Job
    run: int
    resuming: bool
    rejections: RejectionLog
    paths: ReportPaths
    dry_run: bool
    resend: bool
    masked_key: str

    @classmethod
    def begin(
        cls,
        services: Services,
        dropped: DroppedObject,
        job: Job,
        run: int,
        resuming: bool,
        rejections: RejectionLog,
    ) -> FileSplit:
        return cls(
            services=services,
            dropped=dropped,
            job=job,
            run=run,
            resuming=resuming,
            rejections=rejections,
            paths=ReportPaths.for_job(job, services.settings.reports_prefix),
            dry_run=is_dry_run(dropped.key, services),
            resend=is_resend(dropped.key, services),
            masked_key=mask_object_key(dropped.key),
        )

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def bucket(self) -> str:
        return self.dropped.bucket

    @property
    def log_extra(self) -> dict[str, object]:
        return {"job_id": self.job.job_id, "key": self.masked_key, "split_run": self.run}


@dataclass(frozen=True)
class DryRunPlan:
    """What a real drop of the file would do: its counts, what it would send, records charged."""

    counts: JobCounts
    would_send: dict[str, object]
    records_charged: int


class Intake(Protocol):
    """One kind of file's room: what its rows become. Nothing leaves before ``submit``."""

    def identical_to(self) -> Job | None:
        """The job that split a file identical to this one within the resend window, if any."""
        ...

    def read(self, rows: RowSource) -> JobCounts:
        """Every row validated (and staged); ``FileRejected`` stops the file."""
        ...

    def discard(self) -> int:
        """The file was rejected: what was staged is discarded; how many batches."""
        ...

    def abandon(self) -> None:
        """The split failed: no write of this run is left in flight."""
        ...

    def plan(self, counts: JobCounts) -> DryRunPlan: ...

    def submit(self, counts: JobCounts) -> JobCounts:
        """The file was read to the end: recorded (ledger) or reserved and queued; its final counts."""
        ...

    def release(self) -> bool:
        """After the split is finished: what was staged is queued; True when this run marked it."""
        ...
