"""Logic that needs storage, on the in-memory ports (tests/fakes/): no moto, no AWS SDK."""

from __future__ import annotations

import inspect
import io
import json

import openpyxl
import pytest

from tests.fakes import MemoryBlobs, MemoryQueue
from tests.reports import csv_rows
from verifyfeed.ingest.headers import map_header
from verifyfeed.logic.reports import (
    NO_HEADER,
    RejectionLog,
    ReportPaths,
    job_report_key,
    read_header_facts,
    write_header_facts,
    write_rows_facts,
    write_summary,
)
from verifyfeed.models.records import Job, JobKind, JobStatus
from verifyfeed.ports import BlobError, Blobs, WorkQueue
from verifyfeed.reasons import reason
from verifyfeed.rules.errors import RuleViolation


def a_job(key: str) -> Job:
    return Job(
        job_id="j1",
        kind=JobKind.LOST_REPAIR,
        bucket="b",
        key=key,
        status=JobStatus.COMPLETED,
        created_at="2026-12-01T00:00:00+00:00",
        rows_read=3,
        rows_accepted=2,
        rows_rejected=1,
        rows_already_uploaded=1,
    )


@pytest.mark.parametrize(("port", "fake"), [(Blobs, MemoryBlobs), (WorkQueue, MemoryQueue)])
def test_the_fakes_have_the_ports_methods_with_their_parameters(port: type, fake: type) -> None:
    methods = [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        expected = list(inspect.signature(getattr(port, name)).parameters)
        assert list(inspect.signature(getattr(fake, name)).parameters) == expected, name


def test_each_job_has_its_own_reports_and_a_job_written_before_keeps_its_old_ones() -> None:
    key = "lost-repair/big3000.csv"
    first = a_job(key).model_copy(
        update={"job_id": "a" * 24, "report_key": job_report_key("reports/", key, "a" * 24)}
    )
    second = first.model_copy(
        update={"job_id": "b" * 24, "report_key": job_report_key("reports/", key, "b" * 24)}
    )
    one, two = ReportPaths.for_job(first, "reports/"), ReportPaths.for_job(second, "reports/")
    assert one.summary == f"reports/{key}/{'a' * 24}.json"
    assert one.rejected == f"reports/{key}/{'a' * 24}.rejected.csv"
    assert (one.header, one.rows) == (
        f"reports/{key}/{'a' * 24}.header.json",
        f"reports/{key}/{'a' * 24}.rows.json",
    )
    assert set(one.all()).isdisjoint(two.all())  # a second upload of the file never replaces the first's
    old = ReportPaths.for_job(a_job(key), "reports/")  # no report_key: written before reports were per job
    assert (old.summary, old.rejected, old.header) == (
        f"reports/{key}.json",
        f"reports/{key}.rejected.csv",
        f"reports/{key}.header.json",
    )


def test_a_summary_copies_the_facts_stored_beside_it() -> None:
    blobs = MemoryBlobs()
    key = "lost-repair/x.csv"
    paths = ReportPaths(job_report_key("reports/", key, "j1"))
    facts = {"header_row": 2, "ignored_columns": ["备注"], "notes": ["a title row above the header"]}
    write_header_facts(blobs, "b", paths.header, facts)
    rows = {
        "rows_to_fix": 0,
        "already_uploaded_in": [{"file": "x0.csv", "date": "2026-12-01", "job_id": "j0", "rows": 1}],
        "rejected_rows_by_code": [],
    }
    write_rows_facts(blobs, "b", paths, rows)
    write_summary(blobs, "b", paths, a_job(key), {"sent_upstream": 2})
    summary = json.loads(blobs.get("b", paths.summary))
    assert summary["ignored_columns"] == ["备注"] and summary["header_row"] == 2
    assert (summary["rows_already_uploaded"], summary["sent_upstream"]) == (1, 2)
    assert summary["already_uploaded_in"] == rows["already_uploaded_in"]
    assert summary["headline"] == {
        "en": "2 sent, 1 already uploaded on 2026-12-01 in x0.csv (not charged again), 0 to fix",
        "zh": "已发送 2 行，1 行已于 2026-12-01 在 x0.csv 中上传过（不重复收费），0 行需修改",
    }


def test_a_summary_without_facts_says_so_and_a_refused_read_is_not_missing() -> None:
    blobs = MemoryBlobs()
    assert read_header_facts(blobs, "b", "reports/none.header.json") is None
    paths = ReportPaths("reports/lost-repair/y.csv.json")
    write_summary(blobs, "b", paths, a_job("lost-repair/y.csv"), {})
    summary = json.loads(blobs.get("b", "reports/lost-repair/y.csv.json"))
    assert (summary["header_row"], summary["ignored_columns"]) == (NO_HEADER["header_row"], [])
    assert (summary["rows_to_fix"], summary["already_uploaded_in"]) == (None, [])
    # no rows facts (a job split before them): the headline still counts, without naming where
    assert summary["headline"]["en"] == "2 sent, 1 already uploaded (not charged again), 0 to fix"

    class Refusing(MemoryBlobs):
        def get(self, bucket: str, key: str) -> bytes:
            raise BlobError("get: AccessDenied", code="AccessDenied")

    with pytest.raises(BlobError):
        read_header_facts(Refusing(), "b", "reports/z.header.json")


def test_a_refused_file_s_summary_carries_its_code_and_both_texts() -> None:
    blobs = MemoryBlobs()
    paths = ReportPaths("reports/lost-repair/p.pdf/j1.json")
    job = a_job("lost-repair/p.pdf").model_copy(
        update={
            "status": JobStatus.REJECTED,
            "reason": "a PDF document, not a spreadsheet: upload the .xlsx or CSV file",
        }
    )
    write_summary(blobs, "b", paths, job, {}, NO_HEADER, refused=reason("file.pdf"))
    summary = json.loads(blobs.get("b", paths.summary))
    assert (summary["reason_code"], summary["reason"]) == ("file.pdf", job.reason)
    assert summary["reason_zh"] == "这是 PDF 文档，不是表格：请上传 .xlsx 或 CSV 文件"
    assert summary["headline"]["zh"].startswith("文件未被处理，未发送任何数据：这是 PDF 文档")


def repair_log() -> RejectionLog:
    log = RejectionLog(JobKind.LOST_REPAIR)
    log.use_header(map_header(["客户姓名", "证件号码", "手机号", "合同编号"], JobKind.LOST_REPAIR))
    return log


def test_the_rejected_rows_report_carries_code_both_texts_and_the_customer_s_column_names() -> None:
    blobs = MemoryBlobs()
    log = repair_log()
    violation = RuleViolation("id_number.check_digit")
    log.add(
        2,
        violation.reason(),
        {"name": "=HYPERLINK(bad)", "id_number": "****1234", "used_phone": "", "auth_code": "A1"},
    )
    already = reason("duplicate.already_uploaded", file="big3000.csv", date="2026-12-01", job="j0")
    log.add(3, already, {"name": "李*", "id_number": "****5678", "auth_code": "A2"})
    log.add(4, reason("duplicate.id_number", column="id_number", first_row=2), {"name": "王*"}, 2)
    paths = ReportPaths("reports/lost-repair/x.csv/j1.json")
    log.upload(blobs, "b", paths)
    log.close()
    raw = blobs.get("b", paths.rejected)
    first, second = csv_rows(raw)  # the rows to fix only, the already-uploaded one apart
    assert list(first) == [
        "row",
        "code",
        "zh",
        "en",
        "first_row",
        "客户姓名",
        "证件号码",
        "手机号",
        "合同编号",
    ]
    assert (first["row"], first["code"]) == ("2", "id_number.check_digit")
    assert (first["zh"], first["en"]) == ("证件号码校验位不符", "证件号码: check digit does not match")
    assert first["客户姓名"] == "'=HYPERLINK(bad)"  # formula defused
    assert (second["code"], second["first_row"], second["zh"]) == (
        "duplicate.id_number",
        "2",
        "证件号码与第 2 行重复",
    )
    assert blobs.content_types[("b", paths.rejected)].startswith("text/csv")
    [uploaded] = csv_rows(blobs.get("b", paths.already_uploaded))
    assert (uploaded["row"], uploaded["code"]) == ("3", "duplicate.already_uploaded")
    assert uploaded["zh"] == "已于 2026-12-01 在文件 big3000.csv 中上传（作业 j0），本次不再发送，不重复收费"
    assert log.facts()["already_uploaded_in"] == [
        {"file": "big3000.csv", "date": "2026-12-01", "job_id": "j0", "rows": 1}
    ]
    assert log.facts()["rows_to_fix"] == 2


def test_the_workbook_opens_without_an_import_dialog_rows_to_fix_first_every_value_text() -> None:
    blobs = MemoryBlobs()
    log = repair_log()
    log.add(
        5,
        reason("duplicate.already_uploaded", file="a.csv", date="2026-12-01", job="j0"),
        {"auth_code": "00123"},
    )
    log.add(
        2, RuleViolation("phone.format").in_field("used_phone").reason(), {"name": "=1+1", "auth_code": "007"}
    )
    paths = ReportPaths("reports/lost-repair/x.csv/j1.json")
    log.upload(blobs, "b", paths)
    log.close()
    book = openpyxl.load_workbook(io.BytesIO(blobs.get("b", paths.workbook)))
    assert book.sheetnames == ["要修改的行 To fix", "已上传过 Already uploaded"]
    to_fix = [[c.value for c in row] for row in book.worksheets[0].iter_rows()]
    assert to_fix[0][:5] == ["行号 row", "代码 code", "中文原因", "English reason", "首次出现行 first row"]
    assert to_fix[0][5:] == ["客户姓名", "证件号码", "手机号", "合同编号"]
    assert to_fix[1][:4] == [
        2,
        "phone.format",
        "手机号不是 11 位中国大陆手机号",
        "手机号: must be an 11-digit mainland mobile number",
    ]
    name_cell, code_cell = book.worksheets[0]["F2"], book.worksheets[0]["I2"]
    assert (name_cell.value, name_cell.data_type) == ("=1+1", "s")  # text, never a formula
    assert (code_cell.value, code_cell.data_type, code_cell.number_format) == ("007", "s", "@")  # stays "007"
    already = [[c.value for c in row] for row in book.worksheets[1].iter_rows()]
    assert [r[:2] for r in already[1:]] == [[5, "duplicate.already_uploaded"]] and already[1][8] == "00123"
    assert blobs.content_types[("b", paths.workbook)].endswith("spreadsheetml.sheet")


def test_a_full_sheet_says_where_the_other_rows_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from verifyfeed.logic import reports

    monkeypatch.setattr(reports, "XLSX_MAX_ROWS", 3)
    blobs = MemoryBlobs()
    log = RejectionLog(JobKind.CARRIER_AUDIT)
    for row in range(2, 7):
        log.add(row, RuleViolation("usage.value", "usage").reason(), {})
    paths = ReportPaths("reports/carrier-audit/a.csv/j1.json")
    log.upload(blobs, "b", paths)
    log.close()
    assert len(csv_rows(blobs.get("b", paths.rejected))) == 5  # the CSV has every row
    book = openpyxl.load_workbook(io.BytesIO(blobs.get("b", paths.workbook)))
    assert book.sheetnames == ["要修改的行 To fix"]  # no ledger for carrier audits
    rows = [[c.value for c in row] for row in book.worksheets[0].iter_rows()]
    assert [r[0] for r in rows[1:4]] == [2, 3, 4] and rows[4][1] == "report.more_rows"
    assert rows[4][2] == f"还有 2 行未列在此表中，见 {paths.rejected}"
    assert rows[0][5:] == [
        "车老板姓名",
        "车老板身份证号",
        "车老板手机号",
    ]  # the spec's labels: no header read
