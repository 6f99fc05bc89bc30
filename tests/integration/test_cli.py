"""The operators' CLI against the local stack in moto (``--local``), driven in-process through
``main([...])``: real files split and uploaded to the sandbox, then looked at, reported and
re-driven the way an operator would."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.events import s3_put_event
from local.resources import LocalStack
from sandbox.server import SandboxHandle
from tests.integration.conftest import (
    IDENTITY_PEPPER,
    ROOT,
    Cli,
    SettingsFactory,
    drain_queue,
    fake_id,
    new_job,
    repair_records,
)
from tests.reports import csv_rows
from verifyfeed.clock import FixedClock
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.logic.uploader import Delivery, load_records, upload_batch
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import Audit, AuditStatus, BatchStatus, JobStatus
from verifyfeed.pii import keyed_digest
from verifyfeed.services import Services, build_services
from verifyfeed.store.blobs import S3Blobs
from verifyfeed_cli.target import Target, resolve

pytestmark = pytest.mark.integration


@pytest.fixture
def small_batches(make_settings: SettingsFactory, clock: FixedClock) -> Services:
    return build_services(make_settings(BATCH_MAX_RECORDS="2"), clock)


def drop(
    services: Services,
    rows: list[list[str]],
    header: tuple[str, ...] = ("姓名", "身份证号", "曾用手机号", "授权码"),
) -> tuple[str, str]:
    """Upload a lost-repair CSV and split it, as the S3 event would: (key, job id)."""
    key = f"lost-repair/cli-{uuid.uuid4().hex[:8]}.csv"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode()
    s3 = boto3.client("s3")
    bucket = services.settings.ingest_bucket
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    event = s3_put_event(bucket, key, len(data), head["ETag"].strip('"'), head["VersionId"], uuid.uuid4().hex)
    result = split_object(services, DroppedObject.from_event_record(event["Records"][0]))
    assert result.outcome == "split"
    return key, result.job_id


def queued(services: Services, job_id: str) -> list[LostRepairBatchMessage]:
    return sorted(
        (
            LostRepairBatchMessage.model_validate(m)
            for m in drain_queue(services.settings.work_queue_url)
            if m.get("job_id") == job_id
        ),
        key=lambda m: m.seq,
    )


def as_json(out: str) -> Any:
    return json.loads(out)  # exactly one document: json.loads refuses anything after it


# ---- where -----------------------------------------------------------------------------------------


def test_local_names_are_the_ones_the_local_stack_has(stack: LocalStack) -> None:
    found = resolve(
        Target(stack=stack.stack_name, local=True, region=stack.region), {}, None, boto3.client("sqs")
    )
    assert (found.bucket, found.work_queue_url, found.dlq_url, found.jobs_table, found.audits_table) == (
        stack.bucket,
        stack.queue_url,
        stack.dlq_url,
        stack.tables["JobsTable"],
        stack.tables["AuditsTable"],
    )


def test_status_shows_files_the_splitter_failed_on(stack: LocalStack, cli: Cli) -> None:
    url = stack.queues["SplitterFailureQueue"]
    found = resolve(
        Target(stack=stack.stack_name, local=True, region=stack.region), {}, None, boto3.client("sqs")
    )
    assert found.splitter_failures_url == url
    drain_queue(url)
    code, out, _ = cli("status")
    assert code == 0 and "splitter failed on" not in out
    boto3.client("sqs").send_message(
        QueueUrl=url, MessageBody=json.dumps({"requestPayload": {"Records": []}})
    )
    try:
        code, out, _ = cli("status")
        assert code == 0 and "Files the splitter failed on: 1 event(s)" in out
        assert "docs/operations.md#splitter-failures" in out
        code, out, _ = cli("status", "--json")
        assert json.loads(out)["queues"]["splitter_failures"] == 1
    finally:
        drain_queue(url)


def test_a_stack_that_does_not_exist_is_an_aws_error(cli: Cli) -> None:
    code, out, err = cli("--stack", "no-such-stack", "status", "--json")
    assert code == 3
    assert "no queue no-such-stack-WorkQueue" in err
    assert as_json(out)["exit_code"] == 3


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("status", "--limit", "0")[0] == 2
    assert cli("audits", "--status", "bogus")[0] == 2
    assert cli("frobnicate")[0] == 2
    code, _, err = cli("redrive", "--yes")
    assert code == 2 and "--dlq, --failed and/or --unknown" in err


def test_module_entry_point_prints_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "verifyfeed_cli", "--help"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'layers/core/python'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "exit codes:" in done.stdout and "redrive" in done.stdout


def test_the_console_script_runs_from_anywhere(tmp_path: Path) -> None:
    # .venv/bin/verifyfeed (make venv: pip install -e .) finds the CLI, now outside the layer, and the
    # core it reads through, with no PYTHONPATH and away from the repository
    script = Path(sys.executable).parent / "verifyfeed"
    done = subprocess.run(
        [str(script), "--help"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "exit codes:" in done.stdout and "redrive" in done.stdout


# ---- status, report --------------------------------------------------------------------------------


def test_status_report_and_redrive_of_an_unknown_batch(
    small_batches: Services, sandbox: SandboxHandle, cli: Cli, tmp_path: Path
) -> None:
    services = small_batches
    rows = [["张三", fake_id(301), "13800138000", "C301"], ["李四", "1.10105E+17", "", "C302"]]
    rows += [[name, fake_id(310 + i), "", f"C31{i}"] for i, name in enumerate(("王一", "王二"))]
    key, job_id = drop(services, rows)  # 4 rows: 3 accepted (2 batches), 1 rejected
    first, second = queued(services, job_id)
    sandbox.set_faults({"endpoint": "lost_repair", "count": 1, "reset": True, "phase": "after"})
    assert upload_batch(services, second, Delivery()) == "unknown"  # upstream took it, answer lost
    assert upload_batch(services, first, Delivery()) == "succeeded"
    charged = len(sandbox.accepted_records())
    assert charged == 3

    # recent jobs, as a table and as JSON (every test's jobs are created at the same frozen instant:
    # a limit above the session's job count keeps this one in the list whatever ran before)
    code, out, _ = cli("status", "--limit", "5000")
    assert code == 0 and key in out and "completed_with_errors" in out and "4/3/1" in out
    assert "redrive" in out
    code, out, _ = cli("status", "--limit", "5000", "--json")
    overview = as_json(out)
    mine = next(j for j in overview["jobs"] if j["job_id"] == job_id)
    assert (mine["rows_read"], mine["batches_total"], mine["batches_unknown"]) == (4, 2, 1)
    assert overview["batches_needing_attention"]["unknown"] >= 1

    # one file, by its bare name: the unknown batch is shown with its error
    name = key.rsplit("/", 1)[1]
    code, out, _ = cli("status", name)
    assert code == 0
    assert f"Job:      {job_id}" in out and "unknown" in out and second.batch_id in out
    assert f"redrive --failed --unknown --job {job_id}" in out
    code, out, _ = cli("--json", "status", job_id)
    detail = as_json(out)
    assert [b["batch_id"] for b in detail["batches_not_succeeded"]] == [second.batch_id]
    assert detail["report"] == f"s3://{services.settings.ingest_bucket}/reports/{key}/{job_id}.json"

    # the report, as JSON, and the rejected rows to a file (as stored: BOM, masked values)
    code, out, _ = cli("report", key, "--json")
    report = as_json(out)["report"]
    assert report["status"] == "completed_with_errors" and report["batches_unknown"] == 1
    code, out, _ = cli("report", key)  # the one line first, in both languages, then the summary
    assert out.splitlines()[:2] == ["3 sent, 1 to fix", "已发送 3 行，1 行需修改"]
    target = tmp_path / "rejected.csv"
    code, out, _ = cli(
        "report", f"s3://{services.settings.ingest_bucket}/{key}", "--rejected", "--out", str(target)
    )
    assert code == 0 and "1 rejected row(s)" in out
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    (row,) = csv_rows(raw)
    assert (row["code"], row["姓名"]) == ("id_number.excel_number", "李*")
    assert row["zh"].startswith("身份证号被 Excel 存成了数字")
    code, out, _ = cli("report", key, "--rejected", "--json")
    assert as_json(out)["rejected_rows"][0]["行号 row"] == "3"
    # a report that is gone from the bucket (deleted by hand) is named, exit 1
    bucket = services.settings.ingest_bucket
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"reports/{key}/{job_id}.rejected.csv")
    code, _, err = cli("report", key, "--rejected")
    assert code == 1 and f"reports/{key}/{job_id}.rejected.csv does not exist" in err

    # the operator declines: nothing changes
    code, out, err = cli("redrive", "--unknown", "--job", key, stdin="n\n")
    assert code == 1 and "Aborted" in out
    assert "may already have been accepted upstream" in err and "Proceed? [y/N]" in err
    batch = services.jobs.get_batch(job_id, second.seq)
    assert batch is not None and batch.status == BatchStatus.UNKNOWN and batch.claim_key
    assert queued(services, job_id) == []

    # end of input is a no too
    assert cli("redrive", "--unknown", "--job", key)[0] == 1

    # confirmed: the batch goes back to retry, the job reopens, a message with a new generation is queued
    code, out, err = cli("redrive", "--unknown", "--job", key, "--json", stdin="y\n")
    assert code == 0, err
    result = as_json(out)
    assert [b["batch_id"] for b in result["batches_resent"]] == [second.batch_id]
    batch = services.jobs.get_batch(job_id, second.seq)
    assert batch is not None and batch.status == BatchStatus.RETRY and batch.redrives == 1
    job = services.jobs.get_job(job_id)
    assert job is not None and job.status == JobStatus.UPLOADING and job.batches_unknown == 0
    (message,) = queued(services, job_id)
    assert message.batch_id == second.batch_id and message.generation > 0
    assert message.records is None and message.claim_key == batch.claim_key

    # the uploader sends it (the operator's deliberate decision); the job settles again, report rewritten
    resent = len(load_records(S3Blobs(), message))  # read before: a succeeded batch's staged body is deleted
    assert upload_batch(services, message, Delivery()) == "succeeded"
    assert len(sandbox.accepted_records()) == charged + resent
    job = services.jobs.get_job(job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    code, out, _ = cli("report", key, "--json")
    assert as_json(out)["report"]["status"] == "completed"

    # nothing left to re-drive for this job
    code, out, _ = cli("redrive", "--failed", "--unknown", "--job", job_id, "--yes")
    assert code == 0 and "Nothing to re-drive" in out


def test_a_failed_batch_keeps_its_body_and_can_be_redriven(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle, cli: Cli
) -> None:
    services = build_services(make_settings(STATE0_MAX_ATTEMPTS="1", STATE0_BISECT_MAX_CALLS="0"), clock)
    job = new_job(services)
    message = LostRepairBatchMessage(
        job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=repair_records(2, 700)
    )
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True, "count": 1})
    assert upload_batch(services, message, Delivery()) == "failed"
    batch = services.jobs.get_batch(job.job_id, 1)
    assert batch is not None and batch.claim_key.startswith("claims/")
    body = boto3.client("s3").get_object(Bucket=batch.claim_bucket, Key=batch.claim_key)["Body"].read()
    assert [r["authCode"] for r in json.loads(body)] == [r.authCode for r in message.records or []]

    code, out, err = cli("redrive", "--failed", "--job", job.job_id, "--yes")
    assert code == 0, err
    assert "Re-queued 1 batch(es)" in out and "may already have been accepted" not in err
    (again,) = queued(services, job.job_id)
    retried = services.jobs.get_batch(job.job_id, 1)
    assert retried is not None and retried.status == BatchStatus.RETRY and retried.state0_count == 0
    assert upload_batch(services, again, Delivery()) == "succeeded"


def test_a_batch_whose_body_could_not_be_kept_is_settled_and_reported_not_redrivable(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle, cli: Cli
) -> None:
    # the claim cannot be written (no such bucket): the batch still settles, without a claim
    services = build_services(
        make_settings(STATE0_MAX_ATTEMPTS="1", INGEST_BUCKET="verifyfeed-it-gone"), clock
    )
    job = new_job(services, batches=2)  # stays open: no report to write into the missing bucket
    message = LostRepairBatchMessage(
        job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=repair_records(1, 750)
    )
    sandbox.set_faults({"endpoint": "lost_repair", "state0": True, "count": 1})
    assert upload_batch(services, message, Delivery()) == "failed"
    batch = services.jobs.get_batch(job.job_id, 1)
    assert batch is not None and batch.claim_key == ""

    code, out, err = cli("redrive", "--failed", "--job", job.job_id, "--json")
    assert code == 0 and "Proceed?" not in err
    result = as_json(out)
    assert result["batches_resent"] == []
    assert [(b["batch_id"], b["why"]) for b in result["batches_skipped"]] == [
        (batch.batch_id, "body not kept")
    ]
    code, out, _ = cli("redrive", "--failed", "--job", job.job_id)
    assert "Nothing to re-drive" in out and f"Cannot re-drive {batch.batch_id}" in out
    still = services.jobs.get_batch(job.job_id, 1)
    assert still is not None and still.status == BatchStatus.FAILED


def test_not_found_is_exit_1_with_one_json_document(cli: Cli, services: Services) -> None:
    code, out, err = cli("status", "lost-repair/never-dropped.csv", "--json")
    assert code == 1 and "no job for 'lost-repair/never-dropped.csv'" in err
    assert as_json(out) == {"error": err.strip().removeprefix("verifyfeed: "), "exit_code": 1}
    job = new_job(services)  # uploading: no summary report yet
    code, _, err = cli("report", job.job_id)
    assert code == 1 and "no report yet" in err


# ---- redrive: dead-letter queue --------------------------------------------------------------------


def test_redrive_moves_dead_letters_back_to_the_work_queue(
    stack: LocalStack, services: Services, cli: Cli
) -> None:
    sqs = boto3.client("sqs")
    drain_queue(stack.dlq_url)
    drain_queue(stack.queue_url)
    mine, other = new_job(services), new_job(services)
    bodies = {
        job.job_id: LostRepairBatchMessage(
            job_id=job.job_id, batch_id=f"{job.job_id}#00001", seq=1, records=repair_records(1, 900)
        ).model_dump_json()
        for job in (mine, other)
    }
    for body in bodies.values():
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)

    code, out, err = cli("redrive", "--dlq", "--job", mine.job_id, "--yes", "--json")
    assert code == 0, err
    assert as_json(out)["dlq_messages_moved"] == 1 and as_json(out)["dlq_messages_left"] == 1
    assert [m["job_id"] for m in drain_queue(stack.queue_url)] == [mine.job_id]

    code, out, err = cli("redrive", "--dlq", stdin="yes\n")
    assert code == 0 and "Moved 1 message(s)" in out and "dead-letter queue: about 1 message(s)" in err
    assert [json.dumps(m, sort_keys=True) for m in drain_queue(stack.queue_url)] == [
        json.dumps(json.loads(bodies[other.job_id]), sort_keys=True)
    ]
    assert drain_queue(stack.dlq_url) == []
    code, out, _ = cli("redrive", "--dlq")
    assert code == 0 and "Nothing to re-drive" in out


# ---- deferred, audits ------------------------------------------------------------------------------


def test_deferred_lists_what_the_blackout_holds(
    services: Services, clock: FixedClock, sandbox: SandboxHandle, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.move_to(datetime.fromisoformat("2026-12-27T08:00:00+08:00"))
    job = new_job(services, batches=2)
    for seq in (1, 2):
        message = LostRepairBatchMessage(
            job_id=job.job_id,
            batch_id=f"{job.job_id}#{seq:05d}",
            seq=seq,
            records=repair_records(3, 800 + seq * 10),
        )
        assert upload_batch(services, message, Delivery()) == "deferred"
    monkeypatch.setenv("CLOCK_NOW", "2026-12-28T09:00:00+08:00")
    code, out, _ = cli("deferred", "--json")
    assert code == 0
    result = as_json(out)
    assert result["blackout"] == {
        "in_force": True,
        "until": "2027-01-01T00:00:00+08:00",
        "start_day": 27,
        "resume_day": 1,
    }
    (mine,) = [g for g in result["jobs"] if g["job_id"] == job.job_id]
    assert (mine["file"], mine["batches"], mine["records"]) == (job.key, 2, 2)
    assert mine["resumes_at"] == "2027-01-01T00:00:00+08:00"
    code, out, _ = cli("deferred")
    assert "Blackout in force until 2027-01-01 00:00 China time" in out and job.job_id in out

    monkeypatch.setenv("CLOCK_NOW", "2027-01-01T00:10:00+08:00")
    code, out, _ = cli("deferred")
    assert code == 0 and "not in force now" in out


def test_audits_show_masked_fields_only(services: Services, cli: Cli) -> None:
    job = new_job(services)
    id_card = fake_id(4242)
    audit = Audit(
        audit_key=keyed_digest(f"cli-{uuid.uuid4()}", IDENTITY_PEPPER.encode()),
        job_id=job.job_id,
        row=2,
        usage="2",
        owner_name_masked="张*",
        id_card_masked="**************" + id_card[-4:],
        id_card_digest=keyed_digest(id_card, IDENTITY_PEPPER.encode()),
        phone_masked="*******0000",
        plate="京A12345",
        status=AuditStatus.SUBMITTING,
        updated_at="2026-11-25T02:00:00.000+00:00",
    )
    services.audits.reserve(audit, services.clock.now())

    code, out, _ = cli("audits", "--status", "submitting", "--json", "--limit", "500")
    assert code == 0
    result = as_json(out)
    (mine,) = [a for a in result["audits"] if a["job_id"] == job.job_id]
    assert (mine["owner"], mine["id_card"], mine["phone"], mine["plate"]) == (
        "张*",
        audit.id_card_masked,
        "*******0000",
        "京*****5",
    )
    assert result["counts"]["submitting"] >= 1
    assert id_card not in out and audit.id_card_digest not in out and "京A12345" not in out
    code, out, _ = cli("audits", "--limit", "500")
    assert code == 0 and "张*" in out and id_card not in out and "submitting" in out


def test_status_of_a_file_names_the_columns_it_did_not_use(cli: Cli, services: Services) -> None:
    key, job_id = drop(
        services,
        [["张三", fake_id(41), "A41", "vip", ""]],
        header=("姓名", "身份证号", "授权码", "备注", "序号"),
    )
    code, out, _ = cli("status", key)
    assert code == 0 and "Columns:  header in row 1; ignored: 备注, 序号" in out
    code, out, _ = cli("--json", "status", job_id)
    detail = as_json(out)
    assert detail["ignored_columns"] == ["备注", "序号"]
    assert detail["header"] == {"header_row": 1, "ignored_columns": ["备注", "序号"], "notes": []}

    key, _ = drop(services, [["张三", fake_id(42), "", "A42"]])
    code, out, _ = cli("status", key)
    assert "Columns:  header in row 1; every column used" in out
