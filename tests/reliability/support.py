"""Helpers of the reliability suite.

- Test people: ``person_id(n)`` / ``mobile(n)`` make distinct valid ID numbers and mobile numbers
  and record every plaintext value in ``PII``, so the scans know exactly what must never be stored.
- ``find_pii(text)``: the plaintext IDs and phones of ``PII`` found in ``text`` (after NFKC, so a
  full-width copy counts), plus anything that *looks* like a real one (a checksum-valid 18-digit ID
  or an 11-digit mobile number standing alone), whoever's data it is.
- ``capture_logs()``: every log record emitted while it is active, as text (message, arguments,
  every ``extra`` key, traceback), plus what the Powertools handlers actually wrote.
- ``drop()``: put an object in S3 and return the notification S3 would send.
- ``pump_uploader()``: receive from the real work queue and invoke the uploader handler as the
  SQS event source mapping does (partial batch responses, deletes, redelivery, dead-lettering).
- ``check_ledger()``: the invariant of the suite, against the sandbox's ledger: every accepted row
  reached upstream exactly once, or its batch is visibly flagged; nothing twice.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import traceback
import unicodedata
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import boto3

from local.events import s3_put_event, sqs_event
from local.lambda_context import new_context
from sandbox.server import SandboxHandle
from verifyfeed.models.ids import TREE_SPAN, tree_position, tree_seq
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.records import BatchStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services

# ---- test people --------------------------------------------------------------------------------

PII: set[str] = set()  # every plaintext ID number and phone number the suite's data used

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_EPOCH = date(1951, 1, 1)


def check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def person_id(n: int, region: str = "110105") -> str:
    """A valid 18-digit ID number, distinct for every ``n`` below 10**7."""
    birth = _EPOCH + timedelta(days=n // 1000)
    body = f"{region}{birth:%Y%m%d}{n % 1000:03d}"
    value = body + check_digit(body)
    PII.add(value)
    return value


def legacy_id(n: int) -> str:
    """A 15-digit (pre-1999) ID number; its 18-digit conversion is registered too."""
    birth = _EPOCH + timedelta(days=n // 1000)
    value = f"110105{birth:%y%m%d}{n % 1000:03d}"
    first17 = value[:6] + "19" + value[6:]
    PII.update({value, first17 + check_digit(first17)})
    return value


def mobile(n: int) -> str:
    value = f"139{n % 10**8:08d}"
    PII.add(value)
    return value


def cn_name(n: int) -> str:
    return "测" + chr(0x4E00 + n % 20000) + chr(0x4E00 + (n * 7) % 20000)


def repair_row(n: int, phone: bool = True) -> list[str]:
    """[name, ID number, former phone, authCode] of test person ``n``."""
    return [cn_name(n), person_id(n), mobile(n) if phone else "", f"K{n:07d}"]


def repair_records(count: int, start: int) -> list[RepairRecord]:
    return [
        RepairRecord(
            name=cn_name(n),
            idcode=sha256_hex(person_id(n)),
            usedPhone=sha256_hex(mobile(n)) if n % 2 else "",
            authCode=f"R{n:07d}",
        )
        for n in range(start, start + count)
    ]


# ---- the PII scan -------------------------------------------------------------------------------

# digit runs, except the fraction of a decimal number (a latency of 49.29513900060556 ms holds
# no phone number, though its digits contain one by chance)
_RUN = re.compile(r"(?<![0-9]\.)(?<![0-9X])[0-9X]{11,}")
_ID_LIKE = re.compile(r"(?<![0-9]\.)(?<![0-9A-Za-z])[0-9]{17}[0-9X](?![0-9A-Za-z])")
_MOBILE_LIKE = re.compile(r"(?<![0-9]\.)(?<![0-9A-Za-z])1[3-9][0-9]{9}(?![0-9A-Za-z])")


def find_pii(text: str, known: Iterable[str] | None = None) -> list[str]:
    """Plaintext ID/phone numbers in ``text``: the registered ones anywhere, look-alikes standing alone."""
    table = PII if known is None else set(known)
    text = unicodedata.normalize("NFKC", text).upper()
    found: list[str] = []
    for run in _RUN.findall(text):
        for size in (11, 15, 18):
            found.extend(run[i : i + size] for i in range(len(run) - size + 1) if run[i : i + size] in table)
    found.extend(m for m in _ID_LIKE.findall(text) if check_digit(m[:17]) == m[17])
    found.extend(_MOBILE_LIKE.findall(text))
    return sorted(set(found))


_HEX_RUN = re.compile(r"[0-9a-f]{64,}")


def bare_digests(values: Iterable[str]) -> dict[str, str]:
    """The bare SHA-256 (lower-case hex) of each value as the wire digests it — an ID number
    upper-cased, a phone as it is — mapped to the value."""
    return {sha256_hex(value.upper()): value for value in values}


def find_bare_digests(text: str, known: Mapping[str, str] | None = None) -> list[str]:
    """The values whose bare SHA-256 is in ``text`` (either case of hex, inside longer text too):
    ``known`` maps digest → value, by default those of every registered ID and phone number."""
    table = bare_digests(PII) if known is None else known
    found: set[str] = set()
    for run in _HEX_RUN.findall(text.lower()):
        found.update(table[run[i : i + 64]] for i in range(len(run) - 63) if run[i : i + 64] in table)
    return sorted(found)


Finder = Callable[[str], list[str]]


def scan_tables(table_names: Iterable[str], find: Finder = find_pii) -> tuple[int, list[tuple[str, str]]]:
    """(items scanned, [(table, what ``find`` found)]) over every item of every table."""
    db = boto3.client("dynamodb")
    scanned = 0
    leaks: list[tuple[str, str]] = []
    for table in table_names:
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = db.scan(**kwargs)
            for item in page.get("Items", []):
                scanned += 1
                leaks.extend((table, value) for value in find(json.dumps(item, ensure_ascii=False)))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return scanned, leaks


def _text_of(body: bytes) -> str:
    """An object's text; a workbook's (a zip: the rejected rows as .xlsx) is its parts' XML."""
    if body.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())
    return body.decode("utf-8", "replace")


def scan_objects(
    bucket: str, prefixes: Iterable[str], find: Finder = find_pii
) -> tuple[int, list[tuple[str, str]]]:
    """(objects scanned, [(key, what ``find`` found)]) over every object under ``prefixes``."""
    s3 = boto3.client("s3")
    scanned = 0
    leaks: list[tuple[str, str]] = []
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                scanned += 1
                text = _text_of(body)
                leaks.extend((obj["Key"], value) for value in find(text))
    return scanned, leaks


# ---- logs ---------------------------------------------------------------------------------------


# LogRecord attributes that are the logging module's bookkeeping (times, thread ids), not content
_BOOKKEEPING = frozenset(
    {
        "msg",
        "args",
        "exc_info",
        "created",
        "msecs",
        "relativeCreated",
        "thread",
        "process",
        "levelno",
        "lineno",
    }
)


class LogCapture(logging.Handler):
    """Keeps every record as the text any formatter could print from it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.loggers: Counter[str] = Counter()
        self.written = io.StringIO()  # what the Powertools handlers wrote (their JSON lines)

    def filter(self, record: logging.LogRecord) -> bool:
        return True  # Powertools adds a filter to root handlers that hides child loggers: see all

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.name, str(record.msg)]
        try:
            parts.append(record.getMessage())
        except (TypeError, ValueError):
            parts.append(repr(record.args))
        attributes = {k: v for k, v in vars(record).items() if k not in _BOOKKEEPING}
        parts.append(json.dumps(attributes, default=str, ensure_ascii=False))
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.texts.append("\n".join(parts))
        self.loggers[record.name.split(".")[0]] += 1

    def all_text(self) -> str:
        return "\n".join(self.texts) + "\n" + self.written.getvalue()


class _Tee(io.TextIOBase):
    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def write(self, text: str) -> int:
        for target in self.targets:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        for target in self.targets:
            target.flush()


@contextmanager
def capture_logs(level: int = logging.INFO) -> Iterator[LogCapture]:
    """Every record at ``level`` or above from any logger, for the duration (as in Lambda: INFO)."""
    capture = LogCapture()
    root = logging.getLogger()
    saved_level = root.level
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    direct = [lg for lg in loggers if not lg.propagate]
    streams: list[tuple[logging.StreamHandler[Any], Any]] = []
    for lg in loggers:
        handler = getattr(lg, "powertools_handler", None)
        if isinstance(handler, logging.StreamHandler):
            streams.append((handler, handler.stream))
            handler.setStream(_Tee(capture.written, handler.stream))
    root.addHandler(capture)
    root.setLevel(min(level, saved_level) if saved_level else level)
    for lg in direct:
        lg.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved_level)
        for lg in direct:
            lg.removeHandler(capture)
        for handler, stream in streams:
            handler.setStream(stream)


# ---- S3 ------------------------------------------------------------------------------------------


def drop(bucket: str, key: str, data: bytes) -> dict[str, Any]:
    """Upload like a user would; the notification S3 would send (key URL-encoded)."""
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    return s3_put_event(
        bucket, key, len(data), head["ETag"].strip('"'), head.get("VersionId", ""), uuid.uuid4().hex
    )


def read_object(bucket: str, key: str) -> bytes | None:
    s3 = boto3.client("s3")
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return body


# ---- SQS → uploader ------------------------------------------------------------------------------


@dataclass
class PumpStats:
    invocations: int = 0
    deliveries: int = 0
    item_failures: int = 0
    handler_errors: int = 0


def release_and_drain(queue_url: str, received: Iterable[Mapping[str, Any]]) -> None:
    """Make messages this test received visible again (ending the backoff the handler asked
    for), then delete everything visible, so that the next test does not find them."""
    from botocore.exceptions import ClientError

    sqs = boto3.client("sqs")
    for message in received:
        try:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        except ClientError:
            continue  # deleted already, or a stale receipt
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        if not got.get("Messages"):
            break
        for message in got["Messages"]:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def queue_depth(queue_url: str) -> tuple[int, int]:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def settled(services: Services, *job_ids: str) -> Callable[[], bool]:
    """A condition: every one of these jobs has settled (or was rejected)."""

    def check() -> bool:
        jobs = [services.jobs.get_job(job_id) for job_id in job_ids]
        return all(job is not None and job.status.value in _SETTLED for job in jobs)

    return check


_SETTLED = frozenset({"completed", "completed_with_errors", "deferred", "rejected"})


def _job_of(message: Mapping[str, Any]) -> str | None:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        return None
    return body.get("job_id") if isinstance(body, dict) else None


def pump_uploader(
    uploader: Callable[[dict[str, Any], Any], Any],
    queue_url: str,
    *,
    jobs: Iterable[str] | None = None,
    done: Callable[[], bool] | None = None,
    batch_size: int = 5,
    timeout_s: float = 60,
    visibility_s: int = 30,
) -> PumpStats:
    """Deliver the work queue to ``uploader`` until ``done()`` holds and nothing is visible.

    With ``jobs``, messages of other jobs (left in flight by earlier tests, with whatever backoff
    they were given) are deleted unprocessed: the queue is shared by the whole session. Without
    ``done``, the pump runs until the queue is empty, nothing in flight included.
    """
    sqs = boto3.client("sqs")
    stats = PumpStats()
    mine = set(jobs) if jobs is not None else None
    finished = done or (lambda: queue_depth(queue_url) == (0, 0))
    deadline = time.monotonic() + timeout_s
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            WaitTimeSeconds=0,
            VisibilityTimeout=visibility_s,
        )
        messages = got.get("Messages", [])
        if mine is not None:
            for foreign in [m for m in messages if _job_of(m) not in mine]:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=foreign["ReceiptHandle"])
                messages.remove(foreign)
            if got.get("Messages") and not messages:
                continue
        if not messages:
            if finished():
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"not done after {timeout_s}s; queue {queue_depth(queue_url)}")
            time.sleep(0.05)  # a retry is waiting for its visibility timeout: poll again
            continue
        event = sqs_event(messages)
        stats.invocations += 1
        stats.deliveries += len(messages)
        try:
            reply = uploader(event, new_context("uploader", 120, 1024))
        except Exception:  # noqa: BLE001 - Lambda reports the error; SQS redelivers the whole batch
            stats.handler_errors += 1
            continue
        keep = {f["itemIdentifier"] for f in (reply or {}).get("batchItemFailures", [])}
        stats.item_failures += len(keep)
        for message in messages:
            if message["MessageId"] not in keep:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout_s}s; queue {queue_depth(queue_url)}")


def dead_letters(dlq_url: str) -> list[dict[str, Any]]:
    """The bodies in the dead-letter queue (received with a 0 s visibility: they stay there)."""
    sqs = boto3.client("sqs")
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        new = [m for m in got.get("Messages", []) if m["MessageId"] not in seen]
        if not new and not got.get("Messages"):
            break
        for m in new:
            seen[m["MessageId"]] = json.loads(m["Body"])
        if not new:
            break
    return list(seen.values())


# ---- the ledger invariant -----------------------------------------------------------------------


@dataclass
class LedgerCheck:
    statuses: Counter[str] = field(default_factory=Counter)
    charged_rows: int = 0
    flagged_rows: int = 0  # rows in failed / unknown / deferred / dead-lettered batches
    flagged_but_charged: int = 0  # rows upstream has although their batch is flagged (lost answer)


FLAGGED = {BatchStatus.FAILED, BatchStatus.UNKNOWN, BatchStatus.DEFERRED}


def tree_rows(sent: Mapping[int, Iterable[str]]) -> dict[int, list[str]]:
    """``sent`` (the file's batches) with every possible child batch of a bisection: node ``n`` of
    the tree of batch ``seq`` carries the first ceil(k / 2) of its parent's k rows when ``n`` is even,
    the rest when odd (docs/decisions.md#state-0)."""
    rows: dict[int, list[str]] = {}
    for seq, idcodes in sent.items():
        nodes = {1: list(idcodes)}
        for node in range(2, TREE_SPAN):
            parent = nodes.get(node // 2, [])
            if len(parent) < 2:
                continue
            middle = (len(parent) + 1) // 2
            nodes[node] = parent[:middle] if node % 2 == 0 else parent[middle:]
        rows.update({tree_seq(seq, node): part for node, part in nodes.items()})
    return rows


def check_ledger(
    services: Services,
    sandbox: SandboxHandle,
    job_id: str,
    sent: Mapping[int, Iterable[str]],
    dead_lettered: Iterable[str] = (),
) -> LedgerCheck:
    """Assert the invariant for one job: ``sent`` maps batch seq → the idcodes that batch carries.

    - no idcode reached upstream twice, and upstream holds nothing that was not sent;
    - a succeeded batch: every row exactly once upstream;
    - a failed / deferred batch: none of its rows upstream (upstream refused or never saw it);
    - an unknown batch: flagged in the operator index; its rows at most once upstream;
    - a bisected batch: its two halves are batches of this job, which carry its rows on;
    - any other status only for a batch whose message is in the dead-letter queue.
    """
    counts = sandbox.record_counts()
    twice = {idcode: n for idcode, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} rows reached upstream more than once"
    expected_all = {idcode for idcodes in sent.values() for idcode in idcodes}
    unexpected = set(counts) - expected_all
    assert not unexpected, f"{len(unexpected)} rows upstream that no batch of this job carried"
    dlq = set(dead_lettered)
    result = LedgerCheck()
    batches = {b.seq: b for b in services.jobs.batches(job_id)}
    carried = tree_rows(sent)
    children = set(batches) - set(sent)
    assert set(sent) <= set(batches), "every batch sent has a record"
    assert children <= set(carried), "and every other batch is a half of one of them"
    for seq, batch in batches.items():
        rows = carried[seq]
        assert batch.record_count == len(rows), f"batch {seq}: {batch.record_count} rows, not {len(rows)}"
        result.statuses[batch.status.value] += 1
        upstream = [counts.get(i, 0) for i in rows]
        if batch.status == BatchStatus.BISECTED:
            root, node = tree_position(seq)
            halves = {tree_seq(root, 2 * node), tree_seq(root, 2 * node + 1)}
            assert halves <= set(batches), f"bisected batch {seq} without both its halves"
        elif batch.status == BatchStatus.SUCCEEDED:
            assert upstream == [1] * len(rows), f"batch {seq} succeeded but rows are missing upstream"
            result.charged_rows += len(rows)
        elif batch.status in (BatchStatus.FAILED, BatchStatus.DEFERRED):
            assert sum(upstream) == 0, f"batch {seq} is {batch.status.value} yet upstream charged it"
            result.flagged_rows += len(rows)
        elif batch.status == BatchStatus.UNKNOWN:
            listed = {b.batch_id for b in services.jobs.batches_with_status(BatchStatus.UNKNOWN, 10_000)}
            assert batch.batch_id in listed, f"unknown batch {seq} is not in the operator index"
            assert set(upstream) <= {0, 1} and len(set(upstream)) <= 1, "a batch is all-or-nothing upstream"
            result.flagged_rows += len(rows)
            result.flagged_but_charged += sum(upstream)
        else:
            assert batch.batch_id in dlq, (
                f"batch {seq} is {batch.status.value}: neither settled nor dead-lettered"
            )
            assert sum(upstream) == 0, f"dead-lettered batch {seq} reached upstream"
            result.statuses["dead_lettered"] += 1
            result.flagged_rows += len(rows)
    job = services.jobs.get_job(job_id)
    assert job is not None
    if not dlq:
        settled = job.batches_settled + job.batches_deferred
        assert settled == job.batches_total == len(batches), "the job's counters add up to its batches"
        assert job.batches_succeeded == result.statuses["succeeded"]
        assert job.batches_failed == result.statuses["failed"]
        assert job.batches_unknown == result.statuses["unknown"]
        assert job.batches_bisected == result.statuses["bisected"]
    return result


# ---- DynamoDB transactions under concurrency ----------------------------------------------------


@contextmanager
def isolated_transactions() -> Iterator[None]:
    """Give moto the isolation DynamoDB has.

    moto applies ``TransactWriteItems`` by snapshotting the tables and, when any part fails,
    restoring the snapshot, which also undoes other clients' writes made meanwhile; DynamoDB
    instead cancels a conflicting transaction (``TransactionConflict``, retried by the core).
    One lock around the shared client's transactions makes moto behave like the real thing.
    """
    from verifyfeed import aws

    client = aws.dynamodb()
    original = client.transact_write_items
    lock = threading.Lock()

    def locked(**kwargs: Any) -> Any:
        with lock:
            return original(**kwargs)

    client.transact_write_items = locked  # type: ignore[method-assign]
    try:
        yield
    finally:
        del client.transact_write_items  # back to the class's method


class ConflictingClient:
    """A DynamoDB client whose next ``conflicts`` transactions lose a race (TransactionConflict)."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self._client = client
        self.conflicts = conflicts
        self.refused = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if self.refused < self.conflicts:
            self.refused += 1
            reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
            reasons += [{"Code": "None"}] * (len(kwargs["TransactItems"]) - 1)
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
