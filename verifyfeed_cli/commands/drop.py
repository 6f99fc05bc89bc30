"""``verifyfeed drop PATH``: upload a file to the ingest bucket under its kind's prefix (read first as
the splitter reads it: a file it would refuse is refused here, before anything is uploaded); with
``--wait``, follow its job (``watch``)."""

from __future__ import annotations

import argparse
import mimetypes
from pathlib import Path
from typing import Any

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import detect_path
from verifyfeed.logic.splitter import DroppedObject
from verifyfeed.models.records import JobKind
from verifyfeed_cli.commands import watch
from verifyfeed_cli.context import EXIT_USAGE, CliError, Context, Result, positive

HELP = "upload a file to the ingest bucket"
DESCRIPTION = (
    "Upload a file to the ingest bucket under its kind's prefix; with --wait, follow its job and exit "
    "with its outcome (as status FILE; 4 when --timeout ran out)."
)


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("drop", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("path", metavar="PATH", help="the file; its kind is read from its header row")
    parser.add_argument("--kind", choices=[k.value for k in JobKind], help="when the header does not tell")
    parser.add_argument("--wait", action="store_true", help="follow its job until it settles")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="under dry-run/: read and reported like a real drop, nothing sent",
    )
    parser.add_argument(
        "--resend",
        action="store_true",
        help="lost repair, under the resend prefix: send every row even if it was sent within the "
        "resend window (pays again; docs/operations.md#re-drop)",
    )
    parser.add_argument("--timeout", type=positive, default=600, help="seconds --wait waits (default 600)")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    return drop(ctx, args.path, args.kind, args.wait, args.timeout, dry_run=args.dry_run, resend=args.resend)


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
    job_kind = detect_kind(file, JobKind(kind) if kind else None, settings.xlsx_sheet)
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
    return watch.follow(ctx, job_id if version else None, key, timeout_s, after=dropped_at)


def detect_kind(file: Path, kind: JobKind | None, sheet: str) -> JobKind:
    """The kind by the header row, as the splitter reads it (``detect_path``: title rows above it
    skipped); a file the splitter would refuse is refused here, before anything is uploaded."""
    try:
        return detect_path(file, kind, sheet=sheet)
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
