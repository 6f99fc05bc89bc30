"""The one settings object, parsed once from the environment.

Every knob the system has lives here; ``docs/configuration.md`` lists them. Handlers call
``get_settings()`` which caches the parsed object for the lifetime of the Lambda sandbox.
Secrets are never environment values: only the *names* of the SSM parameters / Secrets Manager
secrets that hold them are (see ``verifyfeed.secrets``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The longest a message can be put back on the queue for: SQS counts a message's visibility, 12 h
# at most, from its receive, and the uploader's invocation (120 s) has used some of it already.
MAX_DELAY_SECONDS = 12 * 3600 - 15 * 60


class UnknownOutcomePolicy(StrEnum):
    """What to do with a charged call whose answer was lost (docs/decisions.md#unknown-outcome)."""

    HOLD = "hold"  # flag the batch UNKNOWN and never resend it automatically
    RESEND = "resend"  # treat it like a transient error and send again (may pay twice)


class LegacyIdPolicy(StrEnum):
    """What to do with 15-digit legacy ID numbers (docs/decisions.md#legacy-id)."""

    CONVERT = "convert"
    REJECT = "reject"


class AuthCodeUniqueness(StrEnum):
    """How the authCodes of one file are compared for uniqueness (docs/decisions.md#auth-code-case)."""

    IGNORE_CASE = "ignore-case"  # ``ab1`` and ``AB1`` are the same code: the second row is rejected
    EXACT = "exact"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only "localhost" is taken on trust
        return False


def upstream_url(url: str) -> str:
    """``url`` if it is ``https://``, or ``http://`` to a loopback host (the local stack, tests);
    anything else is an error (docs/decisions.md#upstream-https)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _loopback(host):
        return url
    raise ValueError(
        f"{url!r} is not an https:// URL (plain http:// only to a loopback host: 127.0.0.0/8, ::1, localhost)"
    )


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # resources
    ingest_bucket: str = Field("verifyfeed-ingest", alias="INGEST_BUCKET")
    jobs_table: str = Field("verifyfeed-jobs", alias="JOBS_TABLE")
    audits_table: str = Field("verifyfeed-audits", alias="AUDITS_TABLE")
    idempotency_table: str = Field("verifyfeed-idempotency", alias="IDEMPOTENCY_TABLE")
    work_queue_url: str = Field("", alias="WORK_QUEUE_URL")

    # key layout in the ingest bucket
    lost_repair_prefix: str = Field("lost-repair/", alias="LOST_REPAIR_PREFIX")
    carrier_audit_prefix: str = Field("carrier-audit/", alias="CARRIER_AUDIT_PREFIX")
    reports_prefix: str = Field("reports/", alias="REPORTS_PREFIX")
    # a file under <dry-run prefix><kind prefix> is read and reported, never sent (decisions.md#dry-run)
    dry_run_prefix: str = Field("dry-run/", alias="DRY_RUN_PREFIX")
    # what one record charged upstream costs (P PricePerRecord): the dry run's estimate and the CLI's
    # cost of a re-drive; blank = not known, and said so (docs/decisions.md#price)
    price_per_record: float | None = Field(None, alias="PRICE_PER_RECORD", ge=0)
    price_currency: str = Field("CNY", alias="PRICE_CURRENCY")
    claims_prefix: str = Field("claims/", alias="CLAIMS_PREFIX")
    # the resend ledger (docs/decisions.md#resend-ledger): a record whose ID number was sent for
    # upload within RESEND_WINDOW — "month" (the current monthly cycle), "<N>d" (N days) or "off" —
    # is not sent again; a file under RESEND_PREFIX is sent whole (the operator's override)
    resend_window: str = Field("month", alias="RESEND_WINDOW", pattern=r"^(month|off|[1-9][0-9]{0,2}d)$")
    ledger_prefix: str = Field("ledger/", alias="LEDGER_PREFIX")
    resend_prefix: str = Field("lost-repair/resend/", alias="RESEND_PREFIX")
    # how far before the window earlier splits are read for records charged or held within it
    # (a split before the blackout charged after it counts in the cycle of the charge): the
    # ledger's retention (the template passes LedgerRetentionDays)
    resend_lookback_days: int = Field(70, alias="RESEND_LOOKBACK_DAYS", ge=0, le=1000)
    # how long the splitter waits for another split's ledger commit before giving up (then retried)
    ledger_lock_seconds: int = Field(60, alias="LEDGER_LOCK_SECONDS", ge=1)

    # upstream
    upstream_base_url: str = Field("http://127.0.0.1:8765", alias="UPSTREAM_BASE_URL")
    # the carrier-audit API's base URL (a service of its own in the seeds); empty = UPSTREAM_BASE_URL
    audit_base_url: str = Field("", alias="AUDIT_BASE_URL")
    # where carrier-audit requests carry authinfo: "headers" or "body" (decisions.md#audit-auth)
    audit_auth: Literal["headers", "body"] = Field("headers", alias="AUDIT_AUTH")
    upstream_credentials_name: str = Field("", alias="UPSTREAM_CREDENTIALS_PARAM")
    upstream_api_id: str = Field("local-api-id", alias="UPSTREAM_API_ID")
    upstream_api_key: str = Field("", alias="UPSTREAM_API_KEY")
    authinfo_scheme: str = Field("hmac-sha256", alias="AUTHINFO_SCHEME")
    # HTTP statuses the upstream answers for "not processed, try later": retried on their own, after
    # the Retry-After they carry. Every other 5xx may follow a charge and is held
    # (docs/decisions.md#unknown-outcome).
    retry_http_statuses: str = Field("429 503", alias="UPSTREAM_RETRY_HTTP_STATUSES", pattern=r"^[0-9, ]*$")
    connect_timeout_s: float = Field(3.05, alias="UPSTREAM_CONNECT_TIMEOUT")
    read_timeout_s: float = Field(20.0, alias="UPSTREAM_READ_TIMEOUT")

    # callback
    callback_secret_name: str = Field("", alias="CALLBACK_SECRET_PARAM")
    # the apiId callbacks must carry; empty: the one in the upstream credentials (local runs)
    callback_api_id: str = Field("", alias="CALLBACK_API_ID")
    callback_secret: str = Field("", alias="CALLBACK_SECRET")
    callback_previous_secret: str = Field("", alias="CALLBACK_PREVIOUS_SECRET")
    callback_sign_scheme: str = Field("hmac-sha256", alias="CALLBACK_SIGN_SCHEME")
    callback_max_body_bytes: int = Field(16 * 1024, alias="CALLBACK_MAX_BODY_BYTES")

    # personal data: the pepper of every digest of an ID or phone number we store (a Secrets Manager
    # secret {"current", "previous"}; local runs may give the values), docs/decisions.md#personal-data
    identity_pepper_name: str = Field("", alias="IDENTITY_PEPPER_PARAM")
    identity_pepper: str = Field("", alias="IDENTITY_PEPPER")
    identity_previous_pepper: str = Field("", alias="IDENTITY_PREVIOUS_PEPPER")
    # also find carrier audits written before keyed digests (keyed by a bare SHA-256); read only
    audit_legacy_lookup: bool = Field(True, alias="AUDIT_LEGACY_LOOKUP")

    # lost-repair rules
    batch_max_records: int = Field(1000, alias="BATCH_MAX_RECORDS", ge=1, le=1000)
    message_max_bytes: int = Field(240 * 1024, alias="MESSAGE_MAX_BYTES")
    legacy_id_policy: LegacyIdPolicy = Field(LegacyIdPolicy.CONVERT, alias="LEGACY_ID_POLICY")
    auth_code_uniqueness: AuthCodeUniqueness = Field(
        AuthCodeUniqueness.IGNORE_CASE, alias="AUTH_CODE_UNIQUENESS"
    )
    xlsx_sheet: str = Field("", alias="XLSX_SHEET")
    # caps checked as the file is read (docs/decisions.md#all-or-nothing): a larger file is rejected
    # whole, with nothing sent, rather than left half-split when the splitter's time runs out
    max_rows_per_file: int = Field(1_000_000, alias="MAX_ROWS_PER_FILE", ge=1)
    max_file_bytes: int = Field(200 * 1024 * 1024, alias="MAX_FILE_BYTES", ge=1)
    max_audit_rows_per_file: int = Field(20_000, alias="MAX_AUDIT_ROWS_PER_FILE", ge=1)

    # uploader
    unknown_outcome_policy: UnknownOutcomePolicy = Field(
        UnknownOutcomePolicy.HOLD, alias="UNKNOWN_OUTCOME_POLICY"
    )
    state0_max_attempts: int = Field(3, alias="STATE0_MAX_ATTEMPTS", ge=1)
    # a batch of several records answered state "0" is split in halves (docs/decisions.md#state-0):
    # up to this many refused rows of a batch of the file are always isolated; child batches at most
    # this many, or what those rows need (0: never split); this many splits deep
    state0_bisect_isolate_rows: int = Field(8, alias="STATE0_BISECT_ISOLATE_ROWS", ge=1, le=64)
    state0_bisect_max_calls: int = Field(64, alias="STATE0_BISECT_MAX_CALLS", ge=0)
    state0_bisect_max_depth: int = Field(10, alias="STATE0_BISECT_MAX_DEPTH", ge=1, le=11)
    transport_max_attempts: int = Field(5, alias="TRANSPORT_MAX_ATTEMPTS", ge=1)
    retry_base_seconds: int = Field(10, alias="RETRY_BASE_SECONDS", ge=0)
    retry_max_seconds: int = Field(900, alias="RETRY_MAX_SECONDS", ge=0, le=MAX_DELAY_SECONDS)
    # the longest an upstream's Retry-After is honoured (a longer one is cut to this)
    retry_after_max_seconds: int = Field(3600, alias="RETRY_AFTER_MAX_SECONDS", ge=0, le=MAX_DELAY_SECONDS)
    queue_max_receive_count: int = Field(8, alias="QUEUE_MAX_RECEIVE_COUNT", ge=1)
    idempotency_expiry_seconds: int = Field(24 * 3600, alias="IDEMPOTENCY_EXPIRY_SECONDS", ge=60)
    send_lease_seconds: int = Field(180, alias="SEND_LEASE_SECONDS", ge=1)

    # blackout (China time, UTC+8)
    blackout_start_day: int = Field(27, alias="BLACKOUT_START_DAY", ge=1, le=31)
    blackout_resume_day: int = Field(1, alias="BLACKOUT_RESUME_DAY", ge=1, le=28)

    # poller
    poll_pending_age_seconds: int = Field(300, alias="POLL_PENDING_AGE_SECONDS", ge=0)
    poll_max_items: int = Field(100, alias="POLL_MAX_ITEMS", ge=1)
    # a job splitting or uploading for longer than this is counted as stuck (JobsStuck, alarmed)
    stuck_job_seconds: int = Field(21_600, alias="STUCK_JOB_SECONDS", ge=60)

    # clock: an ISO instant the clock starts at (local runs and tests); empty = system clock
    clock_now: str = Field("", alias="CLOCK_NOW")

    @field_validator("upstream_base_url")
    @classmethod
    def _upstream_https(cls, url: str) -> str:
        return upstream_url(url)

    @field_validator("audit_base_url")
    @classmethod
    def _audit_https(cls, url: str) -> str:
        return upstream_url(url) if url else url  # empty: UPSTREAM_BASE_URL's

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        return cls.model_validate({k: v for k, v in source.items() if v != ""})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
