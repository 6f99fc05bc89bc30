"""The resend ledger: a lost-repair record sent for upload within the window (``RESEND_WINDOW``) is
not sent again; its row is rejected as ``duplicate.already_uploaded`` (docs/decisions.md#resend-ledger).

``LedgerSession`` preloads the window's keys into the splitter's ID table before the file is read,
commits the file's own keys under the ledger lock after (``LedgerConflict``: start over), and
reports a file identical to one already split as a duplicate. A record counts in the cycle it was
charged or held in, not the one it was split in."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from aws_lambda_powertools import Logger

from verifyfeed.clock import Blackout, china_time
from verifyfeed.logic.repair_batches import LEDGER_ROWS, SeenKeys
from verifyfeed.models.ledger import KEY_BYTES, LedgerEntry, LedgerObject
from verifyfeed.models.records import Batch, BatchStatus, Job, JobStatus
from verifyfeed.pii import Keyed
from verifyfeed.ports import BlobError, Blobs, JobRepository, Ledger
from verifyfeed.reasons import Reason, reason

logger = Logger(child=True)

_NOT_SENT = {BatchStatus.FAILED, BatchStatus.DISCARDED}
# jobs that sent nothing: their ledger objects (a rejected split may have written one) do not count
NEVER_SENT_JOBS = frozenset({JobStatus.REJECTED, JobStatus.DRY_RUN, JobStatus.DUPLICATE})
# a batch in one of these is settled for good: its records were charged or held (succeeded,
# unknown), refused (failed), never sent (discarded) or carried on by its children (bisected)
_DONE = {BatchStatus.SUCCEEDED, BatchStatus.UNKNOWN, *_NOT_SENT, BatchStatus.BISECTED}
# a job in one of these has every batch settled: it charges nothing more unless re-driven (which
# reopens it as uploading, and so makes it recent again)
SETTLED_JOBS = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, *NEVER_SENT_JOBS})
_LEASE_SECONDS = 120


class LedgerConflict(Exception):
    """A split that ran at the same time recorded some of this file's records first: split again."""


def window_start(window: str, now: datetime, blackout: Blackout) -> date | None:
    """The first China date whose splits count (``None``: the ledger is off).

    ``month``: the current monthly cycle. Uploads stop on the blackout day (the 27th) and what is
    dropped from then on is sent from the 1st, so a cycle runs from the previous month's blackout
    day: on 15 December from 27 November (files dropped 27-30 November were sent in December), on
    28 December too (a file re-dropped in the blackout waits for January, but what it repeats was
    charged in December), on 2 January from 27 December. ``<N>d``: today and the N-1 days before.
    """
    if window == "off":
        return None
    today = china_time(now).date()
    if window.endswith("d"):
        return today - timedelta(days=int(window[:-1]) - 1)
    first = today.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    start = _blackout_day(previous, blackout) or first
    current = blackout.window_containing(now)
    if current is not None and china_time(current[0]).date() == start:  # resume_day > 1: still in it
        before = (previous - timedelta(days=1)).replace(day=1)
        start = _blackout_day(before, blackout) or previous
    return start


def _blackout_day(month: date, blackout: Blackout) -> date | None:
    try:
        return month.replace(day=blackout.start_day)
    except ValueError:  # no such day that month: no blackout then
        return None


def _china_day(instant: str) -> date:
    """The China date of a stored ISO instant; the far future when there is none (so it counts)."""
    if not instant:
        return date.max
    return china_time(datetime.fromisoformat(instant)).date()


def ledger_key(pepper: Keyed) -> bytes:
    """The HMAC key of the ledger's keys, derived from the current identity pepper."""
    return hmac.digest(pepper.current, b"verifyfeed resend ledger v1", "sha256")


def key_fingerprint(key: bytes) -> str:
    """Which ledger key wrote an object (a rotated pepper makes older objects unreadable)."""
    return hmac.digest(key, b"fingerprint", "sha256")[:6].hex()


def file_fingerprint(key: bytes, etag: str, size: int) -> str:
    """A dropped file's content, keyed: its S3 ETag (an MD5 for single-part uploads) and size."""
    return hmac.digest(key, f"{etag.strip(chr(34))}\n{size}".encode(), "sha256")[:16].hex()


@dataclass
class _Source:
    job_id: str
    filename: str
    day: date


@dataclass
class LedgerSession:
    """The ledger as one split sees it: ``preload`` before the file is read, ``commit`` after.

    ``prior`` False (the override prefix) marks nothing seen; ``write`` False (a dry run) records
    nothing. Implements ``repair_batches.ResendLedger``."""

    store: Ledger
    jobs: JobRepository
    key: bytes
    job: Job
    first_day: date
    today: date
    blobs: Blobs  # the failed halves' claim-check bodies (claims/)
    bucket: str  # where a body without a bucket of its own is (the ingest bucket)
    prior: bool = True
    write: bool = True
    lookback_days: int = 0  # earlier splits looked at for charges within the window (module doc)
    # the run of the split this session serves (logic.splitter): with the job, the lock's holder;
    # ``owner_check`` raises, under the lock, when another run took the split over: it records nothing
    run: int = 0
    owner_check: Callable[[], None] | None = None
    sources: list[_Source] = field(default_factory=list)
    skipped_objects: int = 0  # written under another pepper (rotated): not comparable
    _read_etags: dict[str, str] = field(default_factory=dict)  # object key → ETag read by preload
    _ids: SeenKeys | None = None
    _snapshot: str = ""
    _keys: bytes = b""
    _counts: list[int] = field(default_factory=list)

    @property
    def hmac_key(self) -> bytes:
        return self.key

    @property
    def snapshot(self) -> str:
        """Which ledger ``preload`` read (its window, its objects and their versions): batches staged
        under the same snapshot hold the same records, so a resumed split keeps them. Set by
        ``preload``, read by every batch the stager writes."""
        assert self._snapshot, "preload first"
        return self._snapshot

    def _fix_snapshot(self) -> None:
        listed = "\n".join(f"{key} {etag}" for key, etag in sorted(self._read_etags.items()))
        text = f"{self.first_day.isoformat()}\n{self.prior}\n{key_fingerprint(self.key)}\n{listed}"
        self._snapshot = hashlib.sha256(text.encode()).hexdigest()[:16]

    def _claim_check_idcodes(self, batch: Batch) -> list[str] | None:
        """The idcodes in a batch's claim-check body (``claims/``), None when it is gone (expired)."""
        try:
            body = self.blobs.get(batch.claim_bucket or self.bucket, batch.claim_key)
        except BlobError as exc:
            if exc.missing:
                return None
            raise
        return [str(r["idcode"]) for r in json.loads(body)]

    def preload(self, ids: SeenKeys) -> None:
        self._ids = ids
        if self.prior:
            self._mark_prior(ids)
        self._fix_snapshot()

    def may_count(self, other: Job | None) -> bool:
        """Whether a job's records may count in the window: it sent something, and it had not
        settled before the window began (the cheap test, before its batches are read)."""
        if other is None or other.status in NEVER_SENT_JOBS:
            return False
        return not (other.status in SETTLED_JOBS and _china_day(other.updated_at) < self.first_day)

    def live_roots(self, job_id: str, batches: list[Batch] | None = None) -> tuple[set[int], date | None]:
        """Of an earlier split: the file's batches (by seq) a record of which was charged or held
        within the window or is not settled yet (bisected ones by their children), and the last
        China day within the window one of them was charged or held."""
        found = list(self.jobs.batches(job_id)) if batches is None else batches
        by_seq = {b.seq: b for b in found}
        live: set[int] = set()
        last: date | None = None
        for batch in found:
            charged = batch.status in (BatchStatus.SUCCEEDED, BatchStatus.UNKNOWN)
            day = _china_day(batch.updated_at)
            if batch.status in _DONE and not (charged and day >= self.first_day):
                continue
            if charged:
                last = max(last or day, day)
            root, hops = batch, 0
            while root.parent_seq and root.parent_seq in by_seq and hops < 64:
                root, hops = by_seq[root.parent_seq], hops + 1
            live.add(root.seq)
        return live, last

    def _mark_prior(self, ids: SeenKeys) -> None:
        """Mark the keys earlier files sent within the window seen in ``ids`` (rows >= ``LEDGER_ROWS``)."""
        fingerprint = key_fingerprint(self.key)
        for obj in self.store.list_since(self.first_day - timedelta(days=self.lookback_days)):
            if obj.job_id == self.job.job_id:
                continue  # this job's own object, from an interrupted run of this split
            other = self.jobs.get_job(obj.job_id)
            if obj.day < self.first_day and not self.may_count(other):
                continue  # split earlier, and settled before the window: charged in another cycle
            self._read_etags[obj.key] = obj.etag
            keys = self._live_keys(obj, other, fingerprint, ids)
            if keys:
                ids.mark_many(keys, LEDGER_ROWS + len(self.sources) - 1)
        logger.info(
            "resend ledger read",
            extra={
                "ledger_files": len(self.sources),
                "ledger_records": len(ids),
                "ledger_skipped_files": self.skipped_objects,
                "window_from": self.first_day.isoformat(),
            },
        )

    def _live_keys(self, obj: LedgerObject, other: Job | None, fingerprint: str, ids: SeenKeys) -> bytes:
        """The keys of ``obj`` (written by the job ``other``) that count as sent, after adding its
        source (else b"")."""
        entry = self.store.read(obj)
        if entry.pepper != fingerprint:
            self.skipped_objects += 1
            return b""
        if other is None or other.status in NEVER_SENT_JOBS:
            return b""
        batches = list(self.jobs.batches(obj.job_id))
        listed = {seq for seq, _ in entry.batches}
        day, elsewhere = obj.day, set[int]()
        if obj.day < self.first_day:  # split earlier: what it charged or held within the window
            live, last = self.live_roots(obj.job_id, batches)
            elsewhere = listed - live
            if elsewhere == listed:
                return b""
            day = last or self.first_day
        self.sources.append(_Source(obj.job_id, other.key.rsplit("/", 1)[-1], day))
        not_sent = [b for b in batches if b.status in _NOT_SENT]
        if not not_sent and not elsewhere:
            return entry.keys
        released = {b.seq for b in not_sent if b.seq in listed} | elsewhere
        keys = b"".join(keys for seq, keys in entry.batch_keys() if seq not in released)
        # a batch the file did not list (a part of a batch the upstream refused, split to find the
        # refused rows): its records are in its claim-check body, while that lasts (claims/, 14 days)
        others = [b for b in not_sent if b.seq not in listed and b.status == BatchStatus.FAILED]
        if not others:
            return keys
        dropped: set[bytes] = set()
        for batch in others:
            idcodes = self._claim_check_idcodes(batch) if batch.claim_key else None
            if idcodes is None:
                logger.warning(
                    "resend ledger: a failed batch's body is gone; its records still count as sent",
                    extra={"other": obj.job_id, "seq": batch.seq},
                )
                continue
            dropped.update(ids.key(bytes.fromhex(i)) for i in idcodes)  # as the file's rows are keyed
        if not dropped:
            return keys
        return b"".join(
            keys[at : at + KEY_BYTES]
            for at in range(0, len(keys), KEY_BYTES)
            if keys[at : at + KEY_BYTES] not in dropped
        )

    def describe(self, row: int) -> Reason:
        source = self.sources[row - LEDGER_ROWS]
        return reason(
            "duplicate.already_uploaded", file=source.filename, date=source.day.isoformat(), job=source.job_id
        )

    def record(self, keys: bytes, counts: list[int]) -> None:
        self._keys, self._counts = keys, counts

    @property
    def entry(self) -> LedgerEntry:
        batches = tuple((seq, count) for seq, count in enumerate(self._counts, start=1) if count)
        return LedgerEntry(self.job.job_id, key_fingerprint(self.key), batches, self._keys)

    def commit(self, now: datetime, wait_seconds: float) -> None:
        """Write this file's keys, unless a split that ran meanwhile recorded some of them first."""
        if not self.write:
            return
        holder = f"{self.job.job_id}#{self.run}"
        self.store.acquire(holder, now, _LEASE_SECONDS, wait_seconds)
        try:
            if self.owner_check is not None:
                self.owner_check()
            if self.prior:
                self._check_newcomers()
            self.store.write(self.today, self.entry)
        finally:
            self.store.release(holder)

    def _check_newcomers(self) -> None:
        assert self._ids is not None
        fingerprint = key_fingerprint(self.key)
        ids = self._ids
        for obj in self.store.list_since(self.first_day):
            if obj.job_id == self.job.job_id or self._read_etags.get(obj.key) == obj.etag:
                continue
            entry = self.store.read(obj)
            if entry.pepper != fingerprint:
                continue
            keys = entry.keys
            for at in range(0, len(keys), KEY_BYTES):
                if 0 < ids.first(keys[at : at + KEY_BYTES]) < LEDGER_ROWS:
                    logger.info("resend ledger: an overlapping split came first", extra={"other": obj.job_id})
                    raise LedgerConflict(obj.job_id)
