"""``verifyfeed redrive --unknown-audits``: an audit held ``unknown`` (its add's answer lost) is
re-read from its original upload and submitted again, only after the operator confirms; one whose
upload is gone is reported and stays ``unknown``. Real files split, real submissions to the
sandbox over HTTP, the CLI in-process against the moto stack."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import DECISION_DELAY_S, Cli, drain_queue, fake_id, new_job
from tests.integration.test_splitter import AUDIT_HEADER, audit_row, csv_bytes, put, split
from tests.rows import an_audit
from verifyfeed.logic.transitions import apply_audit_result
from verifyfeed.logic.uploader import Delivery, submit_audit
from verifyfeed.models.carrier_audit import UpstreamAuditStatus
from verifyfeed.models.messages import CarrierAuditMessage
from verifyfeed.models.records import Audit, AuditStatus, Job, JobKind, JobStatus
from verifyfeed.pii import Keyed
from verifyfeed.ports import StaleAudit
from verifyfeed.services import Services
from verifyfeed_cli.audit_redrive import plan_unknown_audits, resubmit, unknown_audits

pytestmark = pytest.mark.integration

_n = iter(range(900_001, 1_600_000, 10))
FLAG = "--i-understand-this-may-create-a-second-audit"  # odd numbers: apart from the other modules' fake ids


def drop(services: Services, rows: list[list[str]]) -> tuple[str, str, list[CarrierAuditMessage]]:
    """A carrier-audit CSV uploaded and split: (key, job id, the queued messages by row)."""
    key = f"carrier-audit/redrive-{uuid.uuid4().hex[:8]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=AUDIT_HEADER)))
    assert result.outcome == "split"
    return key, result.job_id, queued(services, result.job_id)


def queued(services: Services, job_id: str) -> list[CarrierAuditMessage]:
    return sorted(
        (
            CarrierAuditMessage.model_validate(m)
            for m in drain_queue(services.settings.work_queue_url)
            if m.get("job_id") == job_id
        ),
        key=lambda m: m.row,
    )


def made_unknown(services: Services, sandbox: SandboxHandle, message: CarrierAuditMessage) -> Audit:
    """Submit with the answer lost after upstream processed the add: held unknown."""
    sandbox.set_faults({"endpoint": "audit_add", "reset": True, "phase": "after", "count": 1})
    assert submit_audit(services, message, Delivery()) == "unknown"
    audit = services.audits.get(message.audit_key)
    assert audit is not None and audit.status == AuditStatus.UNKNOWN and audit.record_id is None
    return audit


def upstream_audits_for(sandbox: SandboxHandle, id_card: str) -> int:
    return len([a for a in sandbox.audits() if a.params.get("idCard") == id_card])


def job(services: Services, job_id: str) -> Job:
    found = services.jobs.get_job(job_id)
    assert found is not None
    return found


def as_json(out: str) -> Any:
    return json.loads(out)  # exactly one document


def test_unknown_audit_is_listed_declined_then_resubmitted_once(
    services: Services, sandbox: SandboxHandle, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "ana")  # the local operator, as a re-submission records it
    n1, n2 = next(_n), next(_n)
    key, job_id, [lost, fine] = drop(services, [audit_row("2", n1), audit_row("3", n2)])
    assert submit_audit(services, fine, Delivery()) == "pending"
    held = made_unknown(services, sandbox, lost)
    assert upstream_audits_for(sandbox, fake_id(n1)) == 1  # the lost add did create it upstream
    before = job(services, job_id)
    assert (before.status, before.batches_total, before.batches_succeeded, before.batches_unknown) == (
        JobStatus.COMPLETED_WITH_ERRORS,
        2,
        1,
        1,
    )

    # listed: job and file, row, masked owner, why it is held; never the plaintext
    code, out, _ = cli("audits", "--status", "unknown", "--limit", "500", "--json")
    assert code == 0
    (view,) = [a for a in as_json(out)["audits"] if a["job_id"] == job_id]
    assert (view["file"], view["row"], view["owner"], view["status"]) == (key, 2, "张*", "unknown")
    assert view["last_error"] == held.last_error and held.last_error
    assert fake_id(n1) not in out and held.audit_key not in out
    code, out, _ = cli("audits", "--status", "unknown", "--limit", "500", "--wide")
    assert code == 0 and key in out and fake_id(n1) not in out
    assert "Ask it first" in out and f"redrive --unknown-audits --job {job_id} {FLAG}" in out

    # the file's status: one audit held unknown, what to ask, and the command with its flag; not
    # settled yet (exit 4): the other awaits its decision
    code, out, _ = cli("status", key)
    assert code == 4 and "Audits:   2 in all = 1 awaiting a decision + 1 held unknown" in out
    assert f"redrive --unknown-audits --job {job_id} {FLAG}" in out

    # --yes is not enough: refused without the flag that says the operator asked the upstream
    code, out, err = cli("redrive", "--unknown-audits", "--job", key, "--yes")
    assert code == 2 and "refused: re-submitting 1 unknown audit(s) may create a second audit" in err
    assert FLAG in err and queued(services, job_id) == []

    # declined: the warning was shown, nothing changed, nothing queued
    code, out, err = cli("redrive", "--unknown-audits", "--job", key, FLAG, stdin="n\n")
    assert code == 1 and "Aborted" in out
    assert "may create a second audit upstream" in err and "Proceed? [y/N]" in err
    assert fake_id(n1) not in err and fake_id(n1) not in out
    unchanged = services.audits.get(lost.audit_key)
    assert unchanged is not None and (unchanged.status, unchanged.version) == (
        AuditStatus.UNKNOWN,
        held.version,
    )
    assert job(services, job_id) == before
    assert queued(services, job_id) == []

    # confirmed: re-read from the upload, unknown → submitting, the job reopened, an add queued
    code, out, err = cli("redrive", "--unknown-audits", "--job", job_id, FLAG, "--json", stdin="y\n")
    assert code == 0, err
    result = as_json(out)
    assert [(a["row"], a["send"], a["status"]) for a in result["audits_resubmitted"]] == [
        (2, "add", "submitting")
    ]
    assert result["audits_skipped"] == [] and result["confirmed"] is True
    assert fake_id(n1) not in out
    moved = services.audits.get(lost.audit_key)
    assert moved is not None and moved.status == AuditStatus.SUBMITTING and moved.last_error == ""
    assert moved.version == held.version + 1 and moved.resubmissions == 1
    assert [(r.by, r.was) for r in moved.redriven] == [("ana", "unknown")]
    reopened = job(services, job_id)
    assert (reopened.status, reopened.batches_succeeded, reopened.batches_unknown) == (
        JobStatus.UPLOADING,
        1,
        0,
    )
    (again,) = queued(services, job_id)
    assert again == lost  # the same audit, row and request fields; an add (no record id)

    # the uploader submits it: a second audit upstream (the risk the warning names), ours pending
    assert submit_audit(services, again, Delivery()) == "pending"
    pending = services.audits.get(lost.audit_key)
    assert pending is not None and pending.status == AuditStatus.PENDING and pending.record_id is not None
    assert sandbox.audit(pending.record_id) is not None
    assert upstream_audits_for(sandbox, fake_id(n1)) == 2
    settled = job(services, job_id)
    assert (settled.status, settled.batches_total, settled.batches_succeeded, settled.batches_unknown) == (
        JobStatus.COMPLETED,
        2,
        2,
        0,
    )
    code, out, _ = cli("report", key, "--json")
    assert code == 0 and as_json(out)["report"]["status"] == "completed"
    # completed, and still visibly re-submitted from unknown (a second audit upstream, maybe)
    code, out, _ = cli("status", key)
    assert "Status:   completed (1 re-driven from unknown)" in out
    assert "Re-driven: row 2: from unknown by ana at " in out and "(may be a second audit upstream)" in out

    # nothing left: a second re-drive finds nothing and asks nothing
    code, out, err = cli("redrive", "--unknown-audits", "--job", key)
    assert code == 0 and "Nothing to re-submit" in out and "Proceed?" not in err
    assert queued(services, job_id) == []


def test_an_audit_whose_upload_is_gone_is_reported_and_stays_unknown(
    services: Services, sandbox: SandboxHandle, cli: Cli
) -> None:
    key, job_id, [message] = drop(services, [audit_row("2", next(_n))])
    held = made_unknown(services, sandbox, message)
    upload = job(services, job_id)
    assert upload.version
    boto3.client("s3").delete_object(Bucket=upload.bucket, Key=upload.key, VersionId=upload.version)

    code, out, err = cli("redrive", "--unknown-audits", "--job", key, "--yes", "--json")
    assert code == 0 and "Proceed?" not in err  # nothing to re-submit: no flag needed to say so
    result = as_json(out)
    assert result["audits_resubmitted"] == []
    (skipped,) = result["audits_skipped"]
    assert (skipped["job_id"], skipped["row"]) == (job_id, 2)
    assert "no longer in S3" in skipped["why"]
    code, out, _ = cli("redrive", "--unknown-audits", "--job", key)
    assert code == 0 and f"Left unknown: job {job_id} row 2" in out and "no longer in S3" in out

    still = services.audits.get(message.audit_key)
    assert still is not None and (still.status, still.version) == (AuditStatus.UNKNOWN, held.version)
    after = job(services, job_id)
    assert (after.status, after.batches_unknown, after.batches_succeeded) == (
        JobStatus.COMPLETED_WITH_ERRORS,
        1,
        0,
    )
    assert queued(services, job_id) == []


def test_only_the_rows_of_unknown_audits_are_planned_and_an_unknown_update_keeps_its_record_id(
    services: Services, sandbox: SandboxHandle
) -> None:
    """The layer without the CLI: a rejected audit re-dropped whose ``/update`` went unanswered is
    re-submitted as an update of the same record; an audit that moved meanwhile is not re-submitted."""
    n = next(_n)
    _, _, [first] = drop(services, [audit_row("3", n, attachmentFileUrls="reject-me.jpg")])
    assert submit_audit(services, first, Delivery()) == "pending"
    pending = services.audits.get(first.audit_key)
    assert pending is not None and pending.record_id is not None
    sandbox.advance(DECISION_DELAY_S)  # the sandbox rejects it (its attachment name says so)
    upstream = sandbox.audit(pending.record_id)
    assert upstream is not None and upstream.status == 2
    apply_audit_result(services, pending.record_id, UpstreamAuditStatus.REJECTED, upstream.remarks)

    # re-dropped with the material fixed: an /update, which fails before upstream processed it
    _, fixed_job, [update] = drop(services, [audit_row("3", n, attachmentFileUrls="registration.jpg")])
    assert update.update_record_id == pending.record_id
    sandbox.set_faults({"endpoint": "audit_update", "status_code": 502, "phase": "before", "count": 1})
    assert submit_audit(services, update, Delivery()) == "unknown"
    held = services.audits.get(update.audit_key)
    assert held is not None and held.record_id == pending.record_id and held.job_id == fixed_job

    held_here = unknown_audits(services, fixed_job)
    assert [a.audit_key for a in held_here] == [update.audit_key]
    # under a pepper the audit was not keyed with (a rotation that dropped it), the row is another audit
    (other,) = plan_unknown_audits(services, held_here, Keyed(current=b"not-the-pepper-of-this-audit"))
    assert not other.ready and "no longer yields this audit" in other.reason
    (item,) = plan_unknown_audits(services, held_here)
    assert item.ready and item.kind == "update" and item.message == update
    assert "registration" not in repr(item) and fake_id(n) not in repr(item)

    resubmit(services, item, "ops")
    with pytest.raises(StaleAudit):  # planned again from the same read: it moved meanwhile
        resubmit(services, item, "ops")
    (message,) = queued(services, fixed_job)
    assert message.update_record_id == pending.record_id
    assert submit_audit(services, message, Delivery()) == "pending"
    final = services.audits.get(update.audit_key)
    assert final is not None and final.status == AuditStatus.PENDING and final.record_id == pending.record_id
    assert [e.accepted for e in sandbox.ledger() if e.endpoint == "/carrierAudit/update"] == [False, True]
    assert job(services, fixed_job).status == JobStatus.COMPLETED


def test_unknown_audits_are_redriven_on_their_own(cli: Cli) -> None:
    code, _, err = cli("redrive", "--unknown-audits", "--dlq", "--yes")
    assert code == 2 and "--unknown-audits is re-driven on its own" in err
    code, _, err = cli("redrive", "--yes")
    assert code == 2 and "(or --unknown-audits)" in err
    code, out, err = cli("redrive", "--unknown-audits", "--job", "carrier-audit/never-dropped.csv", "--json")
    assert code == 1 and as_json(out)["exit_code"] == 1 and "no job for" in err


@pytest.mark.parametrize("job_item", ["deleted", "counters only"])
def test_an_unknown_audit_whose_job_is_not_known_is_reported(services: Services, job_item: str) -> None:
    """Its job item is gone (deleted by hand), or holds counters only (a settlement's bare ``ADD``
    created one before issue 24 made it conditional on the job): no upload to re-read, reported,
    nothing written."""
    now = services.clock.now()
    audit = an_audit(job_id=new_job(services, 0, JobKind.CARRIER_AUDIT).job_id)
    _, reserved = services.audits.reserve(audit, now)
    held = services.audits.settle_submission(reserved, AuditStatus.UNKNOWN, now, error="read timeout")
    ddb, key = boto3.client("dynamodb"), {"pk": {"S": f"JOB#{audit.job_id}"}, "sk": {"S": "JOB"}}
    ddb.delete_item(TableName=services.settings.jobs_table, Key=key)
    if job_item == "counters only":
        ddb.put_item(TableName=services.settings.jobs_table, Item={**key, "batches_unknown": {"N": "1"}})
    (item,) = plan_unknown_audits(services, unknown_audits(services, audit.job_id))
    assert not item.ready and "not in the jobs table" in item.reason
    still = services.audits.get(audit.audit_key)
    assert still is not None and (still.status, still.version) == (AuditStatus.UNKNOWN, held.version)
