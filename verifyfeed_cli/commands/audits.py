"""``verifyfeed audits``: the carrier audits and their results, masked, the most recently updated
first; the unknown ones with what to do about them."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from verifyfeed.models.records import Audit, AuditStatus
from verifyfeed_cli.advice import REDRIVE_UNKNOWN_AUDITS_FLAG, Command
from verifyfeed_cli.context import Context, Result, positive
from verifyfeed_cli.output import Col, Screen, table, when
from verifyfeed_cli.views import audit_view

HELP = "carrier audits and their results (masked)"
DESCRIPTION = (
    "The carrier audits, the most recently updated first: status (submitting, pending, passed, "
    "rejected, failed, unknown), the upstream's record id and remarks, who they are about (masked), "
    "and the file and row they came from; the counts by status first. Unknown audits come with what "
    "to do about them (docs/operations.md#unknown-audits)."
)
COLUMNS = (
    Col("RECORD ID"),
    Col("STATUS"),
    Col("USAGE", drop=5),
    Col("OWNER"),
    Col("ID CARD", drop=3),
    Col("PHONE", drop=4),
    Col("PLATE", drop=6),
    Col("JOB / ROW", drop=1),
    Col("FILE", drop=2, cut=12),
    Col("UPDATED", drop=7),
    Col("REMARKS / ERROR", cut=16),
)


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audits", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("--status", dest="audit_status", choices=[s.value for s in AuditStatus])
    parser.add_argument("--limit", type=positive, default=50, help="audits to list (default 50)")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    view = collect(ctx, args.audit_status, args.limit)
    return Result(view.data, render(view, ctx.screen, ctx.command))


@dataclass
class AuditsView:
    data: dict[str, Any]
    limit: int


def collect(ctx: Context, status_filter: str | None, limit: int) -> AuditsView:
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
    return AuditsView({"counts": counts, "status": status_filter, "audits": views}, limit)


def render(view: AuditsView, screen: Screen, command: Command) -> str:
    counts, views, status_filter = view.data["counts"], view.data["audits"], view.data["status"]
    lines = ["Audits: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if views:
        rows = [
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
                v["remarks"] or v["last_error"],
            )
            for v in views
        ]
        lines += ["", table(COLUMNS, rows, screen)]
    else:
        lines.append("No audits" + (f" {status_filter}" if status_filter else "") + ".")
    if len(views) == view.limit:
        lines.append(f"(the {view.limit} most recently updated; --limit N for more)")
    if counts[AuditStatus.UNKNOWN.value]:
        jobs = sorted({v["job_id"] for v in views if v["status"] == AuditStatus.UNKNOWN.value})
        lines.append(
            f"{counts[AuditStatus.UNKNOWN.value]} audit(s) unknown: the upstream may hold them already. "
            "Ask it first (docs/operations.md#unknown-audits); only for a file whose audits it does not hold:"
        )
        lines += [
            "  " + command("redrive", "--unknown-audits", "--job", job_id, REDRIVE_UNKNOWN_AUDITS_FLAG)
            for job_id in jobs
        ] or ["  " + command("audits", "--status", AuditStatus.UNKNOWN.value)]
    return "\n".join(lines)


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
