"""What the local stack shows of the files it was given: each job's view (counts, answers, whether
it settled and adds up) and a snapshot of the whole (audits, the sandbox's ledger, queues, the
functions' invocations, what the IAM gate refused)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from verifyfeed.models.records import (  # models only: they read no settings
    OPEN_AUDIT_STATUSES,
    SETTLED_JOB_STATUSES,
    JobCounts,
)

if TYPE_CHECKING:
    from verifyfeed.logic.reports import ReportPaths
    from verifyfeed.store.jobs import JobStore


@dataclass
class JobView:
    file: str
    key: str
    kind: str
    job_id: str = ""
    status: str = "missing"
    reason: str = ""
    counts: JobCounts = field(default_factory=JobCounts)  # the job's, as the splitter and uploader keep them
    records_in_succeeded_batches: int = 0
    report_key: str = ""
    # lost repair: each answered batch's serial number and whole answer envelope (its scalars)
    upstream_answers: list[dict[str, Any]] = field(default_factory=list)

    def report_paths(self, reports_prefix: str) -> ReportPaths:
        """Where the job's reports are (``ReportPaths.for_job``: its ``report_key``, or the key a job
        written before reports were per job had)."""
        from verifyfeed.logic.reports import ReportPaths

        return ReportPaths(self.report_key or f"{reports_prefix}{self.key}.json")

    def problem(self) -> str | None:
        """Why the job is not settled and accounted for, by the rules of the CLI's ``drop --wait``."""
        c = self.counts
        settled = c.batches_settled + c.batches_deferred
        if self.status == "missing":
            return f"{self.file}: no job was recorded for s3 key {self.key}"
        if self.status not in SETTLED_JOB_STATUSES:
            return f"{self.file}: job still {self.status} ({settled}/{c.batches_total} batches settled)"
        if c.rows_accepted + c.rows_rejected != c.rows_read:
            return (
                f"{self.file}: rows do not add up: {c.rows_accepted} accepted + "
                f"{c.rows_rejected} rejected != {c.rows_read} read"
            )
        if self.status not in ("rejected", "dry_run") and settled != c.batches_total:
            return f"{self.file}: batches do not add up for a {self.status} job"
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "status": self.status,
            **self.counts.model_dump(),
            "upstream_answers": self.upstream_answers,
        }


@dataclass
class Snapshot:
    jobs: list[JobView]
    audits: dict[str, int]
    ledger: dict[str, Any] | None
    queues: dict[str, int]
    invocations: dict[str, dict[str, int]]
    in_flight: int  # S3 notifications being handled
    batches_in_flight: int = 0  # SQS batches received and not yet deleted or given up
    iam_denials: list[str] = field(default_factory=list)  # calls a function's role does not allow

    def problems(self) -> list[str]:
        found = list(self.iam_denials)  # first: a missing grant explains everything after it
        found += [p for p in (job.problem() for job in self.jobs) if p]
        if self.in_flight:
            found.append(f"{self.in_flight} S3 notification(s) still being processed")
        if self.batches_in_flight:
            found.append(f"{self.batches_in_flight} SQS batch(es) still being processed")
        open_audits = {s: self.audits.get(s, 0) for s in OPEN_AUDIT_STATUSES if self.audits.get(s, 0)}
        if open_audits:
            found.append("audits not decided yet: " + ", ".join(f"{n} {s}" for s, n in open_audits.items()))
        return found

    @property
    def settled(self) -> bool:
        return not self.problems()


@dataclass
class Submitted:
    file: str
    key: str
    kind: str
    job_id: str  # as the splitter derives it from the notification


def job_view(sub: Submitted, store: JobStore) -> JobView:
    view = JobView(file=sub.file, key=sub.key, kind=sub.kind, job_id=sub.job_id)
    job = store.get_job(sub.job_id)
    if job is None:
        return view
    view.kind, view.status, view.reason, view.report_key = (
        str(job.kind),
        str(job.status),
        job.reason,
        job.report_key,
    )
    view.counts = JobCounts.model_validate(job.model_dump(include=set(JobCounts.model_fields)))
    if view.kind == "lost-repair":
        batches = list(store.batches(job.job_id))
        view.records_in_succeeded_batches = sum(
            b.record_count for b in batches if str(b.status) == "succeeded"
        )
        view.upstream_answers = [
            {
                "batch_id": b.batch_id,
                "status": str(b.status),
                "serial_no": b.serial_no,
                "envelope": json.loads(b.upstream_envelope),
            }
            for b in batches
            if b.upstream_envelope
        ]
    return view
