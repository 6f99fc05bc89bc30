"""The CLI's commands. Each returns a ``Result``: one JSON document and its human-readable text.

They read through the same stores and models as the functions, and change state only through
the stores' conditional transitions (``redrive``), so an operator can never move a record the
system moved meanwhile.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
import re
import shlex
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from verifyfeed.logic.progress import settle_job
from verifyfeed.logic.reports import (
    ReportPaths,
    read_header_facts,
    record_outcomes,
    refused_records,
)
from verifyfeed.logic.splitter import DroppedObject
from verifyfeed.models.ids import batch_label
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Audit, AuditStatus, Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed.pii import mask_generic
from verifyfeed.ports import BlobError, StaleAudit, StaleTransition
from verifyfeed.services import Services
from verifyfeed_cli.advice import (
    EXIT_NOT_SETTLED,
    OPEN_AUDIT_STATUSES,
    REDRIVE_UNKNOWN_AUDITS_FLAG,
    REDRIVE_UNKNOWN_FLAG,
    REPORTED_JOB_STATUSES,
    SETTLED_JOB_STATUSES,
    Cost,
    Hint,
    carrier_audit_hints,
    lost_repair_hints,
    outcome,
    overview_hints,
)
from verifyfeed_cli.audit_redrive import Resubmission, plan_unknown_audits, resubmit, unknown_audits
from verifyfeed_cli.output import ProgressBar, confirm, shorten, table, when
from verifyfeed_cli.target import Target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # no such file / job / report, or the operator declined the confirmation
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_AWS = 3  # AWS or configuration error: no stack, no credentials, access denied, ...

JOB_ID = re.compile(r"[0-9a-f]{24}")
UNKNOWN_WARNING = (
    "WARNING: an 'unknown' batch may already have been accepted upstream, and state \"1\" is charged:\n"
    "resending it can charge the same records twice. Resend only after checking with the upstream\n"
    "(by the time of the attempt and the platform serial number) that it was not processed."
)


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Result:
    data: dict[str, Any]
    text: str
    code: int = EXIT_OK


@dataclass
class Context:
    target: Target
    services: Services
    s3: S3Client
    sqs: SQSClient
    stdin: IO[str]
    stderr: IO[str]
    assume_yes: bool = False
    progress: bool | None = None  # None: draw the progress bar when stderr is a terminal
    operator: str = ""  # who runs the command (recorded on what it re-drives)
    prog: str = "verifyfeed"  # how this command was run: hints print commands that run as printed
    flags: tuple[str, ...] = ()  # the options naming the target (--local, --stack NAME, ...)

    def say(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def command(self, *words: str) -> str:
        """A ``verifyfeed`` command line against the same stack, as it runs when pasted."""
        return shlex.join([*shlex.split(self.prog), *self.flags, *words])

    @property
    def price(self) -> float | None:
        return self.services.settings.price_per_record

    def cost(self, records: int) -> Cost:
        return Cost(records, self.price, self.services.settings.price_currency)


# ---- shared ----------------------------------------------------------------------------------------


def find_job(ctx: Context, ref: str) -> tuple[Job, list[Job]]:
    """A job by id, S3 key (``lost-repair/x.csv``, ``s3://bucket/lost-repair/x.csv``) or file name.

    A key uploaded several times has one job per version: the most recent one, and the others.
    """
    ref = ref.strip()
    if ref.startswith("s3://"):
        ref = ref[len("s3://") :].partition("/")[2]
    if JOB_ID.fullmatch(ref):
        job = ctx.services.jobs.get_job(ref)
        if job is not None:
            return job, []
    jobs = ctx.services.jobs.find_jobs(ref) if ref else []
    if not jobs and "/" in ref.rstrip("/"):
        jobs = ctx.services.jobs.find_jobs(ref.rstrip("/").rsplit("/", 1)[1])  # a local path
    if not jobs:
        raise CliError(
            f"no job for {ref!r} in stack {ctx.target.stack}: give the S3 key (lost-repair/list.csv), "
            f"the file name, or the job id (`{ctx.command('status')}` lists recent jobs)"
        )
    return jobs[0], jobs[1:]


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


def queue_depths(ctx: Context) -> dict[str, int]:
    def attributes(url: str, names: list[str]) -> dict[str, str]:
        got = ctx.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)  # type: ignore[arg-type]
        return {str(name): value for name, value in got.get("Attributes", {}).items()}

    work = attributes(
        ctx.target.work_queue_url,
        ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    dlq = attributes(ctx.target.dlq_url, ["ApproximateNumberOfMessages"])
    failures = (
        attributes(ctx.target.splitter_failures_url, ["ApproximateNumberOfMessages"])
        if ctx.target.splitter_failures_url
        else {}
    )
    return {
        "work_waiting": int(work.get("ApproximateNumberOfMessages", 0)),
        "work_in_flight": int(work.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "dead_letter": int(dlq.get("ApproximateNumberOfMessages", 0)),
        "splitter_failures": int(failures.get("ApproximateNumberOfMessages", 0)),
    }


def _rows(job: Job) -> str:
    return f"{job.rows_read}/{job.rows_accepted}/{job.rows_rejected}"


def _batches(job: Job) -> str:
    """all/ok/split/failed/deferred/unknown/open, the last six adding up to the first: a batch split
    in halves is settled, its records counted in its halves (which are batches of the job too)."""
    if job.status == JobStatus.DRY_RUN:
        return f"dry run: {job.batches_total} to send"
    return (
        f"{job.batches_total}/{job.batches_succeeded}/{job.batches_bisected}/{job.batches_failed}/"
        f"{job.batches_deferred}/{job.batches_unknown}/{job.batches_open}"
    )


def _status_text(job: Job) -> str:
    """The job's status, and whether an operator re-drove any of it from unknown (it may have been
    charged twice, whatever the status says since)."""
    if job.unknown_redrives:
        return f"{job.status.value} ({job.unknown_redrives} re-driven from unknown)"
    return job.status.value


# ---- status ----------------------------------------------------------------------------------------


def status(ctx: Context, ref: str | None, limit: int) -> Result:
    return status_of(ctx, ref) if ref else status_overview(ctx, limit)


def status_overview(ctx: Context, limit: int) -> Result:
    jobs = ctx.services.jobs.list_jobs(limit)
    queues = queue_depths(ctx)
    held = {
        s: ctx.services.jobs.batches_with_status(s, limit=10_000)
        for s in (BatchStatus.FAILED, BatchStatus.UNKNOWN)
    }
    attention = {
        BatchStatus.FAILED.value: len(held[BatchStatus.FAILED]),
        BatchStatus.UNKNOWN.value: len(held[BatchStatus.UNKNOWN]),
        BatchStatus.DEFERRED.value: ctx.services.jobs.count_with_status(BatchStatus.DEFERRED),
    }
    hints = overview_hints(
        held[BatchStatus.FAILED],
        held[BatchStatus.UNKNOWN],
        ctx.price,
        ctx.services.settings.price_currency,
        ctx.command,
    )
    if queues["dead_letter"]:
        hints.insert(
            0,
            Hint(
                what=f"{queues['dead_letter']} message(s) on the dead-letter queue",
                then="once the cause is fixed, move them back: each batch's record is checked first, so a "
                "settled batch is not sent again",
                command=ctx.command("redrive", "--dlq"),
                doc="docs/operations.md#dead-letter-queue",
            ),
        )
    data = {
        "stack": ctx.target.describe(),
        "jobs": [job_view(j) for j in jobs],
        "queues": queues,
        "batches_needing_attention": attention,
        "next_steps": [h.view() for h in hints],
    }
    lines = [f"Stack {ctx.target.stack} ({'local' if ctx.target.local else 'deployed'}, {ctx.target.region})"]
    if jobs:
        lines += [
            "",
            table(
                (
                    "FILE",
                    "KIND",
                    "STATUS",
                    "ROWS read/ok/rej",
                    "BATCHES all/ok/split/failed/defer/unknown/open",
                    "CREATED",
                    "JOB",
                ),
                [
                    (
                        j.key,
                        j.kind.value,
                        _status_text(j),
                        _rows(j),
                        _batches(j),
                        when(j.created_at),
                        j.job_id,
                    )
                    for j in jobs
                ],
            ),
            "",
        ]
    else:
        lines.append(
            f"No jobs yet: drop a file under lost-repair/ or carrier-audit/ in s3://{ctx.target.bucket}"
        )
    lines.append(
        f"Work queue: {queues['work_waiting']} waiting, {queues['work_in_flight']} in flight; "
        f"dead-letter queue: {queues['dead_letter']}"
    )
    if queues["splitter_failures"]:
        lines.append(
            f"Files the splitter failed on: {queues['splitter_failures']} event(s) on the splitter failure "
            "queue  -> docs/operations.md#splitter-failures"
        )
    lines.append(
        f"Batches held: {attention['failed']} failed (not charged), {attention['unknown']} unknown (maybe "
        f"charged); {attention['deferred']} deferred"
        + (f"  -> {ctx.command('deferred')}" if attention["deferred"] else "")
    )
    lines += [h.text() for h in hints]
    lines.append(f"Times are China time (UTC+8). `{ctx.command('status', 'FILE')}` shows one file.")
    return Result(data, "\n".join(lines))


def status_of(ctx: Context, ref: str) -> Result:
    """One file: what happened to it, what it calls for next, and its outcome as the exit code."""
    job, others = find_job(ctx, ref)
    settings = ctx.services.settings
    paths = ReportPaths.for_job(job, settings.reports_prefix)
    rejected_key = paths.rejected
    reported = _report_written(ctx, job, paths)
    batches: list[Batch] = []
    audits: list[Audit] = []
    if job.kind == JobKind.LOST_REPAIR:
        batches = list(ctx.services.jobs.batches(job.job_id))
    else:
        audits = _audits_of(ctx, job)
    audit_counts = _audit_counts(audits) if job.kind == JobKind.CARRIER_AUDIT else None
    # a bisected batch's records are in its halves (docs/decisions.md#state-0)
    open_batches = [b for b in batches if b.status not in (BatchStatus.SUCCEEDED, BatchStatus.BISECTED)]
    answered = [b for b in batches if b.upstream_envelope]
    refused = refused_records(batches)
    dry_run = job.status == JobStatus.DRY_RUN
    records = (
        {"accepted": job.rows_accepted, **record_outcomes(batches)}
        if job.kind == JobKind.LOST_REPAIR and not dry_run
        else None
    )
    redriven = [_redriven_view(b.batch_id, batch_label(b.seq), b.record_count, b.redriven) for b in batches]
    redriven += [_redriven_view(f"row {a.row}", f"row {a.row}", 1, a.redriven) for a in audits]
    redriven = [r for r in redriven if r["redriven"]]
    if dry_run:
        hints: list[Hint] = []
    elif job.kind == JobKind.LOST_REPAIR:
        hints = lost_repair_hints(job, batches, ctx.price, settings.price_currency, ctx.command)
    else:
        hints = carrier_audit_hints(job, audit_counts or {}, ctx.command)
    result = outcome(job, audit_counts)
    header = read_header_facts(ctx.services.blobs, job.bucket, paths.header)
    data: dict[str, Any] = {
        "job": job_view(job),
        "outcome": result.view(),
        # every column the splitter did not use, by label; None when its header was never read
        "ignored_columns": None if header is None else header["ignored_columns"],
        "header": header,
        "report": f"s3://{job.bucket}/{paths.summary}" if reported else None,
        "rejected_rows_report": f"s3://{job.bucket}/{rejected_key}",
        "records": records,
        "audits": audit_counts,
        "refused_records": refused,
        "batches_not_succeeded": [batch_view(b) for b in open_batches],
        # every answered charged call: its serial number and whole answer envelope
        "upstream_answers": [
            {"batch_id": b.batch_id, "serial_no": b.serial_no, "envelope": json.loads(b.upstream_envelope)}
            for b in answered
        ],
        # who re-drove what, when, from what: a re-drive from unknown may have charged twice
        "redriven": redriven,
        "next_steps": [h.view() for h in hints],
        "other_uploads": [
            {"job_id": j.job_id, "status": j.status.value, "created_at": j.created_at} for j in others
        ],
    }
    lines = [
        f"File:     {job.key}  (s3://{job.bucket}/{job.key}"
        + (f", version {job.version})" if job.version else ")"),
        f"Job:      {job.job_id}  ({job.kind.value})",
        f"Status:   {_status_text(job)}" + (f": {job.reason}" if job.reason else ""),
        f"Created:  {when(job.created_at)}   updated {when(job.updated_at)} (China time)",
        f"Rows:     {job.rows_read} read, {job.rows_accepted} accepted, {job.rows_rejected} rejected"
        + (
            f" ({job.rows_already_uploaded} of them already uploaded within the resend window)"
            if job.rows_already_uploaded
            else ""
        ),
        f"Columns:  {_columns_text(header)}",
        *(f"Note:     {note}" for note in (header or {}).get("notes", [])),
    ]
    if dry_run:
        lines += _would_send_lines(ctx, job, data)
    elif job.kind == JobKind.LOST_REPAIR:
        lines.append(f"Batches:  {_batches_text(job)}")
    else:
        lines.append(f"Audits:   {_audits_text(job, audit_counts or {})}")
    if records is not None:
        lines.append(
            f"Records:  {records['accepted']} accepted = {records['uploaded']} uploaded + "
            f"{records['refused']} refused or failed + {records['held']} held unknown + "
            f"{records['deferred']} deferred + "
            f"{records['pending']} not answered yet"
        )
    lines += [
        f"Report:   {_report_text(ctx, job, paths, reported)}",
        f"Rejected: s3://{job.bucket}/{rejected_key}  ({ctx.command('report', job.job_id, '--rejected')})",
    ]
    if others:
        lines.append(_uploads_line(job, others, "status"))
    if answered:
        shown = "; ".join(_answer_text(b) for b in answered[:10])
        more = f"; and {len(answered) - 10} more (--json)" if len(answered) > 10 else ""
        lines += textwrap.wrap(
            f"Answers:  {shown}{more}", 100, subsequent_indent=" " * 10, break_on_hyphens=False
        )
    for view in redriven:
        lines.append(f"Re-driven: {_redriven_text(view, job.kind)}")
    if refused:
        labels = {b.batch_id: batch_label(b.seq) for b in batches}
        lines += [
            "",
            "Records the upstream refused (isolated by splitting their batch; authCode, reason):",
            table(
                ("BATCH", "#", "AUTHCODE", "REASON"),
                [
                    (
                        r["batch_id"],
                        labels[r["batch_id"]],
                        r["auth_code"],
                        shorten(r["reason"]),
                    )
                    for r in refused
                ],
            ),
        ]
    if open_batches:
        lines += ["", "Batches not succeeded:", _batch_table(open_batches)]
    if hints:
        lines += ["", "Next:", *(h.text() for h in hints)]
    if job.kind == JobKind.CARRIER_AUDIT:
        lines.append(f"Audit results: {ctx.command('audits')}")
    lines.append(f"Outcome:  {result.meaning} (exit code {result.code})")
    return Result(data, "\n".join(lines), result.code)


def _batches_text(job: Job) -> str:
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


AUDIT_LABELS = {
    AuditStatus.PASSED: "passed",
    AuditStatus.REJECTED: "rejected",
    AuditStatus.PENDING: "awaiting a decision",
    AuditStatus.SUBMITTING: "being submitted",
    AuditStatus.FAILED: "refused when submitted",
    AuditStatus.UNKNOWN: "held unknown",
}


def _audits_text(job: Job, counts: dict[str, int]) -> str:
    """The job's audits by status, adding up to the audits it sent; an audit a later file corrected
    belongs to that file's job now."""
    parts = [f"{counts[s.value]} {label}" for s, label in AUDIT_LABELS.items() if counts.get(s.value)]
    moved = job.batches_total - sum(counts.values())
    if moved > 0:
        parts.append(f"{moved} corrected by a later file")
    return f"{job.batches_total} in all" + (" = " + " + ".join(parts) if parts else "")


def _would_send_lines(ctx: Context, job: Job, data: dict[str, Any]) -> list[str]:
    """A dry run: what a real drop would send, and what it would cost if every record were accepted."""
    if job.kind == JobKind.CARRIER_AUDIT:
        data["would_send"] = {"audits_submitted": job.rows_accepted}
        data["cost_if_all_accepted"] = None
        return [
            f"Would send: {job.rows_accepted} audit(s) (dry run: nothing sent); cost not known: the "
            "carrier-audit seed states no price"
        ]
    cost = ctx.cost(job.rows_accepted)
    data["would_send"] = {"batches": job.batches_total, "records_charged_if_accepted": job.rows_accepted}
    data["cost_if_all_accepted"] = cost.view()
    return [
        f"Would send: {job.batches_total} batch(es), {job.rows_accepted} record(s) (dry run: nothing sent)",
        f"Cost:     at most {cost.text()}, if the upstream accepts every record",
    ]


def _report_written(ctx: Context, job: Job, paths: ReportPaths) -> bool:
    """Whether the job's summary is in the bucket (its key is known from the job's creation on)."""
    return job.status in REPORTED_JOB_STATUSES and _exists(ctx, job.bucket, paths.summary)


def _report_text(ctx: Context, job: Job, paths: ReportPaths, written: bool) -> str:
    if written:
        where = f"s3://{job.bucket}/{paths.summary}  ({ctx.command('report', job.job_id)})"
        if job.status in SETTLED_JOB_STATUSES:
            return where
        return where + "; of its last settlement, written again when it settles again"
    if job.status in SETTLED_JOB_STATUSES and job.status in REPORTED_JOB_STATUSES:
        return f"being written: the job settled at {when(job.updated_at)}"
    return "not yet: written when every batch has settled"


def _answer_text(batch: Batch) -> str:
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


def _redriven_view(ref: str, label: str, records: int, entries: Iterable[Any]) -> dict[str, Any]:
    return {
        "ref": ref,
        "label": label,
        "records": records,
        "redriven": [e.model_dump() for e in entries],
    }


def _redriven_text(view: dict[str, Any], kind: JobKind) -> str:
    what = f"{view['label']} ({view['records']} record(s))" if kind == JobKind.LOST_REPAIR else view["label"]
    risk = "may be charged twice" if kind == JobKind.LOST_REPAIR else "may be a second audit upstream"
    return f"{what}: " + "; ".join(
        f"from {e['was']} by {e['by']} at {when(e['at'])}" + (f" ({risk})" if e["was"] == "unknown" else "")
        for e in view["redriven"]
    )


def _batch_table(batches: Iterable[Batch], error_width: int = 60) -> str:
    """Batches as ``status FILE`` and ``redrive`` list them, the last error cut to ``error_width``;
    ``#`` is the batch's place in its file (``#3.1``: the first half of its third batch)."""
    return table(
        ("BATCH", "#", "STATUS", "RECORDS", "ATTEMPTS", "UPDATED", "LAST ERROR"),
        [
            (
                b.batch_id,
                batch_label(b.seq),
                b.status.value,
                b.record_count,
                b.attempts,
                when(b.updated_at),
                shorten(b.last_error, error_width),
            )
            for b in batches
        ],
    )


def _columns_text(header: dict[str, Any] | None) -> str:
    if header is None:
        return "not known: no header facts stored for this job"
    if header["header_row"] is None:
        return "not known: the file was rejected before its header was read"
    ignored = header["ignored_columns"]
    used = f"ignored: {', '.join(ignored)}" if ignored else "every column used"
    return f"header in row {header['header_row']}; {used}"


def _uploads_line(job: Job, others: list[Job], command: str) -> str:
    """The jobs of a file uploaded more than once, newest first, and which one is shown."""
    listed = ", ".join(
        f"{j.job_id} ({j.status.value}, {when(j.created_at)}){'  <- shown' if j is job else ''}"
        for j in (job, *others)
    )
    return (
        f"Uploads:  {len(others) + 1} jobs for this file, newest first: {listed}; "
        f"`verifyfeed {command} JOB` shows another"
    )


# ---- report ----------------------------------------------------------------------------------------


def report(ctx: Context, ref: str, out: str | None, part: str = "summary") -> Result:
    """One job's report (by job id, S3 key or file name; a file uploaded more than once: its newest
    job, the others listed): the summary, the rows to fix, the rows already uploaded or the workbook
    of both (docs/decisions.md#report-layout)."""
    job, others = find_job(ctx, ref)
    paths = ReportPaths.for_job(job, ctx.services.settings.reports_prefix)
    key = {
        "summary": paths.summary,
        "rejected": paths.rejected,
        "already_uploaded": paths.already_uploaded,
        "workbook": paths.workbook,
    }[part]
    if part == "workbook" and not out:
        raise CliError("--xlsx writes a workbook: give --out PATH", EXIT_USAGE)
    uri = f"s3://{job.bucket}/{key}"
    try:
        body = ctx.services.blobs.get(job.bucket, key)
    except BlobError as exc:
        if not exc.missing:
            raise
        if part == "summary":
            raise CliError(
                f"no report yet for {job.key} (job {job.job_id}): the job is {job.status.value}, and the "
                "report is written when every batch has settled (`--rejected` gives the rejected rows "
                "once the file has been read)"
            ) from exc
        raise CliError(f"{uri} does not exist") from exc
    if out:
        Path(out).write_bytes(body)  # as stored: a CSV keeps its BOM so that Excel reads it as UTF-8
    data: dict[str, Any] = {"job_id": job.job_id, "file": job.key, "s3_uri": uri, "saved_to": out}
    if others:
        data["uploads"] = [
            {"job_id": j.job_id, "status": j.status.value, "created_at": j.created_at} for j in (job, *others)
        ]
    lines = [_uploads_line(job, others, "report")] if others else []
    if part == "workbook":
        return Result(data, "\n".join([*lines, f"Saved {uri} to {out}"]))
    text = body.decode("utf-8-sig")
    if part == "summary":
        data["report"] = json.loads(text)
        summary = f"status {data['report'].get('status')}"
        headline = data["report"].get("headline")  # a report written before it had one has none
        if headline:
            lines += [headline["en"], headline["zh"]]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        data["rejected_rows" if part == "rejected" else "already_uploaded_rows"] = rows
        summary = (
            f"{len(rows)} rejected row(s)" if part == "rejected" else f"{len(rows)} row(s) already uploaded"
        )
    lines.append(f"Saved {uri} to {out} ({summary})" if out else text.rstrip("\n"))
    return Result(data, "\n".join(lines))


# ---- audits ----------------------------------------------------------------------------------------


def audits(ctx: Context, status_filter: str | None, limit: int) -> Result:
    store = ctx.services.audits
    counts = {s.value: store.count_with_status(s) for s in AuditStatus}
    statuses = [AuditStatus(status_filter)] if status_filter else list(AuditStatus)
    found: list[Audit] = []
    for s in statuses:
        found += store.with_status(s, limit=limit, newest_first=True)
    found.sort(key=lambda a: a.updated_at, reverse=True)
    found = found[:limit]
    views = [audit_view(a) for a in found]
    files = _files_of(ctx, {a.job_id for a in found})
    for view in views:
        view["file"] = files.get(view["job_id"], "")
    data = {"counts": counts, "status": status_filter, "audits": views}
    lines = ["Audits: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if views:
        lines += [
            "",
            table(
                (
                    "RECORD ID",
                    "STATUS",
                    "USAGE",
                    "OWNER",
                    "ID CARD",
                    "PHONE",
                    "PLATE",
                    "JOB / ROW",
                    "FILE",
                    "UPDATED",
                    "REMARKS / ERROR",
                ),
                [
                    (
                        v["record_id"] if v["record_id"] is not None else "-",
                        v["status"],
                        v["usage"],
                        v["owner"],
                        v["id_card"],
                        v["phone"],
                        v["plate"] or "-",
                        f"{v['job_id'][:8]}…/{v['row']}",
                        v["file"] or "-",
                        when(v["updated_at"]),
                        shorten(v["remarks"] or v["last_error"], 40),
                    )
                    for v in views
                ],
            ),
        ]
    else:
        lines.append("No audits" + (f" {status_filter}" if status_filter else "") + ".")
    if len(found) == limit:
        lines.append(f"(the {limit} most recently updated; --limit N for more)")
    if counts[AuditStatus.UNKNOWN.value]:
        jobs = sorted({v["job_id"] for v in views if v["status"] == AuditStatus.UNKNOWN.value})
        lines.append(
            f"{counts[AuditStatus.UNKNOWN.value]} audit(s) unknown: the upstream may hold them already. "
            "Ask it first (docs/operations.md#unknown-audits); only for a file whose audits it does not hold:"
        )
        lines += [
            "  " + ctx.command("redrive", "--unknown-audits", "--job", job_id, REDRIVE_UNKNOWN_AUDITS_FLAG)
            for job_id in jobs
        ] or ["  " + ctx.command("audits", "--status", AuditStatus.UNKNOWN.value)]
    return Result(data, "\n".join(lines))


def _files_of(ctx: Context, job_ids: Iterable[str]) -> dict[str, str]:
    """The S3 key of each job's upload (one ``GetItem`` per job, not per audit); none for a job
    whose item is missing or incomplete (a settle counts on the job item, creating it if absent)."""
    files: dict[str, str] = {}
    for job_id in job_ids:
        try:
            job = ctx.services.jobs.get_job(job_id)
        except ValidationError:
            continue
        if job is not None:
            files[job_id] = job.key
    return files


# ---- deferred --------------------------------------------------------------------------------------


def deferred(ctx: Context, limit: int) -> Result:
    services = ctx.services
    blackout = services.blackout
    batches = services.jobs.batches_with_status(BatchStatus.DEFERRED, limit)
    by_job: dict[str, list[Batch]] = {}
    for b in batches:
        by_job.setdefault(b.job_id, []).append(b)
    now = services.clock.now()
    until = blackout.resumes_at(now)
    groups: list[dict[str, Any]] = []
    for job_id, held in by_job.items():
        job = services.jobs.get_job(job_id)
        since = min(b.updated_at for b in held)
        resumes = blackout.resumes_at(datetime.fromisoformat(since)) if since else None
        groups.append(
            {
                "job_id": job_id,
                "file": job.key if job else "",
                "batches": len(held),
                "records": sum(b.record_count for b in held),
                "deferred_since": since,
                # None: deferred outside our window (upstream answered with its blackout code)
                "resumes_at": resumes.isoformat() if resumes else None,
            }
        )
    groups.sort(key=lambda g: g["deferred_since"])
    data = {
        "blackout": {
            "in_force": until is not None,
            "until": until.isoformat() if until else None,
            "start_day": blackout.start_day,
            "resume_day": blackout.resume_day,
        },
        "jobs": groups,
        "total_batches": len(batches),
        "total_records": sum(g["records"] for g in groups),
    }
    if until is not None:
        head = (
            f"Blackout in force until {when(until)} China time (from day {blackout.start_day}, 00:00, to "
            f"day {blackout.resume_day} of the next month); the poller re-queues deferred batches on its "
            "first run after."
        )
    else:
        head = "Blackout not in force now: the poller re-queues deferred batches on its next run."
    lines = [head]
    if groups:
        lines += [
            "",
            table(
                ("JOB", "FILE", "BATCHES", "RECORDS", "DEFERRED SINCE", "RESUMES"),
                [
                    (
                        g["job_id"],
                        g["file"],
                        g["batches"],
                        g["records"],
                        when(g["deferred_since"]),
                        when(g["resumes_at"]) if g["resumes_at"] else "next poll",
                    )
                    for g in groups
                ],
            ),
            "",
            f"Total: {data['total_batches']} batch(es), {data['total_records']} record(s) "
            f"in {len(groups)} file(s).",
        ]
    else:
        lines.append("Nothing is deferred.")
    return Result(data, "\n".join(lines))


# ---- redrive ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    job_id: str | None
    dlq: bool
    dlq_messages: int
    batches: list[Batch]
    not_kept: list[Batch]

    @property
    def empty(self) -> bool:
        return not self.batches and not (self.dlq and self.dlq_messages)

    @property
    def unknown(self) -> list[Batch]:
        return [b for b in self.batches if b.status == BatchStatus.UNKNOWN]

    def may_charge_again(self, ctx: Context) -> Cost:
        """What re-driving the unknown batches charges a second time, if the upstream had them."""
        return ctx.cost(sum(b.record_count for b in self.unknown))


def redrive(
    ctx: Context,
    *,
    dlq: bool,
    failed: bool,
    unknown: bool,
    job_ref: str | None,
    limit: int,
    may_charge_twice: bool = False,
) -> Result:
    """Re-drive dead letters, failed and unknown batches. Unknown ones only with ``may_charge_twice``
    (``--i-understand-this-may-charge-twice``; ``--yes`` is not enough), each recorded on its batch
    with who re-drove it."""
    if not (dlq or failed or unknown):
        raise CliError(
            "say what to re-drive: --dlq, --failed and/or --unknown (or --unknown-audits)", EXIT_USAGE
        )
    plan = _plan(ctx, dlq=dlq, failed=failed, unknown=unknown, job_ref=job_ref, limit=limit)
    data: dict[str, Any] = {
        "job_id": plan.job_id,
        "dlq_messages_moved": 0,
        "dlq_messages_left": 0,
        "batches_resent": [],
        "batches_skipped": [{**batch_view(b), "why": "body not kept"} for b in plan.not_kept],
        "may_charge_again": plan.may_charge_again(ctx).view() if plan.unknown else None,
        "redriven_by": ctx.operator,
        "confirmed": False,
    }
    if plan.empty:
        data["confirmed"] = True
        text = "Nothing to re-drive."
        if plan.not_kept:
            text += "\n" + _not_kept_text(plan.not_kept)
        return Result(data, text)
    ctx.say(_plan_text(ctx, plan))
    if plan.unknown and not may_charge_twice:
        raise CliError(
            f"refused: re-driving {len(plan.unknown)} unknown batch(es) may charge "
            f"{plan.may_charge_again(ctx).text()} a second time. Ask the upstream first "
            "(docs/operations.md#unknown-outcomes); only if it did not receive them, add "
            f"{REDRIVE_UNKNOWN_FLAG}",
            EXIT_USAGE,
        )
    if not ctx.assume_yes and not confirm("Proceed?", ctx.stdin, ctx.stderr):
        return Result(data, "Aborted: nothing was changed.", EXIT_NOT_FOUND)
    data["confirmed"] = True

    bar = ProgressBar(plan.dlq_messages + len(plan.batches), "re-driving", ctx.stderr, ctx.progress)
    try:
        if plan.dlq:
            data["dlq_messages_moved"], data["dlq_messages_left"] = _move_dead_letters(ctx, plan.job_id, bar)
        for batch in plan.batches:
            try:
                _resend(ctx, batch)
            except StaleTransition:
                data["batches_skipped"].append({**batch_view(batch), "why": "changed meanwhile"})
            else:
                data["batches_resent"].append(batch_view(batch))
            bar.advance()
    except Exception:
        ctx.say(
            f"Stopped after moving {data['dlq_messages_moved']} message(s) and re-queuing "
            f"{len(data['batches_resent'])} batch(es)."
        )
        raise
    finally:
        bar.close()

    lines = (
        [f"Moved {data['dlq_messages_moved']} message(s) from the dead-letter queue to the work queue."]
        if plan.dlq
        else []
    )
    if data["dlq_messages_left"]:
        lines.append(f"Left {data['dlq_messages_left']} message(s) of other jobs in the dead-letter queue.")
    if plan.batches:
        follow = ctx.command("status", *([plan.job_id] if plan.job_id else []))
        lines.append(
            f"Re-queued {len(data['batches_resent'])} batch(es) (status retry), recorded on each as "
            f"re-driven by {ctx.operator}; `{follow}` follows them."
        )
    for skipped in data["batches_skipped"]:
        lines.append(f"Skipped {skipped['batch_id']}: {skipped['why']}")
    if plan.not_kept:
        lines.append(_not_kept_text(plan.not_kept))
    return Result(data, "\n".join(lines))


def _plan(ctx: Context, *, dlq: bool, failed: bool, unknown: bool, job_ref: str | None, limit: int) -> _Plan:
    job_id = find_job(ctx, job_ref)[0].job_id if job_ref else None
    statuses = [s for s, wanted in ((BatchStatus.FAILED, failed), (BatchStatus.UNKNOWN, unknown)) if wanted]
    candidates = [
        b
        for s in statuses
        for b in ctx.services.jobs.batches_with_status(s, limit)
        if job_id is None or b.job_id == job_id
    ]
    kept = [
        b
        for b in candidates
        if b.claim_key and _exists(ctx, b.claim_bucket or ctx.target.bucket, b.claim_key)
    ]
    not_kept = [b for b in candidates if b not in kept]
    dlq_messages = queue_depths(ctx)["dead_letter"] if dlq else 0
    return _Plan(job_id, dlq, dlq_messages, kept, not_kept)


def _plan_text(ctx: Context, plan: _Plan) -> str:
    lines = [
        f"Re-drive in stack {ctx.target.stack}" + (f", job {plan.job_id} only" if plan.job_id else "") + ":"
    ]
    if plan.dlq:
        lines.append(
            f"  dead-letter queue: about {plan.dlq_messages} message(s) back onto the work queue"
            if plan.job_id is None
            else f"  dead-letter queue: about {plan.dlq_messages} message(s) in all; this job's go back "
            "onto the work queue, the others stay"
        )
    if plan.batches:
        lines.append(
            f"  {len(plan.batches)} batch(es), {sum(b.record_count for b in plan.batches)} record(s), "
            "set to retry and queued again:"
        )
        lines.append("    " + _batch_table(plan.batches, error_width=50).replace("\n", "\n    "))
    if plan.unknown:
        lines.append(UNKNOWN_WARNING)
        lines.append(f"If it did, this charges {plan.may_charge_again(ctx).text()} a second time.")
    if plan.not_kept:
        lines.append(_not_kept_text(plan.not_kept))
    return "\n".join(lines)


def _not_kept_text(batches: Iterable[Batch]) -> str:
    ids = ", ".join(b.batch_id for b in batches)
    return (
        f"Cannot re-drive {ids}: the batch body is no longer in S3 (claims/ expire after 14 days). "
        "Drop those rows again in a new file."
    )


def _exists(ctx: Context, bucket: str, key: str) -> bool:
    try:
        ctx.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _resend(ctx: Context, batch: Batch) -> None:
    """``failed|unknown → retry`` (conditional, job reopened), then a message with a new generation."""
    services = ctx.services
    now = services.clock.now()
    retried = services.jobs.redrive_batch(batch, now, ctx.operator)
    # a new generation: a new idempotency key, this is a new attempt
    message = LostRepairBatchMessage.for_batch(
        batch, generation=int(now.timestamp()), claim_bucket=ctx.target.bucket
    )
    try:
        services.queue.send(message.model_dump_json())  # the stack's work queue (ctx.target's)
    except (ClientError, BotoCoreError):
        # put the batch back as it was, so that nothing waits for a message that was never sent
        try:
            services.jobs.transition(retried, batch.status, services.clock.now())
            settle_job(services, batch.job_id)
        except Exception as undo:  # reported to the operator, with what to do
            raise CliError(
                f"batch {batch.batch_id} is set to retry but its message could not be queued, and undoing "
                f"that failed too ({type(undo).__name__}); send it by hand: {message.model_dump_json()}",
                EXIT_AWS,
            ) from undo
        raise


def _move_dead_letters(ctx: Context, job_id: str | None, bar: ProgressBar) -> tuple[int, int]:
    """Move the dead-letter queue's messages (or those of one job) back onto the work queue.

    Each message is sent to the work queue before it is deleted from the dead-letter queue: a
    failure in between leaves a copy in both, which the uploader's batch record makes harmless.
    """
    sqs, dlq, work = ctx.sqs, ctx.target.dlq_url, ctx.target.work_queue_url
    moved = 0
    held: dict[str, str] = {}  # message id -> receipt handle, of other jobs' messages
    while True:
        got = sqs.receive_message(
            QueueUrl=dlq,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if not messages or all(m["MessageId"] in held for m in messages):
            break
        for m in messages:
            if job_id is not None and _job_of(m.get("Body", "")) != job_id:
                held[m["MessageId"]] = m["ReceiptHandle"]
                continue
            request: dict[str, Any] = {"QueueUrl": work, "MessageBody": m["Body"]}
            attributes = {
                name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
                for name, value in m.get("MessageAttributes", {}).items()
            }
            if attributes:
                request["MessageAttributes"] = attributes
            sqs.send_message(**request)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
            bar.advance()
    for receipt in held.values():
        sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=receipt, VisibilityTimeout=0)
    return moved, len(held)


def _job_of(body: str) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    job_id = value.get("job_id") if isinstance(value, dict) else None
    return job_id if isinstance(job_id, str) else None


# ---- redrive --unknown-audits ----------------------------------------------------------------------

UNKNOWN_AUDITS_WARNING = (
    "WARNING: the first /carrierAudit/add (or /update) of an 'unknown' audit may have reached the upstream\n"
    "and created the audit there: re-submitting it may create a second audit upstream. Check with the\n"
    "upstream first (by the time of the attempt, column UPDATED, and the masked owner) that it has no\n"
    "record of it (docs/operations.md#unknown-audits)."
)


def resubmission_view(item: Resubmission) -> dict[str, Any]:
    """Masked fields only (never the rebuilt request), what would be sent, and why not."""
    return {**audit_view(item.audit), "send": item.kind if item.ready else None, "why": item.reason}


def redrive_unknown_audits(
    ctx: Context, *, job_ref: str | None, limit: int, may_audit_twice: bool = False
) -> Result:
    """Re-submit audits held ``unknown`` (``verifyfeed_cli.audit_redrive``): plan, warning, the
    operator's explicit flag (``--i-understand-this-may-create-a-second-audit``; ``--yes`` is not
    enough), confirmation, progress; each one re-read from its upload, or reported with the reason
    it cannot be, and recorded on the audit with who re-submitted it."""
    services = ctx.services
    job_id = find_job(ctx, job_ref)[0].job_id if job_ref else None
    held = unknown_audits(services, job_id, limit)
    try:
        pepper = services.secrets.identity_pepper() if held else None
    except (ValueError, GetParameterError) as exc:  # no secret name (every name given explicitly), no access
        raise CliError(f"cannot read the identity pepper: {exc}", EXIT_AWS) from exc
    plan = plan_unknown_audits(services, held, pepper)
    ready = [item for item in plan if item.ready]
    data: dict[str, Any] = {
        "job_id": job_id,
        "audits_resubmitted": [],
        "audits_skipped": [resubmission_view(item) for item in plan if not item.ready],
        "redriven_by": ctx.operator,
        "confirmed": False,
    }
    if not ready:
        data["confirmed"] = True
        lines = ["Nothing to re-submit: no unknown audit" + (f" in job {job_id}." if job_id else ".")]
        if plan:
            lines = ["Nothing to re-submit."] + [_skipped_text(v) for v in data["audits_skipped"]]
        return Result(data, "\n".join(lines))
    ctx.say(_unknown_audits_plan_text(ctx, job_id, ready, [item for item in plan if not item.ready]))
    if not may_audit_twice:
        raise CliError(
            f"refused: re-submitting {len(ready)} unknown audit(s) may create a second audit upstream for "
            "each. Ask the upstream first (docs/operations.md#unknown-audits); only if it holds none, add "
            f"{REDRIVE_UNKNOWN_AUDITS_FLAG}",
            EXIT_USAGE,
        )
    if not ctx.assume_yes and not confirm("Proceed?", ctx.stdin, ctx.stderr):
        return Result(data, "Aborted: nothing was changed.", EXIT_NOT_FOUND)
    data["confirmed"] = True

    bar = ProgressBar(len(ready), "re-submitting", ctx.stderr, ctx.progress)
    try:
        for item in ready:
            try:
                moved = resubmit(services, item, ctx.operator)
            except StaleAudit:
                data["audits_skipped"].append({**resubmission_view(item), "why": "changed meanwhile"})
            else:
                data["audits_resubmitted"].append({**audit_view(moved), "send": item.kind})
            bar.advance()
    except Exception:
        ctx.say(f"Stopped after re-submitting {len(data['audits_resubmitted'])} audit(s).")
        raise
    finally:
        bar.close()

    lines = [
        f"Re-submitted {len(data['audits_resubmitted'])} audit(s) (status submitting), recorded on each as "
        f"re-submitted by {ctx.operator}; `{ctx.command('audits', '--status', 'pending')}` follows them."
    ]
    lines += [_skipped_text(v) for v in data["audits_skipped"]]
    return Result(data, "\n".join(lines))


def _skipped_text(view: dict[str, Any]) -> str:
    return f"Left unknown: job {view['job_id']} row {view['row']} ({view['owner']}): {view['why']}"


def _unknown_audits_plan_text(
    ctx: Context, job_id: str | None, ready: list[Resubmission], not_ready: list[Resubmission]
) -> str:
    lines = [
        f"Re-submit unknown audits in stack {ctx.target.stack}"
        + (f", job {job_id} only" if job_id else "")
        + f": {len(ready)} audit(s), each re-read from its upload, set to submitting and queued again:",
        "    "
        + table(
            ("SEND", "OWNER", "ID CARD", "JOB / ROW", "RECORD", "UPDATED", "LAST ERROR"),
            [
                (
                    item.kind,
                    item.audit.owner_name_masked,
                    item.audit.id_card_masked,
                    f"{item.audit.job_id[:8]}…/{item.audit.row}",
                    item.audit.record_id if item.audit.record_id is not None else "-",
                    when(item.audit.updated_at),
                    shorten(item.audit.last_error, 50),
                )
                for item in ready
            ],
        ).replace("\n", "\n    "),
        UNKNOWN_AUDITS_WARNING,
    ]
    lines += [_skipped_text(resubmission_view(item)) for item in not_ready]
    return "\n".join(lines)


# ---- drop / watch ----------------------------------------------------------------------------------

CLOCK_SKEW = timedelta(seconds=5)  # between this machine's clock and the splitter's


def drop(
    ctx: Context,
    path: str,
    kind: str | None,
    wait: bool,
    timeout_s: float,
    dry_run: bool = False,
    resend: bool = False,
) -> Result:
    """Upload ``path`` to the ingest bucket under its kind's prefix (under ``dry-run/`` too with
    ``dry_run``: read and reported, never sent; under the resend prefix with ``resend``: every row
    sent even if the resend ledger has it); with ``wait``, follow its job."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CliError(f"no such file: {path}")
    settings = ctx.services.settings
    job_kind = _detect_kind(file, JobKind(kind) if kind else None, settings.xlsx_sheet)
    prefix = settings.lost_repair_prefix if job_kind == JobKind.LOST_REPAIR else settings.carrier_audit_prefix
    if resend:
        if job_kind != JobKind.LOST_REPAIR or dry_run:
            raise CliError("--resend is for a lost-repair file dropped for real", EXIT_USAGE)
        prefix = settings.resend_prefix
    key = f"{settings.dry_run_prefix if dry_run else ''}{prefix}{file.name}"
    bucket = ctx.target.bucket
    body = file.read_bytes()
    dropped_at = ctx.services.clock.now()
    put = ctx.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=mimetypes.guess_type(file.name)[0] or "application/octet-stream",
    )
    version = put.get("VersionId") or ""
    # the job id the splitter derives from the notification (the bucket is versioned)
    job_id = DroppedObject(bucket, key, len(body), etag=put.get("ETag", ""), version_id=version).job_id
    ctx.say(
        f"Dropped {file.name} as {job_kind.value}: s3://{bucket}/{key}"
        + (f" (job {job_id})" if version else "")
    )
    data: dict[str, Any] = {"s3_uri": f"s3://{bucket}/{key}", "kind": job_kind.value, "job_id": job_id}
    if not wait:
        return Result(
            data, f"`{ctx.command('watch', key)}` follows it; `{ctx.command('status', key)}` shows it."
        )
    # an unversioned bucket: the splitter's job id is not known here, the first job newer than the drop is it
    return _follow(ctx, job_id if version else None, key, timeout_s, after=dropped_at)


def watch(ctx: Context, ref: str, timeout_s: float) -> Result:
    """Follow a job already dropped (the latest upload of the file) until it settles."""
    job, _ = find_job(ctx, ref)
    return _follow(ctx, job.job_id, job.key, timeout_s)


def _detect_kind(file: Path, kind: JobKind | None, sheet: str) -> JobKind:
    """The kind by the header row, as the splitter reads it (``detect_file``: title rows above it
    skipped); a file the splitter would refuse is refused here, before anything is uploaded."""
    from verifyfeed.ingest.errors import FileRejected
    from verifyfeed.ingest.readers import detect_file

    try:
        with file.open("rb") as stream:
            return detect_file(stream, file.name, kind, sheet=sheet)
    except OSError as exc:
        raise CliError(f"cannot read {file.name}: {exc.strerror or exc}", EXIT_USAGE) from exc
    except FileRejected as exc:
        if exc.code == "header.kind_unknown":
            raise CliError(
                f"cannot tell lost-repair from carrier-audit by the header of {file.name}; "
                "give --kind lost-repair|carrier-audit",
                EXIT_USAGE,
            ) from exc
        raise CliError(
            f"{file.name} not uploaded ({exc.code}): {exc.reason}\n  {exc.zh}", EXIT_USAGE
        ) from exc


def _follow(
    ctx: Context, job_id: str | None, key: str, timeout_s: float, after: datetime | None = None
) -> Result:
    """Show the job's progress as it changes until it has settled (its report written, its audits
    decided), then what ``status FILE`` shows, with its outcome as the exit code."""
    deadline = time.monotonic() + timeout_s
    shown = ""
    while True:
        job = ctx.services.jobs.get_job(job_id) if job_id else _newest_job(ctx, key, after)
        if job is not None:
            audits = _audit_counts(_audits_of(ctx, job)) if job.kind == JobKind.CARRIER_AUDIT else {}
            line = _progress_line(job, audits)
            if line != shown:
                ctx.say(line)
                shown = line
            written = _report_written(
                ctx, job, ReportPaths.for_job(job, ctx.services.settings.reports_prefix)
            )
            if _settled(job, audits, written):
                result = status_of(ctx, job.job_id)
                result.data["accounted_for"] = _accounted_for(job)
                return result
        if time.monotonic() >= deadline:
            raise CliError(
                f"{key}: not settled after {timeout_s:g} s"
                + (f" ({shown})" if shown else " (no job recorded yet: is the splitter notified?)")
                + f"; `{ctx.command('watch', key)}` goes on following it",
                EXIT_NOT_SETTLED,
            )
        time.sleep(1.0)  # polling the stores; the deadline above bounds the wait


def _settled(job: Job, audits: dict[str, int], report_written: bool) -> bool:
    """Nothing more will happen without the blackout's end or an operator: the status settled, its
    report written (right after the status, logic/progress.py), no audit awaiting its decision."""
    return (
        job.status in SETTLED_JOB_STATUSES
        and (report_written or job.status not in REPORTED_JOB_STATUSES)
        and not any(audits.get(s.value) for s in OPEN_AUDIT_STATUSES)
    )


def _newest_job(ctx: Context, key: str, after: datetime | None) -> Job | None:
    jobs = ctx.services.jobs.find_jobs(key)
    if not jobs:
        return None
    if after is not None and datetime.fromisoformat(jobs[0].created_at) < after - CLOCK_SKEW:
        return None  # an earlier upload's job
    return jobs[0]


def _audits_of(ctx: Context, job: Job) -> list[Audit]:
    """The job's audits (every status; there is no index by job)."""
    return [
        a
        for s in AuditStatus
        for a in ctx.services.audits.with_status(s, limit=100_000)
        if a.job_id == job.job_id
    ]


def _audit_counts(audits: Iterable[Audit]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in audits:
        counts[a.status.value] = counts.get(a.status.value, 0) + 1
    return counts


def _progress_line(job: Job, audits: dict[str, int]) -> str:
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
        return line + f"; batches {_batches_text(job)}"
    return line + f"; audits {_audits_text(job, audits)}"


def _accounted_for(job: Job) -> bool:
    """Every row read was accepted or rejected, every batch settled (a dry run sends none), and the
    file not refused."""
    return (
        job.status not in (JobStatus.REJECTED, JobStatus.DUPLICATE)
        and job.rows_accepted + job.rows_rejected == job.rows_read
        and (job.status == JobStatus.DRY_RUN or job.batches_open == 0)
    )
