"""Carrier audits (``pk=AUDIT#<audit_key>``), indexed by upstream record id and by status.

Items hold masked values and keyed digests (``pii.Keyed``), never the plaintext. Every write is
conditional on the state and ``version`` it leaves, so a stale or replayed result never overwrites a
newer one (docs/architecture.md#audit-states; ``cycle``: docs/decisions.md#callback-replay).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from verifyfeed import aws
from verifyfeed.models.ids import iso
from verifyfeed.models.records import (
    Audit,
    AuditStatus,
    Redrive,
    Reservation,
    next_cycle,
    reservation_over,
    resubmitted,
    settlement_counter,
)
from verifyfeed.ports import StaleAudit
from verifyfeed.store.dynamo import (
    attr,
    conditional,
    from_item,
    put_if_absent,
    query_count,
    query_items,
    translate_errors,
    write_transaction,
)
from verifyfeed.store.jobs import JOB_EXISTS, JOB_SK, job_pk, no_job, reopen_job  # an audit counts on its job

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RECORD_INDEX = "by-record-id"
STATUS_INDEX = "by-status"


def audit_pk(audit_key: str) -> str:
    return f"AUDIT#{audit_key}"


def record_pk(record_id: int) -> str:
    """The item that maps an upstream record id to its audit (``audit_key``): one strongly
    consistent ``GetItem`` instead of a query on the eventually consistent record-id index."""
    return f"RECORD#{record_id}"


@translate_errors
class AuditStore:
    def __init__(self, table: str, jobs_table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self.jobs_table = jobs_table
        self._db = client or aws.dynamodb()

    def get(self, audit_key: str) -> Audit | None:
        item = self._db.get_item(
            TableName=self.table, Key={"pk": attr(audit_pk(audit_key))}, ConsistentRead=True
        ).get("Item")
        return None if item is None else Audit.model_validate(from_item(item))

    def find_key(self, candidates: Sequence[str]) -> str:
        """The first of ``candidates`` (``logic.audit_intake.audit_keys``) an audit is stored under, else
        the first: an audit written under a previous pepper (or before keyed digests) is found."""
        if len(candidates) > 1:
            for key in candidates:
                if self.get(key) is not None:
                    return key
        return candidates[0]

    def find_keys(self, candidates: Sequence[Sequence[str]]) -> list[str]:
        """``find_key`` of each candidate list, with the look-ups made 100 keys per
        ``BatchGetItem`` (consistent reads) instead of one ``GetItem`` each."""
        wanted = sorted({key for keys in candidates if len(keys) > 1 for key in keys})
        stored: set[str] = set()
        for start in range(0, len(wanted), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"pk": attr(audit_pk(key))} for key in wanted[start : start + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "pk",
                }
            }
            for attempt in range(8):
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    stored.add(str(from_item(item)["pk"]).removeprefix("AUDIT#"))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))  # throttled: back off, then the rest
            else:
                raise RuntimeError("DynamoDB left audit look-ups unprocessed after 8 attempts")
        return [
            next((k for k in keys if k in stored), keys[0]) if len(keys) > 1 else keys[0]
            for keys in candidates
        ]

    def key_for_record(self, record_id: int) -> str | None:
        """The ``audit_key`` of the audit upstream knows as ``record_id``, or ``None``."""
        alias = self._db.get_item(
            TableName=self.table, Key={"pk": attr(record_pk(record_id))}, ConsistentRead=True
        ).get("Item")
        if alias is not None:
            return str(from_item(alias)["audit_key"])
        # audits that went pending before the record items existed: the index (no consistent read;
        # the conditional write that follows checks the record id on the item itself)
        page = self._db.query(
            TableName=self.table,
            IndexName=RECORD_INDEX,
            KeyConditionExpression="record_id = :r",
            ExpressionAttributeValues={":r": attr(record_id)},
        )
        items = page.get("Items", [])
        return str(from_item(items[0])["audit_key"]) if items else None

    def decide_record(
        self,
        audit_key: str,
        record_id: int,
        to: AuditStatus,
        remarks: str,
        now: datetime,
        cycle: int | None = None,
    ) -> tuple[bool, Audit | None]:
        """pending → passed / rejected for the audit holding ``record_id``, without reading it first.

        ``(True, None)`` when applied; ``(False, the audit as it is)`` — ``None`` when there is
        none — when it is not pending with that record id (a replay, a conflict, an old id) or,
        with ``cycle``, not in that cycle (0: an audit whose cycle was never recorded).
        """
        update = "SET #s = :to, updated_at = :now, version = version + :one, remarks = :r"
        condition = "#s = :pending AND record_id = :rid"
        names = {"#s": "status"}
        values: dict[str, Any] = {
            ":to": attr(to.value),
            ":now": attr(iso(now)),
            ":one": attr(1),
            ":r": attr(remarks),
            ":pending": attr(AuditStatus.PENDING.value),
            ":rid": attr(record_id),
        }
        if cycle is not None:
            names["#c"] = "cycle"  # a reserved word
            values[":cycle"] = attr(cycle)
            unrecorded = "attribute_not_exists(#c) OR " if cycle == 0 else ""
            condition += f" AND ({unrecorded}#c = :cycle)"
        with conditional() as decide:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(audit_pk(audit_key))},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        if not decide.failed:
            return True, None
        return False, None if decide.item is None else Audit.model_validate(from_item(decide.item))

    def reserve(self, audit: Audit, now: datetime) -> tuple[Reservation, Audit]:
        """Reserve the audit for a submission from a file row, atomically.

        New → ADD. Rejected (or failed) → UPDATE/ADD, going back to ``submitting``.
        Anything else → DUPLICATE, nothing written.
        """
        values = audit.model_dump(mode="json")
        values.update(
            pk=audit_pk(audit.audit_key), status=AuditStatus.SUBMITTING.value, submitted_at=iso(now)
        )
        values["updated_at"] = iso(now)
        if put_if_absent(self._db, self.table, values):
            stored = {"status": AuditStatus.SUBMITTING, "submitted_at": iso(now), "updated_at": iso(now)}
            return Reservation.ADD, audit.model_copy(update=stored)
        existing = self.get(audit.audit_key)
        kind = Reservation.DUPLICATE if existing is None else reservation_over(existing)
        if existing is None or kind == Reservation.DUPLICATE:
            return Reservation.DUPLICATE, existing or audit
        try:
            updated = self._move(existing, AuditStatus.SUBMITTING, now, resubmitted(audit, iso(now)))
        except StaleAudit:
            return Reservation.DUPLICATE, existing
        return kind, updated

    def _move(self, audit: Audit, to: AuditStatus, now: datetime, fields: dict[str, Any]) -> Audit:
        sets = ["#s = :to", "updated_at = :now", "version = version + :one"]
        values: dict[str, Any] = {
            ":to": attr(to.value),
            ":now": attr(iso(now)),
            ":one": attr(1),
            ":from": attr(audit.status.value),
            ":v": attr(audit.version),
        }
        names = {"#s": "status"}
        for i, (name, value) in enumerate(fields.items()):
            sets.append(f"#f{i} = :f{i}")  # names may be reserved words ("row")
            names[f"#f{i}"] = name
            values[f":f{i}"] = attr(value)
        with conditional(lambda: StaleAudit(audit.audit_key)):
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(audit_pk(audit.audit_key))},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#s = :from AND version = :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return audit.model_copy(
            update={"status": to, "updated_at": iso(now), "version": audit.version + 1, **fields}
        )

    def settle_submission(
        self, audit: Audit, to: AuditStatus, now: datetime, *, record_id: int | None = None, error: str = ""
    ) -> Audit:
        """submitting → pending (with the record id) / failed / unknown, and count it on the job.

        Pending starts a cycle of the record (``Audit.cycle``): the first under a new record id, the
        next one when the audit goes pending again under the record id it holds (an /update)."""
        counter = settlement_counter(to)
        sets = [
            "#s = :to",
            "updated_at = :now",
            "version = version + :one",
            "last_error = :err",
            "lease_until = :nolease",
        ]
        values: dict[str, Any] = {
            ":to": attr(to.value),
            ":now": attr(iso(now)),
            ":one": attr(1),
            ":err": attr(error),
            ":nolease": attr(""),
            ":from": attr(audit.status.value),
            ":v": attr(audit.version),
        }
        names = {"#s": "status"}
        if record_id is not None:
            sets.append("record_id = :rid")
            values[":rid"] = attr(record_id)
        cycle = next_cycle(audit, to, record_id)  # from the audit as read: the version condition pins it
        if cycle is not None:
            sets.append("#c = :cycle")
            names["#c"] = "cycle"  # a reserved word
            values[":cycle"] = attr(cycle)
        alias: list[dict[str, Any]] = []
        if record_id is not None and to == AuditStatus.PENDING:
            item = {"pk": attr(record_pk(record_id)), "audit_key": attr(audit.audit_key)}
            alias.append({"Put": {"TableName": self.table, "Item": item}})
        # the job's counters (after the audit) are conditional on the job only: alone, JobMissing
        with conditional(
            lambda: StaleAudit(audit.audit_key), guard=(len(alias) + 1, lambda: no_job(audit.job_id))
        ):
            write_transaction(
                self._db,
                [
                    *alias,
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": attr(audit_pk(audit.audit_key))},
                            "UpdateExpression": "SET " + ", ".join(sets),
                            "ConditionExpression": "#s = :from AND version = :v",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.jobs_table,
                            "Key": {"pk": attr(job_pk(audit.job_id)), "sk": attr(JOB_SK)},
                            "UpdateExpression": f"ADD {counter} :one",
                            "ExpressionAttributeValues": {":one": attr(1)},
                            "ConditionExpression": JOB_EXISTS,
                        }
                    },
                ],
            )
        update: dict[str, Any] = {
            "status": to,
            "updated_at": iso(now),
            "version": audit.version + 1,
            "last_error": error,
            "lease_until": "",
        }
        if record_id is not None:
            update["record_id"] = record_id
        if cycle is not None:
            update["cycle"] = cycle
        return audit.model_copy(update=update)

    def resubmit_unknown(self, audit: Audit, now: datetime, by: str) -> Audit:
        """An operator's re-submission: ``unknown → submitting`` and its job reopened, in one transaction.

        Conditional on the audit being ``unknown`` at the version it was read in (StaleAudit if it
        moved) and on the job having finished splitting. The job's ``batches_unknown`` goes down by
        one and the job returns to ``uploading``, so that it settles (and rewrites its report) again
        when the audit settles: the same as ``JobStore.redrive_batch`` for a batch
        (docs/decisions.md#redrive). ``resubmissions`` counts re-submissions, ``redriven`` says who
        (``by``) and when.
        """
        if audit.status != AuditStatus.UNKNOWN:
            raise ValueError(f"only unknown audits are re-submitted, not {audit.status.value}")
        entry = Redrive(at=iso(now), by=by, was=audit.status.value)
        audit_update = (
            "SET #s = :to, updated_at = :now, version = version + :one, last_error = :empty, "
            "lease_until = :empty, submitted_at = :now, "
            "resubmissions = if_not_exists(resubmissions, :zero) + :one, "
            "redriven = list_append(if_not_exists(redriven, :none), :entry)"
        )
        with conditional(lambda: StaleAudit(audit.audit_key)):
            write_transaction(
                self._db,
                [
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": attr(audit_pk(audit.audit_key))},
                            "UpdateExpression": audit_update,
                            "ConditionExpression": "#s = :from AND version = :v",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {
                                ":to": attr(AuditStatus.SUBMITTING.value),
                                ":from": attr(AuditStatus.UNKNOWN.value),
                                ":now": attr(iso(now)),
                                ":one": attr(1),
                                ":zero": attr(0),
                                ":empty": attr(""),
                                ":v": attr(audit.version),
                                ":none": attr([]),
                                ":entry": attr([entry.model_dump()]),
                            },
                        }
                    },
                    reopen_job(self.jobs_table, audit.job_id, "batches_unknown", now),
                ],
            )
        return audit.model_copy(
            update={
                "status": AuditStatus.SUBMITTING,
                "updated_at": iso(now),
                "version": audit.version + 1,
                "last_error": "",
                "lease_until": "",
                "submitted_at": iso(now),
                "resubmissions": audit.resubmissions + 1,
                "redriven": [*audit.redriven, entry],
            }
        )

    def take_lease(self, audit: Audit, now: datetime, until: datetime) -> Audit:
        """A worker is about to call upstream for this submitting audit."""
        return self._move(audit, AuditStatus.SUBMITTING, now, {"lease_until": iso(until)})

    def release_lease(self, audit: Audit, now: datetime) -> Audit:
        """The call certainly did not take effect: another delivery may try again."""
        return self._move(audit, AuditStatus.SUBMITTING, now, {"lease_until": ""})

    def decide(self, audit: Audit, to: AuditStatus, remarks: str, now: datetime) -> Audit:
        """pending → passed / rejected (the callback and the poller both come here)."""
        return self._move(audit, to, now, {"remarks": remarks})

    def mark_polled(self, audit: Audit, now: datetime, error: str = "") -> bool:
        """A poll of this pending audit is done (answered "still pending", or not readable: ``error``).

        Its ``updated_at`` — the by-status index's sort key — moves to ``now``, so the next run starts
        with the audits polled least recently (no audit starves behind the oldest ones). Conditional
        on the audit still being pending at the version read; False when it moved meanwhile.
        """
        values: dict[str, Any] = {
            ":now": attr(iso(now)),
            ":one": attr(1),
            ":zero": attr(0),
            ":pending": attr(AuditStatus.PENDING.value),
            ":v": attr(audit.version),
            ":e": attr(error[:500]),
        }
        with conditional() as mark:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(audit_pk(audit.audit_key))},
                UpdateExpression=(
                    "SET updated_at = :now, polled_at = :now, poll_error = :e, "
                    "polls = if_not_exists(polls, :zero) + :one"
                ),
                ConditionExpression="#s = :pending AND version = :v",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        return not mark.failed

    def with_status(
        self,
        status: AuditStatus,
        older_than: datetime | None = None,
        limit: int = 100,
        *,
        newest_first: bool = False,
    ) -> list[Audit]:
        """Audits in ``status``, least recently updated first (or newest first)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :s" + (" AND updated_at < :t" if older_than else ""),
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": attr(status.value)},
            "Limit": min(limit, 100),
            "ScanIndexForward": not newest_first,
        }
        if older_than:
            kwargs["ExpressionAttributeValues"][":t"] = attr(iso(older_than))
        return [Audit.model_validate(i) for i in query_items(self._db, kwargs, limit)]

    def count_with_status(self, status: AuditStatus) -> int:
        """How many audits are in ``status`` (the status index, counted without reading the items)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": attr(status.value)},
        }
        return query_count(self._db, kwargs)

    def scan_all(self) -> Iterator[Audit]:
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = self._db.scan(**kwargs)
            for item in page.get("Items", []):
                if "status" in item:  # not a record item (record_pk)
                    yield Audit.model_validate(from_item(item))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_by_status(self) -> dict[str, int]:
        counts = Counter(a.status.value for a in self.scan_all())
        return {s.value: counts.get(s.value, 0) for s in AuditStatus}
