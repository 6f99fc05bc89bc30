"""local.demo's output: the table and the JSON name the columns a file's header did not use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local import demo
from local.runner import JobView, Snapshot


def snapshot() -> Snapshot:
    jobs = [
        JobView(file="seed.csv", key="lost-repair/seed.csv", kind="lost-repair", status="completed"),
        JobView(file="bad.csv", key="lost-repair/bad.csv", kind="lost-repair", status="rejected", reason="r"),
    ]
    return Snapshot(jobs=jobs, audits={}, ledger=None, queues={}, invocations={}, in_flight=0)


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
