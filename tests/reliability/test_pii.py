"""No plaintext ID or phone number, nor a bare SHA-256 of one, in logs, DynamoDB items or reports.

A workload that touches every path that logs or stores something runs through the four handlers
while every log record is captured (what Powertools wrote, and every attribute of every record):
hostile lost-repair rows (IDs full-width, lower-case x, 15-digit, with zero-width characters, in
the wrong column; phones as authCodes), upstream faults (retries, a lost answer), carrier audits
(whose messages carry the plaintext upstream needs), signed and forged callbacks, the poller.
Then the logs, every item of every table and every object under reports/ and claims/ are scanned
for every plaintext ID and phone number the test data used, and for anything that looks like one;
the logs, the tables and reports/ also for the bare SHA-256 of each (an ID number upper-cased, a
phone, and the audits' identities): what we store is keyed (verifyfeed.pii.Keyed). Only claims/
hold bare digests, the wire format, and only for batches an operator may re-drive.
Each scan is checked first on a planted value, so a scan that sees nothing cannot pass by accident.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import boto3
import pytest

from local.events import api_gateway_proxy_event, scheduled_event
from local.lambda_context import new_context
from sandbox.server import SandboxHandle
from tests.integration.conftest import API_ID, CALLBACK_SECRET, IDENTITY_PEPPER, drain_queue
from tests.reliability.support import (
    PII,
    bare_digests,
    capture_logs,
    cn_name,
    drop,
    find_bare_digests,
    find_pii,
    legacy_id,
    mobile,
    person_id,
    pump_uploader,
    repair_row,
    scan_objects,
    scan_tables,
    settled,
)
from tests.reliability.test_hostile_files import AUDIT_HEADER, csv_bytes
from verifyfeed.models.records import AuditStatus, BatchStatus
from verifyfeed.pii import keyed_digest
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.services import Services
from verifyfeed.upstream.signing import sign_body

pytestmark = pytest.mark.integration
BASE = 900_000
NAMED = "张三丰名单"  # file names carry people's names: logs show the job id, the key masked


def wide(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def bad_check_digit(pid: str) -> str:
    return pid[:-1] + ("0" if pid[-1] != "0" else "1")


def hostile_repair_file() -> bytes:
    rows = [repair_row(BASE + i) for i in range(8)]
    rows.append(["全角", wide(person_id(BASE + 20)), wide(mobile(BASE + 20)), "W1"])
    rows.append(["小写", person_id(BASE + 21).lower(), mobile(BASE + 21), "W2"])
    rows.append(["旧号", legacy_id(BASE + 22), "", "W3"])
    rows.append(["零宽", person_id(BASE + 23)[:5] + "\u200b" + person_id(BASE + 23)[5:], "", "W4"])
    rows.append(["错列", "W5", mobile(BASE + 24), person_id(BASE + 24)])  # ID in the authCode column
    rows.append(["号当码", "123", "", mobile(BASE + 25)])  # a phone as authCode, ID invalid
    rows.append(["坏号", bad_check_digit(person_id(BASE + 26)), mobile(BASE + 26), "W7"])
    rows.append(["座机", person_id(BASE + 27), "010" + mobile(BASE + 27)[3:], "W8"])
    rows.append([cn_name(BASE), person_id(BASE), "", "W9"])  # duplicate of the first row
    rows.append(["空字\x00符", person_id(BASE + 28), mobile(BASE + 28), "W10"])
    return csv_bytes(rows)


AUDIT_ROWS = [BASE + 40 + i for i in range(4)]


def audit_identities() -> dict[str, str]:
    """The bare SHA-256 of each audit's identity (usage, ID number, plate) → its ID number: what
    the audit key was before it was keyed."""
    return {sha256_hex(f"2\n{person_id(n)}\n粤B{n % 100000:05d}"): person_id(n) for n in AUDIT_ROWS}


def audit_file() -> bytes:
    def row(n: int, **over: str) -> list[str]:
        values = {
            "usage": "2",
            "name": "李四",
            "idCard": person_id(n),
            "phone": mobile(n),
            "carLicensePlate": f"粤B{n % 100000:05d}",
            "drivingLicenseFilename": "dl.jpg",
            "attachmentFileUrls": "a.jpg" if n % 2 else "reject.jpg",
        }
        values.update(over)
        return [values[h] for h in AUDIT_HEADER]

    rows = [row(n) for n in AUDIT_ROWS]
    rows.append(row(BASE + 50, phone="021" + mobile(BASE + 50)[3:]))  # landline: rejected
    rows.append(row(BASE + 51, idCard=bad_check_digit(person_id(BASE + 51))))
    return csv_bytes(rows, header=AUDIT_HEADER)


def callback(handler: Any, payload: dict[str, Any], secret: str = CALLBACK_SECRET) -> int:
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    event = api_gateway_proxy_event(
        "POST",
        "/callbacks/carrier-audit",
        {"sign": sign_body(raw, secret), "Content-Type": "application/json"},
        raw,
    )
    return int(handler(event, new_context("callback", 10, 512))["statusCode"])


def test_no_plaintext_id_or_phone_in_logs_tables_or_reports(
    services: Services,
    sandbox: SandboxHandle,
    splitter_handler: Any,
    uploader_handler: Any,
    callback_handler: Any,
    poller_handler: Any,
    stack: Any,
) -> None:
    bucket = services.settings.ingest_bucket
    queue = services.settings.work_queue_url
    drain_queue(queue)
    planted_id, planted_phone = person_id(BASE + 99), mobile(BASE + 99)

    def pump(job_id: str) -> None:
        pump_uploader(uploader_handler, queue, jobs=[job_id], done=settled(services, job_id))

    with capture_logs() as logs:
        # lost repair: hostile rows, then upstream faults on the way
        key = f"lost-repair/{NAMED}-pii-{uuid.uuid4().hex[:6]}.csv"
        reply = splitter_handler(drop(bucket, key, hostile_repair_file()), new_context("splitter", 900, 1024))
        assert reply["jobs"][0]["rows_accepted"] == 12 and reply["jobs"][0]["rows_rejected"] == 6
        sandbox.set_faults([{"endpoint": "lost_repair", "status_code": 429, "count": 1}])
        pump(reply["jobs"][0]["job_id"])
        # a file refused as a whole: its first row is data, not a header
        refused = csv_bytes([repair_row(BASE + 30)], header=None)
        splitter_handler(
            drop(bucket, f"lost-repair/{NAMED}-pii-nohdr-{uuid.uuid4().hex[:6]}.csv", refused),
            new_context("splitter", 900, 1024),
        )
        # another batch whose answer is lost after upstream accepted it
        again = csv_bytes([repair_row(BASE + 31), repair_row(BASE + 32)])
        reply = splitter_handler(
            drop(bucket, f"lost-repair/{NAMED}-pii-lost-{uuid.uuid4().hex[:6]}.csv", again),
            new_context("splitter", 900, 1024),
        )
        sandbox.set_faults([{"endpoint": "lost_repair", "reset": True, "phase": "after", "count": 1}])
        pump(reply["jobs"][0]["job_id"])

        # carrier audits: plaintext travels to upstream, never into our logs or tables
        sandbox.set_faults([{"endpoint": "audit_add", "status_code": 429, "count": 1}])
        key = f"carrier-audit/{NAMED}-pii-{uuid.uuid4().hex[:6]}.csv"
        reply = splitter_handler(drop(bucket, key, audit_file()), new_context("splitter", 900, 1024))
        assert reply["jobs"][0]["rows_accepted"] == 4
        pump(reply["jobs"][0]["job_id"])
        pending = [a for a in services.audits.scan_all() if a.job_id == reply["jobs"][0]["job_id"]]
        assert len(pending) == 4 and all(a.status == AuditStatus.PENDING for a in pending)
        for n, audit in enumerate(pending):
            body = {
                "apiId": API_ID,
                "serviceName": "auditCarrierAudit",
                "id": audit.record_id,
                "status": 1 + n % 2,
                "remarks": f"核验 {planted_id[:3]}",
            }
            assert callback(callback_handler, {**body, "status": 3}) == 400
            assert callback(callback_handler, body, secret="forged") == 401
            assert callback(callback_handler, body) == 200
        poller_handler(scheduled_event(), new_context("poller", 300, 512))

        # the positive control: a leak would be seen
        logging.getLogger("verifyfeed.reliability").warning(
            "control", extra={"x": [planted_id, planted_phone]}
        )
        logging.getLogger("verifyfeed.reliability").warning(
            "control digest", extra={"d": "digest " + sha256_hex(planted_id.upper()).upper()}
        )

    assert NAMED not in logs.all_text(), "a file name (an S3 key) in the logs"
    assert "lost-repair/*.csv" in logs.all_text(), "the splitter logs the key, masked"
    found = find_pii(logs.all_text())
    assert found == sorted([planted_id, planted_phone]), f"plaintext in the logs: {found}"
    ours = sum(
        n for name, n in logs.loggers.items() if name not in ("werkzeug", "botocore", "urllib3", "sandbox")
    )
    assert ours >= 10 and logs.written.getvalue().count('"level"') >= 10  # the scan saw our logs
    bare = {**bare_digests(PII), **audit_identities()}

    def digests(text: str) -> list[str]:
        return find_bare_digests(text, bare)

    found = digests(logs.all_text())
    assert found == [planted_id], f"bare SHA-256 of an ID or phone number in the logs: {found}"
    print(
        f"log records scanned: {len(logs.texts)}; Powertools lines: {logs.written.getvalue().count(chr(10))};"
        f" bare digests looked for: {len(bare)}"
    )

    # every item of every table
    tables = [
        services.settings.jobs_table,
        services.settings.audits_table,
        services.settings.idempotency_table,
    ]
    db = boto3.client("dynamodb")
    control = {"pk": {"S": "CONTROL"}, "sk": {"S": "CONTROL"}, "note": {"S": f"phone {planted_phone}"}}
    digest_control = {"pk": {"S": "CONTROL"}, "sk": {"S": "DIGEST"}, "d": {"S": sha256_hex(planted_phone)}}
    db.put_item(TableName=services.settings.jobs_table, Item=control)
    db.put_item(TableName=services.settings.jobs_table, Item=digest_control)
    try:
        scanned, leaks = scan_tables(tables)
        _, digest_leaks = scan_tables(tables, digests)
    finally:
        db.delete_item(
            TableName=services.settings.jobs_table,
            Key={"pk": digest_control["pk"], "sk": digest_control["sk"]},
        )
        db.delete_item(TableName=services.settings.jobs_table, Key={"pk": control["pk"], "sk": control["sk"]})
    assert leaks == [(services.settings.jobs_table, planted_phone)], f"plaintext in DynamoDB: {leaks}"
    assert digest_leaks == [(services.settings.jobs_table, planted_phone)], f"bare digests: {digest_leaks}"
    # the audits are there, keyed: the audit key and id_card_digest under the stack's pepper
    assert {a.id_card_digest for a in services.audits.scan_all() if a.job_id == pending[0].job_id} == {
        keyed_digest(person_id(n), IDENTITY_PEPPER.encode()) for n in AUDIT_ROWS
    }
    assert scanned >= 15  # 4 jobs, their batches, 4 audits, idempotency records at least

    # every report and claim-check object
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="reports/control.txt", Body=planted_id.encode())
    s3.put_object(Bucket=bucket, Key="reports/control-digest.txt", Body=sha256_hex(planted_phone).encode())
    try:
        objects, leaks = scan_objects(bucket, ["reports/", "claims/"])
        _, digest_leaks = scan_objects(bucket, ["reports/"], digests)
    finally:
        s3.delete_object(Bucket=bucket, Key="reports/control.txt")
        s3.delete_object(Bucket=bucket, Key="reports/control-digest.txt")
    assert leaks == [("reports/control.txt", planted_id)], f"plaintext in reports: {leaks}"
    assert digest_leaks == [("reports/control-digest.txt", planted_phone)], f"bare digests: {digest_leaks}"
    assert objects >= 6
    # claims/ hold the wire's bare digests: only for batches an operator may still re-drive
    claim_checks = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="claims/")
        for o in page.get("Contents", [])
    ]
    assert claim_checks, "the batch whose answer was lost keeps its claim check"
    for check in claim_checks:
        job_id, name = check.removeprefix("claims/").split("/")  # <seq>.json, or <seq>.r<run>.json
        batch = services.jobs.get_batch(job_id, int(name.split(".")[0]))
        assert batch is not None and batch.status != BatchStatus.SUCCEEDED, f"{check}: batch succeeded"
    print(f"DynamoDB items scanned: {scanned}; S3 objects scanned: {objects}; test identities: {len(PII)}")


def test_an_id_number_as_a_callback_field_name_is_never_logged(callback_handler: Any) -> None:
    """A signed body may name its extra fields with anything: the callback logs how many, not which."""
    as_names = [person_id(BASE + 60), mobile(BASE + 60)]  # an 18-digit ID number, a phone number
    planted = person_id(BASE + 61)
    body = {"apiId": API_ID, "serviceName": "auditCarrierAudit", "id": 4_999_999, "status": 1}
    with capture_logs() as logs:
        assert callback(callback_handler, {**body, **dict.fromkeys(as_names, "1")}) == 404  # unknown record
        logging.getLogger("verifyfeed.reliability").warning("control", extra={"x": planted})

    [ignored] = [t for t in logs.texts if "callback fields ignored" in t]
    assert '"ignored_field_count": 2' in ignored
    assert find_pii(logs.all_text()) == [planted], "an ID or phone number from a field name in the logs"


def test_the_scanner_finds_every_form_of_a_registered_number() -> None:
    pid, phone = person_id(BASE + 98), mobile(BASE + 98)
    assert find_pii(f"id={pid}") == [pid]
    assert find_pii(f"x{pid.lower()}y") == [pid]
    assert find_pii(wide(pid)) == [pid]
    assert find_pii(f"手机{phone}号") == [phone]
    assert find_pii(f"{pid[:3]}*************{pid[-2:]} {phone[:3]}******{phone[-2:]}") == []
    assert find_pii(f"{'*' * 14}{pid[-4:]} {'*' * 7}{phone[-4:]}") == []  # today's masks
    unregistered = "11010519491231002X"  # a checksum-valid ID nobody registered: caught anyway
    assert find_pii(f'"{unregistered}"', known=()) == [unregistered]
    assert find_pii("serial SBX20261125100000ABCDEF digest " + "a1" * 32, known=()) == []
    assert find_pii(f'"UpstreamLatency": [49.2951{phone}, 3.0{pid}]') == []  # fractions, not numbers
    assert find_pii(f"tel.{phone}") == [phone]


def test_the_digest_scanner_finds_a_bare_digest_in_any_case_and_never_a_keyed_one() -> None:
    pid, phone = person_id(BASE + 97), mobile(BASE + 97)
    known = bare_digests([pid.lower(), phone])  # registered upper-cased, as the wire digests it
    assert find_bare_digests(f'"idcode":"{sha256_hex(pid.upper())}"', known) == [pid.lower()]
    assert find_bare_digests("AUDIT#" + sha256_hex(phone).upper(), known) == [phone]
    assert find_bare_digests("ab" + sha256_hex(phone) + "cd", known) == [phone]  # inside a longer run
    assert (
        find_bare_digests(keyed_digest(pid.upper(), b"pepper") + keyed_digest(phone, b"pepper"), known) == []
    )
    assert find_bare_digests(sha256_hex(pid)[:63], known) == []
