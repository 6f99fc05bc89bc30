"""The dependencies of the use cases, built once per Lambda sandbox from the settings.

The upstream client is built on first use: of the functions, only the uploader and the poller
call the upstream, and they import ``verifyfeed.upstream.client`` themselves; the callback never
does, so it never loads the client and the pydantic models of the upstream's requests and answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING

from verifyfeed import aws
from verifyfeed.clock import Blackout, Clock, clock_from_setting
from verifyfeed.config import Settings, get_settings
from verifyfeed.ports import Blobs, WorkQueue
from verifyfeed.secrets import upstream_credentials
from verifyfeed.store.audits import AuditStore
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.jobs import JobStore
from verifyfeed.store.ledger import LedgerStore
from verifyfeed.store.queue import SqsWorkQueue

if TYPE_CHECKING:
    from verifyfeed.upstream.client import UpstreamClient


@dataclass
class Services:
    settings: Settings
    clock: Clock
    jobs: JobStore
    audits: AuditStore
    upstream_factory: Callable[[], UpstreamClient] = field(repr=False)
    blackout: Blackout = field(default_factory=Blackout)

    @cached_property
    def upstream(self) -> UpstreamClient:
        return self.upstream_factory()

    @cached_property
    def blobs(self) -> Blobs:
        """Blob storage (``store.blobs``): dropped files, batch bodies, reports."""
        return S3Blobs()

    @cached_property
    def queue(self) -> WorkQueue:
        """The work queue (``store.queue``)."""
        return SqsWorkQueue(self.settings.work_queue_url)

    @cached_property
    def ledger(self) -> LedgerStore:
        """The resend ledger (the splitter's alone): objects in the ingest bucket, lock in jobs."""
        settings = self.settings
        return LedgerStore(
            settings.ingest_bucket, settings.ledger_prefix, settings.jobs_table, aws.s3(), aws.dynamodb()
        )


def build_upstream(settings: Settings, clock: Clock) -> UpstreamClient:
    from verifyfeed.upstream.client import UpstreamClient

    return UpstreamClient(
        settings.upstream_base_url,
        lambda: upstream_credentials(settings),
        clock,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        authinfo_scheme=settings.authinfo_scheme,
        audit_base_url=settings.audit_base_url or None,
        audit_auth=settings.audit_auth,
        retry_http_statuses=frozenset(int(s) for s in settings.retry_http_statuses.replace(",", " ").split()),
    )


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or clock_from_setting(settings.clock_now)
    return Services(
        settings=settings,
        clock=clock,
        jobs=JobStore(settings.jobs_table, aws.dynamodb()),
        audits=AuditStore(settings.audits_table, settings.jobs_table, aws.dynamodb()),
        upstream_factory=lambda: build_upstream(settings, clock),
        blackout=Blackout(settings.blackout_start_day, settings.blackout_resume_day),
    )


@cache
def get_services() -> Services:
    return build_services(get_settings())
