"""Identifiers and time stamps of jobs and batches: pure, shared by the logic and the stores.

A batch is ``<job>#<seq>``; the batches a bisection makes (docs/decisions.md#state-0) have seqs
above ``TREE_BASE``, node n of the tree of the file's batch r at ``TREE_BASE + r·TREE_SPAN + n``;
a batch's claim-check body is kept at ``claim_key``.
"""

from __future__ import annotations

from datetime import datetime


def batch_id(job_id: str, seq: int) -> str:
    return f"{job_id}#{seq:05d}"


TREE_BASE = 1_000_000_000  # above any seq of a file's own batches (MAX_ROWS_PER_FILE rows at most)
TREE_SPAN = 4096  # nodes per tree: 11 generations of halves, more than a batch of 1,000 needs


def tree_seq(root_seq: int, node: int) -> int:
    """The seq of node ``node`` of the bisection tree of the file's batch ``root_seq`` (node 1)."""
    if node == 1:
        return root_seq
    if not 2 <= node < TREE_SPAN:
        raise ValueError(f"node {node} is outside a bisection tree")
    return TREE_BASE + root_seq * TREE_SPAN + node


def tree_position(seq: int) -> tuple[int, int]:
    """(the file's batch, node) of a batch's seq: ``(seq, 1)`` for a batch of the file itself."""
    if seq < TREE_BASE:
        return seq, 1
    return divmod(seq - TREE_BASE, TREE_SPAN)


def batch_label(seq: int) -> str:
    """How an operator reads a batch's seq: ``#3`` the file's third batch, ``#3.1`` its first half,
    ``#3.1.2`` the second half of that (a bisection's node, docs/decisions.md#state-0)."""
    root, node = tree_position(seq)
    halves = [str(int(bit) + 1) for bit in bin(node)[3:]]  # the path from the root: 0 first, 1 second
    return "#" + ".".join([str(root), *halves])


def claim_key(claims_prefix: str, job_id: str, seq: int, split_run: int = 0) -> str:
    """Where a batch's claim-check body is kept in the ingest bucket (staged, deferred, failed or
    unknown); a body the splitter staged is named after its run too, so no other run ever writes over it."""
    run = f".r{split_run}" if split_run else ""
    return f"{claims_prefix}{job_id}/{seq:05d}{run}.json"


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")
