"""local.demo's output: the table and the JSON name the columns a file's header did not use."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from local import demo
from local.runner import detect_kind as detect_file_kind
from local.snapshot import JobView, Snapshot
from verifyfeed.ingest.errors import FileRejected


def snapshot() -> Snapshot:
    jobs = [
        JobView(file="seed.csv", key="lost-repair/seed.csv", kind="lost-repair", status="completed"),
        JobView(file="bad.csv", key="lost-repair/bad.csv", kind="lost-repair", status="rejected", reason="r"),
    ]
    return Snapshot(jobs=jobs, audits={}, ledger=None, queues={}, invocations={}, in_flight=0)


def test_header_facts_are_read_from_each_job_s_own_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "REPORTS_DIR", tmp_path)
    job = JobView(
        file="seed.csv",
        key="lost-repair/seed.csv",
        kind="lost-repair",
        status="completed",
        job_id="j2",
        report_key="reports/lost-repair/seed.csv/j2.json",
    )
    facts = tmp_path / "lost-repair" / "seed.csv" / "j2.header.json"
    facts.parent.mkdir(parents=True)
    facts.write_text(
        json.dumps({"header_row": 1, "ignored_columns": ["备注"], "notes": []}), encoding="utf-8"
    )
    assert job.report_paths("reports/").header == "reports/lost-repair/seed.csv/j2.header.json"
    snap = Snapshot(jobs=[job], audits={}, ledger=None, queues={}, invocations={}, in_flight=0)
    reports = [("s3://b/reports/lost-repair/seed.csv/j2.header.json", facts)]
    assert demo.result_json(snap, [], reports)["jobs"][0]["ignored_columns"] == ["备注"]


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        (
            "scan.pdf",
            b"%PDF-1.4\n",
            "a PDF document, not a spreadsheet: upload the .xlsx or CSV file (file.pdf)",
        ),
        ("unclear.csv", "姓名,身份证号\n张三,1\n".encode(), "(header.kind_unknown); set KIND"),
    ],
)
def test_the_demo_refuses_a_file_before_starting_anything(
    tmp_path: Path, name: str, data: bytes, said: str
) -> None:
    """The same detection as the splitter's and `verifyfeed drop`'s, before anything starts."""
    path = tmp_path / name
    path.write_bytes(data)
    out = io.StringIO()
    options = demo.DemoOptions.from_env({"FILE": str(path), "JSON": "1"})
    assert demo.run(options, out) == 1
    [problem] = json.loads(out.getvalue())["problems"]
    assert problem.startswith(f"{path}: ") and said in problem


def test_a_file_in_a_kind_s_folder_is_read_as_that_kind_only_when_its_header_does_not_tell(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "lost-repair"
    folder.mkdir()
    unclear = folder / "list.csv"
    unclear.write_bytes("姓名,身份证号,授权码,核验场景\n".encode())  # both kinds' columns: not told apart
    assert detect_file_kind(unclear) == "lost-repair"
    pdf = folder / "list.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    with pytest.raises(FileRejected) as info:
        detect_file_kind(pdf)
    assert info.value.code == "file.pdf"


def test_ignored_columns_and_notes_per_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "REPORTS_DIR", tmp_path)
    facts = tmp_path / "lost-repair" / "seed.csv.header.json"
    facts.parent.mkdir()
    facts.write_text(
        json.dumps({"header_row": 2, "ignored_columns": ["序号", "备注"], "notes": ["row(s) 1 ... title"]}),
        encoding="utf-8",
    )
    reports = [("s3://b/reports/lost-repair/seed.csv.header.json", facts)]
    table = demo.result_table(snapshot(), [], reports, 1.0)
    assert "  seed.csv: ignored columns: 序号, 备注" in table
    assert "  seed.csv: row(s) 1 ... title" in table
    assert "bad.csv: ignored" not in table
    jobs = demo.result_json(snapshot(), [], reports)["jobs"]
    assert [(j["file"], j["ignored_columns"], j["notes"]) for j in jobs] == [
        ("seed.csv", ["序号", "备注"], ["row(s) 1 ... title"]),
        ("bad.csv", None, []),  # no header facts: not known, not "none"
    ]


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://upstream.example.com:8443", True),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:8765", True),
        ("http://upstream.example.com:8765", False),
        ("http://192.168.1.10:8765", False),
    ],
)
def test_an_upstream_url_the_functions_would_refuse_is_refused_before_the_start(
    url: str, accepted: bool
) -> None:
    if accepted:
        assert demo.DemoOptions.from_env({"UPSTREAM_URL": url}).runner.upstream_url == url
    else:
        with pytest.raises(ValueError, match="not an https:// URL"):
            demo.DemoOptions.from_env({"UPSTREAM_URL": url})


def test_the_json_gives_a_refused_file_s_reason_as_its_report_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26, item 6: code, Chinese and English, from the job's downloaded summary report; a job
    that was not refused has none, a refused one whose report is missing has its English reason."""
    monkeypatch.setattr(demo, "REPORTS_DIR", tmp_path)
    views = [
        JobView(file="bad.xls", key="lost-repair/bad.xls", kind="lost-repair", status="rejected",
                reason="r", job_id="j1", report_key="reports/lost-repair/bad.xls/j1.json"),
        JobView(file="gone.csv", key="lost-repair/gone.csv", kind="lost-repair", status="rejected",
                reason="missing required column(s): 授权码", job_id="j2",
                report_key="reports/lost-repair/gone.csv/j2.json"),
        JobView(file="seed.csv", key="lost-repair/seed.csv", kind="lost-repair", status="completed",
                job_id="j3", report_key="reports/lost-repair/seed.csv/j3.json"),
    ]  # fmt: skip
    report = tmp_path / "lost-repair" / "bad.xls" / "j1.json"
    report.parent.mkdir(parents=True)
    refused = FileRejected("file.password")
    report.write_text(
        json.dumps(
            {
                "status": "rejected",
                "reason": refused.reason,
                "reason_code": refused.code,
                "reason_zh": refused.zh,
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    seed = tmp_path / "lost-repair" / "seed.csv" / "j3.json"
    seed.parent.mkdir(parents=True)
    seed.write_text(json.dumps({"status": "completed", "reason": ""}), encoding="utf-8")
    snap = Snapshot(jobs=views, audits={}, ledger=None, queues={}, invocations={}, in_flight=0)
    reports = [("s3://b/reports/lost-repair/bad.xls/j1.json", report), ("s3://b/x", seed)]
    jobs = demo.result_json(snap, [], reports)["jobs"]
    assert jobs[0]["reason"] == {"code": "file.password", "zh": refused.zh, "en": refused.reason}
    assert "密码" in jobs[0]["reason"]["zh"] and "password" in jobs[0]["reason"]["en"]
    assert jobs[1]["reason"] == {"code": None, "zh": None, "en": "missing required column(s): 授权码"}
    assert jobs[2]["reason"] is None
    assert json.loads(json.dumps(jobs, ensure_ascii=False)) == jobs  # what JSON=1 prints
