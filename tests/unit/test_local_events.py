"""The local event builders produce the shapes AWS documents, and events/*.json stay consistent."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from local.events import (
    api_gateway_proxy_event,
    queue_arn_from_url,
    s3_event_key,
    s3_put_event,
    scheduled_event,
    sqs_event,
)
from local.lambda_context import new_context
from local.resources import FunctionSpec
from local.runtime import InvocationError, LocalFunction, batch_item_failures
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.upstream.signing import verify_sign

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
KEY = "lost-repair/2026-11/客户 名单+1.csv"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


# ---- S3 --------------------------------------------------------------------------------------------


def test_s3_key_is_encoded_like_s3_notifications():
    encoded = s3_event_key(KEY)
    assert encoded == "lost-repair/2026-11/%E5%AE%A2%E6%88%B7+%E5%90%8D%E5%8D%95%2B1.csv"
    assert unquote_plus(encoded) == KEY


def test_s3_put_event_shape():
    at = datetime(2026, 11, 5, 8, 30, 0, 123000, tzinfo=UTC)
    event = s3_put_event("bkt", KEY, 2048, '"abc123"', "v1", "0055AED6DCD90281E5", event_time=at)
    (record,) = event["Records"]
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == "us-east-1"
    assert record["eventTime"] == "2026-11-05T08:30:00.123Z"
    assert record["s3"]["s3SchemaVersion"] == "1.0"
    assert record["s3"]["bucket"] == {
        "name": "bkt",
        "ownerIdentity": {"principalId": record["s3"]["bucket"]["ownerIdentity"]["principalId"]},
        "arn": "arn:aws:s3:::bkt",
    }
    obj = record["s3"]["object"]
    assert obj == {
        "key": s3_event_key(KEY),
        "size": 2048,
        "eTag": "abc123",  # no quotes in notifications
        "versionId": "v1",
        "sequencer": "0055AED6DCD90281E5",
    }
    assert set(record["responseElements"]) == {"x-amz-request-id", "x-amz-id-2"}


def test_s3_put_event_without_versioning_has_no_version_id():
    event = s3_put_event("bkt", "a b.csv", 1, "e", None, "01")
    assert "versionId" not in event["Records"][0]["s3"]["object"]
    assert event["Records"][0]["s3"]["object"]["key"] == "a+b.csv"


# ---- SQS -------------------------------------------------------------------------------------------


def received_message(body: str = '{"x": 1}') -> dict:
    """What ReceiveMessage(AttributeNames=["All"], MessageAttributeNames=["All"]) returns for one message."""
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Body": body,
        "Attributes": {
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000100",
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1700000000000",
        },
        "MD5OfMessageAttributes": "d41d8cd98f00b204e9800998ecf8427e",
        "MessageAttributes": {
            "kind": {"StringValue": "lost_repair_batch", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
        },
    }


def test_sqs_event_shape():
    arn = "arn:aws:sqs:us-east-1:123456789012:work"
    event = sqs_event([received_message()], queue_arn=arn)
    (record,) = event["Records"]
    assert record["messageId"] == "m-1"
    assert record["receiptHandle"] == "rh-1"
    assert record["body"] == '{"x": 1}'
    assert record["attributes"]["ApproximateReceiveCount"] == "3"
    assert record["attributes"]["SentTimestamp"] == "1700000000000"
    assert record["attributes"]["ApproximateFirstReceiveTimestamp"] == "1700000000100"
    assert record["md5OfBody"] == hashlib.md5(b'{"x": 1}').hexdigest()
    assert record["md5OfMessageAttributes"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "lost_repair_batch",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == base64.b64encode(b"\x00\x01").decode()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"


def test_queue_arn_from_url():
    assert (
        queue_arn_from_url("http://127.0.0.1:5000/123456789012/q1") == "arn:aws:sqs:us-east-1:123456789012:q1"
    )
    assert (
        queue_arn_from_url("https://sqs.eu-west-1.amazonaws.com/111122223333/q2", "eu-west-1")
        == "arn:aws:sqs:eu-west-1:111122223333:q2"
    )


def test_partial_batch_response_rules():
    ids = {"a", "b"}
    assert batch_item_failures(None, ids) == set()
    assert batch_item_failures({}, ids) == set()
    assert batch_item_failures({"batchItemFailures": []}, ids) == set()
    assert batch_item_failures({"batchItemFailures": None}, ids) == set()
    assert batch_item_failures({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    for bad in (
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifier": "zzz"}]},
        {"batchItemFailures": [{"messageId": "a"}]},
        {"batchItemFailures": "a"},
        "not json",
    ):
        with pytest.raises(InvocationError):
            batch_item_failures(bad, ids)


# ---- API Gateway -----------------------------------------------------------------------------------


def test_api_gateway_json_body_is_text():
    body = '{"remarks":"审核通过"}'.encode()
    headers = [
        ("Content-Type", "application/json;charset=UTF-8"),
        ("sign", "abc"),
        ("X-Multi", "1"),
        ("X-Multi", "2"),
    ]
    event = api_gateway_proxy_event("POST", "/callbacks/carrier-audit", headers, body, stage="dev")
    assert event["resource"] == "/callbacks/carrier-audit"
    assert event["path"] == "/callbacks/carrier-audit"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["sign"] == "abc"
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["isBase64Encoded"] is False
    assert event["body"] == body.decode()
    ctx = event["requestContext"]
    assert ctx["stage"] == "dev"
    assert ctx["httpMethod"] == "POST"
    assert ctx["resourcePath"] == "/callbacks/carrier-audit"
    assert ctx["path"] == "/dev/callbacks/carrier-audit"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["requestId"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", b"plain ascii"),
        ("application/json", b"\xff\xfe not utf-8"),
        ("", b"no content type"),
    ],
)
def test_api_gateway_binary_body_is_base64(content_type, body):
    headers = {"Content-Type": content_type} if content_type else {}
    event = api_gateway_proxy_event("POST", "/x", headers, body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_api_gateway_query_string_and_empty_body():
    event = api_gateway_proxy_event("GET", "/x?a=1&a=2&b=", {}, b"")
    assert event["path"] == "/x"
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


# ---- EventBridge -----------------------------------------------------------------------------------


def test_scheduled_event_shape():
    event = scheduled_event(datetime(2026, 11, 5, 8, 30, tzinfo=UTC), rule_name="poll")
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-11-05T08:30:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/poll"]
    assert event["detail"] == {}
    assert event["version"] == "0"


# ---- Lambda context --------------------------------------------------------------------------------


class ManualMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lambda_context_counts_down_from_the_timeout():
    tick = ManualMonotonic()
    first = new_context("fn", timeout_s=2, memory_mb=256, monotonic=tick)
    second = new_context("fn", timeout_s=2, memory_mb=256, monotonic=tick)
    assert first.aws_request_id != second.aws_request_id
    assert first.memory_limit_in_mb == 256
    assert first.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert first.log_group_name == "/aws/lambda/fn"
    assert first.get_remaining_time_in_millis() == 2000
    tick.now += 0.25
    assert first.get_remaining_time_in_millis() == 1750
    assert not first.timed_out()
    tick.now += 1.75
    assert first.get_remaining_time_in_millis() == 0 and first.timed_out()


def test_lambda_context_uses_the_real_clock_by_default():
    context = new_context("fn", timeout_s=2, memory_mb=256)
    assert 0 < context.get_remaining_time_in_millis() <= 2000


# ---- events/*.json ---------------------------------------------------------------------------------


def rebuilt(name: str) -> dict:
    """The sample rebuilt by its builder from the sample's own ids, times and payload."""
    event = load_event(name)
    if name == "splitter":
        (record,) = event["Records"]
        obj = record["s3"]["object"]
        return s3_put_event(
            record["s3"]["bucket"]["name"],
            unquote_plus(obj["key"]),
            obj["size"],
            obj["eTag"],
            obj.get("versionId"),
            obj["sequencer"],
            event_time=datetime.fromisoformat(record["eventTime"]),
            request_id=record["responseElements"]["x-amz-request-id"],
        )
    if name == "uploader":
        (record,) = event["Records"]
        message = {"MessageId": record["messageId"], "ReceiptHandle": record["receiptHandle"]}
        message |= {"Body": record["body"], "Attributes": record["attributes"]}
        return sqs_event([message], queue_arn=record["eventSourceARN"])
    if name == "callback":
        context = event["requestContext"]
        return api_gateway_proxy_event(
            event["httpMethod"],
            event["path"],
            event["headers"],
            event["body"].encode(),
            stage=context["stage"],
            source_ip=context["identity"]["sourceIp"],
            request_time=datetime.fromtimestamp(context["requestTimeEpoch"] / 1000, UTC),
            request_id=context["requestId"],
        )
    rule = event["resources"][0].rsplit("/", 1)[-1]
    return scheduled_event(datetime.fromisoformat(event["time"]), rule_name=rule, event_id=event["id"])


@pytest.mark.parametrize("name", ["splitter", "uploader", "callback", "poller"])
def test_event_files_are_what_the_builders_make(name):
    assert rebuilt(name) == load_event(name)


def test_splitter_event_key_decodes_to_the_object_key():
    obj = load_event("splitter")["Records"][0]["s3"]["object"]
    assert "+" in obj["key"] and "%E5%AE%A2" in obj["key"] and "%2B1.csv" in obj["key"]
    assert unquote_plus(obj["key"]) == KEY


def test_uploader_event_carries_a_valid_batch_message():
    (record,) = load_event("uploader")["Records"]
    message = LostRepairBatchMessage.model_validate_json(record["body"])
    assert message.batch_id == f"{message.job_id}#00001"
    assert message.seq == 1
    assert message.records and all(len(r.idcode) == 64 for r in message.records)
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


def test_callback_event_sign_verifies():
    event = load_event("callback")
    assert event["isBase64Encoded"] is False
    body = event["body"].encode("utf-8")
    assert json.loads(body) == {
        "apiId": "local-api-id",
        "serviceName": "auditCarrierAudit",
        "id": 1,
        "status": 1,
        "remarks": "审核通过",
    }
    assert verify_sign(body, event["headers"]["sign"], ["local-callback-secret"])
    assert not verify_sign(body + b" ", event["headers"]["sign"], ["local-callback-secret"])


def test_poller_event_is_a_scheduled_event():
    event = load_event("poller")
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"


# ---- samples ---------------------------------------------------------------------------------------


def test_samples_are_what_the_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples" / "make_samples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for relative in ("lost-repair/customers.csv", "carrier-audit/audits.csv"):
        assert (tmp_path / relative).read_bytes() == (ROOT / "samples" / relative).read_bytes(), relative


def test_lost_repair_sample_has_mostly_valid_ids():
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    with (ROOT / "samples" / "lost-repair" / "customers.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [row["身份证号"].upper() for row in rows]
    valid = [
        i
        for i in ids
        if len(i) == 18
        and i[:17].isdigit()
        and "10X98765432"[sum(int(d) * w for d, w in zip(i[:17], weights, strict=True)) % 11] == i[17]
    ]
    assert 35 <= len(rows) <= 45
    assert len(valid) >= len(rows) * 3 // 4


# ---- the local Lambda host -------------------------------------------------------------------------


def function_spec(path: Path, timeout_s: int) -> FunctionSpec:
    return FunctionSpec(
        logical_id="Fn",
        code_uri=str(path.parent),
        handler="app.lambda_handler",
        handler_path=str(path),
        handler_function="lambda_handler",
        runtime="python3.13",
        timeout_s=timeout_s,
        memory_mb=256,
        ephemeral_storage_mb=512,
        env={},
        events=(),
    )


HANDLER = """
import threading
BUSY = []
TOGETHER = threading.Barrier(3, timeout=60)  # per environment: shared only if environments are

def lambda_handler(event, context):
    BUSY.append(1)
    if event.get("together"):
        event["together"].wait()  # every invocation is inside a handler at once
    if event.get("clock"):
        event["clock"].now += event["spend_s"]  # the work takes this long, on the injected clock
    busy = len(BUSY)
    BUSY.pop()
    return {"busy": busy, "module": __name__, "remaining": context.get_remaining_time_in_millis()}
"""


def test_concurrent_invocations_run_in_separate_environments(tmp_path):
    app = tmp_path / "fn" / "app.py"
    app.parent.mkdir()
    app.write_text(HANDLER)
    tick = ManualMonotonic()
    fn = LocalFunction("Fn", "fn", "local-Fn", app, function_spec(app, timeout_s=5), monotonic=tick)
    fn.warm_up()
    together = threading.Barrier(3, timeout=60)  # a shared environment would never get 3 in at once
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(fn.invoke, [{"together": together}] * 3))
    assert [r["busy"] for r in results] == [1, 1, 1]  # module state is per environment
    assert len({r["module"] for r in results}) == 3
    assert [r["remaining"] for r in results] == [5000] * 3
    assert fn.stats.invocations == 3 and fn.stats.errors == 0


def test_an_invocation_past_its_timeout_fails(tmp_path):
    app = tmp_path / "fn" / "app.py"
    app.parent.mkdir()
    app.write_text(HANDLER)
    tick = ManualMonotonic()
    fn = LocalFunction("Fn", "fn", "local-Fn", app, function_spec(app, timeout_s=1), monotonic=tick)
    assert fn.invoke({"clock": tick, "spend_s": 0.75})["remaining"] == 250
    with pytest.raises(InvocationError, match="timed out"):
        fn.invoke({"clock": tick, "spend_s": 1.25})
    assert fn.stats.timeouts == 1 and fn.stats.invocations == 2


def test_the_local_on_failure_record_is_lambdas() -> None:
    from local.runtime import failure_record

    event = {"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "lost-repair/a.csv"}}}]}
    record = failure_record(
        "arn:aws:lambda:us-east-1:123456789012:function:s", event, RuntimeError("boom"), 3
    )
    assert record["requestPayload"] == event
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"] == {"errorType": "RuntimeError", "errorMessage": "boom"}
    assert record["timestamp"].endswith("Z")
