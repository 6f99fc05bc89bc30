"""``verifyfeed deferred``: what the monthly blackout holds, by file, and until when."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from verifyfeed.models.records import Batch, BatchStatus
from verifyfeed_cli.context import Context, Result, positive
from verifyfeed_cli.output import Col, Screen, table, when

HELP = "batches the blackout holds, by file"
DESCRIPTION = (
    "The lost-repair batches deferred by the monthly blackout (no request from 00:00 on the 27th, China "
    "time, until the next month's resume day), by file: how many batches and records, since when, and "
    "when the poller sends them again. Nothing to do: they go on their own after the blackout."
)
COLUMNS = (
    Col("JOB", drop=2),
    Col("FILE", cut=12),
    Col("BATCHES"),
    Col("RECORDS"),
    Col("DEFERRED SINCE", drop=1),
    Col("RESUMES"),
)


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("deferred", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("--limit", type=positive, default=10000, help="at most this many batches")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    view = collect(ctx, args.limit)
    return Result(view.data, render(view, ctx.screen))


@dataclass
class DeferredView:
    data: dict[str, Any]


def collect(ctx: Context, limit: int) -> DeferredView:
    services = ctx.services
    blackout = services.blackout
    batches = services.jobs.batches_with_status(BatchStatus.DEFERRED, limit)
    by_job: dict[str, list[Batch]] = {}
    for b in batches:
        by_job.setdefault(b.job_id, []).append(b)
    until = blackout.resumes_at(services.clock.now())
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
    return DeferredView(
        {
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
    )


def render(view: DeferredView, screen: Screen) -> str:
    data = view.data
    blackout, groups = data["blackout"], data["jobs"]
    if blackout["in_force"]:
        head = (
            f"Blackout in force until {when(blackout['until'])} China time (from day "
            f"{blackout['start_day']}, 00:00, to day {blackout['resume_day']} of the next month); "
            "the poller re-queues deferred batches on its first run after."
        )
    else:
        head = "Blackout not in force now: the poller re-queues deferred batches on its next run."
    lines = [head]
    if not groups:
        lines.append("Nothing is deferred.")
        return "\n".join(lines)
    rows = [
        (
            g["job_id"],
            g["file"],
            g["batches"],
            g["records"],
            when(g["deferred_since"]),
            when(g["resumes_at"]) if g["resumes_at"] else "next poll",
        )
        for g in groups
    ]
    lines += [
        "",
        table(COLUMNS, rows, screen),
        "",
        f"Total: {data['total_batches']} batch(es), {data['total_records']} record(s) "
        f"in {len(groups)} file(s).",
    ]
    return "\n".join(lines)
