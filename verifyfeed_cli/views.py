"""How the records read: their JSON views (masked) and the text pieces several commands print."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from verifyfeed.logic.reports import ReportPaths
from verifyfeed.models.ids import batch_label
from verifyfeed.models.records import (
    REPORTED_JOB_STATUSES,
    SETTLED_JOB_STATUSES,
    Audit,
    AuditStatus,
    Batch,
    BatchStatus,
    Job,
    JobKind,
    JobStatus,
)
from verifyfeed.pii import mask_generic
from verifyfeed_cli.output import Col, Screen, table, when

AUDIT_LABELS = {
    AuditStatus.PASSED: "passed",
    AuditStatus.REJECTED: "rejected",
    AuditStatus.PENDING: "awaiting a decision",
    AuditStatus.SUBMITTING: "being submitted",
    AuditStatus.FAILED: "refused when submitted",
    AuditStatus.UNKNOWN: "held unknown",
}


def job_view(job: Job) -> dict[str, Any]:
    view = job.model_dump(mode="json")
    view["batches_settled"] = job.batches_settled
    return view


def batch_view(batch: Batch) -> dict[str, Any]:
    return batch.model_dump(
        mode="json",
        include={
            "batch_id",
            "job_id",
            "seq",
            "status",
            "record_count",
            "attempts",
            "state0_count",
            "redrives",
            "serial_no",
            "upstream_envelope",
            "upstream_code",
            "upstream_desc",
            "last_error",
            "updated_at",
            "parent_seq",
            "refused_record",
        },
    )


def audit_view(audit: Audit) -> dict[str, Any]:
    """Masked fields only: no digest, the plate masked like everything else that names a person."""
    return {
        "record_id": audit.record_id,
        "status": audit.status.value,
        "usage": audit.usage,
        "owner": audit.owner_name_masked,
        "id_card": audit.id_card_masked,
        "phone": audit.phone_masked,
        "plate": mask_generic(audit.plate) if audit.plate else "",
        "job_id": audit.job_id,
        "row": audit.row,
        "submitted_at": audit.submitted_at,
        "updated_at": audit.updated_at,
        "remarks": audit.remarks,
        "last_error": audit.last_error,
    }


def rows_compact(job: Job) -> str:
    return f"{job.rows_read}/{job.rows_accepted}/{job.rows_rejected}"


def batches_compact(job: Job) -> str:
    """all/ok/split/failed/deferred/unknown/open, the last six adding up to the first: a batch split
    in halves is settled, its records counted in its halves (which are batches of the job too)."""
    if job.status == JobStatus.DRY_RUN:
        return f"dry run: {job.batches_total} to send"
    return (
        f"{job.batches_total}/{job.batches_succeeded}/{job.batches_bisected}/{job.batches_failed}/"
        f"{job.batches_deferred}/{job.batches_unknown}/{job.batches_open}"
    )


def status_text(job: Job) -> str:
    """The job's status, and whether an operator re-drove any of it from unknown (it may have been
    charged twice, whatever the status says since)."""
    if job.unknown_redrives:
        return f"{job.status.value} ({job.unknown_redrives} re-driven from unknown)"
    return job.status.value


def batches_text(job: Job) -> str:
    """The job's batches, adding up: a batch split in halves counts once, its halves as batches."""
    parts = [
        f"{job.batches_succeeded} succeeded",
        *([f"{job.batches_bisected} split in halves"] if job.batches_bisected else []),
        f"{job.batches_failed} failed",
        f"{job.batches_unknown} unknown",
        f"{job.batches_deferred} deferred",
        f"{job.batches_open} in flight",
    ]
    return f"{job.batches_total} in all = " + " + ".join(parts)


def audits_text(job: Job, counts: dict[str, int]) -> str:
    """The job's audits by status, adding up to the audits it sent; an audit a later file corrected
    belongs to that file's job now."""
    parts = [f"{counts[s.value]} {label}" for s, label in AUDIT_LABELS.items() if counts.get(s.value)]
    moved = job.batches_total - sum(counts.values())
    if moved > 0:
        parts.append(f"{moved} corrected by a later file")
    return f"{job.batches_total} in all" + (" = " + " + ".join(parts) if parts else "")


def progress_line(job: Job, audits: dict[str, int]) -> str:
    line = (
        f"{job.status.value}: {job.rows_read} row(s) read "
        f"({job.rows_accepted} accepted, {job.rows_rejected} rejected)"
    )
    if job.status == JobStatus.DRY_RUN:
        would = (
            f"{job.batches_total} batch(es), {job.rows_accepted} record(s)"
            if job.kind == JobKind.LOST_REPAIR
            else f"{job.rows_accepted} audit(s)"
        )
        return line + f"; a real drop would send {would}"
    if job.kind == JobKind.LOST_REPAIR:
        return line + f"; batches {batches_text(job)}"
    return line + f"; audits {audits_text(job, audits)}"


class ReportLine(NamedTuple):
    """What the "Report:" line of a job says, in parts: ``status`` lays them out for its screen
    (``output.line``: the command on the next line when it does not fit, the note below)."""

    text: str  # the report's S3 URI when it is written, else when it will be
    command: str  # the command that shows it ("" when it is not written)
    note: str  # "of its last settlement, ..." for a report of a job re-opened since ("" otherwise)


def report_line(job: Job, paths: ReportPaths, written: bool, report_command: str) -> ReportLine:
    """The one wording of a job's report, written or not (``verifyfeed status``)."""
    if written:
        again = job.status not in SETTLED_JOB_STATUSES  # re-driven since: it settles again
        note = "of its last settlement, written again when it settles again" if again else ""
        return ReportLine(f"s3://{job.bucket}/{paths.summary}", report_command, note)
    if job.status in SETTLED_JOB_STATUSES and job.status in REPORTED_JOB_STATUSES:
        return ReportLine(f"being written: the job settled at {when(job.updated_at)}", "", "")
    return ReportLine("not yet: written when every batch has settled", "", "")


def answer_text(batch: Batch) -> str:
    """One answered call, saying what it was: its serial number when the upstream gave one."""
    label = batch_label(batch.seq)
    serial = f"serial {batch.serial_no}" if batch.serial_no else "no serial number given"
    what = {
        BatchStatus.SUCCEEDED: f"uploaded, {serial}",
        BatchStatus.BISECTED: "refused whole (state 0), split in halves",
        BatchStatus.REFUSED: "refused whole (state 0), to be split",
        BatchStatus.FAILED: "refused (state 0), not charged",
        BatchStatus.UNKNOWN: "answer not readable, held",
    }.get(batch.status, f"{batch.status.value}, {serial}")
    return f"{label} {what}"


def redriven_view(ref: str, label: str, records: int, entries: Iterable[Any]) -> dict[str, Any]:
    return {
        "ref": ref,
        "label": label,
        "records": records,
        "redriven": [e.model_dump() for e in entries],
    }


def redriven_text(view: dict[str, Any], kind: JobKind) -> str:
    what = f"{view['label']} ({view['records']} record(s))" if kind == JobKind.LOST_REPAIR else view["label"]
    risk = "may be charged twice" if kind == JobKind.LOST_REPAIR else "may be a second audit upstream"
    return f"{what}: " + "; ".join(
        f"from {e['was']} by {e['by']} at {when(e['at'])}" + (f" ({risk})" if e["was"] == "unknown" else "")
        for e in view["redriven"]
    )


def batch_table(batches: Iterable[Batch], screen: Screen | None) -> str:
    """Batches as ``status FILE`` and ``redrive`` list them, ``#`` their place in the file (``#3.1``:
    the first half of its third batch); on a narrow screen the id and attempts go first."""
    return table(
        (
            Col("BATCH", drop=2),
            Col("#"),
            Col("STATUS"),
            Col("RECORDS"),
            Col("ATTEMPTS", drop=1),
            Col("UPDATED", drop=3),
            Col("LAST ERROR", cut=16),
        ),
        [
            (
                b.batch_id,
                batch_label(b.seq),
                b.status.value,
                b.record_count,
                b.attempts,
                when(b.updated_at),
                b.last_error,
            )
            for b in batches
        ],
        screen,
    )


def columns_text(header: dict[str, Any] | None) -> str:
    if header is None:
        return "not known: no header facts stored for this job"
    if header["header_row"] is None:
        return "not known: the file was rejected before its header was read"
    ignored = header["ignored_columns"]
    used = f"ignored: {', '.join(ignored)}" if ignored else "every column used"
    return f"header in row {header['header_row']}; {used}"


def uploads_line(job: Job, others: list[Job], command: str) -> str:
    """The jobs of a file uploaded more than once, newest first, and which one is shown."""
    listed = ", ".join(
        f"{j.job_id} ({j.status.value}, {when(j.created_at)}){'  <- shown' if j is job else ''}"
        for j in (job, *others)
    )
    return (
        f"Uploads:  {len(others) + 1} jobs for this file, newest first: {listed}; "
        f"`verifyfeed {command} JOB` shows another"
    )
