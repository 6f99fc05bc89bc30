"""Lost-repair rows → deduplicated batches, serialised: the pure core of the splitter.

``split_repair_rows(rows, legacy=, batch_size=, reject=, emit=)`` reads every row of ``rows``
(a ``RowSource``) once and returns the ``JobCounts``: each row is either

- rejected — ``reject(number, rule, reason, values, first_row)`` with the rule of
  ``normalize_repair_row`` (``row.unreadable`` for a row the reader could not read), or
  ``duplicate.id_number`` / ``duplicate.auth_code`` and the row that came first; or
- accepted into the current batch; every ``batch_size`` accepted rows, and once at the end for
  the rest, ``emit(RepairBatch)`` gets the batch with its records already serialised.

No I/O: the splitter's ``emit`` records the batch and queues it, the benchmark's counts bytes.

Deduplication is across the whole file: a row whose ``idcode`` or ``authCode`` an earlier
*accepted* row has is rejected (a rejected row claims nothing). Per accepted row two dict entries
are kept — the first 16 bytes of the ``idcode`` digest and the ``authCode``, each with the row
number — about 230 MB for 1M rows.

Speed (``make bench``, ``docs/performance.md``): clean CSV rows come from the reader in blocks of
raw cells (``RowSource.fast_rows``); a row whose values ``is_plain_repair_row`` finds already in
canonical form is hashed and kept without building any object but its record, and any other row
goes through ``repair_fields`` (``rules.lost_repair``), which finds the broken rule — so both
give exactly what ``normalize_repair_row`` gives. Records are tuples of UTF-8 bytes, serialised
with one format per batch: the body is byte-for-byte pydantic's
(``LostRepairBatchMessage.model_dump_json(exclude_none=True)``), which a unit test checks.
"""

from __future__ import annotations

import hashlib
import json
from binascii import hexlify
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import itemgetter

from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest.readers import RowSource, SourceRow
from verifyfeed.models.records import JobCounts
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.lost_repair import is_plain_repair_row, repair_fields
from verifyfeed.store.jobs import batch_id

# reject(row number, rule, reason, the row's raw values, the first row of a duplicate)
RejectRow = Callable[[int, str, str, dict[str, object], "int | None"], None]

_RECORD_JSON = b'{"name":"%s","idcode":"%s","usedPhone":"%s","authCode":"%s"}'
_BODY_JSON = b'{"kind":"lost_repair_batch","job_id":%s,"batch_id":%s,"seq":%d,"records":%s,"generation":0}'
_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class RepairBatch:
    seq: int  # 1, 2, ... in file order
    count: int
    records_json: bytes  # the JSON array of the records, UTF-8 (what a claim check stores)

    def message_body(self, job_id: str) -> bytes:
        """The work-queue message carrying this batch inline (``LostRepairBatchMessage``), UTF-8."""
        return _BODY_JSON % (
            _json_str(job_id),
            _json_str(batch_id(job_id, self.seq)),
            self.seq,
            self.records_json,
        )


def _json_str(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def split_repair_rows(
    rows: RowSource,
    *,
    legacy: LegacyIdPolicy,
    batch_size: int,
    reject: RejectRow,
    emit: Callable[[RepairBatch], None],
) -> JobCounts:
    columns = tuple(rows.header.columns.items())
    where = {field: index for index, field in columns}
    at_phone = where.get("used_phone")
    # (name, id_number, used_phone, auth_code) of a row's cells; "" when there is no phone column
    fields: Callable[[list[str]], tuple[str, str, str, str]] = (
        itemgetter(where["name"], where["id_number"], at_phone, where["auth_code"])
        if at_phone is not None
        else partial(_without_phone, itemgetter(where["name"], where["id_number"], where["auth_code"]))
    )

    seen_id: dict[bytes, int] = {}  # first 16 bytes of the idcode digest → first row
    seen_code: dict[str, int] = {}  # authCode → first row
    first_id = seen_id.setdefault
    first_code = seen_code.setdefault
    records: list[tuple[bytes, bytes, bytes, bytes]] = []
    add = records.append
    batches: list[int] = []  # record count of each batch emitted

    def flush() -> None:
        count = len(records)
        body = b",".join([_RECORD_JSON] * count) % tuple(chain.from_iterable(records))
        records.clear()
        batches.append(count)
        emit(RepairBatch(len(batches), count, b"[%s]" % body))

    def duplicate(number: int, values: dict[str, object], key: bytes, code: str) -> bool:
        """Reject the row if an earlier accepted row has its ID number or code; else claim both."""
        first = first_id(key, number)
        if first is not number:
            reject(number, "duplicate.id_number", f"same ID number as row {first}", values, first)
            return True
        first = first_code(code, number)
        if first is not number:
            del seen_id[key]  # the row is rejected: it claims nothing
            reject(number, "duplicate.auth_code", f"same authCode as row {first}", values, first)
            return True
        return False

    def slow(number: int, values: dict[str, object]) -> None:
        try:
            name, idcode, used_phone, code = repair_fields(values, legacy)
        except RuleViolation as exc:
            reject(number, exc.rule, exc.message, values, None)
            return
        if duplicate(number, values, bytes.fromhex(idcode[: 2 * _KEY_BYTES]), code):
            return
        add((_json_str(name)[1:-1], idcode.encode(), used_phone.encode(), code.encode()))
        if len(records) >= batch_size:
            flush()

    read = 0
    sha256 = hashlib.sha256
    is_plain = is_plain_repair_row
    for item in rows.fast_rows():
        if isinstance(item, SourceRow):
            read += 1
            if item.problem is not None:
                reject(item.number, "row.unreadable", item.problem, item.values, None)
            else:
                slow(item.number, item.values)
            continue
        numbers, block = item
        read += len(numbers)
        for number, cells in zip(numbers, block, strict=True):
            name, raw_id, phone, code = fields(cells)
            if not is_plain(name, raw_id, phone, code):
                slow(number, {field: cells[index] for index, field in columns})
                continue
            # what repair_fields would return, unchanged: the name and code need no escaping
            digest = sha256(raw_id.encode()).digest()
            key = digest[:_KEY_BYTES]
            first = first_id(key, number)
            if first is not number or first_code(code, number) is not number:
                if first is number:
                    del seen_id[key]  # undo the claim made above; duplicate() decides again
                duplicate(number, {field: cells[index] for index, field in columns}, key, code)
                continue
            add(
                (
                    name.encode(),
                    hexlify(digest),
                    hexlify(sha256(phone.encode()).digest()) if phone else b"",
                    code.encode(),
                )
            )
            if len(records) >= batch_size:
                flush()
    if records:
        flush()
    accepted = sum(batches)
    return JobCounts(
        rows_read=read, rows_accepted=accepted, rows_rejected=read - accepted, batches_total=len(batches)
    )


def _without_phone(
    pick: Callable[[list[str]], tuple[str, str, str]], cells: list[str]
) -> tuple[str, str, str, str]:
    name, id_number, auth_code = pick(cells)
    return name, id_number, "", auth_code
