"""Per-file reports next to the upload: ``reports/<key>.json`` and ``reports/<key>.rejected.csv``.

The rejected-rows CSV is UTF-8 with a BOM (so Excel opens Chinese text correctly), holds masked
values only, and every cell Excel would evaluate as a formula is neutralised.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from typing import IO, Any

from verifyfeed import aws
from verifyfeed.models.records import Job
from verifyfeed.pii import spreadsheet_safe

REJECTED_COLUMNS = ("row", "rule", "reason", "first_row", "name", "id_number", "phone", "auth_code")


def report_keys(reports_prefix: str, source_key: str) -> tuple[str, str]:
    base = f"{reports_prefix}{source_key}"
    return f"{base}.json", f"{base}.rejected.csv"


class RejectionLog:
    """Rejected rows, spooled to disk past a few MB so memory does not grow with the file."""

    def __init__(self) -> None:
        self._buffer: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
        self._text = io.TextIOWrapper(self._buffer, encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._text)
        self._writer.writerow(REJECTED_COLUMNS)
        self.count = 0
        self.by_rule: dict[str, int] = {}

    def add(
        self, row: int, rule: str, reason: str, masked: dict[str, str], first_row: int | None = None
    ) -> None:
        self.count += 1
        self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        self._writer.writerow(
            [
                row,
                rule,
                spreadsheet_safe(reason),
                "" if first_row is None else first_row,
                *(spreadsheet_safe(masked.get(c, "")) for c in REJECTED_COLUMNS[4:]),
            ]
        )

    def upload(self, bucket: str, key: str) -> None:
        self._text.flush()
        self._buffer.seek(0)
        aws.s3().upload_fileobj(
            self._buffer, bucket, key, ExtraArgs={"ContentType": "text/csv; charset=utf-8"}
        )

    def close(self) -> None:
        self._text.close()


def write_summary(bucket: str, key: str, job: Job, extra: dict[str, Any]) -> None:
    body = {
        "job_id": job.job_id,
        "file": job.key,
        "kind": job.kind.value,
        "status": job.status.value,
        "reason": job.reason,
        "rows_read": job.rows_read,
        "rows_accepted": job.rows_accepted,
        "rows_rejected": job.rows_rejected,
        "batches_total": job.batches_total,
        "batches_succeeded": job.batches_succeeded,
        "batches_failed": job.batches_failed,
        "batches_deferred": job.batches_deferred,
        "batches_unknown": job.batches_unknown,
        **extra,
    }
    aws.s3().put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(body, ensure_ascii=False, indent=2).encode(),
        ContentType="application/json; charset=utf-8",
    )
