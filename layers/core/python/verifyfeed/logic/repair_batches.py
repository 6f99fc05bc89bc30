"""Lost-repair rows → deduplicated, serialised batches: the pure core of the splitter (no I/O).

``split_repair_rows`` reads each row once: rejected with its catalogued reason (a broken rule, a
duplicate ``idcode``/``authCode`` of an earlier *accepted* row, or already uploaded), or accepted
into the current batch, emitted every ``batch_size`` rows. Clean CSV blocks go through a *take*
function — the C extension ``verifyfeed._fastsplit`` where built, else ``_take_plain_py``, its
byte-for-byte reference — and every other row through the rules (docs/decisions.md#native-fast-path,
#auth-code-case)."""

from __future__ import annotations

import hashlib
import hmac
import json
from binascii import hexlify
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from verifyfeed.config import AuthCodeUniqueness, LegacyIdPolicy
from verifyfeed.ingest.readers import CellBlock, LineBlock, RowSource, SourceRow
from verifyfeed.models.ids import batch_id
from verifyfeed.models.ledger import KEY_BYTES as _KEY_BYTES  # the ledger stores this table's keys
from verifyfeed.models.records import JobCounts
from verifyfeed.reasons import Reason, reason
from verifyfeed.rules.errors import RuleViolation
from verifyfeed.rules.lost_repair import is_plain_repair_row, repair_fields

# reject(row number, why, the row's raw values, the first row of a duplicate)
RejectRow = Callable[[int, Reason, dict[str, object], "int | None"], None]

_RECORD_JSON = b'{"name":"%s","idcode":"%s","usedPhone":"%s","authCode":"%s"}'
_BODY_JSON = b'{"kind":"lost_repair_batch","job_id":%s,"batch_id":%s,"seq":%d,"records":%s,"generation":0}'


@dataclass(frozen=True, slots=True)
class RepairBatch:
    seq: int  # 1, 2, ... in file order
    count: int
    records_json: bytes  # the JSON array of the records, UTF-8 (what a claim-check body stores)

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


class PySeenKeys:
    """The keys seen so far (1..16 bytes), each with the row that first saw it: ``first(key)`` →
    that row or 0, ``mark(key, row)`` (a key already seen keeps its first row), ``len()``; with
    ``fold_case`` the ASCII letters of every key are upper-cased first. The reference for, and the
    fallback of, ``_fastsplit.SeenKeys`` (a C hash table: half the memory, one cache miss)."""

    __slots__ = ("fold_case", "hmac_key", "rows")

    def __init__(self, fold_case: bool = False, hmac_key: bytes | None = None) -> None:
        self.fold_case = fold_case
        self.hmac_key = hmac_key
        self.rows: dict[bytes, int] = {}  # key (folded) → first row (``_take_plain_py`` uses it directly)

    @property
    def keyed(self) -> bool:
        return self.hmac_key is not None

    def key(self, digest: bytes) -> bytes:
        """The key an ID table stores for an idcode digest: its first 16 bytes, or the first 16 bytes
        of its HMAC-SHA256 under ``hmac_key`` (what the resend ledger stores)."""
        if self.hmac_key is None:
            return digest[:_KEY_BYTES]
        return hmac.digest(self.hmac_key, digest, "sha256")[:_KEY_BYTES]

    def mark_many(self, keys: bytes, row: int) -> None:
        for at in range(0, len(keys), _KEY_BYTES):
            self.mark(keys[at : at + _KEY_BYTES], row)

    def export(self, last_rows: list[int], below: int) -> tuple[bytes, list[int]]:
        """The keys first seen by rows < ``below``, grouped by batch — batch i (1-based) holds the rows
        after ``last_rows[i-2]`` up to ``last_rows[i-1]`` — and how many each batch has."""
        groups: list[list[bytes]] = [[] for _ in last_rows]
        for key, row in self.rows.items():
            at = bisect_left(last_rows, row)
            if row < below and at < len(last_rows):
                groups[at].append(key)
        return b"".join(b"".join(g) for g in groups), [len(g) for g in groups]

    def first(self, key: bytes) -> int:
        return self.rows.get(key.upper() if self.fold_case else key, 0)

    def mark(self, key: bytes, row: int) -> None:
        self.rows.setdefault(key.upper() if self.fold_case else key, row)

    def __len__(self) -> int:
        return len(self.rows)


class SeenKeys(Protocol):
    """The splitter's in-file dedupe table: ``PySeenKeys`` or ``_fastsplit.SeenKeys``."""

    def first(self, key: bytes, /) -> int: ...
    def mark(self, key: bytes, row: int, /) -> None: ...
    def __len__(self) -> int: ...
    def key(self, digest: bytes, /) -> bytes: ...
    def mark_many(self, keys: bytes, row: int, /) -> None: ...
    def export(self, last_rows: list[int], below: int, /) -> tuple[bytes, list[int]]: ...


LEDGER_ROWS = 1 << 40  # rows at and above this mark an ID seen by the resend ledger, not by a file row


class ResendLedger(Protocol):
    """The records already sent for upload within the resend window (``logic.ledger``): their keys
    under ``hmac_key``, marked seen before the file is read so that a row sending one again is
    rejected as ``duplicate.already_uploaded``; and, once the file is read, the keys this file sends."""

    @property
    def hmac_key(self) -> bytes: ...

    def preload(self, ids: SeenKeys) -> None:
        """Mark every prior key seen in ``ids``, with a row >= ``LEDGER_ROWS``."""
        ...

    def describe(self, row: int) -> Reason:
        """Why a row whose ID the ledger row ``row`` saw first is not sent: where it went before."""
        ...

    def record(self, keys: bytes, counts: list[int]) -> None:
        """The file's accepted keys, batch after batch (``counts[i]`` of them in batch i + 1)."""
        ...


# take(block, start, (name, id_number, used_phone, auth_code) column indices (-1: no phone column),
#      numbers, ids, codes, records, limit) -> the index where it stopped
TakePlain = Callable[
    [list[list[str]], int, tuple[int, int, int, int], list[int], Any, Any, list[bytes], int], int
]


def _take_plain_py(
    block: list[list[str]],
    start: int,
    columns: tuple[int, int, int, int],
    numbers: list[int],
    ids: PySeenKeys,
    codes: PySeenKeys,
    records: list[bytes],
    limit: int,
) -> int:
    """Accept the clean rows of ``block`` from ``start`` on; the reference for ``_fastsplit``.

    A row is accepted when ``is_plain_repair_row`` finds its four values already canonical and no
    earlier accepted row had its ID digest or code: both are marked seen (``ids``: the first 16
    digest bytes, ``codes``: the code's bytes, each with the row's number from ``numbers``) and its
    record JSON is appended to ``records``. Stops at the first row it does not accept — the caller
    decides that one by the rules — and right after the record that fills ``records`` to ``limit``;
    returns the index where it stopped. Codes are marked as ``codes`` compares them (upper-cased
    when it folds case), and sent as written. The C version accepts another set, as safe: fewer names
    (ASCII letters and CJK unified ideographs, a middle dot between them) but also the values the
    rules normalise cheaply (a lower-case ``x``, ``+86`` or spaced mobiles); either way a row's
    record is byte for byte what the rules give."""
    i_name, i_id, i_phone, i_code = columns
    sha256 = hashlib.sha256
    is_plain = is_plain_repair_row
    add = records.append
    id_rows, code_rows, fold = ids.rows, codes.rows, codes.fold_case
    id_key = ids.key
    for index in range(start, len(block)):
        cells = block[index]
        name, raw_id, code = cells[i_name], cells[i_id], cells[i_code]
        phone = cells[i_phone] if i_phone >= 0 else ""
        if not is_plain(name, raw_id, phone, code):
            return index
        digest = sha256(raw_id.encode()).digest()
        key, code_key = id_key(digest), code.encode()
        seen_code = code_key.upper() if fold else code_key
        if key in id_rows or seen_code in code_rows:
            return index
        id_rows[key] = code_rows[seen_code] = numbers[index]
        add(
            _RECORD_JSON
            % (
                name.encode(),
                hexlify(digest),
                hexlify(sha256(phone.encode()).digest()) if phone else b"",
                code_key,
            )
        )
        if len(records) >= limit:
            return index + 1
    return len(block)


# take_lines(lines, start, first row number, delimiter, width, max_field_chars, columns, ids, codes,
#            records, limit) -> the index where it stopped: take_plain for a LineBlock's raw lines,
# which it splits itself (a line it cannot split plainly is left to the caller, like a row)
TakeLines = Callable[
    [list[str], int, int, str, int, int, tuple[int, int, int, int], Any, Any, list[bytes], int], int
]


def _load_native() -> tuple[TakePlain, TakeLines, Callable[[bool, bytes | None], SeenKeys]] | None:
    try:
        from verifyfeed import _fastsplit
    except ImportError:  # not built here (layers/core/native/build.py): the same results, slower
        return None
    return _fastsplit.take_plain, _fastsplit.take_lines, _fastsplit.SeenKeys


_NATIVE = _load_native()
NATIVE: bool = _NATIVE is not None  # whether split_repair_rows uses the C fast path by default


def _same_id(first: int) -> Reason:
    return reason("duplicate.id_number", column="id_number", first_row=first)


def split_repair_rows(
    rows: RowSource,
    *,
    legacy: LegacyIdPolicy,
    batch_size: int,
    reject: RejectRow,
    emit: Callable[[RepairBatch], None],
    native: bool = NATIVE,
    auth_codes: AuthCodeUniqueness = AuthCodeUniqueness.IGNORE_CASE,
    ledger: ResendLedger | None = None,
) -> JobCounts:
    take: TakePlain = _take_plain_py
    take_lines: TakeLines | None = None  # LineBlocks go through the reader's line_items
    fold = auth_codes is AuthCodeUniqueness.IGNORE_CASE
    case = reason("note.letter_case") if fold else ""
    hmac_key = None if ledger is None else ledger.hmac_key
    ids: SeenKeys = PySeenKeys(hmac_key=hmac_key)  # ids.key(idcode digest) → first row
    codes: SeenKeys = PySeenKeys(fold)  # authCode (upper-cased when ignoring case) → first row
    if native:
        if _NATIVE is None:
            raise RuntimeError("verifyfeed._fastsplit is not built (layers/core/native/build.py)")
        take, take_lines, new_seen = _NATIVE
        ids, codes = new_seen(False, hmac_key), new_seen(fold, None)
    if ledger is not None:
        ledger.preload(ids)
    columns = tuple(rows.header.columns.items())
    where = {field: index for index, field in columns}
    at_phone = where.get("used_phone")
    picks = (where["name"], where["id_number"], -1 if at_phone is None else at_phone, where["auth_code"])

    records: list[bytes] = []  # the current batch's records, JSON
    batches: list[int] = []  # record count of each batch emitted
    last_rows: list[int] = []  # the row of each batch's last record (rows are accepted in order)
    last = 0  # the row of the last record accepted
    prior = 0  # rows rejected because the ledger has their ID
    prior_rows: dict[bytes, int] = {}  # a ledger key → the first row of this file that had it

    def flush() -> None:
        count = len(records)
        body = b"[%s]" % b",".join(records)
        records.clear()
        batches.append(count)
        last_rows.append(last)
        emit(RepairBatch(len(batches), count, body))

    def decide(number: int, values: dict[str, object]) -> None:
        """One row by the rules: rejected with its reason, or as a duplicate; else accepted."""
        nonlocal last, prior
        try:
            name, idcode, used_phone, code = repair_fields(values, legacy)
        except RuleViolation as exc:
            reject(number, exc.reason(), values, None)
            return
        key, code_key = ids.key(bytes.fromhex(idcode)), code.encode()
        first = ids.first(key)
        if first >= LEDGER_ROWS and ledger is not None:  # sent by an earlier file within the window
            earlier = prior_rows.setdefault(key, number)
            if earlier != number:  # ... and earlier in this file: the in-file duplicate it was
                reject(number, _same_id(earlier), values, earlier)
                return
            prior += 1
            # it keeps its authCode, as when it was sent: a re-drop decides every other row the same
            codes.mark(code_key, number)
            reject(number, ledger.describe(first), values, None)
            return
        if first:
            reject(number, _same_id(first), values, first)
            return
        first = codes.first(code_key)
        if first:  # the row is rejected: it marks nothing seen, not even its ID number
            reject(
                number,
                reason("duplicate.auth_code", column="auth_code", first_row=first, case=case),
                values,
                first,
            )
            return
        ids.mark(key, number)
        codes.mark(code_key, number)
        last = number
        records.append(_RECORD_JSON % (_json_str(name)[1:-1], idcode.encode(), used_phone.encode(), code_key))
        if len(records) >= batch_size:
            flush()

    def handle(item: SourceRow | CellBlock) -> int:
        """Decide a reader's row or block of clean rows; how many rows that was."""
        nonlocal last
        if isinstance(item, SourceRow):
            if item.problem is not None:
                reject(item.number, reason("row.unreadable", problem=item.problem), item.values, None)
            else:
                decide(item.number, item.values)
            return 1
        numbers, block = item
        index, end = 0, len(block)
        while index < end:
            taken = take(block, index, picks, numbers, ids, codes, records, batch_size)
            if taken > index:  # take accepts the rows it passes, in order
                last = numbers[taken - 1]
            index = taken
            if len(records) >= batch_size:
                flush()
            elif index < end:  # a row the fast path left to the rules
                cells = block[index]
                decide(numbers[index], {field: cells[at] for at, field in columns})
                index += 1
        return len(numbers)

    read = 0
    delimiter, width, max_chars = rows.delimiter, rows.header.width, rows.max_field_chars
    for item in rows.fast_rows(lines=take_lines is not None):
        if not isinstance(item, LineBlock):
            read += handle(item)
            continue
        lines, first = item.lines, item.first
        if take_lines is None:
            for part in rows.line_items(item):
                read += handle(part)
            continue
        index, end = 0, len(lines)
        while index < end:
            taken = take_lines(
                lines, index, first, delimiter, width, max_chars, picks, ids, codes, records, batch_size
            )
            read += taken - index
            if taken > index:
                last = first + taken - 1
            index = taken
            if len(records) >= batch_size:
                flush()
            elif index < end:  # a line the fast path left to the reader and the rules
                for part in rows.line_items(LineBlock(first + index, [lines[index]])):
                    read += handle(part)
                index += 1
    if records:
        flush()
    if ledger is not None:
        ledger.record(*ids.export(last_rows, LEDGER_ROWS))
    accepted = sum(batches)
    return JobCounts(
        rows_read=read,
        rows_accepted=accepted,
        rows_rejected=read - accepted,
        rows_already_uploaded=prior,
        batches_total=len(batches),
    )
