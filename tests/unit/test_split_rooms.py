"""The splitter's rooms on the in-memory ports: the two stagers (a real drop's ``BatchStager``, a dry
run's ``DryRunCounter``) hold a file to the same row cap and make the same batches, and only the
real one writes."""

from __future__ import annotations

import pytest

from tests.fakes import MemoryBlobs, MemoryQueue, memory_services
from tests.unit.test_lost_repair_on_fakes import csv_bytes, drop, rows
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.logic.repair_batches import RepairBatch
from verifyfeed.logic.split_context import SplitOutcome
from verifyfeed.logic.staging import BatchStager, DryRunCounter, Stager
from verifyfeed.models.records import BatchStatus, Job, JobKind, JobStatus
from verifyfeed.ports import Services


def services_capped(cap: int) -> Services:
    return memory_services(MAX_ROWS_PER_FILE=str(cap), BATCH_MAX_RECORDS="2", RESEND_WINDOW="off")


@pytest.mark.parametrize("prefix", ["", "dry-run/"])
def test_both_stagers_refuse_a_file_one_row_over_the_cap(prefix: str) -> None:
    services = services_capped(5)
    result = drop(services, f"{prefix}lost-repair/over.csv", csv_bytes(rows(6, 100)))
    assert result.outcome is SplitOutcome.REJECTED
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.REJECTED and "MAX_ROWS_PER_FILE" in job.reason
    assert all(b.status == BatchStatus.DISCARDED for b in services.jobs.batches(result.job_id))


def test_a_dry_run_counts_the_batches_a_real_drop_stages_and_writes_none() -> None:
    services = services_capped(5)
    blobs = services.blobs
    assert isinstance(blobs, MemoryBlobs) and isinstance(services.queue, MemoryQueue)
    body = csv_bytes(rows(5, 200))
    plan = drop(services, "dry-run/lost-repair/five.csv", body)
    assert plan.outcome is SplitOutcome.DRY_RUN and plan.counts.rows_accepted == 5
    assert list(services.jobs.batches(plan.job_id)) == [] and services.queue.bodies == []
    real = drop(services, "lost-repair/five.csv", body)
    assert real.outcome is SplitOutcome.SPLIT and real.counts.rows_accepted == 5
    assert [b.record_count for b in services.jobs.batches(real.job_id)] == [2, 2, 1]


def claim_checks(services: Services) -> list[str]:
    blobs = services.blobs
    assert isinstance(blobs, MemoryBlobs)
    return sorted(key for _, key in blobs.objects if key.startswith(services.settings.claims_prefix))


def test_the_two_stagers_take_the_same_batches_and_only_the_real_one_writes() -> None:
    services = services_capped(4)
    job = Job(
        job_id="rooms-job",
        kind=JobKind.LOST_REPAIR,
        bucket=services.settings.ingest_bucket,
        key="lost-repair/rooms.csv",
        status=JobStatus.SPLITTING,
        created_at="2026-11-25T02:00:00+00:00",
    )
    assert services.jobs.create_job(job)
    run = services.jobs.take_split(job.job_id)
    assert run is not None
    stagers: dict[str, Stager] = {
        "dry run": DryRunCounter(services),
        "real": BatchStager(services, job, run, resuming=False),
    }
    for name, stager in stagers.items():
        stager(RepairBatch(1, 2, b"[]"))
        stager(RepairBatch(2, 2, b"[]"))
        stager.wait()
        assert (stager.staged, stager.records) == ([1, 2], 4), name
        with pytest.raises(FileRejected, match="MAX_ROWS_PER_FILE"):
            stager(RepairBatch(3, 1, b"[]"))
        if name == "dry run":
            assert list(services.jobs.batches(job.job_id)) == [] and claim_checks(services) == []
    staged = list(services.jobs.batches(job.job_id))
    assert [(b.seq, b.status, b.record_count) for b in staged] == [
        (1, BatchStatus.STAGED, 2),
        (2, BatchStatus.STAGED, 2),
    ]
    assert claim_checks(services) == sorted(b.claim_key for b in staged)
    assert stagers["real"].discard() == 2 and claim_checks(services) == []
