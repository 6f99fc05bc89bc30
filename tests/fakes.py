"""In-memory stand-ins for the logic's I/O interfaces (``verifyfeed.ports``): unit tests of
``logic/`` run on these, the AWS adapters (``store/blobs.py``, ``store/queue.py``) are tested
against moto."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import IO

from verifyfeed.ports import BlobError


class MemoryBlobs:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[bytes]] = {}  # every version, oldest first
        self.content_types: dict[tuple[str, str], str] = {}

    def get(self, bucket: str, key: str) -> bytes:
        versions = self.objects.get((bucket, key))
        if not versions:
            raise BlobError(f"get: NoSuchKey {key}", missing=True, code="NoSuchKey")
        return versions[-1]

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        self.objects.setdefault((bucket, key), []).append(bytes(body))
        self.content_types[(bucket, key)] = content_type

    def put_file(self, bucket: str, key: str, stream: IO[bytes], content_type: str) -> None:
        self.put(bucket, key, stream.read(), content_type)

    def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop((bucket, key), None)

    def delete_every_version(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)

    def open(self, bucket: str, key: str, version: str | None = None) -> IO[bytes]:
        return io.BytesIO(self.get(bucket, key))


class MemoryQueue:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, body: str) -> None:
        self.bodies.append(body)

    def send_all(self, bodies: Sequence[str]) -> None:
        self.bodies.extend(bodies)
