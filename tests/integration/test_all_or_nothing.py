"""A file is all or nothing: a file rejected midway charges nothing (docs/decisions.md#all-or-nothing).

Every assertion about what was sent is made against the sandbox's ledger (what upstream received)
and the work queue (what could have been sent).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import boto3
import openpyxl
import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import SettingsFactory, drain_queue
from tests.integration.test_splitter import (
    AUDIT_HEADER,
    HEADER,
    audit_row,
    csv_bytes,
    put,
    split,
    valid_rows,
)
from verifyfeed.clock import FixedClock
from verifyfeed.models.records import BatchStatus, JobStatus
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration


def damaged_workbook(rows: list[list[str]], keep: float) -> bytes:
    """An .xlsx whose sheet XML is cut after ``keep`` of its length (a damaged download)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    whole = io.BytesIO()
    book.save(whole)
    damaged = io.BytesIO()
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "xl/worksheets/sheet1.xml":
                data = data[: int(len(data) * keep)]
            target.writestr(member, data)
    return damaged.getvalue()


def uploads(sandbox: SandboxHandle) -> int:
    return len([e for e in sandbox.ledger() if e.endpoint.endswith("lost_repair_upload_data")])


def queued_for(services: Services, job_id: str) -> list[dict[str, object]]:
    return [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == job_id]


def claim_checks_of(services: Services, job_id: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(
        Bucket=services.settings.ingest_bucket, Prefix=f"{services.settings.claims_prefix}{job_id}/"
    )
    return [o["Key"] for o in listed.get("Contents", [])]


def report(services: Services, job_id: str) -> dict[str, object]:
    job = services.jobs.get_job(job_id)
    assert job is not None and job.report_key
    body = boto3.client("s3").get_object(Bucket=job.bucket, Key=job.report_key)["Body"].read()
    loaded: dict[str, object] = json.loads(body)
    return loaded


def test_a_workbook_damaged_near_its_end_is_refused_before_its_first_row(
    services: Services, sandbox: SandboxHandle
) -> None:
    """3,000 rows, the sheet cut at 90 %: python-calamine loads the whole sheet before the first row
    is read, so the damage is found before anything is staged (decisions.md#workbooks, "Damage")."""
    key = f"lost-repair/damaged-{uuid.uuid4().hex[:6]}.xlsx"
    result = split(services, put(services, key, damaged_workbook(valid_rows(3000, 40_000), 0.9)))
    assert result.outcome == "rejected"
    assert queued_for(services, result.job_id) == [] and uploads(sandbox) == 0
    assert list(services.jobs.batches(result.job_id)) == [] and claim_checks_of(services, result.job_id) == []
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.REJECTED
    summary = report(services, result.job_id)
    assert summary["reason_code"] == "file.sheet_damaged"
    assert summary["sent_upstream"] == 0 and summary["batches_staged_then_discarded"] == 0


def test_too_many_rows_found_midway_discards_what_was_staged_and_charges_nothing(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A CSV is counted as it is read: two batches of 1,000 were staged before row 2,001 of 2,500
    went over MAX_ROWS_PER_FILE; both are discarded, their bodies deleted, nothing sent."""
    services = build_services(make_settings(MAX_ROWS_PER_FILE="2000", BATCH_MAX_RECORDS="1000"), clock)
    key = f"lost-repair/long-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(2500, 50_000))))
    assert result.outcome == "rejected"
    job = services.jobs.get_job(result.job_id)
    assert job is not None and "MAX_ROWS_PER_FILE (2,000)" in job.reason
    assert queued_for(services, result.job_id) == [] and uploads(sandbox) == 0
    batches = list(services.jobs.batches(result.job_id))
    assert len(batches) == 2 and {b.status for b in batches} == {BatchStatus.DISCARDED}
    assert claim_checks_of(services, result.job_id) == []  # the staged bodies are gone
    summary = report(services, result.job_id)
    assert summary["sent_upstream"] == 0 and summary["batches_staged_then_discarded"] == 2


def test_a_file_over_the_byte_cap_is_rejected_up_front(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(MAX_FILE_BYTES="1000"), clock)
    key = f"lost-repair/big-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(100, 60_000))))
    job = services.jobs.get_job(result.job_id)
    assert result.outcome == "rejected" and job is not None and "MAX_FILE_BYTES (1,000)" in job.reason
    assert list(services.jobs.batches(result.job_id)) == [] and uploads(sandbox) == 0


def test_an_audit_file_rejected_midway_reserves_and_sends_nothing(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    services = build_services(make_settings(MAX_AUDIT_ROWS_PER_FILE="2"), clock)
    key = f"carrier-audit/long-{uuid.uuid4().hex[:6]}.csv"
    rows = [audit_row("2", n) for n in (70_001, 70_002, 70_003)]
    result = split(services, put(services, key, csv_bytes(rows, header=AUDIT_HEADER)))
    assert result.outcome == "rejected"
    assert queued_for(services, result.job_id) == []
    assert [a for a in services.audits.scan_all() if a.job_id == result.job_id] == []
    assert [e for e in sandbox.ledger() if e.endpoint.startswith("/carrierAudit")] == []
