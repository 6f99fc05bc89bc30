"""Re-submitting carrier audits held ``unknown``, the operator's decision once the upstream says it
does not have them (docs/decisions.md#redrive): ``unknown_audits`` lists them, ``plan_unknown_audits``
rebuilds each one's request from its row in the original upload, ``resubmit`` moves it back to
``submitting`` and queues it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.streaming import S3Object
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from verifyfeed import aws
from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import SourceRow, open_rows
from verifyfeed.logic.audit_intake import audit_keys
from verifyfeed.logic.progress import settle_job
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus, Job, JobKind
from verifyfeed.pii import Keyed
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected
from verifyfeed.services import Services

logger = Logger(child=True)

_GONE = ("NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound")


@dataclass(frozen=True)
class Resubmission:
    """One unknown audit and its message rebuilt from the upload, or why it cannot be. The message
    holds plaintext request fields (its ``params``): it lives in memory only, and is never shown
    (``repr``)."""

    audit: Audit
    message: CarrierAuditMessage | None = field(default=None, repr=False)  # plaintext fields
    reason: str = ""  # why it cannot be re-submitted ("" when ``message`` is set)

    @property
    def ready(self) -> bool:
        return self.message is not None

    @property
    def kind(self) -> str:
        """``update`` (the audit has an upstream record id) or ``add``."""
        return "update" if self.audit.record_id is not None else "add"


def unknown_audits(services: Services, job_id: str | None = None, limit: int = 1000) -> list[Audit]:
    """Audits held ``unknown`` (of one job, or all), least recently updated first."""
    held = services.audits.with_status(AuditStatus.UNKNOWN, limit=limit if job_id is None else 10**9)
    return [a for a in held if job_id is None or a.job_id == job_id][:limit]


def plan_unknown_audits(
    services: Services, audits: Iterable[Audit], pepper: Keyed | None = None
) -> list[Resubmission]:
    """Each audit with its message rebuilt from its row in the original upload — the only copy of its
    request fields we have: the exact S3 object version of its job, each upload read once —
    validated by the splitter's rules, and only if the row still yields the audit's own key
    (``audit_keys``: the same pepper-keyed identity). Else the reason it cannot be (its upload is
    gone, its row is unreadable, invalid or names another audit now), and the audit stays
    ``unknown``. Writes nothing."""
    audits = list(audits)
    if not audits:
        return []
    pepper = pepper or services.secrets.identity_pepper()
    by_job: dict[str, list[Audit]] = {}
    for audit in audits:
        by_job.setdefault(audit.job_id, []).append(audit)
    prepared: dict[str, Resubmission] = {}
    for job_id, held in by_job.items():
        try:
            job = services.jobs.get_job(job_id)
        except ValidationError:  # an item holding only counters: a settle's ADD created it, no split did
            job = None
        if job is None:
            for audit in held:
                prepared[audit.audit_key] = Resubmission(
                    audit, reason=f"job {job_id} is not in the jobs table: its upload is not known"
                )
            continue
        rows, problem = _read_rows(services, job, {a.row for a in held})
        for audit in held:
            row = rows.get(audit.row)
            if problem:
                prepared[audit.audit_key] = Resubmission(audit, reason=problem)
            elif row is None:
                prepared[audit.audit_key] = Resubmission(
                    audit, reason=f"row {audit.row} is not in the upload"
                )
            else:
                prepared[audit.audit_key] = _prepare(services, audit, row, pepper)
    return [prepared[a.audit_key] for a in audits]


def _read_rows(services: Services, job: Job, wanted: set[int]) -> tuple[dict[int, SourceRow], str]:
    """The ``wanted`` rows of the job's upload (its exact object version), or why it cannot be read."""
    stream = S3Object(bucket=job.bucket, key=job.key, version_id=job.version or None, boto3_client=aws.s3())
    found: dict[int, SourceRow] = {}
    try:
        with open_rows(
            stream, job.key.rsplit("/", 1)[-1], JobKind.CARRIER_AUDIT, sheet=services.settings.xlsx_sheet
        ) as rows:
            for row in rows:
                if row.number in wanted:
                    found[row.number] = row
                    if len(found) == len(wanted):
                        break
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _GONE:
            return {}, (
                "the upload is no longer in S3 (its version was deleted or expired: RawUploadRetentionDays); "
                "drop the row again in a new file"
            )
        return {}, f"the upload cannot be read: {code or type(exc).__name__}"
    except BotoCoreError as exc:
        return {}, f"the upload cannot be read: {type(exc).__name__}"
    except FileRejected as exc:
        return {}, f"the upload cannot be read as a file any more: {exc.reason}"
    return found, ""


def _prepare(services: Services, audit: Audit, row: SourceRow, pepper: Keyed) -> Resubmission:
    if row.problem is not None:
        return Resubmission(audit, reason=f"row {audit.row} is unreadable: {row.problem}")
    try:
        params = validate_audit_row(row.values)
    except RowRejected as exc:  # rule codes only: the messages are safe, the values never shown
        return Resubmission(audit, reason=f"row {audit.row} is not valid now: {', '.join(exc.rules)}")
    reference = str(row.values.get("reference") or "").strip()
    keys = audit_keys(params, reference, pepper, legacy=services.settings.audit_legacy_lookup)
    if audit.audit_key not in keys:
        return Resubmission(
            audit, reason=f"row {audit.row} no longer yields this audit (another owner, vehicle or reference)"
        )
    message = CarrierAuditMessage(
        job_id=audit.job_id,
        audit_key=audit.audit_key,
        row=audit.row,
        params=params,
        update_record_id=audit.record_id,
    )
    return Resubmission(audit, message)


def resubmit(services: Services, item: Resubmission, by: str) -> Audit:
    """``unknown → submitting`` (conditional: ``StaleAudit`` if the audit moved; the job reopens;
    recorded as re-submitted ``by`` the operator), then its message queued: ``update`` with the
    audit's record id when it has one, else ``add``. If the message cannot be queued, the audit is
    put back to ``unknown`` (with its last error) and the error raised."""
    if item.message is None:
        raise ValueError(f"audit cannot be re-submitted: {item.reason}")
    audits = services.audits
    moved = audits.resubmit_unknown(item.audit, services.clock.now(), by)
    try:
        services.queue.send(item.message.model_dump_json())
    except (ClientError, BotoCoreError, RuntimeError):
        audits.settle_submission(
            moved, AuditStatus.UNKNOWN, services.clock.now(), error=item.audit.last_error
        )
        settle_job(services, moved.job_id)
        raise
    logger.info(
        "unknown audit re-submitted by an operator",
        extra={
            "job_id": moved.job_id,
            "row": moved.row,
            "kind": item.kind,
            "resubmissions": moved.resubmissions,
        },
    )
    return moved
