"""What a job's state means: for a script, its exit code; for an operator, the next steps and what
they may cost (docs/decisions.md#exit-codes, #price).

Pure functions of the records, tested as tables (tests/unit/test_cli_advice.py). A step that can
charge again is offered only when the state calls for it (a batch held ``unknown``), with the
records it would send times the price per record, and the flag that says the operator knows;
a failed batch (never charged) points at fixing its rows and dropping the file again.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from verifyfeed.models.records import (
    OPEN_AUDIT_STATUSES,
    SETTLED_JOB_STATUSES,
    AuditStatus,
    Batch,
    BatchStatus,
    Job,
    JobStatus,
)

# exit codes of `status FILE`, `drop --wait` and `watch` (besides 1, 2, 3: commands.py)
EXIT_OK = 0  # every row uploaded (audits: submitted and passed), or rejected by our rules
EXIT_NOT_SETTLED = 4  # not settled (within --timeout): rows or audits still open
EXIT_REFUSED = 5  # settled; the upstream refused or failed some rows (audits: rejected or failed)
EXIT_UNKNOWN = 6  # some batches or audits held unknown: the upstream may have them
EXIT_FILE_REJECTED = 7  # the file was refused as a whole (or was a duplicate): nothing sent
EXIT_DEFERRED = 8  # the blackout holds some batches; they go after it, nothing to do

OUTCOMES = {
    EXIT_OK: "done: every row uploaded (audits: passed), or rejected by our rules",
    EXIT_NOT_SETTLED: "not settled yet",
    EXIT_REFUSED: "settled, with rows the upstream refused or failed",
    EXIT_UNKNOWN: "settled, with batches or audits held unknown",
    EXIT_FILE_REJECTED: "the file was rejected as a whole: nothing sent",
    EXIT_DEFERRED: "deferred: the blackout holds batches, sent after it",
}

REDRIVE_UNKNOWN_FLAG = "--i-understand-this-may-charge-twice"
REDRIVE_UNKNOWN_AUDITS_FLAG = "--i-understand-this-may-create-a-second-audit"

Command = Callable[..., str]  # the words of a verifyfeed command -> the command line as it runs


@dataclass(frozen=True)
class Outcome:
    code: int
    meaning: str

    def view(self) -> dict[str, object]:
        return {"exit_code": self.code, "meaning": self.meaning}


def outcome(job: Job, audits: Mapping[str, int] | None = None) -> Outcome:
    """The job's outcome, the most serious first: the file rejected, rows still open, batches held
    unknown, rows refused or failed upstream, batches deferred; else done. ``audits`` counts a
    carrier-audit job's audits by status."""
    audits = audits or {}

    def has(*statuses: AuditStatus) -> bool:
        return any(audits.get(s.value) for s in statuses)

    if job.status in (JobStatus.REJECTED, JobStatus.DUPLICATE):
        code = EXIT_FILE_REJECTED
    elif job.status == JobStatus.DRY_RUN:
        return Outcome(EXIT_OK, "done: a dry run, read and reported, nothing sent")
    elif (
        job.status not in SETTLED_JOB_STATUSES
        or job.rows_accepted + job.rows_rejected != job.rows_read
        or job.batches_open
        or has(*OPEN_AUDIT_STATUSES)
    ):
        code = EXIT_NOT_SETTLED
    elif job.batches_unknown or has(AuditStatus.UNKNOWN):
        code = EXIT_UNKNOWN
    elif job.batches_failed or has(AuditStatus.FAILED, AuditStatus.REJECTED):
        code = EXIT_REFUSED
    elif job.batches_deferred:
        code = EXIT_DEFERRED
    else:
        code = EXIT_OK
    return Outcome(code, OUTCOMES[code])


@dataclass(frozen=True)
class Cost:
    """What sending ``records`` records may cost: records × the price per record (None: not known)."""

    records: int
    price_per_record: float | None
    currency: str

    @property
    def amount(self) -> float | None:
        return None if self.price_per_record is None else round(self.records * self.price_per_record, 2)

    def text(self) -> str:
        if self.price_per_record is None:
            return (
                f"{self.records:,} record(s) × a price not known (the stack's PricePerRecord, "
                "PRICE_PER_RECORD, is not set)"
            )
        return (
            f"{self.records:,} record(s) × {self.price_per_record:g} {self.currency} = "
            f"{self.amount:,.2f} {self.currency}"
        )

    def view(self) -> dict[str, object]:
        return {**asdict(self), "amount": self.amount}


@dataclass(frozen=True)
class Hint:
    """One next step: the situation, what to do, and the command that does it (``""``: none)."""

    what: str
    then: str
    command: str = ""
    doc: str = ""
    cost: Cost | None = None

    def text(self, width: int = 100) -> str:
        """The step in a few lines of ``width``, the command on a line of its own (to copy whole)."""
        said = f"{self.what}: {self.then}" + (f" ({self.doc})" if self.doc else "")
        lines = textwrap.wrap(
            said,
            width,
            initial_indent="  -> ",
            subsequent_indent="     ",
            break_on_hyphens=False,
            break_long_words=False,
        )
        return "\n".join(lines + ([f"     {self.command}"] if self.command else []))

    def view(self) -> dict[str, object]:
        return {
            "what": self.what,
            "then": self.then,
            "command": self.command or None,
            "doc": self.doc or None,
            "cost": self.cost.view() if self.cost else None,
        }


RE_DROP = "docs/operations.md#re-drop"
UNKNOWN_OUTCOMES = "docs/operations.md#unknown-outcomes"
UNKNOWN_AUDITS = "docs/operations.md#unknown-audits"
CORRECTING = "docs/operations.md#correcting-a-rejected-audit"


def unknown_batches_hint(
    batches: int, records: int, price: float | None, currency: str, redrive: str, where: str = ""
) -> Hint:
    cost = Cost(records, price, currency)
    return Hint(
        what=f"{batches} batch(es), {records:,} record(s) held unknown{where}: the upstream may have "
        "accepted and charged them",
        then="ask the upstream whether it received them (the time, UPDATED, and our API id). Received: "
        f"leave them. Not received: re-drive them, which charges {cost.text()} a second time if it did",
        command=redrive,
        doc=UNKNOWN_OUTCOMES,
        cost=cost,
    )


def lost_repair_hints(
    job: Job, batches: Iterable[Batch], price: float | None, currency: str, command: Command
) -> list[Hint]:
    """The next steps for a lost-repair file, from its batches (``status FILE``)."""
    batches = list(batches)
    hints: list[Hint] = []
    refused = [b for b in batches if b.status == BatchStatus.FAILED and b.refused_record]
    failed = [b for b in batches if b.status == BatchStatus.FAILED and not b.refused_record]
    unknown = [b for b in batches if b.status == BatchStatus.UNKNOWN]
    if refused:
        hints.append(
            Hint(
                what=f"{len(refused)} record(s) refused by the upstream, not charged",
                then="fix those rows in the sheet (reasons above) and drop the whole sheet again: only the "
                "rows not uploaded are sent",
                doc=RE_DROP,
            )
        )
    if failed:
        hints.append(
            Hint(
                what=f"{len(failed)} batch(es), {sum(b.record_count for b in failed):,} record(s) failed, "
                "not charged",
                then="the last error says why. A cause in the rows: fix them and drop the sheet again. "
                "A cause since fixed elsewhere (credentials, an outage, a refusal settled with the "
                "upstream): re-drive them, charged once if accepted",
                command=command("redrive", "--failed", "--job", job.job_id),
                doc=RE_DROP,
            )
        )
    if unknown:
        hints.append(
            unknown_batches_hint(
                len(unknown),
                sum(b.record_count for b in unknown),
                price,
                currency,
                command("redrive", "--unknown", "--job", job.job_id, REDRIVE_UNKNOWN_FLAG),
            )
        )
    return hints


def carrier_audit_hints(job: Job, audits: Mapping[str, int], command: Command) -> list[Hint]:
    """The next steps for a carrier-audit file, from its audits' statuses (``status FILE``)."""
    hints: list[Hint] = []
    corrections = audits.get(AuditStatus.REJECTED.value, 0) + audits.get(AuditStatus.FAILED.value, 0)
    if corrections:
        hints.append(
            Hint(
                what=f"{corrections} audit(s) rejected or refused by the upstream",
                then="correct those rows (remarks and errors: `audits --status rejected|failed`) and drop "
                "just them again: each goes to /carrierAudit/update of its record",
                doc=CORRECTING,
            )
        )
    unknown = audits.get(AuditStatus.UNKNOWN.value, 0)
    if unknown:
        hints.append(
            Hint(
                what=f"{unknown} audit(s) held unknown: the upstream may hold them already",
                then="ask the upstream whether it holds an audit for that owner created then. It does: "
                "leave it. It does not: re-submit, which creates a second audit upstream if it did",
                command=command(
                    "redrive", "--unknown-audits", "--job", job.job_id, REDRIVE_UNKNOWN_AUDITS_FLAG
                ),
                doc=UNKNOWN_AUDITS,
            )
        )
    return hints


def overview_hints(
    failed: list[Batch], unknown: list[Batch], price: float | None, currency: str, command: Command
) -> list[Hint]:
    """The next steps for the batches held across jobs (``status``): each file's own status says
    which rows and which command; nothing here re-drives."""
    hints: list[Hint] = []
    if failed:
        jobs = sorted({b.job_id for b in failed})
        hints.append(
            Hint(
                what=f"{len(failed)} failed batch(es) in {len(jobs)} file(s), not charged",
                then="each file's status says which rows to fix and drop again, or when a re-drive is right"
                + _first(jobs),
                command=command("status", jobs[0]),
                doc=RE_DROP,
            )
        )
    if unknown:
        jobs = sorted({b.job_id for b in unknown})
        records = sum(b.record_count for b in unknown)
        cost = Cost(records, price, currency)
        hints.append(
            Hint(
                what=f"{len(unknown)} unknown batch(es), {records:,} record(s) in {len(jobs)} file(s): the "
                "upstream may have accepted and charged them",
                then=f"ask the upstream first; re-driving them may charge {cost.text()} a second time. "
                "Each file's status says how" + _first(jobs),
                command=command("status", jobs[0]),
                doc=UNKNOWN_OUTCOMES,
                cost=cost,
            )
        )
    return hints


def _first(jobs: list[str]) -> str:
    return "" if len(jobs) == 1 else f"; below, the first of {len(jobs)} files"
