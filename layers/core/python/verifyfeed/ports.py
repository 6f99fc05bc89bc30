"""The I/O the logic needs, as interfaces: blob storage and the work queue.

``logic/`` depends on these and on the stores' classes, never on an AWS SDK: ``Services`` hands it
the S3 and SQS adapters (``store/blobs.py``, ``store/queue.py``), and unit tests hand it in-memory
ones (``tests/fakes.py``). DynamoDB has its stores (``store/jobs.py``, ``store/audits.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Protocol


class BlobError(Exception):
    """Storage refused or could not be reached; ``missing``: the object (version) is not there."""

    def __init__(self, message: str, *, missing: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.missing = missing
        self.code = code


class Blobs(Protocol):
    """Dropped files, batch bodies (``claims/``), reports; errors are ``BlobError``."""

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None: ...

    def put_file(self, bucket: str, key: str, stream: IO[bytes], content_type: str) -> None: ...

    def delete_many(self, bucket: str, keys: Sequence[str]) -> None: ...

    def delete_every_version(self, bucket: str, key: str) -> None:
        """Every version (the newest each time: no list permission), not a delete marker."""
        ...

    def open(self, bucket: str, key: str, version: str | None = None) -> IO[bytes]:
        """A seekable stream of one object version, read by ranges (an XLSX needs seeking)."""
        ...


class WorkQueue(Protocol):
    """The uploader's queue: lost-repair batches and carrier audits."""

    def send(self, body: str) -> None: ...

    def send_all(self, bodies: Sequence[str]) -> None:
        """Every body, or an error: each body was sent at most once either way."""
        ...
