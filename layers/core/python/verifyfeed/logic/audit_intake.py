"""The carrier-audit room of the splitter: every row validated and deduplicated in a first pass
that writes nothing; only a file read to the end has its audits reserved in the audits table and
queued for ``add``, or for ``update`` when it corrects a rejected audit
(docs/decisions.md#audit-identity, #audit-correction)."""

from __future__ import annotations

from collections.abc import Iterable

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.readers import RowSource, SourceRow
from verifyfeed.logic.reports import RejectionLog
from verifyfeed.logic.split_context import DryRunPlan, FileSplit
from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.models.ids import iso
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus, Job, JobCounts, Reservation, correctable
from verifyfeed.pii import Keyed, mask_id, mask_name, mask_phone
from verifyfeed.ports import Services
from verifyfeed.reasons import Reason, reason
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected
from verifyfeed.rules.hashing import sha256_hex


class CarrierAuditIntake:
    """The ``Intake`` of a carrier-audit file."""

    def __init__(self, split: FileSplit) -> None:
        self.split = split
        self.audits: list[CarrierAuditMessage] = []

    def identical_to(self) -> Job | None:
        return None  # the audits table refuses an audit already there, row by row

    def read(self, rows: RowSource) -> JobCounts:
        counts, self.audits = _validate(self.split.services, self.split.job, rows, self.split.rejections)
        return counts

    def discard(self) -> int:
        return 0  # the first pass wrote nothing

    def abandon(self) -> None:
        return None

    def plan(self, counts: JobCounts) -> DryRunPlan:
        n = len(self.audits)
        planned = JobCounts(
            rows_read=counts.rows_read, rows_accepted=n, rows_rejected=counts.rows_read - n, batches_total=n
        )
        return DryRunPlan(planned, {"audits_submitted": n}, 0)  # the carrier-audit seed states no price

    def submit(self, counts: JobCounts) -> JobCounts:
        split = self.split
        return _reserve_and_queue(split.services, split.job, counts, self.audits, split.rejections)

    def release(self) -> bool:
        return True  # queued by submit


def audit_keys(
    params: AuditParams, reference: str, pepper: Keyed, *, legacy: bool = False
) -> tuple[str, ...]:
    """The keys an audit may be stored under, the one to write first: its identity (the caller's
    reference, else usage + owner ID + plate or driver ID) digested under the current pepper, then
    under the previous one, then (``legacy``) as the bare SHA-256 audits were keyed by before
    (docs/decisions.md#audit-identity); a new audit is written under the first only."""
    if reference:
        identity = f"ref\n{reference}"
    else:
        subject = params.carLicensePlate or params.driverIdCard or ""
        identity = f"{params.usage}\n{params.idCard}\n{subject}"
    return pepper.candidates(identity) + ((sha256_hex(identity),) if legacy else ())


def _masked_row(values: dict[str, object]) -> dict[str, str]:
    return {
        "name": mask_name(values.get("name")),
        "idCard": mask_id(values.get("idCard")),
        "phone": mask_phone(values.get("phone")),
    }


def _validate(
    services: Services, job: Job, rows: Iterable[SourceRow], rejections: RejectionLog
) -> tuple[JobCounts, list[CarrierAuditMessage]]:
    """The first pass: the rows are read and validated, then the audits table is asked for all of
    them at once (``AuditStore.find_keys``) which key each identity is stored under, then the rows
    are taken in order — rejections in row order — and duplicates within the file refused."""
    cap = services.settings.max_audit_rows_per_file
    rejected: list[tuple[int, Reason | list[Reason], dict[str, str]]] = []
    checked: list[tuple[SourceRow, AuditParams, str, tuple[str, ...]]] = []
    order: list[tuple[bool, int]] = []  # (a valid row?, its index in checked or rejected), row order
    read = 0
    pepper = services.secrets.identity_pepper()  # once per file: rotation is picked up by the next

    def reject(number: int, why: Reason | list[Reason], values: dict[str, object]) -> None:
        order.append((False, len(rejected)))
        rejected.append((number, why, _masked_row(values)))

    def settle() -> list[CarrierAuditMessage]:
        keys = services.audits.find_keys([candidates for *_, candidates in checked])
        seen: dict[str, int] = {}
        valid: list[CarrierAuditMessage] = []
        for is_valid, index in order:
            if not is_valid:
                rejections.add(*rejected[index])
                continue
            row, params, explicit, _ = checked[index]
            key = keys[index]
            if key in seen:
                masked = _masked_row(row.values)
                rejections.add(row.number, reason("duplicate.audit", first_row=seen[key]), masked, seen[key])
                continue
            seen[key] = row.number
            valid.append(
                CarrierAuditMessage(
                    job_id=job.job_id,
                    audit_key=key,
                    row=row.number,
                    params=params,
                    update_record_id=int(explicit) if explicit else None,
                )
            )
        return valid

    try:
        for row in rows:
            read += 1
            if read > cap:
                raise FileRejected("file.too_many_rows", setting="MAX_AUDIT_ROWS_PER_FILE", max=f"{cap:,}")
            if row.problem is not None:
                reject(row.number, reason("row.unreadable", problem=row.problem), row.values)
                continue
            try:
                params = validate_audit_row(row.values)
            except RowRejected as exc:
                reject(row.number, [v.reason() for v in exc.violations], row.values)
                continue
            explicit = str(row.values.get("recordId") or "").strip()
            # a correction of the rejected audit with this record id (decisions.md#audit-correction)
            if explicit:
                if not (explicit.isascii() and explicit.isdigit() and int(explicit) > 0):
                    reject(row.number, reason("record_id.value", column="recordId"), row.values)
                    continue
                candidates: tuple[str, ...] = (f"record:{int(explicit)}",)  # resolved in the second pass
            else:
                reference = str(row.values.get("reference") or "").strip()
                candidates = audit_keys(
                    params, reference, pepper, legacy=services.settings.audit_legacy_lookup
                )
            order.append((True, len(checked)))
            checked.append((row, params, explicit, candidates))
    except FileRejected:
        settle()  # the report of a rejected file lists the rows rejected before it stopped
        raise
    return JobCounts(rows_read=read), settle()


def _correction_target(services: Services, job: Job, message: CarrierAuditMessage) -> Reason | Audit:
    """The audit a row with a record id corrects — rejected, or failed (its /update was refused) —
    or why there is none."""
    record_id = message.update_record_id
    key = services.audits.key_for_record(record_id) if record_id else None
    current = services.audits.get(key) if key else None
    why: Reason | None = None
    if current is None or current.record_id != record_id:
        why = reason("why.no_such_record")
    elif not correctable(current) and not (current.job_id == job.job_id and current.row == message.row):
        why = reason("why.not_rejected", status=_status(current.status))
    if why is None:
        assert current is not None
        return current
    return reason("record_id.not_correctable", column="recordId", record_id=record_id or 0, why=why)


def _status(status: AuditStatus) -> Reason:
    return reason(f"audit_status.{status.value}")


def _reserve_and_queue(
    services: Services,
    job: Job,
    counts: JobCounts,
    audits: list[CarrierAuditMessage],
    rejections: RejectionLog,
) -> JobCounts:
    """The second pass: each audit reserved and queued. A resumed split (same job, same row) finds
    its audit whatever its status: still ``submitting`` it is queued again (the submit lease makes
    that safe); moved on — ``failed`` included, which only an operator re-drives — it is counted
    as accepted and not sent again."""
    accepted: list[CarrierAuditMessage] = []
    to_send: list[str] = []
    pepper = services.secrets.identity_pepper()
    for message in audits:
        params = message.params
        now = services.clock.now()
        masked = _masked_row(params.model_dump(include={"name", "idCard", "phone"}))
        if message.update_record_id is not None:  # a correction: it updates that rejected audit
            target = _correction_target(services, job, message)
            if isinstance(target, Reason):
                rejections.add(message.row, target, masked)
                continue
            message = message.model_copy(update={"audit_key": target.audit_key})
        audit = Audit(
            audit_key=message.audit_key,
            job_id=job.job_id,
            row=message.row,
            usage=params.usage,
            owner_name_masked=masked["name"],
            id_card_masked=masked["idCard"],
            id_card_digest=pepper.digest(params.idCard),
            phone_masked=masked["phone"],
            plate=params.carLicensePlate or "",
            status=AuditStatus.SUBMITTING,
            updated_at=iso(now),
        )
        reservation, current = services.audits.reserve(audit, now)
        resumed = (
            reservation == Reservation.DUPLICATE
            and current.job_id == job.job_id
            and current.row == message.row
        )
        if reservation == Reservation.DUPLICATE and not resumed:
            rejections.add(
                message.row, reason("duplicate.audit_exists", status=_status(current.status)), masked
            )
            continue
        if resumed and current.status != AuditStatus.SUBMITTING:
            accepted.append(message)  # submitted by the interrupted run: not sent again
            continue
        update_id = (
            current.record_id
            if reservation == Reservation.UPDATE or (resumed and current.record_id)
            else None
        )
        queued = message.model_copy(update={"update_record_id": update_id})
        accepted.append(queued)
        to_send.append(queued.model_dump_json())
    services.queue.send_all(to_send)
    n = len(accepted)
    return JobCounts(
        rows_read=counts.rows_read, rows_accepted=n, rows_rejected=counts.rows_read - n, batches_total=n
    )
