"""A dry run: a file under ``dry-run/<kind>/`` is read, validated, deduplicated and reported exactly
like a real drop, and nothing is sent upstream, queued, staged or reserved
(docs/decisions.md#dry-run). What upstream received is the sandbox's ledger."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import Cli, SettingsFactory, drain_queue
from tests.integration.test_splitter import (
    AUDIT_HEADER,
    audit_row,
    csv_bytes,
    put,
    rejected_rows,
    split,
    valid_rows,
)
from verifyfeed.clock import FixedClock
from verifyfeed.models.records import JobStatus
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration


def report(services: Services, job_id: str) -> dict[str, object]:
    job = services.jobs.get_job(job_id)
    assert job is not None and job.report_key
    loaded: dict[str, object] = json.loads(
        boto3.client("s3").get_object(Bucket=job.bucket, Key=job.report_key)["Body"].read()
    )
    return loaded


def test_a_lost_repair_dry_run_reports_what_it_would_send_and_cost_and_sends_nothing(
    make_settings: SettingsFactory,
    clock: FixedClock,
    sandbox: SandboxHandle,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = build_services(make_settings(PRICE_PER_RECORD="0.35", PRICE_CURRENCY="CNY"), clock)
    rows = [*valid_rows(2500, 90_000), ["坏", "110105199001011234", "", "X1"]]  # one bad check digit
    key = f"dry-run/lost-repair/plan-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows)))
    assert result.outcome == "dry_run"
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.DRY_RUN
    assert (job.rows_read, job.rows_accepted, job.rows_rejected) == (2501, 2500, 1)
    summary = report(services, result.job_id)
    assert summary["dry_run"] is True and summary["sent_upstream"] == 0
    assert summary["would_send"] == {"batches": 3, "records_charged_if_accepted": 2500}
    assert summary["cost_if_all_accepted"] == {"price_per_record": 0.35, "currency": "CNY", "amount": 875.0}
    assert [r["code"] for r in rejected_rows(services, key)] == ["id_number.check_digit"]
    # nothing left the building: no upstream call, no message, no batch record, no staged body
    assert sandbox.ledger() == []
    assert [
        m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == result.job_id
    ] == []
    assert list(services.jobs.batches(result.job_id)) == []
    listed = boto3.client("s3").list_objects_v2(
        Bucket=services.settings.ingest_bucket, Prefix=f"claims/{result.job_id}/"
    )
    assert listed.get("KeyCount", 0) == 0

    # the operator's view says what it would send and cost: nothing "in flight", nothing "pending"
    monkeypatch.setenv("PRICE_PER_RECORD", "0.35")  # the stack's PricePerRecord, as the CLI reads it
    code, out, _ = cli("status", key)
    assert code == 0 and "Status:   dry_run" in out
    assert "Would send: 3 batch(es), 2500 record(s) (dry run: nothing sent)" in out
    assert (
        "Cost:     at most 2,500 record(s) × 0.35 CNY = 875.00 CNY, if the upstream accepts every record"
        in out
    )
    assert "in flight" not in out and "pending" not in out and "Next:" not in out
    code, out, _ = cli("status", key, "--json")
    shown = json.loads(out)
    assert shown["would_send"] == summary["would_send"]
    assert shown["cost_if_all_accepted"]["amount"] == 875.0
    monkeypatch.delenv("PRICE_PER_RECORD")  # blank: not known, and said so
    code, out, _ = cli("status", key)
    assert "Cost:     at most 2,500 record(s) × a price not known (the stack's PricePerRecord" in out


def test_a_carrier_audit_dry_run_reserves_and_sends_nothing(
    services: Services, sandbox: SandboxHandle
) -> None:
    rows = [audit_row("2", 830_001), audit_row("2", 830_002), audit_row("4", 830_003)]
    key = f"dry-run/carrier-audit/plan-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=AUDIT_HEADER)))
    assert result.outcome == "dry_run" and result.counts.rows_accepted == 2
    summary = report(services, result.job_id)
    assert summary["would_send"] == {"audits_submitted": 2} and summary["cost_if_all_accepted"] is None
    assert [a for a in services.audits.scan_all() if a.job_id == result.job_id] == []
    assert [e for e in sandbox.ledger() if e.endpoint.startswith("/carrierAudit")] == []
    # the same rows dropped for real afterwards are new audits, not duplicates of the dry run
    real = split(
        services,
        put(services, f"carrier-audit/real-{uuid.uuid4().hex[:6]}.csv", csv_bytes(rows, header=AUDIT_HEADER)),
    )
    assert real.outcome == "split" and real.counts.rows_accepted == 2
