"""``verifyfeed watch FILE|JOB``: follow a job until it settles, then what ``status FILE`` shows, with
its outcome as the exit code (4 when ``--timeout`` ran out). ``drop --wait`` follows the same way."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from typing import Any

from verifyfeed.logic.reports import ReportPaths
from verifyfeed.models.records import (
    OPEN_AUDIT_STATUSES,
    REPORTED_JOB_STATUSES,
    SETTLED_JOB_STATUSES,
    Job,
    JobKind,
    JobStatus,
)
from verifyfeed_cli.advice import EXIT_NOT_SETTLED
from verifyfeed_cli.commands import status
from verifyfeed_cli.context import (
    CliError,
    Context,
    Result,
    audit_counts,
    audits_of,
    find_job,
    positive,
    report_written,
)
from verifyfeed_cli.views import progress_line

HELP = "follow a dropped file's job until it settles"
DESCRIPTION = (
    "Follow a file's job until it settles (its report written, its audits decided), printing its "
    "counts as they change, then exit with its outcome (as status FILE; 4 when --timeout ran out: the "
    "job goes on, watch again)."
)
CLOCK_SKEW = timedelta(seconds=5)  # between this machine's clock and the splitter's


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("watch", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("ref", metavar="FILE|JOB")
    parser.add_argument("--timeout", type=positive, default=600, help="seconds to wait (default 600)")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    job, _ = find_job(ctx, args.ref)
    return follow(ctx, job.job_id, job.key, args.timeout)


def follow(
    ctx: Context, job_id: str | None, key: str, timeout_s: float, after: datetime | None = None
) -> Result:
    """Show the job's progress as it changes until it has settled (its report written, its audits
    decided), then what ``status FILE`` shows, with its outcome as the exit code. Without a job id
    (an unversioned bucket), the first job of ``key`` newer than ``after`` is it."""
    deadline = time.monotonic() + timeout_s
    shown = ""
    while True:
        job = ctx.services.jobs.get_job(job_id) if job_id else _newest_job(ctx, key, after)
        if job is not None:
            audits = audit_counts(audits_of(ctx, job)) if job.kind == JobKind.CARRIER_AUDIT else {}
            line = progress_line(job, audits)
            if line != shown:
                ctx.say(line)
                shown = line
            written = report_written(ctx, job, ReportPaths.for_job(job, ctx.services.settings.reports_prefix))
            if settled(job, audits, written):
                view = status.collect_job(ctx, job.job_id)
                view.data["accounted_for"] = accounted_for(job)
                return Result(view.data, status.render_job(view, ctx.screen, ctx.command), view.outcome.code)
        if time.monotonic() >= deadline:
            raise CliError(
                f"{key}: not settled after {timeout_s:g} s"
                + (f" ({shown})" if shown else " (no job recorded yet: is the splitter notified?)")
                + f"; `{ctx.command('watch', key)}` goes on following it",
                EXIT_NOT_SETTLED,
            )
        time.sleep(1.0)  # polling the stores; the deadline above bounds the wait


def settled(job: Job, audits: dict[str, int], report_written: bool) -> bool:
    """Nothing more will happen without the blackout's end or an operator: the status settled, its
    report written (right after the status, logic/progress.py), no audit awaiting its decision."""
    return (
        job.status in SETTLED_JOB_STATUSES
        and (report_written or job.status not in REPORTED_JOB_STATUSES)
        and not any(audits.get(s.value) for s in OPEN_AUDIT_STATUSES)
    )


def accounted_for(job: Job) -> bool:
    """Every row read was accepted or rejected, every batch settled (a dry run sends none), and the
    file not refused."""
    return (
        job.status not in (JobStatus.REJECTED, JobStatus.DUPLICATE)
        and job.rows_accepted + job.rows_rejected == job.rows_read
        and (job.status == JobStatus.DRY_RUN or job.batches_open == 0)
    )


def _newest_job(ctx: Context, key: str, after: datetime | None) -> Job | None:
    jobs = ctx.services.jobs.find_jobs(key)
    if not jobs:
        return None
    if after is not None and datetime.fromisoformat(jobs[0].created_at) < after - CLOCK_SKEW:
        return None  # an earlier upload's job
    return jobs[0]
