"""``verifyfeed redrive --unknown-audits``: re-submit the carrier audits held ``unknown``, each re-read
from its upload (``verifyfeed_cli.audit_redrive``), only with the operator's explicit flag (it may
create a second audit upstream), each recorded on the audit with who re-submitted it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from verifyfeed.ports import StaleAudit
from verifyfeed_cli.advice import REDRIVE_UNKNOWN_AUDITS_FLAG
from verifyfeed_cli.audit_redrive import Resubmission, plan_unknown_audits, resubmit, unknown_audits
from verifyfeed_cli.context import EXIT_AWS, EXIT_USAGE, CliError, Context, Result, find_job
from verifyfeed_cli.output import Col, ProgressBar, Screen, table, when
from verifyfeed_cli.views import audit_view

UNKNOWN_AUDITS_WARNING = (
    "WARNING: the first /carrierAudit/add (or /update) of an 'unknown' audit may have reached the upstream\n"
    "and created the audit there: re-submitting it may create a second audit upstream. Check with the\n"
    "upstream first (by the time of the attempt, column UPDATED, and the masked owner) that it has no\n"
    "record of it (docs/operations.md#unknown-audits)."
)
COLUMNS = (
    Col("SEND"),
    Col("OWNER"),
    Col("ID CARD", drop=2),
    Col("JOB / ROW"),
    Col("RECORD", drop=3),
    Col("UPDATED"),
    Col("LAST ERROR", cut=12, drop=1),
)


def resubmission_view(item: Resubmission) -> dict[str, Any]:
    """Masked fields only (never the rebuilt request), what would be sent, and why not."""
    return {**audit_view(item.audit), "send": item.kind if item.ready else None, "why": item.reason}


def redrive_unknown_audits(
    ctx: Context, *, job_ref: str | None, limit: int, may_audit_twice: bool = False
) -> Result:
    """Plan, warning, the operator's explicit flag (``--yes`` is not enough), confirmation, progress."""
    services = ctx.services
    job_id = find_job(ctx, job_ref)[0].job_id if job_ref else None
    held = unknown_audits(services, job_id, limit)
    try:
        pepper = services.secrets.identity_pepper() if held else None
    except (ValueError, GetParameterError) as exc:  # no secret name (every name given explicitly), no access
        raise CliError(f"cannot read the identity pepper: {exc}", EXIT_AWS) from exc
    plan = plan_unknown_audits(services, held, pepper)
    ready = [item for item in plan if item.ready]
    data: dict[str, Any] = {
        "job_id": job_id,
        "audits_resubmitted": [],
        "audits_skipped": [resubmission_view(item) for item in plan if not item.ready],
        "redriven_by": ctx.operator,
        "confirmed": False,
    }
    if not ready:
        data["confirmed"] = True
        lines = ["Nothing to re-submit: no unknown audit" + (f" in job {job_id}." if job_id else ".")]
        if plan:
            lines = ["Nothing to re-submit."] + [_skipped_text(v) for v in data["audits_skipped"]]
        return Result(data, "\n".join(lines))
    not_ready = [item for item in plan if not item.ready]
    ctx.say(render_plan(ctx.target.stack, job_id, ready, not_ready, ctx.screen))
    if not may_audit_twice:
        raise CliError(
            f"refused: re-submitting {len(ready)} unknown audit(s) may create a second audit upstream for "
            "each. Ask the upstream first (docs/operations.md#unknown-audits); only if it holds none, add "
            f"{REDRIVE_UNKNOWN_AUDITS_FLAG}",
            EXIT_USAGE,
        )
    if not ctx.confirmed():
        return Result.aborted(data)
    data["confirmed"] = True
    execute(ctx, ready, data)
    return Result(data, render_done(data, ctx.command("audits", "--status", "pending")))


def execute(ctx: Context, ready: list[Resubmission], data: dict[str, Any]) -> None:
    bar = ProgressBar(len(ready), "re-submitting", ctx.stderr, ctx.progress)
    try:
        for item in ready:
            try:
                moved = resubmit(ctx.services, item, ctx.operator)
            except StaleAudit:
                data["audits_skipped"].append({**resubmission_view(item), "why": "changed meanwhile"})
            else:
                data["audits_resubmitted"].append({**audit_view(moved), "send": item.kind})
            bar.advance()
    except Exception:
        ctx.say(f"Stopped after re-submitting {len(data['audits_resubmitted'])} audit(s).")
        raise
    finally:
        bar.close()


def render_done(data: dict[str, Any], follow: str) -> str:
    lines = [
        f"Re-submitted {len(data['audits_resubmitted'])} audit(s) (status submitting), recorded on each as "
        f"re-submitted by {data['redriven_by']}; `{follow}` follows them."
    ]
    lines += [_skipped_text(v) for v in data["audits_skipped"]]
    return "\n".join(lines)


def _skipped_text(view: dict[str, Any]) -> str:
    return f"Left unknown: job {view['job_id']} row {view['row']} ({view['owner']}): {view['why']}"


def render_plan(
    stack: str, job_id: str | None, ready: list[Resubmission], not_ready: list[Resubmission], screen: Screen
) -> str:
    rows = [
        (
            item.kind,
            item.audit.owner_name_masked,
            item.audit.id_card_masked,
            f"{item.audit.job_id[:8]}…/{item.audit.row}",
            item.audit.record_id if item.audit.record_id is not None else "-",
            when(item.audit.updated_at),
            item.audit.last_error,
        )
        for item in ready
    ]
    inner = Screen(max(40, screen.width - 4), screen.wide)
    lines = [
        f"Re-submit unknown audits in stack {stack}"
        + (f", job {job_id} only" if job_id else "")
        + f": {len(ready)} audit(s), each re-read from its upload, set to submitting and queued again:",
        "    " + table(COLUMNS, rows, inner).replace("\n", "\n    "),
        UNKNOWN_AUDITS_WARNING,
    ]
    lines += [_skipped_text(resubmission_view(item)) for item in not_ready]
    return "\n".join(lines)
