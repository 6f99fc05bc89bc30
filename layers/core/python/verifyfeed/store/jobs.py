"""Jobs and their batches, in one table (``pk=JOB#<id>``; ``sk=JOB`` or ``sk=BATCH#<seq>``).

Every transition is conditional on the state it leaves and moves the job's counters in the same
transaction (docs/architecture.md#batch-states); a bisection's halves are batches with seqs of
their own (``tree_seq``, docs/decisions.md#state-0); a split's runs are fenced by number
(``split_run``, docs/decisions.md#all-or-nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from verifyfeed import aws
from verifyfeed.models.ids import (
    TREE_BASE,
    TREE_SPAN,
    iso,
    tree_position,
    tree_seq,
)
from verifyfeed.models.records import (
    REOPENABLE_JOB_STATUSES,
    Batch,
    BatchFields,
    BatchStatus,
    Job,
    JobCounts,
    JobStatus,
    Redrive,
)
from verifyfeed.ports import JobMissing, SplitSuperseded, StaleTransition
from verifyfeed.store.dynamo import (
    attr,
    conditional,
    from_item,
    put_if_absent,
    query_count,
    query_items,
    to_item,
    translate_errors,
    write_transaction,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

JOB_SK = "JOB"
JOBS_INDEX = "gsi1"
JOBS_PARTITION = "JOBS"
COUNTER_FOR = {
    BatchStatus.SUCCEEDED: "batches_succeeded",
    BatchStatus.FAILED: "batches_failed",
    BatchStatus.UNKNOWN: "batches_unknown",
    BatchStatus.DEFERRED: "batches_deferred",
    BatchStatus.BISECTED: "batches_bisected",
}
# batches an operator must look at are listed in a sparse index
LISTED_STATUSES = {BatchStatus.DEFERRED, BatchStatus.FAILED, BatchStatus.UNKNOWN}


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def batch_sk(seq: int) -> str:
    return f"BATCH#{seq:06d}"


# the condition of every update of a job item: the job is there (a bare update of a missing one
# would create a fragment of an item that get_job cannot read)
JOB_EXISTS = "attribute_exists(pk)"


def no_job(job_id: str) -> JobMissing:
    return JobMissing(f"no job {job_id}", code="ConditionalCheckFailedException")


# a staged batch's run is this run or an earlier one (a batch written before runs were numbered has none)
_NO_LATER_RUN = "(attribute_not_exists(split_run) OR split_run <= :run)"


def reopen_job(table: str, job_id: str, counter: str, now: datetime) -> dict[str, Any]:
    """The transaction item of an operator's re-drive on the job: back to ``uploading`` (it settles,
    and rewrites its report, again) with ``counter`` one down, if the file was split (its status
    is one of ``REOPENABLE_JOB_STATUSES``). A re-drive from ``unknown`` is counted on the job
    (``unknown_redrives``): it may charge twice, whatever the job's status says after."""
    values = {f":j{i}": attr(s.value) for i, s in enumerate(REOPENABLE_JOB_STATUSES)}
    counters = f"{counter} :minus" + (", unknown_redrives :one" if counter == "batches_unknown" else "")
    extra = {":one": attr(1)} if counter == "batches_unknown" else {}
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
            "UpdateExpression": f"SET #s = :uploading, updated_at = :now ADD {counters}",
            "ConditionExpression": "#s IN (" + ", ".join(values) + ")",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                **values,
                **extra,
                ":uploading": attr(JobStatus.UPLOADING.value),
                ":now": attr(iso(now)),
                ":minus": attr(-1),
            },
        }
    }


@translate_errors
class JobStore:
    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._db = client or aws.dynamodb()

    # ---- jobs -------------------------------------------------------------------------

    def create_job(self, job: Job) -> bool:
        """Create the job; False when it exists already (the same S3 event delivered twice)."""
        values = job.model_dump(mode="json")
        values.update(
            pk=job_pk(job.job_id), sk=JOB_SK, gsi1pk=JOBS_PARTITION, gsi1sk=f"{job.created_at}#{job.job_id}"
        )
        return put_if_absent(self._db, self.table, values)

    def get_job(self, job_id: str) -> Job | None:
        item = self._db.get_item(
            TableName=self.table, Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)}, ConsistentRead=True
        ).get("Item")
        return None if item is None else Job.model_validate(from_item(item))

    def list_jobs(self, limit: int = 100) -> list[Job]:
        """Most recent first."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": JOBS_INDEX,
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": attr(JOBS_PARTITION)},
            "ScanIndexForward": False,
        }
        return [Job.model_validate(i) for i in query_items(self._db, query, limit)]

    def find_jobs(self, file: str) -> list[Job]:
        """The jobs of an uploaded file, most recent first (one per uploaded version).

        ``file`` is the object key (``lost-repair/list.csv``) or, without a ``/``, the file name
        under any prefix.
        """
        exact = "/" in file
        jobs: list[Job] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": JOBS_INDEX,
            "KeyConditionExpression": "gsi1pk = :p",
            "FilterExpression": "#k = :k" if exact else "contains(#k, :k)",
            "ExpressionAttributeNames": {"#k": "key"},
            "ExpressionAttributeValues": {
                ":p": attr(JOBS_PARTITION),
                ":k": attr(file if exact else f"/{file}"),
            },
            "ScanIndexForward": False,
        }
        while True:
            page = self._db.query(**kwargs)
            found = (Job.model_validate(from_item(i)) for i in page.get("Items", []))
            jobs.extend(j for j in found if exact or j.key.endswith(f"/{file}"))
            if "LastEvaluatedKey" not in page:
                return jobs
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def take_split(self, job_id: str) -> int | None:
        """A run of the split takes the job over: its number, one above the last run's; None when
        the job is not splitting."""
        with conditional() as take:
            answer = self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
                UpdateExpression="ADD split_run :one",
                ConditionExpression="#s = :splitting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":one": attr(1), ":splitting": attr(JobStatus.SPLITTING.value)},
                ReturnValues="UPDATED_NEW",
            )
        return None if take.failed else int(answer["Attributes"]["split_run"]["N"])

    def _owning_update(self, job_id: str, run: int, **update: Any) -> None:
        """Update the job if ``run`` still owns its split: SplitSuperseded if another run took it
        over or finished it, JobMissing if there is no job."""
        names = {"#s": "status", **update.pop("ExpressionAttributeNames", {})}
        values = {
            ":splitting": attr(JobStatus.SPLITTING.value),
            ":run": attr(run),
            **update.pop("ExpressionAttributeValues"),
        }
        with conditional(lambda: no_job(job_id) if self.get_job(job_id) is None else SplitSuperseded(job_id)):
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
                ConditionExpression="#s = :splitting AND split_run = :run",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                **update,
            )

    def finish_split(self, job_id: str, counts: JobCounts, now: datetime, run: int = 0) -> None:
        """Record what the splitter found: ``splitting → uploading``, if ``run`` still owns the split.
        SET, not ADD: the counts are the run's own."""
        self._owning_update(
            job_id,
            run,
            UpdateExpression=(
                "SET rows_read = :r, rows_accepted = :a, rows_rejected = :j, rows_already_uploaded = :u, "
                "batches_total = :t, #s = :uploading, updated_at = :now"
            ),
            ExpressionAttributeValues={
                ":r": attr(counts.rows_read),
                ":a": attr(counts.rows_accepted),
                ":j": attr(counts.rows_rejected),
                ":u": attr(counts.rows_already_uploaded),
                ":t": attr(counts.batches_total),
                ":uploading": attr(JobStatus.UPLOADING.value),
                ":now": attr(iso(now)),
            },
        )

    def mark_released(self, job_id: str, now: datetime) -> bool:
        """Every staged batch of the job has its message on the queue; False when it was marked so
        already (another run released it too)."""
        with conditional() as mark:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
                UpdateExpression="SET released_at = :now",
                ConditionExpression=(
                    f"{JOB_EXISTS} AND (attribute_not_exists(released_at) OR released_at = :no)"
                ),
                ExpressionAttributeValues={":now": attr(iso(now)), ":no": attr("")},
            )
        if mark.failed and self.get_job(job_id) is None:
            raise no_job(job_id) from mark.error
        return not mark.failed

    def discard_staged(self, job_id: str, seq: int, now: datetime, run: int = 0) -> bool:
        """``staged → discarded`` (never sent); False when it was not staged, or a later run than
        ``run`` staged or kept it."""
        with conditional() as discard:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(batch_sk(seq))},
                UpdateExpression="SET #s = :discarded, updated_at = :now, claim_key = :empty",
                ConditionExpression=f"#s = :staged AND {_NO_LATER_RUN}",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":discarded": attr(BatchStatus.DISCARDED.value),
                    ":staged": attr(BatchStatus.STAGED.value),
                    ":now": attr(iso(now)),
                    ":empty": attr(""),
                    ":run": attr(run),
                },
            )
        return not discard.failed

    def reject_job(
        self,
        job_id: str,
        reason: str,
        counts: JobCounts,
        now: datetime,
        status: JobStatus = JobStatus.REJECTED,
        run: int = 0,
    ) -> None:
        """The file as a whole is not sent: ``rejected`` (or ``duplicate``: identical to one split),
        if ``run`` still owns the split."""
        self._owning_update(
            job_id,
            run,
            UpdateExpression=(
                "SET #s = :rejected, reason = :why, rows_read = :r, rows_rejected = :j, updated_at = :now"
            ),
            ExpressionAttributeValues={
                ":rejected": attr(status.value),
                ":why": attr(reason),
                ":r": attr(counts.rows_read),
                ":j": attr(counts.rows_rejected),
                ":now": attr(iso(now)),
            },
        )

    def set_job_status(self, job_id: str, status: JobStatus, expected: set[JobStatus], now: datetime) -> bool:
        names = {f":e{i}": attr(s.value) for i, s in enumerate(sorted(expected))}
        with conditional() as move:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
                UpdateExpression="SET #s = :new, updated_at = :now",
                ConditionExpression=f"#s IN ({', '.join(names)})",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":new": attr(status.value), ":now": attr(iso(now)), **names},
            )
        return not move.failed

    def set_report_key(self, job_id: str, report_key: str) -> None:
        with conditional(lambda: no_job(job_id)):
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(job_id)), "sk": attr(JOB_SK)},
                UpdateExpression="SET report_key = :k",
                ExpressionAttributeValues={":k": attr(report_key)},
                ConditionExpression=JOB_EXISTS,
            )

    # ---- batches ----------------------------------------------------------------------

    def put_batch_if_absent(self, batch: Batch) -> bool:
        values = batch.model_dump(mode="json")
        values.update(pk=job_pk(batch.job_id), sk=batch_sk(batch.seq))
        return put_if_absent(self._db, self.table, values)

    def stage_batch(self, batch: Batch) -> bool:
        """Write a ``staged`` batch (staged by ``batch.split_run``) over nothing, or over one never
        released that no later run staged or kept (``staged`` by an interrupted run, ``discarded`` by
        a run that started over); False when there is one of those, or it was released."""
        values = batch.model_dump(mode="json")
        values.update(pk=job_pk(batch.job_id), sk=batch_sk(batch.seq))
        with conditional() as stage:
            self._db.put_item(
                TableName=self.table,
                Item=to_item(values),
                ConditionExpression=(
                    f"attribute_not_exists(pk) OR (#s IN (:staged, :discarded) AND {_NO_LATER_RUN})"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":staged": attr(BatchStatus.STAGED.value),
                    ":discarded": attr(BatchStatus.DISCARDED.value),
                    ":run": attr(batch.split_run),
                },
            )
        return not stage.failed

    def keep_staged(self, batch: Batch, run: int) -> bool:
        """A later run keeps a batch an earlier one staged (the same records): it carries ``run``
        from now on; False when it is no longer staged as read (discarded meanwhile, or kept or
        staged again by a run later than ``run``)."""
        with conditional() as keep:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": attr(job_pk(batch.job_id)), "sk": attr(batch_sk(batch.seq))},
                UpdateExpression="SET split_run = :run",
                ConditionExpression=(
                    "#s = :staged AND claim_key = :key AND ledger_snapshot = :snapshot AND record_count = :n"
                    f" AND {_NO_LATER_RUN}"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":staged": attr(BatchStatus.STAGED.value),
                    ":key": attr(batch.claim_key),
                    ":snapshot": attr(batch.ledger_snapshot),
                    ":n": attr(batch.record_count),
                    ":run": attr(run),
                },
            )
        return not keep.failed

    def get_batch(self, job_id: str, seq: int) -> Batch | None:
        item = self._db.get_item(
            TableName=self.table,
            Key={"pk": attr(job_pk(job_id)), "sk": attr(batch_sk(seq))},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else Batch.model_validate(from_item(item))

    def batches(self, job_id: str) -> Iterator[Batch]:
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {":p": attr(job_pk(job_id)), ":b": attr("BATCH#")},
            "ConsistentRead": True,
        }
        yield from (Batch.model_validate(i) for i in query_items(self._db, query))

    def tree(self, job_id: str, root_seq: int) -> list[Batch]:
        """The file's batch ``root_seq`` and every child batch split from it, by seq (node order)."""
        low, high = batch_sk(tree_seq(root_seq, 2)), batch_sk(tree_seq(root_seq, TREE_SPAN - 1))
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":p": attr(job_pk(job_id)), ":low": attr(low), ":high": attr(high)},
            "ConsistentRead": True,
        }
        root = self.get_batch(job_id, root_seq)
        found = (Batch.model_validate(i) for i in query_items(self._db, query))  # in seq order
        # a file of more than TREE_BASE batches would have seqs sorting inside the range: not ours
        children = [b for b in found if b.seq >= TREE_BASE and tree_position(b.seq)[0] == root_seq]
        return ([root] if root else []) + children

    def batches_with_status(self, status: BatchStatus, limit: int = 100) -> list[Batch]:
        """Deferred, failed or unknown batches across all jobs (sparse index)."""
        return [Batch.model_validate(i) for i in query_items(self._db, self._status_query(status), limit)]

    def count_with_status(self, status: BatchStatus) -> int:
        """How many batches are deferred, failed or unknown (the sparse index), without reading them."""
        return query_count(self._db, self._status_query(status))

    def _status_query(self, status: BatchStatus) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "IndexName": JOBS_INDEX,
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": attr(f"BATCH#{status.value}")},
        }

    def redrive_batch(self, batch: Batch, now: datetime, by: str) -> Batch:
        """An operator's re-drive: ``failed|unknown → retry`` and the job reopened, in one transaction.

        Conditional on the state and attempt number the batch was read in (StaleTransition if it
        moved) and on the job having finished splitting. ``state0_count`` starts again from zero, so
        the batch gets its full budget of ``state`` "0" answers; ``redrives`` counts re-drives and
        ``redriven`` says who (``by``), when and from what. The job goes back to ``uploading`` so
        that it settles (and rewrites its report) again.
        """
        if batch.status not in (BatchStatus.FAILED, BatchStatus.UNKNOWN):
            raise ValueError(f"only failed or unknown batches are re-driven, not {batch.status.value}")
        counter = COUNTER_FOR[batch.status]
        entry = Redrive(at=iso(now), by=by, was=batch.status.value)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": attr(job_pk(batch.job_id)), "sk": attr(batch_sk(batch.seq))},
                    "UpdateExpression": (
                        "SET #s = :retry, updated_at = :now, lease_until = :empty, state0_count = :zero, "
                        "redrives = if_not_exists(redrives, :zero) + :one, "
                        "redriven = list_append(if_not_exists(redriven, :none), :entry) REMOVE gsi1pk, gsi1sk"
                    ),
                    "ConditionExpression": "#s = :from AND attempts = :attempts",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":retry": attr(BatchStatus.RETRY.value),
                        ":now": attr(iso(now)),
                        ":empty": attr(""),
                        ":zero": attr(0),
                        ":one": attr(1),
                        ":from": attr(batch.status.value),
                        ":attempts": attr(batch.attempts),
                        ":none": attr([]),
                        ":entry": attr([entry.model_dump()]),
                    },
                }
            },
            reopen_job(self.table, batch.job_id, counter, now),
        ]
        with conditional(lambda: StaleTransition(batch.batch_id)):
            write_transaction(self._db, items)
        return batch.model_copy(
            update={
                "status": BatchStatus.RETRY,
                "updated_at": iso(now),
                "lease_until": "",
                "state0_count": 0,
                "redrives": batch.redrives + 1,
                "redriven": [*batch.redriven, entry],
            }
        )

    def transition(
        self,
        batch: Batch,
        to: BatchStatus,
        now: datetime,
        *,
        lease_until: datetime | None = None,
        count_attempt: bool = False,
        count_state0: bool = False,
        fields: BatchFields | None = None,
        new_batches: int = 0,
    ) -> Batch:
        """Move ``batch`` from the state it was read in to ``to``; counters follow in one transaction.

        ``new_batches``: child batches created for it (a bisection), added to the job's total in the
        same transaction. Raises StaleTransition when the record changed since it was read.
        """
        sets = ["#s = :to", "updated_at = :now", "lease_until = :lease"]
        values: dict[str, Any] = {
            ":to": attr(to.value),
            ":now": attr(iso(now)),
            ":lease": attr(iso(lease_until) if lease_until else ""),
            ":from": attr(batch.status.value),
            ":attempts": attr(batch.attempts),
        }
        removes: list[str] = []
        if to in LISTED_STATUSES:
            sets += ["gsi1pk = :gpk", "gsi1sk = :gsk"]
            values[":gpk"] = attr(f"BATCH#{to.value}")
            values[":gsk"] = attr(f"{iso(now)}#{batch.batch_id}")
        else:
            removes += ["gsi1pk", "gsi1sk"]
        if count_attempt:
            sets.append("attempts = attempts + :one")
            values[":one"] = attr(1)
        if count_state0:
            sets.append("state0_count = state0_count + :one")
            values[":one"] = attr(1)
        names = {"#s": "status"}
        for i, (name, value) in enumerate((fields or {}).items()):
            sets.append(f"#f{i} = :f{i}")  # names may be reserved words
            names[f"#f{i}"] = name
            values[f":f{i}"] = attr(value)
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": attr(job_pk(batch.job_id)), "sk": attr(batch_sk(batch.seq))},
                    "UpdateExpression": update,
                    "ConditionExpression": "#s = :from AND attempts = :attempts",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        counter_moves = {}
        if batch.status in COUNTER_FOR:
            counter_moves[COUNTER_FOR[batch.status]] = -1
        if to in COUNTER_FOR:
            counter_moves[COUNTER_FOR[to]] = counter_moves.get(COUNTER_FOR[to], 0) + 1
        if new_batches:
            counter_moves["batches_total"] = new_batches
        counter_moves = {k: v for k, v in counter_moves.items() if v}
        if counter_moves:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"pk": attr(job_pk(batch.job_id)), "sk": attr(JOB_SK)},
                        "UpdateExpression": "ADD " + ", ".join(f"{k} :{k}" for k in counter_moves),
                        "ExpressionAttributeValues": {f":{k}": attr(v) for k, v in counter_moves.items()},
                        "ConditionExpression": JOB_EXISTS,
                    }
                }
            )
        # the job's counters (item 1) are conditional on the job only: their failure alone is JobMissing
        with conditional(lambda: StaleTransition(batch.batch_id), guard=(1, lambda: no_job(batch.job_id))):
            if len(items) == 1:
                self._db.update_item(**items[0]["Update"])
            else:
                write_transaction(self._db, items)
        return batch.model_copy(
            update={
                "status": to,
                "attempts": batch.attempts + (1 if count_attempt else 0),
                "state0_count": batch.state0_count + (1 if count_state0 else 0),
                "lease_until": iso(lease_until) if lease_until else "",
                "updated_at": iso(now),
                **(fields or {}),
            }
        )
