"""Argument parsing, the connection to the stack, and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any, NoReturn

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from verifyfeed import aws
from verifyfeed.clock import clock_from_setting
from verifyfeed.config import Settings
from verifyfeed.models.records import AuditStatus, JobKind
from verifyfeed.ports import BlobError, StoreError
from verifyfeed.services import build_services
from verifyfeed_cli import commands, sandbox
from verifyfeed_cli.advice import OUTCOMES, REDRIVE_UNKNOWN_AUDITS_FLAG, REDRIVE_UNKNOWN_FLAG
from verifyfeed_cli.commands import EXIT_AWS, EXIT_NOT_FOUND, EXIT_USAGE, CliError, Context, Result
from verifyfeed_cli.target import (
    DEFAULT_LOCAL_STACK,
    Choice,
    Target,
    TargetError,
    choose,
    local_state,
    resolve,
    stack_clock_now,
)

DESCRIPTION = f"""\
What happened to the files dropped into verifyfeed, without reading logs.

  verifyfeed status                      recent jobs, queue depths, batches held
  verifyfeed status FILE|JOB             one file: counts, status, report, what to do next
  verifyfeed report FILE|JOB [--rejected|--already-uploaded|--xlsx --out PATH]
                                         the job's report (JSON), its rows to fix (CSV), ...
  verifyfeed audits [--status pending]   carrier audits (masked)
  verifyfeed redrive --dlq|--failed [--job FILE|JOB] [--yes]
  verifyfeed redrive --unknown --job FILE|JOB {REDRIVE_UNKNOWN_FLAG}
  verifyfeed redrive --unknown-audits --job FILE|JOB {REDRIVE_UNKNOWN_AUDITS_FLAG}
  verifyfeed deferred                    what the blackout is holding, and until when
  verifyfeed drop PATH [--kind K] [--wait]   upload a file to the ingest bucket (and follow its job)
  verifyfeed watch FILE|JOB              follow a job until it settles, then its status
  verifyfeed sandbox show|clock|advance|fault|clear|refuse|audits|reset [VALUE]   local sandbox knobs

FILE is the S3 key (lost-repair/list.csv), s3://bucket/key, or just the file name."""

_OUTCOME_LINES = "".join(f"  {code}  {meaning}\n" for code, meaning in OUTCOMES.items() if code)
EPILOG = f"""\
where:
  --local: the local stack (make up; or make demo's, with --endpoint-url or $AWS_ENDPOINT_URL: the
  stack is then {DEFAULT_LOCAL_STACK}). --stack NAME (or $VERIFYFEED_STACK): that deployed stack,
  with the default boto3 credentials and region (--profile, --region); its name and account are
  printed on stderr first. Neither: the local stack make up runs (said on stderr), else an error.

exit codes:
  0  done (status FILE, drop --wait, watch: every row uploaded, or rejected by our rules)
  1  not found (file, job, report), or the confirmation was declined
  2  usage error, or a re-drive from unknown without its --i-understand-... flag
  3  AWS or configuration error (no such stack, no credentials, access denied, ...)
status FILE, drop --wait and watch, by the file's job:
{_OUTCOME_LINES}  (drop --wait and watch: 4 when --timeout ran out; the job goes on: watch again)

--json prints exactly one JSON document on stdout (errors too: {{"error": ..., "exit_code": ...}});
prompts, warnings and progress go to stderr. Details: docs/operations.md."""

OVERRIDES = {
    "bucket": "the ingest bucket",
    "jobs_table": "the jobs table",
    "audits_table": "the audits table",
    "queue_url": "the work queue URL",
    "dlq_url": "the dead-letter queue URL",
}


class UsageError(Exception):
    """argparse's error, raised instead of printed, so that ``--json`` can print it as JSON."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _common() -> _Parser:
    """Options accepted before or after the command (SUPPRESS: a later default never hides a value)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON document on stdout"
    )
    where = common.add_argument_group("where")
    where.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help="the deployed stack (else $VERIFYFEED_STACK); with --local, the local stack's name",
    )
    where.add_argument(
        "--local",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the local stack (make up; make demo's with --endpoint-url)",
    )
    where.add_argument(
        "--endpoint-url", default=argparse.SUPPRESS, help="AWS endpoint (moto); implies --local"
    )
    where.add_argument("--region", default=argparse.SUPPRESS, help="AWS region")
    where.add_argument("--profile", default=argparse.SUPPRESS, help="AWS profile")
    for name, what in OVERRIDES.items():
        where.add_argument(
            f"--{name.replace('_', '-')}", default=argparse.SUPPRESS, help=f"{what} (skips the look-up)"
        )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="verifyfeed",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser(
        "status",
        parents=[common],
        help="recent jobs, or one file's job",
        description="Recent jobs, or one file's job: what happened, what to do next. With FILE, the exit "
        "code says the job's outcome: " + "; ".join(f"{c} {m}" for c, m in OUTCOMES.items()) + ".",
    )
    status.add_argument("ref", nargs="?", metavar="FILE|JOB", help="an S3 key, a file name or a job id")
    status.add_argument("--limit", type=_positive, default=20, help="recent jobs to list (default 20)")

    report = sub.add_parser("report", parents=[common], help="download a file's report")
    report.add_argument("ref", metavar="FILE|JOB")
    report.add_argument("--out", metavar="PATH", help="write it to PATH instead of stdout")
    part = report.add_mutually_exclusive_group()
    part.add_argument(
        "--rejected",
        dest="part",
        action="store_const",
        const="rejected",
        help="the rows to fix (CSV) instead of the summary",
    )
    part.add_argument(
        "--already-uploaded",
        dest="part",
        action="store_const",
        const="already_uploaded",
        help="the rows an earlier file already uploaded (CSV, lost repair)",
    )
    part.add_argument(
        "--xlsx",
        dest="part",
        action="store_const",
        const="workbook",
        help="both as a workbook (.xlsx; needs --out)",
    )

    audits = sub.add_parser("audits", parents=[common], help="carrier audits and their results (masked)")
    audits.add_argument("--status", dest="audit_status", choices=[s.value for s in AuditStatus])
    audits.add_argument("--limit", type=_positive, default=50, help="audits to list (default 50)")

    redrive = sub.add_parser(
        "redrive",
        parents=[common],
        help="send dead letters, failed or unknown batches again",
        description=(
            "Move dead-letter messages back onto the work queue, and/or set failed or unknown lost-repair "
            "batches to retry and queue them again; each re-drive is recorded on its batch (who, when), and "
            "`status FILE` shows it. Asks first, unless --yes. A failed batch was not charged. "
            f"{REDRIVE_UNKNOWN_FLAG} is needed for --unknown, --yes or not: " + commands.UNKNOWN_WARNING
        ),
    )
    redrive.add_argument("--dlq", action="store_true", help="the dead-letter queue's messages")
    redrive.add_argument("--failed", action="store_true", help="failed batches (never charged)")
    redrive.add_argument(
        "--unknown",
        action="store_true",
        help=f"unknown-outcome batches (may charge twice: {REDRIVE_UNKNOWN_FLAG})",
    )
    redrive.add_argument(
        "--unknown-audits",
        action="store_true",
        help="carrier audits held unknown, each re-read from its upload (may create a second audit "
        f"upstream: {REDRIVE_UNKNOWN_AUDITS_FLAG})",
    )
    redrive.add_argument(
        REDRIVE_UNKNOWN_FLAG,
        dest="may_charge_twice",
        action="store_true",
        help="with --unknown: you asked the upstream, and it did not receive those batches",
    )
    redrive.add_argument(
        REDRIVE_UNKNOWN_AUDITS_FLAG,
        dest="may_audit_twice",
        action="store_true",
        help="with --unknown-audits: you asked the upstream, and it holds no such audit",
    )
    redrive.add_argument("--job", metavar="FILE|JOB", help="only this file's job")
    redrive.add_argument("--limit", type=_positive, default=1000, help="at most this many batches per status")
    redrive.add_argument("--yes", "-y", action="store_true", help="do not ask")

    drop = sub.add_parser(
        "drop",
        parents=[common],
        help="upload a file to the ingest bucket",
        description="Upload a file to the ingest bucket under its kind's prefix; with --wait, follow its job "
        "and exit with its outcome (as status FILE; 4 when --timeout ran out).",
    )
    drop.add_argument("path", metavar="PATH", help="the file; its kind is read from its header row")
    drop.add_argument("--kind", choices=[k.value for k in JobKind], help="when the header does not tell")
    drop.add_argument("--wait", action="store_true", help="follow its job until it settles")
    drop.add_argument(
        "--dry-run",
        action="store_true",
        help="under dry-run/: read and reported like a real drop, nothing sent",
    )
    drop.add_argument(
        "--resend",
        action="store_true",
        help="lost repair, under the resend prefix: send every row even if it was sent within the "
        "resend window (pays again; docs/operations.md#re-drop)",
    )
    drop.add_argument("--timeout", type=_positive, default=600, help="seconds --wait waits (default 600)")

    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a dropped file's job until it settles",
        description="Follow a file's job until it settles, then exit with its outcome (as status FILE; 4 "
        "when --timeout ran out).",
    )
    watch.add_argument("ref", metavar="FILE|JOB")
    watch.add_argument("--timeout", type=_positive, default=600, help="seconds to wait (default 600)")

    knobs = sub.add_parser(
        "sandbox",
        parents=[common],
        help="the local upstream sandbox's knobs (make up)",
        description="; ".join(f"{name}: {what}" for name, what in sandbox.ACTIONS.items()),
    )
    knobs.add_argument("action", choices=list(sandbox.ACTIONS))
    knobs.add_argument("value", nargs="?", help="clock: ISO instant; advance: seconds; fault: JSON")
    knobs.add_argument("--sandbox-url", help="default $SANDBOX_URL, else the running local stack's")

    deferred = sub.add_parser("deferred", parents=[common], help="batches the blackout holds, by file")
    deferred.add_argument("--limit", type=_positive, default=10000, help="at most this many batches")
    return parser


def main(
    argv: list[str] | None = None,
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    words = sys.argv[1:] if argv is None else argv
    as_json = "--json" in words

    def fail(message: str, code: int) -> int:
        stderr.write(f"verifyfeed: {message}\n")
        if as_json:
            stdout.write(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False) + "\n")
        return code

    try:
        args = build_parser().parse_args(words)
    except UsageError as exc:
        return fail(f"{exc} (`verifyfeed --help`, or COMMAND --help)", EXIT_USAGE)
    except SystemExit as exc:  # --help: argparse has printed it
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))

    try:
        if args.command == "sandbox":  # the sandbox alone, no AWS
            result = sandbox.run(sandbox.sandbox_url(args.sandbox_url), args.action, args.value)
        else:
            ctx = connect(args, stdin, stderr)
            result = run(ctx, args)
    except CliError as exc:
        return fail(exc.message, exc.code)
    except TargetError as exc:
        return fail(str(exc), EXIT_AWS)
    except ClientError as exc:
        return fail(_aws_message(exc), EXIT_AWS)
    except BotoCoreError as exc:
        return fail(f"AWS: {exc}", EXIT_AWS)
    except (StoreError, BlobError) as exc:  # the core's stores say what botocore raised (its cause)
        cause = exc.__cause__
        return fail(_aws_message(cause) if isinstance(cause, ClientError) else f"AWS: {exc}", EXIT_AWS)
    except ValidationError as exc:
        return fail(f"configuration: {exc.errors()[0].get('msg', exc)}", EXIT_AWS)
    except OSError as exc:  # a local file the operator named: unreadable, a folder, a path that is not there
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_NOT_FOUND)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    if as_json:
        stdout.write(json.dumps(result.data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        stdout.write(result.text + "\n")
    stdout.flush()
    return result.code


def run(ctx: Context, args: argparse.Namespace) -> Result:
    if args.command == "status":
        return commands.status(ctx, args.ref, args.limit)
    if args.command == "report":
        return commands.report(ctx, args.ref, args.out, args.part or "summary")
    if args.command == "audits":
        return commands.audits(ctx, args.audit_status, args.limit)
    if args.command == "redrive" and args.unknown_audits:
        if args.dlq or args.failed or args.unknown:
            raise CliError(
                "--unknown-audits is re-driven on its own, not with --dlq, --failed or --unknown", EXIT_USAGE
            )
        return commands.redrive_unknown_audits(
            ctx, job_ref=args.job, limit=args.limit, may_audit_twice=args.may_audit_twice
        )
    if args.command == "redrive":
        return commands.redrive(
            ctx,
            dlq=args.dlq,
            failed=args.failed,
            unknown=args.unknown,
            job_ref=args.job,
            limit=args.limit,
            may_charge_twice=args.may_charge_twice,
        )
    if args.command == "deferred":
        return commands.deferred(ctx, args.limit)
    if args.command == "drop":
        return commands.drop(
            ctx, args.path, args.kind, args.wait, args.timeout, dry_run=args.dry_run, resend=args.resend
        )
    if args.command == "watch":
        return commands.watch(ctx, args.ref, args.timeout)
    raise CliError(f"unknown command {args.command}", EXIT_USAGE)


def connect(args: argparse.Namespace, stdin: IO[str], stderr: IO[str]) -> Context:
    """Choose the stack (``target.choose``), find its resources and build the core's services on them.

    ``--endpoint-url``, ``--region`` and ``--profile`` are put in the environment, as their AWS
    variables, so that every boto3 client of the process (the core's too) uses them.
    """
    option: dict[str, Any] = vars(args)
    choice = choose(
        local=bool(option.get("local")),
        endpoint=option.get("endpoint_url") or "",
        env_endpoint=os.environ.get("AWS_ENDPOINT_URL", ""),
        stack=option.get("stack") or "",
        env_stack=os.environ.get("VERIFYFEED_STACK", ""),
        running=local_state(),
    )
    for name, variable in (
        ("endpoint_url", "AWS_ENDPOINT_URL"),
        ("region", "AWS_DEFAULT_REGION"),
        ("profile", "AWS_PROFILE"),
    ):
        if option.get(name):
            os.environ[variable] = option[name]
    if choice.state is not None:
        _use_local_state(choice.state)
    if choice.local and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106 - moto
    session = boto3.session.Session()
    region = session.region_name or ("us-east-1" if choice.local else "")
    if not region:
        raise TargetError("no AWS region: --region, or AWS_DEFAULT_REGION, or a profile with a region")
    if not os.environ.get("AWS_DEFAULT_REGION") and not os.environ.get("AWS_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = region
    operator = _announce(choice, session, region, stderr)
    base = Target(stack=choice.stack, local=choice.local, region=region)
    overrides = {
        "bucket": option.get("bucket", ""),
        "jobs_table": option.get("jobs_table", ""),
        "audits_table": option.get("audits_table", ""),
        "work_queue_url": option.get("queue_url", ""),
        "dlq_url": option.get("dlq_url", ""),
    }
    cloudformation = None if choice.local else session.client("cloudformation")
    target = resolve(base, overrides, cloudformation, aws.sqs())
    settings = Settings.from_env().model_copy(
        update={
            "ingest_bucket": target.bucket,
            "jobs_table": target.jobs_table,
            "audits_table": target.audits_table,
            "work_queue_url": target.work_queue_url,
            "blackout_start_day": target.blackout_start_day,
            "blackout_resume_day": target.blackout_resume_day,
            "price_per_record": target.price_per_record,
        }
    )
    if not (settings.identity_pepper_name or settings.identity_pepper):  # redrive --unknown-audits keys rows
        settings = settings.model_copy(update={"identity_pepper_name": target.identity_pepper_secret})
    services = build_services(settings, clock_from_setting(settings.clock_now))
    return Context(
        target=target,
        services=services,
        s3=aws.s3(),
        sqs=aws.sqs(),
        stdin=stdin,
        stderr=stderr,
        assume_yes=bool(option.get("yes")),
        operator=operator,
        prog=invocation(sys.argv[0]),
        flags=_target_flags(choice, option),
    )


def _use_local_state(state: dict[str, Any]) -> None:
    """Point the process at the stack ``make up`` runs: its endpoint, region, clock and price."""
    os.environ["AWS_ENDPOINT_URL"] = str(state["aws_endpoint"])
    os.environ.setdefault("AWS_DEFAULT_REGION", str(state.get("region") or "us-east-1"))
    if state.get("clock_now") and not os.environ.get("CLOCK_NOW"):
        os.environ["CLOCK_NOW"] = stack_clock_now(state)  # the stack's clock: the same now
    if state.get("price_per_record") and not os.environ.get("PRICE_PER_RECORD"):
        os.environ["PRICE_PER_RECORD"] = str(state["price_per_record"])


def _announce(choice: Choice, session: boto3.session.Session, region: str, stderr: IO[str]) -> str:
    """Say on stderr which stack this is, when it was not named on the command line (a deployed
    stack always: its name, account and the caller, before anything can pay); return who the
    operator is, as a re-drive records it (the caller's ARN; locally the user)."""
    if choice.local:
        user = os.environ.get("USER") or getpass.getuser()
        if choice.implicit:
            where = (
                f"the one make up runs ({choice.state['state_file']})"
                if choice.state
                else f"at {os.environ.get('AWS_ENDPOINT_URL', '')} ($AWS_ENDPOINT_URL)"
            )
            stderr.write(
                f"verifyfeed: local stack {choice.stack}, {where}; --stack NAME for a deployed one\n"
            )
        return user
    identity = session.client("sts").get_caller_identity()
    stderr.write(
        f"verifyfeed: deployed stack {choice.stack}, account {identity['Account']}, region {region}, "
        f"as {identity['Arn']}\n"
    )
    return str(identity["Arn"])


def _target_flags(choice: Choice, option: dict[str, Any]) -> tuple[str, ...]:
    """The options that name this target again, for the commands the output suggests."""
    flags: list[str] = []
    if option.get("endpoint_url"):
        flags += ["--endpoint-url", option["endpoint_url"]]
    elif option.get("local") or choice.state is not None:
        flags.append("--local")
    if option.get("stack") or not choice.local:
        flags += ["--stack", choice.stack]
    for name in ("region", "profile"):
        if option.get(name):
            flags += [f"--{name}", option[name]]
    return tuple(flags)


def invocation(argv0: str) -> str:
    """How to run this CLI again, as typed here: the ``verifyfeed`` script as it was called, else the
    venv's script beside this Python, else ``python -m verifyfeed_cli``."""
    called = Path(argv0)
    if called.name == "verifyfeed":
        return "verifyfeed" if shutil.which("verifyfeed") and "/" not in argv0 else argv0
    script = Path(sys.executable).parent / "verifyfeed"
    if script.exists():
        return _relative(script)
    return f"{_relative(Path(sys.executable))} -m verifyfeed_cli"


def _relative(path: Path) -> str:
    """``path`` as a command names it from here: relative below the current folder, else absolute."""
    try:
        relative = str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())
    return relative if "/" in relative else f"./{relative}"


def _aws_message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", "")
    hint = {
        "ResourceNotFoundException": " (is the stack right? --stack, --local)",
        "AccessDeniedException": " (the credentials in use may not read this stack's resources)",
        "AccessDenied": " (the credentials in use may not read this stack's resources)",
        "ExpiredToken": " (refresh the credentials)",
        "ExpiredTokenException": " (refresh the credentials)",
    }.get(code, "")
    return f"AWS {exc.operation_name}: {code}: {message}{hint}"


__all__ = ["EXIT_NOT_FOUND", "build_parser", "main"]
