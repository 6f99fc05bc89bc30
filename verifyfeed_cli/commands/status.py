"""``verifyfeed status [FILE|JOB]``: the recent jobs and what the stack holds, or one file's job:
what happened to it, what it calls for next, and its outcome as the exit code."""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from verifyfeed.logic.reports import ReportPaths, read_header_facts, record_outcomes, refused_records
from verifyfeed.models.ids import batch_label
from verifyfeed.models.records import Audit, Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed_cli.advice import (
    OUTCOMES,
    Command,
    Cost,
    Hint,
    Outcome,
    carrier_audit_hints,
    lost_repair_hints,
    outcome,
    overview_hints,
)
from verifyfeed_cli.context import (
    Context,
    Result,
    audit_counts,
    audits_of,
    find_job,
    positive,
    queue_depths,
    report_written,
)
from verifyfeed_cli.output import Col, Screen, line, table, when
from verifyfeed_cli.views import (
    answer_text,
    audits_text,
    batch_table,
    batch_view,
    batches_compact,
    batches_text,
    columns_text,
    job_view,
    redriven_text,
    redriven_view,
    report_line,
    rows_compact,
    status_text,
    uploads_line,
)

HELP = "recent jobs, or one file's job"
DESCRIPTION = (
    "Without FILE|JOB: the recent jobs (newest first), the queues, the batches held and what to do "
    "about them. With FILE|JOB: that file's job (a file dropped more than once: its newest job, the "
    "others listed), its counts, report, the upstream's answers and the next steps; the exit code "
    "says its outcome: " + "; ".join(f"{c} {m}" for c, m in OUTCOMES.items()) + "."
)


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("ref", nargs="?", metavar="FILE|JOB", help="an S3 key, a file name or a job id")
    parser.add_argument("--limit", type=positive, default=20, help="recent jobs to list (default 20)")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    if args.ref:
        one = collect_job(ctx, args.ref)
        return Result(one.data, render_job(one, ctx.screen, ctx.command), one.outcome.code)
    overview = collect_overview(ctx, args.limit)
    return Result(overview.data, render_overview(overview, ctx.screen, ctx.command))


# ---- the overview ----------------------------------------------------------------------------------


@dataclass
class Overview:
    data: dict[str, Any]
    jobs: list[Job]
    hints: list[Hint]


def collect_overview(ctx: Context, limit: int) -> Overview:
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
    return Overview(data, jobs, hints)


JOB_COLUMNS = (
    Col("FILE", cut=16, middle=True),
    Col("KIND", drop=3),
    Col("STATUS"),
    Col("ROWS r/ok/rej"),
    Col("BATCHES*", drop=1),
    Col("CREATED", drop=2),
    Col("JOB", drop=4),
)


def render_overview(view: Overview, screen: Screen, command: Command) -> str:
    data, jobs = view.data, view.jobs
    stack = data["stack"]
    queues, attention = data["queues"], data["batches_needing_attention"]
    lines = [f"Stack {stack['stack']} ({stack['mode']}, {stack['region']})"]
    if jobs:
        rows = [
            (
                j.key.rsplit("/", 1)[-1],  # the file name: the kind has a column of its own
                j.kind.value,
                status_text(j),
                rows_compact(j),
                batches_compact(j),
                when(j.created_at),
                j.job_id,
            )
            for j in jobs
        ]
        lines += [
            "",
            table(JOB_COLUMNS, rows, screen),
            "BATCHES*: all/succeeded/split/failed/deferred/unknown/open",
            "",
        ]
    else:
        lines.append(
            f"No jobs yet: drop a file under lost-repair/ or carrier-audit/ in s3://{stack['bucket']}"
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
        + (f"  -> {command('deferred')}" if attention["deferred"] else "")
    )
    lines += [h.text(screen.width) for h in view.hints]
    lines.append(f"Times are China time (UTC+8). `{command('status', 'FILE')}` shows one file.")
    return "\n".join(lines)


# ---- one job ---------------------------------------------------------------------------------------


@dataclass
class JobStatusView:
    data: dict[str, Any]
    job: Job
    others: list[Job]
    paths: ReportPaths
    reported: bool
    batches: list[Batch]
    open_batches: list[Batch]
    answered: list[Batch]
    hints: list[Hint]
    outcome: Outcome
    audit_counts: dict[str, int] | None
    redriven: list[dict[str, Any]] = field(default_factory=list)
    cost: Cost | None = None  # a lost-repair dry run's, if every record were accepted


def collect_job(ctx: Context, ref: str) -> JobStatusView:
    """One file: what happened to it, what it calls for next, and its outcome."""
    job, others = find_job(ctx, ref)
    settings = ctx.services.settings
    paths = ReportPaths.for_job(job, settings.reports_prefix)
    reported = report_written(ctx, job, paths)
    batches: list[Batch] = []
    audits: list[Audit] = []
    if job.kind == JobKind.LOST_REPAIR:
        batches = list(ctx.services.jobs.batches(job.job_id))
    else:
        audits = audits_of(ctx, job)
    counts = audit_counts(audits) if job.kind == JobKind.CARRIER_AUDIT else None
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
    redriven = [redriven_view(b.batch_id, batch_label(b.seq), b.record_count, b.redriven) for b in batches]
    redriven += [redriven_view(f"row {a.row}", f"row {a.row}", 1, a.redriven) for a in audits]
    redriven = [r for r in redriven if r["redriven"]]
    if dry_run:
        hints: list[Hint] = []
    elif job.kind == JobKind.LOST_REPAIR:
        hints = lost_repair_hints(job, batches, ctx.price, settings.price_currency, ctx.command)
    else:
        hints = carrier_audit_hints(job, counts or {}, ctx.command)
    result = outcome(job, counts)
    header = read_header_facts(ctx.services.blobs, job.bucket, paths.header)
    data: dict[str, Any] = {
        "job": job_view(job),
        "outcome": result.view(),
        # every column the splitter did not use, by label; None when its header was never read
        "ignored_columns": None if header is None else header["ignored_columns"],
        "header": header,
        "report": f"s3://{job.bucket}/{paths.summary}" if reported else None,
        "rejected_rows_report": f"s3://{job.bucket}/{paths.rejected}",
        "records": records,
        "audits": counts,
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
    cost = _would_send(ctx, job, data) if dry_run else None
    return JobStatusView(
        data,
        job,
        others,
        paths,
        reported,
        batches,
        open_batches,
        answered,
        hints,
        result,
        counts,
        redriven,
        cost,
    )


def _would_send(ctx: Context, job: Job, data: dict[str, Any]) -> Cost | None:
    """A dry run: what a real drop would send, and what it would cost if every record were accepted
    (a carrier audit: not known, the seed states no price)."""
    if job.kind == JobKind.CARRIER_AUDIT:
        data["would_send"] = {"audits_submitted": job.rows_accepted}
        data["cost_if_all_accepted"] = None
        return None
    cost = ctx.cost(job.rows_accepted)
    data["would_send"] = {"batches": job.batches_total, "records_charged_if_accepted": job.rows_accepted}
    data["cost_if_all_accepted"] = cost.view()
    return cost


def render_job(view: JobStatusView, screen: Screen, command: Command) -> str:
    job, data, header = view.job, view.data, view.data["header"]
    records, counts = data["records"], view.audit_counts
    where = f"s3://{job.bucket}/{job.key}" + (f", version {job.version}" if job.version else "")
    lines = [
        *line("File:     ", job.key, where, screen),
        f"Job:      {job.job_id}  ({job.kind.value})",
        f"Status:   {status_text(job)}" + (f": {job.reason}" if job.reason else ""),
        f"Created:  {when(job.created_at)}   updated {when(job.updated_at)} (China time)",
        f"Rows:     {job.rows_read} read, {job.rows_accepted} accepted, {job.rows_rejected} rejected"
        + (
            f" ({job.rows_already_uploaded} of them already uploaded within the resend window)"
            if job.rows_already_uploaded
            else ""
        ),
        f"Columns:  {columns_text(header)}",
        *(f"Note:     {note}" for note in (header or {}).get("notes", [])),
    ]
    if job.status == JobStatus.DRY_RUN:
        lines += _would_send_lines(job, view.cost)
    elif job.kind == JobKind.LOST_REPAIR:
        lines.append(f"Batches:  {batches_text(job)}")
    else:
        lines.append(f"Audits:   {audits_text(job, counts or {})}")
    if records is not None:
        lines.append(
            f"Records:  {records['accepted']} accepted = {records['uploaded']} uploaded + "
            f"{records['refused']} refused or failed + {records['held']} held unknown + "
            f"{records['deferred']} deferred + "
            f"{records['pending']} not answered yet"
        )
    report = report_line(job, view.paths, view.reported, command("report", job.job_id))
    if report.command:
        lines += line("Report:   ", report.text, report.command, screen)
    else:
        lines.append(f"Report:   {report.text}")
    if report.note:
        lines.append(f"          {report.note}")
    lines += line(
        "Rejected: ", data["rejected_rows_report"], command("report", job.job_id, "--rejected"), screen
    )
    if view.others:
        lines.append(uploads_line(job, view.others, "status"))
    if view.answered:
        shown = "; ".join(answer_text(b) for b in view.answered[:10])
        more = f"; and {len(view.answered) - 10} more (--json)" if len(view.answered) > 10 else ""
        lines += textwrap.wrap(
            f"Answers:  {shown}{more}", screen.width, subsequent_indent=" " * 10, break_on_hyphens=False
        )
    for redriven in view.redriven:
        lines.append(f"Re-driven: {redriven_text(redriven, job.kind)}")
    if data["refused_records"]:
        labels = {b.batch_id: batch_label(b.seq) for b in view.batches}
        lines += [
            "",
            "Records the upstream refused (isolated by splitting their batch; authCode, reason):",
            table(
                (Col("BATCH", drop=1), Col("#"), Col("AUTHCODE"), Col("REASON", cut=20)),
                [
                    (r["batch_id"], labels[r["batch_id"]], r["auth_code"], r["reason"])
                    for r in data["refused_records"]
                ],
                screen,
            ),
        ]
    if view.open_batches:
        lines += ["", "Batches not succeeded:", batch_table(view.open_batches, screen)]
    if view.hints:
        lines += ["", "Next:", *(h.text(screen.width) for h in view.hints)]
    if job.kind == JobKind.CARRIER_AUDIT:
        lines.append(f"Audit results: {command('audits')}")
    lines.append(f"Outcome:  {view.outcome.meaning} (exit code {view.outcome.code})")
    return "\n".join(lines)


def _would_send_lines(job: Job, cost: Cost | None) -> list[str]:
    if cost is None:
        return [
            f"Would send: {job.rows_accepted} audit(s) (dry run: nothing sent); cost not known: the "
            "carrier-audit seed states no price"
        ]
    return [
        f"Would send: {job.batches_total} batch(es), {job.rows_accepted} record(s) (dry run: nothing sent)",
        f"Cost:     at most {cost.text()}, if the upstream accepts every record",
    ]
