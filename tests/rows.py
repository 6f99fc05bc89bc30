"""Test data shared by the unit and the integration tests: ID numbers that belong to nobody,
carrier-audit rows, and carrier audits as a reserved row stores them. The header is the seed's
field list written out, on purpose not derived from the product's models (the tests check the
models against it)."""

from __future__ import annotations

import uuid
from typing import Any

from verifyfeed.models.records import Audit, AuditStatus


def fake_id(n: int) -> str:
    """A valid 18-digit ID number (GB 11643 check digit) that belongs to nobody; a different one for
    every n below 1,680,000 (tests draw from shared counters: a repeat would be a duplicate)."""
    year, day = 1940 + (n // 1000) % 60, 1 + (n // 60_000) % 28
    body = f"110105{year:04d}01{day:02d}{n % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


AUDIT_HEADER = [
    "usage", "name", "idCard", "phone", "idCardFrontFilename", "idCardBackFilename", "driverName",
    "driverIdCard", "driverIdCardFrontFilename", "driverIdCardBackFilename", "carLicensePlate",
    "drivingLicenseFilename", "attachmentFileUrls",
]  # fmt: skip


def audit_row(usage: str, n: int, **over: str) -> list[str]:
    row = dict.fromkeys(AUDIT_HEADER, "")
    row.update(
        usage=usage, name="张三", idCard=fake_id(n), phone=f"139{n:08d}", attachmentFileUrls="a.jpg,b.jpg"
    )
    if usage == "1":
        row.update(driverName="李四", driverIdCard=fake_id(n + 1))
    else:
        row.update(
            carLicensePlate="京A12345" if usage == "2" else "粤BD12345", drivingLicenseFilename="dl.jpg"
        )
    row.update(over)
    return [row[h] for h in AUDIT_HEADER]


def an_audit(**over: Any) -> Audit:
    """A carrier audit as a file row reserves it (masked values, a stand-in for the keyed digest),
    under a fresh key and job; ``over`` replaces any field."""
    fields: dict[str, Any] = {
        "audit_key": uuid.uuid4().hex,
        "job_id": "job-" + uuid.uuid4().hex[:8],
        "row": 2,
        "usage": "2",
        "owner_name_masked": "张*",
        "id_card_masked": "**************002X",
        "id_card_digest": "0" * 64,
        "phone_masked": "*******5678",
        "status": AuditStatus.SUBMITTING,
    }
    return Audit(**{**fields, **over})
