"""Logic that needs storage, on the in-memory ports (tests/fakes/): no moto, no AWS SDK."""

from __future__ import annotations

import csv
import inspect
import io
import json

import pytest

from tests.fakes import MemoryBlobs, MemoryQueue
from verifyfeed.logic.reports import (
    NO_HEADER,
    RejectionLog,
    header_key,
    read_header_facts,
    report_keys,
    write_header_facts,
    write_summary,
)
from verifyfeed.models.records import Job, JobKind, JobStatus
from verifyfeed.ports import BlobError, Blobs, WorkQueue


def a_job(key: str) -> Job:
    return Job(
        job_id="j1",
        kind=JobKind.LOST_REPAIR,
        bucket="b",
        key=key,
        status=JobStatus.COMPLETED,
        created_at="2026-12-01T00:00:00+00:00",
        rows_read=3,
        rows_accepted=2,
        rows_rejected=1,
        rows_already_uploaded=1,
    )


@pytest.mark.parametrize(("port", "fake"), [(Blobs, MemoryBlobs), (WorkQueue, MemoryQueue)])
def test_the_fakes_have_the_ports_methods_with_their_parameters(port: type, fake: type) -> None:
    methods = [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        expected = list(inspect.signature(getattr(port, name)).parameters)
        assert list(inspect.signature(getattr(fake, name)).parameters) == expected, name


def test_a_summary_copies_the_header_facts_stored_beside_it() -> None:
    blobs = MemoryBlobs()
    key = "lost-repair/x.csv"
    summary_key, _ = report_keys("reports/", key)
    facts = {"header_row": 2, "ignored_columns": ["备注"], "notes": ["a title row above the header"]}
    write_header_facts(blobs, "b", header_key("reports/", key), facts)
    write_summary(blobs, "b", summary_key, a_job(key), {"sent_upstream": 2})
    summary = json.loads(blobs.get("b", summary_key))
    assert summary["ignored_columns"] == ["备注"] and summary["header_row"] == 2
    assert (summary["rows_already_uploaded"], summary["sent_upstream"]) == (1, 2)


def test_a_summary_without_header_facts_says_so_and_a_refused_read_is_not_missing() -> None:
    blobs = MemoryBlobs()
    assert read_header_facts(blobs, "b", "reports/none.header.json") is None
    write_summary(blobs, "b", "reports/y.csv.json", a_job("lost-repair/y.csv"), {})
    summary = json.loads(blobs.get("b", "reports/y.csv.json"))
    assert (summary["header_row"], summary["ignored_columns"]) == (NO_HEADER["header_row"], [])

    class Refusing(MemoryBlobs):
        def get(self, bucket: str, key: str) -> bytes:
            raise BlobError("get: AccessDenied", code="AccessDenied")

    with pytest.raises(BlobError):
        read_header_facts(Refusing(), "b", "reports/z.header.json")


def test_the_rejected_rows_report_is_a_bom_csv_with_a_reason_a_row() -> None:
    blobs = MemoryBlobs()
    log = RejectionLog()
    log.add(2, "id_number.check_digit", "=HYPERLINK(bad)", {"name": "张*", "id_number": "****1234"})
    log.upload(blobs, "b", "reports/x.csv.rejected.csv")
    log.close()
    raw = blobs.get("b", "reports/x.csv.rejected.csv")
    assert raw.startswith(b"\xef\xbb\xbf")
    [row] = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert row["rule"] == "id_number.check_digit" and row["reason"].startswith("'=")  # formula defused
    assert blobs.content_types[("b", "reports/x.csv.rejected.csv")].startswith("text/csv")
