"""What every command works with: the stack (``Context``), its answer (``Result``), its errors and
exit codes, and the look-ups they share (a job by reference, the queues' depths, an object's
existence, a job's audits)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from verifyfeed.logic.reports import ReportPaths
from verifyfeed.models.records import REPORTED_JOB_STATUSES, Audit, AuditStatus, Job
from verifyfeed.services import Services
from verifyfeed_cli.advice import Cost
from verifyfeed_cli.output import Screen, confirm
from verifyfeed_cli.target import Target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # no such file / job / report, or the operator declined the confirmation
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_AWS = 3  # AWS or configuration error: no stack, no credentials, access denied, ...

JOB_ID = re.compile(r"[0-9a-f]{24}")


def positive(text: str) -> int:
    """An argument that is a whole number of at least 1 (argparse's ``type``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Result:
    """A command's answer: ``data`` for ``--json``, ``text`` for a person, ``code`` to exit with."""

    data: dict[str, Any]
    text: str
    code: int = EXIT_OK

    @classmethod
    def aborted(cls, data: dict[str, Any]) -> Result:
        """The operator declined: nothing was changed."""
        return cls(data, "Aborted: nothing was changed.", EXIT_NOT_FOUND)


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
    screen: Screen = field(default_factory=Screen)  # the text's width (stdout's terminal, or --wide)

    def say(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def confirmed(self) -> bool:
        """``--yes``, else the operator's answer to "Proceed?" (on stderr; end of input is a no)."""
        return self.assume_yes or confirm("Proceed?", self.stdin, self.stderr)

    def command(self, *words: str) -> str:
        """A ``verifyfeed`` command line against the same stack, as it runs when pasted."""
        return shlex.join([*shlex.split(self.prog), *self.flags, *words])

    @property
    def price(self) -> float | None:
        return self.services.settings.price_per_record

    def cost(self, records: int) -> Cost:
        return Cost(records, self.price, self.services.settings.price_currency)


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


def exists(ctx: Context, bucket: str, key: str) -> bool:
    try:
        ctx.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def report_written(ctx: Context, job: Job, paths: ReportPaths) -> bool:
    """Whether the job's summary is in the bucket (its key is known from the job's creation on)."""
    return job.status in REPORTED_JOB_STATUSES and exists(ctx, job.bucket, paths.summary)


def audits_of(ctx: Context, job: Job) -> list[Audit]:
    """The job's audits (every status; there is no index by job)."""
    return [
        a
        for s in AuditStatus
        for a in ctx.services.audits.with_status(s, limit=100_000)
        if a.job_id == job.job_id
    ]


def audit_counts(audits: Iterable[Audit]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in audits:
        counts[a.status.value] = counts.get(a.status.value, 0) + 1
    return counts
