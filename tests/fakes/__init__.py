"""In-memory stand-ins for the logic's I/O interfaces (``verifyfeed.ports``): unit tests of
``logic/`` run on these (``memory_services``), the AWS adapters (``store/``) are tested against
moto, and the contract tests (``tests/integration/test_*_contract*.py``) hold both to the same
behaviour. Blobs, the queue and secrets are here; the stores in ``jobs.py`` and ``audits.py``."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import IO

from verifyfeed.clock import Blackout, Clock, FixedClock
from verifyfeed.config import Settings
from verifyfeed.pii import Keyed
from verifyfeed.ports import BlobError, Services
from verifyfeed.upstream.auth import Credentials


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


class MemorySecrets:
    def __init__(
        self,
        api_id: str = "unit-api-id",
        api_key: str = "unit-api-key",
        callback: Sequence[str] = ("unit-cb",),
        pepper: tuple[str, str] = ("unit-pepper", ""),
    ) -> None:
        self.credentials = Credentials(api_id=api_id, api_key=api_key)
        self.callback = list(callback)
        self.pepper = Keyed(current=pepper[0].encode(), previous=pepper[1].encode())

    def upstream_credentials(self) -> Credentials:
        return self.credentials

    def callback_secrets(self) -> list[str]:
        return list(self.callback)

    def expected_api_id(self) -> str:
        return self.credentials.api_id

    def identity_pepper(self) -> Keyed:
        return self.pepper


UNIT_SETTINGS: dict[str, str] = {
    "INGEST_BUCKET": "unit-ingest",
    "JOBS_TABLE": "unit-jobs",
    "AUDITS_TABLE": "unit-audits",
    "WORK_QUEUE_URL": "memory://work",
    "RESEND_WINDOW": "off",
}


def memory_services(
    clock: Clock | None = None, *, upstream_url: str = "http://127.0.0.1:9", **settings: str
) -> Services:
    """``Services`` on the in-memory ports: no AWS at all. ``upstream_url``: a sandbox's (HTTP);
    ``settings``: environment variables over ``UNIT_SETTINGS``."""
    from tests.fakes.audits import MemoryAuditStore
    from tests.fakes.jobs import MemoryJobStore, MemoryLedger
    from verifyfeed.services import build_upstream

    env = {**UNIT_SETTINGS, "UPSTREAM_BASE_URL": upstream_url, **settings}
    config = Settings.from_env(env)
    clock = clock or FixedClock(datetime.fromisoformat("2026-11-25T10:00:00+08:00"))
    secrets = MemorySecrets()
    jobs = MemoryJobStore()
    blobs = MemoryBlobs()
    return Services(
        settings=config,
        clock=clock,
        jobs=jobs,
        audits=MemoryAuditStore(jobs),
        secrets=secrets,
        blobs=blobs,
        queue=MemoryQueue(),
        ledger_factory=lambda: MemoryLedger(blobs, config.ingest_bucket),
        upstream_factory=lambda: build_upstream(config, clock, secrets),
        blackout=Blackout(config.blackout_start_day, config.blackout_resume_day),
    )


__all__ = ["UNIT_SETTINGS", "MemoryBlobs", "MemoryQueue", "MemorySecrets", "memory_services"]
