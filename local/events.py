"""Builders of real-shaped AWS events (``s3_put_event``, ``sqs_event``, ``api_gateway_proxy_event``,
``scheduled_event``), field by field as the AWS documentation samples show them. Each starts from
its function's sample in ``events/`` (what ``sam local invoke -e`` takes), so the fixed parts of a
shape are written once. Hand-written because no library builds them: Powertools' data classes only
read events, and SAM CLI's ``generate-event`` templates are not a library (nor a dependency: it
lives in its own venv).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from time import time_ns
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from local.lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION

SqsMessage = Mapping[str, Any]  # one entry of ``ReceiveMessage``'s ``Messages``
Headers = Mapping[str, str] | Sequence[tuple[str, str]]

SAMPLES = Path(__file__).resolve().parent.parent / "events"
_TEXT_TYPES = ("application/json", "application/x-www-form-urlencoded", "application/xml", "text/")


def sample(name: str) -> dict[str, Any]:
    """``events/<name>.json``: the sample event of the splitter, uploader, callback or poller."""
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def iso_millis(at: datetime) -> str:
    """``2026-11-05T08:09:10.123Z``: the timestamp format of S3 notifications."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def s3_event_key(key: str) -> str:
    """The object key as S3 writes it into a notification: URL-encoded (``+`` for a space, ``%XX`` for
    UTF-8 bytes), so a handler that forgets to ``unquote_plus`` the key fails locally as in AWS."""
    return quote_plus(key, safe="/")


def s3_put_event(
    bucket: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    sequencer: str,
    region: str = LOCAL_REGION,
    event_time: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An S3 ``ObjectCreated:Put`` notification."""
    at = event_time or datetime.now(UTC)
    request_id = request_id or secrets.token_hex(8).upper()
    event = sample("splitter")
    record = event["Records"][0]
    record.update(awsRegion=region, eventTime=iso_millis(at))
    record["responseElements"] = {
        "x-amz-request-id": request_id,
        "x-amz-id-2": base64.b64encode(hashlib.sha384(request_id.encode()).digest()).decode(),
    }
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    obj: dict[str, Any] = {"key": s3_event_key(key), "size": size, "eTag": etag.strip('"')}
    if version_id and version_id != "null":
        obj["versionId"] = version_id
    record["s3"]["object"] = {**obj, "sequencer": sequencer}
    return event


def s3_sequencer(at_ns: int | None = None) -> str:
    """A sequencer like S3's: upper-case hex that sorts in event order for one key."""
    return f"{at_ns if at_ns is not None else time_ns():018X}"


def queue_arn_from_url(queue_url: str, region: str = LOCAL_REGION) -> str:
    """``.../<account>/<name>`` (AWS or moto style) to ``arn:aws:sqs:<region>:<account>:<name>``."""
    parts = queue_url.rstrip("/").split("/")
    return f"arn:aws:sqs:{region}:{parts[-2]}:{parts[-1]}"


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for name, value in attributes.items():
        attr: dict[str, Any] = {}
        if "StringValue" in value:
            attr["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            attr["binaryValue"] = base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
        attr["stringListValues"] = list(value.get("StringListValues", []))
        attr["binaryListValues"] = [
            base64.b64encode(v).decode() if isinstance(v, bytes) else v
            for v in value.get("BinaryListValues", [])
        ]
        attr["dataType"] = value["DataType"]
        converted[name] = attr
    return converted


def sqs_event(
    messages: Sequence[SqsMessage],
    queue_arn: str = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:verifyfeed-work",
) -> dict[str, Any]:
    """What the SQS event source mapping hands Lambda for one batch of messages received with
    ``AttributeNames=["All"]``."""
    region = queue_arn.split(":")[3]
    records = []
    for message in messages:
        body = message["Body"]
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": body,
            "attributes": {k: str(v) for k, v in message.get("Attributes", {}).items()},
            "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
            "md5OfBody": message.get("MD5OfBody")
            or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update(eventSource="aws:sqs", eventSourceARN=queue_arn, awsRegion=region)
        records.append(record)
    return {"Records": records}


def _header_pairs(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else [(k, v) for k, v in headers]


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("+json") or any(media.startswith(t) for t in _TEXT_TYPES)


def api_gateway_proxy_event(
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
    stage: str = "local",
    resource: str | None = None,
    source_ip: str = "127.0.0.1",
    request_time: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy integration event. ``path`` may carry a query string.

    As with binary media types configured on the API (``*/*``), a body that is not UTF-8 or whose
    content type is not JSON/text is passed base64-encoded.
    """
    path_only, _, query = path.partition("?")
    pairs = _header_pairs(headers)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    content_type = next((v for k, v in pairs if k.lower() == "content-type"), "")

    body_out: str | None
    encoded = False
    if not body:
        body_out = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and _is_text(content_type):
            body_out = text
        else:
            body_out, encoded = base64.b64encode(body).decode(), True

    query_single: dict[str, str] | None = None
    query_multi: dict[str, list[str]] | None = None
    if query:
        query_single, query_multi = {}, {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)

    at = request_time or datetime.now(UTC)
    request_id = request_id or str(uuid.uuid4())
    derived = hashlib.sha256(request_id.encode()).digest()
    event = sample("callback")
    context = event["requestContext"]
    context["identity"].update(
        sourceIp=source_ip, userAgent=next((v for k, v in pairs if k.lower() == "user-agent"), None)
    )
    context.update(
        extendedRequestId=base64.b64encode(derived[:6]).decode(),
        httpMethod=method.upper(),
        path=f"/{stage}{path_only}",
        requestId=request_id,
        requestTime=at.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        requestTimeEpoch=int(at.timestamp() * 1000),
        resourceId=derived[6:9].hex(),
        resourcePath=resource or path_only,
        stage=stage,
    )
    event.update(
        resource=resource or path_only,
        path=path_only,
        httpMethod=method.upper(),
        headers=single,
        multiValueHeaders=multi,
        queryStringParameters=query_single,
        multiValueQueryStringParameters=query_multi,
        body=body_out,
        isBase64Encoded=encoded,
    )
    return event


def scheduled_event(
    time: datetime | None = None,
    rule_name: str = "verifyfeed-local-poll",
    region: str = LOCAL_REGION,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event``."""
    at = (time or datetime.now(UTC)).astimezone(UTC)
    return {
        **sample("poller"),
        "id": event_id or str(uuid.uuid4()),
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:rule/{rule_name}"],
    }
