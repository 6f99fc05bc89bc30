"""What the commands print fits one screen: 80 columns (a CJK character two), the important columns
kept, ``--wide`` for the rest; every command says what it is for, without the global options again.

The renderers are fed real records (the collectors' output shape), no AWS."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from verifyfeed.logic.reports import ReportPaths
from verifyfeed.models.ids import tree_seq
from verifyfeed.models.records import Audit, AuditStatus, Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed_cli.advice import outcome
from verifyfeed_cli.app import COMMANDS, build_parser
from verifyfeed_cli.commands import audits, deferred, status
from verifyfeed_cli.output import Screen, width
from verifyfeed_cli.views import audit_view, batch_table, job_view

LONG_NAME = "lost-repair/客户失联修复名单（第三批，已核对）2026年12月6日.xlsx"


def command(*words: str) -> str:
    return shlex.join(["verifyfeed", "--local", *words])


def a_job(n: int, key: str = LONG_NAME, status_: JobStatus = JobStatus.COMPLETED_WITH_ERRORS) -> Job:
    return Job(
        job_id=f"{n:024x}",
        kind=JobKind.LOST_REPAIR,
        bucket="ingest-bucket",
        key=key,
        status=status_,
        created_at="2026-12-06T10:00:00.000+08:00",
        updated_at="2026-12-06T10:05:00.000+08:00",
        rows_read=3000,
        rows_accepted=2995,
        rows_rejected=5,
        batches_total=4,
        batches_succeeded=3,
        batches_failed=1,
    )


def a_batch(job: Job, seq: int, error: str) -> Batch:
    return Batch(
        job_id=job.job_id,
        seq=seq,
        batch_id=f"{job.job_id}#{seq:05d}",
        status=BatchStatus.FAILED,
        record_count=1000,
        attempts=3,
        last_error=error,
        updated_at="2026-12-06T10:04:00.000+08:00",
    )


def an_audit(row: int) -> Audit:
    return Audit(
        audit_key=f"k{row}",
        job_id="c" * 24,
        row=row,
        usage="营运车辆",
        owner_name_masked="欧阳*",
        id_card_masked="110101********1234",
        id_card_digest="d" * 64,
        phone_masked="138****0000",
        plate="京A12345",
        status=AuditStatus.REJECTED,
        record_id=1000004098 + row,
        remarks="行驶证照片不清晰，请重新上传车主身份证正反面照片以及行驶证副页",
        updated_at="2026-12-06T10:04:00.000+08:00",
    )


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_fits(text: str, columns: int = 80) -> None:
    too_wide = [line for line in lines_of(text) if width(line) > columns and "  " in line.strip()]
    assert not too_wide, f"table lines wider than {columns} columns: {too_wide}"


def test_the_overview_fits_80_columns_and_says_what_wide_adds() -> None:
    jobs = [a_job(i) for i in range(3)] + [a_job(9, "lost-repair/list.csv", JobStatus.UPLOADING)]
    data = {
        "stack": {"stack": "verifyfeed-local", "mode": "local", "region": "us-east-1", "bucket": "b"},
        "jobs": [job_view(j) for j in jobs],
        "queues": {"work_waiting": 0, "work_in_flight": 2, "dead_letter": 0, "splitter_failures": 0},
        "batches_needing_attention": {"failed": 3, "unknown": 0, "deferred": 0},
        "next_steps": [],
    }
    text = status.render_overview(status.Overview(data, jobs, []), Screen(80), command)
    table = [line for line in lines_of(text) if line.startswith(("FILE", "客户", "list.csv"))]
    assert len(table) == 5 and all(width(line) <= 80 for line in table), table
    assert table[0].split()[:3] == ["FILE", "STATUS", "ROWS"]
    assert "completed_with_errors" in table[1] and "3000/2995/5" in table[1]
    cell = table[1].split("  ")[0]  # cut in the middle: its start and its end kept
    assert cell.startswith("客户") and cell.endswith("6日.xlsx") and "…" in cell
    assert "(not shown, to fit 80 columns: " in text and "JOB" in text.split("(not shown")[1]
    wide = status.render_overview(status.Overview(data, jobs, []), Screen(80, wide=True), command)
    file_name = LONG_NAME.rsplit("/", 1)[1]  # the kind has a column of its own
    assert file_name in wide and jobs[0].job_id in wide and "not shown" not in wide


def test_one_job_with_failed_batches_fits_80_columns() -> None:
    job = a_job(1)
    batches = [a_batch(job, tree_seq(n, 1), "upstream refused: 授权码格式不正确 " * 4) for n in (1, 2)]
    paths = ReportPaths.for_job(job, "reports/")
    data: dict[str, Any] = {
        "header": {"header_row": 2, "ignored_columns": ["序号", "备注"], "notes": []},
        "records": None,
        "report": f"s3://b/{paths.summary}",
        "rejected_rows_report": f"s3://b/{paths.rejected}",
        "refused_records": [],
    }
    view = status.JobStatusView(data, job, [], paths, True, batches, batches, [], [], outcome(job), None)
    text = status.render_job(view, Screen(80), command)
    table = text.split("Batches not succeeded:\n")[1].split("\nOutcome:")[0]
    assert_fits(table)
    assert "  #1  " in table and "failed" in table and "1000" in table and "…" in table


def test_the_batch_table_keeps_status_and_records_and_cuts_the_error() -> None:
    job = a_job(2)
    text = batch_table([a_batch(job, 3, "x" * 200)], Screen(80))
    head, row = lines_of(text)[:2]
    assert width(row) <= 80 and row.endswith("…")
    for column in ("#", "STATUS", "RECORDS", "LAST ERROR"):
        assert column in head
    assert "x" * 200 in batch_table([a_batch(job, 3, "x" * 200)], Screen(80, wide=True))


def test_the_audits_table_fits_80_columns_masked_with_chinese_remarks() -> None:
    views = [{**audit_view(an_audit(r)), "file": "carrier-audit/车主审核名单.xlsx"} for r in (2, 3)]
    counts = {s.value: 0 for s in AuditStatus} | {"rejected": 2}
    text = audits.render(
        audits.AuditsView({"counts": counts, "status": None, "audits": views}, 50), Screen(80), command
    )
    rows = [line for line in lines_of(text) if line.startswith(("RECORD", "1000"))]
    assert len(rows) == 3 and all(width(line) <= 80 for line in rows), rows
    assert "欧阳*" in rows[1] and "rejected" in rows[1] and "行驶证" in rows[1]
    assert "京A12345" not in text  # the plate is masked in every width
    wide = audits.render(
        audits.AuditsView({"counts": counts, "status": None, "audits": views}, 50), Screen(80, True), command
    )
    assert "请重新上传车主身份证正反面照片以及行驶证副页" in wide and "车主审核名单.xlsx" in wide


def test_the_deferred_table_fits_80_columns() -> None:
    group = {
        "job_id": "e" * 24,
        "file": LONG_NAME,
        "batches": 12,
        "records": 11_500,
        "deferred_since": "2026-11-26T16:00:00+00:00",
        "resumes_at": "2026-11-30T16:00:00+00:00",
    }
    data = {
        "blackout": {
            "in_force": True,
            "until": "2026-11-30T16:00:00+00:00",
            "start_day": 27,
            "resume_day": 1,
        },
        "jobs": [group],
        "total_batches": 12,
        "total_records": 11_500,
    }
    text = deferred.render(deferred.DeferredView(data), Screen(80))
    rows = [line for line in lines_of(text) if line.startswith(("JOB", "FILE", "eeee", "lost-repair"))]
    assert rows and all(width(line) <= 80 for line in rows), rows
    assert "11500" in text and "2026-12-01 00:00" in text


@pytest.mark.parametrize("name", [c.__name__.rsplit(".", 1)[1] for c in COMMANDS])
def test_each_command_says_what_it_is_for_without_the_global_options(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    help_text = capsys.readouterr().out
    description = help_text.split("\n\n")[1]
    assert len(description.split()) >= 8, f"{name} --help has no description"
    for option in ("--endpoint-url", "--profile", "--jobs-table", "--queue-url", "--dlq-url"):
        assert option not in help_text, f"{name} --help repeats the global {option}"
    assert "go before or after the command" in help_text


def test_the_global_options_are_listed_once_by_the_top_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert help_text.count("\n  --endpoint-url ENDPOINT_URL") == 1 and "\n  --wide" in help_text
    assert build_parser().parse_args(["audits", "--wide"]).wide is True
