"""`make demo` end to end, as a user runs it: a fresh process with its own moto server and sandbox.

Each run takes several seconds; they are the proof that the two commands of the README work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.resources import load_template
from tests import timeouts
from tests.conftest import ENV_AT_START
from tests.reports import TITLE_ROW_NOTE
from tests.templates import without_grant

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, **options: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in ENV_AT_START.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=f"{ROOT / 'layers/core/python'}:{ROOT}", JSON="1", CALLBACK_PORT="0", DEMO_TIMEOUT="300"
    )
    env.update(timeouts.GENEROUS)  # passed on to the functions: no test here is about timeouts
    env.update(options)
    done = subprocess.run(
        [sys.executable, "-m", "local.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr


def test_demo_accounts_for_every_sample_row_and_matches_the_ledger(tmp_path: Path) -> None:
    code, summary, stderr = run_demo(tmp_path)
    assert code == 0, stderr[-2000:]
    jobs = {job["kind"]: job for job in summary["jobs"]}
    assert set(jobs) == {"lost-repair", "carrier-audit"}
    for job in jobs.values():
        assert job["rows_read"] == job["rows_accepted"] + job["rows_rejected"] > 0
        assert job["status"] in ("completed", "completed_with_errors")
        assert (
            job["batches_total"] == job["batches_succeeded"] + job["batches_failed"] + job["batches_unknown"]
        )
    repair = jobs["lost-repair"]
    assert repair["rows_rejected"] > 0 and repair["batches_succeeded"] == repair["batches_total"] >= 1
    # every answered batch with its serial number and the whole answer envelope
    answers = repair["upstream_answers"]
    assert len(answers) == repair["batches_total"]
    assert all(
        a["serial_no"].startswith("SBX") and a["envelope"]["serialNo"] == a["serial_no"] for a in answers
    )
    assert summary["audits"]["passed"] >= 1 and summary["audits"]["rejected"] >= 1
    assert summary["audits"]["pending"] == 0
    ledger = summary["ledger"]
    assert (
        ledger["sandbox_accepted_records"]
        == repair["rows_accepted"]
        == ledger["records_in_succeeded_batches"]
    )
    assert ledger["match"] is True and ledger["idcodes_received_twice"] == 0
    assert summary["queues"] == {"work": 0, "dlq": 0}
    # every function ran as its own role, as SAM expands the template, and needed nothing more
    assert summary["iam"]["denials"] == []
    assert {c["function"] for c in summary["iam"]["calls"]} == {
        "SplitterFunction",
        "UploaderFunction",
        "CallbackFunction",
        "PollerFunction",
    }


def test_demo_stops_naming_the_function_action_and_resource_its_role_does_not_allow(tmp_path: Path) -> None:
    """The first carrier-audit file after a deploy, had the splitter's role no BatchGetItem."""
    template = without_grant(
        load_template(ROOT / "template.yaml"), "SplitterFunctionRole", "AuditsTable", "dynamodb:BatchGetItem"
    )
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    code, summary, stderr = run_demo(
        tmp_path, TEMPLATE=str(path), FILE=str(ROOT / "samples" / "carrier-audit" / "audits.csv")
    )
    assert code == 1
    denied = (
        "IAM denied: SplitterFunction may not dynamodb:BatchGetItem on"
        " arn:aws:dynamodb:us-east-1:123456789012:table/verifyfeed-local-AuditsTable"
    )
    assert denied in stderr
    assert (
        summary["problems"][0] == "stopped: a function's role does not allow a call it makes (template.yaml)"
    )
    assert summary["problems"][1].startswith(denied)
    assert [(d["function"], d["action"]) for d in summary["iam"]["denials"]] == [
        ("SplitterFunction", "dynamodb:BatchGetItem")
    ]


def test_demo_in_the_blackout_defers_everything_and_sends_nothing(tmp_path: Path) -> None:
    code, summary, stderr = run_demo(tmp_path, CLOCK_NOW="2026-12-27T01:00:00+08:00")
    assert code == 0, stderr[-2000:]
    [repair] = [job for job in summary["jobs"] if job["kind"] == "lost-repair"]
    assert repair["status"] == "deferred"
    assert repair["batches_deferred"] == repair["batches_total"] >= 1
    assert summary["ledger"]["sandbox_accepted_records"] == 0


def test_demo_of_a_seed_sheet_names_the_columns_it_did_not_use(tmp_path: Path) -> None:
    """A sheet as the customer prints it: a title row, 曾用手机号（选填）, columns we do not use."""
    seed = tmp_path / "失联名单.csv"
    seed.write_text(
        "2026年12月失联名单,,,,,\r\n"
        "序号,姓名,身份证号码,曾用手机号（选填）,授权码(合同编号),备注\r\n"
        "1,张　三,110105199805281748,13817275964,HT1,\r\n"
        "2,李四,110105199006176204,,HT2,vip\r\n",
        encoding="utf-8-sig",
    )
    code, summary, stderr = run_demo(tmp_path, FILE=str(seed))
    assert code == 0, stderr[-2000:]
    [job] = summary["jobs"]
    assert (job["kind"], job["status"], job["rows_accepted"]) == ("lost-repair", "completed", 2)
    assert job["ignored_columns"] == ["序号", "备注"]
    assert job["notes"] == [TITLE_ROW_NOTE]
