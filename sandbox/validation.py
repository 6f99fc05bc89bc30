"""The upstream's own checks, written independently of ``verifyfeed.rules`` on purpose.

A stand-in that reused our validation could never catch our bugs, so these functions read the
contracts (shared/spec/*.md) afresh. Each returns ``None`` when the input is valid, otherwise a
short English reason naming the field (and, for batches, the item index). Reasons never quote
field values: they end up in replies and logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_BATCH = 1000
MAX_NAME = 30
MAX_FILENAME = 255
MAX_ATTACHMENTS = 9
MAX_PLATE = 20

_HEX64 = re.compile(r"[0-9a-f]{64}")
_AUTH_CODE = re.compile(r"[A-Za-z0-9]{1,16}")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_ID_BODY = re.compile(r"[0-9]{17}[0-9X]")
# CJK unified ideographs (basic block, extension A, extensions B-F and G-H) plus the middle dot.
_IDEOGRAPH = "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002ebef\U00030000-\U0003234f"
_CHINESE_NAME = re.compile(f"[{_IDEOGRAPH}\u00b7]{{1,20}}")
_HAS_IDEOGRAPH = re.compile(f"[{_IDEOGRAPH}]")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

REPAIR_FIELDS = frozenset({"name", "idcode", "usedPhone", "authCode"})
AUDIT_FIELDS = frozenset(
    {
        "usage",
        "name",
        "idCard",
        "phone",
        "idCardFrontFilename",
        "idCardBackFilename",
        "driverName",
        "driverIdCard",
        "driverIdCardFrontFilename",
        "driverIdCardBackFilename",
        "carLicensePlate",
        "drivingLicenseFilename",
        "attachmentFileUrls",
    }
)
FILENAME_FIELDS = (
    "idCardFrontFilename",
    "idCardBackFilename",
    "driverIdCardFrontFilename",
    "driverIdCardBackFilename",
    "drivingLicenseFilename",
)


# --- lost_repair_upload_data -------------------------------------------------------------------


def check_repair_item(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "is not an object"
    unknown = sorted(set(item) - REPAIR_FIELDS)
    if unknown:
        return f"unknown field {unknown[0]}"
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        return "name is required"
    if len(name) > MAX_NAME:
        return f"name longer than {MAX_NAME} characters"
    idcode = item.get("idcode")
    if not isinstance(idcode, str) or not _HEX64.fullmatch(idcode):
        return "idcode must be 64 lower-case hex characters (SHA-256)"
    phone = item.get("usedPhone", "")
    if phone is None:
        phone = ""
    if not isinstance(phone, str) or (phone and not _HEX64.fullmatch(phone)):
        return "usedPhone must be empty or 64 lower-case hex characters (SHA-256)"
    auth = item.get("authCode")
    if not isinstance(auth, str) or not _AUTH_CODE.fullmatch(auth):
        return "authCode must be 1-16 letters or digits"
    return None


def check_repair_param(param: Any) -> str | None:
    """Everything that makes the whole batch refused (nothing is accepted then)."""
    if not isinstance(param, dict):
        return "param must be an object"
    array = param.get("toRepairDataArray")
    if not isinstance(array, list):
        return "toRepairDataArray is required and must be an array"
    if not 1 <= len(array) <= MAX_BATCH:
        return f"toRepairDataArray must hold 1-{MAX_BATCH} items, got {len(array)}"
    for index, item in enumerate(array):
        reason = check_repair_item(item)
        if reason:
            return f"toRepairDataArray[{index}]: {reason}"
    return None


def dedupe_batch(items: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Keep the first of each ``idcode`` and ``authCode``; later repeats are dropped silently."""
    kept: list[dict[str, str]] = []
    dropped: list[dict[str, str]] = []
    seen_id: set[str] = set()
    seen_auth: set[str] = set()
    for item in items:
        record = {
            "name": item["name"],
            "idcode": item["idcode"],
            "usedPhone": item.get("usedPhone") or "",
            "authCode": item["authCode"],
        }
        if record["idcode"] in seen_id or record["authCode"] in seen_auth:
            dropped.append(record)
            continue
        seen_id.add(record["idcode"])
        seen_auth.add(record["authCode"])
        kept.append(record)
    return kept, dropped


# --- carrierAudit -------------------------------------------------------------------------------


def id_card_valid(value: str) -> bool:
    """18 characters, 17 digits then a digit or ``X``, GB 11643 check digit."""
    if not _ID_BODY.fullmatch(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def chinese_name_valid(value: str) -> bool:
    return bool(_CHINESE_NAME.fullmatch(value)) and bool(_HAS_IDEOGRAPH.search(value))


def _text(params: Mapping[str, Any], field: str) -> str | None:
    """The field as a string; absent, null and "" all read as missing."""
    value = params.get(field)
    return value if isinstance(value, str) and value != "" else None


def check_audit_params(params: Any, *, allow: frozenset[str] = AUDIT_FIELDS) -> str | None:
    if not isinstance(params, dict):
        return "param must be an object"
    unknown = sorted(set(params) - allow)
    if unknown:
        return f"unknown field {unknown[0]}"
    for field in AUDIT_FIELDS:
        value = params.get(field)
        if value is not None and not isinstance(value, str):
            return f"{field} must be a string"

    usage = _text(params, "usage")
    if usage not in {"1", "2", "3"}:
        return "usage must be one of 1, 2, 3"
    name = _text(params, "name")
    if name is None:
        return "name is required"
    if not chinese_name_valid(name):
        return "name must be 1-20 Chinese characters or ·"
    id_card = _text(params, "idCard")
    if id_card is None:
        return "idCard is required"
    if not id_card_valid(id_card):
        return "idCard is not a valid 18-character ID number"
    phone = _text(params, "phone")
    if phone is None:
        return "phone is required"
    if not _MOBILE.fullmatch(phone):
        return "phone is not a mainland mobile number"
    for field in FILENAME_FIELDS:
        value = _text(params, field)
        if value is not None and len(value) > MAX_FILENAME:
            return f"{field} longer than {MAX_FILENAME} characters"

    driver_name = _text(params, "driverName")
    if driver_name is not None and not chinese_name_valid(driver_name):
        return "driverName must be 1-20 Chinese characters or ·"
    driver_id = _text(params, "driverIdCard")
    if driver_id is not None and not id_card_valid(driver_id):
        return "driverIdCard is not a valid 18-character ID number"
    plate = _text(params, "carLicensePlate")
    if plate is not None and len(plate) > MAX_PLATE:
        return f"carLicensePlate longer than {MAX_PLATE} characters"
    attachments = _text(params, "attachmentFileUrls")
    if attachments is not None:
        names = attachments.split(",")
        if len(names) > MAX_ATTACHMENTS:
            return f"attachmentFileUrls holds more than {MAX_ATTACHMENTS} files"
        if any(not n.strip() for n in names):
            return "attachmentFileUrls has an empty file name"
        if any(len(n) > MAX_FILENAME for n in names):
            return f"attachmentFileUrls has a file name longer than {MAX_FILENAME} characters"

    required = (
        ("driverName", "driverIdCard", "attachmentFileUrls")
        if usage == "1"
        else ("carLicensePlate", "drivingLicenseFilename", "attachmentFileUrls")
    )
    for field in required:
        if _text(params, field) is None:
            return f"{field} is required when usage is {usage}"
    return None
