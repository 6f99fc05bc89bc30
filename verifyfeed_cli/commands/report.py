"""``verifyfeed report FILE|JOB``: one job's report, as stored (docs/decisions.md#report-layout): the
summary (JSON), the rows to fix or the rows already uploaded (CSV), or both as a workbook."""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifyfeed.logic.reports import ReportPaths
from verifyfeed.models.records import Job
from verifyfeed.ports import BlobError
from verifyfeed_cli.context import EXIT_USAGE, CliError, Context, Result, find_job
from verifyfeed_cli.views import uploads_line

HELP = "a job's report: summary, rows to fix, rows already uploaded"
DESCRIPTION = (
    "One job's report, by job id, S3 key or file name (a file dropped more than once: its newest "
    "job, the others listed). Without an option: the summary (JSON), its headline first in English "
    "and Chinese. --rejected: the rows to fix (CSV, the customer's own columns, with a code and a "
    "reason in Chinese and English); --already-uploaded: the rows an earlier file already sent; "
    "--xlsx --out PATH: both as one workbook to send the customer."
)
PARTS = ("summary", "rejected", "already_uploaded", "workbook")


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("report", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("ref", metavar="FILE|JOB")
    parser.add_argument("--out", metavar="PATH", help="write it to PATH instead of stdout")
    part = parser.add_mutually_exclusive_group()
    for flag, const, what in (
        ("--rejected", "rejected", "the rows to fix (CSV) instead of the summary"),
        ("--already-uploaded", "already_uploaded", "the rows an earlier file already uploaded (CSV)"),
        ("--xlsx", "workbook", "both as a workbook (.xlsx; needs --out)"),
    ):
        part.add_argument(flag, dest="part", action="store_const", const=const, help=what)
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    view = collect(ctx, args.ref, args.out, args.part or "summary")
    return Result(view.data, render(view))


@dataclass
class ReportView:
    data: dict[str, Any]
    job: Job
    others: list[Job]
    part: str
    uri: str
    out: str | None
    text: str  # the report as stored, decoded ("" for the workbook)


def collect(ctx: Context, ref: str, out: str | None, part: str = "summary") -> ReportView:
    """Read the part from the bucket (and save it to ``out`` as stored: a CSV keeps its BOM, so that
    Excel reads it as UTF-8)."""
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
        Path(out).write_bytes(body)
    data: dict[str, Any] = {"job_id": job.job_id, "file": job.key, "s3_uri": uri, "saved_to": out}
    if others:
        data["uploads"] = [
            {"job_id": j.job_id, "status": j.status.value, "created_at": j.created_at} for j in (job, *others)
        ]
    text = "" if part == "workbook" else body.decode("utf-8-sig")
    if part == "summary":
        data["report"] = json.loads(text)
    elif part != "workbook":
        rows = list(csv.DictReader(io.StringIO(text)))
        data["rejected_rows" if part == "rejected" else "already_uploaded_rows"] = rows
    return ReportView(data, job, others, part, uri, out, text)


def render(view: ReportView) -> str:
    data, out = view.data, view.out
    lines = [uploads_line(view.job, view.others, "report")] if view.others else []
    if view.part == "workbook":
        return "\n".join([*lines, f"Saved {view.uri} to {out}"])
    if view.part == "summary":
        summary = f"status {data['report'].get('status')}"
        headline = data["report"].get("headline")  # a report written before it had one has none
        if headline:
            lines += [headline["en"], headline["zh"]]
    elif view.part == "rejected":
        summary = f"{len(data['rejected_rows'])} rejected row(s)"
    else:
        summary = f"{len(data['already_uploaded_rows'])} row(s) already uploaded"
    lines.append(f"Saved {view.uri} to {out} ({summary})" if out else view.text.rstrip("\n"))
    return "\n".join(lines)
