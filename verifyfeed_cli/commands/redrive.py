"""``verifyfeed redrive``: dead letters back onto the work queue, failed or unknown batches queued
again (unknown ones only with the operator's explicit flag: they may charge twice), each recorded
on its batch with who re-drove it. ``--unknown-audits``: ``redrive_audits``.

Plan (read), show it, ask, do; the plan and the outcome are each built in one function and
rendered in another."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from verifyfeed.logic.progress import settle_job
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchStatus
from verifyfeed.ports import StaleTransition
from verifyfeed_cli.advice import REDRIVE_UNKNOWN_AUDITS_FLAG, REDRIVE_UNKNOWN_FLAG, Cost
from verifyfeed_cli.commands import redrive_audits
from verifyfeed_cli.context import (
    EXIT_AWS,
    EXIT_USAGE,
    CliError,
    Context,
    Result,
    exists,
    find_job,
    positive,
    queue_depths,
)
from verifyfeed_cli.output import ProgressBar, Screen
from verifyfeed_cli.views import batch_table, batch_view

UNKNOWN_WARNING = (
    "WARNING: an 'unknown' batch may already have been accepted upstream, and state \"1\" is charged:\n"
    "resending it can charge the same records twice. Resend only after checking with the upstream\n"
    "(by the time of the attempt and the platform serial number) that it was not processed."
)
HELP = "send dead letters, failed or unknown batches again"
DESCRIPTION = (
    "Move dead-letter messages back onto the work queue, and/or set failed or unknown lost-repair "
    "batches to retry and queue them again; each re-drive is recorded on its batch (who, when), and "
    "`status FILE` shows it. Asks first, unless --yes. A failed batch was not charged. "
    f"{REDRIVE_UNKNOWN_FLAG} is needed for --unknown, --yes or not: " + UNKNOWN_WARNING
)


def add_parser(sub: argparse._SubParsersAction[Any], parents: list[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("redrive", parents=parents, help=HELP, description=DESCRIPTION)
    parser.add_argument("--dlq", action="store_true", help="the dead-letter queue's messages")
    parser.add_argument("--failed", action="store_true", help="failed batches (never charged)")
    parser.add_argument(
        "--unknown",
        action="store_true",
        help=f"unknown-outcome batches (may charge twice: {REDRIVE_UNKNOWN_FLAG})",
    )
    parser.add_argument(
        "--unknown-audits",
        action="store_true",
        help="carrier audits held unknown, each re-read from its upload (may create a second audit "
        f"upstream: {REDRIVE_UNKNOWN_AUDITS_FLAG})",
    )
    parser.add_argument(
        REDRIVE_UNKNOWN_FLAG,
        dest="may_charge_twice",
        action="store_true",
        help="with --unknown: you asked the upstream, and it did not receive those batches",
    )
    parser.add_argument(
        REDRIVE_UNKNOWN_AUDITS_FLAG,
        dest="may_audit_twice",
        action="store_true",
        help="with --unknown-audits: you asked the upstream, and it holds no such audit",
    )
    parser.add_argument("--job", metavar="FILE|JOB", help="only this file's job")
    parser.add_argument("--limit", type=positive, default=1000, help="at most this many batches per status")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask")
    parser.set_defaults(run=run)


def run(ctx: Context, args: argparse.Namespace) -> Result:
    if args.unknown_audits:
        if args.dlq or args.failed or args.unknown:
            raise CliError(
                "--unknown-audits is re-driven on its own, not with --dlq, --failed or --unknown", EXIT_USAGE
            )
        return redrive_audits.redrive_unknown_audits(
            ctx, job_ref=args.job, limit=args.limit, may_audit_twice=args.may_audit_twice
        )
    return redrive(
        ctx,
        dlq=args.dlq,
        failed=args.failed,
        unknown=args.unknown,
        job_ref=args.job,
        limit=args.limit,
        may_charge_twice=args.may_charge_twice,
    )


@dataclass
class Plan:
    job_id: str | None
    dlq: bool
    dlq_messages: int
    batches: list[Batch]
    not_kept: list[Batch]
    may_charge_again: Cost  # re-driving the unknown batches, if the upstream had them

    @property
    def empty(self) -> bool:
        return not self.batches and not (self.dlq and self.dlq_messages)

    @property
    def unknown(self) -> list[Batch]:
        return [b for b in self.batches if b.status == BatchStatus.UNKNOWN]


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
    plan = collect_plan(ctx, dlq=dlq, failed=failed, unknown=unknown, job_ref=job_ref, limit=limit)
    data: dict[str, Any] = {
        "job_id": plan.job_id,
        "dlq_messages_moved": 0,
        "dlq_messages_left": 0,
        "batches_resent": [],
        "batches_skipped": [{**batch_view(b), "why": "body not kept"} for b in plan.not_kept],
        "may_charge_again": plan.may_charge_again.view() if plan.unknown else None,
        "redriven_by": ctx.operator,
        "confirmed": False,
    }
    if plan.empty:
        data["confirmed"] = True
        text = "Nothing to re-drive."
        if plan.not_kept:
            text += "\n" + _not_kept_text(plan.not_kept)
        return Result(data, text)
    ctx.say(render_plan(plan, ctx.target.stack, ctx.screen))
    if plan.unknown and not may_charge_twice:
        raise CliError(
            f"refused: re-driving {len(plan.unknown)} unknown batch(es) may charge "
            f"{plan.may_charge_again.text()} a second time. Ask the upstream first "
            "(docs/operations.md#unknown-outcomes); only if it did not receive them, add "
            f"{REDRIVE_UNKNOWN_FLAG}",
            EXIT_USAGE,
        )
    if not ctx.confirmed():
        return Result.aborted(data)
    data["confirmed"] = True
    execute(ctx, plan, data)
    follow = ctx.command("status", *([plan.job_id] if plan.job_id else []))
    return Result(data, render_done(plan, data, follow))


def collect_plan(
    ctx: Context, *, dlq: bool, failed: bool, unknown: bool, job_ref: str | None, limit: int
) -> Plan:
    job_id = find_job(ctx, job_ref)[0].job_id if job_ref else None
    statuses = [s for s, wanted in ((BatchStatus.FAILED, failed), (BatchStatus.UNKNOWN, unknown)) if wanted]
    candidates = [
        b
        for s in statuses
        for b in ctx.services.jobs.batches_with_status(s, limit)
        if job_id is None or b.job_id == job_id
    ]
    kept = [
        b for b in candidates if b.claim_key and exists(ctx, b.claim_bucket or ctx.target.bucket, b.claim_key)
    ]
    not_kept = [b for b in candidates if b not in kept]
    dlq_messages = queue_depths(ctx)["dead_letter"] if dlq else 0
    unknown_records = sum(b.record_count for b in kept if b.status == BatchStatus.UNKNOWN)
    return Plan(job_id, dlq, dlq_messages, kept, not_kept, ctx.cost(unknown_records))


def render_plan(plan: Plan, stack: str, screen: Screen) -> str:
    lines = [f"Re-drive in stack {stack}" + (f", job {plan.job_id} only" if plan.job_id else "") + ":"]
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
        inner = Screen(max(40, screen.width - 4), screen.wide)
        lines.append("    " + batch_table(plan.batches, inner).replace("\n", "\n    "))
    if plan.unknown:
        lines.append(UNKNOWN_WARNING)
        lines.append(f"If it did, this charges {plan.may_charge_again.text()} a second time.")
    if plan.not_kept:
        lines.append(_not_kept_text(plan.not_kept))
    return "\n".join(lines)


def execute(ctx: Context, plan: Plan, data: dict[str, Any]) -> None:
    """Do the plan, counting into ``data`` as it goes (what was done stays said if it stops)."""
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


def render_done(plan: Plan, data: dict[str, Any], follow: str) -> str:
    lines = (
        [f"Moved {data['dlq_messages_moved']} message(s) from the dead-letter queue to the work queue."]
        if plan.dlq
        else []
    )
    if data["dlq_messages_left"]:
        lines.append(f"Left {data['dlq_messages_left']} message(s) of other jobs in the dead-letter queue.")
    if plan.batches:
        lines.append(
            f"Re-queued {len(data['batches_resent'])} batch(es) (status retry), recorded on each as "
            f"re-driven by {data['redriven_by']}; `{follow}` follows them."
        )
    for skipped in data["batches_skipped"]:
        lines.append(f"Skipped {skipped['batch_id']}: {skipped['why']}")
    if plan.not_kept:
        lines.append(_not_kept_text(plan.not_kept))
    return "\n".join(lines)


def _not_kept_text(batches: Iterable[Batch]) -> str:
    ids = ", ".join(b.batch_id for b in batches)
    return (
        f"Cannot re-drive {ids}: the batch body is no longer in S3 (claims/ expire after 14 days). "
        "Drop those rows again in a new file."
    )


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
