"""What the handlers tell CloudWatch: EMF metrics (names and dimensions the alarms and the dashboard
use), correlation ids, and logs without personal data. Real handlers, real events, moto + sandbox."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

import boto3
import pytest

from local.events import api_gateway_proxy_event, s3_put_event, scheduled_event, sqs_event
from local.lambda_context import new_context
from sandbox.server import SandboxHandle
from tests.integration.conftest import drain_queue, fake_id
from verifyfeed.clock import OffsetClock
from verifyfeed.config import get_settings
from verifyfeed.models.records import JobCounts
from verifyfeed.ports import WorkQueue
from verifyfeed.services import Services, build_services

pytestmark = pytest.mark.integration
SERVICE_DIMENSION = "service"


@pytest.fixture
def observability(handler_env: dict[str, str]) -> ModuleType:
    """Imported only once the handlers' environment is set: Powertools reads the service and the
    metrics namespace when the Logger and Metrics are created, as in Lambda."""
    from verifyfeed import observability

    return observability


@pytest.fixture
def live(handler_env: dict[str, str], sandbox: SandboxHandle) -> Services:
    return build_services(get_settings(), OffsetClock(datetime.fromisoformat(handler_env["CLOCK_NOW"])))


def emf(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents printed: one per flush (log_metrics) or single metric."""
    return [
        doc for line in stdout.splitlines() if line.startswith("{") and "_aws" in (doc := json.loads(line))
    ]


def values(docs: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every value of metric ``name`` emitted with exactly the dimensions ``service`` + ``dimensions``."""
    found: list[float] = []
    for doc in docs:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        if name not in {m["Name"] for m in directive["Metrics"]}:
            continue
        (dimension_set,) = directive["Dimensions"]
        if set(dimension_set) != {SERVICE_DIMENSION, *dimensions}:
            continue
        if all(doc.get(k) == v for k, v in dimensions.items()):
            value = doc[name]
            found += value if isinstance(value, list) else [value]
    return found


def drop(services: Services, key: str, header: list[str], rows: list[list[str]]) -> dict[str, Any]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode()
    s3 = boto3.client("s3")
    bucket = services.settings.ingest_bucket
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    return s3_put_event(bucket, key, len(data), head["ETag"].strip('"'), head["VersionId"], uuid.uuid4().hex)


def receive_all(queue_url: str) -> dict[str, Any]:
    sqs = boto3.client("sqs")
    received: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        if not got.get("Messages"):
            return sqs_event(received)
        received += got["Messages"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("botocore", "boto3", "urllib3", "werkzeug", "sandbox", "s3transfer")):
            return  # not our logs (and at DEBUG they print request bodies, which Lambda never enables)
        self.lines.append(
            record.getMessage() + " " + json.dumps(record.__dict__, default=str, ensure_ascii=False)
        )


@pytest.fixture
def logs(observability: ModuleType) -> Iterator[_Records]:
    """Every record our code logs, at any level: through the Powertools logger (which does not
    propagate) and through the root logger (child loggers created before the service was known)."""
    capture = _Records()
    loggers = [logging.getLogger(), logging.getLogger(observability.logger.name)]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for lg, level in saved:
            lg.removeHandler(capture)
            lg.setLevel(level)


# ---- metrics -----------------------------------------------------------------------------------------


def test_callback_rejections_are_counted_in_total_and_by_reason(
    live: Services, callback_handler: Any, capsys: pytest.CaptureFixture[str], observability: ModuleType
) -> None:
    capsys.readouterr()
    body = json.dumps({"apiId": "x", "serviceName": "auditCarrierAudit", "id": 1, "status": 1}).encode()
    event = api_gateway_proxy_event(
        "POST", "/callbacks/carrier-audit", {"Content-Type": "application/json", "sign": "00" * 32}, body
    )
    reply = callback_handler(event, new_context("callback", 10, 512))
    assert reply["statusCode"] == 401
    docs = emf(capsys.readouterr().out)
    service = observability.logger.service
    assert values(docs, "CallbacksRejected") == [1.0]  # what CallbackRejectionsAlarm watches
    assert values(docs, "CallbacksRejected", reason="bad_sign") == [1.0]
    assert all(doc[SERVICE_DIMENSION] == service for doc in docs)
    assert values(docs, "CallbacksAccepted") == []


def test_split_upload_and_poll_emit_their_metrics_with_correlation_ids(
    live: Services,
    sandbox: SandboxHandle,
    splitter_handler: Any,
    uploader_handler: Any,
    poller_handler: Any,
    capsys: pytest.CaptureFixture[str],
    logs: _Records,
    observability: ModuleType,
) -> None:
    drain_queue(live.settings.work_queue_url)
    people = [("张三丰", fake_id(5101), "13812345678"), ("欧阳娜娜", fake_id(5102), "13987654321")]
    rows = [[name, id_card, phone, f"OBS{i}"] for i, (name, id_card, phone) in enumerate(people)]
    rows.append(["李四", "1.10105E+17", "13711112222", "OBS9"])  # rejected
    key = f"lost-repair/observability-{uuid.uuid4().hex[:6]}.csv"
    capsys.readouterr()

    reply = splitter_handler(
        drop(live, key, ["姓名", "身份证号", "曾用手机号", "授权码"], rows),
        new_context("splitter", 900, 1024),
    )
    (job,) = reply["jobs"]
    assert observability.logger.get_correlation_id() == job["job_id"]
    docs = emf(capsys.readouterr().out)
    assert values(docs, "RowsAccepted") == [2.0] and values(docs, "RowsRejected") == [1.0]

    assert uploader_handler(receive_all(live.settings.work_queue_url), new_context("uploader", 120, 512)) == {
        "batchItemFailures": []
    }
    assert observability.logger.get_correlation_id() == job["job_id"]
    docs = emf(capsys.readouterr().out)
    assert values(docs, "BatchesUploaded") == [1.0]
    assert len(values(docs, "UpstreamLatency")) == 1

    result = poller_handler(scheduled_event(datetime.now().astimezone()), new_context("poller", 300, 512))
    docs = emf(capsys.readouterr().out)
    assert values(docs, "AuditsPending") == [float(result["audits_pending"])]
    assert values(docs, "PollerErrors") == [float(result["audit_errors"])]

    # nothing any of them logged names a person: no name, ID number or phone number in the clear
    text = "\n".join(logs.lines)
    assert job["job_id"] in text  # (the capture did see the logs)
    for name, id_card, phone in [*people, ("李四", "1.10105E+17", "13711112222")]:
        assert name not in text and id_card not in text and phone not in text


def test_two_runs_of_one_split_count_its_rows_once_and_reply_with_counts_only(
    live: Services, splitter_handler: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 24: the same S3 event reaches a second invocation while the first is releasing the
    file's batches; the second finds the job split but not released and releases it too. Its reply
    held the whole job (its key, its bucket) as counts, and both counted the file's rows. Now it
    replies with the job's counts, and only the run that marked the release first counts the rows."""
    queue_url = live.settings.work_queue_url
    drain_queue(queue_url)
    rows = [[name, fake_id(5301 + i), "", f"TWICE{i}"] for i, name in enumerate(["赵敏", "周芷若", "小昭"])]
    event = drop(
        live,
        f"lost-repair/twice-{uuid.uuid4().hex[:6]}.csv",
        ["姓名", "身份证号", "曾用手机号", "授权码"],
        rows,
    )
    function = sys.modules["verifyfeed_fn_splitter"].services  # the handler's own ports
    queue: WorkQueue = function.queue
    replies: list[dict[str, Any]] = []

    class SecondEventWhileReleasing:
        """The function's queue as it is; as the first run releases, the event reaches a second."""

        pending = True

        def send(self, body: str) -> None:
            queue.send(body)

        def send_all(self, bodies: Sequence[str]) -> None:
            if self.pending:
                self.pending = False
                replies.append(splitter_handler(event, new_context("splitter", 900, 1024)))
            queue.send_all(bodies)

    function.queue = SecondEventWhileReleasing()
    capsys.readouterr()
    try:
        first = splitter_handler(event, new_context("splitter", 900, 1024))
    finally:
        function.queue = queue
    docs = emf(capsys.readouterr().out)
    ((a,), (b,)) = first["jobs"], replies[0]["jobs"]
    assert (a["outcome"], b["outcome"], a["job_id"]) == ("split", "released", b["job_id"])
    assert set(b) == {"job_id", "outcome", *JobCounts.model_fields}  # no key, no bucket
    assert (a["rows_accepted"], b["rows_accepted"]) == (3, 3)
    assert values(docs, "RowsAccepted") == [3.0] and values(docs, "RowsRejected") == [0.0]
    assert [m["seq"] for m in drain_queue(queue_url) if m.get("job_id") == a["job_id"]] == [1, 1]


def test_carrier_audit_flow_logs_no_personal_data(
    live: Services,
    sandbox: SandboxHandle,
    splitter_handler: Any,
    uploader_handler: Any,
    logs: _Records,
) -> None:
    drain_queue(live.settings.work_queue_url)
    header = [
        "usage",
        "name",
        "idCard",
        "phone",
        "idCardFrontFilename",
        "idCardBackFilename",
        "carLicensePlate",
    ]
    header += ["drivingLicenseFilename", "attachmentFileUrls"]
    owner = ("慕容复", fake_id(5201), "13655556666")
    rows = [["2", owner[0], owner[1], owner[2], "f.jpg", "b.jpg", "京A5P201", "x.jpg", "a.pdf"]]
    key = f"carrier-audit/observability-{uuid.uuid4().hex[:6]}.csv"
    reply = splitter_handler(drop(live, key, header, rows), new_context("splitter", 900, 1024))
    assert reply["jobs"][0]["rows_accepted"] == 1
    assert uploader_handler(receive_all(live.settings.work_queue_url), new_context("uploader", 120, 512)) == {
        "batchItemFailures": []
    }
    text = "\n".join(logs.lines)
    assert "audit submitted" in text
    for value in owner:
        assert value not in text
