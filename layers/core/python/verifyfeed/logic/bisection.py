"""Isolate the records the upstream refuses: a batch answered ``state`` "0" is split in halves
(docs/decisions.md#state-0).

``advance`` is the one place that decides a batch's *tree* (the file's batch is node 1, node ``n``'s
halves are ``2n`` and ``2n + 1``). Every step is a conditional write, so it is called after every
answer in the tree and on every redelivery, and finishes what a dead worker began: 0. finish a split
begun; 1. once a generation has answered, fail, defer or split each of its refused nodes; 2. stop
the tree when a half failed for another reason; 3. queue the staged halves (message, then record).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from verifyfeed.models.envelope import SUCCESS_CODE
from verifyfeed.models.ids import batch_id, claim_key, iso, tree_position, tree_seq
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Batch, BatchFields, BatchStatus
from verifyfeed.pii import mask_id
from verifyfeed.ports import BlobError, Services, StaleTransition

logger = Logger(child=True)
metrics = Metrics()

# not answered yet: its generation is not decided before it is (deferred: after the blackout)
IN_FLIGHT = frozenset(
    {BatchStatus.STAGED, BatchStatus.QUEUED, BatchStatus.SENDING, BatchStatus.RETRY, BatchStatus.DEFERRED}
)
_UNSENT = frozenset({BatchStatus.STAGED, BatchStatus.QUEUED, BatchStatus.RETRY, BatchStatus.DEFERRED})


def in_tree(batch: Batch) -> bool:
    """A child of a bisection (its tree's other nodes must hear of its answer)."""
    return tree_position(batch.seq)[1] > 1


def node_of(batch: Batch) -> int:
    return tree_position(batch.seq)[1]


def generation(node: int) -> int:
    return node.bit_length() - 1


def halves(records: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The first ceil(n / 2) records, and the rest."""
    middle = (len(records) + 1) // 2
    return records[:middle], records[middle:]


@functools.cache
def worst_case_halves(refused: int, records: int) -> int:
    """The most halves sent to isolate ``refused`` rows of a batch of ``records``, wherever they are:
    two for every part holding one of them and more than one record (docs/decisions.md#state-0)."""
    refused = min(refused, records)
    if refused == 0 or records < 2:
        return 0
    first = (records + 1) // 2  # as ``halves`` cuts
    second = records - first
    return 2 + max(
        worst_case_halves(left, first) + worst_case_halves(refused - left, second)
        for left in range(max(0, refused - second), min(refused, first) + 1)
    )


def body_records(body: bytes) -> list[bytes]:
    """A batch body (a JSON array of records) as the splitter serialises each record."""
    return [
        json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() for record in json.loads(body)
    ]


def record_ref(record: bytes) -> str:
    """Which record: its authCode, as the rejected-rows report shows a valid one (a run of 11 or more
    digits may be an ID or phone number put in the wrong column: masked, logic/lost_repair_split.py)."""
    code = str(json.loads(record)["authCode"])
    return mask_id(code) if code.isdigit() and len(code) >= 11 else code


def advance(services: Services, job_id: str, root_seq: int) -> None:
    """Decide what can be decided in the bisection tree of the file's batch ``root_seq``, then
    queue what is staged. Safe to call at any time, by any number of workers."""
    nodes = _nodes(services, job_id, root_seq)
    if not nodes:
        return
    if _finish_begun(services, nodes):
        nodes = _nodes(services, job_id, root_seq)
    stopper = next(
        (
            b
            for b in nodes.values()
            if b.status == BatchStatus.FAILED and in_tree(b) and b.upstream_code != SUCCESS_CODE
        ),
        None,
    )
    if stopper is not None:
        _stop(services, nodes.values(), stopper)
        return
    for depth in sorted({generation(n) for n in nodes}):
        members = [b for n, b in nodes.items() if generation(n) == depth]
        if any(b.status in IN_FLIGHT for b in members):
            continue
        refused = [b for b in members if b.status == BatchStatus.REFUSED]
        if refused:
            _decide(services, nodes, members, refused)
            nodes = _nodes(services, job_id, root_seq)
    _queue_staged(services, nodes)


def _nodes(services: Services, job_id: str, root_seq: int) -> dict[int, Batch]:
    return {node_of(b): b for b in services.jobs.tree(job_id, root_seq)}


def _finish_begun(services: Services, nodes: dict[int, Batch]) -> bool:
    """Split every refused node that has a half already: True when there was one."""
    begun = [
        b
        for n, b in nodes.items()
        if b.status == BatchStatus.REFUSED and (2 * n in nodes or 2 * n + 1 in nodes)
    ]
    for batch in begun:
        records = _records(services, batch)
        if records is not None:  # its body is deleted only once it is bisected
            _bisect(services, batch, records)
    return bool(begun)


def _decide(services: Services, nodes: dict[int, Batch], members: list[Batch], refused: list[Batch]) -> None:
    settings = services.settings
    isolate = settings.state0_bisect_isolate_rows
    accepted = any(b.status == BatchStatus.SUCCEEDED for b in nodes.values())
    systematic = len(members) > isolate and len(refused) == len(members) and not accepted
    # the refused and failed parts are disjoint, each holds a refused row: at least this many rows
    # (the budget grows with them, as far as the rows that are always isolated)
    found = min(isolate, sum(b.status in (BatchStatus.REFUSED, BatchStatus.FAILED) for b in nodes.values()))
    budget = max(settings.state0_bisect_max_calls, worst_case_halves(found, nodes[1].record_count))
    children = len(nodes) - 1
    now = services.clock.now()
    for batch in refused:
        records = _records(services, batch)
        why = batch.upstream_desc or "state 0"
        if records is None:
            _fail(services, batch, f"refused ({why}); its body is missing: not split")
        elif len(records) == 1:
            _fail(services, batch, f"refused: {why}", refused_record=record_ref(records[0]))
        elif systematic:
            _fail(
                services,
                batch,
                f"refused: {why}; all {len(members)} parts of the batch at this depth were refused, none "
                f"accepted: more than STATE0_BISECT_ISOLATE_ROWS ({isolate}) refused rows, systematic, "
                "not split further",
            )
        elif services.blackout.is_blacked_out(now):
            _defer(services, batch)
        elif batch.depth + 1 > settings.state0_bisect_max_depth:
            _fail(services, batch, f"refused: {why}; STATE0_BISECT_MAX_DEPTH reached: not split further")
        elif children + 2 > budget:
            _fail(
                services,
                batch,
                f"refused: {why}; the budget of {budget} halves (STATE0_BISECT_MAX_CALLS, or what "
                f"{found} refused rows may need) is spent: not split further",
            )
        else:
            _bisect(services, batch, records)
            children += 2


def _records(services: Services, batch: Batch) -> list[bytes] | None:
    bucket = batch.claim_bucket or services.settings.ingest_bucket
    key = batch.claim_key or claim_key(services.settings.claims_prefix, batch.job_id, batch.seq)
    try:
        body = services.blobs.get(bucket, key)
    except BlobError as exc:
        if exc.missing:
            return None
        raise
    return body_records(body)


def _bisect(services: Services, batch: Batch, records: list[bytes]) -> None:
    """Both halves written (body, then record ``staged``), then ``refused → bisected`` with the job's
    total, in one transaction: a worker that dies before it leaves the node refused, and the next
    ``advance`` finds the halves it wrote and writes the rest."""
    jobs = services.jobs
    settings = services.settings
    root_seq, node = tree_position(batch.seq)
    bucket = batch.claim_bucket or settings.ingest_bucket
    for index, part in zip((2 * node, 2 * node + 1), halves(records), strict=True):
        seq = tree_seq(root_seq, index)
        if jobs.get_batch(batch.job_id, seq) is not None:
            continue  # written by an earlier call (a half is not sent before its parent is bisected)
        key = claim_key(settings.claims_prefix, batch.job_id, seq)
        services.blobs.put(bucket, key, b"[%s]" % b",".join(part))
        jobs.put_batch_if_absent(
            Batch(
                job_id=batch.job_id,
                seq=seq,
                batch_id=batch_id(batch.job_id, seq),
                status=BatchStatus.STAGED,
                record_count=len(part),
                claim_bucket=bucket,
                claim_key=key,
                parent_seq=batch.seq,
                depth=batch.depth + 1,
                updated_at=iso(services.clock.now()),
            )
        )
    try:
        jobs.transition(batch, BatchStatus.BISECTED, services.clock.now(), new_batches=2)
    except StaleTransition:
        return  # another worker decided it meanwhile
    metrics.add_metric(name="BatchesBisected", unit=MetricUnit.Count, value=1)
    logger.info(
        "refused batch split in halves",
        extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "records": len(records)},
    )
    if batch.claim_key.startswith(settings.claims_prefix):
        try:  # its records live on in its halves; the claim-check body holds names and digests
            services.blobs.delete_every_version(bucket, batch.claim_key)
        except BlobError as exc:
            logger.warning(
                "claim check of a bisected batch not deleted; the lifecycle rule will",
                extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "error": type(exc).__name__},
            )


def _fail(services: Services, batch: Batch, reason: str, *, refused_record: str = "") -> None:
    fields: BatchFields = {"last_error": reason[:500]}
    if refused_record:
        fields["refused_record"] = refused_record
    try:
        services.jobs.transition(batch, BatchStatus.FAILED, services.clock.now(), fields=fields)
    except StaleTransition:
        return
    metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=1)
    logger.warning(
        "refused batch failed",
        extra={"job_id": batch.job_id, "batch_id": batch.batch_id, "records": batch.record_count},
    )


def _defer(services: Services, batch: Batch) -> None:
    """In the blackout a refused batch is not split: it waits, whole, for the poller."""
    try:
        services.jobs.transition(batch, BatchStatus.DEFERRED, services.clock.now())
    except StaleTransition:
        return


def _stop(services: Services, nodes: Iterable[Batch], stopper: Batch) -> None:
    reason = (
        f"not sent: batch {stopper.batch_id} of this bisection failed "
        f"({stopper.upstream_code or 'no answer'}): {stopper.last_error}"
    )[:500]
    for batch in nodes:
        if batch.status == BatchStatus.REFUSED:
            _fail(services, batch, f"refused; {reason}")
        elif batch.status in _UNSENT:  # a half whose worker already holds its lease is let be
            _fail(services, batch, reason)


def _queue_staged(services: Services, nodes: dict[int, Batch]) -> None:
    bisected = {b.seq for b in nodes.values() if b.status == BatchStatus.BISECTED}
    for batch in nodes.values():
        if batch.status != BatchStatus.STAGED or batch.parent_seq not in bisected:
            continue
        services.queue.send(LostRepairBatchMessage.for_batch(batch).model_dump_json(exclude_none=True))
        try:
            services.jobs.transition(batch, BatchStatus.QUEUED, services.clock.now())
        except StaleTransition:
            continue  # the uploader took it already
