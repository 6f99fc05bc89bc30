"""The three contenders, each run as ``python -m bench.contenders NAME FILE OUT`` in a fresh
interpreter so that its peak RSS is its own. The timed section starts after the imports and
ends when the last batch is serialised; the child writes ``{"rows", "seconds", "cpu_seconds",
"peak_rss_mb", ...}`` as JSON to ``OUT``.

- ``limit``: ``csv.reader`` over the file and two ``hashlib.sha256(...).hexdigest()`` per row —
  the ID and the phone cell as they are; nothing else (no validation, dedupe or output).
- ``peer``: what a user would write with pandas: ``read_csv(dtype=str)``, upper-case the ID
  column, ``apply`` SHA-256 to ID and phone, drop duplicate IDs then codes, chunks of 1000
  rows to JSON records.
- ``ours``: the splitter's core, ``verifyfeed.logic.repair_batches.split_repair_rows`` over
  ``open_rows`` on the file stream, with the splitter's own rejection callback (masked values
  into a ``RejectionLog``) and a sink that builds each batch's queue message body and counts its
  UTF-8 bytes where the splitter would send it (no S3, DynamoDB or SQS) — with the C fast path
  (``verifyfeed._fastsplit``), as the layer runs it — or, where the extension is not built, the
  pure-Python path (the report's ``path`` says which ran, and ``make bench`` prints it);
- ``ours-py``: the same without the C extension (``native=False``): what runs where it is not
  built; for comparison, not a goal.

On the same rows written as an .xlsx workbook (``bench.generate.write_repair_xlsx``):

- ``calamine-read``: python-calamine alone — open, load the sheet, every row as a Python list; the
  floor for any reader built on it;
- ``ours-xlsx``: ``ours`` on the workbook (``open_rows`` → python-calamine, the bomb checks, the
  splitter's core with validation).

On the same rows as an .ods spreadsheet (``write_repair_ods``): ``calamine-read`` again, and
``ours-ods``, ``ours`` on it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def _peak_rss_mb() -> float:
    # VmHWM: this process's own high-water mark (ru_maxrss would include the parent's, as Linux
    # keeps it across exec)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_limit(path: Path) -> Callable[[], Result]:
    import csv
    import hashlib

    def run() -> Result:
        sha256 = hashlib.sha256
        rows = 0
        with path.open(encoding="utf-8", newline="") as file:
            reader = csv.reader(file)
            next(reader)
            for cells in reader:
                sha256(cells[1].encode()).hexdigest()
                sha256(cells[2].encode()).hexdigest()
                rows += 1
        return {"rows": rows}

    return run


def run_peer(path: Path) -> Callable[[], Result]:
    import hashlib

    import pandas as pd

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def run() -> Result:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        rows = len(frame)
        frame["身份证号"] = frame["身份证号"].str.upper()
        frame["idcode"] = frame["身份证号"].apply(sha)
        frame["usedPhone"] = frame["曾用手机号"].apply(lambda phone: sha(phone) if phone else "")
        frame = frame.drop_duplicates("idcode").drop_duplicates("授权码")
        out = frame[["姓名", "idcode", "usedPhone", "授权码"]].rename(
            columns={"姓名": "name", "授权码": "authCode"}
        )
        size = batches = 0
        for start in range(0, len(out), 1000):
            size += len(out.iloc[start : start + 1000].to_json(orient="records", force_ascii=False).encode())
            batches += 1
        return {"rows": rows, "accepted": len(out), "batches": batches, "bytes": size}

    return run


def run_ours(path: Path, native: bool | None = None) -> Callable[[], Result]:
    from verifyfeed.config import LegacyIdPolicy
    from verifyfeed.ingest.readers import open_rows
    from verifyfeed.logic.repair_batches import NATIVE, RepairBatch, split_repair_rows

    use_c = NATIVE if native is None else native
    from verifyfeed.logic.lost_repair_split import repair_rejects
    from verifyfeed.logic.reports import RejectionLog
    from verifyfeed.models.records import JobKind

    job_id = "0123456789abcdef01234567"

    def run() -> Result:
        size = 0

        def emit(batch: RepairBatch) -> None:
            nonlocal size
            size += len(batch.message_body(job_id))

        rejections = RejectionLog(JobKind.LOST_REPAIR)
        try:
            with path.open("rb") as stream:
                rows = open_rows(stream, path.name, JobKind.LOST_REPAIR)
                rejections.use_header(rows.header)
                counts = split_repair_rows(
                    rows,
                    legacy=LegacyIdPolicy.CONVERT,
                    batch_size=1000,
                    reject=repair_rejects(rejections),
                    emit=emit,
                    native=use_c,
                )
        finally:
            rejections.close()
        return {
            "rows": counts.rows_read,
            "accepted": counts.rows_accepted,
            "rejected": counts.rows_rejected,
            "batches": counts.batches_total,
            "bytes": size,
            "path": "C fast path" if use_c else "pure-Python path",
        }

    return run


def run_calamine_read(path: Path) -> Callable[[], Result]:
    """python-calamine alone on a workbook: open it, load its first sheet, every row as a list."""
    from python_calamine import CalamineWorkbook

    def run() -> Result:
        with path.open("rb") as stream:
            book = CalamineWorkbook.from_filelike(stream)
            rows = sum(1 for _ in book.get_sheet_by_index(0).iter_rows()) - 1  # less the header
            book.close()
        return {"rows": rows}

    return run


CONTENDERS: dict[str, Callable[[Path], Callable[[], Result]]] = {
    "limit": run_limit,
    "peer": run_peer,
    "ours": run_ours,
    "ours-py": lambda path: run_ours(path, native=False),
}
# on the same rows as an .xlsx workbook (bench.generate.write_repair_xlsx) or an .ods one
# (write_repair_ods): calamine-read on either, ours-xlsx and ours-ods are ``ours`` on each
WORKBOOK_CONTENDERS: dict[str, Callable[[Path], Callable[[], Result]]] = {
    "calamine-read": run_calamine_read,
    "ours-xlsx": run_ours,
    "ours-ods": run_ours,
}


def main(argv: list[str]) -> int:
    name, path, out = argv
    run = {**CONTENDERS, **WORKBOOK_CONTENDERS}[name](Path(path))  # imports here, outside the timing
    cpu = _cpu_seconds()
    started = time.perf_counter()
    result = run()
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = _cpu_seconds() - cpu
    result["peak_rss_mb"] = _peak_rss_mb()
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
