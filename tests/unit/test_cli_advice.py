"""What a job's state means (verifyfeed_cli/advice.py), as tables: the exit code a script gets, and
the next steps an operator is shown, none of which can charge again unless the state calls for it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from verifyfeed.models.ids import batch_label, tree_seq
from verifyfeed.models.records import Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed_cli.advice import (
    REDRIVE_UNKNOWN_AUDITS_FLAG,
    REDRIVE_UNKNOWN_FLAG,
    Cost,
    Hint,
    carrier_audit_hints,
    lost_repair_hints,
    outcome,
    overview_hints,
)
from verifyfeed_cli.app import build_parser

ROOT = Path(__file__).resolve().parents[2]
JOB_ID = "a" * 24


def a_job(status: JobStatus = JobStatus.COMPLETED, kind: JobKind = JobKind.LOST_REPAIR, **counts: int) -> Job:
    values: dict[str, Any] = {
        "rows_read": 10,
        "rows_accepted": 10,
        "batches_total": 2,
        "batches_succeeded": 2,
    }
    values.update(counts)
    return Job(
        job_id=JOB_ID,
        kind=kind,
        bucket="b",
        key="lost-repair/x.csv",
        status=status,
        created_at="2026-11-25T10:00:00.000+08:00",
        **values,
    )


def a_batch(seq: int, status: BatchStatus, records: int = 5, refused: str = "") -> Batch:
    return Batch(
        job_id=JOB_ID,
        seq=seq,
        batch_id=f"{JOB_ID}#{seq:05d}",
        status=status,
        record_count=records,
        refused_record=refused,
    )


def command(*words: str) -> str:
    return shlex.join([".venv/bin/verifyfeed", "--local", *words])


# ---- exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "audits", "code"),
    [
        (a_job(), None, 0),
        (a_job(rows_rejected=3, rows_read=13), None, 0),  # rows our rules rejected: still done
        (a_job(JobStatus.DRY_RUN, batches_succeeded=0), None, 0),
        (a_job(JobStatus.UPLOADING, batches_succeeded=1), None, 4),
        (a_job(JobStatus.SPLITTING, batches_total=0, batches_succeeded=0), None, 4),
        (a_job(rows_read=11), None, 4),  # counts that do not add up are not settled
        (a_job(JobStatus.COMPLETED_WITH_ERRORS, batches_succeeded=1, batches_failed=1), None, 5),
        (a_job(JobStatus.COMPLETED_WITH_ERRORS, batches_succeeded=1, batches_unknown=1), None, 6),
        (  # unknown outranks refused
            a_job(
                JobStatus.COMPLETED_WITH_ERRORS,
                batches_total=3,
                batches_succeeded=1,
                batches_failed=1,
                batches_unknown=1,
            ),
            None,
            6,
        ),
        (a_job(JobStatus.REJECTED, batches_total=0, batches_succeeded=0, rows_accepted=0), None, 7),
        (
            a_job(JobStatus.DUPLICATE, batches_total=0, batches_succeeded=0, rows_read=0, rows_accepted=0),
            None,
            7,
        ),
        (a_job(JobStatus.DEFERRED, batches_succeeded=1, batches_deferred=1), None, 8),
        (  # refused outranks deferred: it needs doing now
            a_job(
                JobStatus.DEFERRED, batches_total=3, batches_succeeded=1, batches_failed=1, batches_deferred=1
            ),
            None,
            5,
        ),
        (a_job(kind=JobKind.CARRIER_AUDIT), {"passed": 2}, 0),
        (a_job(kind=JobKind.CARRIER_AUDIT), {"passed": 1, "pending": 1}, 4),
        (a_job(kind=JobKind.CARRIER_AUDIT), {"passed": 1, "rejected": 1}, 5),
        (
            a_job(kind=JobKind.CARRIER_AUDIT, batches_succeeded=1, batches_failed=1),
            {"passed": 1, "failed": 1},
            5,
        ),
        (a_job(JobStatus.COMPLETED_WITH_ERRORS, JobKind.CARRIER_AUDIT), {"passed": 1, "unknown": 1}, 6),
    ],
)
def test_the_outcome_of_a_job_is_its_exit_code(job: Job, audits: dict[str, int] | None, code: int) -> None:
    assert outcome(job, audits).code == code


def test_every_outcome_is_documented_in_the_help_and_the_runbook(capsys: pytest.CaptureFixture[str]) -> None:
    from verifyfeed_cli.app import main

    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    runbook = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in range(9):
        assert re.search(rf"^ *{code} ", shown, re.M), code
        assert re.search(rf"^\| {code} \|", runbook, re.M), code
        assert f"{code} " in readme


# ---- next steps ------------------------------------------------------------------------------------


def every_command(hints: list[Hint]) -> str:
    return "\n".join(h.command for h in hints)


def test_a_refused_row_points_at_the_re_drop_and_nothing_that_can_charge() -> None:
    job = a_job(JobStatus.COMPLETED_WITH_ERRORS, batches_succeeded=1, batches_failed=1)
    batches = [
        a_batch(1, BatchStatus.SUCCEEDED),
        a_batch(tree_seq(2, 3), BatchStatus.FAILED, 1, refused="HT2"),
    ]
    (hint,) = lost_repair_hints(job, batches, 0.35, "CNY", command)
    assert hint.command == "" and hint.doc == "docs/operations.md#re-drop"
    assert "drop the whole sheet again" in hint.then and "not charged" in hint.what


def test_a_failed_batch_may_be_redriven_as_failed_only() -> None:
    job = a_job(JobStatus.COMPLETED_WITH_ERRORS, batches_succeeded=1, batches_failed=1)
    (hint,) = lost_repair_hints(job, [a_batch(1, BatchStatus.FAILED, 7)], None, "CNY", command)
    assert hint.command == command("redrive", "--failed", "--job", JOB_ID)
    assert "--unknown" not in hint.text() and hint.cost is None


def test_an_unknown_batch_says_what_a_redrive_may_charge_again_and_needs_the_flag() -> None:
    job = a_job(JobStatus.COMPLETED_WITH_ERRORS, batches_succeeded=1, batches_unknown=1)
    batches = [a_batch(1, BatchStatus.SUCCEEDED), a_batch(2, BatchStatus.UNKNOWN, 1000)]
    (hint,) = lost_repair_hints(job, batches, 0.35, "CNY", command)
    assert hint.command == command("redrive", "--unknown", "--job", JOB_ID, REDRIVE_UNKNOWN_FLAG)
    assert hint.cost == Cost(1000, 0.35, "CNY") and hint.cost.amount == 350.0
    assert "1,000 record(s) × 0.35 CNY = 350.00 CNY a second time" in " ".join(hint.text().split())
    assert "ask the upstream" in hint.then
    (unpriced,) = lost_repair_hints(job, batches, None, "CNY", command)
    assert unpriced.cost is not None and unpriced.cost.amount is None
    assert "a price not known (the stack's PricePerRecord, PRICE_PER_RECORD, is not set)" in unpriced.then


def test_nothing_held_nothing_to_do() -> None:
    assert lost_repair_hints(a_job(), [a_batch(1, BatchStatus.SUCCEEDED)], 0.35, "CNY", command) == []
    assert overview_hints([], [], 0.35, "CNY", command) == []
    assert carrier_audit_hints(a_job(kind=JobKind.CARRIER_AUDIT), {"passed": 2}, command) == []


def test_the_overview_never_redrives_it_sends_to_the_files_status() -> None:
    failed = [a_batch(1, BatchStatus.FAILED)]
    unknown = [a_batch(2, BatchStatus.UNKNOWN, 3), a_batch(3, BatchStatus.UNKNOWN, 4)]
    hints = overview_hints(failed, unknown, 0.5, "CNY", command)
    assert [h.command for h in hints] == [command("status", JOB_ID)] * 2
    assert "redrive" not in "".join(h.text() for h in hints)
    assert hints[1].cost == Cost(7, 0.5, "CNY")


def test_audits_held_unknown_need_the_flag_rejected_ones_a_correction() -> None:
    job = a_job(JobStatus.COMPLETED_WITH_ERRORS, JobKind.CARRIER_AUDIT)
    correct, resubmit = carrier_audit_hints(job, {"rejected": 1, "failed": 1, "unknown": 2}, command)
    assert correct.command == "" and "2 audit(s) rejected or refused" in correct.what
    assert resubmit.command == command(
        "redrive", "--unknown-audits", "--job", JOB_ID, REDRIVE_UNKNOWN_AUDITS_FLAG
    )


def test_a_hint_wraps_its_words_and_keeps_its_command_on_one_line() -> None:
    hint = Hint(what="w " * 80, then="t " * 80, command="x " * 70, doc="docs/operations.md#re-drop")
    lines = hint.text(width=60).splitlines()
    assert all(len(line) <= 60 for line in lines[:-1]) and lines[-1] == "     " + "x " * 70
    assert "docs/operations.md#re-drop" in hint.text(width=60)  # never broken at its hyphen


# ---- names that say what a batch is -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "label"),
    [
        (1, "#1"),
        (12, "#12"),
        (tree_seq(1, 2), "#1.1"),
        (tree_seq(1, 3), "#1.2"),
        (tree_seq(7, 13), "#7.2.1.2"),
    ],
)
def test_a_batch_is_named_by_its_place_in_the_file(seq: int, label: str) -> None:
    assert batch_label(seq) == label


# ---- the runbook's commands run as printed ----------------------------------------------------------


def runbook_commands() -> list[str]:
    """Every ``verifyfeed ...`` command in a code block of the runbook and the README."""
    found = []
    for doc in ("docs/operations.md", "README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for line in block.splitlines():
                words = line.split("#", 1)[0].strip()
                if re.match(r"^(\.venv/bin/)?verifyfeed ", words):
                    found.append(words)
    return found


def test_the_runbook_has_commands_to_check() -> None:
    assert len(runbook_commands()) >= 15


@pytest.mark.parametrize("line", runbook_commands())
def test_every_command_in_the_runbook_parses_and_names_its_cli(line: str) -> None:
    words = shlex.split(line)
    assert words[0] == ".venv/bin/verifyfeed", "not on PATH: write .venv/bin/verifyfeed"
    args = build_parser().parse_args(words[1:])
    if args.command == "redrive" and args.unknown:
        assert args.may_charge_twice, "a re-drive from unknown needs its flag"
    if args.command == "redrive" and args.unknown_audits:
        assert args.may_audit_twice, "a re-submission from unknown needs its flag"


# ---- counts that add up, and say what they are -----------------------------------------------------


def test_the_progress_line_counts_each_audit_once_by_what_happened_to_it() -> None:
    from verifyfeed_cli.views import progress_line as _progress_line

    held = a_job(JobStatus.COMPLETED_WITH_ERRORS, JobKind.CARRIER_AUDIT, batches_total=1, batches_succeeded=0)
    held = held.model_copy(update={"batches_unknown": 1})
    assert _progress_line(held, {"unknown": 1}).endswith("; audits 1 in all = 1 held unknown")
    decided = a_job(kind=JobKind.CARRIER_AUDIT, batches_total=4, batches_succeeded=4)
    line = _progress_line(decided, {"passed": 2, "rejected": 1})
    assert line.endswith("; audits 4 in all = 2 passed + 1 rejected + 1 corrected by a later file")


def test_the_batches_add_up_with_the_ones_split_in_halves() -> None:
    from verifyfeed_cli.views import batches_compact as _batches
    from verifyfeed_cli.views import batches_text as _batches_text
    from verifyfeed_cli.views import progress_line as _progress_line

    split = a_job(
        JobStatus.COMPLETED_WITH_ERRORS,
        batches_total=11,
        batches_succeeded=5,
        batches_bisected=5,
        batches_failed=1,
    )
    assert _batches(split) == "11/5/5/1/0/0/0"
    assert _batches_text(split) == (
        "11 in all = 5 succeeded + 5 split in halves + 1 failed + 0 unknown + 0 deferred + 0 in flight"
    )
    dry = a_job(JobStatus.DRY_RUN, batches_total=2, batches_succeeded=0, rows_accepted=1500, rows_read=1500)
    assert _batches(dry) == "dry run: 2 to send"
    assert _progress_line(dry, {}).endswith("; a real drop would send 2 batch(es), 1500 record(s)")


def test_a_settled_job_is_followed_until_its_report_is_written() -> None:
    from verifyfeed.logic.reports import ReportPaths
    from verifyfeed_cli.commands.watch import settled as _settled
    from verifyfeed_cli.views import ReportLine, report_line

    def _report_line(job: Any, paths: ReportPaths, written: bool) -> ReportLine:
        return report_line(job, paths, written, command("report", job.job_id))

    closing = a_job()  # completed: the report follows the status (logic/progress.py)
    paths = ReportPaths.for_job(closing, "reports/")
    assert not _settled(closing, {}, False)
    unwritten = _report_line(closing, paths, False)
    assert unwritten.text.startswith("being written: the job settled at") and unwritten[1:] == ("", "")
    assert _settled(closing, {}, True)
    assert _report_line(closing, paths, True) == (
        f"s3://b/{paths.summary}",
        command("report", closing.job_id),
        "",
    )
    reopened = closing.model_copy(update={"status": JobStatus.UPLOADING})  # re-driven: settles again
    assert _report_line(reopened, paths, True).note == (
        "of its last settlement, written again when it settles again"
    )
    assert _settled(
        a_job(JobStatus.DEFERRED, batches_succeeded=1, batches_deferred=1), {}, False
    )  # no report
    assert not _settled(closing, {"pending": 1}, True)


@pytest.mark.parametrize(
    ("status", "serial", "said"),
    [
        (BatchStatus.SUCCEEDED, "SBX1", "#1.2 uploaded, serial SBX1"),
        (BatchStatus.SUCCEEDED, "", "#1.2 uploaded, no serial number given"),
        (BatchStatus.BISECTED, "", "#1.2 refused whole (state 0), split in halves"),
        (BatchStatus.FAILED, "", "#1.2 refused (state 0), not charged"),
    ],
)
def test_each_answer_says_what_it_was(status: BatchStatus, serial: str, said: str) -> None:
    from verifyfeed_cli.views import answer_text as _answer_text

    batch = a_batch(tree_seq(1, 3), status).model_copy(update={"serial_no": serial})
    assert _answer_text(batch) == said
