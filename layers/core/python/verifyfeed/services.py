"""The use cases' ``Services`` (``ports.Services``) on AWS, built once per Lambda sandbox from the
settings: the DynamoDB stores, S3 blobs, the SQS queue, Secrets Manager, the upstream client.

The upstream client is built on first use: of the functions, only the uploader and the poller
call the upstream, and they import ``verifyfeed.upstream.client`` themselves; the callback never
does, so it never loads the client and the pydantic models of the upstream's requests and answers.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from verifyfeed import aws
from verifyfeed.clock import Blackout, Clock, clock_from_setting
from verifyfeed.config import Settings, get_settings
from verifyfeed.ports import Secrets, Services
from verifyfeed.secrets import ManagedSecrets
from verifyfeed.store.audits import AuditStore
from verifyfeed.store.blobs import S3Blobs
from verifyfeed.store.jobs import JobStore
from verifyfeed.store.ledger import LedgerStore
from verifyfeed.store.queue import SqsWorkQueue

if TYPE_CHECKING:
    from verifyfeed.upstream.client import UpstreamClient


__all__ = ["Services", "build_services", "build_upstream", "get_services"]


def build_upstream(settings: Settings, clock: Clock, secrets: Secrets) -> UpstreamClient:
    from verifyfeed.upstream.client import UpstreamClient

    return UpstreamClient(
        settings.upstream_base_url,
        secrets.upstream_credentials,
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
    secrets = ManagedSecrets(settings)
    return Services(
        settings=settings,
        clock=clock,
        jobs=JobStore(settings.jobs_table, aws.dynamodb()),
        audits=AuditStore(settings.audits_table, settings.jobs_table, aws.dynamodb()),
        upstream_factory=lambda: build_upstream(settings, clock, secrets),
        blackout=Blackout(settings.blackout_start_day, settings.blackout_resume_day),
        secrets=secrets,
        blobs=S3Blobs(),
        queue=SqsWorkQueue(settings.work_queue_url),
        ledger_factory=lambda: LedgerStore(
            settings.ingest_bucket, settings.ledger_prefix, settings.jobs_table, aws.s3(), aws.dynamodb()
        ),
    )


@cache
def get_services() -> Services:
    return build_services(get_settings())
