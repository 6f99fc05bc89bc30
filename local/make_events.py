"""Writes ``events/*.json``, one sample event per function, with the same builders the local runner uses.

    PYTHONPATH=layers/core/python:. python -m local.make_events

The output is deterministic (fixed ids and times) so regenerating changes nothing unless a builder did.
The ID and phone numbers hashed here are placeholders, not anyone's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.events import api_gateway_proxy_event, s3_put_event, s3_sequencer, scheduled_event, sqs_event
from verifyfeed.models.carrier_audit import AuditCallback
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.upstream.signing import sign_body

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
AT = datetime(2026, 11, 5, 8, 30, 0, 123000, tzinfo=UTC)

BUCKET = "verifyfeed-local-ingest-123456789012-us-east-1"  # as the local stack names it
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:verifyfeed-local-WorkQueue"
CALLBACK_PATH = "/callbacks/carrier-audit"
CALLBACK_SECRET = "local-callback-secret"  # noqa: S105 - the documented local default
API_ID = "local-api-id"
JOB_ID = "0f8b6c1e-3d2a-4c5b-9e7f-1a2b3c4d5e6f"

SPLITTER_KEY = "lost-repair/2026-11/客户 名单+1.csv"
# placeholders with valid check digits: 1990-01-01 and 1985-06-15, sequence numbers 001 and 009
FAKE_IDS = ("110105199001010010", "11010519850615009X")
FAKE_PHONE = "13800000000"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def splitter_event() -> dict[str, Any]:
    return s3_put_event(
        bucket=BUCKET,
        key=SPLITTER_KEY,
        size=2048,
        etag="9b2cf535f27731c974343645a3985328",
        version_id="3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
        sequencer=s3_sequencer(int(AT.timestamp() * 1e9)),
        event_time=AT,
        request_id="C3D13FE58DE4C810",
    )


def uploader_event() -> dict[str, Any]:
    message = LostRepairBatchMessage.model_validate(
        {
            "job_id": JOB_ID,
            "batch_id": f"{JOB_ID}#00001",
            "seq": 1,
            "records": [
                {
                    "name": "张三",
                    "idcode": sha256_hex(FAKE_IDS[0]),
                    "usedPhone": sha256_hex(FAKE_PHONE),
                    "authCode": "A0001",
                },
                {"name": "李四", "idcode": sha256_hex(FAKE_IDS[1]), "usedPhone": "", "authCode": "A0002"},
            ],
        }
    )
    body = message.model_dump_json(exclude_none=True)
    sent_ms = int(AT.timestamp() * 1000)
    received = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a/local/receipt/handle/00001==",
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_ms),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 2),
        },
    }
    return sqs_event([received], queue_arn=QUEUE_ARN)


def callback_body() -> bytes:
    payload = {
        "apiId": API_ID,
        "serviceName": "auditCarrierAudit",
        "id": 1,
        "status": 1,
        "remarks": "审核通过",
    }
    AuditCallback.model_validate(payload)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def callback_event() -> dict[str, Any]:
    body = callback_body()
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json;charset=UTF-8",
        "Host": "localapi01.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "Apache-HttpClient/4.5.13 (Java/1.8.0_372)",
        "X-Amzn-Trace-Id": "Root=1-6729d2a6-0a1b2c3d4e5f6a7b8c9d0e1f",
        "X-Forwarded-For": "203.0.113.10",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "sign": sign_body(body, CALLBACK_SECRET),
    }
    return api_gateway_proxy_event(
        "POST",
        CALLBACK_PATH,
        headers,
        body,
        stage="dev",
        source_ip="203.0.113.10",
        request_time=AT,
        request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    )


def poller_event() -> dict[str, Any]:
    return scheduled_event(
        AT.replace(microsecond=0),
        rule_name="verifyfeed-local-poll",
        event_id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    )


EVENTS = {
    "splitter": splitter_event,
    "uploader": uploader_event,
    "callback": callback_event,
    "poller": poller_event,
}


def render(name: str) -> str:
    return json.dumps(EVENTS[name](), ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    EVENTS_DIR.mkdir(exist_ok=True)
    for name in EVENTS:
        (EVENTS_DIR / f"{name}.json").write_text(render(name), encoding="utf-8")


if __name__ == "__main__":
    main()
