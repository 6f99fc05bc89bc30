"""The resend ledger's object format (``store.ledger`` writes it, ``logic.ledger`` reads it).

A JSON header line ``{"v": 1, "kind", "job_id", "pepper", "batches": [[seq, count], ...]}`` then
the keys (``KEY_BYTES`` each), batch after batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

KEY_BYTES = 16
_MAGIC = "verifyfeed-ledger"


@dataclass(frozen=True)
class LedgerObject:
    """One split file's entry in the ledger, as listed (``etag`` tells a rewritten one)."""

    key: str
    job_id: str
    day: date
    etag: str


@dataclass(frozen=True)
class LedgerEntry:
    """One file's keys: ``batches`` are (seq, count) in order, ``keys`` their keys concatenated."""

    job_id: str
    pepper: str  # the fingerprint of the ledger key the keys were made with
    batches: tuple[tuple[int, int], ...]
    keys: bytes

    def batch_keys(self) -> Iterator[tuple[int, bytes]]:
        at = 0
        for seq, count in self.batches:
            yield seq, self.keys[at : at + count * KEY_BYTES]
            at += count * KEY_BYTES

    def encode(self) -> bytes:
        header = {"v": 1, "kind": _MAGIC, "job_id": self.job_id, "pepper": self.pepper}
        header["batches"] = [list(b) for b in self.batches]
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.keys

    @classmethod
    def decode(cls, body: bytes) -> LedgerEntry:
        line, _, keys = body.partition(b"\n")
        header = json.loads(line)
        if header.get("kind") != _MAGIC or header.get("v") != 1:
            raise ValueError("not a ledger object of version 1")
        batches = tuple((int(seq), int(count)) for seq, count in header["batches"])
        if sum(count for _, count in batches) * KEY_BYTES != len(keys):
            raise ValueError("ledger object truncated: its keys do not match its batches")
        return cls(str(header["job_id"]), str(header["pepper"]), batches, keys)
