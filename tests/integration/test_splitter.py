"""The splitter against S3/DynamoDB/SQS in moto, and the uploads it produces against the sandbox."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import boto3
import openpyxl
import pytest

from local.events import s3_put_event
from sandbox.server import SandboxHandle
from tests.integration.conftest import drain_queue, fake_id
from tests.reports import TITLE_ROW_NOTE, newest_job, paths_of, rejected_rows
from tests.rows import AUDIT_HEADER, audit_row
from verifyfeed.logic.reports import read_header_facts
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.logic.uploader import Delivery, load_records, submit_audit, upload_batch
from verifyfeed.models.messages import CarrierAuditMessage, LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, JobStatus
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services
from verifyfeed.store.blobs import S3Blobs

pytestmark = pytest.mark.integration
HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]


def put(services: Services, key: str, data: bytes) -> dict[str, Any]:
    """Upload like a user would and return the S3 event AWS would send."""
    s3 = boto3.client("s3")
    bucket = services.settings.ingest_bucket
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    return s3_put_event(
        bucket, key, len(data), head["ETag"].strip('"'), head.get("VersionId", ""), uuid.uuid4().hex
    )


def split(services: Services, event: dict[str, Any]) -> Any:
    return split_object(services, DroppedObject.from_event_record(event["Records"][0]))


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8", header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def upload_all(services: Services, job_id: str) -> list[LostRepairBatchMessage]:
    messages = [
        LostRepairBatchMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == job_id and m["kind"] == "lost_repair_batch"
    ]
    for message in messages:
        assert upload_batch(services, message, Delivery()) == "succeeded"
    return messages


def summary(services: Services, key: str) -> dict[str, Any]:
    """The summary report of the latest upload of ``key``, read straight from S3."""
    job = newest_job(services, key)
    body = boto3.client("s3").get_object(Bucket=job.bucket, Key=paths_of(services, job).summary)
    loaded: dict[str, Any] = json.loads(body["Body"].read())
    return loaded


def valid_rows(count: int, start: int = 0) -> list[list[str]]:
    return [
        [
            f"用户{chr(0x4E00 + i % 5000)}",
            fake_id(start + i),
            f"138{start + i:08d}" if i % 3 else "",
            f"K{start + i:07d}",
        ]
        for i in range(count)
    ]


def test_mixed_file_sends_exactly_the_valid_rows_once(services: Services, sandbox: SandboxHandle) -> None:
    legacy15 = "110105491231002"  # converts to 11010519491231002X
    rows = [
        ["张三", fake_id(1), "+86 138 0013 8000", "A1"],  # 2 valid, phone with +86 and spaces
        ["李四", fake_id(2)[:-1] + ("0" if fake_id(2)[-1] != "0" else "1"), "", "A2"],  # 3 bad check digit
        ["王五", "1.10105E+17", "", "A3"],  # 4 Excel float
        ["赵六", fake_id(4), "02112345678", "A4"],  # 5 landline, not mobile
        ["钱七", fake_id(5), "", "A-5"],  # 6 bad authCode
        ["孙" * 31, fake_id(6), "", "A6"],  # 7 name too long
        ["周八", fake_id(1), "", "A8"],  # 8 duplicate ID of row 2
        ["吴九", fake_id(9), "", "A1"],  # 9 duplicate authCode of row 2
        ["郑十", sha256_hex(fake_id(10)).upper(), "", "A10"],  # 10 pre-hashed, upper-case hex
        ["陈一", legacy15, "", "A11"],  # 11 legacy 15-digit, converted
        [
            "林二",
            "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in fake_id(12)),
            "",
            "Ａ12",
        ],  # 12 full-width
        ["=HYPERLINK(1)", fake_id(13), "", "A13"],  # 13 formula injection
        ["黄三", fake_id(14).replace("X", "x"), "", "A14"],  # 14 lower-case x ok (if any)
    ]
    key = f"lost-repair/mixed {uuid.uuid4().hex[:6]}+v1.csv"
    result = split(services, put(services, key, csv_bytes(rows)))
    assert result.outcome == "split"
    counts = result.counts
    assert counts.rows_read == 13 and counts.rows_accepted + counts.rows_rejected == 13
    assert counts.rows_accepted == 5 and counts.batches_total == 1

    upload_all(services, result.job_id)
    expected = {
        sha256_hex(fake_id(1)),
        sha256_hex(fake_id(10)),
        sha256_hex("11010519491231002X"),
        sha256_hex(fake_id(12)),
        sha256_hex(fake_id(14).upper()),
    }
    sent = [r.idcode for r in sandbox.accepted_records()]
    assert len(sent) == len(set(sent)) == 5  # each valid row once
    assert set(sent) == expected
    first = next(r for r in sandbox.accepted_records() if r.idcode == sha256_hex(fake_id(1)))
    assert first.usedPhone == sha256_hex("13800138000") and first.name == "张三"

    report = {int(r["row"]): r for r in rejected_rows(services, key)}
    assert sorted(report) == [3, 4, 5, 6, 7, 8, 9, 13]
    assert report[3]["code"] == "id_number.check_digit"
    assert (report[3]["zh"], report[3]["en"]) == (
        "身份证号校验位不符",
        "身份证号: check digit does not match",
    )
    assert report[4]["code"] == "id_number.excel_number"
    assert report[5]["code"].startswith("phone") and report[5]["en"].startswith("曾用手机号: ")
    assert report[6]["code"].startswith("auth_code")
    assert report[7]["code"] == "name.length"
    assert report[8]["code"] == "duplicate.id_number" and report[8]["first_row"] == "2"
    assert report[9]["code"] == "duplicate.auth_code" and report[9]["first_row"] == "2"
    assert report[9]["zh"] == "授权码与第 2 行重复（字母不区分大小写）"
    assert report[13]["code"].startswith("name")
    assert report[13]["姓名"].startswith("'") or not report[13]["姓名"].startswith("=")
    # no plaintext ID in the report
    raw_report = json.dumps(list(report.values()), ensure_ascii=False)
    for i in (2, 4, 5, 6, 9):
        assert fake_id(i) not in raw_report

    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    assert job.rows_read == job.rows_accepted + job.rows_rejected


def test_2500_rows_make_batches_of_1000_1000_500(services: Services, sandbox: SandboxHandle) -> None:
    key = f"lost-repair/big-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(2500, 10_000))))
    assert result.counts.batches_total == 3
    messages = upload_all(services, result.job_id)
    assert all(m.records is None and m.claim_key for m in messages)  # the bodies were staged in S3
    assert sorted(b.record_count for b in services.jobs.batches(result.job_id)) == [500, 1000, 1000]
    counts = sandbox.record_counts()
    assert len(counts) == 2500 and set(counts.values()) == {1}
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED and job.batches_succeeded == 3


def _records_sent_for(services: Services, key: str, data: bytes) -> list[dict[str, str]]:
    result = split(services, put(services, key, data))
    messages = [
        LostRepairBatchMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    return sorted(
        (r.model_dump() for m in messages for r in load_records(S3Blobs(), m)), key=lambda r: r["idcode"]
    )


def test_gbk_csv_and_xlsx_give_the_same_batches_as_utf8(services: Services) -> None:
    rows = valid_rows(50, 50_000)
    utf8 = _records_sent_for(services, f"lost-repair/u-{uuid.uuid4().hex[:6]}.csv", csv_bytes(rows))
    gbk = _records_sent_for(services, f"lost-repair/g-{uuid.uuid4().hex[:6]}.csv", csv_bytes(rows, "gbk"))
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    xlsx = _records_sent_for(services, f"lost-repair/x-{uuid.uuid4().hex[:6]}.xlsx", buffer.getvalue())
    assert len(utf8) == 50
    assert utf8 == gbk == xlsx


def test_a_redelivered_s3_event_makes_no_second_job(services: Services) -> None:
    key = f"lost-repair/twice-{uuid.uuid4().hex[:6]}.csv"
    event = put(services, key, csv_bytes(valid_rows(3, 70_000)))
    first = split(services, event)
    assert first.outcome == "split"
    queued = [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == first.job_id]
    again = split(services, event)
    assert again.outcome == "duplicate" and again.job_id == first.job_id
    assert len(queued) == 1
    assert [m for m in drain_queue(services.settings.work_queue_url) if m.get("job_id") == first.job_id] == []


def test_claim_check_when_a_batch_does_not_fit_in_a_message(
    make_settings: Any, clock: Any, sandbox: SandboxHandle
) -> None:
    from verifyfeed.services import build_services

    services = build_services(make_settings(MESSAGE_MAX_BYTES="2000"), clock)
    key = f"lost-repair/claim-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(20, 80_000))))
    messages = [
        LostRepairBatchMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    assert len(messages) == 1 and messages[0].records is None and messages[0].claim_key
    bucket, check = services.settings.ingest_bucket, messages[0].claim_key
    s3 = boto3.client("s3")
    # a second version of the claim check, as a resumed split writes it again
    s3.put_object(Bucket=bucket, Key=check, Body=s3.get_object(Bucket=bucket, Key=check)["Body"].read())
    assert len(s3.list_object_versions(Bucket=bucket, Prefix=check).get("Versions", [])) == 2
    assert upload_batch(services, messages[0], Delivery()) == "succeeded"
    assert len(sandbox.accepted_records()) == 20
    # settled succeeded: the claim check (plain digests of ID and phone numbers) is gone, every version,
    # without a delete marker left behind
    versions = s3.list_object_versions(Bucket=bucket, Prefix=check)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_the_claim_check_of_an_unknown_batch_is_kept_for_a_redrive(
    make_settings: Any, clock: Any, sandbox: SandboxHandle
) -> None:
    from verifyfeed.services import build_services

    services = build_services(make_settings(MESSAGE_MAX_BYTES="2000"), clock)
    key = f"lost-repair/claim-kept-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(20, 81_000))))
    (message,) = [
        LostRepairBatchMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    assert message.claim_key
    sandbox.set_faults([{"endpoint": "lost_repair", "reset": True, "phase": "after", "count": 1}])
    assert upload_batch(services, message, Delivery()) == "unknown"
    body = boto3.client("s3").get_object(Bucket=services.settings.ingest_bucket, Key=message.claim_key)
    assert len(json.loads(body["Body"].read())) == 20  # the operator re-drives it from here


def test_missing_required_column_rejects_the_file_with_a_reason(services: Services) -> None:
    key = f"lost-repair/nocol-{uuid.uuid4().hex[:6]}.csv"
    result = split(
        services, put(services, key, csv_bytes([["张三", fake_id(1)]], header=["姓名", "身份证号"]))
    )
    assert result.outcome == "rejected"
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.REJECTED
    assert job.reason == "missing required column(s): 授权码"  # the column as the customer knows it
    report = summary(services, key)
    assert (report["status"], report["reason_code"], report["reason"]) == (
        "rejected",
        "header.missing_columns",
        job.reason,
    )
    assert report["reason_zh"] == "缺少必需的列：授权码"
    assert report["headline"]["en"] == "file refused, nothing sent: missing required column(s): 授权码"


def test_audit_file_only_valid_rows_reach_add_and_rejected_rows_name_the_rule(
    services: Services, sandbox: SandboxHandle
) -> None:
    rows = [
        audit_row("1", 100),  # 2
        audit_row("2", 200),  # 3
        audit_row("3", 300),  # 4
        audit_row("4", 400),  # 5 usage.value
        audit_row("2", 500, name="Zhang San"),  # 6 name characters
        audit_row("2", 600, idCard=fake_id(600)[:-1] + ("1" if fake_id(600)[-1] != "1" else "2")),  # 7
        audit_row("1", 700, driverIdCard=""),  # 8 usage 1 without driver ID
        audit_row("2", 800, carLicensePlate=""),  # 9 usage 2 without plate
        audit_row(
            "3", 900, attachmentFileUrls=",".join(f"f{i}.jpg" for i in range(10))
        ),  # 10 ten attachments
    ]
    key = f"carrier-audit/audits-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(rows, header=AUDIT_HEADER)))
    assert result.counts.rows_read == 9 and result.counts.rows_accepted == 3
    rejected = rejected_rows(services, key)
    report = {int(r["row"]): r["code"] for r in rejected}
    assert sorted(report) == [5, 6, 7, 8, 9, 10]
    assert "auth_code" not in rejected[0] and list(rejected[0])[5:] == ["name", "idCard", "phone"]
    assert "usage" in report[5]
    assert "name" in report[6]
    assert "id" in report[7].lower()
    assert "conditional" in report[8] or "driver" in report[8].lower()
    assert "conditional" in report[9] or "plate" in report[9].lower()
    assert "attachments" in report[10]

    messages = [
        CarrierAuditMessage.model_validate(m)
        for m in drain_queue(services.settings.work_queue_url)
        if m.get("job_id") == result.job_id
    ]
    assert len(messages) == 3
    for message in messages:
        assert submit_audit(services, message, Delivery()) == "pending"
    adds = [e for e in sandbox.ledger() if e.endpoint == "/carrierAudit/add"]
    assert len(adds) == 3 and all(e.accepted for e in adds)
    for message in messages:
        stored = services.audits.get(message.audit_key)
        assert stored is not None and stored.status == AuditStatus.PENDING and stored.record_id
        assert message.params.idCard not in stored.model_dump_json()
        assert message.params.phone not in stored.model_dump_json()
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED and job.batches_succeeded == 3


def test_a_seed_sheet_title_row_annotated_phone_and_extra_columns(
    services: Services, sandbox: SandboxHandle
) -> None:
    """The customer's sheets as they are printed: a merged title row, 曾用手机号（选填）, columns we
    do not use. The phone is sent (hashed), the rest is reported by label."""
    key = f"lost-repair/seed-{uuid.uuid4().hex[:6]}.csv"
    rows = [["序号", "姓名", "身份证号码", "曾用手机号（选填）", "授权码(合同编号)", "备注"]]
    rows += [
        [str(i), name, fake_id(90_000 + i), f"1390000{i:04d}", f"S{i}", "x"]
        for i, name in enumerate(["张　三", "李四"])
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["2026年12月失联名单", "", "", "", "", ""])
    writer.writerows(rows)
    result = split(services, put(services, key, out.getvalue().encode()))
    assert result.outcome == "split"
    upload_all(services, result.job_id)
    sent = sorted(sandbox.accepted_records()[-2:], key=lambda r: r.authCode)
    assert [(r.name, r.usedPhone) for r in sent] == [
        ("张三", sha256_hex("13900000000")),  # padded name squeezed, phone column used
        ("李四", sha256_hex("13900000001")),
    ]
    job = services.jobs.get_job(result.job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    report = summary(services, key)
    assert report["ignored_columns"] == ["序号", "备注"]
    assert report["header_row"] == 2
    assert report["notes"] == [TITLE_ROW_NOTE]


def test_a_closing_total_row_is_skipped_with_a_note_and_the_counts_add_up(
    services: Services, sandbox: SandboxHandle
) -> None:
    """A workbook as a customer saves it (issue 26, item 3): a title row, the list, a blank row, a
    合计 row and a 共 N 人 row at the end. The summary rows are neither sent nor rejected — the
    report and the header facts ``verifyfeed status`` reads name them — while a 合计 row holding an
    ID number is a data row, and rejected."""
    key = f"lost-repair/total-{uuid.uuid4().hex[:6]}.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["2026年12月失联名单"])
    sheet.append([*HEADER, "备注"])
    sheet.append(["张三", fake_id(95_001), "", "T1", "vip"])  # row 3
    sheet.append(["李四", fake_id(95_002), "13900000001", "T2", None])  # row 4
    sheet.append([None, None, None, None, None])  # row 5: blank
    sheet.append(["合计", fake_id(95_003), None, None, None])  # row 6: an ID number, so a data row
    sheet.append(["合 计：", None, None, None, "共 2 人"])  # row 7
    sheet.append(["共２人", "", None, "", None])  # row 8
    buffer = io.BytesIO()
    book.save(buffer)
    result = split(services, put(services, key, buffer.getvalue()))
    assert result.outcome == "split"
    assert (result.counts.rows_read, result.counts.rows_accepted, result.counts.rows_rejected) == (3, 2, 1)
    upload_all(services, result.job_id)
    assert sorted(r.authCode for r in sandbox.accepted_records()[-2:]) == ["T1", "T2"]
    report = summary(services, key)
    assert report["status"] == JobStatus.COMPLETED.value
    assert report["rows_read"] == report["rows_accepted"] + report["rows_rejected"] == 3
    notes = [
        TITLE_ROW_NOTE,
        "row 7 (合 计：) skipped as a summary row / 第 7 行（合 计：）为汇总行，已跳过",
        "row 8 (共２人) skipped as a summary row / 第 8 行（共２人）为汇总行，已跳过",
    ]
    assert report["notes"] == notes
    paths = paths_of(services, key)
    header = read_header_facts(services.blobs, services.settings.ingest_bucket, paths.header)
    assert header is not None and header["notes"] == notes  # what verifyfeed status shows
    assert [(row["row"], row["code"]) for row in rejected_rows(services, key)] == [("6", "auth_code.missing")]


def test_two_phone_columns_reject_the_file_naming_both(services: Services) -> None:
    key = f"lost-repair/twophones-{uuid.uuid4().hex[:6]}.csv"
    header = ["姓名", "身份证号", "手机号", "曾用手机号（选填）", "授权码"]
    result = split(
        services, put(services, key, csv_bytes([["张三", fake_id(1), "", "", "A1"]], header=header))
    )
    assert result.outcome == "rejected"
    job = services.jobs.get_job(result.job_id)
    assert job is not None
    assert job.reason.startswith("more than one column for: 曾用手机号 (手机号, 曾用手机号(选填))")
    report = summary(services, key)
    assert (report["status"], report["reason_code"]) == ("rejected", "header.duplicate_columns")
    assert (report["header_row"], report["ignored_columns"]) == (None, [])


def test_the_summary_is_written_even_when_the_header_facts_cannot_be_read(services: Services) -> None:
    from verifyfeed.logic import reports
    from verifyfeed.ports import BlobError

    key = f"lost-repair/facts-{uuid.uuid4().hex[:6]}.csv"
    result = split(services, put(services, key, csv_bytes(valid_rows(2, 95_000), header=[*HEADER, "备注"])))
    job = services.jobs.get_job(result.job_id)
    assert job is not None
    bucket, paths = job.bucket, paths_of(services, job)
    summary_key = paths.summary
    assert summary_key == f"reports/{key}/{job.job_id}.json"
    reports.write_summary(services.blobs, bucket, paths, job, {})
    read = boto3.client("s3").get_object
    assert json.loads(read(Bucket=bucket, Key=summary_key)["Body"].read())["ignored_columns"] == ["备注"]

    class ReadDenied(S3Blobs):
        """S3 as it is, but reading the header facts is refused (a policy that forgot them)."""

        def get(self, bucket: str, key: str) -> bytes:
            raise BlobError("get: AccessDenied", code="AccessDenied")

    reports.write_summary(ReadDenied(), bucket, paths, job, {})
    summary = json.loads(read(Bucket=bucket, Key=summary_key)["Body"].read())
    assert (summary["header_row"], summary["ignored_columns"], summary["job_id"]) == (None, [], job.job_id)
