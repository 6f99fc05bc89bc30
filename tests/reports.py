"""A job's reports as tests read them: where they are (the job's own, ``ReportPaths``) and their rows,
the report's own columns by short names (``row``, ``code``, ``zh``, ``en``, ``first_row``), the
masked values under the labels of the file's header (``姓名``, ``身份证号`` ...)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from verifyfeed.logic.reports import CODE, FIRST_ROW, REASON_EN, REASON_ZH, ROW, ReportPaths
from verifyfeed.models.records import Job
from verifyfeed.ports import Services

SHORT = {ROW: "row", CODE: "code", REASON_ZH: "zh", REASON_EN: "en", FIRST_ROW: "first_row"}


def newest_job(services: Services, key: str) -> Job:
    """The job of the latest upload of ``key``."""
    jobs = services.jobs.find_jobs(key)
    assert jobs, f"no job for {key}"
    return jobs[0]


def paths_of(services: Services, job: Job | str) -> ReportPaths:
    """The reports of ``job`` (a job, or the S3 key of an upload: its latest job)."""
    found = newest_job(services, job) if isinstance(job, str) else job
    return ReportPaths.for_job(found, services.settings.reports_prefix)


def csv_rows(raw: bytes) -> list[dict[str, str]]:
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to open UTF-8"
    return [
        {SHORT.get(k, k): v for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    ]


def rejected_rows(services: Services, job: Job | str) -> list[dict[str, str]]:
    """The rows to fix."""
    return csv_rows(services.blobs.get(services.settings.ingest_bucket, paths_of(services, job).rejected))


def already_uploaded_rows(services: Services, job: Job | str) -> list[dict[str, str]]:
    return csv_rows(
        services.blobs.get(services.settings.ingest_bucket, paths_of(services, job).already_uploaded)
    )


def summary_of(services: Services, job: Job | str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        services.blobs.get(services.settings.ingest_bucket, paths_of(services, job).summary)
    )
    return loaded


# the header facts' note of a file with one title row above its header (row 2)
TITLE_ROW_NOTE = (
    "row(s) 1 above the header (row 2) skipped as a title / 表头（第 2 行）上方的第 1 行为标题，已跳过"
)
