"""Per-job reports under the job's own key, so that a second upload never replaces the first's
(docs/decisions.md#report-layout): the summary, the header and rows facts, the rows to fix and the
rows already uploaded (CSV, UTF-8 with a BOM, masked, formulas neutralised) and both as a workbook.
``ReportPaths`` finds them all from the job's ``report_key``; every rejected row carries its reason's
code, Chinese and English text, under the customer's own column names."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import shutil
import tempfile
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from aws_lambda_powertools import Logger

from verifyfeed.ingest.headers import HeaderMap, spec_labels
from verifyfeed.models.records import Batch, BatchStatus, Job, JobKind, JobStatus
from verifyfeed.pii import mask_object_key, spreadsheet_safe
from verifyfeed.ports import BlobError, Blobs
from verifyfeed.reasons import Reason, reason

logger = Logger(child=True)

# the rejected-rows report's own columns, before the row's masked values (named by the file's header)
ROW, CODE, REASON_ZH, REASON_EN, FIRST_ROW = (
    "行号 row",
    "代码 code",
    "中文原因",
    "English reason",
    "首次出现行 first row",
)
VALUE_FIELDS: Mapping[JobKind, tuple[str, ...]] = {
    JobKind.LOST_REPAIR: ("name", "id_number", "used_phone", "auth_code"),
    JobKind.CARRIER_AUDIT: ("name", "idCard", "phone"),
}
ALREADY_UPLOADED = "duplicate.already_uploaded"
XLSX_MAX_ROWS = 100_000  # a sheet's rows at most; the CSV has every row (decisions.md#report-layout)
SHEET_TO_FIX, SHEET_ALREADY = "要修改的行 To fix", "已上传过 Already uploaded"
HEADLINE_PLACES = 3  # earlier files named in the headline; the rest are counted

NO_HEADER: dict[str, Any] = {"header_row": None, "ignored_columns": [], "notes": []}
_CSV = "text/csv; charset=utf-8"
_JSON = "application/json; charset=utf-8"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """Where one job's reports are: ``summary`` and the files beside it."""

    summary: str

    @classmethod
    def for_job(cls, job: Job, reports_prefix: str) -> ReportPaths:
        """The job's ``report_key``; for a job written before reports were per job, without one, the
        key its report is written under (``reports/<key>.json``)."""
        return cls(job.report_key or f"{reports_prefix}{job.key}.json")

    def _beside(self, suffix: str) -> str:
        return self.summary.removesuffix(".json") + suffix

    @property
    def header(self) -> str:
        return self._beside(".header.json")

    @property
    def rows(self) -> str:
        return self._beside(".rows.json")

    @property
    def rejected(self) -> str:
        return self._beside(".rejected.csv")

    @property
    def already_uploaded(self) -> str:
        return self._beside(".already_uploaded.csv")

    @property
    def workbook(self) -> str:
        return self._beside(".rejected.xlsx")

    def files(self, kind: JobKind) -> dict[str, str]:
        """The rejected-rows files of a job of ``kind``, as the summary names them."""
        found = {"rejected_rows_report": self.rejected, "rejected_rows_workbook": self.workbook}
        if kind == JobKind.LOST_REPAIR:
            found["already_uploaded_report"] = self.already_uploaded
        return found

    def all(self) -> tuple[str, ...]:
        return (self.summary, self.header, self.rows, self.rejected, self.already_uploaded, self.workbook)


def job_report_key(reports_prefix: str, source_key: str, job_id: str) -> str:
    """A job's summary key: ``reports/<key>/<job id>.json``, one per job."""
    return f"{reports_prefix}{source_key}/{job_id}.json"


def _put_json(blobs: Blobs, bucket: str, key: str, body: Mapping[str, Any]) -> None:
    blobs.put(bucket, key, json.dumps(body, ensure_ascii=False, indent=2).encode(), _JSON)


def write_header_facts(blobs: Blobs, bucket: str, key: str, facts: dict[str, Any]) -> None:
    _put_json(blobs, bucket, key, facts)


def _read_json(blobs: Blobs, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = blobs.get(bucket, key)
    except BlobError as exc:
        if exc.missing:
            return None
        raise
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def read_header_facts(blobs: Blobs, bucket: str, key: str) -> dict[str, Any] | None:
    """The header facts the splitter stored, ``None`` when there are none (yet)."""
    facts = _read_json(blobs, bucket, key)
    return None if facts is None else {name: facts.get(name, default) for name, default in NO_HEADER.items()}


class _Spool:
    """CSV rows without a header, spooled to disk past a few MB so memory does not grow with the file."""

    def __init__(self) -> None:
        self.buffer: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
        self.text = io.TextIOWrapper(self.buffer, encoding="utf-8", newline="")
        self.writer = csv.writer(self.text)
        self.count = 0

    def write(self, row: Sequence[object]) -> None:
        self.count += 1
        self.writer.writerow(row)

    def rows(self) -> Generator[list[str]]:
        self.text.flush()
        self.buffer.seek(0)
        reader = io.TextIOWrapper(self.buffer, encoding="utf-8", newline="")
        try:
            yield from csv.reader(reader)
        finally:
            reader.detach()

    def copy_to(self, target: IO[bytes]) -> None:
        self.text.flush()
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, target)
        self.buffer.seek(0, io.SEEK_END)

    def close(self) -> None:
        self.text.close()


class RejectionLog:
    """A job's rejected rows, in row order: the rows to fix, and apart from them the rows an earlier
    file already uploaded (decisions.md#resend-ledger); each with its reason in both languages and
    its masked values under the labels of the file's own header (``use_header``)."""

    def __init__(self, kind: JobKind) -> None:
        self.kind = kind
        self.fields = VALUE_FIELDS[kind]
        self.labels = dict(spec_labels(kind))  # field → the label reasons and columns name it by
        self._to_fix = _Spool()
        self._already = _Spool()
        self.by_code: dict[str, int] = {}
        self._examples: dict[str, tuple[int, str, str]] = {}  # code → (row, zh, en) of its first row
        self._sources: dict[tuple[str, str, str], int] = {}  # (file, date, job) → rows already uploaded

    def use_header(self, header: HeaderMap) -> None:
        """Name the columns as the file does; a lost-repair file without a phone column shows none."""
        self.fields = tuple(f for f in VALUE_FIELDS[self.kind] if f != "used_phone" or f in header.fields)
        self.labels = header.all_labels()

    def add(
        self,
        row: int,
        why: Reason | Sequence[Reason],
        masked: Mapping[str, str],
        first_row: int | None = None,
    ) -> None:
        """One rejected row: its reason (or a carrier-audit row's reasons, in field order), its
        masked values by field, and for a duplicate the row it repeats."""
        reasons = [why] if isinstance(why, Reason) else list(why)
        named = [r.relabelled(self.labels) for r in reasons]
        code = "; ".join(r.code for r in named)
        zh = "；".join(r.zh for r in named)
        en = "; ".join(r.en for r in named)
        self.by_code[code] = self.by_code.get(code, 0) + 1
        self._examples.setdefault(code, (row, zh, en))
        spool = self._to_fix
        if code == ALREADY_UPLOADED:
            spool = self._already
            first = named[0]
            source = (str(first.param("file")), str(first.param("date")), str(first.param("job")))
            self._sources[source] = self._sources.get(source, 0) + 1
        spool.write(
            [
                row,
                code,
                spreadsheet_safe(zh),
                spreadsheet_safe(en),
                "" if first_row is None else first_row,
                *(spreadsheet_safe(masked.get(f, "")) for f in self.fields),
            ]
        )

    def _header_row(self) -> list[str]:
        return [ROW, CODE, REASON_ZH, REASON_EN, FIRST_ROW, *(self.labels[f] for f in self.fields)]

    def _csv(self, spool: _Spool) -> IO[bytes]:
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
        out.write(codecs.BOM_UTF8)
        head = io.StringIO()
        csv.writer(head).writerow([spreadsheet_safe(label) for label in self._header_row()])
        out.write(head.getvalue().encode())
        spool.copy_to(out)
        out.seek(0)
        return out

    def upload(self, blobs: Blobs, bucket: str, paths: ReportPaths) -> None:
        """The rows to fix (CSV), the rows already uploaded (CSV, lost repair) and both as a workbook."""
        with self._csv(self._to_fix) as body:
            blobs.put_file(bucket, paths.rejected, body, _CSV)
        if self.kind == JobKind.LOST_REPAIR:
            with self._csv(self._already) as body:
                blobs.put_file(bucket, paths.already_uploaded, body, _CSV)
        with self._workbook(paths) as body:
            blobs.put_file(bucket, paths.workbook, body, _XLSX)

    def _workbook(self, paths: ReportPaths) -> IO[bytes]:
        from openpyxl import Workbook  # heavy import: only a split that writes reports pays for it
        from openpyxl.styles import Font

        book = Workbook(write_only=True)
        sheets = [(SHEET_TO_FIX, self._to_fix, paths.rejected)]
        if self.kind == JobKind.LOST_REPAIR:
            sheets.append((SHEET_ALREADY, self._already, paths.already_uploaded))
        bold = Font(bold=True)
        for title, spool, csv_key in sheets:
            sheet = book.create_sheet(title)
            sheet.freeze_panes = "A2"
            for letter, width in zip("ABCDE", (8, 26, 40, 40, 10), strict=True):
                sheet.column_dimensions[letter].width = width
            sheet.append([_text_cell(sheet, label, bold) for label in self._header_row()])
            with contextlib.closing(spool.rows()) as rows:
                for index, cells in enumerate(rows):
                    if index == XLSX_MAX_ROWS:
                        left = f"{spool.count - XLSX_MAX_ROWS:,}"
                        more = reason("report.more_rows", rows=left, file=csv_key)
                        sheet.append([None, *(_text_cell(sheet, t) for t in (more.code, more.zh, more.en))])
                        break
                    row, code, zh, en, first, *values = map(_unguarded, cells)
                    texts = [_text_cell(sheet, value) for value in (code, zh, en)]
                    sheet.append(
                        [
                            int(row),
                            *texts,
                            int(first) if first else None,
                            *(_text_cell(sheet, v) for v in values),
                        ]
                    )
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
        book.save(out)
        out.seek(0)
        return out

    def facts(self) -> dict[str, Any]:
        """What the split found of the rows, for the summary: the rows to fix, the rows already
        uploaded by earlier file (most first), and the rejected rows by code with the texts of the
        first row that had it."""
        return {
            "rows_to_fix": self._to_fix.count,
            "already_uploaded_in": [
                {"file": file, "date": date, "job_id": job, "rows": rows}
                for (file, date, job), rows in sorted(self._sources.items(), key=lambda item: -item[1])
            ],
            "rejected_rows_by_code": [
                {"code": code, "rows": rows, "example_row": row, "zh": zh, "en": en}
                for code, rows in sorted(self.by_code.items(), key=lambda item: -item[1])
                for row, zh, en in (self._examples[code],)
            ],
        }

    def close(self) -> None:
        self._to_fix.close()
        self._already.close()


def _text_cell(sheet: Any, value: str, font: Any = None) -> Any:
    """A workbook cell holding ``value`` as text (type "s", format "@"): a masked ID or a code such as
    00123 stays as it is, a value typed over it stays text, nothing is a formula."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    cell.number_format = "@"
    if font is not None:
        cell.font = font
    return cell


def _unguarded(cell: str) -> str:
    """A CSV cell without the quote ``spreadsheet_safe`` put before it: a text cell of the workbook
    is never a formula."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] and cell[1] in "=+-@\t\r" else cell


NO_ROWS: dict[str, Any] = {"rows_to_fix": None, "already_uploaded_in": [], "rejected_rows_by_code": []}


def write_rows_facts(blobs: Blobs, bucket: str, paths: ReportPaths, facts: dict[str, Any]) -> None:
    _put_json(blobs, bucket, paths.rows, facts)


def headline(job: Job, rows: Mapping[str, Any], refused: Reason | None = None) -> Reason:
    """The report's one line: what was sent, what an earlier file had already uploaded (where and
    when: not charged again), what is left to fix."""
    if refused is not None:
        return reason("headline.refused", reason=refused)
    already = job.rows_already_uploaded
    where: list[Reason] = [
        reason("headline.uploaded_in", date=place["date"], file=place["file"])
        for place in rows.get("already_uploaded_in", [])[:HEADLINE_PLACES]
    ]
    more = len(rows.get("already_uploaded_in", [])) - HEADLINE_PLACES
    if more > 0:
        where.append(reason("headline.more_files", files=more))
    already_part: Reason | str = ""
    if already:
        places: Reason | str = reason("headline.where", places=tuple(where)) if where else ""
        already_part = reason("headline.already_uploaded", rows=f"{already:,}", where=places)
    sent, to_fix = f"{job.rows_accepted:,}", f"{job.rows_rejected - already:,}"
    if job.status == JobStatus.DRY_RUN:
        return reason("headline.dry_run", sent=sent, already=already_part, to_fix=to_fix)
    code = "headline.lost_repair" if job.kind == JobKind.LOST_REPAIR else "headline.carrier_audit"
    return reason(code, sent=sent, already=already_part, to_fix=to_fix)


def write_summary(
    blobs: Blobs,
    bucket: str,
    paths: ReportPaths,
    job: Job,
    extra: dict[str, Any],
    header: dict[str, Any] | None = None,
    rows: dict[str, Any] | None = None,
    refused: Reason | None = None,
) -> None:
    """The summary at ``paths.summary``, with the header facts ``header`` and the rows facts
    ``rows`` or, when not given, those stored beside it; ``refused``: why the file as a whole was
    (its code and Chinese text beside the job's English ``reason``)."""
    if header is None:
        header = _side_facts(blobs, bucket, paths.header, "header facts", read_header_facts) or NO_HEADER
    if rows is None:
        rows = _side_facts(blobs, bucket, paths.rows, "rows facts", _read_json) or NO_ROWS
    line = headline(job, rows, refused)
    body = {
        "job_id": job.job_id,
        "file": job.key,
        "kind": job.kind.value,
        "status": job.status.value,
        "headline": {"zh": line.zh, "en": line.en},
        "reason": job.reason,
        **({"reason_code": refused.code, "reason_zh": refused.zh} if refused is not None else {}),
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
        **{name: rows.get(name, default) for name, default in NO_ROWS.items()},
        **extra,
    }
    _put_json(blobs, bucket, paths.summary, body)


def _side_facts(blobs: Blobs, bucket: str, key: str, what: str, read: Any) -> dict[str, Any] | None:
    try:
        facts: dict[str, Any] | None = read(blobs, bucket, key)
    except BlobError as exc:  # the report matters more than the facts beside it
        logger.warning(
            f"{what} unreadable; report written without them",
            extra={"key": mask_object_key(key), "error": type(exc).__name__},
        )
        return None
    return facts


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
