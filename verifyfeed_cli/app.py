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
from verifyfeed.ports import BlobError, StoreError
from verifyfeed.services import build_services
from verifyfeed_cli.advice import OUTCOMES, REDRIVE_UNKNOWN_AUDITS_FLAG, REDRIVE_UNKNOWN_FLAG
from verifyfeed_cli.commands import audits, deferred, drop, redrive, report, sandbox, status, watch
from verifyfeed_cli.context import EXIT_AWS, EXIT_NOT_FOUND, EXIT_USAGE, CliError, Context, Result
from verifyfeed_cli.output import Screen
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


COMMANDS = (status, report, audits, redrive, deferred, drop, watch, sandbox)
GLOBAL_OPTIONS = (
    "--json, --wide, --stack, --local and the other options of `verifyfeed --help` go before or after "
    "the command."
)


class UsageError(Exception):
    """argparse's error, raised instead of printed, so that ``--json`` can print it as JSON."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(_usage(self.prog, message))


def _usage(prog: str, message: str) -> str:
    """``status: unrecognized arguments: -x (`verifyfeed status --help`)``: the command, what was
    wrong, and where its usage is; argparse's whole usage block is left to ``--help``."""
    command = prog.removeprefix("verifyfeed").strip()
    return f"{command + ': ' if command else ''}{message} (`{prog} --help`)"


def _common(listed: bool) -> _Parser:
    """The options every command takes, before or after its name (SUPPRESS: a later default never
    hides a value); listed by ``verifyfeed --help`` only, not again under each command."""

    def shown(text: str) -> str:
        return text if listed else argparse.SUPPRESS

    common = _Parser(add_help=False)
    output = common.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=shown("one JSON document on stdout")
    )
    output.add_argument(
        "--wide",
        action="store_true",
        default=argparse.SUPPRESS,
        help=shown("tables: every column, nothing cut (else they fit the terminal, or 80 columns)"),
    )
    where = common.add_argument_group("where")
    where.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help=shown("the deployed stack (else $VERIFYFEED_STACK); with --local, the local stack's name"),
    )
    where.add_argument(
        "--local",
        action="store_true",
        default=argparse.SUPPRESS,
        help=shown("the local stack (make up; make demo's with --endpoint-url)"),
    )
    where.add_argument(
        "--endpoint-url", default=argparse.SUPPRESS, help=shown("AWS endpoint (moto); implies --local")
    )
    where.add_argument("--region", default=argparse.SUPPRESS, help=shown("AWS region"))
    where.add_argument("--profile", default=argparse.SUPPRESS, help=shown("AWS profile"))
    for name, what in OVERRIDES.items():
        where.add_argument(
            f"--{name.replace('_', '-')}",
            default=argparse.SUPPRESS,
            help=shown(f"{what} (skips the look-up)"),
        )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="verifyfeed",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[_common(listed=True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    hidden = _common(listed=False)
    for command in COMMANDS:
        command.add_parser(sub, [hidden])
    for child in sub.choices.values():
        child.epilog = GLOBAL_OPTIONS
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
        args, extra = build_parser().parse_known_args(words)
        if extra:  # said by the command they were given to, not by verifyfeed
            raise UsageError(
                _usage(f"verifyfeed {args.command}", f"unrecognized arguments: {' '.join(extra)}")
            )
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except SystemExit as exc:  # --help: argparse has printed it
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))

    result: Result
    try:
        if args.run is None:  # the sandbox alone, no AWS
            result = args.local_only(args)
        else:
            ctx = connect(args, stdin, stdout, stderr)
            result = args.run(ctx, args)
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


def connect(args: argparse.Namespace, stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> Context:
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
        screen=Screen.of(stdout, wide=bool(option.get("wide"))),
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
