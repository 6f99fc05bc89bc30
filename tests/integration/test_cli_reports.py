"""The CLI's reports (issue 25): every job's own report, by job id or by file name (a file uploaded
more than once lists its jobs and says which it shows), the rows to fix apart from the rows already
uploaded, the workbook; and ``drop`` refusing, before anything is uploaded, what the splitter would
refuse — saying what the file is, or what is wrong with its header."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import openpyxl
import pytest

from local.events import s3_put_event
from sandbox.server import SandboxHandle
from tests.integration.conftest import Cli, SettingsFactory, fake_id
from tests.integration.test_splitter import upload_all
from verifyfeed.clock import FixedClock
from verifyfeed.logic.splitter import DroppedObject, split_object
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration
HEADER = ("姓名", "身份证号", "曾用手机号", "授权码")


def sheet(rows: list[list[str]], header: tuple[str, ...] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(services: Services, key: str, data: bytes) -> str:
    """Put ``data`` at ``key`` (a new version each time) and split it as its S3 event would: the job id."""
    s3 = boto3.client("s3")
    bucket = services.settings.ingest_bucket
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    event = s3_put_event(bucket, key, len(data), head["ETag"].strip('"'), head["VersionId"], uuid.uuid4().hex)
    return split_object(services, DroppedObject.from_event_record(event["Records"][0])).job_id


def test_each_upload_of_a_file_keeps_its_report_and_a_file_name_lists_them(
    services: Services, sandbox: SandboxHandle, cli: Cli, tmp_path: Path
) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}.csv"
    key = f"lost-repair/{name}"
    first = upload(
        services, key, sheet([["张三", fake_id(7001), "", "D7001"], ["李四", "1.10105E+17", "", "D7002"]])
    )
    upload_all(services, first)  # it settles and writes its report
    second = upload(services, key, sheet([["王五", fake_id(7003), "", "D7003"]]))  # the same name again
    upload_all(services, second)

    # by job id: that job, whichever upload came later
    for job_id, rejected in ((first, 1), (second, 0)):
        code, out, err = cli("report", job_id, "--json")
        assert code == 0, err
        assert as_job(out) == job_id
        code, out, _ = cli("report", job_id, "--rejected", "--json")
        assert len(json_of(out)["rejected_rows"]) == rejected

    # by file name: every upload, newest first, and which one is shown
    code, out, _ = cli("report", name, "--rejected")
    uploads = out.splitlines()[0]
    assert uploads.startswith("Uploads:  2 jobs for this file, newest first: ")
    assert first in uploads and second in uploads and uploads.count("<- shown") == 1
    code, out, _ = cli("report", name, "--rejected", "--json")
    data = json_of(out)
    assert data["uploads"][0]["job_id"] == data["job_id"]  # the job shown is the one listed first
    assert {u["job_id"] for u in data["uploads"]} == {first, second}
    code, out, _ = cli("status", name)
    assert "Uploads:  2 jobs for this file, newest first: " in out and "`verifyfeed status JOB`" in out

    # the workbook: a file, not text
    code, _, err = cli("report", first, "--xlsx")
    assert code == 2 and "--out PATH" in err
    target = tmp_path / "rejected.xlsx"
    code, out, _ = cli("report", first, "--xlsx", "--out", str(target))
    assert code == 0 and str(target) in out
    book = openpyxl.load_workbook(target)
    rows = [[c.value for c in row] for row in book.worksheets[0].iter_rows()]
    assert [r[1] for r in rows[1:]] == ["id_number.excel_number"] and rows[1][0] == 3


def test_the_rows_already_uploaded_come_apart_from_the_rows_to_fix(
    make_settings: SettingsFactory, clock: FixedClock, cli: Cli
) -> None:
    services = build_services(make_settings(RESEND_WINDOW="month"), clock)
    people = [["张三", fake_id(7101), "", "E7101"], ["李四", fake_id(7102), "", "E7102"]]
    upload(services, f"lost-repair/first-{uuid.uuid4().hex[:8]}.csv", sheet(people))
    again = upload(
        services,
        f"lost-repair/fixed-{uuid.uuid4().hex[:8]}.csv",
        sheet([*people, ["王五", "x", "", "E7103"]]),
    )
    code, out, _ = cli("report", again, "--rejected", "--json")
    assert [r["代码 code"] for r in json_of(out)["rejected_rows"]] == ["id_number.format"]
    code, out, _ = cli("report", again, "--already-uploaded")
    assert code == 0 and "duplicate.already_uploaded" in out and "E7101" in out
    code, out, _ = cli("report", again, "--already-uploaded", "--json")
    assert [r["代码 code"] for r in json_of(out)["already_uploaded_rows"]] == [
        "duplicate.already_uploaded"
    ] * 2


def as_job(out: str) -> str:
    return str(json_of(out)["report"]["job_id"])


def json_of(out: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(out)
    return loaded


@pytest.mark.parametrize("kind", [None, "lost-repair"])
@pytest.mark.parametrize(
    ("suffix", "data", "said"),
    [
        (
            ".pdf",
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\n",
            "(file.pdf): a PDF document, not a spreadsheet",
        ),
        (".csv", b"", "(file.empty): file is empty"),
        (".png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "(file.image): a PNG image"),
        (".zip", b"PK\x05\x06" + b"\x00" * 18, "(file.archive): a zip archive, not an .xlsx workbook"),
        (".md", b"# notes\n\nNothing to upload here.\n", "(header.not_found"),
        (
            ".csv",
            "姓名,身份证号,手机号,曾用手机号,授权码\n张三,1,,,A\n".encode(),
            "(header.duplicate_columns): more than one column for: 曾用手机号 (手机号, 曾用手机号)",
        ),
    ],
)
def test_drop_refuses_before_uploading_what_the_splitter_would_refuse(
    cli: Cli, services: Services, tmp_path: Path, kind: str | None, suffix: str, data: bytes, said: str
) -> None:
    path = tmp_path / f"refused-{uuid.uuid4().hex[:8]}{suffix}"
    path.write_bytes(data)
    code, _, err = cli("drop", str(path), *(["--kind", kind] if kind else []))
    assert code == 2
    assert f"{path.name} not uploaded {said}" in err
    assert "cannot tell" not in err
    listed = boto3.client("s3").list_objects_v2(Bucket=services.settings.ingest_bucket, Prefix="lost-repair/")
    assert not [o for o in listed.get("Contents", []) if o["Key"].endswith(path.name)]


def test_only_a_header_of_neither_kind_asks_for_the_kind(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / f"unclear-{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes("姓名,身份证号,备注\n张三,1,x\n".encode())
    code, _, err = cli("drop", str(path))
    assert code == 2 and "cannot tell lost-repair from carrier-audit by the header" in err and "--kind" in err
    code, _, err = cli("drop", str(path), "--kind", "lost-repair")  # then the header's own problem
    assert code == 2 and "(header.missing_columns): missing required column(s): 授权码" in err
    assert "缺少必需的列：授权码" in err
