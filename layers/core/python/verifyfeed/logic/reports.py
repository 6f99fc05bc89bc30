"""Per-file reports next to the upload: ``reports/<key>.json`` and ``reports/<key>.rejected.csv``,
and ``reports/<key>.header.json`` — what the splitter learnt of the header row.

The rejected-rows CSV is UTF-8 with a BOM (so Excel opens Chinese text correctly), holds masked
values only, and every cell Excel would evaluate as a formula is neutralised.

The header facts (``HeaderMap.facts()``: ``header_row``, ``ignored_columns`` — every column we did
not use, by its label — and ``notes``, e.g. a title row skipped) are written by the splitter as soon
as it has read the header, before the job can settle; ``write_summary`` copies them into the
summary, so the report that the job's last batch writes has them too, and ``verifyfeed status``
reads them while the job runs. They hold column labels only, never a cell value
(decisions.md#header-synonyms). ``NO_HEADER`` are the facts of a file rejected before its header
was read.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable
from typing import IO, Any

from aws_lambda_powertools import Logger

from verifyfeed.models.records import Batch, BatchStatus, Job
from verifyfeed.pii import mask_object_key, spreadsheet_safe
from verifyfeed.ports import BlobError, Blobs

REJECTED_COLUMNS = ("row", "rule", "reason", "first_row", "name", "id_number", "phone", "auth_code")
logger = Logger(child=True)

NO_HEADER: dict[str, Any] = {"header_row": None, "ignored_columns": [], "notes": []}
_HEADER_SUFFIX = ".header.json"


def report_keys(reports_prefix: str, source_key: str) -> tuple[str, str]:
    base = f"{reports_prefix}{source_key}"
    return f"{base}.json", f"{base}.rejected.csv"


def header_key(reports_prefix: str, source_key: str) -> str:
    return f"{reports_prefix}{source_key}{_HEADER_SUFFIX}"


def write_header_facts(blobs: Blobs, bucket: str, key: str, facts: dict[str, Any]) -> None:
    body = json.dumps(facts, ensure_ascii=False, indent=2).encode()
    blobs.put(bucket, key, body, "application/json; charset=utf-8")


def read_header_facts(blobs: Blobs, bucket: str, key: str) -> dict[str, Any] | None:
    """The header facts the splitter stored, ``None`` when there are none (yet)."""
    try:
        body = blobs.get(bucket, key)
    except BlobError as exc:
        if exc.missing:
            return None
        raise
    facts = json.loads(body)
    return {name: facts.get(name, default) for name, default in NO_HEADER.items()}


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

    def upload(self, blobs: Blobs, bucket: str, key: str) -> None:
        self._text.flush()
        self._buffer.seek(0)
        blobs.put_file(bucket, key, self._buffer, "text/csv; charset=utf-8")

    def close(self) -> None:
        self._text.close()


def write_summary(
    blobs: Blobs, bucket: str, key: str, job: Job, extra: dict[str, Any], header: dict[str, Any] | None = None
) -> None:
    """The summary at ``key`` (``reports/<file>.json``), with the header facts ``header`` or, when
    not given, those stored next to it (``reports/<file>.header.json``)."""
    if header is None:
        try:
            header = read_header_facts(blobs, bucket, key.removesuffix(".json") + _HEADER_SUFFIX) or NO_HEADER
        except BlobError as exc:  # the report matters more than its header facts
            logger.warning(
                "header facts unreadable; report written without them",
                extra={"key": mask_object_key(key), "error": type(exc).__name__},
            )
            header = NO_HEADER
    body = {
        "job_id": job.job_id,
        "file": job.key,
        "kind": job.kind.value,
        "status": job.status.value,
        "reason": job.reason,
        "rows_read": job.rows_read,
        "rows_accepted": job.rows_accepted,
        "rows_rejected": job.rows_rejected,
        "rows_already_uploaded": job.rows_already_uploaded,  # of rows_rejected (decisions.md#resend-ledger)
        "batches_total": job.batches_total,
        "batches_succeeded": job.batches_succeeded,
        "batches_failed": job.batches_failed,
        "batches_deferred": job.batches_deferred,
        "batches_unknown": job.batches_unknown,
        "batches_bisected": job.batches_bisected,
        **header,
        **extra,
    }
    blobs.put(
        bucket,
        key,
        json.dumps(body, ensure_ascii=False, indent=2).encode(),
        "application/json; charset=utf-8",
    )


_RECORD_OUTCOME = {
    BatchStatus.SUCCEEDED: "uploaded",
    BatchStatus.FAILED: "refused",  # by the upstream (its reason on the batch), or never accepted
    BatchStatus.UNKNOWN: "held",
    BatchStatus.DEFERRED: "deferred",
}


def record_outcomes(batches: Iterable[Batch]) -> dict[str, int]:
    """Where each record our rules accepted is, by its batch: a bisected batch's records are counted
    in its halves (docs/decisions.md#state-0); ``pending`` is anything not answered yet."""
    counts = dict.fromkeys(("uploaded", "refused", "held", "deferred", "pending"), 0)
    for batch in batches:
        if batch.status not in (BatchStatus.BISECTED, BatchStatus.DISCARDED):
            counts[_RECORD_OUTCOME.get(batch.status, "pending")] += batch.record_count
    return counts


def refused_records(batches: Iterable[Batch]) -> list[dict[str, str]]:
    """The records the upstream refused one by one (isolated by bisection), with its reason."""
    return [
        {"batch_id": b.batch_id, "auth_code": b.refused_record, "reason": b.upstream_desc or b.last_error}
        for b in batches
        if b.status == BatchStatus.FAILED and b.refused_record
    ]
